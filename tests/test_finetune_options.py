"""Fine-tuning options: task defaults -> TOML -> flags -> key=value, typed, with errors that name
the setting (as written in a file or an override), never a command-line flag."""

import pytest

from gptlab.cli import main
from gptlab.errors import GptlabError
from gptlab.finetune.options import ClassifyOptions, InstructOptions, load_options
from gptlab.model.lora import LoRAConfig
from gptlab.overrides import read_toml


@pytest.fixture
def required(tmp_path):
    data = tmp_path / "data.tsv"
    data.write_text("ham\thi\nspam\tbuy\n", encoding="utf-8")
    return {"data": str(data), "init": str(tmp_path), "out": str(tmp_path / "out")}


def test_layers_apply_in_order_and_task_defaults_differ(tmp_path, required):
    assert (ClassifyOptions().epochs, ClassifyOptions().train) == (5, "last-1")
    assert (InstructOptions().epochs, InstructOptions().val_fraction) == (2, 0.05)
    config = tmp_path / "ft.toml"
    config.write_text("epochs = 7\nlr = 1e-4\nbatch_size = 4\nlora_rank = 4\n", encoding="utf-8")
    options = load_options(
        ClassifyOptions, config, {**required, "batch_size": 16}, ["lr=3e-4", "lora_alpha=none"]
    )
    assert (options.epochs, options.lr, options.batch_size) == (7, 3e-4, 16)
    assert options.lora() == LoRAConfig(rank=4, alpha=8.0, dropout=0.0)  # alpha: 2 x rank
    assert ClassifyOptions(**required).lora() is None


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["epochs=0"], "epochs must be >= 1, got 0"),
        (["epoch=2"], "unknown setting 'epoch'; did you mean 'epochs'?"),
        (["lr=fast"], "lr must be a number, got 'fast'"),
        (["lr"], "is not of the form key=value"),
        (["merge=true"], "merge folds a LoRA adapter into the model; it needs lora_rank"),
        (["lora_rank=0"], "LoRA rank must be a positive integer"),
        (["val_fraction=0.6", "test_fraction=0.5"], "must leave examples to train on"),
        (["balance=oversample"], "balance must be one of none, downsample, weight"),
        (["max_length=1"], "max_length must be >= 2"),
    ],
)
def test_bad_settings_fail_naming_the_setting(required, overrides, message):
    with pytest.raises(GptlabError, match=message) as caught:
        load_options(ClassifyOptions, None, required, overrides)
    assert "--" not in str(caught.value)


def test_task_specific_checks(required):
    with pytest.raises(GptlabError, match="train=head has no meaning for instruction tuning"):
        load_options(InstructOptions, None, required, ["train=head"])
    with pytest.raises(GptlabError, match="data is required"):
        load_options(ClassifyOptions, None, {"init": required["init"], "out": "x"})


def test_a_bad_toml_file_is_one_line(tmp_path, required):
    config = tmp_path / "ft.toml"
    config.write_text("epochs = 'three'\n", encoding="utf-8")
    with pytest.raises(GptlabError, match=r"ft.toml: epochs must be an integer, got 'three'"):
        load_options(ClassifyOptions, config, required)
    config.write_text("epochs = [\n", encoding="utf-8")
    with pytest.raises(GptlabError, match="is not valid TOML"):
        load_options(ClassifyOptions, config, required)


def test_cli_print_options_is_a_config_file_the_cli_reads_back(tmp_path, capsys, required):
    argv = ["finetune", "classify", "--epochs", "9", "--print-options", "lora_rank=2"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    path = tmp_path / "printed.toml"
    path.write_text(printed, encoding="utf-8")
    table = read_toml(path)
    assert (table["epochs"], table["lora_rank"], table["train"]) == (9, 2, "last-1")
    # read back: the file's values arrive, the required ones come from flags
    argv = ["finetune", "classify", "--config", str(path), "--data", required["data"]]
    argv += ["--init", required["init"], "--print-options"]
    assert main(argv) == 0
    assert "epochs = 9" in capsys.readouterr().out


def test_cli_bad_override_is_one_line_and_exit_1(capsys, required):
    argv = ["finetune", "instruct", "--data", required["data"], "--init", required["init"]]
    assert main([*argv, "epohcs=1"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "did you mean 'epochs'?" in err


def test_cli_out_data_and_init_from_the_config_file_are_kept(tmp_path, capsys, required):
    config = tmp_path / "ft.toml"
    config.write_text(
        f'data = "{required["data"]}"\ninit = "{required["init"]}"\nout = "runs/spam"\n',
        encoding="utf-8",
    )
    assert main(["finetune", "classify", "--config", str(config), "--print-options"]) == 0
    printed = capsys.readouterr().out
    assert 'out = "runs/spam"' in printed and f'data = "{required["data"]}"' in printed


def test_print_options_checks_every_value_too(capsys):
    assert main(["finetune", "classify", "--print-options", "--batch-size", "0"]) == 1
    assert "batch_size must be >= 1, got 0" in capsys.readouterr().err
