"""Training: the loop (trainer), optimizer and schedule, checkpoints, DDP, metrics and plots.

    from gptlab.train.config import build_run_config
    from gptlab.train import train

    result = train(build_run_config(overrides=["train.max_steps=200"]), "runs/quick")

`gptlab train` is the same call behind a command line.
"""

from gptlab.train.periodic_eval import PeriodicEval
from gptlab.train.trainer import TrainResult, train

__all__ = ["PeriodicEval", "TrainResult", "train"]
