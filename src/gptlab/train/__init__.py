"""Training: a run config in, a run folder out.

    config.py          RunConfig = [model] + [data] + [train], presets, build_run_config
    trainer.py         the loop: accumulation, precision, evals, samples, checkpoints, logging
    optim.py, muon.py  AdamW / Muon parameter groups and the learning-rate Schedule
    weight_average.py  the average of the last weights (EMA or tail) used at the end
    batch_ramp.py      small batches first: the sequences and micro-batches of each step
    compile_warmup.py  torch.compile on dummy batches before the training clock starts
    precision.py       autocast dtype, loss scaling, TF32
    distributed.py     DDP under torchrun
    training_data.py   the trainer's view of a prepared folder (prepared on first use)
    periodic_eval.py   mean loss over fixed windows, samples, extra evals (HellaSwag)
    resume.py          the training state a checkpoint holds besides the weights
    run_folder.py      the run folder: created, locked, resumed, refused
    metrics.py, plots.py, flops.py   metrics.jsonl and loggers, loss curves, FLOPs and MFU

    from gptlab.train import train
    from gptlab.train.config import build_run_config

    result = train(build_run_config(overrides=["train.max_steps=200"]), "runs/quick")

`gptlab train` is the same call behind a command line.
"""

from gptlab.train.periodic_eval import PeriodicEval
from gptlab.train.trainer import TrainResult, train

__all__ = ["PeriodicEval", "TrainResult", "train"]
