"""Perplexity and bits-per-byte of a model on a text or a prepared split.

Every token after the first is predicted exactly once. A text longer than the model's context is
scored with a sliding window (the scheme of Hugging Face's "perplexity of fixed-length models"):
each window holds up to `block_size` tokens and ends `stride` tokens after the previous one; only
the targets the previous window did not score are counted, so each of them is predicted from at
least `block_size - stride + 1` tokens of context (fewer only at the very start of the text).
Unlike that scheme, the last window also reaches back a whole context, so the few tokens left
over at the end are not scored from a short window.

    stride = block_size   non-overlapping windows, the training loop's validation loss; fastest
    stride = block_size/2 every token sees at least half a context; twice the compute
    stride = 1            every token sees a full context (or the whole text before it); slowest

Bits-per-byte divides the total negative log-likelihood (in bits) by the UTF-8 bytes of the
scored text. Unlike loss or perplexity per token, it does not depend on how the tokenizer cuts
the text, so models with different tokenizers can be compared on the same text. See
`token_byte_lengths` for exactly how bytes are counted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from gptlab.data.prepared_folder import check_same_tokenizer, read_meta
from gptlab.data.shards import open_shards
from gptlab.device import model_device
from gptlab.errors import GptlabError
from gptlab.eval.scoring import target_log_probs
from gptlab.model.batching import IGNORE_INDEX

BYTE_COUNT_CHUNK = 1 << 24  # tokens per numpy pass when counting bytes of a long split


@dataclass(frozen=True)
class Window:
    """One forward pass: inputs tokens[start:end], targets tokens[start + 1 : end + 1].

    Only the last `n_scored` targets count; the ones before them were scored by earlier windows
    and are there only as context.
    """

    start: int
    end: int
    n_scored: int


@dataclass(frozen=True)
class PerplexityResult:
    tokens: int  # predictions scored (every token but the first)
    nats: float  # their total negative log-likelihood
    bytes: int  # UTF-8 bytes of the scored tokens
    context: int
    stride: int

    @property
    def mean_loss(self) -> float:
        return self.nats / self.tokens

    @property
    def perplexity(self) -> float:
        # exp overflows a float past ~709 nats; a model that bad has infinite perplexity.
        return math.exp(self.mean_loss) if self.mean_loss < 700 else math.inf

    @property
    def bits_per_byte(self) -> float:
        return self.nats / math.log(2) / self.bytes if self.bytes else float("nan")

    def to_dict(self) -> dict:
        return {
            "tokens": self.tokens,
            "bytes": self.bytes,
            "mean_loss": self.mean_loss,
            "perplexity": self.perplexity,
            "bits_per_byte": self.bits_per_byte,
            "context": self.context,
            "stride": self.stride,
        }


def sliding_windows(n_tokens: int, context: int, stride: int) -> list[Window]:
    """The windows that predict tokens 1 .. n_tokens - 1 exactly once, in order.

    The first window scores its whole length; each later one ends `stride` targets further and
    reaches back `context` tokens. All windows have the same length, min(context, n_tokens - 1),
    so they stack into batches without padding.
    """
    last_target = n_tokens - 1
    windows = []
    scored_until = 0  # targets 1 .. scored_until are done
    while scored_until < last_target:
        step = stride if windows else context
        end = min(last_target, scored_until + step)
        windows.append(Window(start=max(0, end - context), end=end, n_scored=end - scored_until))
        scored_until = end
    return windows


def token_byte_lengths(tokenizer) -> np.ndarray:
    """UTF-8 bytes each token id adds to the text, as an int64 array of length vocab_size.

    Byte-level tokenizers (GPT-2) decode one token to its exact bytes, even when it holds part of
    a multi-byte character, so summing over a token sequence gives exactly the bytes of its text.
    Tokenizers without `decode_bytes` (characters) decode each token to text and count its UTF-8
    bytes. The end-of-text token separates documents and is not text: it counts 0 bytes, though
    predicting it still counts in the loss.
    """
    decode_bytes = getattr(tokenizer, "decode_bytes", None)
    if decode_bytes is not None:
        lengths = [len(decode_bytes([i])) for i in range(tokenizer.vocab_size)]
    else:
        lengths = [len(tokenizer.decode([i]).encode("utf-8")) for i in range(tokenizer.vocab_size)]
    lengths = np.asarray(lengths, dtype=np.int64)
    if tokenizer.eot_id is not None:
        lengths[tokenizer.eot_id] = 0
    return lengths


def evaluate_tokens(
    model,
    tokens: np.ndarray,
    byte_lengths: np.ndarray,
    *,
    stride: int | None = None,
    batch_size: int = 4,
    max_tokens: int | None = None,
    progress: bool = True,
) -> PerplexityResult:
    """Score a 1-D array of token ids (a numpy array or memmap) as one continuous text.

    stride: how far each window moves on (default: the model's block_size, non-overlapping).
    batch_size: windows per forward pass.
    max_tokens: score only the first max_tokens predictions (tokens 1 .. max_tokens).
    """
    context = model.config.block_size
    stride = context if stride is None else stride
    if not 1 <= stride <= context:
        raise GptlabError(
            f"stride must be between 1 and the model's block_size ({context}), got {stride}"
        )
    if batch_size < 1:
        raise GptlabError(f"batch_size must be at least 1, got {batch_size}")
    if max_tokens is not None:
        if max_tokens < 1:
            raise GptlabError(f"max_tokens must be at least 1, got {max_tokens}")
        tokens = tokens[: max_tokens + 1]
    if len(tokens) < 2:
        raise GptlabError("the text has fewer than 2 tokens: there is nothing to predict")
    if int(tokens.max()) >= model.config.vocab_size:
        raise GptlabError(
            f"token id {int(tokens.max())} is outside the model's vocabulary of {model.config.vocab_size}: "
            "the tokens were made by a different tokenizer than the model's"
        )

    windows = sliding_windows(len(tokens), context, stride)
    device = model_device(model)
    was_training = model.training
    model.eval()
    nats = 0.0
    bar = tqdm(
        total=len(tokens) - 1, unit="tok", unit_scale=True, desc="perplexity", disable=not progress
    )
    try:
        with torch.inference_mode():
            for i in range(0, len(windows), batch_size):
                batch = windows[i : i + batch_size]
                inputs, targets = window_batch(tokens, batch)
                log_probs = target_log_probs(model, inputs.to(device), targets.to(device))
                nats -= float(log_probs.sum(dtype=torch.float64))
                bar.update(sum(w.n_scored for w in batch))
    finally:
        bar.close()
        model.train(was_training)

    scored_bytes = sum(
        int(byte_lengths[tokens[i : i + BYTE_COUNT_CHUNK]].sum())
        for i in range(1, len(tokens), BYTE_COUNT_CHUNK)
    )
    return PerplexityResult(
        tokens=len(tokens) - 1, nats=nats, bytes=scored_bytes, context=context, stride=stride
    )


def window_batch(tokens: np.ndarray, batch: list[Window]) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs and targets (B, T) of equally long windows; already-scored targets are IGNORE_INDEX."""
    inputs = np.stack([tokens[w.start : w.end] for w in batch]).astype(np.int64)
    targets = np.stack([tokens[w.start + 1 : w.end + 1] for w in batch]).astype(np.int64)
    for row, w in zip(targets, batch, strict=True):
        row[: len(row) - w.n_scored] = IGNORE_INDEX  # context only: an earlier window scored these
    return torch.from_numpy(inputs), torch.from_numpy(targets)


def text_tokens(tokenizer, text: str) -> np.ndarray:
    """A text's tokens for scoring, after the end-of-text token when the tokenizer has one.

    Starting with end-of-text (as GPT-2 saw at every document start in training, and as
    lm-eval-harness does) gives the first real token a context, so every token of the text is
    scored and the byte count is that of the whole text. Without one, the first token is only
    context.
    """
    ids = tokenizer.encode(text)
    if tokenizer.eot_id is not None:
        ids = [tokenizer.eot_id, *ids]
    return np.asarray(ids, dtype=np.int64)


def evaluate_text(model, tokenizer, text: str, **kwargs) -> PerplexityResult:
    """Perplexity and bits-per-byte of `text` (keyword arguments as for evaluate_tokens)."""
    return evaluate_tokens(
        model, text_tokens(tokenizer, text), token_byte_lengths(tokenizer), **kwargs
    )


def evaluate_prepared(
    model,
    tokenizer,
    data_dir: str | Path,
    split: str = "val",
    *,
    max_tokens: int | None = None,
    **kwargs,
) -> PerplexityResult:
    """Perplexity and bits-per-byte of one split of a `gptlab prepare` folder.

    The split is scored as one stream, across document boundaries, as training reads it. Every
    document there ends with the end-of-text token (when the tokenizer has one); the stream is
    scored after one more, so its first document is scored like the others and the byte count is
    that of all the split's text.
    """
    check_same_tokenizer(data_dir, tokenizer)
    tokens = prepared_split_tokens(data_dir, split, None if max_tokens is None else max_tokens + 1)
    if tokenizer.eot_id is not None:
        tokens = np.concatenate([np.array([tokenizer.eot_id], dtype=tokens.dtype), tokens])
    byte_lengths = token_byte_lengths(tokenizer)
    return evaluate_tokens(model, tokens, byte_lengths, max_tokens=max_tokens, **kwargs)


def prepared_split_tokens(
    data_dir: str | Path, split: str, max_tokens: int | None = None
) -> np.ndarray:
    """The tokens of a prepared split as one array (the first max_tokens of them if given)."""
    meta = read_meta(data_dir)
    splits = meta["splits"]
    if split not in splits:
        raise GptlabError(f"{data_dir} has no split {split!r}; its splits are {', '.join(splits)}")
    if splits[split]["tokens"] == 0:
        raise GptlabError(
            f"split {split!r} of {data_dir} is empty; prepare it with a validation fraction above 0"
        )
    shards = open_shards(Path(data_dir), split, splits[split]["shards"], meta["dtype"])
    if max_tokens is not None:
        shards = take_first(shards, max_tokens)
    return np.concatenate(shards)


def take_first(arrays: list[np.ndarray], n: int) -> list[np.ndarray]:
    """The leading arrays holding the first n elements of their concatenation, the last one cut."""
    taken = []
    for array in arrays:
        if n <= 0:
            break
        taken.append(array[:n])
        n -= len(taken[-1])
    return taken


def read_text_file(path: str | Path) -> str:
    path = Path(path)
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise GptlabError(f"text file {path} does not exist") from None
    except IsADirectoryError:
        raise GptlabError(
            f"{path} is a folder; the text to score is a UTF-8 text file (a prepared folder is scored as data)"
        ) from None
    except UnicodeDecodeError as exc:
        raise GptlabError(f"{path} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
