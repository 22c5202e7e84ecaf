"""The one decoding loop: `decode_steps` yields one step at a time, and every caller consumes it.

    for step in decode_steps(model, prompts, config, tokenizer=tokenizer):
        step.tokens        the token chosen for each row (B,) as ints
        step.text          each row's new text (when a tokenizer is given; '' otherwise)
        step.finished      {row: reason} for the rows that finished at this step
        step.logits        the raw next-token logits (B, V), when asked for with logits=True
        step.rows          every row's state: its kept tokens, text stream and finish reason

The loop ends when every row has finished (max_new_tokens, end-of-text, a stop string); a caller
that wants less stops iterating (a `break`, or closing the generator): nothing else to cancel.
`generate`, chat, the explorer's stream, speculative decoding's draft and the bench all read it.

Modes: each step's computation runs inside `torch.inference_mode()` entered and left around that
step alone, so no autograd graph is built, and the caller's code between steps keeps the caller's
grad mode (a generator decorated with @torch.inference_mode() relies on torch re-entering the mode
on every resume; an explicit block per step says what it means). The yielded tensors are
inference tensors: read them, don't train on them.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import torch

from gptlab.device import model_device
from gptlab.errors import GptlabError, require
from gptlab.inference.config import FINISH_EOT, FINISH_LENGTH, FINISH_STOP, GenerationConfig
from gptlab.inference.forward import (
    compiled_decode_step,
    left_pad,
    new_cache,
    next_token_logits,
    require_cache_fits,
)
from gptlab.inference.sampling import choose_next_tokens
from gptlab.inference.text_stream import TextStream
from gptlab.model.kv_cache import KVCache


@dataclass
class RowState:
    """One sequence being decoded: the new tokens it keeps, its text so far, why it ended."""

    prompt_index: int
    sample_index: int
    tokens: list[int] = field(default_factory=list)  # without the end-of-text token
    stream: TextStream | None = None  # given a tokenizer: incremental text, stop strings
    finish_reason: str | None = None  # FINISH_LENGTH, FINISH_EOT or FINISH_STOP once finished

    @property
    def finished(self) -> bool:
        return self.finish_reason is not None

    @property
    def text(self) -> str | None:
        return None if self.stream is None else self.stream.text

    def take(self, token: int, eot_id: int | None) -> str:
        """Add this step's token; return the text that became final with it."""
        if token == eot_id:
            self.finish_reason = FINISH_EOT  # the end-of-text token is not kept
            return self.stream.finish() if self.stream is not None else ""
        self.tokens.append(token)
        if self.stream is None:
            return ""
        piece = self.stream.push(token)
        if self.stream.stopped:
            self.finish_reason = FINISH_STOP
        return piece

    def end(self, reason: str) -> str:
        """Finish for `reason`; return the text held back until now."""
        self.finish_reason = reason
        return self.stream.finish() if self.stream is not None else ""


@dataclass
class DecodeStep:
    """What one step of decoding produced (see the module docstring)."""

    index: int
    tokens: list[int]
    text: list[str]
    finished: dict[int, str]
    rows: list[RowState]
    logits: torch.Tensor | None = None

    @property
    def done(self) -> bool:
        return all(row.finished for row in self.rows)


class DecodeState:
    """The tensors one decode carries from step to step: the context (B, T) in a preallocated
    buffer, its padding mask, the KV cache, the random generator and the repetition penalty's
    record of seen tokens."""

    def __init__(self, model, rows: list[list[int]], config: GenerationConfig, cache) -> None:
        device = model_device(model)
        self.model, self.config = model, config
        tokens, mask = left_pad(rows, device)
        self.length = tokens.size(1)
        capacity = self.length + config.max_new_tokens
        self.tokens = torch.zeros(len(rows), capacity, dtype=torch.long, device=device)
        self.tokens[:, : self.length] = tokens
        self.mask = None
        if mask is not None:  # padding to hide: the new tokens are all real
            self.mask = torch.ones(len(rows), capacity, dtype=torch.long, device=device)
            self.mask[:, : self.length] = mask
        self.cache = (
            cache if cache is not None else new_cache(model, config.cache, len(rows), capacity)
        )
        self.decode_step = compiled_decode_step(model) if config.compile else None
        self.generator = None
        if config.seed is not None:
            self.generator = torch.Generator(device=device).manual_seed(config.seed)
        self.seen = None  # (B, V) bool: tokens already in each row's text
        if config.repetition_penalty != 1.0:
            self.seen = torch.zeros(
                len(rows), model.config.vocab_size, dtype=torch.bool, device=device
            )
            for row, prompt in enumerate(rows):
                self.seen[row, torch.tensor(prompt, device=device)] = True
        self.finished = torch.zeros(len(rows), dtype=torch.bool, device=device)

    def next_logits(self) -> torch.Tensor:
        """(B, V) logits of the token after the context."""
        mask = None if self.mask is None else self.mask[:, : self.length]
        logits, self.cache = next_token_logits(
            self.model, self.tokens[:, : self.length], mask, self.cache, self.decode_step
        )
        return logits

    def choose(self, logits: torch.Tensor) -> torch.Tensor:
        """(B,) the next tokens; finished rows keep running (the batch is rectangular) with 0."""
        chosen = choose_next_tokens(logits, self.config, self.seen, self.generator)
        return chosen.masked_fill(self.finished, 0)

    def append(self, chosen: torch.Tensor) -> None:
        self.tokens[:, self.length] = chosen
        self.length += 1
        if self.seen is not None:
            self.seen[torch.arange(chosen.size(0), device=chosen.device), chosen] = True


def decode_steps(
    model,
    prompts: Sequence[int] | Sequence[Sequence[int]],
    config: GenerationConfig,
    *,
    tokenizer=None,
    logits: bool = False,
    cache: KVCache | None = None,
) -> Iterator[DecodeStep]:
    """Continue one prompt (token ids) or a batch, num_samples times each: one DecodeStep per
    new token. Rows are prompt by prompt, sample by sample.

    A tokenizer is needed for stop strings and text; its eot_id ends a row when
    config.stop_at_eot. logits=True hands each step's raw logits (B, V). cache: a KVCache that
    already holds the first cache.seq_len tokens of a single prompt (chat and speculative
    decoding reuse one across calls); it is extended in place, and the prompt plus the new
    tokens must fit the context. Everything is checked now, before the first step.
    """
    prompts = checked_prompts(model, prompts)
    if config.stop_strings and tokenizer is None:
        raise GptlabError("stop strings need the tokenizer: pass tokenizer=")
    device = model_device(model)
    batch = len(prompts) * config.num_samples
    longest = max(map(len, prompts)) + config.max_new_tokens
    if cache is not None:
        require(batch == 1, "a KV cache passed in is for a single sequence")
        require(
            cache.seq_len < len(prompts[0]) and longest <= model.config.block_size,
            "a cache passed in must hold less than the prompt, and the prompt plus "
            f"max_new_tokens must fit the context ({model.config.block_size})",
        )
    require_cache_fits(model, batch, longest, device)  # before a row is built
    rows = [prompt for prompt in prompts for _ in range(config.num_samples)]
    model.eval()
    states = [
        RowState(
            row // config.num_samples,
            row % config.num_samples,
            stream=None if tokenizer is None else TextStream(tokenizer, config.stop_strings),
        )
        for row in range(len(rows))
    ]
    eot_id = getattr(tokenizer, "eot_id", None) if config.stop_at_eot else None
    with torch.inference_mode():
        state = DecodeState(model, rows, config, cache)
    return _steps(state, states, eot_id, logits)


def _steps(
    state: DecodeState, rows: list[RowState], eot_id: int | None, want_logits: bool
) -> Iterator[DecodeStep]:
    last = state.config.max_new_tokens - 1
    for index in range(last + 1):
        with torch.inference_mode():
            step_logits = state.next_logits()
            if index == 0:
                require_finite(step_logits)
            chosen = state.choose(step_logits)
            state.append(chosen)
        tokens = chosen.tolist()
        text, finished = update_rows(rows, tokens, eot_id, is_last=index == last)
        if finished and index < last:
            with torch.inference_mode():
                state.finished = torch.tensor([r.finished for r in rows], device=chosen.device)
        step = DecodeStep(index, tokens, text, finished, rows, step_logits if want_logits else None)
        yield step
        if step.done:
            return


def update_rows(
    rows: list[RowState], tokens: list[int], eot_id: int | None, is_last: bool
) -> tuple[list[str], dict[int, str]]:
    """Hand each unfinished row its token: (each row's new text, {row: reason} for the rows
    that finished now)."""
    text, finished = [""] * len(rows), {}
    for i, (row, token) in enumerate(zip(rows, tokens, strict=True)):
        if row.finished:
            continue
        text[i] = row.take(token, eot_id)
        if not row.finished and is_last:
            text[i] += row.end(FINISH_LENGTH)
        if row.finished:
            finished[i] = row.finish_reason
    return text, finished


def require_finite(logits: torch.Tensor) -> None:
    """Damaged weights show in the first logits. Greedy decoding of NaN would quietly pick
    token 0 and sampling fail deep in torch; checked once, not on every step (a sync)."""
    require(
        bool(torch.isfinite(logits).all()),
        "the model's next-token logits are NaN or inf: its weights are damaged "
        "(or overflowed in a low-precision dtype); try another checkpoint, or fp32",
    )


def checked_prompts(model, prompt_ids) -> list[list[int]]:
    """One prompt (a list of ints) or many (a list of lists) -> a non-empty list of non-empty
    prompts whose ids are in the model's vocabulary."""
    if isinstance(prompt_ids, torch.Tensor):
        prompt_ids = prompt_ids.tolist()
    prompt_ids = list(prompt_ids)
    require(len(prompt_ids) > 0, "no prompt given; pass the token ids of at least one prompt")
    if not isinstance(prompt_ids[0], Sequence | torch.Tensor):
        prompt_ids = [prompt_ids]
    prompts = [[int(t) for t in p] for p in prompt_ids]
    require(
        all(len(p) > 0 for p in prompts), "a prompt is empty (0 tokens); give some text to continue"
    )
    vocab_size = model.config.vocab_size
    require(
        all(0 <= t < vocab_size for p in prompts for t in p),
        f"prompt token ids must be in [0, {vocab_size})",
    )
    return prompts
