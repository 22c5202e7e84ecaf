"""The optimizer and the learning-rate schedule.

Weight decay pulls weights towards zero. It is applied to the 2-D tensors (the matmul weights and
the embeddings) and not to biases and LayerNorm gains, whose job is to shift and scale, as in
GPT-2/GPT-3 training.

train.optimizer = "muon" hands the blocks' weight matrices to Muon (train/muon.py) at peak
train.muon_lr and keeps AdamW for embeddings, head, norms and biases; both follow the schedule.
Within AdamW, train.embed_lr_scale, head_lr_scale and scalar_lr_scale multiply lr for the lookup
tables, an untied head and the speedrun additions' scalar dials (adamw_rate_scales): a table row
gets a gradient only from the tokens that use it, and a dial is one number that sums a whole
layer's signal, so neither moves at the pace the matrices' rate sets.

The schedule: linear warmup over `warmup_steps` to `lr`, then a cosine from `lr` down to `min_lr`
over the rest of the budget:

    step < warmup:  lr * (step + 1) / warmup
    afterwards:     min_lr + (lr - min_lr) * 0.5 * (1 + cos(pi * progress))

where `progress` (0 -> 1) is how far the run is through its budget after warmup: by steps, by
training seconds, or whichever is further along when both are set.

With train.cooldown_fraction = f, the part after warmup is warmup-stable-decay instead (the
schedule of the GPU speedruns, which spend 45-55% of training cooling down): lr until progress
reaches 1 - f, then a straight line to min_lr at the end,

    afterwards:     min_lr + (lr - min_lr) * min(1, (1 - progress) / f)

so f = 1 decays linearly over the whole budget. Measured by the same `progress`, the cooldown
starts on time under a clock budget too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from gptlab.train.config import TrainConfig
from gptlab.train.muon import Muon
from gptlab.train.precision import newton_schulz_dtype


def parameter_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Two AdamW groups: 2-D+ tensors with weight decay, the rest (biases, norms) without.

    The tied lm_head/wte matrix is one Parameter, so it appears once (model.parameters() and
    named_parameters() never yield a shared tensor twice).
    """
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def hidden_matrices(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    """The blocks' trainable Linear weights (attention and MLP matrices): what Muon optimises.

    Embeddings and the output head are lookups/readouts of single tokens, not transforms of the
    hidden state, and stay on AdamW, as in Muon's reference setup; so do the tables and gates
    inside blocks (value embeddings), which are not Linear layers.
    """
    blocks = getattr(model, "blocks", None)
    if blocks is None:
        return []
    return [
        m.weight
        for m in blocks.modules()
        if isinstance(m, torch.nn.Linear) and m.weight.requires_grad and m.weight.dim() == 2
    ]


class OptimizerPair:
    """Muon for the hidden matrices and AdamW for everything else, stepped as one optimizer.

    Exposes what the training loop and GradScaler use: param_groups (each group keeps the
    `lr_scale` that set_learning_rate applies), step, zero_grad, state_dict, load_state_dict.
    """

    def __init__(self, adamw: torch.optim.AdamW, muon: Muon) -> None:
        self.adamw, self.muon = adamw, muon

    @property
    def param_groups(self) -> list[dict]:
        return self.adamw.param_groups + self.muon.param_groups

    def step(self, closure=None):
        if closure is not None:
            raise ValueError("OptimizerPair.step does not take a closure")
        self.adamw.step()
        self.muon.step()

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.adamw.zero_grad(set_to_none=set_to_none)
        self.muon.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict:
        return {"adamw": self.adamw.state_dict(), "muon": self.muon.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.adamw.load_state_dict(state["adamw"])
        self.muon.load_state_dict(state["muon"])


def saved_optimizer_name(state: dict) -> str:
    """Which train.optimizer wrote an optimizer state_dict: "muon" (OptimizerPair) or "adamw"."""
    return "muon" if set(state) == {"adamw", "muon"} else "adamw"


def adamw_rate_scales(
    model: torch.nn.Module, *, embed: float = 1.0, head: float = 1.0, scalar: float = 1.0
) -> dict[int, float]:
    """{id(parameter): its multiple of AdamW's lr} for the parameters whose multiple is not 1.

    embed: every nn.Embedding's table (with a tied head, the shared matrix is the embedding);
    head: an untied lm_head; scalar: the speedrun additions' one-number dials (a block's
    resid_scale, x0_scale and bigram_scale, the smear's strength).
    """
    scales = {}
    for module in model.modules():
        if isinstance(module, torch.nn.Embedding):
            scales[id(module.weight)] = embed
    lm_head = getattr(model, "lm_head", None)
    if lm_head is not None and id(lm_head.weight) not in scales:
        scales[id(lm_head.weight)] = head
    for name, param in model.named_parameters():
        if name.endswith(("resid_scale", "x0_scale", "bigram_scale", "smear.strength")):
            scales[id(param)] = scalar
    return {key: scale for key, scale in scales.items() if scale != 1.0}


def adamw_optimizer(
    model: torch.nn.Module,
    *,
    lr: float,
    weight_decay: float,
    betas: tuple[float, float],
    device: torch.device,
    exclude: list[torch.nn.Parameter] = (),
    rate_scales: dict[int, float] | None = None,
) -> torch.optim.AdamW:
    """AdamW over the trainable parameters (less `exclude`), weight decay on 2-D tensors only;
    the parameters in rate_scales (adamw_rate_scales) get groups of their own at that multiple
    of lr. Without any, the two groups of parameter_groups, as before the scales existed."""
    excluded = {id(p) for p in exclude}
    rate_scales = rate_scales or {}
    groups = []
    for group in parameter_groups(model, weight_decay):
        by_scale: dict[float, list[torch.nn.Parameter]] = {}
        for p in group["params"]:
            if id(p) not in excluded:
                by_scale.setdefault(rate_scales.get(id(p), 1.0), []).append(p)
        if not by_scale:  # keep the group (empty) so a plain run's groups never change
            by_scale[1.0] = []
        groups += [
            {**group, "params": params, "lr": lr * scale, "lr_scale": scale}
            for scale, params in by_scale.items()
        ]
    # The fused kernel updates every tensor in one pass; without it torch picks the per-tensor
    # loop on CPU, which costs ~2 ms a step more on the 0.8M-parameter char model (BENCHMARKS.md).
    return torch.optim.AdamW(groups, lr=lr, betas=betas, fused=device.type in ("cuda", "cpu"))


def build_optimizer(
    model: torch.nn.Module, config: TrainConfig, device: torch.device
) -> torch.optim.AdamW | OptimizerPair:
    """Pretraining's optimizer: AdamW over every trainable parameter, or (train.optimizer = muon)
    Muon for the hidden matrices and AdamW for the rest, as one OptimizerPair."""
    muon_params = hidden_matrices(model) if config.optimizer == "muon" else []
    adamw = adamw_optimizer(
        model,
        lr=config.lr,
        weight_decay=config.weight_decay,
        betas=(config.beta1, config.beta2),
        device=device,
        exclude=muon_params,
        rate_scales=adamw_rate_scales(
            model,
            embed=config.embed_lr_scale,
            head=config.head_lr_scale,
            scalar=config.scalar_lr_scale,
        ),
    )
    if not muon_params:
        return adamw
    muon = Muon(
        [{"params": muon_params, "lr_scale": config.muon_lr / config.lr}],
        lr=config.muon_lr,
        momentum=config.muon_momentum,
        weight_decay=config.weight_decay,
        ns_steps=config.muon_ns_steps,
        ns_dtype=newton_schulz_dtype(config.muon_ns_dtype, device),
        ns_coefficients=config.muon_coefficients,
        neuron_norm=config.muon_neuron_norm,
    )
    return OptimizerPair(adamw, muon)


@dataclass(frozen=True)
class Schedule:
    """Linear warmup to `lr`, then a cosine (or a stable stretch and a linear cooldown) to
    `min_lr` at the end of the budget (module docstring).

    The budget is `max_steps`, `max_seconds` of training, or both (whichever is further along);
    pretraining and fine-tuning both step by it.
    """

    lr: float
    min_lr: float
    warmup_steps: int
    max_steps: int | None
    max_seconds: float | None = None
    cooldown_fraction: float | None = None  # None: the cosine; else warmup-stable-decay

    @classmethod
    def of(cls, config: TrainConfig) -> Schedule:
        return cls(
            config.lr,
            config.min_lr,
            config.warmup_steps,
            config.max_steps,
            config.max_seconds,
            config.cooldown_fraction,
        )

    def progress(self, step: int, elapsed_s: float) -> float:
        """How far through the post-warmup budget the run is, in [0, 1]."""
        fractions = []
        if self.max_steps is not None:
            decay_steps = max(self.max_steps - self.warmup_steps, 1)
            fractions.append((step - self.warmup_steps) / decay_steps)
        if self.max_seconds is not None:
            fractions.append(elapsed_s / self.max_seconds)
        return min(max(max(fractions), 0.0), 1.0)

    def lr_at(self, step: int, elapsed_s: float) -> float:
        """The learning rate for optimizer step `step` (0-based) after `elapsed_s` of training."""
        if step < self.warmup_steps:
            return self.lr * (step + 1) / self.warmup_steps
        progress = self.progress(step, elapsed_s)
        if self.cooldown_fraction is None:
            decay = 0.5 * (1.0 + math.cos(math.pi * progress))  # 1 -> 0
        else:
            decay = min(1.0, (1.0 - progress) / self.cooldown_fraction)  # 1 until the cooldown
        return self.min_lr + (self.lr - self.min_lr) * decay


def set_learning_rate(optimizer: torch.optim.Optimizer | OptimizerPair, lr: float) -> None:
    """Set the AdamW learning rate to `lr`; Muon's group follows at lr x muon_lr / train.lr."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)
