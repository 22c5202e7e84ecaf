"""The rows of `gptlab bench generate`: one way to decode each, all timed the same way.

    transformers generate      GPT2LMHeadModel.generate on our weights: the baseline
    no cache                   the whole context recomputed every token
    dynamic / static cache     KV cache grown in chunks / preallocated, both written in place;
                               the model prepared for decoding as `gptlab sample` does it
                               (on a CPU, fp32 linears packed for decoding: gptlab.inference.weight_layout)
    dynamic cache, nn.Linear   the same with the weights as training keeps them: the layout's share
    static cache + compile     torch.compile of the decode step (compile time reported apart)
    bf16, fp16                 weights and activations in half precision (fp16: GPU only)
    int8                       dynamic int8 quantization of the linears (CPU only)
    speculative                a draft model proposes tokens, the target checks (--draft)
    batch 8, batch 32          the dynamic cache on a batch of identical prompts

Every row runs under torch.inference_mode(), the transformers row as ours.
"""

from __future__ import annotations

import copy
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from gptlab.device import model_device
from gptlab.errors import GptlabError
from gptlab.inference.config import GenerationConfig
from gptlab.inference.decode import decode_steps
from gptlab.inference.precision import dtype_for_device, prepare_model
from gptlab.inference.speculative import speculative_generate
from gptlab.model.hf import to_hf_model
from gptlab.optional import import_optional

BASELINE, UNCACHED, DYNAMIC = "transformers generate", "no cache", "dynamic cache"
BASELINE_ROLE, REFERENCE_ROLE = "baseline", "reference"  # speedups / token agreement against
Clock = Callable[[], None]


@dataclass
class BenchRow:
    """One way to decode: run(prompt (B, P), new_tokens, clock) -> row 0's greedy tokens, calling
    clock() once per decode step (after the step's token is chosen)."""

    name: str
    batch: int
    run: Callable[[torch.Tensor, int, Clock], list[int]] | None
    role: str | None = None  # BASELINE_ROLE (transformers), REFERENCE_ROLE (the dynamic cache)
    compiled: bool = False  # torch.compile: warmed up at the timed length, its failure skips it
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
    read_mb_per_token: float | None = None  # weight bytes a batch-1 decode step reads
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
            "read_mb_per_token": self.read_mb_per_token,
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


def gptlab_row(name: str, model, batch: int = 1, role: str | None = None, **config) -> BenchRow:
    @torch.inference_mode()  # as the transformers row: both sides in the same mode
    def run(prompt: torch.Tensor, new_tokens: int, clock: Clock) -> list[int]:
        settings = GenerationConfig(
            max_new_tokens=new_tokens, temperature=0, stop_at_eot=False, **config
        )
        tokens = []
        for step in decode_steps(model, prompt, settings):
            clock()
            tokens.append(step.tokens[0])
        return tokens

    return BenchRow(name, batch, run, role=role, compiled=config.get("compile", False))


def transformers_row(model) -> BenchRow:
    """transformers' GPT2LMHeadModel.generate on the same weights, forced to make every token.
    A model GPT-2 cannot express (rotary positions, squared-ReLU, ...) skips the row; speedups are
    then relative to the dynamic cache."""
    transformers = import_optional("transformers", "hf")

    try:
        hf_model = to_hf_model(model).to(model_device(model))
    except GptlabError as exc:
        return BenchRow(
            BASELINE,
            1,
            None,
            role=BASELINE_ROLE,
            skipped=f"transformers' GPT-2 cannot run this model ({exc}); row skipped",
        )
    hf_model.generation_config.eos_token_id = None  # no early stop: time a fixed number of tokens
    hf_model.generation_config.pad_token_id = 0

    class StepClock(transformers.LogitsProcessor):
        """Called once per step, after the forward pass: where our rows call the clock."""

        def __init__(self, clock: Clock) -> None:
            self.clock = clock

        def __call__(self, input_ids, scores):
            self.clock()
            return scores

    @torch.inference_mode()
    def run(prompt: torch.Tensor, new_tokens: int, clock: Clock) -> list[int]:
        out = hf_model.generate(
            prompt,
            attention_mask=torch.ones_like(prompt),
            do_sample=False,
            max_new_tokens=new_tokens,
            min_new_tokens=new_tokens,
            logits_processor=transformers.LogitsProcessorList([StepClock(clock)]),
        )
        return out[0, prompt.size(1) :].tolist()

    return BenchRow(BASELINE, 1, run, role=BASELINE_ROLE)


def speculative_row(model, draft, draft_tokens: int) -> BenchRow:
    row = BenchRow(
        f"speculative (draft {draft.num_parameters() / 1e6:.1f}M, k={draft_tokens})", 1, None
    )

    def run(prompt: torch.Tensor, new_tokens: int, clock: Clock) -> list[int]:
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
    """The compiled step decodes its own copy: torch.compile traces input-major linears, not
    the packed ones the eager rows use (gptlab.inference.weight_layout)."""
    prepared = prepare_model(copy.deepcopy(model), compile=True)
    return gptlab_row("static cache + compile", prepared, cache="static", compile=True)


def build_rows(
    model, device, *, batches, draft=None, draft_tokens=4, compile=True
) -> list[BenchRow]:
    """`model` stays as loaded (the transformers row and the lower-precision rows start from
    it); the fp32 rows decode with a copy prepared as `gptlab sample` prepares one."""
    prepared = prepare_model(copy.deepcopy(model))
    rows = [
        transformers_row(model),
        gptlab_row(UNCACHED, prepared, cache="none"),
        gptlab_row(DYNAMIC, prepared, role=REFERENCE_ROLE),
        gptlab_row(f"{DYNAMIC}, nn.Linear layout", model),
        gptlab_row("static cache", prepared, cache="static"),
    ]
    if compile:
        rows.append(compile_row(model))
    rows += [dtype_row(model, "bf16", device), dtype_row(model, "fp16", device)]
    rows += int8_rows(model, device)
    if draft is not None:
        rows.append(speculative_row(prepared, prepare_model(copy.deepcopy(draft)), draft_tokens))
    else:
        rows.append(BenchRow("speculative", 1, None, skipped="no --draft model given; row skipped"))
    for batch in batches:
        if batch > 1:
            rows.append(gptlab_row(f"dynamic cache, batch {batch}", prepared, batch=batch))
    return rows
