"""Activations at a hook point, streamed from the model into a bounded, shuffled buffer.

An SAE trains on millions of activations; they are never all held (or written) at once. The
buffer keeps `capacity` of them. Each refill runs the model on fresh random windows of the data
until the buffer is full again, then shuffles old and new together, so a training batch mixes
activations from many windows (consecutive tokens of one window are strongly correlated). It
refills when half is used: memory stays at `capacity` rows plus one model batch.

The forward pass stops at the hook: nothing after it is needed, so an SAE on an early layer
pays only for the layers up to it.

Everything random (the loader's windows, the shuffles) is seeded, and state_dict() holds the
unserved rows with the loader and generator states: a resumed run sees the same batches.
"""

from __future__ import annotations

from pathlib import Path

import torch

from gptlab.data.loader import TokenLoader
from gptlab.data.prepare import prepare_dataset
from gptlab.errors import GptlabError
from gptlab.model import GPT
from gptlab.model.hooks import select_hook_points


class _Reached(Exception):
    """Raised by the capturing hook to end the forward pass once the activation is in hand."""

    def __init__(self, activation: torch.Tensor) -> None:
        super().__init__()
        self.activation = activation


def check_hook(model: GPT, hook: str) -> str:
    """The single hook point `hook` names, refused if it is a pattern matching several, or if its
    activation does not end in one vector per token (attention scores, patterns)."""
    points = select_hook_points(model.hook_points, [hook])
    if len(points) != 1:
        raise GptlabError(f"hook {hook!r} matches {len(points)} hook points; name exactly one")
    name = points[0].name
    if name.endswith(("hook_attn_scores", "hook_pattern", "hook_q", "hook_k", "hook_v", "hook_z")):
        raise GptlabError(
            f"hook {name} holds per-head tensors; train an SAE on a (B, T, C) point such as "
            "blocks.N.hook_resid_post, hook_attn_out or hook_mlp_out"
        )
    return name


@torch.no_grad()
def activations_at(model: GPT, idx: torch.Tensor, hook: str) -> torch.Tensor:
    """The activation (B, T, d) at `hook` for token ids idx (B, T); the rest of the model is skipped."""

    def stop(x: torch.Tensor, name: str) -> None:
        raise _Reached(x.detach())

    try:
        with model.hooks({hook: stop}):
            model(idx)
    except _Reached as reached:
        return reached.activation
    raise GptlabError(f"the forward pass never reached hook {hook}")  # a hook the model skips


def data_folder(model_dir: str | Path, data: str) -> Path:
    """The prepared folder to read: `data` if given, else the training run's own data (prepared
    again from its config if it is not in the cache; the same settings give the same folder)."""
    if data:
        return Path(data)
    from gptlab.train.run_folder import RUN_CONFIG_FILE, read_run_config

    if not (Path(model_dir) / RUN_CONFIG_FILE).is_file():
        raise GptlabError(
            f"{model_dir} is not a training run, so it names no data; give a prepared folder "
            "(data=DIR, made with gptlab prepare)"
        )
    config = read_run_config(model_dir).data
    if config.prepared_dir and (Path(config.prepared_dir) / "meta.json").is_file():
        return Path(config.prepared_dir)
    return prepare_dataset(
        config.source,
        tokenizer=config.tokenizer,
        out=config.prepared_dir or None,
        val_fraction=config.val_fraction,
        max_docs=config.max_docs,
        max_tokens=config.max_tokens,
        text_column=config.text_column,
        show_progress=False,
    )


class ActivationBuffer:
    """Shuffled batches of activations at one hook, from random windows of a prepared split."""

    def __init__(
        self,
        model: GPT,
        hook: str,
        folder: str | Path,
        *,
        split: str = "train",
        capacity: int,
        batch_size: int,
        model_batch_size: int,
        seed: int,
    ) -> None:
        self.model, self.hook = model, hook
        self.capacity, self.batch_size = capacity, batch_size
        device = next(model.parameters()).device
        self.loader = TokenLoader(
            folder,
            split,
            model_batch_size,
            model.config.block_size,
            mode="random",
            seed=seed,
            device=device,
        )
        self.generator = torch.Generator().manual_seed(seed)
        self.rows = torch.empty(0, 0, device=device)  # unserved activations, already shuffled
        self.position = 0

    def next_batch(self) -> torch.Tensor:
        """The next (batch_size, d) activations."""
        if self.rows.shape[0] - self.position < max(self.capacity // 2, self.batch_size):
            self._refill()
        batch = self.rows[self.position : self.position + self.batch_size]
        self.position += self.batch_size
        return batch

    def waiting(self) -> torch.Tensor:
        """The (n, d) activations not served yet, in the order they will be (filling the buffer
        first if it is empty); nothing is consumed."""
        if self.rows.shape[0] == self.position:
            self._refill()
        return self.rows[self.position :]

    def _refill(self) -> None:
        parts = [self.rows[self.position :]]
        have = parts[0].shape[0]
        while have < self.capacity:
            x, _ = self.loader.next_batch()
            acts = activations_at(self.model, x, self.hook)
            parts.append(acts.reshape(-1, acts.shape[-1]).float())
            have += parts[-1].shape[0]
        rows = torch.cat([p for p in parts if p.numel()])
        order = torch.randperm(rows.shape[0], generator=self.generator).to(rows.device)
        self.rows, self.position = rows[order], 0

    def state_dict(self) -> dict:
        return {
            "rows": self.rows[self.position :].cpu().clone(),
            "loader": self.loader.state_dict(),
            "generator": self.generator.get_state(),
        }

    def load_state_dict(self, state: dict) -> None:
        self.rows = state["rows"].to(self.rows.device)
        self.position = 0
        self.loader.load_state_dict(state["loader"])
        self.generator.set_state(state["generator"])
