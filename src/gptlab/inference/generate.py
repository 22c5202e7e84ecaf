"""Text generation: a decoding loop and the logits processors that shape each step's choice.

One step of decoding is

    logits of the next token (B, vocab)                       the model, with or without KV cache
      -> repetition penalty -> temperature -> top-k -> top-p    logits processors, in HF's order
      -> argmax (greedy) or a draw from the softmax             choose_next_tokens

and `generate` repeats it until every sequence has max_new_tokens, produced the end-of-text
token, or (given a tokenizer) produced one of the stop strings.

Batches: prompts of different lengths are left-padded, so every row's newest token sits in the
last column; an attention mask hides the padding and position ids restart at 0 on each row's
first real token, so a row's tokens are exactly those it would get alone.

The context window: GPT-2's positions are learned embeddings for 0..block_size-1, so a cached
key cannot be "shifted" to a new position. Once a sequence outgrows block_size, each step
recomputes the last block_size tokens at positions 0..block_size-1 without a cache: every token
past that point costs a full block_size forward pass (as uncached decoding does), never a crash.

Speed switches (GenerationConfig): `cache` picks the KV cache ("dynamic" grows by concatenation,
"static" is preallocated to the prompt + max_new_tokens and written in place, "none" recomputes
the context every step); `compile` runs the one-token decode step through torch.compile, which
needs the static cache so the step's shapes never change. Weight dtypes and int8 quantization
are properties of the model: see gptlab.inference.precision. Speculative decoding: gptlab.inference.speculative.
"""

from __future__ import annotations

import codecs
import os
import shutil
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from gptlab.device import model_device, require_memory
from gptlab.errors import GptlabError, require
from gptlab.model.kv_cache import KVCache
from gptlab.model.static_cache import StaticKVCache

FINISH_LENGTH = "length"  # max_new_tokens reached
FINISH_EOT = "eot"  # the model produced the end-of-text token
FINISH_STOP = "stop"  # one of the stop strings appeared

CACHE_KINDS = ("dynamic", "static", "none")


@dataclass(frozen=True)
class GenerationConfig:
    """How to decode. temperature 0 means greedy (argmax); None/1.0 switch a processor off."""

    max_new_tokens: int = 100
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float = 1.0
    repetition_penalty: float = 1.0  # CTRL-style: > 1 makes tokens already in the text less likely
    num_samples: int = 1  # sequences per prompt
    seed: int | None = None  # seeds a torch.Generator: the same seed gives the same text
    stop_strings: tuple[str, ...] = ()  # the text is cut before the first one (needs a tokenizer)
    stop_at_eot: bool = True
    cache: str = "dynamic"  # "dynamic", "static" or "none" (recompute the context: the reference)
    compile: bool = False  # torch.compile the decode step (needs cache="static")

    def __post_init__(self) -> None:
        require(
            isinstance(self.max_new_tokens, int) and self.max_new_tokens > 0,
            f"max_new_tokens must be a positive integer, got {self.max_new_tokens!r}",
        )
        require(
            self.temperature >= 0,
            f"temperature must be >= 0 (0 means greedy), got {self.temperature!r}",
        )
        require(self.top_k is None or self.top_k >= 1, f"top_k must be >= 1, got {self.top_k!r}")
        require(
            0 < self.top_p <= 1, f"top_p must be in (0, 1] (1 switches it off), got {self.top_p!r}"
        )
        require(
            self.repetition_penalty > 0,
            f"repetition_penalty must be > 0 (1 switches it off), got {self.repetition_penalty!r}",
        )
        require(self.num_samples >= 1, f"num_samples must be >= 1, got {self.num_samples!r}")
        require(
            self.seed is None or 0 <= self.seed < 2**63,
            f"seed must be in [0, 2**63), got {self.seed!r}",
        )
        require(all(self.stop_strings), "stop strings must not be empty")
        require(
            self.cache in CACHE_KINDS,
            f"cache must be one of {', '.join(CACHE_KINDS)}, got {self.cache!r}",
        )
        require(
            not self.compile or self.cache == "static",
            "compile needs the static cache (a growing cache changes shape every step): "
            "use cache='static' (--cache static)",
        )

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


@dataclass
class Generation:
    """One generated sequence: the new tokens (without the end-of-text token) and their text."""

    prompt_index: int
    sample_index: int
    token_ids: list[int]
    finish_reason: str  # FINISH_LENGTH, FINISH_EOT or FINISH_STOP
    text: str | None = None  # set when a tokenizer was given; cut before a stop string


# ----------------------------------------------------------------------------------------------
# Logits processors: each takes logits (B, V) and returns new logits (B, V).


def apply_repetition_penalty(
    logits: torch.Tensor, seen: torch.Tensor, penalty: float
) -> torch.Tensor:
    """CTRL's penalty, as Hugging Face applies it: for tokens already seen (seen: (B, V) bool),
    positive logits are divided by `penalty` and negative ones multiplied, so both move down."""
    penalized = torch.where(logits > 0, logits / penalty, logits * penalty)
    return torch.where(seen, penalized, logits)


def top_k_filter(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the k largest logits per row; the rest become -inf (never sampled)."""
    if k >= logits.size(-1):
        return logits
    kth_largest = torch.topk(logits, k, dim=-1).values[..., -1:]  # (B, 1)
    return logits.masked_fill(logits < kth_largest, float("-inf"))


def top_p_filter(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Nucleus filtering: keep the smallest set of most likely tokens whose probability reaches p."""
    if p >= 1.0:
        return logits
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
    probs = torch.softmax(sorted_logits, dim=-1)
    mass_before = torch.cumsum(probs, dim=-1) - probs  # probability of the tokens ranked above
    drop_sorted = mass_before >= p  # the set already reached p without this token (top-1 is kept)
    drop = drop_sorted.scatter(-1, order, drop_sorted)  # back to vocabulary order
    return logits.masked_fill(drop, float("-inf"))


def shape_logits(
    logits: torch.Tensor, config: GenerationConfig, seen: torch.Tensor | None = None
) -> torch.Tensor:
    """The processors the config asks for, in order: (B, V) -> (B, V) logits the next token is
    drawn from (-inf for cut tokens). Greedy decoding applies only the repetition penalty, then
    takes the argmax."""
    logits = logits.float()
    if config.repetition_penalty != 1.0 and seen is not None:
        logits = apply_repetition_penalty(logits, seen, config.repetition_penalty)
    if config.greedy:
        return logits
    logits = logits / config.temperature
    if config.top_k is not None:
        logits = top_k_filter(logits, config.top_k)
    return top_p_filter(logits, config.top_p)


def choose_next_tokens(
    logits: torch.Tensor,
    config: GenerationConfig,
    seen: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Apply the processors the config asks for, then pick one token per row: (B, V) -> (B,)."""
    logits = shape_logits(logits, config, seen)
    if config.greedy:
        return logits.argmax(dim=-1)
    probs = torch.softmax(logits, dim=-1)
    return torch.multinomial(probs, num_samples=1, generator=generator).squeeze(-1)


# ----------------------------------------------------------------------------------------------
# The model side: next-token logits for a (possibly padded) batch, with or without a KV cache.


def left_pad(
    prompts: Sequence[Sequence[int]], device: torch.device
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Prompts of any lengths -> tokens (B, T) padded on the left, and a mask (B, T) with 1 for real
    tokens. The mask is None when all prompts have the same length (no padding to hide)."""
    longest = max(len(p) for p in prompts)
    tokens = torch.zeros(len(prompts), longest, dtype=torch.long)
    mask = torch.zeros(len(prompts), longest, dtype=torch.long)
    for row, prompt in enumerate(prompts):
        tokens[row, longest - len(prompt) :] = torch.tensor(prompt, dtype=torch.long)
        mask[row, longest - len(prompt) :] = 1
    if bool(mask.all()):
        return tokens.to(device), None
    return tokens.to(device), mask.to(device)


def positions_from_mask(mask: torch.Tensor) -> torch.Tensor:
    """Position ids (B, T) counting real tokens only: 0 at each row's first real token."""
    return (mask.cumsum(dim=-1) - 1).clamp(min=0)


def new_cache(model, kind: str, batch: int, max_len: int) -> KVCache | StaticKVCache | None:
    """An empty cache of `kind` for `batch` rows of up to max_len positions (None for "none")."""
    if kind == "none":
        return None
    if kind == "static":
        return StaticKVCache.for_model(model, batch, min(max_len, model.config.block_size))
    return KVCache(model.config.n_layer)


def next_token_logits(
    model,
    tokens: torch.Tensor,
    mask: torch.Tensor | None,
    cache: KVCache | StaticKVCache | None,
    decode_step=None,
) -> tuple[torch.Tensor, KVCache | StaticKVCache | None]:
    """Logits (B, V) for the token after `tokens` (B, T), and the cache to use next step.

    With a cache, only the tokens it has not seen yet go through the model (the whole prompt on
    the first step, then one token, through `decode_step` when given: a compiled model). Without
    one, or once T exceeds block_size, the last block_size tokens are recomputed from scratch at
    positions 0..block_size-1; the cache is then dropped, since its keys were computed at
    positions that no longer apply.
    """
    block_size = model.config.block_size
    if cache is not None and tokens.size(1) <= block_size:
        past = cache.seq_len
        positions = None if mask is None else positions_from_mask(mask)[:, past:]
        forward = decode_step if decode_step is not None and past > 0 else model
        logits, _ = forward(
            tokens[:, past:],
            attention_mask=mask,
            position_ids=positions,
            kv_cache=cache,
            only_last=True,
        )
        return logits[:, -1, :], cache
    window = tokens[:, -block_size:]
    window_mask = None if mask is None else mask[:, -block_size:]
    positions = None if window_mask is None else positions_from_mask(window_mask)
    logits, _ = model(window, attention_mask=window_mask, position_ids=positions, only_last=True)
    return logits[:, -1, :], None


# ----------------------------------------------------------------------------------------------
# The text side: incremental decoding, stop strings and streaming.


class TextStream:
    """Turns one sequence's new tokens into text as they arrive.

    BPE tokens are byte sequences, and a multi-byte character may be split across two tokens, so
    bytes go through an incremental UTF-8 decoder that only emits complete characters. Text that
    could be the beginning of a stop string is held back until it is clear it is not one, so the
    pieces handed out always add up to the final (cut) text.
    """

    def __init__(self, tokenizer, stop_strings: Sequence[str] = ()) -> None:
        self._tokenizer = tokenizer
        self._decode_bytes = getattr(tokenizer, "decode_bytes", None)
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._stop_strings = tuple(stop_strings)
        self.text = ""  # all text decoded so far (cut before a stop string once one is found)
        self._emitted = 0  # how much of self.text has been handed out
        self.stopped = False

    def push(self, token_id: int) -> str:
        """Add one token; return the text that became final with it (possibly '')."""
        if self._decode_bytes is not None:
            self._append(self._utf8.decode(self._decode_bytes([token_id])))
        else:
            self._append(self._tokenizer.decode([token_id]))
        return self._emit(final=self.stopped)

    def finish(self) -> str:
        """The sequence ended: flush held-back text (and any incomplete character, as U+FFFD)."""
        if self._decode_bytes is not None and not self.stopped:
            self._append(self._utf8.decode(b"", final=True))
        return self._emit(final=True)

    def _append(self, new_text: str) -> None:
        """Add text and cut it before the first stop string, looking only where one can newly end."""
        longest_stop = max((len(s) for s in self._stop_strings), default=0)
        search_from = max(0, len(self.text) - longest_stop + 1)
        self.text += new_text
        hits = [i for i in (self.text.find(s, search_from) for s in self._stop_strings) if i >= 0]
        if hits:
            self.text = self.text[: min(hits)]
            self.stopped = True

    def _emit(self, final: bool) -> str:
        end = len(self.text) if final else len(self.text) - self._held_back()
        piece = self.text[self._emitted : end]
        self._emitted = max(self._emitted, end)
        return piece

    def _held_back(self) -> int:
        """Length of the longest tail of the text that begins some stop string."""
        longest = 0
        for stop in self._stop_strings:
            for n in range(min(len(stop) - 1, len(self.text)), longest, -1):
                if self.text.endswith(stop[:n]):
                    longest = n
                    break
        return longest


# ----------------------------------------------------------------------------------------------
# The loop.

TextCallback = Callable[[int, str], None]  # (sequence index, new text)
StepCallback = Callable[[int], None]  # (step index), once the step's tokens are chosen
# (step index, the step's raw logits (B, V), the chosen tokens (B,)), before finished rows are masked
TokenCallback = Callable[[int, torch.Tensor, torch.Tensor], None]


def require_cache_fits(model, batch: int, length: int, device: torch.device) -> None:
    """Refuse a batch whose keys and values (and logits) cannot fit, before allocating them."""
    c = model.config
    head_dim = c.n_embd // c.n_head
    kv_heads = c.n_kv_head or c.n_head
    element = next(model.parameters()).element_size()
    context = min(length, c.block_size)
    cache = 2 * c.n_layer * batch * kv_heads * context * head_dim * element
    logits = batch * c.padded_vocab_size * 4
    require_memory(cache + logits, f"generating {batch} sequence(s) of {length} tokens", device)


@torch.inference_mode()
def generate(
    model,
    prompt_ids: Sequence[int] | Sequence[Sequence[int]],
    config: GenerationConfig,
    *,
    tokenizer=None,
    on_text: TextCallback | None = None,
    on_step: StepCallback | None = None,
    on_token: TokenCallback | None = None,
) -> list[Generation]:
    """Continue one prompt (a list of token ids) or a batch of them, num_samples times each.

    Returns the sequences prompt by prompt, sample by sample. A tokenizer is needed for stop
    strings and streaming; `on_text(i, piece)` then receives each sequence's text as it grows.
    The model's end-of-text token (tokenizer.eot_id) stops a sequence when config.stop_at_eot.
    `on_step(step)` is called after each step's tokens are chosen (benchmarks time it), and
    `on_token(step, logits, tokens)` with the logits they were chosen from (the explorer shows
    each token's probability and its alternatives).
    """
    prompts = _as_prompt_list(prompt_ids)
    if (config.stop_strings or on_text is not None) and tokenizer is None:
        raise GptlabError("stop strings and streaming need the tokenizer: pass tokenizer=")
    model.eval()
    device = model_device(model)
    vocab_size = model.config.vocab_size
    for prompt in prompts:
        require(
            all(0 <= t < vocab_size for t in prompt),
            f"prompt token ids must be in [0, {vocab_size})",
        )

    longest = max(map(len, prompts)) + config.max_new_tokens
    require_cache_fits(model, len(prompts) * config.num_samples, longest, device)
    rows = [prompt for prompt in prompts for _ in range(config.num_samples)]  # (B,) sequences
    batch = len(rows)
    tokens, mask = left_pad(rows, device)  # (B, T)
    cache = new_cache(model, config.cache, batch, tokens.size(1) + config.max_new_tokens)
    decode_step = compiled_decode_step(model) if config.compile else None
    generator = None
    if config.seed is not None:
        generator = torch.Generator(device=device).manual_seed(config.seed)
    seen = None  # (B, V) bool: tokens already in each row's text, for the repetition penalty
    if config.repetition_penalty != 1.0:
        seen = torch.zeros(batch, vocab_size, dtype=torch.bool, device=device)
        for row, prompt in enumerate(rows):
            seen[row, torch.tensor(prompt, device=device)] = True
    eot_id = getattr(tokenizer, "eot_id", None) if config.stop_at_eot else None
    streams = (
        [TextStream(tokenizer, config.stop_strings) for _ in rows]
        if tokenizer is not None
        else None
    )

    finished = torch.zeros(batch, dtype=torch.bool, device=device)
    new_tokens: list[torch.Tensor] = []  # one (B,) tensor per step
    n_kept = [config.max_new_tokens] * batch  # new tokens each row keeps
    reasons = [FINISH_LENGTH] * batch
    for step in range(config.max_new_tokens):
        logits, cache = next_token_logits(model, tokens, mask, cache, decode_step)  # (B, V)
        if step == 0:
            # Damaged weights show in the first logits. Greedy decoding of NaN would quietly pick
            # token 0 and sampling fail deep in torch; checked once, not on every step (a sync).
            require(
                bool(torch.isfinite(logits).all()),
                "the model's next-token logits are NaN or inf: its weights are damaged "
                "(or overflowed in a low-precision dtype); try another checkpoint, or fp32",
            )
        next_tokens = choose_next_tokens(logits, config, seen, generator)  # (B,)
        if on_step is not None:
            on_step(step)
        if on_token is not None:
            on_token(step, logits, next_tokens)
        # Finished rows keep running (the batch is rectangular) but their tokens are ignored.
        next_tokens = next_tokens.masked_fill(finished, 0)
        new_tokens.append(next_tokens)
        tokens = torch.cat([tokens, next_tokens[:, None]], dim=1)
        if mask is not None:
            mask = torch.cat([mask, mask.new_ones(batch, 1)], dim=1)
        if seen is not None:
            seen[torch.arange(batch, device=device), next_tokens] = True

        if eot_id is None and streams is None:
            continue  # only the length limit applies: no need to look at the tokens
        done = finished.tolist()
        for row, token in enumerate(next_tokens.tolist()):
            if done[row]:
                continue
            if token == eot_id:
                done[row], reasons[row], n_kept[row] = True, FINISH_EOT, step  # EOT is not kept
            elif streams is not None:
                piece = streams[row].push(token)
                if piece and on_text is not None:
                    on_text(row, piece)
                if streams[row].stopped:
                    done[row], reasons[row], n_kept[row] = True, FINISH_STOP, step + 1
        if all(done):
            break
        finished = torch.tensor(done, device=device)

    generated = torch.stack(new_tokens, dim=1).tolist()  # (B, steps)
    results = []
    for row in range(batch):
        text = None
        if streams is not None:
            piece = streams[row].finish()
            if piece and on_text is not None:
                on_text(row, piece)
            text = streams[row].text
        results.append(
            Generation(
                prompt_index=row // config.num_samples,
                sample_index=row % config.num_samples,
                token_ids=generated[row][: n_kept[row]],
                finish_reason=reasons[row],
                text=text,
            )
        )
    return results


def generate_text(
    model,
    tokenizer,
    prompts: str | Sequence[str],
    config: GenerationConfig,
    on_text: TextCallback | None = None,
) -> list[Generation]:
    """Encode text prompt(s), generate, and return Generations with their decoded text.

    Special tokens written in a prompt (GPT-2's "<|endoftext|>") count as those tokens: a user
    typing a prompt means them, unlike text read from a corpus.
    """
    if isinstance(prompts, str):
        prompts = [prompts]
    prompt_ids = []
    for prompt in prompts:
        require(len(prompt) > 0, "the prompt is empty; give some text to continue")
        prompt_ids.append(tokenizer.encode(prompt, allow_special=True))
    return generate(model, prompt_ids, config, tokenizer=tokenizer, on_text=on_text)


def _as_prompt_list(prompt_ids) -> list[list[int]]:
    """One prompt (a list of ints) or many (a list of lists) -> a non-empty list of prompts."""
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
    return prompts


# -- torch.compile of the decode step ---------------------------------------------------------------


def compiled_decode_step(model, backend: str = "inductor"):
    """torch.compile(model), kept on the model so later calls reuse the compiled code.

    With a static cache the decode step's tensors keep one shape; only the cache's write
    position (a Python int) changes, so torch.compile specialises on the first one, recompiles
    once with it symbolic, and never again. backend="eager" traces without generating code
    (tests use it: the same graph capture, no C++ compiler needed).
    """
    device = model.wte.weight.device
    if backend == "inductor" and device.type == "cpu" and not _cpp_compiler():
        warnings.warn(
            "torch.compile needs a C++ compiler on CPU and none was found (install g++ or set "
            "CXX); decoding without compile",
            stacklevel=3,
        )
        return None
    compiled = getattr(model, "_gptlab_compiled", {})
    if backend not in compiled:
        compiled[backend] = torch.compile(model, backend=backend)
        model._gptlab_compiled = compiled
    return compiled[backend]


def _cpp_compiler() -> str | None:
    """The C++ compiler torch.compile's CPU backend would find, or None."""
    for name in (os.environ.get("CXX"), "g++", "c++", "clang++"):
        if name and shutil.which(name):
            return name
    return None
