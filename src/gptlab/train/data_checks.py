"""Warnings about the training data that a learner should see before the first step.

Nothing here stops a run: each of these can be what the user wants (a deliberate overfit, a tiny
smoke test). They are said once, before training, because each makes the numbers that follow
mean something else than they seem to:

- many passes over the training split: the model memorises it and the val loss, after falling,
  rises again; "more steps" stops meaning "a better model";
- a validation split larger than the training split: most of the data is never trained on;
- a whole corpus in one split: with few documents split by document, one split can get them all,
  so there is nothing to train on or no held-out loss.
"""

from __future__ import annotations

# More passes than this over the training split and the run is mostly memorising it. nanoGPT's
# character-level Shakespeare recipe (5,000 steps of 16K tokens over 1M tokens, ~80 passes)
# starts to overfit after about 25; 10 leaves room for the repetition that still helps.
MANY_PASSES = 10


def training_data_warnings(
    splits: dict[str, dict], tokens_per_step: int, max_steps: int | None
) -> list[str]:
    """Messages about a prepared folder's splits (meta.json's "splits") and the step budget."""
    train_tokens = splits.get("train", {}).get("tokens", 0)
    val_tokens = splits.get("val", {}).get("tokens", 0)
    messages = []
    total = train_tokens + val_tokens
    for name, tokens, other in (("train", train_tokens, "val"), ("val", val_tokens, "train")):
        if total and tokens == total:
            messages.append(
                f"the whole corpus ({total:,} tokens) is in the {name} split and the {other} split "
                "is empty; give the source more documents, or change data.val_fraction"
            )
    if train_tokens and val_tokens > train_tokens:
        messages.append(
            f"the val split ({val_tokens:,} tokens) is larger than the train split "
            f"({train_tokens:,}); most of the data is never trained on: lower data.val_fraction"
        )
    if train_tokens and max_steps is not None:
        passes = max_steps * tokens_per_step / train_tokens
        if passes > MANY_PASSES:
            messages.append(
                f"{max_steps:,} steps of {tokens_per_step:,} tokens read the {train_tokens:,} "
                f"training tokens {passes:,.0f} times over; the model will memorise them and the "
                "val loss will rise again after its minimum: use more data, or fewer steps"
            )
    return messages
