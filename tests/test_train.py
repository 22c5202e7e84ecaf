"""The training loop end to end on tiny models and real TinyShakespeare text: the run folder,
metrics, plots, checkpoints (atomic), refusals, NaN stop, and `gptlab plot`."""

import copy
import dataclasses
import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

from gptlab.checkpoints import run as ckpt
from gptlab.checkpoints.load import load_model
from gptlab.cli import main
from gptlab.data.prepared_folder import load_prepared_tokenizer
from gptlab.errors import GptlabError
from gptlab.train import PeriodicEval, train
from gptlab.train.config import build_run_config
from gptlab.train.metrics import read_metrics as read_run_metrics

TINY = [
    "model.n_layer=2",
    "model.n_head=2",
    "model.n_embd=32",
    "model.block_size=32",
    "train.micro_batch_size=8",
    "train.tokens_per_step=512",  # 2 micro-steps of 8 x 32
    "train.max_seconds=none",
    "train.warmup_steps=2",
    "train.eval_tokens=2048",
    "train.final_eval_tokens=4096",
    "train.sample_tokens=20",
    "train.threads=1",
]


def tiny_config(prepared, *overrides, validate=True):
    return build_run_config(
        overrides=[*TINY, f"data.prepared_dir={prepared}", *overrides], validate=validate
    )


def read_metrics(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_a_run_writes_config_metrics_plot_samples_and_a_loadable_checkpoint(
    prepared_shakespeare, tmp_path
):
    config = tiny_config(
        prepared_shakespeare, "train.max_steps=6", "train.eval_every=3", "train.sample_every=3"
    )
    seen = []
    extra = PeriodicEval(
        every=2, run=lambda model, tokenizer: {"extra_metric": float(model.training)}
    )
    result = train(
        config, tmp_path / "run", extra_evals=[extra], on_step=seen.append, show_progress=False
    )
    run = tmp_path / "run"

    assert result.steps == 6 and result.tokens == 6 * 512
    assert [r["step"] for r in seen] == [1, 2, 3, 4, 5, 6]
    records = read_metrics(run)
    assert [r["step"] for r in records] == [1, 2, 3, 4, 5, 6]
    for r in records:
        assert {
            "step",
            "tokens",
            "elapsed_s",
            "lr",
            "train_loss",
            "grad_norm",
            "tokens_per_s",
        } <= r.keys()
        assert "mfu" not in r  # no MFU claim on a CPU
    evals = [r for r in records if "val_loss" in r]
    assert [r["step"] for r in evals] == [3, 6]
    for r in evals:
        assert r["val_ppl"] == pytest.approx(torch.tensor(r["val_loss"]).exp().item(), rel=1e-6)
        assert r["eval_train_loss"] > 0
    assert [r["step"] for r in records if "extra_metric" in r] == [2, 4, 6]
    # Extra evals get the model in eval mode.
    assert all(r["extra_metric"] == 0.0 for r in records if "extra_metric" in r)
    # The best is chosen on one measure: the eval_tokens windows, also measured at the final eval.
    assert result.val_loss == evals[-1]["val_loss"] and result.best_val_loss == min(
        r.get("val_loss_sampled", r["val_loss"]) for r in evals
    )
    assert "val_loss_sampled" in evals[-1] and "val_loss_sampled" not in evals[0]
    assert records[0]["train_loss"] > records[-1]["train_loss"]  # it learns
    assert records[0]["tokens"] == 512 and records[-1]["tokens"] == 6 * 512

    assert (run / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    samples = (run / "samples.txt").read_text()
    assert "=== step 3 ===" in samples and "=== step 6 ===" in samples
    assert result.sample is not None and len(result.sample) == 1 + 20  # the "\n" prompt + 20 chars
    # The resolved config is complete: it rebuilds the run's config exactly, with the vocabulary
    # size the data decided (59 characters in this slice).
    saved = build_run_config(config_file=run / "config.toml")
    assert saved.model.vocab_size == load_prepared_tokenizer(prepared_shakespeare).vocab_size == 59
    assert saved.train == config.train and saved.data == config.data
    assert saved.model == dataclasses.replace(config.model, vocab_size=59)

    # The run folder is a model: the best checkpoint, without any wrapper prefixes in its names.
    model, tokenizer = load_model(run)
    assert tokenizer.vocab_size == model.config.vocab_size == saved.model.vocab_size
    checkpoint = ckpt.find_run_checkpoint(run)
    assert ckpt.read_info(checkpoint)["selection_val_loss"] == result.best_val_loss
    from safetensors.torch import load_file

    names = load_file(str(checkpoint / "model.safetensors")).keys()
    assert not any(name.startswith(("_orig_mod.", "module.")) for name in names)
    state = ckpt.load_training_state(checkpoint)  # weights_only=True
    assert {"optimizer", "scaler", "ranks", "world_size"} <= state.keys()


def test_the_data_decides_the_vocabulary_and_the_callers_config_is_left_alone(
    prepared_shakespeare, tmp_path
):
    config = tiny_config(prepared_shakespeare, "train.max_steps=1", "model.vocab_size=1000")
    before = copy.deepcopy(config)
    train(config, tmp_path / "run", show_progress=False)
    assert config == before  # gptlab experiment compares the configs it built with finished runs
    saved = build_run_config(config_file=tmp_path / "run" / "config.toml")
    data_vocab = load_prepared_tokenizer(prepared_shakespeare).vocab_size
    assert saved.model.vocab_size == data_vocab != 1000  # the slice's characters, from the data
    assert load_model(tmp_path / "run")[0].config.vocab_size == data_vocab


def test_checkpoints_keep_the_last_k_and_the_best(prepared_shakespeare, tmp_path):
    run = tmp_path / "run"
    config = tiny_config(
        prepared_shakespeare,
        "train.max_steps=8",
        "train.checkpoint_every=2",
        "train.eval_every=0",
        "train.keep_last=2",
    )
    train(config, run, show_progress=False)
    steps = [ckpt.read_info(p)["step"] for p in ckpt.list_checkpoints(run)]
    assert steps == [6, 8]  # the final one carries the only val loss, so it is also the best
    # Marking an older checkpoint as best protects it from pruning.
    info_path = ckpt.list_checkpoints(run)[0] / ckpt.INFO_FILE
    info = json.loads(info_path.read_text())
    info_path.write_text(json.dumps(info | {"val_loss": 0.5}))
    ckpt.prune_checkpoints(run, keep_last=1)
    assert [ckpt.read_info(p)["step"] for p in ckpt.list_checkpoints(run)] == [6, 8]
    assert ckpt.find_run_checkpoint(run).name == "step-0000006"  # best first, then latest


def test_a_half_deleted_checkpoint_never_breaks_the_run(prepared_shakespeare, tmp_path, capsys):
    """A kill inside an old prune left step-N folders with some files gone: they are skipped."""
    run = tmp_path / "run"
    config = tiny_config(
        prepared_shakespeare, "train.max_steps=6", "train.checkpoint_every=2", "train.eval_every=0"
    )
    train(config, run, show_progress=False)
    assert [p.name for p in ckpt.list_checkpoints(run)] == ["step-0000004", "step-0000006"]
    for file in (run / "checkpoints" / "step-0000006").iterdir():  # the newest, emptied
        file.unlink()
    (run / "checkpoints" / "step-0000004" / ckpt.INFO_FILE).write_text("{not json")
    assert ckpt.list_checkpoints(run) == []  # neither is a complete checkpoint any more
    assert main(["sample", "--checkpoint", str(run), "--prompt", "A", "--device", "cpu"]) == 1
    assert "holds no model" in capsys.readouterr().err
    # The next prune (the trainer's, after a save) removes the weightless folder and leaves the
    # damaged one with weights for its owner to look at.
    ckpt.prune_checkpoints(run, keep_last=2)
    assert not (run / "checkpoints" / "step-0000006").exists()
    assert (run / "checkpoints" / "step-0000004" / "model.safetensors").is_file()


def test_a_kill_inside_prune_leaves_only_a_hidden_folder(
    prepared_shakespeare, tmp_path, monkeypatch
):
    run = tmp_path / "run"
    config = tiny_config(
        prepared_shakespeare, "train.max_steps=4", "train.checkpoint_every=2", "train.eval_every=0"
    )
    train(config, run, show_progress=False)

    def killed(path, *args, **kwargs):
        raise KeyboardInterrupt  # the process dies after the rename, before the delete

    monkeypatch.setattr(ckpt.shutil, "rmtree", killed)
    with pytest.raises(KeyboardInterrupt):
        ckpt.prune_checkpoints(run, keep_last=1)
    monkeypatch.undo()
    names = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert names == [".deleting-step-0000002", "step-0000004"]
    assert [p.name for p in ckpt.list_checkpoints(run)] == ["step-0000004"]
    assert load_model(run)[0].config.n_layer == 2
    resumed = tiny_config(
        prepared_shakespeare, "train.max_steps=6", "train.checkpoint_every=2", "train.eval_every=0"
    )
    train(resumed, run, resume=True, show_progress=False)
    names = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert names == ["step-0000004", "step-0000006"]  # the leftover is gone, keep_last works


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda path: path.write_bytes(path.read_bytes()[:100]), "is damaged or not a gptlab"),
        (lambda path: path.write_bytes(b""), "is damaged or not a gptlab"),
        (lambda path: torch.save({"optimizer": {}}, path), "it lacks optimizer, ranks"),
    ],
)
def test_a_damaged_training_state_refuses_resume_in_one_line(
    prepared_shakespeare, tmp_path, capsys, damage, message
):
    run = tmp_path / "run"
    config = tiny_config(prepared_shakespeare, "train.max_steps=2", "train.eval_every=0")
    train(config, run, show_progress=False)
    damage(ckpt.latest_checkpoint(run) / ckpt.STATE_FILE)
    argv = ["train", "--out", str(run), "--resume", "--config", str(run / "config.toml")]
    assert main([*argv, "train.max_steps=4"]) == 1
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err


def test_a_crash_during_a_save_leaves_the_previous_checkpoint_loadable(
    prepared_shakespeare, tmp_path, monkeypatch
):
    run = tmp_path / "run"
    config = tiny_config(
        prepared_shakespeare, "train.max_steps=4", "train.checkpoint_every=2", "train.eval_every=0"
    )
    real_save = torch.save
    calls = []

    def crash_on_second_checkpoint(obj, path, *args, **kwargs):
        calls.append(path)
        if len(calls) == 2:
            # Half the checkpoint is on disk, then the writer dies.
            real_save(obj, path, *args, **kwargs)
            raise OSError("simulated crash in the middle of a checkpoint")
        return real_save(obj, path, *args, **kwargs)

    monkeypatch.setattr(ckpt.torch, "save", crash_on_second_checkpoint)
    with pytest.raises(OSError, match="simulated crash"):
        train(config, run, show_progress=False)
    # Only the step-2 checkpoint exists, and it loads; the broken step-4 one never appeared.
    assert [p.name for p in ckpt.list_checkpoints(run)] == ["step-0000002"]
    assert not any(p.name.startswith(".incomplete") for p in (run / "checkpoints").iterdir())
    model, _ = load_model(run)
    assert model.config.n_layer == 2
    # Even a leftover temp folder (as a SIGKILL mid-save would leave) is ignored and cleaned up.
    leftover = run / "checkpoints" / ".incomplete-step-0000004"
    leftover.mkdir()
    (leftover / "model.safetensors").write_bytes(b"half a file")
    assert ckpt.latest_checkpoint(run).name == "step-0000002"
    monkeypatch.setattr(ckpt.torch, "save", real_save)
    train(config, run, resume=True, show_progress=False)
    assert not leftover.exists()
    assert [p.name for p in ckpt.list_checkpoints(run)] == ["step-0000002", "step-0000004"]


def test_an_occupied_run_folder_is_refused_unless_resume_or_overwrite(
    prepared_shakespeare, tmp_path
):
    run = tmp_path / "run"
    config = tiny_config(prepared_shakespeare, "train.max_steps=2", "train.eval_every=0")
    train(config, run, show_progress=False)
    before = (run / "metrics.jsonl").read_text()

    different = tiny_config(prepared_shakespeare, "train.max_steps=2", "model.n_layer=3")
    with pytest.raises(
        GptlabError, match=r"already holds a different run \(model.n_layer \(2 -> 3\)"
    ):
        train(different, run, show_progress=False)
    with pytest.raises(GptlabError, match=r"already holds a run; continue it \(resume\)"):
        train(config, run, show_progress=False)
    with pytest.raises(
        GptlabError, match="cannot resume .* different model, data or optimizer: model.n_layer"
    ):
        train(different, run, resume=True, show_progress=False)
    other_optimizer = tiny_config(prepared_shakespeare, "train.max_steps=3", "train.optimizer=muon")
    config_before = (run / "config.toml").read_text()
    with pytest.raises(GptlabError, match="train.optimizer \\('adamw' -> 'muon'\\)"):
        train(other_optimizer, run, resume=True, show_progress=False)
    assert (run / "config.toml").read_text() == config_before
    with pytest.raises(GptlabError, match="contradict"):
        train(config, run, resume=True, overwrite=True, show_progress=False)
    assert (run / "metrics.jsonl").read_text() == before  # nothing was touched

    train(different, run, overwrite=True, show_progress=False)
    assert build_run_config(config_file=run / "config.toml").model.n_layer == 3
    assert len(read_metrics(run)) == 2

    stranger = tmp_path / "stranger"
    stranger.mkdir()
    (stranger / "notes.txt").write_text("mine")
    with pytest.raises(GptlabError, match="not empty and holds no gptlab run"):
        train(config, stranger, overwrite=True, show_progress=False)
    assert (stranger / "notes.txt").read_text() == "mine"


def test_a_folder_another_process_trains_in_is_refused_even_with_overwrite(
    prepared_shakespeare, tmp_path
):
    from gptlab.train.run_folder import lock_run_folder

    run = tmp_path / "run"
    config = tiny_config(prepared_shakespeare, "train.max_steps=2", "train.eval_every=0")
    train(config, run, show_progress=False)  # a finished run releases its folder...
    before = (run / "metrics.jsonl").read_text()
    other_process = lock_run_folder(run)  # ...and a running one holds it (flock is per open file)
    try:
        for options in ({"overwrite": True}, {"resume": True}):
            with pytest.raises(
                GptlabError, match="in use by another gptlab process \\(pid \\d+\\)"
            ):
                train(config, run, show_progress=False, **options)
        assert (run / "metrics.jsonl").read_text() == before  # nothing was cleared or written
    finally:
        other_process.close()
    # A lock file is all a crashed-before-writing run leaves: the folder still counts as empty.
    empty = tmp_path / "empty"
    empty.mkdir()
    lock_run_folder(empty).close()
    train(config, empty, show_progress=False)


def test_resuming_needs_a_checkpoint(prepared_shakespeare, tmp_path):
    config = tiny_config(prepared_shakespeare, "train.max_steps=2")
    with pytest.raises(GptlabError, match="nothing to resume"):
        train(config, tmp_path / "absent", resume=True, show_progress=False)
    run = tmp_path / "run"
    run.mkdir()
    config.save(run / "config.toml")  # a run that died before its first checkpoint
    with pytest.raises(GptlabError, match="no checkpoint to resume from"):
        train(config, run, resume=True, show_progress=False)


def test_a_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(
    prepared_shakespeare, tmp_path, monkeypatch
):
    from gptlab.model.gpt import GPT

    real_forward = GPT.forward
    calls = {"n": 0}

    def forward_that_diverges(self, idx, targets=None, **kwargs):
        logits, loss = real_forward(self, idx, targets, **kwargs)
        if targets is not None and self.training:
            calls["n"] += 1
            if calls["n"] > 6:  # 2 micro-steps per step: step 4 goes bad
                loss = loss * float("nan")
        return logits, loss

    monkeypatch.setattr(GPT, "forward", forward_that_diverges)
    run = tmp_path / "run"
    config = tiny_config(
        prepared_shakespeare, "train.max_steps=10", "train.checkpoint_every=2", "train.eval_every=0"
    )
    with pytest.raises(
        GptlabError, match=r"loss became nan at step 4, .*last good checkpoint is .*step-0000002"
    ):
        train(config, run, show_progress=False)
    assert [p.name for p in ckpt.list_checkpoints(run)] == ["step-0000002"]
    assert read_metrics(run)[-1]["train_loss"] == "nan"  # logged, as valid JSON
    model, _ = load_model(run)
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_non_finite_weights_are_never_saved(prepared_shakespeare, tmp_path):
    def poison_at_step_3(model, tokenizer):  # runs before that step's checkpoint
        poison_at_step_3.calls += 1
        if poison_at_step_3.calls == 3:
            with torch.no_grad():
                model.lm_head.weight[0, 0] = float("inf")
        return {}

    poison_at_step_3.calls = 0
    run = tmp_path / "run"
    config = tiny_config(
        prepared_shakespeare, "train.max_steps=6", "train.checkpoint_every=1", "train.eval_every=0"
    )
    extra = PeriodicEval(every=1, run=poison_at_step_3)
    with pytest.raises(GptlabError, match=r"weights became inf or nan at step 3, .*step-0000002"):
        train(config, run, extra_evals=[extra], show_progress=False)
    assert [p.name for p in ckpt.list_checkpoints(run)][-1] == "step-0000002"
    assert all(torch.isfinite(p).all() for p in load_model(run)[0].parameters())


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.sample_prompt=ROMEO€", "train.sample_prompt 'ROMEO€' cannot be encoded"),
        ("train.sample_prompt=", "train.sample_prompt is empty"),
        ("train.sample_temperature=-1", "train.sample_temperature must be >= 0"),
    ],
)
def test_sample_settings_are_checked_before_any_training(
    prepared_shakespeare, tmp_path, override, message
):
    config = tiny_config(prepared_shakespeare, "train.max_steps=3", validate=False)
    with pytest.raises(GptlabError, match=message):
        train(config.override([override]).validate(), tmp_path / "run", show_progress=False)
    assert not (tmp_path / "run" / "metrics.jsonl").exists()


def test_a_run_started_while_another_prepares_its_data_is_refused(
    prepared_shakespeare, tmp_path, monkeypatch
):
    """A second `gptlab train` into the same --out while the first prepares its data: the folder
    is locked from the moment it is checked, so the second is refused and the first goes on."""
    from gptlab.train import trainer

    run = tmp_path / "run"
    config = tiny_config(prepared_shakespeare, "train.max_steps=2", "train.eval_every=0")
    real_open = trainer.TrainingData.open
    refusals = []

    def open_while_another_run_starts(*args, **kwargs):
        if not refusals:
            with pytest.raises(GptlabError, match="in use by another gptlab process") as caught:
                train(config, run, show_progress=False)  # the other run, refused at once
            refusals.append(str(caught.value))
        return real_open(*args, **kwargs)

    monkeypatch.setattr(trainer.TrainingData, "open", open_while_another_run_starts)
    train(config, run, show_progress=False)
    assert len(refusals) == 1
    assert [r["step"] for r in read_metrics(run)] == [1, 2]  # the first run's, whole


def test_a_torn_last_metrics_line_is_dropped_by_plot_and_resume(prepared_shakespeare, tmp_path):
    run = tmp_path / "run"
    config = tiny_config(
        prepared_shakespeare, "train.max_steps=2", "train.checkpoint_every=2", "train.eval_every=0"
    )
    train(config, run, show_progress=False)
    with open(run / "metrics.jsonl", "a", encoding="utf-8") as f:
        f.write('{"step": 3, "train_lo')  # the disk filled in the middle of a line
    assert [r["step"] for r in read_run_metrics(run)] == [1, 2]
    assert main(["plot", str(run), "--out", str(tmp_path / "loss.png")]) == 0
    longer = tiny_config(
        prepared_shakespeare, "train.max_steps=3", "train.checkpoint_every=2", "train.eval_every=0"
    )
    train(longer, run, resume=True, show_progress=False)
    assert [r["step"] for r in read_run_metrics(run)] == [1, 2, 3]
    (run / "metrics.jsonl").write_text('{"step": 1}\n{broken\n{"step": 3}\n')
    with pytest.raises(GptlabError, match="metrics.jsonl line 2: not valid JSON"):
        read_run_metrics(run)  # damage inside the file is not a torn tail: said, not hidden


def test_samples_are_one_per_step_in_order_after_a_resume(prepared_shakespeare, tmp_path):
    import re
    import shutil

    run = tmp_path / "run"
    overrides = ["train.max_steps=4", "train.checkpoint_every=2", "train.eval_every=0"]
    config = tiny_config(prepared_shakespeare, *overrides, "train.sample_every=1")
    train(config, run, show_progress=False)
    shutil.rmtree(run / "checkpoints" / "step-0000004")  # as if killed before its last save
    train(config, run, resume=True, show_progress=False)  # steps 3 and 4 run (and sample) again
    steps = re.findall(r"^=== step (\d+) ===$", (run / "samples.txt").read_text(), re.M)
    assert steps == ["1", "2", "3", "4"]


def test_tokens_per_step_must_split_into_micro_batches(prepared_shakespeare, tmp_path):
    # Caught when the config is built, before any run folder or data is touched.
    with pytest.raises(
        GptlabError, match=r"multiple of micro_batch_size x block_size x processes \(256\).*=512"
    ):
        tiny_config(prepared_shakespeare, "train.tokens_per_step=500", "train.max_steps=1")
    assert not (tmp_path / "run").exists()


def test_cli_train_and_plot(prepared_shakespeare, tmp_path, capsys):
    args = [f"{o}" for o in TINY] + [
        f"data.prepared_dir={prepared_shakespeare}",
        "train.max_steps=2",
        "train.eval_every=1",
    ]
    assert main(["train", "--out", str(tmp_path / "a"), *args]) == 0
    assert main(["train", "--out", str(tmp_path / "b"), *args, "train.lr=3e-3"]) == 0
    assert main(["train", "--out", str(tmp_path / "b"), *args]) == 1  # refused: holds a run
    assert "already holds" in capsys.readouterr().err
    assert main(["train", "train.lrr=1"]) == 1
    assert "did you mean 'train.lr'" in capsys.readouterr().err
    assert main(["train", "--list-presets"]) == 0
    assert {"shakespeare-char", "small-bpe", "gpt2"} <= set(capsys.readouterr().out.split())
    assert main(["train", "--preset", "gpt2", "--print-config", "train.lr=0.01"]) == 0
    printed = capsys.readouterr().out
    assert "lr = 0.01" in printed and "n_embd = 768" in printed

    out = tmp_path / "both.png"
    assert (
        main(
            [
                "plot",
                str(tmp_path / "a"),
                str(tmp_path / "b"),
                "--out",
                str(out),
                "--labels",
                "base",
                "lr3e-3",
            ]
        )
        == 0
    )
    assert out.read_bytes()[:4] == b"\x89PNG"
    assert main(["plot", str(tmp_path / "missing")]) == 1
    assert "does not exist" in capsys.readouterr().err

    # --resume without a config uses the run's own config; a larger budget continues it.
    assert main(["train", "--out", str(tmp_path / "a"), "--resume", "train.max_steps=3"]) == 0
    assert [r["step"] for r in read_metrics(tmp_path / "a")] == [1, 2, 3]


# -- exact resume after SIGKILL, and DDP equivalence (both run real subprocesses) -----------------

KILL_AFTER_STEP = """
import os, signal, sys
from gptlab.train.config import build_run_config
from gptlab.train import train

def kill_after(record):
    if record["step"] == int(sys.argv[3]):
        os.kill(os.getpid(), signal.SIGKILL)  # no cleanup, no flush beyond what was written

train(build_run_config(config_file=sys.argv[1]), sys.argv[2], on_step=kill_after, show_progress=False)
"""


def run_python(args, **kwargs):
    import subprocess
    import sys

    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=300, **kwargs
    )


# The speedrun ladder's settings (issue 28) together: a weight average whose state must survive
# the kill, a batch ramp still ramping at the checkpoint, shifted epochs, the cooldown schedule and
# Polar Express's Muon.
SPEEDRUN_SETTINGS = [
    "train.weight_average=ema",
    "train.weight_average_decay=0.7",
    "train.batch_ramp_steps=6",
    "train.batch_ramp_start=128",
    "data.loader_mode=shifted",
    "train.cooldown_fraction=0.5",
    "train.muon_coefficients=polar_express",
    "train.muon_ns_steps=4",
]


@pytest.mark.parametrize(
    "optimizer, settings",
    [("adamw", []), ("muon", []), ("muon", SPEEDRUN_SETTINGS)],
    ids=["adamw", "muon", "muon-speedrun-settings"],
)
def test_a_run_killed_with_sigkill_resumes_exactly(
    prepared_shakespeare, tmp_path, optimizer, settings
):
    import signal

    # Dropout draws from torch's RNG and the random loader from its own: both must be restored,
    # and so must the optimizer's state (Muon's momentum buffers as well as AdamW's moments).
    config = tiny_config(
        prepared_shakespeare,
        f"train.optimizer={optimizer}",
        "model.dropout=0.1",
        "train.max_steps=10",
        "train.checkpoint_every=4",
        "train.eval_every=7",
        *settings,
    )
    reference = tmp_path / "reference"
    train(config, reference, show_progress=False)

    config_file = tmp_path / "config.toml"
    config.save(config_file)
    killed = tmp_path / "killed"
    process = run_python(["-c", KILL_AFTER_STEP, str(config_file), str(killed), "6"])
    assert process.returncode == -signal.SIGKILL, process.stderr
    assert [r["step"] for r in read_metrics(killed)] == [1, 2, 3, 4, 5, 6]
    assert ckpt.latest_checkpoint(killed).name == "step-0000004"

    train(config, killed, resume=True, show_progress=False)
    expected, resumed = read_metrics(reference), read_metrics(killed)
    # Steps 5 and 6 ran twice (before the kill and after the resume) but are logged once.
    assert [r["step"] for r in resumed] == list(range(1, 11))
    for want, got in zip(expected, resumed, strict=True):
        assert got["train_loss"] == pytest.approx(want["train_loss"], abs=1e-6), got["step"]
        assert got["lr"] == want["lr"]
        assert got["tokens"] == want["tokens"]
        assert got.get("val_loss", 0.0) == pytest.approx(want.get("val_loss", 0.0), abs=1e-6)
        # with a weight average: the raw weights' score beside the average's, at the end
        assert got.get("val_loss_raw", 0.0) == pytest.approx(
            want.get("val_loss_raw", 0.0), abs=1e-6
        )
    if settings:
        assert "val_loss_raw" in resumed[-1] and resumed[-1]["tokens"] < 10 * 512  # it ramped
        final = {
            name: load_file(str(ckpt.latest_checkpoint(folder) / "model.safetensors"))
            for name, folder in (("reference", reference), ("killed", killed))
        }
        for key, tensor in final["reference"].items():
            torch.testing.assert_close(final["killed"][key], tensor, atol=1e-6, rtol=0)


def test_ddp_on_two_processes_matches_one_process_with_twice_the_accumulation(
    prepared_shakespeare, tmp_path
):
    # The same config on 1 and 2 processes: tokens_per_step = micro_batch 4 x block 32 x 2, so one
    # process accumulates 2 micro-steps where two processes take one each. The sequential loader
    # hands rank r every 2nd window of the shared order, so a step sees the same windows either way.
    config = tiny_config(
        prepared_shakespeare,
        "train.micro_batch_size=4",
        "train.tokens_per_step=256",
        "data.loader_mode=sequential",
        "train.max_steps=6",
        "train.eval_every=3",
    )
    single = tmp_path / "single"
    train(config, single, show_progress=False)

    config_file = tmp_path / "config.toml"
    config.save(config_file)
    ddp = tmp_path / "ddp"
    command = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    process = run_python(
        [*command, "-m", "gptlab", "train", "--config", str(config_file), "--out", str(ddp)]
    )
    assert process.returncode == 0, process.stderr[-3000:]
    assert "x 2 processes" in process.stdout

    expected, got = read_metrics(single), read_metrics(ddp)
    assert [r["step"] for r in got] == [1, 2, 3, 4, 5, 6]
    for want, have in zip(expected, got, strict=True):
        assert have["tokens"] == want["tokens"]
        assert have["train_loss"] == pytest.approx(want["train_loss"], abs=1e-5), have["step"]
        assert have["grad_norm"] == pytest.approx(want["grad_norm"], rel=1e-4)
        assert have.get("val_loss", 0.0) == pytest.approx(want.get("val_loss", 0.0), abs=1e-5)
    # Only rank 0 wrote: one line per step, one set of checkpoints.
    assert len(ckpt.list_checkpoints(ddp)) >= 1


@pytest.mark.parametrize("logger", ["tensorboard", "wandb"])
def test_a_missing_optional_logger_is_reported_before_anything_is_written(
    prepared_shakespeare, tmp_path, logger
):
    import importlib.util

    if importlib.util.find_spec(logger) is not None:
        pytest.skip(f"{logger} is installed here")
    config = tiny_config(prepared_shakespeare, "train.max_steps=1", f"train.{logger}=true")
    with pytest.raises(GptlabError, match=f"optional package '{logger}'.*pip install"):
        train(config, tmp_path / "run", show_progress=False)
    assert not (tmp_path / "run").exists()


def test_a_long_run_rehashes_its_shards_and_stops_on_an_edited_one(
    prepared_shakespeare, tmp_path, capsys
):
    from gptlab.train.training_data import wants_shard_check

    assert not wants_shard_check(tiny_config(prepared_shakespeare, "train.max_steps=6"))
    assert wants_shard_check(tiny_config(prepared_shakespeare, "train.max_steps=2000000"))
    assert wants_shard_check(tiny_config(prepared_shakespeare, "train.max_seconds=7200"))
    assert not wants_shard_check(
        tiny_config(prepared_shakespeare, "train.max_seconds=7200", "data.verify_shards=never")
    )
    edited = tmp_path / "edited"
    shutil.copytree(prepared_shakespeare, edited)
    shard = edited / "train_000000.bin"
    data = bytearray(shard.read_bytes())
    data[0] ^= 1
    shard.write_bytes(bytes(data))
    argv = ["train", "--out", str(tmp_path / "run"), *TINY, f"data.prepared_dir={edited}"]
    assert main([*argv, "train.max_steps=2", "data.verify_shards=always"]) == 1
    # The last line of stderr is the error (the verify progress bar comes before it).
    assert "does not match the sha256" in capsys.readouterr().err.strip().splitlines()[-1]
    assert not (tmp_path / "run" / "checkpoints").exists()
    assert main([*argv, "train.max_steps=2", "data.verify_shards=sometimes"]) == 1
    assert "data.verify_shards must be one of auto, always, never" in capsys.readouterr().err


def torchrun_train(config, config_file, out, *extra):
    config.save(config_file)
    command = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    process = run_python(
        [*command, "-m", "gptlab", "train", "--config", str(config_file), "--out", str(out), *extra]
    )
    assert process.returncode == 0, process.stderr[-3000:]
    return process


@pytest.mark.slow
def test_fsdp_on_two_processes_matches_ddp_resumes_and_saves_a_one_process_checkpoint(
    prepared_shakespeare, tmp_path
):
    # FSDP2 runs on gloo with CPU processes in torch 2.13, so this needs no GPU.
    settings = [
        "train.micro_batch_size=4",
        "train.tokens_per_step=256",
        "data.loader_mode=sequential",
        "train.eval_every=3",
        "train.checkpoint_every=3",
        "train.final_eval_tokens=2048",  # = eval_tokens: step 3 ends one run, not the other
    ]
    ddp = tmp_path / "ddp"
    torchrun_train(
        tiny_config(prepared_shakespeare, *settings, "train.max_steps=6"),
        tmp_path / "ddp.toml",
        ddp,
    )
    # FSDP: 3 steps, then a resume on the same 2 processes for 3 more.
    fsdp = tmp_path / "fsdp"
    fsdp_settings = [*settings, "train.distributed=fsdp"]
    first = tiny_config(prepared_shakespeare, *fsdp_settings, "train.max_steps=3")
    torchrun_train(first, tmp_path / "fsdp.toml", fsdp)
    whole = tiny_config(prepared_shakespeare, *fsdp_settings, "train.max_steps=6")
    resumed = torchrun_train(whole, tmp_path / "fsdp.toml", fsdp, "--resume")
    assert "resuming at step 3" in resumed.stdout

    expected, got = read_metrics(ddp), read_metrics(fsdp)
    assert [r["step"] for r in got] == [1, 2, 3, 4, 5, 6]
    for want, have in zip(expected, got, strict=True):
        # Reduce-scatter and all-reduce sum the same gradients in another order: ~1e-7 apart.
        assert have["train_loss"] == pytest.approx(want["train_loss"], abs=1e-5), have["step"]
        assert have["grad_norm"] == pytest.approx(want["grad_norm"], rel=1e-4)
        assert have.get("val_loss", 0.0) == pytest.approx(want.get("val_loss", 0.0), abs=1e-5)
    # The gathered checkpoint is an ordinary model folder: it loads in this one process and
    # holds the weights DDP reached.
    fsdp_model, ddp_model = (load_model(ckpt.latest_checkpoint(run))[0] for run in (fsdp, ddp))
    for (name, a), (_, b) in zip(
        fsdp_model.state_dict().items(), ddp_model.state_dict().items(), strict=True
    ):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4, msg=name)


def test_a_resume_with_another_distributed_strategy_is_refused():
    from gptlab.train.resume import check_resumable

    state = {"world_size": 2, "optimizer": {"state": {}, "param_groups": []}, "distributed": "fsdp"}
    with pytest.raises(GptlabError, match="resume with train.distributed=fsdp"):
        check_resumable(state, "ckpt", world_size=2, optimizer="adamw", distributed="ddp")
    # Checkpoints written before train.distributed existed came from DDP.
    del state["distributed"]
    check_resumable(state, "ckpt", world_size=2, optimizer="adamw", distributed="ddp")
