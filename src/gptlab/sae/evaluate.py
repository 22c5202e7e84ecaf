"""How good an SAE is, on held-out tokens the SAE never trained on.

    L0                   mean number of active features per token
    variance explained   1 - sum |x - x_hat|^2 / sum |x - mean(x)|^2 over all tokens (FVE)
    loss recovered       (L_zero - L_sae) / (L_zero - L_clean): the model's next-token loss with
                         the SAE's reconstruction spliced in at the hook (L_sae), between the
                         clean model (L_clean, 100%) and the hook's activation zeroed (L_zero, 0%)
    dead / dense         features never active in the evaluated tokens / active on > 10% of them

Each batch runs the model three times (clean, spliced, zero-ablated) on the same windows. The
result goes to eval.json and the feature densities to feature-density.png in the SAE folder.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from tqdm.auto import tqdm

from gptlab.data.loader import TokenLoader
from gptlab.device import resolve_device
from gptlab.errors import GptlabError
from gptlab.fileio import atomic_write_text
from gptlab.sae.folder import load_sae_and_model, sae_data

DENSE_THRESHOLD = 0.1
EVAL_FILE = "eval.json"
DENSITY_PLOT = "feature-density.png"


class ReconstructionStats:
    """Running sums for FVE and L0 over batches of (x, x_hat, f); float64, so millions of tokens
    add up without losing the small differences FVE is made of."""

    def __init__(self, d_sae: int) -> None:
        self.tokens = 0
        self.error = 0.0  # sum |x - x_hat|^2
        self.sum = None  # sum x (d_in,)
        self.sum_sq = 0.0  # sum |x|^2
        self.active = 0.0  # sum of L0 over tokens
        self.fired = torch.zeros(d_sae, dtype=torch.float64)  # tokens each feature was active on

    def add(self, x: torch.Tensor, x_hat: torch.Tensor, f: torch.Tensor) -> None:
        x, x_hat = x.reshape(-1, x.shape[-1]).double(), x_hat.reshape(-1, x.shape[-1]).double()
        on = (f.reshape(-1, f.shape[-1]) > 0).double()
        self.tokens += x.shape[0]
        self.error += (x - x_hat).pow(2).sum().item()
        self.sum = x.sum(dim=0) if self.sum is None else self.sum + x.sum(dim=0)
        self.sum_sq += x.pow(2).sum().item()
        self.active += on.sum().item()
        self.fired += on.sum(dim=0).cpu()

    def fve(self) -> float:
        # sum |x - mean|^2 = sum |x|^2 - N |mean|^2
        total = self.sum_sq - (self.sum.pow(2).sum().item() / self.tokens)
        return 1.0 - self.error / total

    def l0(self) -> float:
        return self.active / self.tokens

    def density(self) -> torch.Tensor:
        return self.fired / self.tokens


def loss_recovered(clean: float, spliced: float, zero: float) -> float:
    """Where the spliced loss lies between zero-ablation (0) and the clean model (1)."""
    if zero == clean:
        return math.nan  # the hook does not matter to the loss: nothing to recover
    return (zero - spliced) / (zero - clean)


@torch.no_grad()
def evaluate_sae(
    folder: str | Path,
    *,
    tokens: int = 65_536,
    split: str = "val",
    device: str = "auto",
    batch_size: int = 8,
    show_progress: bool = True,
) -> dict:
    """Measure the SAE in `folder` on about `tokens` tokens of `split`; writes eval.json and
    feature-density.png into the folder and returns the numbers."""
    if tokens < 1:
        raise GptlabError(f"tokens must be >= 1, got {tokens}")
    sae, config, model, _ = load_sae_and_model(folder, resolve_device(device))
    hook = config["hook"]
    loader = TokenLoader(
        sae_data(config, folder),
        split,
        batch_size,
        model.config.block_size,
        mode="sequential",
        seed=0,
        device=next(model.parameters()).device,
    )
    per_batch = batch_size * model.config.block_size
    batches = max(1, min(loader.batches_per_epoch, math.ceil(tokens / per_batch)))
    stats = ReconstructionStats(sae.d_sae)
    losses = {"clean": 0.0, "spliced": 0.0, "zero": 0.0}

    def splice(act: torch.Tensor, name: str) -> torch.Tensor:
        f = sae.encode(act)
        x_hat = sae.decode(f)
        stats.add(act, x_hat, f)
        return x_hat.to(act.dtype)

    for _ in tqdm(range(batches), desc="gptlab sae eval", unit="batch", disable=not show_progress):
        x, y = loader.next_batch()
        losses["clean"] += model(x, y)[1].item()
        with model.hooks({hook: splice}):
            losses["spliced"] += model(x, y)[1].item()
        with model.hooks({hook: lambda act, name: torch.zeros_like(act)}):
            losses["zero"] += model(x, y)[1].item()
    losses = {name: total / batches for name, total in losses.items()}
    density = stats.density()
    report = {
        "sae": str(folder),
        "hook": hook,
        "split": split,
        "tokens": stats.tokens,
        "l0": stats.l0(),
        "fve": stats.fve(),
        "loss_clean": losses["clean"],
        "loss_spliced": losses["spliced"],
        "loss_zero_ablated": losses["zero"],
        "loss_recovered": loss_recovered(losses["clean"], losses["spliced"], losses["zero"]),
        "features": sae.d_sae,
        "dead": int((density == 0).sum()),
        "dense": int((density > DENSE_THRESHOLD).sum()),
    }
    atomic_write_text(Path(folder) / EVAL_FILE, json.dumps(report, indent=2) + "\n")
    plot_density(density, report, Path(folder) / DENSITY_PLOT)
    return report


def plot_density(density: torch.Tensor, report: dict, path: Path) -> Path:
    """A histogram of log10(feature density) over the live features (the dead ones are counted
    in the title: their log is -inf)."""
    from gptlab.plotting import new_figure, save_figure

    live = density[density > 0].log10().numpy()
    figure = new_figure(6.4, 3.6)
    ax = figure.subplots()
    ax.hist(live, bins=50, color="#4c72b0")
    ax.axvline(math.log10(DENSE_THRESHOLD), color="#c44e52", linestyle="--", label="dense (10%)")
    ax.set_xlabel("log10(fraction of tokens the feature is active on)")
    ax.set_ylabel("features")
    ax.set_title(
        f"{report['features']} features, {report['tokens']:,} held-out tokens: "
        f"{report['dead']} dead, {report['dense']} dense",
        fontsize=10,
    )
    ax.legend(fontsize=8)
    return save_figure(figure, path)


def format_report(report: dict) -> str:
    t = report["tokens"]
    return "\n".join(
        [
            f"SAE {report['sae']} at {report['hook']}, on {t:,} {report['split']} tokens",
            f"  L0 (active features per token)  {report['l0']:.2f}",
            f"  variance explained               {100 * report['fve']:.1f}%",
            f"  loss: clean {report['loss_clean']:.4f}, SAE spliced in "
            f"{report['loss_spliced']:.4f}, hook zeroed {report['loss_zero_ablated']:.4f}",
            f"  loss recovered                   {100 * report['loss_recovered']:.1f}%",
            f"  dead features (never active)     {report['dead']} of {report['features']} "
            f"({100 * report['dead'] / report['features']:.1f}%)",
            f"  dense features (> 10% of tokens) {report['dense']}",
            f"  wrote {EVAL_FILE} and {DENSITY_PLOT} in {report['sae']}",
        ]
    )
