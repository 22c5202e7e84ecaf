"""Round 3 of the bad-input sweep: the cases that are not one argv and one error line (a file
a writer fails on, a page in a browser, a server request), each checked against what it should
leave behind."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from gptlab.cli import main
from gptlab.data.local_files import LocalFiles
from gptlab.errors import GptlabError


def test_a_corpus_folder_skips_prepared_datasets_and_runs_inside_it(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a.txt").write_text("first document\n" * 50)
    (corpus / "b.jsonl").write_text(json.dumps({"text": "second"}) + "\n")
    elsewhere = tmp_path / "prepared"
    assert (
        main(
            [
                "prepare",
                str(corpus / "a.txt"),
                "--tokenizer",
                "char",
                "--out",
                str(elsewhere),
                "--quiet",
            ]
        )
        == 0
    )
    shutil.copytree(elsewhere, corpus / "prepared")  # a prepared folder moved into the corpus
    run = corpus / "runs" / "r1"
    (run / "checkpoints" / "step-0000001").mkdir(parents=True)
    (run / "checkpoints" / "step-0000001" / "config.json").write_text("{}")
    (run / "metrics.jsonl").write_text('{"step": 1}\n')
    (corpus / "runs" / "notes.txt").write_text("kept: a plain file beside the run")

    files = LocalFiles(str(corpus)).files
    assert [p.relative_to(corpus.resolve()).as_posix() for p in files] == [
        "a.txt",
        "b.jsonl",
        "runs/notes.txt",
    ]
    with pytest.raises(GptlabError, match="prepared dataset"):
        LocalFiles(str(elsewhere))


def test_a_folder_with_its_own_checkpoints_folder_is_not_taken_for_a_run(tmp_path, capsys):
    """Above an --out, only a run's own files (metrics.jsonl, a step-N checkpoint) make a run:
    a project that keeps a `checkpoints/` folder of its own may export under it."""
    import torch

    from gptlab.checkpoints.model_folder import save_model
    from gptlab.model import GPT
    from gptlab.model.config import ModelConfig
    from gptlab.tokenizers.base import CharTokenizer

    tokenizer = CharTokenizer.from_text("abc ")
    torch.manual_seed(0)
    model = tmp_path / "model"
    save_model(
        model,
        GPT(ModelConfig(vocab_size=4, block_size=8, n_layer=1, n_head=1, n_embd=8)),
        tokenizer,
    )
    project = tmp_path / "project"
    (project / "checkpoints").mkdir(parents=True)
    assert main(["export", "--checkpoint", str(model), "--out", str(project / "hf")]) == 0
    (project / "checkpoints" / "step-0000010").mkdir()  # now it is a run's
    line = one_error_line(
        capsys, ["export", "--checkpoint", str(model), "--out", str(project / "hf2")]
    )
    assert "training run" in line, line


# ---- full disk: the writers that are not Python's own raise other errors ----------------------

FULL_DISK_ERRORS = {
    "torch.save": lambda: RuntimeError(
        "[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598"
    ),
    "safetensors": lambda: __import__("safetensors").SafetensorError(
        'Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: "No space left on device" })'
    ),
}


def one_error_line(capsys, argv) -> str:
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines[-1].startswith("gptlab: error: "), err
    return lines[-1]


TINY = (
    "model.n_layer=1 model.n_head=2 model.n_embd=16 model.block_size=16 train.micro_batch_size=4 "
    "train.tokens_per_step=64 train.max_seconds=none train.eval_every=0 "
    "train.final_eval_tokens=64 train.sample_every=0 train.threads=1 train.checkpoint_every=1"
).split()


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("full-disk")
    text = root / "corpus.txt"
    text.write_text("abcdefgh \n" * 400)
    assert (
        main(["prepare", str(text), "--tokenizer", "char", "--out", str(root / "p"), "--quiet"])
        == 0
    )
    return root / "p"


@pytest.mark.parametrize("writer", ["torch.save", "safetensors"])
def test_a_full_disk_while_saving_a_checkpoint_is_one_line_and_keeps_the_previous_one(
    prepared, tmp_path, monkeypatch, capsys, writer
):
    import gptlab.checkpoints.model_folder as model_folder
    import gptlab.checkpoints.run as run_module

    run = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--out",
                str(run),
                f"data.prepared_dir={prepared}",
                "train.max_steps=1",
                *TINY,
            ]
        )
        == 0
    )
    before = sorted(p.name for p in (run / "checkpoints").iterdir())

    def full(*args, **kwargs):
        raise FULL_DISK_ERRORS[writer]()

    if writer == "torch.save":
        monkeypatch.setattr(run_module.torch, "save", full)
    else:
        monkeypatch.setattr(model_folder, "save_file", full)
    argv = [
        "train",
        "--out",
        str(run),
        "--resume",
        f"data.prepared_dir={prepared}",
        "train.max_steps=2",
        *TINY,
    ]
    line = one_error_line(capsys, argv)
    assert "disk" in line and str(run) in line, line
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == before
    monkeypatch.undo()
    assert main(["sample", "--checkpoint", str(run), "--prompt", "a", "--max-new-tokens", "2"]) == 0


@pytest.mark.parametrize("export_format", ["hf", "transformer-lens"])
def test_a_full_disk_while_exporting_is_one_line_and_leaves_no_out(
    prepared, tmp_path, monkeypatch, capsys, export_format
):
    import gptlab.model.hf as hf
    import gptlab.model.transformer_lens as tl

    run = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--out",
                str(run),
                f"data.prepared_dir={prepared}",
                "train.max_steps=1",
                *TINY,
            ]
        )
        == 0
    )

    def full(*args, **kwargs):
        raise FULL_DISK_ERRORS["safetensors"]()

    monkeypatch.setattr(hf if export_format == "hf" else tl, "save_file", full)
    out = tmp_path / "exported"
    argv = ["export", "--checkpoint", str(run), "--out", str(out), "--format", export_format]
    line = one_error_line(capsys, argv)
    assert "No space left on device" in line and "free some disk space" in line, line
    assert not out.exists()


# ---- deeply nested JSON: one line (or a 4xx), never a RecursionError --------------------------

DEEP = "[" * 5000 + "]" * 5000  # json.loads alone raises RecursionError on this
DEEPISH = "[" * 500 + "]" * 500  # parses, but overflows whatever walks it next


@pytest.mark.parametrize("nested", [DEEP, DEEPISH], ids=["5000-levels", "500-levels"])
def test_deeply_nested_json_in_any_file_read_is_one_line(tmp_path, capsys, nested):
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text('{"text": "fine"}\n{"text": "x", "junk": ' + nested + "}\n")
    line = one_error_line(capsys, ["prepare", str(corpus), "--out", str(tmp_path / "p"), "--quiet"])
    assert "line 2" in line and "nested" in line, line
    array = tmp_path / "corpus.json"
    array.write_text('[{"text": "a"}, ' + nested + "]")
    assert "nested" in one_error_line(capsys, ["prepare", str(array), "--out", str(tmp_path / "q")])
    tokenizer = tmp_path / "tok.json"
    tokenizer.write_text('{"type": "char", "x": ' + nested + "}")
    line = one_error_line(
        capsys, ["tokenizer", "encode", "--tokenizer", str(tokenizer), "--text", "a"]
    )
    assert "nested" in line, line
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text('{"step": 1, "train_loss": 2.0}\n{"step": ' + nested + "}\n")
    assert "line 2" in one_error_line(capsys, ["plot", str(run)])
    assert not (tmp_path / "p").exists() and not (tmp_path / "q").exists()


# ---- tracebacks still reachable ------------------------------------------------------------------


def test_a_reader_that_goes_away_is_quiet(tmp_path):
    """`gptlab ... | head`: the pipe closes before gptlab writes; no BrokenPipeError traceback."""
    import os
    import subprocess
    import sys

    import gptlab

    env = {**os.environ, "PYTHONPATH": str(Path(gptlab.__file__).parent.parent)}
    process = subprocess.Popen(
        [sys.executable, "-m", "gptlab", "params", "--preset", "gpt2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    process.stdout.close()  # the reader is gone before the first line
    stderr = process.stderr.read().decode()
    assert process.wait(timeout=120) == 0, stderr
    assert "Traceback" not in stderr and "BrokenPipe" not in stderr, stderr


def test_a_failing_tokenizer_pool_exits_instead_of_hanging(tmp_path, monkeypatch, capsys):
    """A worker pool that cannot start (too many open files) ended in one line, then hung."""
    import gptlab.data.parallel as parallel

    class NoPool:
        def __init__(self, *args, **kwargs):
            self._processes = {}

        def submit(self, *args, **kwargs):
            raise OSError(24, "Too many open files")

        def shutdown(self, wait=True, cancel_futures=False):
            assert not wait  # waiting on a pool that never came up is the hang
            self.shut = True

    monkeypatch.setattr(parallel, "ProcessPoolExecutor", NoPool)
    text = tmp_path / "corpus.txt"
    text.write_text("some text\n" * 1000)
    out = tmp_path / "p"
    line = one_error_line(
        capsys, ["prepare", str(text), "--tokenizer", "char", "--workers", "2", "--out", str(out)]
    )
    assert "Too many open files" in line and not out.exists(), line


# ---- silent wrong results --------------------------------------------------------------------------


def test_a_few_large_documents_are_split_inside_not_sent_whole_to_val(
    tmp_path, monkeypatch, capsys
):
    """One big document and a small one: the big one (first, so whole-document routing made it
    validation) is split by its tail, as a single text is."""
    import gptlab.data.prepare as prepare

    monkeypatch.setattr(prepare, "LARGE_DOCUMENT_TOKENS", 1000)
    big = "".join(f"line {i} of the only big document\n" for i in range(300))
    corpus = tmp_path / "big.jsonl"
    corpus.write_text(json.dumps({"text": big}) + "\n" + json.dumps({"text": "a small one"}) + "\n")
    out = tmp_path / "p"
    assert main(["prepare", str(corpus), "--tokenizer", "char", "--out", str(out), "--quiet"]) == 0
    splits = json.loads((out / "meta.json").read_text())["splits"]
    n_train = len(big) * 9 // 10
    assert splits["train"]["tokens"] == n_train + len("a small one")
    assert splits["val"]["tokens"] == len(big) - n_train
    capsys.readouterr()
    # Under the threshold, whole documents still go to one split; a lopsided result is reported.
    monkeypatch.setattr(prepare, "LARGE_DOCUMENT_TOKENS", 10**9)
    assert main(["prepare", str(corpus), "--tokenizer", "char", "--out", str(tmp_path / "q")]) == 0
    assert "warning: validation holds" in capsys.readouterr().err


def test_an_undefined_rank_correlation_is_null_in_json_and_said_in_words():
    import math

    import torch

    from gptlab.interp.patching_sites import AttributionPatching, SitePatching, spearman

    flat = torch.zeros(2, 3)
    rho = spearman(flat, torch.arange(6.0).reshape(2, 3))
    assert math.isnan(rho)
    site = SitePatching("z", 1.0, 0.0, flat)
    data = AttributionPatching(site, site, rho).to_dict()
    assert data["spearman"] is None and json.loads(json.dumps(data, allow_nan=False))
