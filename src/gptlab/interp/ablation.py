"""Head ablation: knock out one attention head at a time and measure how much the loss rises.

A head is ablated at its output `blocks.i.attn.hook_z` (before c_proj), so only that head's
contribution changes:
- zero: z_h = 0. The layer's attention output is then sum of the other heads + c_proj's bias;
  the bias belongs to no head and stays (so zeroing every head of a layer leaves exactly the
  bias, not nothing; see the tests).
- mean: z_h = its mean over every scored position of the data (targets of IGNORE_INDEX, i.e.
  padding, count for neither the mean output nor the loss), i.e. the head still writes its
  average output but carries no information about this input.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from gptlab.data.loader import TokenLoader
from gptlab.data.prepared_folder import check_same_tokenizer
from gptlab.device import model_device, require_memory
from gptlab.errors import GptlabError
from gptlab.interp.indices import require_forward_fits
from gptlab.model.batching import IGNORE_INDEX
from gptlab.plotting import head_grid_heatmap
from gptlab.tables import format_table, ranked_cells

ABLATION_MODES = ("zero", "mean")


def z_hook_name(layer: int) -> str:
    return f"blocks.{layer}.attn.hook_z"


def ablation_hooks(
    heads_by_layer: dict[int, Sequence[int]],
    mode: str = "zero",
    z_means: torch.Tensor | None = None,
) -> dict:
    """Hook functions for model.hooks() that ablate the given heads.

    heads_by_layer: {layer: [head, ...]}. z_means: (n_layer, n_head, head_dim), needed for "mean".
    """
    if mode not in ABLATION_MODES:
        raise GptlabError(f"unknown ablation mode {mode!r}: use one of {', '.join(ABLATION_MODES)}")
    if mode == "mean" and z_means is None:
        raise ValueError("mean ablation needs the heads' mean outputs (z_means)")

    def make_hook(layer: int, heads: list[int]):
        def ablate(z: torch.Tensor, name: str) -> torch.Tensor:  # z: (B, T, H, D)
            z = z.clone()
            if mode == "zero":
                z[:, :, heads, :] = 0.0
            else:
                z[:, :, heads, :] = z_means[layer, heads].to(z.dtype)  # (len(heads), D) broadcast
            return z

        return ablate

    return {
        z_hook_name(layer): make_hook(layer, list(heads)) for layer, heads in heads_by_layer.items()
    }


def mlp_hook_name(layer: int) -> str:
    return f"blocks.{layer}.hook_mlp_out"


def mlp_ablation_hooks(
    layers: Iterable[int], mode: str = "zero", mlp_means: torch.Tensor | None = None
) -> dict:
    """Hook functions for model.hooks() that ablate whole MLPs at their output (biases included):
    zero writes nothing to the residual stream; mean writes the MLP's mean output (mlp_means:
    (n_layer, n_embd)) whatever the input."""
    if mode not in ABLATION_MODES:
        raise GptlabError(f"unknown ablation mode {mode!r}: use one of {', '.join(ABLATION_MODES)}")
    if mode == "mean" and mlp_means is None:
        raise ValueError("mean ablation needs the MLPs' mean outputs (mlp_means)")

    def make_hook(layer: int):
        def ablate(out: torch.Tensor, name: str) -> torch.Tensor:  # (B, T, C)
            if mode == "zero":
                return torch.zeros_like(out)
            return mlp_means[layer].to(out.dtype).expand_as(out).clone()

        return ablate

    return {mlp_hook_name(layer): make_hook(layer) for layer in layers}


@dataclass
class HeadAblation:
    mode: str
    clean_loss: float
    ablated_loss: torch.Tensor  # (n_layer, n_head) mean loss with that one head ablated
    n_tokens: int  # counted (scored) target positions

    @property
    def loss_increase(self) -> torch.Tensor:
        return self.ablated_loss - self.clean_loss

    def to_dict(self) -> dict:
        return {
            "mode": self.mode,
            "clean_loss": self.clean_loss,
            "n_tokens": self.n_tokens,
            "ablated_loss": self.ablated_loss.tolist(),
            "loss_increase": self.loss_increase.tolist(),
        }


def prompt_batches(idx: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """A prompt (1, T) as one (inputs, next-token targets) batch of T - 1 positions."""
    return [(idx[:, :-1], idx[:, 1:])]


def dataset_sample(
    model,
    data_dir: str | Path,
    split: str = "val",
    batches: int = 4,
    batch_size: int = 8,
    block_size: int | None = None,
    seed: int = 0,
    tokenizer=None,
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """`batches` random (inputs, targets) batches of a prepared dataset, on the model's device.

    block_size defaults to the model's, capped at 256 tokens to keep ablation sweeps quick.
    With the model's tokenizer given, data prepared with another one is refused.
    """
    if batches < 1 or batch_size < 1:
        raise GptlabError("the number of batches and the batch size must be at least 1")
    if tokenizer is not None:
        check_same_tokenizer(data_dir, tokenizer)
    block_size = block_size or min(model.config.block_size, 256)
    if not 1 <= block_size <= model.config.block_size:
        raise GptlabError(
            f"block size {block_size} does not fit the model: use 1 to {model.config.block_size} "
            "(block_size)"
        )
    require_forward_fits(
        model, batch_size, block_size, f"batches of {batch_size} x {block_size} tokens"
    )
    # Every batch is kept (inputs and targets, int64) to run once per ablated head.
    require_memory(
        batches * batch_size * block_size * 16,
        f"{batches} batches of {batch_size} x {block_size} tokens",
        model_device(model),
    )
    loader = TokenLoader(
        data_dir,
        split,
        batch_size,
        block_size,
        mode="random",
        seed=seed,
        device=model_device(model),
    )
    if loader.vocab_size > model.config.vocab_size:
        raise GptlabError(
            f"{data_dir} was tokenized with a {loader.vocab_size}-token vocabulary but the model has "
            f"{model.config.vocab_size}; prepare the data with the model's tokenizer"
        )
    return [loader.next_batch() for _ in range(batches)]


@torch.no_grad()
def head_ablation(
    model,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    mode: str = "zero",
    progress: bool = True,
) -> HeadAblation:
    """Loss with each head ablated in turn, over (inputs, targets) batches of shape (B, T)."""
    if mode not in ABLATION_MODES:
        raise GptlabError(f"unknown ablation mode {mode!r}: use one of {', '.join(ABLATION_MODES)}")
    n_layer, n_head = model.config.n_layer, model.config.n_head
    batches = list(batches)
    if not batches:
        raise GptlabError("head ablation needs at least one batch of tokens")

    # A clean pass over the data: the baseline loss, and each head's mean output for "mean".
    # Both count only scored positions (target != IGNORE_INDEX): padding is not data.
    clean_sum, n_tokens = 0.0, 0
    z_sums = None
    for x, y in batches:
        logits, cache = model.run_with_cache(x, names=["blocks.*.attn.hook_z"])
        clean_sum += token_loss_sum(logits, y)
        counted = (y != IGNORE_INDEX).to(torch.float64)  # (B, T)
        n_tokens += int(counted.sum())
        z = torch.stack(
            [
                torch.einsum("bthd,bt->hd", cache[z_hook_name(i)].double(), counted)
                for i in range(n_layer)
            ]
        )
        z_sums = z if z_sums is None else z_sums + z  # (n_layer, n_head, head_dim)
    if n_tokens == 0:
        raise GptlabError("head ablation got batches whose every target is ignored (-100)")
    z_means = (z_sums / n_tokens).float()

    ablated_sum = torch.zeros(n_layer, n_head, dtype=torch.float64)
    bar = tqdm(
        total=n_layer * n_head * len(batches),
        desc=f"{mode}-ablating heads",
        unit="pass",
        disable=not progress,
    )
    for layer in range(n_layer):
        for head in range(n_head):
            with model.hooks(ablation_hooks({layer: [head]}, mode, z_means)):
                for x, y in batches:
                    logits, _ = model(x)
                    ablated_sum[layer, head] += token_loss_sum(logits, y)
                    bar.update()
    bar.close()
    return HeadAblation(
        mode=mode,
        clean_loss=clean_sum / n_tokens,
        ablated_loss=ablated_sum / n_tokens,
        n_tokens=n_tokens,
    )


def token_loss_sum(logits: torch.Tensor, targets: torch.Tensor) -> float:
    """Summed next-token cross-entropy over the counted targets (IGNORE_INDEX ones add nothing;
    summed, so batches of any size and padding average correctly over counted tokens)."""
    return float(
        torch.nn.functional.cross_entropy(
            logits.float().reshape(-1, logits.shape[-1]),
            targets.reshape(-1),
            reduction="sum",
            ignore_index=IGNORE_INDEX,
        )
    )


def save_ablation_heatmap(path: str | Path, result: HeadAblation) -> Path:
    return head_grid_heatmap(
        path,
        result.loss_increase,
        f"{result.mode}-ablation: loss increase per head (clean loss {result.clean_loss:.4f})",
        "loss increase (nats/token)",
    )


def ablation_table(result: HeadAblation, top_k: int) -> str:
    """The clean loss, then the top_k heads whose ablation raises the loss most."""
    headline = (
        f"clean loss {result.clean_loss:.4f} over {result.n_tokens} tokens; "
        f"{result.mode}-ablating one head at a time:"
    )
    increase = result.loss_increase
    rows = [
        [layer, head, float(result.ablated_loss[layer, head]), float(increase[layer, head])]
        for layer, head in ranked_cells(increase, top_k)
    ]
    return headline + "\n" + format_table(["layer", "head", "loss", "increase"], rows)
