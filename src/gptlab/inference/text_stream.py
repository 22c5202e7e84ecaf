"""Streaming text: one sequence's new tokens turned into text as they arrive, stop strings cut."""

from __future__ import annotations

import codecs
from collections.abc import Sequence


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
