"""The induction bump during training: `train.eval_induction_every` logs, at every such step and
at the end, the loss on random tokens repeated twice (interp/induction.py):

- induction_first_loss: the first copy, which no model can predict (about ln(vocab));
- induction_repeated_loss: the second copy, which a model with induction heads predicts by copying.

The same sequences (a fixed seed) are scored each time, so the curve shows the model change, not
the sample. The gap opening between the two is the moment induction heads form.
"""

from __future__ import annotations

from gptlab.interp.induction import repeated_tokens_loss
from gptlab.train.config import RunConfig
from gptlab.train.periodic_eval import PeriodicEval

INDUCTION_SEQUENCES = 16  # random sequences per evaluation: enough for a steady mean, still quick
INDUCTION_SEED = 0


def induction_evals(config: RunConfig) -> list[PeriodicEval]:
    """The induction-bump evaluation when the config asks for it (train.eval_induction_every)."""
    every, length = config.train.eval_induction_every, config.train.eval_induction_length
    if not every:
        return []

    def run(model, tokenizer) -> dict[str, float]:
        eot_id = getattr(tokenizer, "eot_id", None)
        result = repeated_tokens_loss(
            model, length, 2, INDUCTION_SEQUENCES, INDUCTION_SEED, eot_id=eot_id
        )
        return {
            "induction_first_loss": result.first_loss,
            "induction_repeated_loss": result.repeated_loss,
        }

    return [PeriodicEval(every=every, run=run)]
