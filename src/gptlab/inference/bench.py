"""`gptlab bench generate`: which inference optimisations matter, measured side by side in one run.

Every row decodes greedily a fixed number of new tokens from the same fixed prompt on the same
weights, forced to make all of them (no end-of-text stop):

    transformers generate      GPT2LMHeadModel.generate on our weights: the baseline
    no cache                   the whole context recomputed every token
    dynamic / static cache     KV cache growing by concatenation / preallocated
    static cache + compile     torch.compile of the decode step (compile time reported apart)
    bf16, fp16                 weights and activations in half precision (fp16: GPU only)
    int8                       dynamic int8 quantization of the linears (CPU only)
    speculative                a draft model proposes tokens, the target checks (--draft)
    batch 8, batch 32          the dynamic cache on a batch of identical prompts

Each row is warmed up, then timed `repeats` times, interleaved with the other rows so a change in
machine load hits every row alike; medians count. Per row: tokens/s (all rows of the batch),
ms per decode step p50 and p90, time to first token (the prefill), peak memory (process RSS on CPU,
max_memory_allocated on GPU), the weights' size, and for rows that change the weights the
perplexity change on a fixed text. Each row also reports whether it produced the same greedy tokens
as the dynamic cache row (lower precision may legitimately drift after a while).
"""

from __future__ import annotations

import copy
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from fnmatch import fnmatch

import torch
from tqdm import tqdm

from gptlab.device import model_device
from gptlab.eval.perplexity import evaluate_text
from gptlab.inference.config import GenerationConfig
from gptlab.inference.decode import decode_steps
from gptlab.inference.precision import dtype_for_device, prepare_model, weight_bytes
from gptlab.inference.speculative import speculative_generate
from gptlab.model.hf import to_hf_model
from gptlab.optional import import_optional
from gptlab.plotting import new_figure, save_figure
from gptlab.tables import markdown_table

WARMUP_TOKENS = 8
BASELINE, UNCACHED, DYNAMIC = "transformers generate", "no cache", "dynamic cache"
StepCallback = Callable[[int], None]


@dataclass
class BenchRow:
    """One way to decode: run(prompt (B, P), new_tokens, on_step) -> row 0's greedy tokens."""

    name: str
    batch: int
    run: Callable[[torch.Tensor, int, StepCallback], list[int]] | None
    model: torch.nn.Module | None = None  # its weights, when they differ from fp32
    skipped: str | None = None  # why the row was not run
    notes: list[str] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)  # whole call, per repeat
    first_token_s: list[float] = field(default_factory=list)  # prefill + first token, per repeat
    step_ms: list[float] = field(default_factory=list)  # every later decode step, all repeats
    peak_mb: list[float] = field(default_factory=list)  # the process's peak, per repeat
    growth_mb: list[float] = field(default_factory=list)  # peak minus the memory at the start
    tokens: list[int] = field(default_factory=list)
    weights_mb: float | None = None
    perplexity: float | None = None

    def summary(self, new_tokens: int) -> dict:
        if self.skipped or not self.seconds:
            return {"name": self.name, "batch": self.batch, "skipped": self.skipped}
        steps = sorted(self.step_ms)
        return {
            "name": self.name,
            "batch": self.batch,
            "tokens_per_s": self.batch * new_tokens / statistics.median(self.seconds),
            "ms_per_token_p50": percentile(steps, 0.5),
            "ms_per_token_p90": percentile(steps, 0.9),
            "first_token_ms": 1000 * statistics.median(self.first_token_s)
            if self.first_token_s
            else None,
            "peak_memory_mb": max(self.peak_mb),
            "peak_growth_mb": max(self.growth_mb),
            "weights_mb": self.weights_mb,
            "perplexity": self.perplexity,
            "seconds": self.seconds,
            "notes": self.notes,
        }


def percentile(sorted_values: list[float], q: float) -> float | None:
    if not sorted_values:
        return None
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


# ----------------------------------------------------------------------------------------------
# The rows.


def gptlab_row(name: str, model, batch: int = 1, **config) -> BenchRow:
    def run(prompt: torch.Tensor, new_tokens: int, on_step: StepCallback) -> list[int]:
        settings = GenerationConfig(
            max_new_tokens=new_tokens, temperature=0, stop_at_eot=False, **config
        )
        tokens = []
        for step in decode_steps(model, prompt, settings):
            on_step(step.index)
            tokens.append(step.tokens[0])
        return tokens

    return BenchRow(name, batch, run)


def transformers_row(model) -> BenchRow:
    """transformers' GPT2LMHeadModel.generate on the same weights, forced to make every token."""
    transformers = import_optional("transformers", "hf")

    hf_model = to_hf_model(model).to(model_device(model))
    hf_model.generation_config.eos_token_id = None  # no early stop: time a fixed number of tokens
    hf_model.generation_config.pad_token_id = 0

    class StepClock(transformers.LogitsProcessor):
        """Called once per step, after the forward pass: the hook our own rows get from on_step."""

        def __init__(self, on_step: StepCallback) -> None:
            self.on_step, self.step = on_step, 0

        def __call__(self, input_ids, scores):
            self.on_step(self.step)
            self.step += 1
            return scores

    @torch.inference_mode()
    def run(prompt: torch.Tensor, new_tokens: int, on_step: StepCallback) -> list[int]:
        out = hf_model.generate(
            prompt,
            attention_mask=torch.ones_like(prompt),
            do_sample=False,
            max_new_tokens=new_tokens,
            min_new_tokens=new_tokens,
            logits_processor=transformers.LogitsProcessorList([StepClock(on_step)]),
        )
        return out[0, prompt.size(1) :].tolist()

    return BenchRow(BASELINE, 1, run)


def speculative_row(model, draft, draft_tokens: int) -> BenchRow:
    row = BenchRow(
        f"speculative (draft {draft.num_parameters() / 1e6:.1f}M, k={draft_tokens})", 1, None
    )

    def run(prompt: torch.Tensor, new_tokens: int, on_step: StepCallback) -> list[int]:
        result = speculative_generate(
            model, draft, prompt[0].tolist(), new_tokens, draft_tokens=draft_tokens
        )
        row.notes[:] = [
            f"acceptance {result.acceptance_rate:.0%} ({result.accepted}/{result.proposed}), "
            f"{result.target_passes} target passes for {len(result.token_ids)} tokens"
        ]
        return result.token_ids

    row.run = run
    return row


def dtype_row(model, dtype: str, device: torch.device) -> BenchRow:
    used, note = dtype_for_device(dtype, device)
    if note is not None:
        return BenchRow(dtype, 1, None, skipped=note.replace(f"; using {used}", "; row skipped"))
    cast = prepare_model(copy.deepcopy(model), dtype)
    row = gptlab_row(f"{dtype}, dynamic cache", cast)
    row.model = cast
    return row


def int8_rows(model, device: torch.device) -> list[BenchRow]:
    if device.type != "cpu":
        return [
            BenchRow("int8", 1, None, skipped="int8 dynamic quantization is CPU only; row skipped")
        ]
    quantized = prepare_model(model, quantize="int8")
    rows = [
        gptlab_row("int8, dynamic cache", quantized),
        gptlab_row("int8, static cache", quantized, cache="static"),
    ]
    for row in rows:
        row.model = quantized
    return rows


def compile_row(model) -> BenchRow:
    return gptlab_row("static cache + compile", model, cache="static", compile=True)


def build_rows(
    model, device, *, batches, draft=None, draft_tokens=4, compile=True
) -> list[BenchRow]:
    rows = [
        transformers_row(model),
        gptlab_row(UNCACHED, model, cache="none"),
        gptlab_row(DYNAMIC, model),
        gptlab_row("static cache", model, cache="static"),
    ]
    if compile:
        rows.append(compile_row(model))
    rows += [dtype_row(model, "bf16", device), dtype_row(model, "fp16", device)]
    rows += int8_rows(model, device)
    if draft is not None:
        rows.append(speculative_row(model, draft, draft_tokens))
    else:
        rows.append(BenchRow("speculative", 1, None, skipped="no --draft model given; row skipped"))
    for batch in batches:
        if batch > 1:
            rows.append(gptlab_row(f"dynamic cache, batch {batch}", model, batch=batch))
    return rows


# ----------------------------------------------------------------------------------------------
# Timing.


def time_row(row: BenchRow, prompt: torch.Tensor, new_tokens: int, device: torch.device) -> None:
    """Run the row once on prompt (B, P), recording wall time, per-step times and peak memory."""
    prompt = prompt.expand(row.batch, -1)
    marks: list[float] = []

    def on_step(_step: int) -> None:
        synchronize(device)
        marks.append(time.perf_counter())

    before_mb = reset_peak_memory(device)
    synchronize(device)
    start = time.perf_counter()
    row.tokens = row.run(prompt, new_tokens, on_step)
    synchronize(device)
    row.seconds.append(time.perf_counter() - start)
    row.peak_mb.append(peak_memory_mb(device))
    row.growth_mb.append(row.peak_mb[-1] - before_mb)
    if marks:
        row.first_token_s.append(marks[0] - start)
        row.step_ms += [1000 * (b - a) for a, b in zip(marks, marks[1:], strict=False)]


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak_memory(device: torch.device) -> float:
    """Start measuring a new peak; return the memory in use now (MB)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return torch.cuda.memory_allocated(device) / 2**20
    try:  # Linux: writing 5 resets the process's peak RSS (VmHWM) to the current RSS
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass  # elsewhere the peak is the process's lifetime peak
    return peak_memory_mb(device)


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    import resource  # POSIX only, so imported where it is needed

    try:
        with open("/proc/self/status") as f:
            line = next(line for line in f if line.startswith("VmHWM:"))
        return int(line.split()[1]) / 1024  # kB
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def perplexity_of(model, tokenizer, text: str, max_tokens: int) -> float:
    return evaluate_text(model, tokenizer, text, max_tokens=max_tokens, progress=False).perplexity


# ----------------------------------------------------------------------------------------------
# The run.


@dataclass
class GenerateBench:
    model: str
    prompt_tokens: int
    new_tokens: int
    repeats: int
    rows: list[BenchRow]
    perplexity_text: str | None
    reference_perplexity: float | None
    machine: dict

    def row(self, name: str) -> BenchRow:
        return next(r for r in self.rows if r.name == name)

    def agreement(self, row: BenchRow) -> int:
        """How many leading greedy tokens of `row` equal those of the dynamic cache row."""
        reference = self.row(DYNAMIC).tokens
        pairs = list(zip(row.tokens, reference, strict=False))
        return next((i for i, (a, b) in enumerate(pairs) if a != b), len(pairs))

    def to_dict(self) -> dict:
        rows = []
        for row in self.rows:
            summary = row.summary(self.new_tokens)
            if not row.skipped:
                summary["same_greedy_tokens_as_dynamic_cache"] = self.agreement(row)
            rows.append(summary)
        return {
            "model": self.model,
            "prompt_tokens": self.prompt_tokens,
            "new_tokens": self.new_tokens,
            "repeats": self.repeats,
            "perplexity_text": self.perplexity_text,
            "reference_perplexity": self.reference_perplexity,
            "machine": self.machine,
            "rows": rows,
        }


def bench_generate(
    model,
    model_name: str,
    *,
    tokenizer=None,
    new_tokens: int = 200,
    prompt_tokens: int = 16,
    repeats: int = 3,
    batches: tuple[int, ...] = (1, 8, 32),
    draft=None,
    draft_tokens: int = 4,
    compile: bool = True,
    perplexity_text: tuple[str, str] | None = None,  # (description, text)
    perplexity_tokens: int = 4096,
    only: list[str] | None = None,
    progress: bool = True,
) -> GenerateBench:
    """Run the matrix; see the module docstring. only: shell-style patterns of row names."""
    model.eval()
    device = model_device(model)
    # A fixed pseudo-random prompt: any tokenizer's model can take it, and speed does not depend on it.
    ids = torch.randint(
        model.config.vocab_size, (1, prompt_tokens), generator=torch.Generator().manual_seed(0)
    )
    prompt = ids.to(device)  # (1, P)
    machine = machine_info(device)
    rows = build_rows(
        model, device, batches=batches, draft=draft, draft_tokens=draft_tokens, compile=compile
    )
    if only is not None:  # the two reference rows always stay
        rows = [
            r
            for r in rows
            if r.name in (BASELINE, DYNAMIC) or any(fnmatch(r.name, p) for p in only)
        ]
    active = [row for row in rows if not row.skipped]
    for row in active:
        row.weights_mb = weight_bytes(row.model if row.model is not None else model) / 2**20
        start = time.perf_counter()
        # The compiled step is warmed up at the timed length: a static cache of another size
        # is another shape, and would recompile inside the first timed run.
        warmup = new_tokens if "compile" in row.name else WARMUP_TOKENS
        try:
            row.run(prompt.expand(row.batch, -1), warmup, lambda _step: None)
        except Exception as exc:  # noqa: BLE001  (e.g. torch.compile without a working compiler)
            if "compile" not in row.name:
                raise
            first_line = (
                str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
            )
            row.skipped = f"torch.compile failed ({first_line}); row skipped"
            continue
        if "compile" in row.name:
            row.notes.append(f"warm-up incl. compile {time.perf_counter() - start:.0f} s")
    active = [row for row in rows if not row.skipped]

    runs = [row for _ in range(repeats) for row in active]  # interleaved repeats
    for row in tqdm(runs, desc="bench generate", unit="run", disable=not progress):
        time_row(row, prompt, new_tokens, device)
    machine["load_average_after"] = os.getloadavg()

    reference_ppl = None
    if perplexity_text is not None and tokenizer is not None:
        text = perplexity_text[1]
        reference_ppl = perplexity_of(model, tokenizer, text, perplexity_tokens)
        for row in active:
            if row.model is not None:
                row.perplexity = perplexity_of(row.model, tokenizer, text, perplexity_tokens)
    return GenerateBench(
        model_name,
        prompt_tokens,
        new_tokens,
        repeats,
        rows,
        None if perplexity_text is None else perplexity_text[0],
        reference_ppl,
        machine,
    )


def machine_info(device: torch.device) -> dict:
    import transformers  # the reference the bench runs beside (the hf extra)

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


# ----------------------------------------------------------------------------------------------
# Reporting.


def format_generate_table(bench: GenerateBench) -> str:
    """The result as one Markdown table; speedups relative to the transformers row."""
    baseline = bench.row(BASELINE).summary(bench.new_tokens)["tokens_per_s"]
    memory = "max_memory_allocated" if bench.machine["device"].startswith("cuda") else "peak RSS"
    lines = [
        f"{bench.model}, prompt {bench.prompt_tokens} tokens, {bench.new_tokens} new tokens (greedy), "
        f"median of {bench.repeats}, device {bench.machine['device']}, "
        f"{bench.machine['torch_threads']} threads, load {fmt_load(bench.machine)}",
        "",
    ]
    headers = [
        "path",
        "batch",
        "tokens/s",
        "vs transformers",
        "ms/token p50",
        "p90",
        "first token ms",
        f"{memory} MB (+ during run)",
        "weights MB",
        "perplexity change",
        "same tokens",
        "notes",
    ]
    rows = []
    for row in bench.rows:
        if row.skipped:
            rows.append([row.name, row.batch, *["-"] * 9, row.skipped])
            continue
        s = row.summary(bench.new_tokens)
        ppl = "-"
        if row.perplexity is not None and bench.reference_perplexity:
            ppl = f"{100 * (row.perplexity / bench.reference_perplexity - 1):+.2f}%"
        rows.append(
            [
                row.name,
                row.batch,
                f"{s['tokens_per_s']:.1f}",
                f"{s['tokens_per_s'] / baseline:.2f}x",
                fmt(s["ms_per_token_p50"]),
                fmt(s["ms_per_token_p90"]),
                fmt(s["first_token_ms"]),
                f"{s['peak_memory_mb']:.0f} (+{s['peak_growth_mb']:.0f})",
                fmt_mb(s["weights_mb"]),
                ppl,
                f"{bench.agreement(row)}/{len(row.tokens)}",
                "; ".join(row.notes),
            ]
        )
    lines.append(markdown_table(headers, rows, align="l" + "r" * 10 + "l").rstrip())
    if bench.reference_perplexity is not None:
        lines += [
            "",
            f"Perplexity (fp32) on {bench.perplexity_text}: {bench.reference_perplexity:.3f}",
        ]
    return "\n".join(lines)


def fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def fmt_mb(value: float) -> str:
    return f"{value:.1f}" if value < 10 else f"{value:.0f}"


def fmt_load(machine: dict) -> str:
    before, after = machine["load_average_before"][0], machine.get("load_average_after", [None])[0]
    return f"{before:.1f} -> {after:.1f}" if after is not None else f"{before:.1f}"


def plot_generate(bench: GenerateBench, path) -> None:
    """Two panels: throughput vs batch size, and each batch-1 row's speedup over transformers."""
    summaries = [r.summary(bench.new_tokens) for r in bench.rows if not r.skipped]
    by_batch = sorted(
        (s for s in summaries if s["name"] == DYNAMIC or s["name"].startswith(f"{DYNAMIC}, batch")),
        key=lambda s: s["batch"],
    )
    baseline = next(s for s in summaries if s["name"] == BASELINE)["tokens_per_s"]
    single = [s for s in summaries if s["batch"] == 1]

    fig = new_figure(12, 4.5)
    left, right = fig.subplots(1, 2)
    batches = [s["batch"] for s in by_batch]
    left.plot(
        batches, [s["tokens_per_s"] for s in by_batch], marker="o", label="tokens/s (all rows)"
    )
    left.set_xscale("log", base=2)
    left.set_xlabel("batch size")
    left.set_ylabel("tokens/s")
    left.set_title("throughput vs batch (dynamic cache)")
    latency = left.twinx()
    latency.plot(batches, [s["ms_per_token_p50"] for s in by_batch], marker="s", color="tab:red")
    latency.set_ylabel("ms per token per request (p50)", color="tab:red")
    right.barh([s["name"] for s in single], [s["tokens_per_s"] / baseline for s in single])
    right.axvline(1.0, color="black", linewidth=0.8)
    right.set_xlabel("speedup vs transformers generate (batch 1)")
    right.invert_yaxis()
    fig.suptitle(f"{bench.model}, {bench.new_tokens} new tokens, {bench.machine['device']}")
    save_figure(fig, path, dpi=120)
