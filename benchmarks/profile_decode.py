"""Where a GPT-2 decode step's time goes: torch.profiler over greedy tokens of decode_steps.

    python benchmarks/profile_decode.py                       # fp32 as gptlab sample decodes it
    python benchmarks/profile_decode.py --int8 --threads 1
    python benchmarks/profile_decode.py --compare-attention   # single-query attention: SDPA or explicit
    python benchmarks/profile_decode.py --layouts             # GB/s of each weight layout

GPT-2 124M shape with random weights (speed does not depend on the values), a 16-token prompt,
prepared for decoding as `gptlab sample` prepares it (gptlab.inference.precision.prepare_model),
one untimed warm-up decode, then one profiled decode; prints the top operators by self CPU time.
--compare-attention instead times whole decodes with the decode step's single query through
torch's fused kernel and through the explicit matmuls, interleaved, and prints the medians.
--layouts times one batch-1 product through each of GPT-2's 48 block matrices in turn (340 MB,
far beyond any cache, as a decode step reads them) and through its head, with the weights as
nn.Linear keeps them, input-major and oneDNN-packed (gptlab.inference.weight_layout),
interleaved, and prints each layout's median and GB/s.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
from torch.profiler import profile

import gptlab.model.attention as attention
from gptlab.inference.config import GenerationConfig
from gptlab.inference.decode import decode_steps
from gptlab.inference.precision import prepare_model
from gptlab.inference.weight_layout import InputMajorLinear, PackedLinear, packing_available
from gptlab.model import GPT
from gptlab.model.config import ModelConfig


def decode(model, prompt, config) -> None:
    with torch.inference_mode():
        for _ in decode_steps(model, prompt, config):
            pass


def compare_attention(model, prompt, config, repeats: int) -> None:
    seconds = {True: [], False: []}
    for _ in range(repeats):
        for fused in (True, False):
            attention.SINGLE_QUERY_SDPA = fused
            start = time.perf_counter()
            decode(model, prompt, config)
            seconds[fused].append(time.perf_counter() - start)
    for fused, times in seconds.items():
        name = "fused SDPA" if fused else "explicit matmuls"
        print(
            f"single-query {name}: {config.max_new_tokens / statistics.median(times):.1f} tokens/s"
        )


def compare_layouts(model: GPT, repeats: int) -> None:
    """Median time of one batch-1 pass through the block matrices, then the head, per layout."""
    block_linears = [m for m in model.blocks.modules() if type(m) is torch.nn.Linear]
    groups = {"blocks' 48 matrices": block_linears, "head": [model.lm_head]}
    layouts = {
        "nn.Linear (out, in)": lambda linear: linear,
        "input-major": InputMajorLinear.from_linear,
    }
    if packing_available():
        layouts["oneDNN packed"] = PackedLinear.from_linear
    for group, linears in groups.items():
        nbytes = sum(linear.weight.numel() * 4 for linear in linears)
        converted = {
            name: [convert(linear) for linear in linears] for name, convert in layouts.items()
        }
        inputs = [torch.randn(1, linear.in_features) for linear in linears]
        seconds = {name: [] for name in layouts}
        with torch.inference_mode():
            for repeat in range(repeats + 2):  # the first two rounds warm up
                for name, modules in converted.items():
                    start = time.perf_counter()
                    for module, x in zip(modules, inputs, strict=True):
                        module(x)
                    if repeat >= 2:
                        seconds[name].append(time.perf_counter() - start)
        for name, times in seconds.items():
            median = statistics.median(times)
            print(
                f"{group:20s} {name:20s} {median * 1e3:7.2f} ms  {nbytes / median / 1e9:5.1f} GB/s"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--int8", action="store_true", help="also profile the int8 model")
    parser.add_argument("--rows", type=int, default=12, help="operators to print")
    parser.add_argument("--compare-attention", action="store_true")
    parser.add_argument("--layouts", action="store_true", help="GB/s of each weight layout")
    parser.add_argument(
        "--repeats", type=int, default=5, help="with --compare-attention or --layouts"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = GPT(ModelConfig(vocab_size=50257, block_size=1024, n_layer=12, n_head=12, n_embd=768))
    model.eval()
    prompt = torch.randint(50257, (1, 16), generator=torch.Generator().manual_seed(0))
    config = GenerationConfig(max_new_tokens=args.tokens, temperature=0, stop_at_eot=False)
    if args.layouts:
        compare_layouts(model, args.repeats * 4)
        return
    models = [("fp32", prepare_model(copy.deepcopy(model)))]
    if args.compare_attention:
        decode(models[0][1], prompt, config)  # warm-up
        compare_attention(models[0][1], prompt, config, args.repeats)
        return
    if args.int8:
        models.append(("int8", prepare_model(model, quantize="int8")))
    for name, decoder in models:
        decode(decoder, prompt, config)  # warm-up
        with profile() as profiler:
            decode(decoder, prompt, config)
        print(f"== {name}, {args.tokens} tokens, {args.threads} threads")
        table = profiler.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.rows)
        print(table)


if __name__ == "__main__":
    main()
