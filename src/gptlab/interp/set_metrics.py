"""Direct logit attribution and head ablation averaged over a prompt set, on the logit difference.

- Attribution: the logit difference logit(answer) - logit(wrong) of each clean prompt splits into
  one term per component exactly as one logit does (interp/attribution.py): each component's term
  is its attribution to the answer minus its attribution to the wrong answer. The terms, averaged
  over the set, sum to the mean logit difference.
- Ablation: the mean logit difference over the clean prompts with each head zero- or
  mean-ablated in turn (mean: the head's mean output over every position of the clean prompts).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch

from gptlab.errors import GptlabError
from gptlab.interp.ablation import ABLATION_MODES, ablation_hooks, z_hook_name
from gptlab.interp.attribution import direct_logit_attribution
from gptlab.interp.prompt_sets import PromptSet
from gptlab.tables import format_table, ranked_cells

HEAD_TERM = re.compile(r"L\d+H\d+")  # a head's term in LogitAttribution.components()


@dataclass
class SetAttribution:
    logit_diff: float  # the model's mean logit difference over the set
    heads: torch.Tensor  # (n_layer, n_head) mean contribution of each head to the difference
    other: dict[str, float]  # embeddings, attention biases, MLPs, ln_final bias

    def total(self) -> float:
        return float(self.heads.sum()) + sum(self.other.values())

    def to_dict(self) -> dict:
        return {
            "logit_diff": self.logit_diff,
            "sum_of_components": self.total(),
            "heads": self.heads.tolist(),
            "other": self.other,
        }


def set_logit_attribution(model, prompts: PromptSet) -> SetAttribution:
    """Mean direct attribution of the logit difference, over the clean prompts of the set."""
    n_layer, n_head = model.config.n_layer, model.config.n_head
    heads = torch.zeros(n_layer, n_head, dtype=torch.float64)
    other: dict[str, float] = {}
    diff = 0.0
    for row in range(len(prompts)):
        idx = prompts.clean[row : row + 1]
        answer = direct_logit_attribution(model, idx, int(prompts.answers[row]))
        wrong = direct_logit_attribution(model, idx, int(prompts.wrongs[row]))
        heads += answer.heads - wrong.heads
        diff += answer.logit - wrong.logit
        for (name, a), (_, w) in zip(answer.components(), wrong.components(), strict=True):
            if not HEAD_TERM.fullmatch(name):  # heads are summed above, as a tensor
                other[name] = other.get(name, 0.0) + a - w
    n = len(prompts)
    return SetAttribution(
        logit_diff=diff / n, heads=(heads / n).float(), other={k: v / n for k, v in other.items()}
    )


@dataclass
class SetAblation:
    mode: str
    clean_logit_diff: float
    ablated: torch.Tensor  # (n_layer, n_head) mean logit difference with that head ablated

    @property
    def change(self) -> torch.Tensor:
        return self.ablated - self.clean_logit_diff

    def to_dict(self) -> dict:
        return {
            "mode": self.mode,
            "clean_logit_diff": self.clean_logit_diff,
            "ablated_logit_diff": self.ablated.tolist(),
            "change": self.change.tolist(),
        }


@torch.no_grad()
def set_head_ablation(model, prompts: PromptSet, mode: str = "zero") -> SetAblation:
    """Mean logit difference over the clean prompts with each head ablated in turn."""
    if mode not in ABLATION_MODES:
        raise GptlabError(f"unknown ablation mode {mode!r}: use one of {', '.join(ABLATION_MODES)}")
    n_layer, n_head = model.config.n_layer, model.config.n_head
    logits, cache = model.run_with_cache(prompts.clean, names=["blocks.*.attn.hook_z"])
    z_means = torch.stack([cache[z_hook_name(i)].float().mean(dim=(0, 1)) for i in range(n_layer)])
    ablated = torch.zeros(n_layer, n_head)
    for layer in range(n_layer):
        for head in range(n_head):
            with model.hooks(ablation_hooks({layer: [head]}, mode, z_means)):
                logits_ablated, _ = model(prompts.clean, only_last=True)
            ablated[layer, head] = prompts.logit_diff(logits_ablated).mean().cpu()
    return SetAblation(mode, float(prompts.logit_diff(logits).mean()), ablated)


def head_grid_table(values: torch.Tensor, column: str, top_k: int, by_size: bool = True) -> str:
    """The top_k heads by |value| (or by value), one row each."""
    order = values.abs() if by_size else values
    rows = [[f"L{r}H{c}", float(values[r, c])] for r, c in ranked_cells(order, top_k)]
    return format_table(["head", column], rows)
