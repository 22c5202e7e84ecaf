"""HellaSwag: pick the most plausible of four endings to a short description of an activity.

Zellers et al., "HellaSwag: Can a Machine Really Finish Your Sentence?" (ACL 2019). A language
model answers by likelihood: each ending, prefixed with a space, is scored by the log-probability
the model gives its tokens after the context, and the best-scoring ending is the answer.

    acc       the ending with the highest total log-likelihood (favours short endings)
    acc_norm  the ending with the highest mean log-likelihood per ending token, as nanoGPT and
              llm.c compute it (lm-eval-harness normalises per byte instead, which gives
              slightly different numbers)

Published acc_norm on the validation set: random 0.25, GPT-2 124M about 0.2955, GPT-3 125M about
0.337 (Brown et al. 2020, Table H.1).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from gptlab.data.cache import download, downloads_dir
from gptlab.device import model_device
from gptlab.errors import GptlabError
from gptlab.eval.scoring import target_log_probs
from gptlab.fileio import jsonl_records
from gptlab.model.batching import IGNORE_INDEX, right_pad

HELLASWAG_VAL_URL = (
    "https://raw.githubusercontent.com/rowanz/hellaswag/master/data/hellaswag_val.jsonl"
)
HELLASWAG_VAL_SHA256 = "0aa3b88843990f3f10a97b9575c94d7b71fb2205240ba04ae4884d9e9c992588"

RANDOM_ACC = 0.25
PUBLISHED_ACC_NORM = {"GPT-2 124M": 0.2955, "GPT-3 125M": 0.337}


@dataclass(frozen=True)
class HellaSwagItem:
    context: str
    endings: tuple[str, ...]
    label: int  # index of the correct ending


@dataclass(frozen=True)
class EndingScores:
    """Log-likelihoods of one item's endings: total and number of tokens, one entry per ending."""

    sums: tuple[float, ...]
    counts: tuple[int, ...]

    @property
    def means(self) -> tuple[float, ...]:
        # An ending that encodes to no tokens (possible with a lossy tokenizer) can never win.
        return tuple(
            s / n if n else float("-inf") for s, n in zip(self.sums, self.counts, strict=True)
        )


def parse_item(record: dict, where: str) -> HellaSwagItem:
    """One record in the official schema (`ctx`, `endings`, `label`); `where` names it in errors."""
    context, endings, label = record.get("ctx"), record.get("endings"), record.get("label")
    if not isinstance(context, str) or not context:
        raise GptlabError(f"{where} has no 'ctx' text")
    if (
        not isinstance(endings, list)
        or len(endings) < 2
        or not all(isinstance(e, str) for e in endings)
    ):
        raise GptlabError(f"{where}: 'endings' must be a list of at least 2 strings")
    # The official file stores label as an int; some copies store it as a string ("3").
    if isinstance(label, str) and label.isdigit():
        label = int(label)
    if not isinstance(label, int) or isinstance(label, bool) or not 0 <= label < len(endings):
        raise GptlabError(
            f"{where}: 'label' must be an ending index from 0 to {len(endings) - 1}, got {label!r}"
        )
    return HellaSwagItem(context=context, endings=tuple(endings), label=label)


def read_hellaswag(path: str | Path) -> list[HellaSwagItem]:
    """All items of a HellaSwag jsonl file; a malformed line is an error naming its line number."""
    return [
        parse_item(record, f"{path} line {number}")
        for number, record in jsonl_records(path, "HellaSwag file")
    ]


def hellaswag_val_path() -> Path:
    """The official validation file in the gptlab cache, downloaded and checked on first use.

    Only the official file (by sha256) is accepted here; to score another copy, such as an
    offline reconstruction, pass its path instead (--data FILE).
    """
    destination = downloads_dir() / "hellaswag" / "hellaswag_val.jsonl"
    return download(HELLASWAG_VAL_URL, destination, HELLASWAG_VAL_SHA256)


def load_hellaswag(path: str | Path | None = None) -> list[HellaSwagItem]:
    """Items from `path`, or the official validation set from the cache when path is None."""
    return read_hellaswag(hellaswag_val_path() if path is None else path)


def ending_rows(tokenizer, item: HellaSwagItem, block_size: int) -> list[tuple[list[int], int]]:
    """(context + ending tokens, number of ending tokens) for each ending.

    A sequence longer than the model can read loses tokens from the left (the start of the
    context): the model sees block_size input tokens and predicts the block_size after them.
    """
    context = tokenizer.encode(item.context)
    rows = []
    for ending in tokenizer.encode_batch([" " + e for e in item.endings]):
        sequence = (context + ending)[-(block_size + 1) :]
        rows.append((sequence, min(len(ending), len(sequence) - 1)))
    return rows


def score_endings(
    model,
    tokenizer,
    items: Sequence[HellaSwagItem],
    *,
    batch_size: int = 4,
    progress: bool = True,
) -> list[EndingScores]:
    """The log-likelihood of every ending of every item; batch_size counts items per forward pass."""
    if batch_size < 1:
        raise GptlabError(f"batch_size must be at least 1, got {batch_size}")
    device = model_device(model)
    block_size = model.config.block_size
    was_training = model.training
    model.eval()
    scores = []
    bar = tqdm(total=len(items), unit="item", desc="hellaswag", disable=not progress)
    try:
        with torch.inference_mode():
            for i in range(0, len(items), batch_size):
                batch = items[i : i + batch_size]
                rows = [row for item in batch for row in ending_rows(tokenizer, item, block_size)]
                inputs = right_pad([seq[:-1] for seq, _ in rows], 0, device)  # (rows, T)
                # Score only the ending: context targets and padding are IGNORE_INDEX.
                targets = right_pad(
                    [[IGNORE_INDEX] * (len(seq) - 1 - n) + seq[len(seq) - n :] for seq, n in rows],
                    IGNORE_INDEX,
                    device,
                )
                log_probs = target_log_probs(model, inputs, targets)  # (rows, T)
                sums = log_probs.sum(dim=1, dtype=torch.float64).tolist()
                start = 0
                for item in batch:
                    stop = start + len(item.endings)
                    counts = tuple(n for _, n in rows[start:stop])
                    scores.append(EndingScores(sums=tuple(sums[start:stop]), counts=counts))
                    start = stop
                bar.update(len(batch))
    finally:
        bar.close()
        model.train(was_training)
    return scores


def evaluate_hellaswag(
    model,
    tokenizer,
    items: Iterable[HellaSwagItem] | str | Path | None = None,
    *,
    limit: int | None = None,
    batch_size: int = 4,
    device: str | torch.device | None = None,
    progress: bool = True,
    per_item: bool = False,
) -> dict:
    """acc and acc_norm of `model` on HellaSwag items (a list, a jsonl path, or None: the official set).

    limit: score only the first `limit` items. device: move the model there first (default: where
    it is). Returns a JSON-ready dict; `correct` and `correct_norm` are counts, so results of
    several shards (items[rank::world_size] on each rank) add up. per_item: add "per_item", one
    record per item (see item_records).
    """
    if limit is not None and limit < 1:
        raise GptlabError(f"limit must be a positive number of items, got {limit}")
    if items is None or isinstance(items, str | Path):
        items = load_hellaswag(items)
    items = list(items)[:limit]
    if not items:
        raise GptlabError("there are no HellaSwag items to score")
    if device is not None:
        model = model.to(device)
    scores = score_endings(model, tokenizer, items, batch_size=batch_size, progress=progress)
    result = accuracy(items, scores)
    if per_item:
        result["per_item"] = item_records(items, scores)
    return result


def item_records(items: Sequence[HellaSwagItem], scores: Sequence[EndingScores]) -> list[dict]:
    """What the model chose for each item and why: the four scores behind acc and acc_norm.

    index counts from 0 in the order the items were read; sums are total log-likelihoods of each
    ending's tokens, means the same per token (acc_norm's measure).
    """
    records = []
    for index, (item, s) in enumerate(zip(items, scores, strict=True)):
        records.append(
            {
                "index": index,
                "label": item.label,
                "pred": argmax(s.sums),
                "pred_norm": argmax(s.means),
                "sums": list(s.sums),
                # An ending of no tokens has mean -inf, which JSON cannot hold: null.
                "means": [m if math.isfinite(m) else None for m in s.means],
                "tokens": list(s.counts),
                "context": item.context,
                "endings": list(item.endings),
            }
        )
    return records


def accuracy(items: Sequence[HellaSwagItem], scores: Sequence[EndingScores]) -> dict:
    """acc (best total log-likelihood) and acc_norm (best mean per token) as a JSON-ready dict."""
    pairs = list(zip(items, scores, strict=True))
    correct = sum(item.label == argmax(s.sums) for item, s in pairs)
    correct_norm = sum(item.label == argmax(s.means) for item, s in pairs)
    return {
        "task": "hellaswag",
        "items": len(pairs),
        "acc": correct / len(pairs),
        "acc_norm": correct_norm / len(pairs),
        "correct": correct,
        "correct_norm": correct_norm,
        "normalization": "acc_norm: mean log-likelihood per ending token",
    }


def argmax(values: Sequence[float]) -> int:
    """Index of the largest value; the first one on ties."""
    return max(range(len(values)), key=values.__getitem__)


def hellaswag_training_eval(
    data: str | Path | None = None, *, limit: int | None = 1000, batch_size: int = 4
) -> Callable[[torch.nn.Module, object], dict[str, float]]:
    """A `run(model, tokenizer)` for the trainer's PeriodicEval, logging hellaswag_acc(_norm).

    The items are read once, now, so a missing or malformed file fails before training starts.
    data: a jsonl path, or None for the official validation set. limit: items per evaluation
    (None: all 10,042; the default 1,000 keeps a periodic evaluation short).
    """
    if limit is not None and limit < 1:
        raise GptlabError(f"the HellaSwag item limit must be positive, got {limit}")
    items = load_hellaswag(data)[:limit]

    def run(model, tokenizer) -> dict[str, float]:
        result = evaluate_hellaswag(model, tokenizer, items, batch_size=batch_size, progress=False)
        return {"hellaswag_acc": result["acc"], "hellaswag_acc_norm": result["acc_norm"]}

    return run
