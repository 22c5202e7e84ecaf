"""Muon: momentum SGD whose update for each weight matrix is orthogonalised (Jordan et al., 2024).

For a matrix W with gradient G, Muon keeps a Nesterov momentum buffer M and steps

    M <- momentum * M + G
    U <- G + momentum * M                       (Nesterov)
    W <- W * (1 - lr * weight_decay) - lr * sqrt(max(1, rows / cols)) * orthogonalise(U)

orthogonalise(U) replaces U = A S B^T by roughly A B^T: every direction of the update gets about
the same size, so rare directions learn as fast as the dominant ones. It is computed with five
steps of a quintic Newton-Schulz iteration (no SVD), whose coefficients push the singular values
quickly towards 1 (they land in about [0.7, 1.2], which trains just as well).

Muon is only for the 2-D hidden matrices (attention and MLP weights). Embeddings, the output head,
norm gains and biases stay on AdamW: `gptlab.train.optim` builds both and steps them together.

torch.optim.Muon exists, but it always iterates in bfloat16, which CPUs without bfloat16 matmul
units run ~80x slower than float32 (measured on the 2-core AVX2 machine of BENCHMARKS.md). Here the
iteration runs in bfloat16 on CUDA and in float32 elsewhere; the test suite checks that the
bfloat16 path matches torch.optim.Muon.
"""

from __future__ import annotations

import math

import torch

# The quintic's coefficients: the largest slope at zero for which five steps still converge.
NEWTON_SCHULZ_COEFFICIENTS = (3.4445, -4.7750, 2.0315)


def orthogonalise(update: torch.Tensor, steps: int = 5, dtype: torch.dtype | None = None):
    """~A B^T for update = A S B^T, by `steps` Newton-Schulz iterations in `dtype`."""
    a, b, c = NEWTON_SCHULZ_COEFFICIENTS
    dtype = dtype or (torch.bfloat16 if update.is_cuda else torch.float32)
    x = update.to(dtype)
    tall = x.size(0) > x.size(1)
    if tall:  # iterate on the wide orientation: the Gram matrix x x^T is the smaller one
        x = x.T
    x = x / x.norm().clamp(min=1e-7)  # Frobenius norm >= spectral norm: singular values <= 1
    for _ in range(steps):
        gram = x @ x.T
        polynomial = torch.addmm(gram, gram, gram, beta=b, alpha=c)  # b G + c G^2
        x = torch.addmm(x, polynomial, x, beta=a)  # a x + (b G + c G^2) x
    return (x.T if tall else x).to(update.dtype)


class Muon(torch.optim.Optimizer):
    def __init__(
        self,
        params,
        lr: float = 0.02,
        momentum: float = 0.95,
        weight_decay: float = 0.0,
        ns_steps: int = 5,
        ns_dtype: torch.dtype | None = None,
    ) -> None:
        defaults = dict(lr=lr, momentum=momentum, weight_decay=weight_decay, ns_steps=ns_steps)
        super().__init__(params, defaults)
        self.ns_dtype = ns_dtype
        for group in self.param_groups:
            for p in group["params"]:
                if p.dim() != 2:
                    raise ValueError(
                        f"Muon takes 2-D weight matrices only, got shape {tuple(p.shape)}"
                    )

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, momentum = group["lr"], group["momentum"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(p)
                buffer = state["momentum_buffer"]
                buffer.mul_(momentum).add_(p.grad)
                nesterov = p.grad.add(buffer, alpha=momentum)
                direction = orthogonalise(nesterov, group["ns_steps"], self.ns_dtype)
                # sqrt(rows / cols) for tall matrices keeps the update's per-entry size the same
                # for every shape (the orthogonalised matrix's entries shrink as rows grow).
                shape_scale = math.sqrt(max(1.0, p.size(0) / p.size(1)))
                p.mul_(1.0 - lr * group["weight_decay"])
                p.add_(direction, alpha=-lr * shape_scale)
        return loss
