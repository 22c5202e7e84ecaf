"""A fair comparison of training settings: every combination of the varied values, several seeds each.

    gptlab experiment --preset shakespeare-char --vary model.norm=layernorm,rmsnorm \\
        --vary model.pos=learned,rope --seeds 2 --max-steps 500 --out runs/norm-vs-pos

Fairness: every run starts from the same base configuration (preset -> TOML -> key=value), gets the
same step or wall-clock budget, and seed number i is the same `train.seed` for every combination,
so the initial weights' random stream and the data order differ between combinations only through
the varied settings themselves.

The experiment folder:

    OUT/runs/<combination>-seed<S>/   one ordinary training run folder each, plus result.json
                                      and train.log (what `gptlab train` would have printed)
    OUT/results.md, OUT/results.csv   val loss mean and spread over seeds, parameters, tokens/s, time
    OUT/loss_curves.png               the loss curves of each combination's first seed, overlaid

Resumable: a run folder holding result.json (written atomically after its training returned) is
finished and is skipped on a re-run; an unfinished one is started again from scratch.
"""

from gptlab.experiment.grid import (
    Combination,
    PlannedRun,
    Variation,
    combinations,
    parse_variation,
    plan_runs,
)
from gptlab.experiment.results import (
    LOSS_CURVES_FILE,
    RESULTS_CSV,
    RESULTS_MARKDOWN,
    CombinationSummary,
    summarize,
    write_results,
)
from gptlab.experiment.runner import RunResult, run_experiment

__all__ = [
    "LOSS_CURVES_FILE",
    "RESULTS_CSV",
    "RESULTS_MARKDOWN",
    "Combination",
    "CombinationSummary",
    "PlannedRun",
    "RunResult",
    "Variation",
    "combinations",
    "parse_variation",
    "plan_runs",
    "run_experiment",
    "summarize",
    "write_results",
]
