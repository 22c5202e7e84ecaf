"""The weight layout for decoding on a CPU: how each linear's matrix is stored in memory.

A batch-1 decode step is one matrix-vector product per weight matrix, so its speed is how fast
the CPU streams the weights. nn.Linear keeps its weight as (out, in) and computes x @ W^T; for a
single row on the CPU build of torch this runs at one core's bandwidth (13 GB/s on the 2-core CPU).
Two layouts do better (BENCHMARKS.md, "Decoding"; `python benchmarks/profile_decode.py
--layouts` measures them):

- the head, one large matrix, stored input-major (in, out): x @ W_t streams GPT-2's 154 MB head at
  21-26 GB/s, and the token embedding of a tied model becomes a view of that matrix, so no weight
  is stored twice (InputMajorLinear);
- every other linear packed once into oneDNN's blocked layout, the form torch's own compiler
  (inductor, with freezing) gives CPU linears: GPT-2's 48 block matrices, 340 MB read in
  turn from memory, stream at 22 GB/s against 14 input-major, because the blocked layout reads
  each matrix as a few long sequential runs (PackedLinear).

The arithmetic is the same dot products in another order, so the logits agree with the plain
model's to float rounding and greedy tokens are unchanged. Only for inference: the layout is
applied to a model that will not train again (gptlab sample, chat, bench generate; see
gptlab.inference.precision.prepare_model).
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


def packing_available() -> bool:
    """Whether this torch build has oneDNN's packed CPU linear (every x86/ARM build from PyPI)."""
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


class PackedLinear(nn.Module):
    """nn.Linear's product with the weight packed once into oneDNN's blocked layout.

    The packed matrix is an opaque oneDNN tensor: `weight` unpacks an (out, in) copy for code that
    reads the matrix, and the state dict holds that plain copy, so a prepared model still saves
    and measures (gptlab.inference.precision.weight_bytes) like any other.
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
        super().__init__()
        self.out_features, self.in_features = weight.shape
        # the second argument is the batch oneDNN tunes the packing for: decode's single row
        self.register_buffer(
            "packed_weight",
            torch.ops.mkldnn._reorder_linear_weight(weight.detach().contiguous(), 1),
            persistent=False,
        )
        self.bias = None if bias is None else nn.Parameter(bias.detach(), requires_grad=False)

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> PackedLinear:
        return cls(linear.weight, linear.bias)

    @property
    def weight(self) -> torch.Tensor:
        return self.packed_weight.to_dense()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.mkldnn._linear_pointwise(x, self.packed_weight, self.bias, "none", [], "")

    def _save_to_state_dict(self, destination, prefix, keep_vars) -> None:
        super()._save_to_state_dict(destination, prefix, keep_vars)
        destination[prefix + "weight"] = self.weight

    def __deepcopy__(self, memo) -> PackedLinear:  # an opaque tensor has no storage to copy
        return PackedLinear(self.weight, None if self.bias is None else self.bias.clone())

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, oneDNN packed"


# A packed product costs a fixed few microseconds more per call than a plain one (oneDNN looks up
# its primitive), which a small matrix's faster streaming does not pay back: the 1.8M-parameter
# prose model's 128 x 384 matrices decode faster input-major. GPT-2's smallest, 768 x 768, is
# 2.4 MB.
PACK_MIN_BYTES = 1 << 20


def to_decode_layout(model: nn.Module, packed: bool = True) -> nn.Module:
    """Swap every nn.Linear of `model` (in place) for the same product in the faster layout:
    the head input-major, every other linear of PACK_MIN_BYTES or more packed (input-major where
    oneDNN is missing or packed=False: torch.compile cannot trace the packed matrices).

    A tied head (lm_head.weight is wte.weight) is converted once and the embedding re-pointed at
    it, so the model's memory does not grow.
    """
    head = getattr(model, "lm_head", None)
    tied = head is not None and head.weight is getattr(getattr(model, "wte", None), "weight", None)
    packed = packed and packing_available()
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is not nn.Linear:  # subclasses (int8, LoRA wrappers) keep their forward
                continue
            large = child.weight.numel() * child.weight.element_size() >= PACK_MIN_BYTES
            if child is head or not packed or not large:
                setattr(parent, name, InputMajorLinear.from_linear(child))
            else:
                setattr(parent, name, PackedLinear.from_linear(child))
    if tied:
        model.wte.weight = nn.Parameter(model.lm_head.weight_t.t(), requires_grad=False)
    return model


def has_packed_linears(model: nn.Module) -> bool:
    return any(isinstance(module, PackedLinear) for module in model.modules())
