"""docs/tour.md runs: every command of its ```bash blocks, in order, with shrunk budgets.

The tour's promise is that each stage uses the previous stage's outputs by a predictable name
(`runs/shakespeare`, `data/shakespeare-char`, ...). This test holds it to that: it runs the commands
one after the other through `gptlab.cli.main` in a scratch checkout holding only what the
repository ships (data/samples, configs), so a renamed folder, a missing step or an example that
only works on someone's machine fails here. Budgets are shrunk (a few steps, tiny models, a few
seconds of fine-tuning) by appending options and overrides to each command, which the CLI takes
anywhere and lets the last one win; the text of the commands is otherwise run as written.
"""

from __future__ import annotations

import io
import shutil
import sys
from pathlib import Path

import pytest
from test_docs_commands import ROOT, commands_in, split_like_a_shell

from gptlab.cli import main

TOUR = ROOT / "docs" / "tour.md"
COMMANDS = commands_in(TOUR)

# Context 128: room for an Alpaca prompt (~60 GPT-2 tokens) in the instruction-tuning step.
TINY_MODEL = ["model.n_layer=1", "model.n_head=2", "model.n_embd=32", "model.block_size=128"]
SHRINK = {
    "tokenizer train": ["--vocab-size", "300"],
    "train": [
        *TINY_MODEL,
        "train.max_seconds=none",
        "train.max_steps=3",
        "train.tokens_per_step=512",
        "train.micro_batch_size=4",
        "train.warmup_steps=1",
        "train.eval_every=0",
        "train.eval_tokens=512",
        "train.final_eval_tokens=512",
        "train.sample_tokens=8",
    ],
    "sample": ["--max-new-tokens", "8"],
    "eval perplexity": ["--max-tokens", "2048"],
    "inspect ablate": ["--batches", "1", "--batch-size", "2"],
    "finetune classify": ["--max-seconds", "1", "--epochs", "1", "--max-length", "24"],
    "finetune instruct": ["--max-seconds", "1", "--epochs", "1", "--max-length", "128"]
    + ["answers=2", "max_new_tokens=4"],
    "chat": ["--max-new-tokens", "4"],
}


def shrunk(argv: list[str]) -> list[str]:
    for verb in (" ".join(argv[:2]), argv[0]):
        if verb in SHRINK:
            return [*argv, *SHRINK[verb]]
    return argv


def test_the_tour_shows_every_stage():
    verbs = [command.text.split()[0] for command in COMMANDS]
    for verb in ("tokenizer", "prepare", "params", "train", "sample", "eval", "inspect"):
        assert verb in verbs, f"the tour never shows `gptlab {verb}`"
    assert {"finetune", "classify", "chat"} <= set(verbs)
    headings = " ".join(line for line in TOUR.read_text().splitlines() if line.startswith("## "))
    assert all(f"{stage}. " in headings for stage in range(1, 9)), headings


@pytest.mark.slow
def test_the_tour_runs_in_order_on_what_the_repository_ships(tmp_path, monkeypatch):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "samples").symlink_to(ROOT / "data" / "samples")
    shutil.copytree(ROOT / "configs", tmp_path / "configs")
    monkeypatch.chdir(tmp_path)
    for command in COMMANDS:
        argv = shrunk(split_like_a_shell(command.text))
        if argv[0] == "chat":
            monkeypatch.setattr(sys, "stdin", io.StringIO("Name a colour.\n\n"))
        assert main(argv) == 0, f"{command.id}: gptlab {command.text}"
    for made in (
        "runs/shakespeare-bpe.json",
        "data/shakespeare-char/meta.json",
        "runs/shakespeare/config.toml",
        "runs/tiny/config.toml",
        "runs/small-bpe/config.toml",
        "runs/spam/metrics.json",
        "runs/alpaca",
    ):
        assert Path(made).exists(), f"the tour promised {made}"
