"""Resampling dead features (Anthropic's "Towards Monosemanticity", 2023), the other remedy.

AuxK (gptlab.sae.model.auxk_loss) nudges dead features with a gradient; resampling restarts
them. Every `resample_every` steps, each dead feature is pointed at one activation of the
current batch that the SAE reconstructs badly, drawn with probability proportional to the
square of its squared error, so the restarted features go where the live ones fail:

    decoder row     (x - b_dec) / |x - b_dec|                      unit norm, like every row
    encoder column  the same direction x 0.2 x the mean norm of the live encoder columns
    encoder bias    0

The direction is x - b_dec because that is what the encoder reads (Anthropic's SAE had no
pre-encoder bias and used x itself). Adam's moments of the restarted rows are zeroed, so the
new feature does not move by the dead one's remembered gradients, and its dead-feature counter
restarts, so it gets a full window to fire before it counts as dead again. Live features,
their moments and counters are left exactly as they were.

The draw is seeded by (seed, step), so a resumed run resamples exactly like one that never
stopped without storing any random state.
"""

from __future__ import annotations

import torch

from gptlab.sae.model import SparseAutoencoder

ENCODER_NORM_FRACTION = 0.2  # of the live encoder columns' mean norm (Anthropic's choice)


@torch.no_grad()
def resample_dead(
    sae: SparseAutoencoder,
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    dead: torch.Tensor,
    since_fired: torch.Tensor,
    generator: torch.Generator,
) -> int:
    """Restart the features `dead` marks on activations x (batch, d_in); returns how many."""
    rows = dead.nonzero().squeeze(-1)
    if rows.numel() == 0:
        return 0
    error = (sae(x) - x).pow(2).sum(dim=-1)
    weights = error.pow(2).cpu().double()
    if not bool(weights.sum() > 0):  # a perfect reconstruction: nothing to aim at
        return 0
    picks = torch.multinomial(weights, rows.numel(), replacement=True, generator=generator)
    directions = x[picks.to(x.device)] - sae.b_dec
    directions = directions / directions.norm(dim=-1, keepdim=True).clamp(min=1e-8)
    live_norm = sae.W_enc[:, ~dead].norm(dim=0).mean() if bool((~dead).any()) else 1.0
    sae.W_dec[rows] = directions
    sae.W_enc[:, rows] = (ENCODER_NORM_FRACTION * live_norm) * directions.t()
    sae.b_enc[rows] = 0.0
    for parameter, index in (
        (sae.W_dec, (rows,)),
        (sae.W_enc, (slice(None), rows)),
        (sae.b_enc, (rows,)),
    ):
        state = optimizer.state.get(parameter, {})
        for moment in ("exp_avg", "exp_avg_sq"):
            if moment in state:
                state[moment][index] = 0.0
    since_fired[rows] = 0
    return int(rows.numel())
