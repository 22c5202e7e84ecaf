"""Loss curves as PNG: train and val loss against tokens seen, for one run or several overlaid,
and, when the run logged them (train.eval_induction_every), the repeated-random-token losses."""

from __future__ import annotations

from pathlib import Path

from gptlab.errors import GptlabError
from gptlab.plotting import color_cycle, new_figure, save_figure
from gptlab.train.metrics import read_metrics

LOSS_PLOT_FILE = "loss.png"


def smooth(values: list[float], weight: float, average: float = 0.0, seen: int = 0) -> list[float]:
    """Exponential moving average (bias-corrected, as TensorBoard's smoothing), to read noisy curves.

    average, seen: where an earlier call over the first `seen` values left off (its raw average,
    see smoothing_state), so a growing log is smoothed one new value at a time."""
    smoothed = []
    for i, value in enumerate(values, start=seen + 1):
        average = weight * average + (1 - weight) * value
        smoothed.append(average / (1 - weight**i))
    return smoothed


def smoothing_state(smoothed: list[float], weight: float, seen: int) -> float:
    """The raw average behind the last of `seen` smoothed values (smooth's `average` argument)."""
    return smoothed[-1] * (1 - weight**seen) if seen else 0.0


def plot_runs(run_dirs: list[str | Path], out: str | Path, labels: list[str] | None = None) -> Path:
    """Write one PNG with every run's train loss (smoothed, thin) and val loss (markers, bold)."""
    if not run_dirs:
        raise GptlabError("give at least one run folder to plot")
    labels = labels or [Path(d).name or str(d) for d in run_dirs]
    figure = new_figure(8, 5)
    axes = figure.subplots()
    colors = color_cycle()
    for index, (run_dir, label) in enumerate(zip(run_dirs, labels, strict=True)):
        color = colors[index % len(colors)]
        records = read_metrics(run_dir)
        train = [
            (r["tokens"], r["train_loss"])
            for r in records
            if isinstance(r.get("train_loss"), float | int)
        ]
        val = [
            (r["tokens"], r["val_loss"])
            for r in records
            if isinstance(r.get("val_loss"), float | int)
        ]
        if train:
            tokens, losses = zip(*train, strict=True)
            axes.plot(
                tokens,
                smooth(list(losses), 0.9),
                color=color,
                alpha=0.6,
                linewidth=1,
                label=f"{label} train",
            )
        if val:
            tokens, losses = zip(*val, strict=True)
            axes.plot(tokens, losses, color=color, marker="o", linewidth=2, label=f"{label} val")
        # train.eval_induction_every: the induction bump, first copy vs the repeat
        for key, style, what in (
            ("induction_first_loss", ":", "random tokens, 1st copy"),
            ("induction_repeated_loss", "--", "random tokens, repeat"),
        ):
            points = [(r["tokens"], r[key]) for r in records if isinstance(r.get(key), float | int)]
            if points:
                tokens, losses = zip(*points, strict=True)
                axes.plot(
                    tokens,
                    losses,
                    color=color,
                    linestyle=style,
                    marker=".",
                    label=f"{label} {what}",
                )
    axes.set_xlabel("tokens seen")
    axes.set_ylabel("loss (nats per token)")
    axes.grid(alpha=0.3)
    axes.legend()
    axes.set_title("training loss (train smoothed, val at evaluations)")
    return save_figure(figure, out, dpi=110)
