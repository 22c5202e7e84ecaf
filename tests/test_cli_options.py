"""Options shared by the verbs: overrides anywhere on the line, --threads, device hints."""

import os

import pytest
import torch

from gptlab import device
from gptlab.cli import build_parser, main
from gptlab.device import auto_threads, resolve_device, resolve_threads
from gptlab.errors import GptlabError


def test_overrides_may_come_before_and_after_options():
    parser = build_parser()
    args = parser.parse_args(["train", "--out", "d", "train.max_steps=3", "--preset", "speedrun"])
    assert (args.out, args.preset, args.overrides) == ("d", "speedrun", ["train.max_steps=3"])
    args = parser.parse_args(["train", "train.lr=1e-3", "--out", "d", "train.max_steps=3"])
    assert args.overrides == ["train.lr=1e-3", "train.max_steps=3"]
    args = parser.parse_args(
        ["experiment", "--vary", "train.lr=1,2", "model.n_layer=2", "--seeds", "2"]
    )
    assert (args.vary, args.overrides, args.seeds) == (["train.lr=1,2"], ["model.n_layer=2"], 2)


def test_threads_option_becomes_the_run_config_setting(capsys):
    before = torch.get_num_threads()
    assert main(["train", "--print-config", "--threads", "3", "train.max_steps=2"]) == 0
    assert torch.get_num_threads() == before  # main() in-process leaves torch as it found it
    assert 'threads = "3"' in capsys.readouterr().out
    assert main(["train", "--print-config", "train.max_steps=2"]) == 0
    assert 'threads = "auto"' in capsys.readouterr().out


def test_every_compute_verb_takes_threads():
    parser = build_parser()
    for argv in (
        ["sample", "--preset", "gpt2", "--prompt", "a"],
        ["eval", "perplexity", "--checkpoint", "d", "--data", "x"],
        ["inspect", "attention", "--preset", "gpt2", "--prompt", "a"],
        ["finetune", "classify", "--data", "x"],
        ["classify", "--checkpoint", "d", "--text", "a"],
        ["chat", "--checkpoint", "d"],
        ["experiment", "--vary", "train.lr=1,2"],
        ["explore", "d"],
        ["inspect", "heads", "--preset", "gpt2"],
    ):
        assert parser.parse_args([*argv, "--threads", "2"]).threads == "2", argv


def test_a_bad_thread_count_is_one_line(capsys):
    assert main(["train", "--threads", "0", "train.max_steps=1"]) == 1
    err = capsys.readouterr().err
    assert err == "gptlab: error: --threads must be auto, none or a whole number >= 1, got '0'\n"


def test_auto_threads_leaves_the_busy_cores_alone(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(device, "available_cores", lambda: 8)
    for load, expected in ((0.2, 8), (2.6, 5), (7.9, 1), (30.0, 1)):
        monkeypatch.setattr(os, "getloadavg", lambda load=load: (load, load, load))
        assert auto_threads() == expected
    assert resolve_threads("4") == 4 and resolve_threads("none") is None


def test_auto_threads_follows_an_omp_num_threads_the_user_set(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert auto_threads() == torch.get_num_threads()


@pytest.mark.parametrize(
    "setting, fix", [("--device", "--device cpu"), ("train.device=", "train.device=cpu")]
)
def test_a_missing_gpu_suggests_a_fix_the_command_accepts(monkeypatch, setting, fix):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(GptlabError, match=f"no CUDA GPU is available; use {fix} "):
        resolve_device("cuda", setting)


def test_threads_in_toml_may_be_a_number_as_older_configs_wrote_it(tmp_path):
    from gptlab.train.config import build_run_config

    path = tmp_path / "run.toml"
    for written in ("4", '"4"'):
        path.write_text(f'preset = "shakespeare-char"\n[train]\nthreads = {written}\n')
        assert build_run_config(config_file=path).train.threads == "4"
    path.write_text('preset = "shakespeare-char"\n[train]\nthreads = 0\n')
    with pytest.raises(GptlabError, match="train.threads must be auto, none or a whole number"):
        build_run_config(config_file=path)
    path.write_text('preset = "shakespeare-char"\n[train]\nthreads = 2.5\n')
    with pytest.raises(GptlabError, match=r"train.threads must be a string, got 2.5 \(in TOML"):
        build_run_config(config_file=path)
