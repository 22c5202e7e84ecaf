"""Every ```python block of README.md and docs/*.md runs as written.

A learner pastes these examples first, so a renamed function, a moved module or a changed
signature must break a test, not a reader. Each block is executed on its own, in a fresh
namespace, with the working directory set to one scratch "checkout" that a module fixture
fills with what the examples name:

    data/samples/          the sample corpora the repository ships (a link to them)
    input.txt              TinyShakespeare, also put in the (per-session) gptlab cache so that
                           prepare_dataset("tinyshakespeare") works offline
    runs/shakespeare       a training run: a tiny character model, a few real steps
    runs/tiny              a 1-layer run on the same data (a speculative-decoding draft)
    exported/              runs/shakespeare written as a Hugging Face GPT-2 folder (gptlab export)
    my-gpt2-folder/        a small random Hugging Face GPT2LMHeadModel with GPT-2's vocabulary

A block that cannot run here says so on its first line, visibly in the docs: `# needs: network`
or `# needs: gpu` (several: `# needs: network, gpu`). Such a block is skipped with that reason;
every other block must run without an exception. The examples train for real (briefly), so the
block test is marked `slow`.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOC_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("**/*.md"))]
NEEDS = re.compile(r"^#\s*needs:\s*(?P<what>.+)$")
KNOWN_NEEDS = {"network", "gpu", "multi-gpu"}


@dataclass(frozen=True)
class DocBlock:
    file: str
    line: int  # the line of the first line of code
    code: str

    @property
    def id(self) -> str:
        return f"{self.file}:{self.line}"

    @property
    def needs(self) -> set[str]:
        first = self.code.lstrip().splitlines()[0].strip() if self.code.strip() else ""
        match = NEEDS.match(first)
        if match is None:
            return set()
        return {word.strip() for word in match.group("what").split(",")}


def python_blocks(path: Path) -> list[DocBlock]:
    blocks = []
    lines = path.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        fence = lines[i].strip()
        if fence.startswith("```"):
            j = i + 1
            while j < len(lines) and not lines[j].strip().startswith("```"):
                j += 1
            if fence == "```python":
                code = "\n".join(lines[i + 1 : j]) + "\n"
                blocks.append(DocBlock(str(path.relative_to(ROOT)), i + 2, code))
            i = j + 1
        else:
            i += 1
    return blocks


BLOCKS = [block for path in DOC_FILES for block in python_blocks(path)]


def test_the_docs_show_python_examples():
    # A parser that stops finding blocks would otherwise let every check below pass on nothing.
    assert len(BLOCKS) >= 12, [b.id for b in BLOCKS]
    assert len({b.file for b in BLOCKS}) >= 8
    for block in BLOCKS:
        unknown = block.needs - KNOWN_NEEDS
        assert not unknown, f"{block.id}: unknown `# needs:` {sorted(unknown)}"
    # Skips are the exception: keep the list short and honest.
    skipped = [b.id for b in BLOCKS if b.needs]
    assert len(skipped) <= 3, skipped


def train_tiny_run(out: Path, n_layer: int) -> None:
    from gptlab.train import train
    from gptlab.train.config import build_run_config

    config = build_run_config(
        preset="shakespeare-char",
        overrides=[
            f"model.n_layer={n_layer}",
            "model.n_head=4",
            "model.n_embd=32",
            "train.max_seconds=none",
            "train.max_steps=20",
            "train.eval_every=10",
            "train.eval_tokens=2048",
            "train.final_eval_tokens=4096",
            "train.sample_tokens=50",
            "train.threads=1",
        ],
    )
    train(config, out)


def save_random_hf_gpt2(out: Path) -> None:
    from gptlab.optional import import_optional

    transformers = import_optional("transformers", "hf")
    config = transformers.GPT2Config(n_layer=2, n_head=2, n_embd=32, n_positions=128)
    transformers.GPT2LMHeadModel(config).save_pretrained(out)


@pytest.fixture(scope="module")
def doc_workspace(tmp_path_factory, shared_data: Path) -> Path:
    import torch

    from gptlab import load_model
    from gptlab.model.hf import export_hf

    # A checkout with its shipped samples, so `data/samples/...` paths work.
    work = tmp_path_factory.mktemp("docs-python") / "checkout"
    (work / "data").mkdir(parents=True)
    (work / "data" / "samples").symlink_to(shared_data, target_is_directory=True)
    shakespeare = shared_data / "tinyshakespeare" / "input.txt"
    cached = Path(os.environ["GPTLAB_HOME"]) / "downloads" / "tinyshakespeare" / "input.txt"
    cached.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(shakespeare, cached)
    shutil.copyfile(shakespeare, work / "input.txt")

    old_cwd = os.getcwd()
    os.chdir(work)
    try:
        torch.manual_seed(0)
        train_tiny_run(Path("runs/shakespeare"), n_layer=4)
        train_tiny_run(Path("runs/tiny"), n_layer=1)
        model, tokenizer = load_model("runs/shakespeare")
        export_hf(model, "exported", tokenizer)
        save_random_hf_gpt2(Path("my-gpt2-folder"))
    finally:
        os.chdir(old_cwd)
    return work


# About 40 s on 2 CPU cores (two short training runs and a 4-run experiment among the examples).
@pytest.mark.slow
@pytest.mark.parametrize("block", BLOCKS, ids=[b.id for b in BLOCKS])
def test_doc_python_block_runs(block: DocBlock, doc_workspace: Path, monkeypatch):
    if block.needs:
        pytest.skip(f"{block.id} needs {', '.join(sorted(block.needs))}")
    monkeypatch.chdir(doc_workspace)
    code = compile(block.code, block.id, "exec")  # tracebacks point at the doc's file:line
    exec(code, {"__name__": "__doc_example__"})
