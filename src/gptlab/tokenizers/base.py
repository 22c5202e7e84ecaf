"""Tokenizers: one small interface, several implementations, saved as JSON inside checkpoints.

Every tokenizer has `encode`, `decode`, `vocab_size`, `eot_id` (None when it has no end-of-text
token) and `to_dict`; `tokenizer_from_dict` rebuilds one from that dict, so a checkpoint folder
carries the exact tokenizer its model was trained with.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Protocol

import tiktoken
import tiktoken.load
import tiktoken_ext.openai_public

from gptlab.errors import GptlabError
from gptlab.fileio import atomic_write_text, read_json
from gptlab.samples import shipped_file
from gptlab.tokenizers.bpe import BPETokenizer


class Tokenizer(Protocol):
    name: str
    vocab_size: int
    eot_id: int | None

    def encode(self, text: str) -> list[int]: ...

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]: ...

    def decode(self, ids: Iterable[int]) -> str: ...

    def to_dict(self) -> dict: ...


# The two files tiktoken downloads for GPT-2, with the sha256 tiktoken pins for them.
GPT2_BPE_FILES = {
    "vocab.bpe": "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5",
    "encoder.json": "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783",
}


@functools.cache
def gpt2_encoding() -> tiktoken.Encoding:
    """tiktoken's GPT-2 encoding, built from the copy the repository ships when it is there.

    Otherwise tiktoken's own path: its cache (TIKTOKEN_CACHE_DIR), then a download. Both give
    the same bytes (sha256-checked), so the two paths tokenize identically.
    """
    shipped = {name: shipped_file(f"gpt2_bpe/{name}", h) for name, h in GPT2_BPE_FILES.items()}
    try:
        if all(shipped.values()):
            ranks = tiktoken.load.data_gym_to_mergeable_bpe_ranks(
                vocab_bpe_file=str(shipped["vocab.bpe"]),
                encoder_json_file=str(shipped["encoder.json"]),
                vocab_bpe_hash=GPT2_BPE_FILES["vocab.bpe"],
                encoder_json_hash=GPT2_BPE_FILES["encoder.json"],
            )
            # The same Encoding tiktoken_ext.openai_public.gpt2() describes, from local files.
            return tiktoken.Encoding(
                name="gpt2",
                pat_str=tiktoken_ext.openai_public.r50k_pat_str,
                mergeable_ranks=ranks,
                special_tokens={tiktoken_ext.openai_public.ENDOFTEXT: 50256},
                explicit_n_vocab=50257,
            )
        return tiktoken.get_encoding("gpt2")
    except Exception as exc:  # tiktoken raises plain requests/OS errors when offline
        raise GptlabError(
            "could not load tiktoken's GPT-2 files (offline?): download them once, or set "
            "TIKTOKEN_CACHE_DIR to a folder that holds them"
        ) from exc


class GPT2Tokenizer:
    """OpenAI's GPT-2 byte-level BPE through tiktoken (50,257 tokens, <|endoftext|> = 50256).

    Text is encoded as ordinary text: the literal string "<|endoftext|>" inside a document is
    not turned into the special token (so untrusted text cannot inject document boundaries),
    unless `allow_special=True` is asked for, as a user typing a prompt may want.
    """

    name = "gpt2"

    def __init__(self) -> None:
        self._enc = gpt2_encoding()
        self.vocab_size = self._enc.n_vocab
        self.eot_id = self._enc.eot_token

    @property
    def encoding(self):
        """The underlying tiktoken Encoding (for batch encoding at full speed)."""
        return self._enc

    def encode(self, text: str, allow_special: bool = False) -> list[int]:
        if allow_special:
            return self._enc.encode(text, allowed_special="all")
        return self._enc.encode_ordinary(text)

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return self._enc.encode_ordinary_batch(list(texts))

    def decode(self, ids: Iterable[int]) -> str:
        return self._enc.decode(list(ids))

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        return self._enc.decode_bytes(list(ids))

    def to_dict(self) -> dict:
        return {"type": "gpt2"}


UNKNOWN_POLICIES = ("error", "drop", "replace")


class CharTokenizer:
    """One token per character; the vocabulary is the sorted set of a corpus's characters.

    Characters outside the vocabulary are an error by default (naming them); `unknown="drop"`
    removes them and `unknown="replace"` maps them to `replacement`, which must be in the vocabulary.
    """

    name = "char"
    eot_id = None

    def __init__(
        self, chars: Sequence[str], unknown: str = "error", replacement: str | None = None
    ):
        if len(chars) == 0:
            raise GptlabError(
                "a character vocabulary needs at least one character (is the corpus empty?)"
            )
        if len(set(chars)) != len(chars) or any(len(c) != 1 for c in chars):
            raise GptlabError("a character vocabulary must list distinct single characters")
        if unknown not in UNKNOWN_POLICIES:
            raise GptlabError(
                f"unknown-character policy '{unknown}' is not one of {', '.join(UNKNOWN_POLICIES)}"
            )
        self.chars = list(chars)
        self.vocab_size = len(self.chars)
        self.stoi = {c: i for i, c in enumerate(self.chars)}
        self.unknown = unknown
        if unknown == "replace":
            if replacement is None or replacement not in self.stoi:
                raise GptlabError(
                    f"the replacement character {replacement!r} is not in the vocabulary; pick one of it"
                )
        self.replacement = replacement

    @classmethod
    def from_text(cls, text: str, **kwargs) -> CharTokenizer:
        return cls(sorted(set(text)), **kwargs)

    def encode(self, text: str, allow_special: bool = False) -> list[int]:
        stoi = self.stoi
        try:
            return [stoi[c] for c in text]
        except KeyError:
            pass
        unknown = sorted(set(text) - stoi.keys())
        if self.unknown == "error":
            shown = ", ".join(repr(c) for c in unknown[:10]) + (" ..." if len(unknown) > 10 else "")
            raise GptlabError(
                f"text has {len(unknown)} character(s) the character vocabulary lacks: {shown} "
                "(remove them, or use a tokenizer built from a corpus that has them)"
            )
        if self.unknown == "drop":
            return [stoi[c] for c in text if c in stoi]
        fallback = stoi[self.replacement]
        return [stoi.get(c, fallback) for c in text]

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return [self.encode(t) for t in texts]

    def decode(self, ids: Iterable[int]) -> str:
        chars = self.chars
        return "".join(chars[i] for i in ids)

    def to_dict(self) -> dict:
        d = {"type": "char", "chars": self.chars, "unknown": self.unknown}
        if self.replacement is not None:
            d["replacement"] = self.replacement
        return d


def token_bytes(tokenizer: Tokenizer, ids: Iterable[int]) -> list[bytes]:
    """The bytes each token stands for. Byte-level tokenizers may split a character between
    tokens, so a token's own text can be a fragment; its bytes are always exact."""
    if hasattr(tokenizer, "decode_bytes"):
        return [tokenizer.decode_bytes([int(i)]) for i in ids]
    return [tokenizer.decode([int(i)]).encode("utf-8") for i in ids]


def tokenizer_from_dict(d: dict) -> Tokenizer:
    """Rebuild a tokenizer from what its `to_dict` returned."""
    kind = d.get("type")
    if kind == "gpt2":
        return GPT2Tokenizer()
    if kind == "char":
        return CharTokenizer(
            d["chars"], unknown=d.get("unknown", "error"), replacement=d.get("replacement")
        )
    if kind == "bpe":
        return BPETokenizer.from_dict(d)
    raise GptlabError(
        f"unknown tokenizer type {kind!r} in tokenizer file (expected gpt2, char or bpe)"
    )


def save_tokenizer(tokenizer: Tokenizer, path: str | Path) -> None:
    """Write the tokenizer as JSON, atomically."""
    atomic_write_text(path, json.dumps(tokenizer.to_dict(), ensure_ascii=False))


def load_tokenizer(path: str | Path) -> Tokenizer:
    d = read_json(path, "tokenizer file")
    try:
        return tokenizer_from_dict(d)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise GptlabError(
            f"tokenizer file {path} is not a valid {d.get('type')!r} tokenizer ({type(exc).__name__}: "
            f"{exc}); save the tokenizer again"
        ) from None


def get_tokenizer(spec: str) -> Tokenizer:
    """A tokenizer by name or file: 'gpt2', or the path of a saved tokenizer JSON.

    'char' is not accepted here: a character vocabulary has to be built from a corpus
    (CharTokenizer.from_text), which is what `gptlab prepare --tokenizer char` does.
    """
    if spec == "gpt2":
        return GPT2Tokenizer()
    if os.path.exists(spec):
        return load_tokenizer(spec)
    raise GptlabError(
        f"unknown tokenizer {spec!r}: use 'gpt2', 'char' (when preparing data) or a tokenizer JSON path"
    )
