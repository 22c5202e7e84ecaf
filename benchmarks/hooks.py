"""Do unused hook points cost anything? Forward-pass time with hooks vs. a build without them.

The build without hook points is src/gptlab/model/gpt.py as of commit 50671bb (before hooks were
added), read with `git show` and imported as a temporary module; nothing is checked out. Both
models get the same weights and the same input. Cases: batch 1 and 8, a full T=128 forward and a
decode-like T=1 step after 127 cached positions, at the gpt2 (124M) shape and a small shape.
A second copy of the build without hooks is timed too: the difference between two identical
models (memory placement, machine noise) is the floor below which no difference means anything.
Repeats are interleaved, in rotating order, so drifting machine load hits all alike; the table
shows medians.

    python benchmarks/hooks.py [--repeats 15] [--shapes gpt2,small] [--threads N]
                                [--batches 1,8] [--cases forward,decode] [--clock wall|cpu]

On a machine shared with other jobs use `--threads 1 --clock cpu` (see CLOCKS).
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from gptlab.model import GPT, KVCache
from gptlab.model.config import ModelConfig

REPO = Path(__file__).resolve().parents[1]
BASELINE_COMMIT = "50671bb"
SHAPES = {
    "gpt2": ModelConfig(n_layer=12, n_head=12, n_embd=768, block_size=1024, vocab_size=50257),
    "small": ModelConfig(n_layer=4, n_head=4, n_embd=128, block_size=256, vocab_size=50257),
}


def load_baseline_gpt_class():
    """The GPT class from gpt.py at BASELINE_COMMIT, imported from a temporary file."""
    source = subprocess.run(
        ["git", "show", f"{BASELINE_COMMIT}:src/gptlab/model/gpt.py"],
        cwd=REPO,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    path = Path(tempfile.mkdtemp(prefix="gptlab-bench-")) / "gpt_without_hooks.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("gpt_without_hooks", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.GPT


# Wall-clock time by default. On a machine shared with other jobs, "cpu" (this process's CPU
# time, with --threads 1) leaves out the time spent waiting for a core, which is most of the noise.
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
clock = CLOCKS["wall"]


def time_call(fn, inner: int) -> float:
    """Mean seconds per call over `inner` back-to-back calls."""
    start = clock()
    for _ in range(inner):
        fn()
    return (clock() - start) / inner


def make_case(model, idx: torch.Tensor, prefill: torch.Tensor | None):
    """A zero-argument function running one forward; with a prefill, a T=1 step after it."""
    if prefill is None:
        return lambda: model(idx)
    cache = KVCache(model.config.n_layer)
    model(prefill, kv_cache=cache)
    keys, values = list(cache.keys), list(cache.values)

    def decode_step():
        step_cache = KVCache(model.config.n_layer)  # fresh each call: update() concatenates
        step_cache.keys, step_cache.values = list(keys), list(values)
        model(idx, kv_cache=step_cache)

    return decode_step


def case_logits(model, idx, prefill):
    """Logits of the case's forward (to check both builds compute the same thing)."""
    cache = None
    if prefill is not None:
        cache = KVCache(model.config.n_layer)
        model(prefill, kv_cache=cache)
    return model(idx, kv_cache=cache)[0]


def unused_hook_overhead(config: ModelConfig) -> tuple[int, float]:
    """(hook point calls per forward pass, seconds per call with nothing attached).

    A load-independent bound on what unused hooks can cost: calls x seconds per call.
    """
    model = GPT(config.replace(n_layer=1))
    per_layer = sum(1 for name in model.hook_points if name.startswith("blocks.0."))
    calls = len(model.hook_points) - per_layer + per_layer * config.n_layer
    point, x = next(iter(model.hook_points.values())), torch.zeros(1)
    n = 1_000_000
    start = clock()
    for _ in range(n):
        point(x)
    return calls, (clock() - start) / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--shapes", default="gpt2,small")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--batches", default="1,8", help="batch sizes (default 1,8)")
    parser.add_argument("--cases", default="forward,decode", help="forward, decode or both")
    parser.add_argument(
        "--clock", choices=CLOCKS, default="wall", help="wall (default) or cpu time"
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    global clock
    clock = CLOCKS[args.clock]
    BaselineGPT = load_baseline_gpt_class()

    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, repeats={args.repeats}, "
        f"{args.clock} clock"
    )
    print(
        "| shape | batch | case | no hook points (ms) | same, 2nd copy (ms) "
        "| hook points, none attached (ms) | copy / no hooks | hooks / no hooks |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for shape_name in args.shapes.split(","):
        config = SHAPES[shape_name]
        torch.manual_seed(0)
        with_hooks = GPT(config).eval()
        # Two copies of the baseline: how far two identical models differ (memory placement,
        # machine noise) is the floor under which a hooks-vs-no-hooks difference means nothing.
        models = {"old": BaselineGPT(config), "old copy": BaselineGPT(config), "new": with_hooks}
        for model in models.values():
            model.load_state_dict(with_hooks.state_dict())
            model.eval()
        for batch in (int(b) for b in args.batches.split(",")):
            generator = torch.Generator().manual_seed(1)
            tokens = torch.randint(0, config.vocab_size, (batch, 128), generator=generator)
            cases = {
                "forward": ("T=128 forward", tokens, None),
                "decode": ("T=1 decode after 127", tokens[:, -1:], tokens[:, :-1]),
            }
            for case_name, idx, prefill in (cases[c] for c in args.cases.split(",")):
                with torch.inference_mode():
                    torch.testing.assert_close(
                        case_logits(models["old"], idx, prefill),
                        case_logits(with_hooks, idx, prefill),
                    )
                    runs = {name: make_case(m, idx, prefill) for name, m in models.items()}
                    one = time_call(runs["new"], 1)
                    inner = max(1, int(0.2 / max(one, 1e-4)))  # ~0.2 s per timing
                    for run in runs.values():  # warm-up
                        time_call(run, inner)
                    times = {name: [] for name in runs}
                    order = list(runs)
                    for _ in range(args.repeats):
                        order = order[1:] + order[:1]  # rotate: no model always goes first
                        for name in order:
                            times[name].append(time_call(runs[name], inner))
                ms = {name: statistics.median(t) * 1e3 for name, t in times.items()}
                print(
                    f"| {shape_name} | {batch} | {case_name} | {ms['old']:.3f} | "
                    f"{ms['old copy']:.3f} | {ms['new']:.3f} | {ms['old copy'] / ms['old']:.3f} | "
                    f"{ms['new'] / ms['old']:.3f} |",
                    flush=True,
                )
        calls, seconds = unused_hook_overhead(config)
        print(
            f"| {shape_name} | | {calls} hook point calls per forward x {seconds * 1e9:.0f} ns "
            f"(nothing attached) = {calls * seconds * 1e3:.4f} ms | | | | | |",
            flush=True,
        )


if __name__ == "__main__":
    sys.exit(main())
