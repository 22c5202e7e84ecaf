"""The weight layout for decoding on a CPU: every linear's matrix stored input-major.

A batch-1 decode step is one matrix-vector product per weight matrix, so its speed is how fast
the CPU streams the weights. nn.Linear keeps its weight as (out, in) and computes x @ W^T; for a
single row on the CPU build of torch this runs at one core's bandwidth. The same product with
the matrix stored as (in, out), x @ W_t, reaches both cores' (BENCHMARKS.md, "Decoding": 13 against
21 GB/s for GPT-2's 154 MB head on the 2-core CPU). The arithmetic is the same dot products, so
the logits agree with the plain model's to float rounding and greedy tokens are unchanged.

Only for inference: the layout is applied to a model that will not train again (gptlab sample,
chat, bench generate; see gptlab.inference.precision.prepare_model). The token embedding of a
tied model becomes a view of the head's input-major matrix, so no weight is stored twice.
"""

from __future__ import annotations

import torch
import torch.nn as nn


class InputMajorLinear(nn.Module):
    """y = x @ weight_t + bias with weight_t of shape (in, out): nn.Linear's product, stored
    transposed. `weight` gives the (out, in) view for code that reads nn.Linear's matrix (the
    logit lens, attribution, an SAE's logit effect)."""

    def __init__(self, weight_t: torch.Tensor, bias: torch.Tensor | None) -> None:
        super().__init__()
        self.weight_t = nn.Parameter(weight_t, requires_grad=False)
        self.bias = None if bias is None else nn.Parameter(bias.detach(), requires_grad=False)
        self.in_features, self.out_features = weight_t.shape

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> InputMajorLinear:
        return cls(linear.weight.detach().t().contiguous(), linear.bias)

    @property
    def weight(self) -> torch.Tensor:
        return self.weight_t.t()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, self.in_features)
        if self.bias is None:
            out = rows @ self.weight_t
        else:
            out = torch.addmm(self.bias, rows, self.weight_t)
        return out.view(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, input-major"


def to_input_major(model: nn.Module) -> nn.Module:
    """Swap every nn.Linear of `model` (in place) for an InputMajorLinear with the same product.

    A tied head (lm_head.weight is wte.weight) is converted once and the embedding re-pointed at
    it, so the model's memory does not grow.
    """
    tied = getattr(model, "lm_head", None) is not None and (
        model.lm_head.weight is getattr(getattr(model, "wte", None), "weight", None)
    )
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is nn.Linear:  # subclasses (int8, LoRA wrappers) keep their own forward
                setattr(parent, name, InputMajorLinear.from_linear(child))
    if tied:
        model.wte.weight = nn.Parameter(model.lm_head.weight_t.t(), requires_grad=False)
    return model
