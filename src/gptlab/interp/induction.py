"""Per-position loss, and the "induction bump": loss on repeated random tokens, first copy vs repeats.

A sequence of `length` random tokens written `repeats` times in a row cannot be predicted the first
time through (loss near ln(vocab) for a model that never saw the sequence), but from the second copy
on a model with induction heads looks back to where the current token appeared last and copies the
token that followed it: the repeated copies' loss drops far below the first copy's. That gap is the
clearest behavioural sign that induction heads exist (Olsson et al. 2022, "In-context Learning and
Induction Heads"), and it appears as a bump in the training loss when they form.

Tokens are drawn uniformly from the model's vocabulary, leaving out the tokenizer's end-of-text
token (it marks a document boundary, which would change what a model predicts); nothing depends
on particular ids, so character, GPT-2 BPE and trained BPE models are measured the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from gptlab.device import model_device
from gptlab.errors import GptlabError
from gptlab.interp.ablation import ablation_hooks
from gptlab.interp.indices import require_forward_fits
from gptlab.plotting import line_plot
from gptlab.tables import format_table, quoted


def check_repeated_shape(model, length: int, repeats: int) -> None:
    """length >= 2 random tokens, repeats >= 2 copies, and length * repeats within block_size."""
    if length < 2:
        raise GptlabError(f"the random sequence needs at least 2 tokens (length), got {length}")
    if repeats < 2:
        raise GptlabError(f"repeated tokens need at least 2 copies (repeats), got {repeats}")
    block_size = model.config.block_size
    if length * repeats > block_size:
        raise GptlabError(
            f"{repeats} copies of {length} tokens are {length * repeats} tokens, more than the "
            f"model's block_size ({block_size}); use a length of {block_size // repeats} or less"
        )


def repeated_random_tokens(
    model, length: int, repeats: int = 2, batch: int = 1, seed: int = 0, eot_id: int | None = None
) -> torch.Tensor:
    """(batch, length * repeats) ids: `batch` random sequences, each written `repeats` times.

    eot_id: the tokenizer's end-of-text id, never drawn (None: every id may be drawn).
    """
    check_repeated_shape(model, length, repeats)
    require_forward_fits(
        model, batch, length * repeats, f"{batch} sequences of {length} x {repeats} tokens"
    )
    vocab_size = model.config.vocab_size
    allowed = torch.tensor(
        [t for t in range(vocab_size) if t != eot_id] if eot_id is not None else range(vocab_size)
    )
    if len(allowed) < 2:
        raise GptlabError("the vocabulary has fewer than 2 tokens to draw random sequences from")
    generator = torch.Generator().manual_seed(seed)
    picks = torch.randint(0, len(allowed), (batch, length), generator=generator)
    return allowed[picks].repeat(1, repeats).to(model_device(model))


@torch.no_grad()
def per_position_loss(model, idx: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of each next token: (B, T - 1), entry t is the loss of predicting idx[:, t+1]."""
    if idx.shape[1] < 2:
        raise GptlabError("per-position loss needs at least 2 tokens (one to predict from)")
    logits, _ = model(idx[:, :-1])
    return (
        F.cross_entropy(logits.float().transpose(1, 2), idx[:, 1:], reduction="none").float().cpu()
    )


@dataclass
class PromptLoss:
    """The loss of predicting each token of one prompt from the tokens before it."""

    tokens: list[str]  # the prompt's token labels
    position_loss: torch.Tensor  # (T - 1,) entry t is the loss of predicting token t + 1

    @property
    def mean_loss(self) -> float:
        return float(self.position_loss.mean())

    def to_dict(self) -> dict:
        return {
            "tokens": self.tokens,
            "position_loss": self.position_loss.tolist(),
            "mean_loss": self.mean_loss,
        }


def prompt_loss(model, idx: torch.Tensor, tokens: list[str]) -> PromptLoss:
    """Per-position loss of one prompt idx (1, T), T >= 2; tokens: its labels."""
    return PromptLoss(tokens, per_position_loss(model, idx)[0])


def prompt_loss_table(result: PromptLoss) -> str:
    rows = [
        [t + 1, quoted(result.tokens[t + 1]), float(loss)]
        for t, loss in enumerate(result.position_loss)
    ]
    return (
        format_table(["position", "token", "loss"], rows)
        + f"\nmean loss {result.mean_loss:.4f} over {len(result.position_loss)} predicted tokens"
    )


@dataclass
class RepeatedLoss:
    length: int
    repeats: int
    batch: int
    seed: int
    position_loss: torch.Tensor  # (length * repeats - 1,) mean over the batch; t predicts token t+1

    @property
    def first_loss(self) -> float:
        """Mean loss over the first copy (tokens 1 .. length-1: token 0 has nothing before it)."""
        return float(self.position_loss[: self.length - 1].mean())

    @property
    def repeated_loss(self) -> float:
        """Mean loss over every later copy (tokens length .. end)."""
        return float(self.position_loss[self.length - 1 :].mean())

    def to_dict(self) -> dict:
        return {
            "length": self.length,
            "repeats": self.repeats,
            "batch": self.batch,
            "seed": self.seed,
            "first_half_loss": self.first_loss,
            "repeated_half_loss": self.repeated_loss,
            "position_loss": self.position_loss.tolist(),
        }


def repeated_tokens_loss(
    model,
    length: int = 32,
    repeats: int = 2,
    batch: int = 16,
    seed: int = 0,
    eot_id: int | None = None,
    hooks: dict | None = None,
) -> RepeatedLoss:
    """Loss per position on `batch` random sequences repeated `repeats` times, averaged over the
    batch. hooks: optional model.hooks() functions (e.g. ablation_hooks) active during the pass."""
    idx = repeated_random_tokens(model, length, repeats, batch, seed, eot_id)
    with model.hooks(hooks or {}):
        losses = per_position_loss(model, idx)
    return RepeatedLoss(length, repeats, batch, seed, losses.mean(dim=0))


def ablated_repeated_loss(
    model, clean: RepeatedLoss, heads: dict[int, list[int]], eot_id: int | None = None
) -> RepeatedLoss:
    """The loss on the same repeated sequences as `clean` with `heads` ({layer: [head, ...]})
    zero-ablated: how much of the repeats' low loss those heads carry."""
    hooks = ablation_hooks(heads, "zero")
    return repeated_tokens_loss(
        model, clean.length, clean.repeats, clean.batch, clean.seed, eot_id, hooks
    )


def repeated_loss_table(result: RepeatedLoss) -> str:
    rows = [
        ["first copy", result.length - 1, result.first_loss],
        [
            "copy 2" if result.repeats == 2 else f"copies 2..{result.repeats}",
            result.length * (result.repeats - 1),
            result.repeated_loss,
        ],
    ]
    return (
        f"{result.batch} random sequences of {result.length} tokens, each repeated "
        f"{result.repeats} times (seed {result.seed}):\n"
        + format_table(["tokens", "positions", "mean loss"], rows)
    )


def save_position_loss_plot(
    path: str | Path,
    losses: torch.Tensor | dict[str, torch.Tensor],
    title: str,
    boundaries: list[int] = (),
) -> Path:
    """Loss at each position (the token it predicts on the x axis), one line or several named
    ones (e.g. clean and ablated); dashed lines at the copy boundaries."""
    lines = losses if isinstance(losses, dict) else {"loss": losses}
    length = len(next(iter(lines.values())))
    return line_plot(
        path,
        list(range(1, length + 1)),  # position t's loss is that of token t + 1
        {label: values.tolist() for label, values in lines.items()},
        title=title,
        xlabel="position of the predicted token",
        ylabel="loss (nats)",
        vlines=[b - 0.5 for b in boundaries],
    )
