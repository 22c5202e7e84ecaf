"""gptlab's SAE trainer against SAELens' own, on the same cached activations.

    python benchmarks/sae_vs_saelens.py runs/char            # needs: pip install sae-lens

The model's activations at the hook are computed once (train + held-out tokens, from the run's
own data) and both trainers read the same shuffled tensor, batch by batch: the same kind (TopK),
width, k, learning rate and schedule (100 warm-up steps, linear decay over the last 20%), batch
size and token budget. Each library keeps its own other defaults (gptlab: AuxK weight 1/32,
b_dec started at the data mean, the encoder calibrated on the first batch, sparse decoding;
SAELens: AuxK weight 1, decoder norm 0.1 at init, rescale_acts_by_decoder_norm). Both are then measured by the same code on the held-out
activations: variance explained and L0. Throughput is activations per second of training alone
(the caching is shared), by default gptlab, SAELens, then gptlab again (a shared machine drifts).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

from gptlab.sae.evaluate import ReconstructionStats
from gptlab.sae.options import SaeOptions

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sae_recipes import cache_activations, train_recipe  # noqa: E402  (benchmarks/ is not a package)


def train_saelens(acts: torch.Tensor, options: SaeOptions):
    from sae_lens.config import LoggingConfig, SAETrainerConfig
    from sae_lens.saes.topk_sae import TopKTrainingSAE, TopKTrainingSAEConfig
    from sae_lens.training.sae_trainer import SAETrainer

    torch.manual_seed(options.seed)
    sae = TopKTrainingSAE(
        TopKTrainingSAEConfig(d_in=acts.shape[1], d_sae=options.features, k=options.k)
    )
    steps = options.total_steps
    config = SAETrainerConfig(
        total_training_samples=steps * options.batch_size,
        train_batch_size_samples=options.batch_size,
        lr=options.lr,
        lr_end=options.lr,
        lr_scheduler_name="constant",
        lr_warm_up_steps=options.warmup_steps,
        lr_decay_steps=int(steps * options.decay_fraction),
        dead_feature_window=options.dead_window // options.batch_size,
        logger=LoggingConfig(log_to_wandb=False),
    )
    batches = (acts[s * options.batch_size : (s + 1) * options.batch_size] for s in range(steps))
    trainer = SAETrainer(cfg=config, sae=sae, data_provider=batches)
    start = time.perf_counter()
    trainer.fit()
    return sae.eval(), time.perf_counter() - start


@torch.no_grad()
def measure(encode, decode, held_out: torch.Tensor, d_sae: int) -> tuple[float, float]:
    stats = ReconstructionStats(d_sae)
    for batch in held_out.split(4096):
        f = encode(batch)
        stats.add(batch, decode(f), f)
    return stats.fve(), stats.l0()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="a gptlab training run (its own data is used)")
    parser.add_argument("--hook", default="blocks.1.hook_resid_post")
    parser.add_argument("--tokens", type=int, default=1_048_576, help="training activations")
    parser.add_argument("--held-out", type=int, default=65_536)
    parser.add_argument("--features", type=int, default=2048)
    parser.add_argument("--k", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--batch-size", type=int, default=4096)
    parser.add_argument("--warmup-steps", type=int, default=100)
    parser.add_argument(
        "--order",
        default="gptlab,SAELens,gptlab",
        help="trainers in turn (a shared machine drifts)",
    )
    args = parser.parse_args()

    options = SaeOptions(
        model=args.run,
        out="unused",
        features=args.features,
        k=args.k,
        lr=args.lr,
        batch_size=args.batch_size,
        warmup_steps=args.warmup_steps,
        tokens=args.tokens,
        buffer_size=max(2 * args.batch_size, 65_536),
        dead_window=250 * args.batch_size,
    ).validate(check_paths=False)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load {os.getloadavg()}")
    print(f"caching {args.tokens:,} + {args.held_out:,} activations at {args.hook} of {args.run}")
    train = cache_activations(args.run, args.hook, args.tokens, "train", seed=1)
    held_out = cache_activations(args.run, args.hook, args.held_out, "val", seed=2)

    rows = []
    for name in args.order.split(","):
        if name == "gptlab":
            sae, _, seconds = train_recipe(train, options)  # options.kind is topk
            fve, l0 = measure(sae.encode, sae.decode, held_out, args.features)
        else:
            sae, seconds = train_saelens(train, options)
            fve, l0 = measure(sae.encode, sae.decode, held_out, args.features)
        rate = options.total_steps * options.batch_size / seconds
        rows.append((name, fve, l0, seconds, rate))
        print(
            f"{name:8s} FVE {100 * fve:5.1f}%  L0 {l0:5.1f}  {seconds:6.1f} s  {rate:8,.0f} act/s"
            f"  (load {os.getloadavg()[0]:.2f})",
            flush=True,
        )


if __name__ == "__main__":
    main()
