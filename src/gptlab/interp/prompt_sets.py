"""Prompt sets: many (clean, corrupted, answer, wrong answer) rows, so a circuit is measured on a
distribution of prompts rather than one.

A set is read from a JSONL file, one object per line:

    {"clean": "When Mary and John went to the store, John gave a drink to",
     "corrupted": "When Mary and John went to the store, Alice gave a drink to",
     "answer": " Mary", "wrong": " John"}

or generated from IOI-style templates (Wang et al. 2022, "Interpretability in the Wild") with
`ioi_prompt_set`. The metric is the logit difference logit(answer) - logit(wrong) at the last
position, averaged over the rows. Every prompt of a set must have the same number of tokens
(clean and corrupted alike): patching compares position t of one run with position t of another,
which is only meaningful when positions line up across the set; answers must be single tokens.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import torch

from gptlab.device import model_device
from gptlab.errors import GptlabError
from gptlab.fileio import jsonl_records
from gptlab.interp.tokens import show_tokens
from gptlab.tokenizers.base import Tokenizer

FIELDS = ("clean", "corrupted", "answer", "wrong")


@dataclass
class PromptSet:
    clean: torch.Tensor  # (N, T) token ids
    corrupted: torch.Tensor  # (N, T)
    answers: torch.Tensor  # (N,) the clean prompt's answer
    wrongs: torch.Tensor  # (N,) the answer the corrupted prompt pushes toward
    texts: list[dict]  # the rows as text, for reports

    def __len__(self) -> int:
        return self.clean.shape[0]

    def logit_diff(self, logits: torch.Tensor) -> torch.Tensor:
        """(N, T, V) or (N, 1, V) logits -> (N,) logit(answer) - logit(wrong) at the last position."""
        last = logits[:, -1].float()
        rows = torch.arange(last.shape[0], device=last.device)
        return last[rows, self.answers] - last[rows, self.wrongs]

    def to(self, device) -> PromptSet:
        return PromptSet(
            self.clean.to(device),
            self.corrupted.to(device),
            self.answers.to(device),
            self.wrongs.to(device),
            self.texts,
        )


def build_prompt_set(model, tokenizer: Tokenizer, rows: list[dict], where: str) -> PromptSet:
    """Tokenize and check rows of {clean, corrupted, answer, wrong} text."""
    if not rows:
        raise GptlabError(f"{where} has no prompts")
    clean, corrupted, answers, wrongs = [], [], [], []
    length = None
    for number, row in enumerate(rows, start=1):
        at = f"{where}, row {number}"
        missing = [f for f in FIELDS if not isinstance(row.get(f), str) or not row.get(f)]
        if missing:
            raise GptlabError(
                f"{at}: needs text fields {', '.join(FIELDS)}; missing or empty: {', '.join(missing)}"
            )
        ids = {f: tokenizer.encode(row[f]) for f in FIELDS}
        for f in ("answer", "wrong"):
            if len(ids[f]) != 1:
                raise GptlabError(
                    f"{at}: {f} {row[f]!r} is {show_tokens(tokenizer, ids[f])}, not one token"
                )
        if ids["answer"] == ids["wrong"]:
            raise GptlabError(
                f"{at}: answer and wrong are the same token, so their difference is 0"
            )
        if ids["clean"] == ids["corrupted"]:
            raise GptlabError(
                f"{at}: the corrupted prompt is the clean prompt, token for token, so patching has "
                "nothing to restore; change the part of it the answer depends on"
            )
        length = length or len(ids["clean"])
        for f in ("clean", "corrupted"):
            if len(ids[f]) != length:
                raise GptlabError(
                    f"{at}: {f} is {show_tokens(tokenizer, ids[f])}, but every prompt of a set must "
                    f"have {length} tokens (as row 1's clean prompt) so positions line up"
                )
        if length > model.config.block_size:
            raise GptlabError(f"{at}: {length} tokens is longer than the model's block_size")
        clean.append(ids["clean"])
        corrupted.append(ids["corrupted"])
        answers.append(ids["answer"][0])
        wrongs.append(ids["wrong"][0])
    if max(max(c) for c in clean + corrupted) >= model.config.vocab_size:
        raise GptlabError(f"{where} holds tokens beyond the model's vocabulary")
    device = model_device(model)
    return PromptSet(
        torch.tensor(clean, device=device),
        torch.tensor(corrupted, device=device),
        torch.tensor(answers, device=device),
        torch.tensor(wrongs, device=device),
        [{f: row[f] for f in FIELDS} for row in rows],
    )


def load_prompt_set(model, tokenizer: Tokenizer, path: str | Path) -> PromptSet:
    """A prompt set from a JSONL file of {clean, corrupted, answer, wrong} objects."""
    rows = [record for _, record in jsonl_records(path, "prompt set")]
    for number, row in enumerate(rows, start=1):
        if not isinstance(row, dict):
            raise GptlabError(
                f"prompt set {path}, row {number}: not a JSON object with {', '.join(FIELDS)}"
            )
    return build_prompt_set(model, tokenizer, rows, f"prompt set {path}")


# IOI templates: {A} is the indirect object (the answer), {B} the subject, named twice; {C} the
# corrupted prompt's second subject (a third name, the "ABC" corruption of Wang et al.).
IOI_TEMPLATES = (
    "When {A} and {B} went to the store, {C} gave a drink to",
    "When {A} and {B} went to the park, {C} gave a ball to",
    "After {A} and {B} had lunch, {C} handed the bill to",
    "Then {A} and {B} had a long talk, and {C} gave a book to",
)
# Candidate names; only those that are one token (with their leading space) in the model's
# tokenizer are used. A character tokenizer has no such names: it gets single capital letters.
IOI_NAMES = (
    "Mary", "John", "Alice", "Bob", "Tom", "James", "Anna", "Paul", "Sarah", "David", "Lisa",
    "Mark", "Kate", "Peter", "Emma", "Jack", "Laura", "Mike", "Ben", "Rose", "Sam", "Dan",
)  # fmt: skip


def encodes(tokenizer: Tokenizer, text: str) -> list[int]:
    """The ids of text, or [] when the tokenizer cannot encode it (a character vocabulary
    without some letter): such a name is simply not a candidate."""
    try:
        return tokenizer.encode(text)
    except GptlabError:
        return []


def single_token_names(tokenizer: Tokenizer) -> tuple[list[str], bool]:
    """(names, spaced): names that are one token as " Name" (spaced=True), else single letters
    that are one token on their own (the prompt then ends with the space)."""
    spaced = [n for n in IOI_NAMES if len(encodes(tokenizer, " " + n)) == 1]
    if len(spaced) >= 3:
        return spaced, True
    # A letter must be one token, and stay apart from the space before it (" B" as " " + "B"),
    # so that every prompt of the template has the same number of tokens.
    space = tokenizer.encode(" ")
    letters = [
        c
        for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
        if len(tokenizer.encode(c)) == 1
        and tokenizer.encode(" " + c) == space + tokenizer.encode(c)
    ]
    if len(letters) < 3:
        raise GptlabError(
            "the tokenizer has fewer than 3 single-token names (or capital letters) for IOI "
            "prompts; write a prompt set file instead (one JSON object per line)"
        )
    return letters, False


def ioi_rows(tokenizer: Tokenizer, n: int, template: int = 0, seed: int = 0) -> list[dict]:
    """n IOI rows of one template (so every prompt has the same length), names drawn at random."""
    if not 0 <= template < len(IOI_TEMPLATES):
        raise GptlabError(
            f"IOI template {template} does not exist: use 0..{len(IOI_TEMPLATES) - 1}"
        )
    if n < 1:
        raise GptlabError(f"an IOI prompt set needs at least 1 prompt, got {n}")
    names, spaced = single_token_names(tokenizer)
    rng = random.Random(seed)
    text = IOI_TEMPLATES[template]
    rows = []
    for _ in range(n):
        a, b, c = rng.sample(names, 3)
        clean = text.format(A=a, B=b, C=b)
        corrupted = text.format(A=a, B=b, C=c)
        if spaced:
            rows.append(
                {"clean": clean, "corrupted": corrupted, "answer": " " + a, "wrong": " " + b}
            )
        else:
            rows.append(
                {"clean": clean + " ", "corrupted": corrupted + " ", "answer": a, "wrong": b}
            )
    return rows


def ioi_prompt_set(
    model, tokenizer: Tokenizer, n: int = 16, template: int = 0, seed: int = 0
) -> PromptSet:
    """An IOI-style prompt set for this model's tokenizer (see ioi_rows)."""
    return build_prompt_set(
        model, tokenizer, ioi_rows(tokenizer, n, template, seed), "IOI prompt set"
    )
