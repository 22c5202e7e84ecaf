"""Benchmarks, measured side by side with a reference in one run.

`bench_generate` times greedy decoding of a fixed number of new tokens at batch 1 along several
paths on the same weights and the same prompt: gptlab without a KV cache, gptlab with one, and
`transformers`' own `generate`. Each path is warmed up first, then run `repeats` times; the
median time counts. Every path also has to produce the same greedy tokens, which the result
reports (a fast path that decodes something else would be no faster at all).

Paths are a list of `DecodePath`s, so more variants (a static cache, torch.compile, other
dtypes) are added as more entries, and the table grows a row for each.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch

from gptlab.generate import GenerationConfig, generate
from gptlab.optional import import_optional

WARMUP_TOKENS = 8


@dataclass
class DecodePath:
    """One way to decode: `run(prompt (1, P), new_tokens) -> new token ids` (greedy)."""

    name: str
    run: Callable[[torch.Tensor, int], list[int]]


@dataclass
class DecodeTiming:
    name: str
    seconds: list[float]  # one per repeat
    tokens: list[int]  # the greedy tokens it produced (last repeat)
    new_tokens: int

    @property
    def median_seconds(self) -> float:
        return statistics.median(self.seconds)

    @property
    def tokens_per_s(self) -> float:
        return self.new_tokens / self.median_seconds


@dataclass
class GenerateBench:
    model: str
    prompt_tokens: int
    new_tokens: int
    repeats: int
    timings: list[DecodeTiming]
    machine: dict = field(default_factory=dict)

    def timing(self, name: str) -> DecodeTiming:
        return next(t for t in self.timings if t.name == name)

    def agreement(self, name: str, reference: str) -> int:
        """How many leading greedy tokens of `name` equal those of `reference`."""
        a, b = self.timing(name).tokens, self.timing(reference).tokens
        return next(
            (i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b))
        )

    def to_dict(self) -> dict:
        d = asdict(self)
        for timing, row in zip(self.timings, d["timings"], strict=True):
            row["median_seconds"] = timing.median_seconds
            row["tokens_per_s"] = timing.tokens_per_s
            del row["tokens"]
        d["agreement_with_kv_cache"] = {
            t.name: self.agreement(t.name, KV_CACHE) for t in self.timings
        }
        return d


UNCACHED, KV_CACHE, TRANSFORMERS = "gptlab, no cache", "gptlab, KV cache", "transformers generate"


def gptlab_path(name: str, model, use_cache: bool) -> DecodePath:
    def run(prompt: torch.Tensor, new_tokens: int) -> list[int]:
        config = GenerationConfig(
            max_new_tokens=new_tokens, temperature=0, use_cache=use_cache, stop_at_eot=False
        )
        return generate(model, prompt, config)[0].token_ids

    return DecodePath(name, run)


def transformers_path(model) -> DecodePath:
    """transformers' GPT2LMHeadModel.generate on the same weights, forced to make every token."""
    from gptlab.model.hf import to_hf_model

    hf_model = to_hf_model(model).to(next(model.parameters()).device)
    hf_model.generation_config.eos_token_id = None  # no early stop: time a fixed number of tokens
    hf_model.generation_config.pad_token_id = 0

    @torch.inference_mode()
    def run(prompt: torch.Tensor, new_tokens: int) -> list[int]:
        out = hf_model.generate(
            prompt,
            attention_mask=torch.ones_like(prompt),
            do_sample=False,
            max_new_tokens=new_tokens,
            min_new_tokens=new_tokens,
        )
        return out[0, prompt.size(1) :].tolist()

    return DecodePath(TRANSFORMERS, run)


def bench_generate(
    model,
    model_name: str,
    *,
    new_tokens: int = 200,
    prompt_tokens: int = 16,
    repeats: int = 3,
    progress: bool = True,
) -> GenerateBench:
    """Time greedy decoding at batch 1 along each path; see the module docstring."""
    import_optional("transformers", "hf")
    from tqdm import tqdm

    model.eval()
    device = next(model.parameters()).device
    # A fixed pseudo-random prompt: any tokenizer's model can take it, and speed does not depend on it.
    ids = torch.randint(
        model.config.vocab_size, (1, prompt_tokens), generator=torch.Generator().manual_seed(0)
    )
    prompt = ids.to(device)  # (1, P)
    paths = [
        gptlab_path(UNCACHED, model, False),
        gptlab_path(KV_CACHE, model, True),
        transformers_path(model),
    ]

    machine = machine_info(device)
    timings = {path.name: DecodeTiming(path.name, [], [], new_tokens) for path in paths}
    # Interleaved repeats, so a change in machine load hits every path alike.
    runs = [(path, repeat) for repeat in range(repeats) for path in paths]
    for path in paths:
        path.run(prompt, WARMUP_TOKENS)
    for path, _ in tqdm(runs, desc="bench generate", unit="run", disable=not progress):
        seconds, tokens = timed(device, path.run, prompt, new_tokens)
        timings[path.name].seconds.append(seconds)
        timings[path.name].tokens = tokens
    machine["load_average_after"] = os.getloadavg()
    return GenerateBench(
        model_name, prompt_tokens, new_tokens, repeats, list(timings.values()), machine
    )


def timed(device: torch.device, fn: Callable, *args) -> tuple[float, list[int]]:
    """Wall-clock seconds of fn(*args) (waiting for the GPU to finish), and what it returned."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    result = fn(*args)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start, result


def machine_info(device: torch.device) -> dict:
    import transformers

    info = {
        "device": str(device),
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "load_average_before": os.getloadavg(),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def format_generate_table(bench: GenerateBench) -> str:
    """The result as a Markdown table, speedups relative to the uncached and transformers rows."""
    uncached, hf = bench.timing(UNCACHED), bench.timing(TRANSFORMERS)
    lines = [
        f"{bench.model}, batch 1, prompt {bench.prompt_tokens} tokens, {bench.new_tokens} new tokens "
        f"(greedy), median of {bench.repeats}, device {bench.machine['device']}, "
        f"{bench.machine['torch_threads']} threads",
        "",
        "| path | tokens/s | ms/token | vs no cache | vs transformers | same greedy tokens as KV cache |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for t in bench.timings:
        lines.append(
            f"| {t.name} | {t.tokens_per_s:.1f} | {1000 / t.tokens_per_s:.1f} "
            f"| {t.tokens_per_s / uncached.tokens_per_s:.2f}x | {t.tokens_per_s / hf.tokens_per_s:.2f}x "
            f"| {bench.agreement(t.name, KV_CACHE)}/{len(t.tokens)} |"
        )
    return "\n".join(lines)
