"""Fine-tuning data: labelled texts and instruction examples from files, splits, padded batches.

Labelled texts (classification), one example per line or record:

    .tsv / .txt   label<TAB>text, no header          (the SMS Spam Collection's format; a file
                  without a suffix, like SMSSpamCollection, is read this way too)
    .csv          a header row naming `label` and `text` columns (other columns are ignored)
    .jsonl        {"label": ..., "text": ...} on each line

Instruction examples (Alpaca format): a .json list of {"instruction", "input", "output"} records,
or the same records one per line in .jsonl; "input" may be missing or empty.

Every problem with a file is a GptlabError naming the file and the line (or record) at fault.
"""

from __future__ import annotations

import csv
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, Literal, TypeVar

import torch

from gptlab.errors import GptlabError
from gptlab.fileio import jsonl_records, loads_json, read_text
from gptlab.tokenizers.base import Tokenizer

LABELED_SUFFIXES = (".tsv", ".txt", ".csv", ".jsonl")
INSTRUCTION_SUFFIXES = (".json", ".jsonl")
# How a classifier copes with unbalanced classes (ClassifyOptions.balance).
BalanceMode = Literal["none", "downsample", "weight"]

T = TypeVar("T")


@dataclass(frozen=True)
class LabeledText:
    label: str
    text: str


@dataclass(frozen=True)
class InstructionExample:
    instruction: str
    input: str
    output: str

    def to_dict(self) -> dict:
        return {"instruction": self.instruction, "input": self.input, "output": self.output}


@dataclass(frozen=True)
class Splits(Generic[T]):
    train: list[T]
    val: list[T]
    test: list[T]


# ----------------------------------------------------------------------------------------------
# Reading files


def read_labeled_texts(path: str | Path) -> list[LabeledText]:
    """Labelled texts from a .tsv/.txt, .csv or .jsonl file (see the module docstring)."""
    path = Path(path)
    suffix = path.suffix.lower()
    # A file without a suffix (like SMSSpamCollection) is read as .tsv.
    if suffix not in LABELED_SUFFIXES and suffix != "":
        raise GptlabError(
            f"{path}: unknown file type {suffix or '(none)'}; use .tsv (label<TAB>text), .csv "
            '(label,text columns) or .jsonl ({"label", "text"} per line)'
        )
    text = read_text(path, "data file")
    if suffix == ".csv":
        examples = _labeled_from_csv(path, text)
    elif suffix == ".jsonl":
        examples = [
            _labeled_from_record(path, line_no, record) for line_no, record in jsonl_records(path)
        ]
    else:
        examples = _labeled_from_tsv(path, text)
    if not examples:
        raise GptlabError(f"data file {path} holds no examples")
    return examples


def _labeled_from_tsv(path: Path, text: str) -> list[LabeledText]:
    examples = []
    for line_no, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        label, tab, body = line.partition("\t")
        if not tab:
            raise GptlabError(f"{path} line {line_no}: expected label<TAB>text, found no tab")
        examples.append(_labeled(path, f"line {line_no}", label, body))
    return examples


def _labeled_from_csv(path: Path, text: str) -> list[LabeledText]:
    reader = csv.reader(text.splitlines())
    header = [name.strip().lower() for name in next(reader)]
    if "label" not in header or "text" not in header:
        raise GptlabError(
            f"{path} line 1: the header must name a 'label' and a 'text' column, found {', '.join(header)}"
        )
    label_col, text_col = header.index("label"), header.index("text")
    examples = []
    for row in reader:
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            raise GptlabError(
                f"{path} line {reader.line_num}: {len(row)} columns, the header has {len(header)} "
                "(quote texts that contain commas)"
            )
        examples.append(_labeled(path, f"line {reader.line_num}", row[label_col], row[text_col]))
    return examples


def _labeled_from_record(path: Path, line_no: int, record: dict) -> LabeledText:
    where = f"line {line_no}"
    if "label" not in record or "text" not in record:
        raise GptlabError(f"{path} {where}: a record needs 'label' and 'text' fields")
    if not isinstance(record["text"], str):
        raise GptlabError(f"{path} {where}: 'text' must be a string")
    return _labeled(path, where, str(record["label"]), record["text"])


def _labeled(path: Path, where: str, label: str, text: str) -> LabeledText:
    label, text = label.strip(), text.strip()
    if not label:
        raise GptlabError(f"{path} {where}: the label is empty")
    if not text:
        raise GptlabError(f"{path} {where}: the text is empty")
    return LabeledText(label, text)


def read_instructions(path: str | Path) -> list[InstructionExample]:
    """Alpaca-format examples from a .json list or a .jsonl file."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in INSTRUCTION_SUFFIXES:
        raise GptlabError(
            f"{path}: unknown file type {suffix or '(none)'}; use an Alpaca .json list or .jsonl records"
        )
    text = read_text(path, "data file")
    if suffix == ".jsonl":
        located = [(f"line {line_no}", record) for line_no, record in jsonl_records(path)]
    else:
        try:
            records = loads_json(text)
        except json.JSONDecodeError as exc:
            raise GptlabError(f"{path} line {exc.lineno}: not valid JSON ({exc.msg})") from None
        if not isinstance(records, list):
            raise GptlabError(
                f"{path}: expected a JSON list of {{instruction, input, output}} records"
            )
        located = [(f"record {i + 1}", record) for i, record in enumerate(records)]
    if not located:
        raise GptlabError(f"data file {path} holds no examples")
    return [_instruction(path, where, record) for where, record in located]


def _instruction(path: Path, where: str, record: object) -> InstructionExample:
    if not isinstance(record, dict):
        raise GptlabError(f"{path} {where}: expected an object with instruction, input and output")
    fields = {}
    for name in ("instruction", "input", "output"):
        value = record.get(name, "" if name == "input" else None)
        if not isinstance(value, str):
            raise GptlabError(
                f"{path} {where}: '{name}' must be a string"
                + (" (it is missing)" if value is None else "")
            )
        fields[name] = value
    if not fields["instruction"].strip():
        raise GptlabError(f"{path} {where}: the instruction is empty")
    return InstructionExample(**fields)


# ----------------------------------------------------------------------------------------------
# Labels, balancing and splits


def label_names(examples: Sequence[LabeledText], source: str) -> list[str]:
    """The sorted distinct labels; a classifier needs at least two."""
    labels = sorted({e.label for e in examples})
    if len(labels) < 2:
        raise GptlabError(
            f"{source}: every example has the label {labels[0]!r}; a classifier needs at least two classes"
        )
    return labels


def downsample_to_smallest_class(examples: Sequence[LabeledText], seed: int) -> list[LabeledText]:
    """Keep a random subset of each class as large as the smallest class (the book's balancing)."""
    by_label: dict[str, list[LabeledText]] = {}
    for example in examples:
        by_label.setdefault(example.label, []).append(example)
    smallest = min(len(group) for group in by_label.values())
    rng = random.Random(seed)
    kept = [e for label in sorted(by_label) for e in rng.sample(by_label[label], smallest)]
    rng.shuffle(kept)
    return kept


def split_examples(
    examples: Sequence[T], val_fraction: float, test_fraction: float, seed: int, source: str
) -> Splits[T]:
    """Shuffle (seeded), then cut into train / val / test; none of them may come out empty."""
    if not (0 < val_fraction < 1 and 0 < test_fraction < 1 and val_fraction + test_fraction < 1):
        raise GptlabError(
            f"need 0 < val and test fractions with val + test < 1, got {val_fraction} and {test_fraction}"
        )
    shuffled = list(examples)
    random.Random(seed).shuffle(shuffled)
    n = len(shuffled)
    n_test, n_val = round(n * test_fraction), round(n * val_fraction)
    n_train = n - n_test - n_val
    if min(n_train, n_val, n_test) < 1:
        raise GptlabError(
            f"{source} has {n} examples: too few for train/val/test splits of "
            f"{1 - val_fraction - test_fraction:.0%}/{val_fraction:.0%}/{test_fraction:.0%}; add examples"
        )
    return Splits(
        train=shuffled[:n_train],
        val=shuffled[n_train : n_train + n_val],
        test=shuffled[n_train + n_val :],
    )


# ----------------------------------------------------------------------------------------------
# Batches


def batch_indices(
    n: int, batch_size: int, shuffle: bool, generator: torch.Generator | None = None
) -> list[list[int]]:
    """Indices 0..n-1 grouped into batches (the last one may be smaller), optionally shuffled."""
    order = torch.randperm(n, generator=generator).tolist() if shuffle else list(range(n))
    return [order[i : i + batch_size] for i in range(0, n, batch_size)]


def pad_id_for(tokenizer: Tokenizer) -> int:
    """GPT-2 style tokenizers pad with end-of-text; others (char) with 0, which is safe because
    padding never reaches a real position (right padding, causal attention) nor the loss."""
    return tokenizer.eot_id if tokenizer.eot_id is not None else 0
