"""Small user mistakes and damaged models: each is one line and a non-zero exit, never a
traceback, and never silently accepted (issue 14's audit, one regression test each)."""

import errno
import re

import pytest
import torch

from gptlab.checkpoints.model_folder import save_model
from gptlab.cli import main
from gptlab.errors import GptlabError
from gptlab.inference.generate import GenerationConfig
from gptlab.model import GPT
from gptlab.model.config import ModelConfig
from gptlab.tokenizers.base import CharTokenizer
from gptlab.train.config import build_run_config


@pytest.fixture
def char_model(tmp_path):
    tokenizer = CharTokenizer.from_text("abcdefgh \n")
    config = ModelConfig(
        vocab_size=tokenizer.vocab_size, block_size=16, n_layer=1, n_head=2, n_embd=8
    )
    torch.manual_seed(0)
    save_model(tmp_path / "model", GPT(config), tokenizer)
    return tmp_path / "model"


def one_line_error(capsys, argv) -> str:
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("gptlab: error: ") and err.count("\n") == 1, err
    return err


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.threads=0", "train.threads must be auto, none or a whole number >= 1"),
        ("train.seed=-1", "train.seed must be in [0, 2**62)"),
        (f"train.seed={2**70}", "train.seed must be in [0, 2**62)"),
    ],
)
def test_bad_training_numbers(override, message):
    with pytest.raises(GptlabError, match=re.escape(message)):
        build_run_config(overrides=[override])


def test_a_sample_seed_out_of_range(capsys, char_model):
    argv = ["sample", "--checkpoint", str(char_model), "--prompt", "ab", "--seed", str(2**70)]
    with pytest.raises(SystemExit) as refused:  # refused while parsing, before the model loads
        main([*argv, "--device", "cpu"])
    assert refused.value.code == 2
    assert "seed must be in [0, 2**63)" in capsys.readouterr().err.splitlines()[-1]
    with pytest.raises(GptlabError):
        GenerationConfig(seed=-5)


@pytest.mark.parametrize("flags", [["--temperature", "0.8"], ["--greedy"]])
def test_a_model_with_nan_weights_is_said_to_be_damaged(capsys, tmp_path, char_model, flags):
    from gptlab.checkpoints.load import load_model

    model, tokenizer = load_model(char_model)
    with torch.no_grad():
        model.wte.weight.fill_(float("nan"))
    save_model(tmp_path / "nan", model, tokenizer)
    argv = ["sample", "--checkpoint", str(tmp_path / "nan"), "--prompt", "ab", *flags]
    err = one_line_error(capsys, [*argv, "--device", "cpu", "--max-new-tokens", "3"])
    assert "logits are NaN or inf: its weights are damaged" in err


def test_plot_never_replaces_a_file_without_overwrite(capsys, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text('{"step": 1, "tokens": 10, "train_loss": 3.0}\n')
    picture = tmp_path / "mine.png"
    picture.write_bytes(b"someone's picture")
    assert "exists; pass --overwrite" in one_line_error(
        capsys, ["plot", str(run), "--out", str(picture)]
    )
    assert picture.read_bytes() == b"someone's picture"
    assert "is a folder" in one_line_error(capsys, ["plot", str(run), "--out", str(tmp_path)])
    pytest.importorskip("matplotlib")
    assert main(["plot", str(run), "--out", str(picture), "--overwrite"]) == 0
    assert picture.read_bytes()[:4] == b"\x89PNG"


def test_export_refuses_a_training_run_folder(capsys, tmp_path, char_model):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    argv = ["export", "--checkpoint", str(char_model), "--out", str(run), "--overwrite"]
    assert "is a training run folder" in one_line_error(capsys, argv)


def test_inspect_head_minus_one_is_refused(capsys, char_model):
    argv = ["inspect", "attention", "--checkpoint", str(char_model), "--prompt", "abc"]
    err = one_line_error(capsys, [*argv, "--head", "-1", "--device", "cpu"])
    assert "head -1 is out of range" in err


def test_prepare_refuses_an_empty_validation_split(capsys, tmp_path):
    text = tmp_path / "t.txt"
    text.write_text("hello world " * 100)
    argv = ["prepare", str(text), "--tokenizer", "char", "--out", str(tmp_path / "p")]
    assert "val_fraction must be in (0, 1)" in one_line_error(
        capsys, [*argv, "--val-fraction", "0"]
    )


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS])
def test_a_full_or_read_only_disk_is_one_line_and_leaves_no_temp_file(
    capsys, tmp_path, char_model, monkeypatch, code
):
    import os

    def failing_fsync(fd):
        raise OSError(code, os.strerror(code), "exported/model.safetensors")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    out = tmp_path / "exported"
    err = one_line_error(capsys, ["export", "--checkpoint", str(char_model), "--out", str(out)])
    assert os.strerror(code) in err and "write somewhere else (--out)" in err
    assert not out.exists() or not any(out.iterdir())  # no half-written or temporary file


@pytest.mark.parametrize(
    "change",
    [
        {"n_layer": 10**9},
        {"block_size": 10**11},
        {"vocab_size": 10**10},
        {"pad_vocab_multiple": 10**12},
    ],
)
def test_a_config_json_too_big_for_the_machine_is_refused_before_allocating(
    capsys, char_model, change
):
    import json

    path = char_model / "config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **change}))
    argv = ["sample", "--checkpoint", str(char_model), "--prompt", "ab", "--device", "cpu"]
    err = one_line_error(capsys, argv)
    assert "GiB of memory, more than this cpu has" in err
    assert main(["params", "--checkpoint", str(char_model)]) == 0  # counted, never allocated
    assert "total with tying" in capsys.readouterr().out


def test_training_and_sampling_sizes_are_checked_before_allocating(capsys, char_model):
    with pytest.raises(GptlabError, match="in training needs .* GiB of memory"):
        from gptlab.model.params import require_model_fits

        config = ModelConfig(vocab_size=65, block_size=64, n_layer=4, n_head=4, n_embd=10**6)
        require_model_fits(config, torch.device("cpu"), training=True)
    argv = ["sample", "--checkpoint", str(char_model), "--prompt", "ab", "--device", "cpu"]
    err = one_line_error(capsys, [*argv, "--num-samples", str(10**12)])
    assert "generating 1000000000000 sequence(s)" in err
