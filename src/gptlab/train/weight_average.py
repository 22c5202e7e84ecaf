"""An average of the last weights, for the end of a run (train.weight_average).

The weights after the last step of a run are one noisy point of a trajectory that is still
wandering around a minimum; an average of the last ones sits nearer its middle and usually
scores a lower loss (Polyak averaging; the speedruns evaluate such averages). Two kinds:

    ema    avg <- decay * avg + (1 - decay) * w after every step (avg = w after the first):
           an exponential memory of about 1 / (1 - decay) steps (weight_average_decay)
    tail   the plain mean of w after every step once the run is past 1 - weight_average_tail of
           its budget (by steps or by the clock, as the schedule measures it): avg += (w - avg) / n

What uses the average: once the budget is spent, the trainer evaluates the raw weights too
(`val_loss_raw` in the last metrics line), then puts the average into the model, so the final
evaluation, the final checkpoint's model.safetensors (and so the best model, if it wins) and the
final sample are the average. The raw weights go into that checkpoint's training_state.pt
(`raw_weights`), and every checkpoint holds the average's state (`weight_average`), so a resumed
run continues both exactly. Checkpoints written before the end hold the raw weights as usual.
The average is kept in float32 on the model's device, one copy of every parameter and buffer.
"""

from __future__ import annotations

import torch

from gptlab.errors import GptlabError

KINDS = ("none", "ema", "tail")


class WeightAverage:
    """The running average of a model's weights (see the module docstring)."""

    def __init__(self, kind: str, *, decay: float = 0.99, tail: float = 0.2) -> None:
        if kind not in KINDS[1:]:
            raise ValueError(f"unknown weight average {kind!r}: use ema or tail")
        self.kind, self.decay, self.tail = kind, decay, tail
        self.count = 0  # weights averaged so far
        self.average: dict[str, torch.Tensor] = {}

    def wants(self, progress: float) -> bool:
        """Whether the weights after a step taken at `progress` (0 -> 1 through the budget) count."""
        return self.kind == "ema" or progress > 1.0 - self.tail

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        """Fold the model's current weights into the average."""
        self.count += 1
        for name, tensor in model.state_dict().items():
            if not tensor.is_floating_point():
                continue
            if name not in self.average:
                self.average[name] = tensor.detach().float().clone()
            elif self.kind == "ema":
                self.average[name].lerp_(tensor.float(), 1.0 - self.decay)
            else:
                self.average[name].add_(tensor.float() - self.average[name], alpha=1.0 / self.count)

    @torch.no_grad()
    def copy_into(self, model: torch.nn.Module) -> None:
        """Put the average into `model` (each tensor in the model's own dtype)."""
        if not self.average:
            raise GptlabError(
                "train.weight_average has nothing to average yet: the run ended before its "
                "averaging window began; lower the budget's start or raise train.weight_average_tail"
            )
        for name, tensor in model.state_dict().items():
            if name in self.average:
                tensor.copy_(self.average[name])

    def state_dict(self) -> dict:
        """Plain values and tensors (read back with torch.load(weights_only=True))."""
        return {
            "kind": self.kind,
            "count": self.count,
            "average": {name: t.detach().cpu() for name, t in self.average.items()},
        }

    def load_state_dict(self, state: dict, device: torch.device) -> None:
        if state["kind"] != self.kind:
            raise GptlabError(
                f"the checkpoint averages weights with train.weight_average={state['kind']}; "
                f"resume with train.weight_average={state['kind']}"
            )
        self.count = int(state["count"])
        self.average = {name: t.to(device) for name, t in state["average"].items()}


def raw_weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A CPU copy of the model's weights, to keep beside the average in the final checkpoint."""
    return {name: t.detach().cpu().clone() for name, t in model.state_dict().items()}
