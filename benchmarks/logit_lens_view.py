"""The explorer's logit-lens view against one forward pass, for a new 64-token prompt on GPT-2
124M (random weights: the `gpt2` preset shape; speed does not depend on the weights).

    python benchmarks/logit_lens_view.py [--repeats 7] [--threads 2]

Each repeat makes a prompt the explorer has not seen (so the view runs its cached forward pass
with every hook, then decodes the lens), and times, interleaved so a shared machine's drift hits
both alike:
  forward   model(idx) under inference mode, no hooks (the unit)
  view      POST /api/logit_lens through the app's test client, end to end (JSON included)
and, for the record of where the time goes, on the same prompt afterwards:
  pass      the explorer's cached forward pass alone (run_with_cache with the views' hooks)
  window    the lens decode of the window the view shows (10 positions x 13 stages)
  full      the lens decode of every position (what the view decoded before: 64 x 13)
Ratios are to the same repeat's forward pass; the summary is their median.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import time

# The view runs on a server worker thread, the forward pass on the main thread: each has its
# own OpenMP team, and an idle team that spins (the default) would slow the other one down.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

from gptlab.checkpoints.open import open_model
from gptlab.explore.app import create_app
from gptlab.explore.session import Explorer
from gptlab.explore.views import LENS_ALTERNATIVES, LENS_WINDOW
from gptlab.interp.logit_lens import logit_lens_from_cache

WORDS = (
    " the of and to in is was for on that with as by at from his her it an were are which this"
    " be or has had not first one their its new after who they have two been other when there all"
    " city year house river king music water world school light story night game market"
).split(" ")[1:]


def fresh_prompt(tokenizer, seed: int, length: int) -> str:
    """`length` tokens of common words (each one GPT-2 token), different for every seed."""
    rng = random.Random(seed)
    text = "".join(" " + rng.choice(WORDS) for _ in range(length))
    assert len(tokenizer.encode(text)) == length, "a word is not one token"
    return text


def seconds(fn, *args, **kwargs) -> float:
    start = time.perf_counter()
    fn(*args, **kwargs)
    return time.perf_counter() - start


def one_repeat(model, explorer, client, prompt: str, tokens: int) -> tuple[float, list[float]]:
    """(forward seconds, [view, pass, window, full] as multiples of it) for a new prompt."""
    idx = torch.tensor([explorer.tokenizer.encode(prompt)])
    with torch.inference_mode():
        forward = seconds(model, idx)
    start = time.perf_counter()
    client.post("/api/logit_lens", json={"prompt": prompt}).raise_for_status()
    view = time.perf_counter() - start
    explorer._last = None  # the same prompt again, from scratch, for the breakdown
    with explorer.lock, torch.inference_mode():
        cached_pass = seconds(explorer.prompt_pass, prompt)
        cached = explorer.prompt_pass(prompt)
        lens = (model, cached.idx, cached.cache)
        window = range(tokens - LENS_WINDOW, tokens)
        window_s = seconds(logit_lens_from_cache, *lens, k=LENS_ALTERNATIVES, positions=window)
        full = seconds(logit_lens_from_cache, *lens, k=LENS_ALTERNATIVES)
        forward = (forward + seconds(model, idx)) / 2  # before and after: drift hits both
    return forward, [view / forward, cached_pass / forward, window_s / forward, full / forward]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tokens", type=int, default=64)
    args = parser.parse_args()
    from fastapi.testclient import TestClient

    torch.set_num_threads(args.threads)
    model, tokenizer = open_model("preset:gpt2", "cpu")
    explorer = Explorer("gpt2", model.eval(), tokenizer)
    client = TestClient(create_app({"gpt2": explorer}))
    warm = fresh_prompt(tokenizer, -1, args.tokens)
    client.post("/api/logit_lens", json={"prompt": warm}).raise_for_status()  # first-call costs
    rows = []
    print(f"GPT-2 124M (random weights), {args.tokens}-token prompts, {args.threads} threads")
    print(
        f"{'repeat':>6} {'forward s':>10} {'view s':>8} {'view/fwd':>9} {'pass/fwd':>9} "
        f"{'window/fwd':>11} {'full/fwd':>9}"
    )
    for repeat in range(args.repeats):
        prompt = fresh_prompt(tokenizer, repeat, args.tokens)
        forward, row = one_repeat(model, explorer, client, prompt, args.tokens)
        rows.append(row)
        widths = (9, 9, 11, 9)
        shown = " ".join(f"{v:>{w}.2f}" for v, w in zip(row, widths, strict=True))
        print(f"{repeat:>6} {forward:>10.3f} {forward * row[0]:>8.3f} {shown}")
    medians = [statistics.median(column) for column in zip(*rows, strict=True)]
    print(
        f"median: view {medians[0]:.2f}x one forward pass (cached pass {medians[1]:.2f}x, "
        f"window decode {medians[2]:.2f}x; decoding every position would be {medians[3]:.2f}x)"
    )


if __name__ == "__main__":
    main()
