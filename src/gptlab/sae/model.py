"""The sparse autoencoder itself: x -> sparse feature activations f -> reconstruction x_hat.

    f     = activation((x - b_dec) @ W_enc + b_enc)       (tokens, d_sae)
    x_hat = f @ W_dec + b_dec                              (tokens, d_in)

b_dec is the "pre-encoder bias" of Gao et al. (2024): it is subtracted before encoding and added
back after decoding, so the features only describe how an activation differs from a typical one.
The rows of W_dec are the feature directions, kept at unit norm during training, so a feature's
activation is the length of its contribution to the reconstruction.

Two kinds behind one setting:
- "topk" (default): keep the k largest pre-activations of each token (ReLU'd), zero the rest.
  Sparsity is exact (L0 <= k); no penalty to tune.
- "relu": ReLU, with sparsity from an L1 penalty on f weighted by the decoder norms (Anthropic's
  April 2024 recipe); L0 then follows from the penalty's coefficient.

The tensor names and shapes match SAELens' (W_enc (d_in, d_sae), W_dec (d_sae, d_in)), so
exporting is a copy (gptlab.sae.folder.export_saelens).
"""

from __future__ import annotations

import typing
from typing import Literal

import torch
from torch import nn

SaeKind = Literal["topk", "relu"]
KINDS: tuple[str, ...] = typing.get_args(SaeKind)


class SparseAutoencoder(nn.Module):
    def __init__(self, d_in: int, d_sae: int, kind: str = "topk", k: int = 32) -> None:
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")  # callers validate
        self.d_in, self.d_sae, self.kind, self.k = d_in, d_sae, kind, k
        self.W_enc = nn.Parameter(torch.empty(d_in, d_sae))
        self.b_enc = nn.Parameter(torch.zeros(d_sae))
        self.W_dec = nn.Parameter(torch.empty(d_sae, d_in))
        self.b_dec = nn.Parameter(torch.zeros(d_in))

    @staticmethod
    def weight_bytes(d_in: int, d_sae: int) -> int:
        """Bytes of float32 weights an SAE of this shape holds (checked before it is built)."""
        return 4 * (2 * d_in * d_sae + d_sae + d_in)

    @torch.no_grad()
    def reset_parameters(
        self, generator: torch.Generator | None = None, encoder_scale: float = 1.0
    ) -> None:
        """Random unit-norm decoder rows, the encoder their transpose times `encoder_scale`
        (Gao et al. section A.1: the SAE starts close to a scaled identity on the features it
        has), zero biases."""
        self.W_dec.copy_(torch.randn(self.d_sae, self.d_in, generator=generator))
        self.normalize_decoder()
        self.W_enc.copy_(encoder_scale * self.W_dec.t())
        self.b_enc.zero_()
        self.b_dec.zero_()

    @torch.no_grad()
    def calibrate_encoder(self, x: torch.Tensor) -> float:
        """Scale the encoder down to the largest start whose reconstruction of x (a first batch)
        explains no less variance than b_dec alone; returns the scale (1: no change).

        With b_enc = 0 both kinds are linear in the encoder's scale s (top-k picks the same
        features at any s > 0 and ReLU(s p) = s ReLU(p)), so x_hat - b_dec = s r, where r is
        the reconstruction at the current encoder, and the error |x - b_dec - s r|^2 falls
        under |x - b_dec|^2 exactly for s < 2 <x - b_dec, r> / |r|^2. The decoder's transpose
        overshoots that bound: 32 of 2,048 random unit directions in 128 dimensions give
        |r| ~ 2 |x - b_dec| (variance explained about -0.8 on both tutorial models), which
        costs a short run dozens of Adam steps spent shrinking the encoder. Scaling further,
        to the least-squares s (half the bound) or below, wins those steps back but leaves
        features dead (BENCHMARKS.md, "Sparse autoencoders"): Adam's steps are a fixed size, so
        a smaller encoder lets the first batches' winners outgrow the rest."""
        centred = x - self.b_dec
        recon = self.decode(self.encode(x)) - self.b_dec
        along, power = float((centred * recon).sum()), float(recon.pow(2).sum())
        if along <= 0 or power == 0:  # nothing fires, or nothing to scale towards
            return 1.0
        scale = min(1.0, 2 * along / power)
        self.W_enc.mul_(scale)
        return scale

    def pre_activations(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.b_dec) @ self.W_enc + self.b_enc

    def activate(self, pre: torch.Tensor) -> torch.Tensor:
        if self.kind == "relu":
            return torch.relu(pre)
        values, indices = self.top_k(pre, self.k)
        return torch.zeros_like(pre).scatter_(-1, indices, values)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Feature activations (..., d_sae) of activations x (..., d_in)."""
        return self.activate(self.pre_activations(x))

    def decode(self, f: torch.Tensor) -> torch.Tensor:
        return f @ self.W_dec + self.b_dec

    def top_k(self, pre: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(values, indices) of the k largest pre-activations per token, ReLU'd: (N, k) each."""
        values, indices = pre.topk(k, dim=-1, sorted=False)
        return values.relu(), indices

    def decode_sparse(self, values: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
        """decode() of activations given as (N, k) values at (N, k) feature indices, without
        the dense (N, d_sae) matrix: sum_j values[:, j] * W_dec[indices[:, j]], as one
        embedding_bag (its backward scatters into only the k rows used). This is what makes
        a training step cost about two matmuls instead of four."""
        summed = nn.functional.embedding_bag(
            indices, self.W_dec, per_sample_weights=values, mode="sum"
        )
        return summed + self.b_dec

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))

    @torch.no_grad()
    def normalize_decoder(self) -> None:
        self.W_dec.div_(self.W_dec.norm(dim=-1, keepdim=True).clamp(min=1e-8))

    @torch.no_grad()
    def remove_parallel_decoder_gradient(self) -> None:
        """Drop the part of each decoder row's gradient along the row itself: with unit-norm rows,
        that part only changes the norm, which normalize_decoder undoes anyway, and letting Adam
        see it distorts its moment estimates (Gao et al. appendix B.5)."""
        grad = self.W_dec.grad
        if grad is None:
            return
        along = (grad * self.W_dec).sum(dim=-1, keepdim=True)
        grad.sub_(along * self.W_dec)


def auxk_loss(
    sae: SparseAutoencoder,
    x: torch.Tensor,
    x_hat: torch.Tensor,
    pre: torch.Tensor,
    dead: torch.Tensor,
    k_aux: int,
) -> torch.Tensor:
    """The AuxK auxiliary loss of Gao et al. (2024, appendix A.2) against dead features.

    The k_aux largest pre-activations among the dead features (ReLU'd) try to reconstruct the
    main reconstruction's error e = x - x_hat (without b_dec, which e already accounts for):
    e_hat = f_aux @ W_dec. As in the paper's code, the squared error is normalized by e's own
    variance, |e_hat - e|^2 / |e - mean(e)|^2, so the pull on dead features does not fade as
    the live ones reconstruct x better (at 99% variance explained e is a hundred times smaller
    than x; unnormalized, AuxK's gradient shrinks with it and Adam, still remembering the
    feature's larger gradients from when it was alive, barely moves it). The result is put in
    the main loss's units (times x's variance per token), so aux_coefficient weighs it against
    the reconstruction the way the paper's alpha weighs two normalized errors. Scaled down while
    fewer features are dead than k_aux (as SAELens and EleutherAI's sparsify do), so a handful
    of dead features does not dominate the loss. Its gradient reaches only dead features.
    """
    n_dead = int(dead.sum())
    if n_dead == 0:
        return x.new_zeros(())
    scale = min(n_dead / k_aux, 1.0)
    masked = torch.where(dead, pre, torch.full_like(pre, -torch.inf))
    values, indices = sae.top_k(masked, min(k_aux, n_dead))
    error = (x - x_hat).detach()
    recon = sae.decode_sparse(values, indices) - sae.b_dec  # e_hat = f_aux @ W_dec, no bias
    error_variance = (error - error.mean(dim=0)).pow(2).sum()
    if error_variance == 0:  # one token, or the same error on every token: nothing to normalize by
        return x.new_zeros(())
    x_variance = (x - x.mean(dim=0)).pow(2).sum() / x.shape[0]  # per token, the main loss's unit
    return scale * x_variance * (recon - error).pow(2).sum() / error_variance


def l1_penalty(sae: SparseAutoencoder, f: torch.Tensor) -> torch.Tensor:
    """sum_i f_i * ||W_dec_i|| per token, averaged over tokens (the "relu" kind's sparsity)."""
    return (f * sae.W_dec.norm(dim=-1)).sum(dim=-1).mean()
