"""SAE training recipes side by side at a fixed token budget: dead features, FVE, L0.

    python benchmarks/sae_recipes.py runs/char 1e6 enc1 encoder_init_scale=1 / enc0.1 encoder_init_scale=0.1

Each recipe is a name and `key=value` settings of `gptlab sae train` (over the defaults). The
model's activations at the hook are computed once (the train split's random windows, cached in
memory) and every recipe trains on the same batches in the same order with gptlab's own
train_step and resampling, so only the settings differ. Each is then measured on the model's
whole val split, as `gptlab sae eval --tokens 200000` measures the char model: variance
explained, L0, and the features that never fired on it (dead) or fired on more than 10% (dense).
Dead features and FVE at a fixed token budget do not depend on the machine's load; the time does.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch

from gptlab.checkpoints.open import open_model
from gptlab.data.loader import TokenLoader
from gptlab.overrides import override
from gptlab.sae.activations import activations_at, data_folder
from gptlab.sae.evaluate import ReconstructionStats
from gptlab.sae.model import SparseAutoencoder
from gptlab.sae.options import SaeOptions
from gptlab.sae.train import maybe_resample, start_sae, train_step


def cache_activations(
    run: str, hook: str, tokens: int | None, split: str, seed: int = 0
) -> torch.Tensor:
    """`tokens` shuffled activations of random windows, or (tokens=None) the whole split in order.
    (benchmarks/sae_vs_saelens.py caches its activations with this too.)"""
    model, _ = open_model(run, "cpu", require_tokenizer=False)
    model.eval()
    mode = "sequential" if tokens is None else "random"
    loader = TokenLoader(
        data_folder(run, ""), split, 16, model.config.block_size, mode=mode, seed=seed
    )
    want = loader.batches_per_epoch * 16 * model.config.block_size if tokens is None else tokens
    parts, have = [], 0
    while have < want:
        x, _ = loader.next_batch()
        acts = activations_at(model, x, hook)
        parts.append(acts.reshape(-1, acts.shape[-1]))
        have += parts[-1].shape[0]
    rows = torch.cat(parts)[:want]
    if tokens is not None:
        rows = rows[torch.randperm(want, generator=torch.Generator().manual_seed(seed))]
    return rows


def train_recipe(acts: torch.Tensor, options: SaeOptions) -> tuple[SparseAutoencoder, dict, float]:
    torch.manual_seed(options.seed)
    sae = SparseAutoencoder(acts.shape[1], options.features, options.kind, options.k)
    start_sae(sae, options, acts[: options.buffer_size])  # what the buffer holds at the start
    optimizer = torch.optim.Adam(sae.parameters(), lr=options.lr, betas=(0.9, 0.999))
    since_fired = torch.zeros(options.features, dtype=torch.long)
    start = time.perf_counter()
    record = {}
    for step in range(options.total_steps):
        batch = acts[step * options.batch_size : (step + 1) * options.batch_size]
        record = train_step(sae, optimizer, batch, since_fired, options, step)
        maybe_resample(sae, optimizer, batch, since_fired, options, step + 1)
    return sae.eval(), record, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="a gptlab training run (its own data is used)")
    parser.add_argument("tokens", type=float, help="training activations per recipe")
    parser.add_argument("recipes", nargs="+", help="NAME key=value ... [/ NAME key=value ...]")
    parser.add_argument("--hook", default="blocks.1.hook_resid_post")
    args = parser.parse_args()
    recipes, current = [], []
    for word in [*args.recipes, "/"]:
        if word == "/":
            if current:
                recipes.append(current)
            current = []
        else:
            current.append(word)
    tokens = int(args.tokens)
    options = []
    for name, *settings in recipes:  # every recipe's settings checked before any work
        recipe = SaeOptions(model=args.run, out="unused", tokens=tokens)
        override(recipe, settings)
        options.append((name, settings, recipe.validate(check_paths=False)))
    acts = cache_activations(args.run, args.hook, tokens, "train")
    held_out = cache_activations(args.run, args.hook, None, "val")
    for name, settings, recipe in options:
        sae, record, seconds = train_recipe(acts, recipe)
        stats = ReconstructionStats(recipe.features)
        with torch.no_grad():
            for i in range(0, held_out.shape[0], 8192):
                x = held_out[i : i + 8192]
                f = sae.encode(x)
                stats.add(x, sae.decode(f), f)
        density = stats.density()
        dead = int((density == 0).sum())
        print(
            json.dumps(
                {
                    "recipe": name,
                    "settings": settings,
                    "tokens": recipe.total_steps * recipe.batch_size,
                    "held_out_tokens": stats.tokens,
                    "fve": round(stats.fve(), 4),
                    "l0": round(stats.l0(), 2),
                    "dead": dead,
                    "dead_percent": round(100 * dead / recipe.features, 1),
                    "dead_by_training_window": record.get("dead"),
                    "dense": int((density > 0.1).sum()),
                    "seconds": round(seconds, 1),
                    "load": round(os.getloadavg()[0], 2),
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
