"""The progress bar of `gptlab prepare`."""

from __future__ import annotations

import time

from tqdm import tqdm


class PrepareProgress:
    """The prepare progress bar: docs/s and tokens/s, and an ETA whenever the total is known.

    The bar counts tokens under a token budget, characters for a single text, else documents
    (out of max_docs, or the source's document count when it is cheap to know).
    """

    def __init__(
        self,
        *,
        total_docs=None,
        total_tokens=None,
        total_chars=None,
        enabled=True,
        done_docs: int = 0,
        done_tokens: int = 0,
    ):
        """done_docs / done_tokens: what a killed build already did (shown, not in the rates)."""
        if total_tokens is not None:
            self.unit, total = "tok", total_tokens
        elif total_chars is not None:
            self.unit, total = "char", total_chars
        else:
            self.unit, total = "doc", total_docs
        done = {"tok": done_tokens, "doc": done_docs}.get(self.unit, 0)
        self.bar = tqdm(
            total=total,
            initial=done,
            unit=self.unit,
            unit_scale=True,
            desc="prepare",
            disable=not enabled,
        )
        self.docs_before, self.tokens_before = done_docs, done_tokens
        self.docs, self.tokens = done_docs, done_tokens
        self.started = time.perf_counter()

    def update(self, docs: int, tokens: int, chars: int = 0) -> None:
        self.docs += docs
        self.tokens += tokens
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        # tqdm shows the rate of the bar's own unit; the postfix adds the others.
        rates = []
        if self.unit != "doc":
            rates.append(f"{(self.docs - self.docs_before) / elapsed:,.0f} docs/s")
        if self.unit != "tok":
            rates.append(f"{(self.tokens - self.tokens_before) / elapsed:,.0f} tok/s")
        self.bar.set_postfix_str(", ".join([*rates, f"{self.tokens:,} tokens"]), refresh=False)
        self.bar.update({"tok": tokens, "char": chars, "doc": docs}[self.unit])

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.bar.close()
