"""`gptlab train` warns before training when the data makes its numbers mean something else."""

from gptlab.cli import main
from gptlab.train.data_checks import MANY_PASSES, training_data_warnings


def splits(train: int, val: int) -> dict:
    return {"train": {"tokens": train, "documents": 1}, "val": {"tokens": val, "documents": 1}}


def test_passes_are_steps_times_tokens_over_the_train_split():
    # 100 steps x 1,000 tokens over 10,000 training tokens = 10 passes: not yet "many".
    assert training_data_warnings(splits(10_000, 1_000), 1_000, 100) == []
    (message,) = training_data_warnings(splits(10_000, 1_000), 1_000, 101)
    assert "10,000 training tokens 10 times over" in message and MANY_PASSES == 10
    (message,) = training_data_warnings(splits(1_000, 100), 1_000, 500)
    assert "500 times over" in message
    assert training_data_warnings(splits(1_000, 100), 1_000, None) == []  # a time budget


def test_a_larger_val_split_and_an_empty_split_are_said():
    (message,) = training_data_warnings(splits(1_000, 1_001), 10, 1)
    assert "val split (1,001 tokens) is larger than the train split (1,000)" in message
    (message,) = training_data_warnings(splits(5_000, 0), 10, 1)
    assert "whole corpus (5,000 tokens) is in the train split and the val split is empty" in message
    (message,) = training_data_warnings(splits(0, 5_000), 10, 1)
    assert "in the val split and the train split is empty" in message


def test_train_prints_the_warning_on_stderr(tmp_path, shared_data, capsys):
    text = tmp_path / "head.txt"
    text.write_text(
        (shared_data / "tinyshakespeare" / "input.txt").read_text(encoding="utf-8")[:20_000]
    )
    argv = ["train", "--out", str(tmp_path / "run"), f"data.source={text}", "data.tokenizer=char"]
    argv += ["model.n_layer=1", "model.n_head=2", "model.n_embd=16", "model.block_size=16"]
    argv += ["train.tokens_per_step=256", "train.micro_batch_size=16", "train.max_steps=800"]
    argv += ["train.max_seconds=0.5", "train.eval_every=0", "train.sample_tokens=5"]
    assert main(argv) == 0
    err = capsys.readouterr().err
    # 800 x 256 tokens over the 18,000 training characters: 11 passes.
    assert (
        "gptlab train: warning: 800 steps of 256 tokens read the 18,000 training tokens 11" in err
    )
