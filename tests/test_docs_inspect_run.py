"""The circuit tools' examples of docs/inspect.md, run as written on a small character model.

test_docs_commands.py only parses the docs' commands; these ran into an error (a `--preset` of a
character shape has no vocabulary until it is trained), so each one here runs for real, with the
tour's `runs/shakespeare` replaced by a model of the same kind (TinyShakespeare's characters,
learned positions), shrunk so the test is quick."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import torch

from gptlab.checkpoints.model_folder import save_model
from gptlab.cli import main
from gptlab.model import GPT
from gptlab.model.config import ModelConfig
from gptlab.tokenizers.base import CharTokenizer

ROOT = Path(__file__).resolve().parent.parent
TOOLS = ("heads", "loss", "circuits", "composition")
EXAMPLE = re.compile(rf"^gptlab inspect (?:{'|'.join(TOOLS)}) .*$", re.MULTILINE)
EXAMPLES = EXAMPLE.findall((ROOT / "docs" / "inspect.md").read_text(encoding="utf-8"))


def test_every_circuit_tool_has_its_examples():
    assert len(EXAMPLES) == 6, EXAMPLES
    assert all("runs/shakespeare" in example for example in EXAMPLES), EXAMPLES


@pytest.fixture(scope="module")
def shakespeare(tmp_path_factory):
    text = (ROOT / "data" / "samples" / "tinyshakespeare" / "input.txt").read_text(encoding="utf-8")
    tokenizer = CharTokenizer.from_text(text)
    torch.manual_seed(0)
    config = ModelConfig(
        vocab_size=tokenizer.vocab_size, block_size=64, n_layer=2, n_head=2, n_embd=32
    )
    folder = tmp_path_factory.mktemp("docs-inspect") / "shakespeare"
    save_model(folder, GPT(config), tokenizer)
    return folder


@pytest.mark.parametrize("example", EXAMPLES)
def test_the_docs_example_runs(example, shakespeare, tmp_path, capsys):
    argv = shlex.split(example.split("   #")[0])[1:]
    argv = [str(shakespeare) if word == "runs/shakespeare" else word for word in argv]
    # Docs' layer 1 exists in the 2-layer model; --out keeps the files in the test's folder.
    assert main([*argv, "--out", str(tmp_path), "--threads", "1"]) == 0, capsys.readouterr().err
    assert any(tmp_path.iterdir())
