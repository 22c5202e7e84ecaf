"""`gptlab bench generate`: which inference optimisations matter, measured side by side in one run.

Every row (gptlab.bench.rows) decodes greedily a fixed number of new tokens from the same fixed
prompt on the same weights, forced to make all of them (no end-of-text stop). Each row is warmed
up, then timed `repeats` times, interleaved with the other rows so a change in machine load hits
every row alike; medians count. Per row: tokens/s (all rows of the batch), ms per decode step p50
and p90, time to first token (the prefill), peak memory (process RSS on CPU, max_memory_allocated
on GPU), the weights' size, the weight bytes one step reads, and for rows that change the
weights the perplexity change on a fixed text. Each row also reports whether it produced the
same greedy tokens as the dynamic cache row (lower precision may legitimately drift).

The limit: a batch-1 decode step must read every weight matrix once, so no row can beat
bandwidth / bytes read per token; the bandwidth is a large copy measured in the same run
(gptlab.bench.measure), and the table prints each row's share of its limit.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from fnmatch import fnmatch

import torch
from tqdm import tqdm

from gptlab.bench.measure import (
    bandwidth_gb_s,
    machine_info,
    read_bytes_per_token,
    time_row,
)
from gptlab.bench.rows import BASELINE_ROLE, REFERENCE_ROLE, BenchRow, build_rows
from gptlab.device import model_device
from gptlab.errors import GptlabError
from gptlab.eval.perplexity import evaluate_text
from gptlab.inference.precision import weight_bytes

WARMUP_TOKENS = 8


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

    bandwidth_gb_s: float | None = None  # the copy probe, measured in the same run

    def with_role(self, role: str) -> BenchRow:
        return next(r for r in self.rows if r.role == role)

    def speed_baseline(self) -> BenchRow:
        """The row speedups are relative to: transformers, or the dynamic cache for a model
        transformers cannot run."""
        baseline = self.with_role(BASELINE_ROLE)
        return self.with_role(REFERENCE_ROLE) if baseline.skipped else baseline

    def agreement(self, row: BenchRow) -> int:
        """How many leading greedy tokens of `row` equal those of the dynamic cache row."""
        reference = self.with_role(REFERENCE_ROLE).tokens
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
            "bandwidth_gb_s": self.bandwidth_gb_s,
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
        unmatched = [p for p in only if not any(fnmatch(r.name, p) for r in rows)]
        if unmatched:  # a typo would otherwise time only the references, silently
            raise GptlabError(
                f"--rows {' '.join(map(repr, unmatched))} matches no row; the rows are: "
                + ", ".join(repr(r.name) for r in rows)
            )
        rows = [r for r in rows if r.role is not None or any(fnmatch(r.name, p) for p in only)]
    for row in rows:
        if not row.skipped:
            warm_up(row, model, prompt, new_tokens)
    active = [row for row in rows if not row.skipped]
    bandwidth = bandwidth_gb_s(device)

    runs = [row for _ in range(repeats) for row in active]  # interleaved repeats
    for row in tqdm(runs, desc="bench generate", unit="run", disable=not progress):
        time_row(row, prompt, new_tokens, device)
    machine["load_average_after"] = os.getloadavg()
    bandwidth = max(bandwidth, bandwidth_gb_s(device))  # before and after: the better one

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
        bandwidth,
    )


def warm_up(row: BenchRow, model, prompt: torch.Tensor, new_tokens: int) -> None:
    """One untimed run; records the row's weight sizes. A compiled row is warmed up at the
    timed length (a static cache of another size is another shape, and would recompile inside
    the first timed run), and a compile failure skips it instead of ending the bench."""
    weights = row.model if row.model is not None else model
    row.weights_mb = weight_bytes(weights) / 2**20
    row.read_mb_per_token = read_bytes_per_token(weights) / 2**20
    start = time.perf_counter()
    try:
        row.run(prompt.expand(row.batch, -1), new_tokens if row.compiled else WARMUP_TOKENS, noop)
    except Exception as exc:  # noqa: BLE001  (e.g. torch.compile without a working compiler)
        if not row.compiled:
            raise
        message = str(exc).strip()
        first_line = message.splitlines()[0][:160] if message else type(exc).__name__
        row.skipped = f"torch.compile failed ({first_line}); row skipped"
        return
    if row.compiled:
        row.notes.append(f"warm-up incl. compile {time.perf_counter() - start:.0f} s")


def noop() -> None:
    pass


def perplexity_of(model, tokenizer, text: str, max_tokens: int) -> float:
    return evaluate_text(model, tokenizer, text, max_tokens=max_tokens, progress=False).perplexity
