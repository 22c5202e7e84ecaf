"""nanoGPT's README CPU recipe on the same corpus and clock as gptlab's prose-cpu preset, scored
by gptlab's bits-per-byte code on the same held-out articles.

    python benchmarks/peer_nanogpt.py NANOGPT_CHECKOUT ../shared/data/wikipedia/enwiki2015.jsonl \
        --seconds 600 --work /tmp/peer-nanogpt

NANOGPT_CHECKOUT: a checkout of github.com/karpathy/nanoGPT (its train.py and model.py are run
and imported from there, never copied). The recipe is the README's CPU command (4 layers, 4
heads, 128 wide, context 64, batches of 12, 2,000 iterations, dropout 0, no compile) with
dataset = the corpus's training documents in GPT-2 BPE (written as nanoGPT's train.bin / val.bin
into CHECKOUT/data/gptlab_corpus, one <|endoftext|> after each document as its
openwebtext/prepare.py does; train.py runs in the checkout, as it must). Two
settings are added so a clock can stop it: checkpoints after every evaluation
(always_save_checkpoint, nanoGPT's default) every --eval-interval iterations (50), so the model
scored is at most that many iterations behind the stop. --smoke shrinks everything to prove the
path works in a minute.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np
import tiktoken
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peer_common import (  # noqa: E402  (benchmarks/ is not a package)
    ScoredModel,
    ScoredTokenizer,
    held_out_bits_per_byte,
    run_for,
    split_documents,
)

README_CPU_RECIPE = [
    "--device=cpu",
    "--compile=False",
    "--eval_iters=20",
    "--log_interval=1",
    "--block_size=64",
    "--batch_size=12",
    "--n_layer=4",
    "--n_head=4",
    "--n_embd=128",
    "--max_iters=2000",
    "--lr_decay_iters=2000",
    "--dropout=0.0",
]


def write_bins(train: list[str], held_out: list[str], folder: Path) -> None:
    encoding = tiktoken.get_encoding("gpt2")
    folder.mkdir(parents=True, exist_ok=True)
    for name, documents in (("train", train), ("val", held_out)):
        ids = [i for doc in encoding.encode_ordinary_batch(documents) for i in (*doc, 50256)]
        np.asarray(ids, dtype=np.uint16).tofile(folder / f"{name}.bin")
        print(f"{name}.bin: {len(ids):,} GPT-2 tokens from {len(documents):,} documents")


def load_nanogpt(checkout: Path, out_dir: Path) -> ScoredModel:
    sys.path.insert(0, str(checkout))
    from model import GPT, GPTConfig  # nanoGPT's model.py, from the checkout

    checkpoint = torch.load(out_dir / "ckpt.pt", map_location="cpu", weights_only=False)
    model = GPT(GPTConfig(**checkpoint["model_args"]))
    state = {k.removeprefix("_orig_mod."): v for k, v in checkpoint["model"].items()}
    model.load_state_dict(state)
    print(f"nanoGPT checkpoint of iteration {checkpoint['iter_num']}")

    def logits_of(m, idx):
        logits, _ = m(idx, targets=idx)  # with targets nanoGPT returns every position's logits
        return logits

    return ScoredModel(model.eval(), model.config.block_size, model.config.vocab_size, logits_of)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkout", type=Path, help="a nanoGPT checkout")
    parser.add_argument("corpus", help="the .jsonl corpus")
    parser.add_argument("--seconds", type=float, default=600.0, help="training wall time")
    parser.add_argument("--eval-interval", type=int, default=50)
    parser.add_argument(
        "--held-out-bytes",
        type=int,
        default=1_000_000,
        help="score the held-out documents up to this many bytes (gptlab eval bpb --max-bytes)",
    )
    parser.add_argument("--work", type=Path, default=Path("/tmp/peer-nanogpt"))
    parser.add_argument("--smoke", action="store_true", help="200 documents, 20 iterations")
    args = parser.parse_args()

    train, held_out = split_documents(args.corpus)
    if args.smoke:
        train, held_out = train[:200], held_out[:20]
    checkout = args.checkout.resolve()
    write_bins(train, held_out, checkout / "data" / "gptlab_corpus")
    out_dir = args.work / "out"
    recipe = list(README_CPU_RECIPE)
    if args.smoke:
        recipe += ["--max_iters=20", "--lr_decay_iters=20", "--eval_iters=2"]
    command = [
        sys.executable,
        "train.py",
        "config/train_shakespeare_char.py",
        *recipe,
        "--dataset=gptlab_corpus",
        f"--out_dir={out_dir.resolve()}",
        f"--eval_interval={5 if args.smoke else args.eval_interval}",
        "--always_save_checkpoint=True",
    ]
    # train.py reads configurator.py and data/<dataset> from the current folder.
    args.work.mkdir(parents=True, exist_ok=True)
    log = args.work / "train.log"
    wall = run_for(command, args.seconds, cwd=str(checkout), env={}, log_path=str(log))
    print(f"nanoGPT trained for {wall:.0f} s of wall time (log: {log})")
    model = load_nanogpt(checkout, out_dir)
    encoding = tiktoken.get_encoding("gpt2")
    tokenizer = ScoredTokenizer(encoding, eot_id=50256, vocab_size=encoding.n_vocab)
    with torch.inference_mode():
        result = held_out_bits_per_byte(model, tokenizer, held_out, args.held_out_bytes)
    print(
        json.dumps(
            {"peer": "nanoGPT", "wall_seconds": wall, "load_average": os.getloadavg(), **result}
        )
    )


if __name__ == "__main__":
    main()
