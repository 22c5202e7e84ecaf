"""HellaSwag scoring speed: items per second for gptlab's batched scorer, beside a plain reference.

The model has the `gpt2` preset shape (124M parameters) with random weights: speed does not
depend on what the weights are. The reference is the straightforward approach, one
Hugging Face transformers forward per ending (the same weights, exported with to_hf_model), as
the parity test computes it. Items are the first --limit items of the HellaSwag file.

The machine may be shared, so the scorers take turns: the items are cut into chunks of --chunk
items, every scorer scores each chunk (in rotating order), and each scorer's time is summed over
the chunks. Load that drifts during the run then falls on all scorers alike.

    python benchmarks/hellaswag.py [--limit 48] [--batch-sizes 1,4] [--chunk 8] [--no-reference]
"""

from __future__ import annotations

import argparse
import functools
import os
import platform
import time
from pathlib import Path

import torch

from gptlab.eval.hellaswag import read_hellaswag, score_endings
from gptlab.model import GPT
from gptlab.model.config import model_preset
from gptlab.tokenizers.base import GPT2Tokenizer

SHARED_HELLASWAG = Path(__file__).resolve().parents[2] / "shared/data/hellaswag/hellaswag_val.jsonl"


def score_with_transformers(hf_model, tokenizer, items) -> None:
    """One transformers forward per ending, summing the ending's log-probabilities."""
    with torch.inference_mode():
        for item in items:
            context = tokenizer.encode(item.context)
            for ending in item.endings:
                ending_ids = tokenizer.encode(" " + ending)
                ids = torch.tensor([context + ending_ids])
                logits = hf_model(ids).logits[0, len(context) - 1 : -1]
                log_probs = torch.log_softmax(logits.float(), dim=-1)
                log_probs[torch.arange(len(ending_ids)), ending_ids].sum().item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=48)
    parser.add_argument(
        "--batch-sizes", default="1,4", help="comma-separated items per forward pass"
    )
    parser.add_argument("--chunk", type=int, default=8, help="items per turn")
    parser.add_argument("--data", default=str(SHARED_HELLASWAG), help="a HellaSwag jsonl file")
    parser.add_argument(
        "--no-reference", action="store_true", help="skip the transformers reference"
    )
    args = parser.parse_args()

    items = read_hellaswag(args.data)[: args.limit]
    tokenizer = GPT2Tokenizer()
    torch.manual_seed(0)
    model = GPT(model_preset("gpt2")).eval()
    scorers = {
        f"gptlab score_endings, batch {b} items": functools.partial(
            score_endings, model, tokenizer, batch_size=b, progress=False
        )
        for b in (int(b) for b in args.batch_sizes.split(","))
    }
    if not args.no_reference:
        from gptlab.model.hf import to_hf_model

        scorers["transformers, one forward per ending"] = functools.partial(
            score_with_transformers, to_hf_model(model), tokenizer
        )
    positions = sum(
        len(tokenizer.encode(i.context)) * len(i.endings)
        + sum(len(e) for e in tokenizer.encode_batch([" " + e for e in i.endings]))
        for i in items
    )
    print(
        f"# {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads; load average before {os.getloadavg()[0]:.2f}"
    )
    print(f"# {len(items)} items, {positions:,} token positions (context + ending, each ending)")

    for score in scorers.values():
        score(items[:1])  # warm-up
    seconds = dict.fromkeys(scorers, 0.0)
    for turn, start in enumerate(range(0, len(items), args.chunk)):
        chunk = items[start : start + args.chunk]
        names = list(scorers)
        for name in names[turn % len(names) :] + names[: turn % len(names)]:
            began = time.perf_counter()
            scorers[name](chunk)
            seconds[name] += time.perf_counter() - began

    print("| scorer | items/s | token positions/s |")
    print("| --- | --- | --- |")
    for name, total in seconds.items():
        print(f"| {name} | {len(items) / total:.2f} | {positions / total:,.0f} |")
    print(f"# load average after {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
