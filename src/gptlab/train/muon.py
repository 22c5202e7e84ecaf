"""Muon: momentum SGD whose update for each weight matrix is orthogonalised (Jordan et al., 2024).

For a matrix W with gradient G, Muon keeps a Nesterov momentum buffer M and steps

    M <- momentum * M + G
    U <- G + momentum * M                       (Nesterov)
    W <- W * (1 - lr * weight_decay) - lr * sqrt(max(1, rows / cols)) * orthogonalise(U)

orthogonalise(U) replaces U = A S B^T by roughly A B^T: every direction of the update gets about
the same size, so rare directions learn as fast as the dominant ones. It is computed with a few
steps of an odd quintic iteration X <- a X + b (X X^T) X + c (X X^T)^2 X (no SVD), which maps each
singular value s to p(s) = a s + b s^3 + c s^5 and so pushes them all towards 1. Two choices of
coefficients (train.muon_coefficients):

- "quintic": Jordan's (3.4445, -4.7750, 2.0315) at every step, the largest slope at zero for
  which five steps still converge; the singular values land in about [0.7, 1.2], which trains
  just as well as exactly 1.
- "polar_express": Amsel, Persson, Musco and Gower, "The Polar Express" (2025), arXiv:2505.16932:
  a different polynomial at each step, each the minimax-optimal odd quintic for the interval the
  previous ones left the singular values in (from [1e-3, 1] at the start), with the paper's
  safety margins. The first step is the aggressive one (slope 8.16 at zero); the later ones
  narrow the band around 1. Its input is scaled by 1 / (1.02 ||U||_F), the 2% margin the
  coefficients were derived for. Past the fifth step the fifth polynomial repeats.

NorMuon (Li, Chen, Lin et al., "NorMuon", 2025, arXiv:2510.05491; neuron_norm=True) evens out
what orthogonalisation leaves uneven: the rows (or, for a wide matrix, the columns) of
orthogonalise(U) can differ a lot in size, so each neuron's share is divided by the square root of
an exponential average (beta NEURON_NORM_BETA) of its own mean square, as Adam does per entry, and
the result is rescaled to the Frobenius norm orthogonalise(U) had, so the learning rate keeps its
meaning.

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
# The Polar Express's five polynomials (a, b, c), as published with the paper's code (l = 1e-3,
# 2% safety margin); tests/test_train_muon.py checks that they take every singular value in
# [1e-3, 1] to within 0.1 of 1 after five steps, against an SVD.
POLAR_EXPRESS_COEFFICIENTS = (
    (8.156554524902461, -22.48329292557795, 15.878769915207462),
    (4.042929935166739, -2.808917465908714, 0.5000178451051316),
    (3.8916678022926607, -2.772484153217685, 0.5060648178503393),
    (3.285753657755655, -2.3681294933425376, 0.46449024233003106),
    (2.3465413258596377, -1.7097828382687081, 0.42323551169305323),
)
POLAR_EXPRESS_MARGIN = 1.02  # the input is divided by 1.02 x its Frobenius norm
# At most this many numbers are orthogonalised as one batch (64 MB in float32): small models batch
# every layer at once, while a large one's temporaries stay a few matrices' worth.
BATCH_NUMBERS = 2**24
COEFFICIENTS = ("quintic", "polar_express")
NEURON_NORM_BETA = 0.95  # NorMuon's average of each neuron's mean square (the paper's beta2)


def step_coefficients(kind: str, steps: int) -> list[tuple[float, float, float]]:
    """The (a, b, c) of each of `steps` iterations for train.muon_coefficients = `kind`."""
    if kind == "quintic":
        return [NEWTON_SCHULZ_COEFFICIENTS] * steps
    if kind == "polar_express":
        last = len(POLAR_EXPRESS_COEFFICIENTS) - 1
        return [POLAR_EXPRESS_COEFFICIENTS[min(i, last)] for i in range(steps)]
    raise ValueError(
        f"unknown Newton-Schulz coefficients {kind!r}: use {' or '.join(COEFFICIENTS)}"
    )


def orthogonalise(
    update: torch.Tensor,
    steps: int = 5,
    dtype: torch.dtype | None = None,
    coefficients: str = "quintic",
):
    """~A B^T for update = A S B^T, by `steps` Newton-Schulz iterations in `dtype`.

    `update` is one matrix (rows, cols) or a stack of same-shape matrices (n, rows, cols), each
    orthogonalised on its own: the stack runs as a few batched matmuls instead of many small ones.
    """
    dtype = dtype or (torch.bfloat16 if update.is_cuda else torch.float32)
    x = update.to(dtype)
    tall = x.size(-2) > x.size(-1)
    if tall:  # iterate on the wide orientation: the Gram matrix x x^T is the smaller one
        x = x.mT
    # Frobenius norm >= spectral norm: singular values <= 1 (Polar Express: <= 1 / 1.02)
    norm = x.norm(dim=(-2, -1), keepdim=True)
    if coefficients != "quintic":
        norm = norm * POLAR_EXPRESS_MARGIN
    x = x / norm.clamp(min=1e-7)
    # addmm for one matrix, baddbmm for a stack: both fuse the scaled sum into the matmul.
    fused = torch.addmm if x.dim() == 2 else torch.baddbmm
    for a, b, c in step_coefficients(coefficients, steps):
        gram = x @ x.mT
        polynomial = fused(gram, gram, gram, beta=b, alpha=c)  # b G + c G^2
        x = fused(x, polynomial, x, beta=a)  # a x + (b G + c G^2) x
    return (x.mT if tall else x).to(update.dtype)


def same_shape_batches(matrices: list[torch.Tensor]) -> list[list[torch.Tensor]]:
    """`matrices` grouped by shape, in batches of at most BATCH_NUMBERS numbers, to be
    orthogonalised as stacks: a layer stack holds each shape once per layer, so a few larger
    matmuls replace many small ones (the same result)."""
    by_shape: dict[torch.Size, list[torch.Tensor]] = {}
    for matrix in matrices:
        by_shape.setdefault(matrix.shape, []).append(matrix)
    batches = []
    for shape, same in by_shape.items():
        per_batch = max(1, BATCH_NUMBERS // shape.numel())
        batches += [same[start : start + per_batch] for start in range(0, len(same), per_batch)]
    return batches


class Muon(torch.optim.Optimizer):
    def __init__(
        self,
        params,
        lr: float = 0.02,
        momentum: float = 0.95,
        weight_decay: float = 0.0,
        ns_steps: int = 5,
        ns_dtype: torch.dtype | None = None,
        ns_coefficients: str = "quintic",
        neuron_norm: bool = False,
    ) -> None:
        defaults = dict(lr=lr, momentum=momentum, weight_decay=weight_decay, ns_steps=ns_steps)
        super().__init__(params, defaults)
        step_coefficients(ns_coefficients, 1)  # an unknown name fails here, not at the first step
        self.ns_dtype, self.ns_coefficients = ns_dtype, ns_coefficients
        self.neuron_norm = neuron_norm
        for group in self.param_groups:
            for p in group["params"]:
                if p.dim() != 2:
                    raise ValueError(
                        f"Muon takes 2-D weight matrices only, got shape {tuple(p.shape)}"
                    )

    def nesterov_update(self, p: torch.Tensor, momentum: float) -> torch.Tensor:
        """Fold p's gradient into its momentum buffer; the Nesterov look-ahead G + momentum * M."""
        state = self.state[p]
        if "momentum_buffer" not in state:
            state["momentum_buffer"] = torch.zeros_like(p)
        buffer = state["momentum_buffer"]
        buffer.mul_(momentum).add_(p.grad)
        return p.grad.add(buffer, alpha=momentum)

    def neuron_normalised(
        self, batch: list[torch.Tensor], directions: torch.Tensor
    ) -> torch.Tensor:
        """NorMuon on a stack of same-shape directions (n, rows, cols): each neuron's share
        divided by its running RMS, then each matrix scaled back to its Frobenius norm. A neuron
        is a row of a tall (or square) matrix and a column of a wide one: the longer side, whose
        units orthogonalisation sizes unevenly (the shorter side's come out at norms near 1)."""
        rows, cols = batch[0].shape
        over = -1 if rows >= cols else -2  # average over the other side's entries
        mean_square = directions.square().mean(dim=over, keepdim=True)
        averages = []
        for p, fresh in zip(batch, mean_square, strict=True):
            state = self.state[p]
            if "neuron_mean_square" not in state:  # (rows, 1) or (1, cols)
                state["neuron_mean_square"] = torch.zeros_like(fresh)
            averages.append(state["neuron_mean_square"])
        # one call for the whole stack: on a CPU the per-matrix calls would cost more than the math
        torch._foreach_lerp_(averages, list(mean_square.unbind(0)), 1.0 - NEURON_NORM_BETA)
        evened = directions * torch.stack(averages).clamp(min=1e-20).rsqrt()
        size = directions.norm(dim=(-2, -1), keepdim=True)
        return evened * (size / evened.norm(dim=(-2, -1), keepdim=True).clamp(min=1e-20))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, momentum = group["lr"], group["momentum"]
            params = [p for p in group["params"] if p.grad is not None]
            for batch in same_shape_batches(params):
                updates = torch.stack([self.nesterov_update(p, momentum) for p in batch])
                directions = orthogonalise(
                    updates, group["ns_steps"], self.ns_dtype, self.ns_coefficients
                )
                if self.neuron_norm:
                    directions = self.neuron_normalised(batch, directions)
                # sqrt(rows / cols) for tall matrices keeps the update's per-entry size the same
                # for every shape (the orthogonalised matrix's entries shrink as rows grow).
                rows, cols = batch[0].shape
                shape_scale = math.sqrt(max(1.0, rows / cols))
                for p, direction in zip(batch, directions, strict=True):
                    p.mul_(1.0 - lr * group["weight_decay"])
                    p.add_(direction, alpha=-lr * shape_scale)
        return loss
