"""One served model: the model, its tokenizer, a lock, and the last prompt's forward pass.

Every view of one prompt (attention, logit lens, attribution, ablation's intact side, the
next-token bars) reads the same activations, so the first request for a prompt runs the model
once with every hook point those views need (`run_with_cache`) and keeps the result; the next
requests for that prompt read it. Requests from several tabs run on several threads: the lock
lets one at a time touch the model and the cached pass, so no request sees another's half.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

import torch

from gptlab.device import model_device
from gptlab.errors import GptlabError, require
from gptlab.interp.attention import PATTERN_HOOKS
from gptlab.interp.attribution import attribution_hook_names
from gptlab.interp.logit_lens import residual_hook_names


def cached_hook_names(n_layer: int) -> list[str]:
    """Everything the prompt views read, cached in one forward pass."""
    names = PATTERN_HOOKS + residual_hook_names(n_layer) + attribution_hook_names(n_layer)
    return list(dict.fromkeys(names))


@dataclass
class PromptPass:
    """One prompt's forward pass: its ids (1, T), logits (1, T, V) and hook activations."""

    ids: list[int]
    idx: torch.Tensor
    logits: torch.Tensor
    cache: dict[str, torch.Tensor]
    derived: dict = field(default_factory=dict)

    def hook(self, name: str) -> torch.Tensor:
        return self.cache[name]

    def memo(self, key: str, compute):
        """A result derived from this pass (a window of the lens's unembeddings costs over
        half a forward pass of GPT-2 small), computed on first use and kept with it."""
        if key not in self.derived:
            self.derived[key] = compute()
        return self.derived[key]


class Explorer:
    def __init__(self, name: str, model, tokenizer, run_dir: Path | None = None):
        self.name = name
        self.model = model  # in eval mode (the caller's choice to make: sources, show)
        self.tokenizer = tokenizer
        self.run_dir = run_dir
        self.lock = threading.Lock()
        self._last: PromptPass | None = None

    def describe(self) -> dict:
        """The page's model menu entry."""
        info = {
            "name": self.name,
            "has_model": self.model is not None,
            "has_run": bool(self.run_dir),
        }
        if self.model is not None:
            c = self.model.config
            info |= {
                "n_layer": c.n_layer,
                "n_head": c.n_head,
                "n_embd": c.n_embd,
                "block_size": c.block_size,
                "vocab_size": c.vocab_size,
                "parameters": sum(p.numel() for p in self.model.parameters()),
            }
        return info

    def require_model(self) -> None:
        require(
            self.model is not None,
            f"{self.name} is a training run that has saved no checkpoint yet: only its curves are "
            "served (restart `gptlab explore` once it has saved one)",
        )

    def encode(self, prompt: str) -> list[int]:
        """The prompt's ids, as `gptlab sample` encodes it (special tokens written out count)."""
        self.require_model()
        require(len(prompt) > 0, "the prompt is empty; type some text")
        ids = self.tokenizer.encode(prompt, allow_special=True)
        require(len(ids) > 0, "the prompt has no tokens; type some text")
        block_size = self.model.config.block_size
        if len(ids) > block_size:
            raise GptlabError(
                f"the prompt is {len(ids)} tokens, longer than the model's context of {block_size}; "
                "shorten it"
            )
        return ids

    @torch.inference_mode()
    def prompt_pass(self, prompt: str) -> PromptPass:
        """The cached pass of `prompt`, run now if the last one was another prompt. Hold the lock."""
        ids = self.encode(prompt)
        if self._last is not None and self._last.ids == ids:
            return self._last
        self._last = None  # the old pass's memory is freed before the new one is built
        idx = torch.tensor([ids], dtype=torch.long, device=model_device(self.model))
        names = cached_hook_names(self.model.config.n_layer)
        logits, cache = self.model.run_with_cache(idx, names=names)
        vocab = self.model.config.vocab_size
        self._last = PromptPass(ids, idx, logits[..., :vocab].float(), cache)
        return self._last
