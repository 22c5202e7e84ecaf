"""The GPU check: everything to measure the first time a CUDA GPU is at hand, in one command.

    python benchmarks/gpu_check.py                         # one CUDA GPU, about 5-8 minutes
    python benchmarks/gpu_check.py --device cpu --tiny     # the CPU smoke run (tests/test_gpu_check.py)

In order, each section timed:
1. the CUDA tests (tests/test_cuda.py, which skip cleanly without a GPU);
2. training the `gpt2` preset (124M, context 1024, bf16 autocast, torch.compile, flash SDPA,
   fused AdamW) for a fixed number of steps on the local FineWeb-Edu sample (the shipped sample is
   ~100k tokens: the random loader keeps drawing windows from it), then Hugging Face
   GPT2LMHeadModel (bf16 autocast, compiled, fused AdamW) on the same batches in the same
   process: tokens/s, MFU against the GPU's dense bf16 peak (gptlab/train/flops.py's table),
   peak memory; the first steps (compilation) are not counted;
3. the decode table, `gptlab bench generate --device cuda` (dynamic/static cache, compiled
   decode, bf16/fp16, batches 1/8/32, against transformers).

Its output is one Markdown block to paste into BENCHMARKS.md. --tiny shrinks every section
(a 2-layer model, 4 steps, `bench generate --quick`) so the whole path runs on a CPU in seconds.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import gc
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from train_step_sides import GptlabTraining, ReferenceTraining

from gptlab.errors import GptlabError
from gptlab.fileio import atomic_write_text
from gptlab.train.config import build_run_config
from gptlab.train.flops import mfu

REPO = Path(__file__).resolve().parents[1]
# The FineWeb-Edu sample the repository ships (150 real documents): every clone has it.
FINEWEB_SAMPLE = REPO / "data" / "samples" / "fineweb_edu" / "sample.jsonl"
TINY_MODEL = (
    "model.n_layer=2",
    "model.n_head=2",
    "model.n_embd=64",
    "model.block_size=64",
    "train.compile=false",
    "train.dtype=fp32",
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda (default), cuda:N, or cpu")
    parser.add_argument("--tiny", action="store_true", help="the CPU smoke run: tiny everything")
    parser.add_argument("--steps", type=int, help="timed training steps (default 40; tiny 2)")
    parser.add_argument("--warmup", type=int, help="uncounted first steps (default 10; tiny 1)")
    parser.add_argument(
        "--micro-batch", type=int, default=16, help="sequences of 1024 tokens per step (16)"
    )
    parser.add_argument("--data", default=str(FINEWEB_SAMPLE), help="the FineWeb-Edu sample")
    parser.add_argument("--skip-tests", action="store_true")
    parser.add_argument("--skip-decode", action="store_true")
    parser.add_argument("--out", help="also write the Markdown block to this file")
    args = parser.parse_args(argv)
    steps = args.steps if args.steps is not None else (2 if args.tiny else 40)
    warmup = args.warmup if args.warmup is not None else (1 if args.tiny else 10)
    if steps < 1 or warmup < 0 or args.micro_batch < 1:
        parser.error("--steps and --micro-batch must be >= 1, --warmup >= 0")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("gpu_check: error: no CUDA GPU here; use --device cpu --tiny", file=sys.stderr)
        return 1
    if not Path(args.data).is_file():
        print(f"gpu_check: error: {args.data} is not a file; pass --data", file=sys.stderr)
        return 1

    started = time.perf_counter()
    lines = header(args)
    try:
        if not args.skip_tests:
            lines += section("CUDA tests", started, run_cuda_tests())
        lines += section("Training", started, training_table(args, steps, warmup))
        if not args.skip_decode:
            lines += section("Decoding", started, decode_table(args))
    except GptlabError as exc:
        print(f"gpu_check: error: {exc}", file=sys.stderr)
        return 1
    lines.append(f"Total: {time.perf_counter() - started:.0f} s.")
    block = "\n".join(lines) + "\n"
    print(block)
    if args.out:
        atomic_write_text(args.out, block)
    return 0


def header(args) -> list[str]:
    device = torch.device(args.device)
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        what = f"{props.name}, {props.total_memory / 2**30:.0f} GiB, CUDA {torch.version.cuda}"
    else:
        what = f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"
    command = shlex.join(["python", "benchmarks/gpu_check.py", *sys.argv[1:]])
    today = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return [
        f"### GPU check: {what}",
        "",
        f"{today}; torch {torch.__version__}, Python {platform.python_version()}; `{command}`",
        "",
    ]


def section(title: str, started: float, body: list[str]) -> list[str]:
    print(f"gpu_check: {title} done at {time.perf_counter() - started:.0f} s", file=sys.stderr)
    return [f"#### {title} (done at {time.perf_counter() - started:.0f} s)", "", *body, ""]


def run_cuda_tests() -> list[str]:
    # -rs lists each skip's reason; the project's addopts already make pytest quiet (-q).
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-rs",
        "-p",
        "no:cacheprovider",
        "tests/test_cuda.py",
    ]
    process = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    output = process.stdout.strip().splitlines()
    summary = output[-1] if output else process.stderr.strip()[-500:]
    failures = [line for line in output if line.startswith(("FAILED", "ERROR"))]
    status = "" if process.returncode == 0 else f" **FAILED** (exit {process.returncode})"
    return [f"`pytest tests/test_cuda.py`: {summary}{status}", *[f"- {f}" for f in failures]]


def training_overrides(args, steps: int, warmup: int) -> list[str]:
    block_size = 64 if args.tiny else 1024
    micro = 4 if args.tiny else args.micro_batch
    overrides = [
        f"data.source={args.data}",
        "data.val_fraction=0.1",
        f"train.device={args.device}",
        f"train.max_steps={steps + warmup + 1}",
        "train.eval_every=0",
        "train.sample_every=0",
        "train.checkpoint_every=0",
        f"train.micro_batch_size={micro}",
        f"train.tokens_per_step={micro * block_size}",  # one micro-step: the step itself is timed
    ]
    if args.tiny:
        return [*overrides, *TINY_MODEL]
    return [*overrides, "train.dtype=bf16", "train.compile=true"]


def attention_backend(device: torch.device):
    """On CUDA, flash attention only: the check fails loudly if SDPA cannot use it."""
    if device.type != "cuda":
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel(SDPBackend.FLASH_ATTENTION)


def measure(name: str, step, tokens_per_step: int, steps: int, warmup: int, device) -> dict:
    """Median step time of `step` after `warmup` uncounted steps; peak memory from the start."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    with attention_backend(device):
        for _ in range(warmup):
            step()
        times = []
        for _ in range(steps):
            begun = time.perf_counter()
            step()  # ends by reading the loss on the host, so the GPU's work is inside the time
            times.append(time.perf_counter() - begun)
    seconds = statistics.median(times)
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    return {
        "name": name,
        "ms": 1000 * seconds,
        "tokens_per_s": tokens_per_step / seconds,
        "peak": peak,
    }


def training_table(args, steps: int, warmup: int) -> list[str]:
    config = build_run_config("gpt2", overrides=training_overrides(args, steps, warmup))
    device = torch.device(args.device)
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as scratch:
        ours = GptlabTraining(config, Path(scratch) / "run")
        trainer = ours.trainer
        try:
            gptlab_row = measure(
                "gptlab", ours.step, config.train.tokens_per_step, steps, warmup, device
            )
            gptlab_row["mfu"] = mfu(
                gptlab_row["tokens_per_s"], trainer.flops_per_token, trainer.peak_flops
            )
            gptlab_row["parameters"] = trainer.num_parameters
            peak_flops, compiled = trainer.peak_flops, config.train.compile
            reference_args = (trainer.config, trainer.data.folder, device, trainer.dtype, 1)
            dtype_label = str(trainer.dtype).removeprefix("torch.")
        finally:
            ours.close()
        # gptlab's model and optimizer are freed first, so each side's peak memory is its own.
        del ours, trainer
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
        reference = ReferenceTraining(*reference_args, compile=compiled)
        hf_row = measure(
            "HF GPT2LMHeadModel",
            reference.step,
            config.train.tokens_per_step,
            steps,
            warmup,
            device,
        )
        hf_row["mfu"] = mfu(hf_row["tokens_per_s"], reference.flops_per_token, peak_flops)
        hf_row["parameters"] = reference.num_parameters
    model = config.model
    lines = [
        f"{model.n_layer} layers, {model.n_embd} wide, context {model.block_size}, "
        f"{config.train.tokens_per_step:,} tokens/step, {dtype_label}, compile {compiled}, "
        f"flash SDPA {device.type == 'cuda'}, fused AdamW; median of {steps} steps after {warmup}; "
        "MFU against the GPU's dense bf16 peak (6N + 12 L T C FLOPs per token)",
        "",
        "| implementation | parameters | ms/step | tokens/s | MFU | peak memory GiB |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in (gptlab_row, hf_row):
        utilisation = f"{100 * row['mfu']:.1f}%" if row["mfu"] is not None else "- (no known peak)"
        peak = f"{row['peak']:.1f}" if row["peak"] is not None else "-"
        lines.append(
            f"| {row['name']} | {row['parameters']:,} | {row['ms']:.1f} | "
            f"{row['tokens_per_s']:,.0f} | {utilisation} | {peak} |"
        )
    ratio = gptlab_row["tokens_per_s"] / hf_row["tokens_per_s"]
    lines += ["", f"gptlab / HF tokens/s: **{ratio:.2f}x** (target >= 1.1x; MFU target >= 50%)"]
    return lines


def decode_table(args) -> list[str]:
    command = ["bench", "generate", "--device", args.device]
    if args.tiny:
        # The smallest preset with a fixed vocabulary; only the reference rows (transformers and
        # the dynamic cache), 4 tokens: the path is what is checked, not the speed.
        command += ["--preset", "small-bpe", "--quick", "--batches", "1", "--new-tokens", "4"]
        command += ["--rows", "dynamic*", "--threads", "1"]
    else:
        command += ["--batches", "1", "8", "32", "--new-tokens", "100", "--repeats", "2"]
    process = subprocess.run(
        [sys.executable, "-m", "gptlab", *command], cwd=REPO, capture_output=True, text=True
    )
    if process.returncode != 0:
        tail = process.stderr.strip().splitlines()[-1:] or ["(no message)"]
        return [f"`gptlab {shlex.join(command)}` failed: {tail[0]}"]
    return [f"`gptlab {shlex.join(command)}`", "", process.stdout.strip()]


if __name__ == "__main__":
    sys.exit(main())
