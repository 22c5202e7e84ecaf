"""Run configuration: presets, TOML round-trips, typed dotted overrides and their errors."""

import dataclasses

import pytest

from gptlab.errors import GptlabError
from gptlab.model.config import model_preset
from gptlab.model.params import count_parameters
from gptlab.overrides import read_toml
from gptlab.presets import load_preset, preset_names
from gptlab.train.config import DEFAULT_PRESET, RunConfig, build_run_config


def test_every_preset_builds_and_the_default_is_the_tinyshakespeare_char_run():
    assert {"shakespeare-char", "small-bpe", "gpt2"} <= set(preset_names())
    for name in preset_names():
        build_run_config(preset=name)  # validates
    default = build_run_config()
    assert DEFAULT_PRESET == "shakespeare-char"
    assert (default.data.source, default.data.tokenizer) == ("tinyshakespeare", "char")
    assert default.model.n_layer == load_preset("shakespeare-char")["model"]["n_layer"]
    gpt2 = build_run_config(preset="gpt2")
    assert (gpt2.model.n_layer, gpt2.model.n_embd, gpt2.model.block_size) == (12, 768, 1024)
    assert gpt2.train.tokens_per_step == 524288
    small = build_run_config(preset="small-bpe")
    assert (
        small.model.n_layer,
        small.model.n_head,
        small.model.n_embd,
        small.model.block_size,
    ) == (6, 6, 384, 256)


def test_overrides_are_parsed_by_the_declared_type():
    config = build_run_config(
        overrides=[
            "train.lr=3e-3",  # float
            "model.n_layer=6",  # int
            "train.tokens_per_step=1.024e4",  # a whole number written as a float is still an int
            "train.compile=true",  # bool
            "data.source=my corpus.txt",  # str, kept verbatim
            "train.max_steps=none",  # Optional -> unset
            "train.max_seconds=12",  # Optional[float] from an int literal
            "train.threads=2",  # a str field: "auto", "none" or a count
            "train.sample_prompt= To be",  # strings keep their spaces
            "train.beta2= 0.95 ",  # numbers may carry spaces
        ]
    )
    assert config.train.lr == 3e-3 and isinstance(config.train.lr, float)
    assert config.model.n_layer == 6 and isinstance(config.model.n_layer, int)
    assert config.train.tokens_per_step == 10240 and isinstance(config.train.tokens_per_step, int)
    assert config.train.compile is True
    assert config.data.source == "my corpus.txt"
    assert config.train.max_steps is None
    assert config.train.max_seconds == 12.0 and isinstance(config.train.max_seconds, float)
    assert config.train.threads == "2"
    assert config.train.sample_prompt == " To be"
    assert config.train.beta2 == 0.95


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.lrr=1e-3", "did you mean 'train.lr'"),
        ("trian.n_layer=2", "did you mean 'model.n_layer'"),
        ("model.n_layers=2", "did you mean 'model.n_layer'"),
        ("train.lr=fast", "train.lr must be a number"),
        ("model.n_layer=2.5", "model.n_layer must be an integer"),
        ("model.n_layer=true", "model.n_layer must be an integer"),
        ("train.compile=maybe", "train.compile must be true or false"),
        ("model.n_layer=none", "model.n_layer must be an integer"),  # not optional
        ("train.lr", "section.key=value"),
        ("model.n_head=5", "divisible"),  # cross-field validation after all layers
        ("train.max_steps=0", "train.max_steps must be >= 1"),
        ("train.distributed=zero3", "train.distributed must be one of ddp, fsdp"),
    ],
)
def test_bad_overrides_fail_with_a_useful_message(override, message):
    with pytest.raises(GptlabError, match=message.replace("(", r"\(").replace(")", r"\)")):
        build_run_config(overrides=[override])


def test_muon_with_fsdp_is_refused_before_anything_runs():
    with pytest.raises(GptlabError, match="use train.optimizer=adamw with train.distributed=fsdp"):
        build_run_config(preset="speedrun", overrides=["train.distributed=fsdp"])


def test_unsetting_both_budgets_is_refused():
    with pytest.raises(GptlabError, match="set a budget"):
        build_run_config(overrides=["train.max_steps=none", "train.max_seconds=none"])


def test_toml_round_trip_is_exact(tmp_path):
    config = build_run_config(
        preset="small-bpe",
        overrides=[
            'train.sample_prompt=He said "hi"\tand\\left',
            "train.max_steps=none",
            "train.max_seconds=30.5",
            "train.min_lr=1e-05",
        ],
    )
    path = tmp_path / "config.toml"
    config.save(path)
    again = build_run_config(config_file=path)
    assert again == config
    assert again.train.sample_prompt == 'He said "hi"\tand\\left'
    assert read_toml(path)["train"]["max_steps"] == "none"  # TOML has no null


def test_config_file_layers_on_its_preset_then_overrides_win(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text(
        'preset = "small-bpe"\n[model]\nn_layer = 3\n[train]\nlr = 5e-4\n', encoding="utf-8"
    )
    config = build_run_config(config_file=path, overrides=["train.lr=1e-4"])
    assert config.model.n_layer == 3  # from the file
    assert config.model.n_embd == 384  # from the file's preset
    assert config.train.lr == 1e-4  # the override wins


def test_config_file_errors_name_the_file_and_key(tmp_path):
    bad_key = tmp_path / "bad.toml"
    bad_key.write_text("[train]\nlearning_rate = 1e-3\n", encoding="utf-8")
    with pytest.raises(GptlabError, match=r"bad.toml: unknown config key 'train.learning_rate'"):
        build_run_config(config_file=bad_key)
    bad_type = tmp_path / "type.toml"
    bad_type.write_text('[model]\nn_layer = "six"\n', encoding="utf-8")
    with pytest.raises(GptlabError, match="model.n_layer must be an integer"):
        build_run_config(config_file=bad_type)
    bad_section = tmp_path / "section.toml"
    bad_section.write_text("[trainer]\nlr = 1e-3\n", encoding="utf-8")
    with pytest.raises(GptlabError, match=r"did you mean \[train\]"):
        build_run_config(config_file=bad_section)
    not_toml = tmp_path / "broken.toml"
    not_toml.write_text("[train\n", encoding="utf-8")
    with pytest.raises(GptlabError, match="not valid TOML"):
        build_run_config(config_file=not_toml)
    with pytest.raises(GptlabError, match="does not exist"):
        build_run_config(config_file=tmp_path / "missing.toml")
    with pytest.raises(GptlabError, match="unknown preset 'tiny'"):
        build_run_config(preset="tiny")


def test_repository_config_examples_load():
    from pathlib import Path

    configs = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.toml"))
    assert configs
    for path in configs:
        assert isinstance(build_run_config(config_file=path), RunConfig)


def test_a_model_preset_is_the_model_of_the_run_preset_of_the_same_name():
    for name in preset_names():
        assert model_preset(name) == build_run_config(preset=name).model, name


@pytest.mark.parametrize(
    "name, shape, parameters",
    [  # OpenAI's released GPT-2 sizes, parameters counted with the head tied to wte
        ("gpt2", (12, 12, 768), 124_439_808),
        ("gpt2-medium", (24, 16, 1024), 354_823_168),
        ("gpt2-large", (36, 20, 1280), 774_030_080),
        ("gpt2-xl", (48, 25, 1600), 1_557_611_200),
    ],
)
def test_the_gpt2_family_presets_have_openais_shapes(name, shape, parameters):
    config = model_preset(name)
    assert (config.n_layer, config.n_head, config.n_embd) == shape
    assert (config.vocab_size, config.block_size) == (50257, 1024)
    assert count_parameters(dataclasses.replace(config, pad_vocab_multiple=1)).total_with_tying == (
        parameters
    )
