"""Model folders: exact save/load round-trips, and one clear error for broken folders."""

import json

import pytest
import torch

from gptlab.checkpoints.load import load_model
from gptlab.checkpoints.model_folder import CONFIG_FILE, WEIGHTS_FILE, save_model
from gptlab.cli import main
from gptlab.errors import GptlabError
from gptlab.model import GPT
from gptlab.model.config import ModelConfig
from gptlab.tokenizers.base import CharTokenizer, GPT2Tokenizer


def trained_looking_model(config: ModelConfig) -> GPT:
    """A model whose every parameter is random (no zero biases or unit LayerNorms left from init)."""
    torch.manual_seed(0)
    model = GPT(config)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p))
    return model


def assert_same_weights(a: GPT, b: GPT) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for name in sa:
        assert torch.equal(sa[name], sb[name]), name


@pytest.mark.parametrize("padded", [False, True])
def test_round_trip_with_char_tokenizer(tmp_path, shared_data, padded):
    text = (shared_data / "tinyshakespeare" / "input.txt").read_text(encoding="utf-8")[:5000]
    tokenizer = CharTokenizer.from_text(text)
    config = ModelConfig(
        vocab_size=tokenizer.vocab_size, block_size=16, n_layer=2, n_head=2, n_embd=16
    )
    if padded:
        config = config.replace(pad_vocab_multiple=64)
    model = trained_looking_model(config)
    save_model(tmp_path, model, tokenizer)
    loaded, loaded_tokenizer = load_model(tmp_path)
    assert loaded.config == model.config
    assert_same_weights(loaded, model)
    assert loaded.lm_head.weight is loaded.wte.weight  # tying survives the round trip
    assert loaded_tokenizer.to_dict() == tokenizer.to_dict()
    assert loaded_tokenizer.encode(text[:200]) == tokenizer.encode(text[:200])


def test_round_trip_with_gpt2_tokenizer(tmp_path, tiny_config):
    config = tiny_config.replace(vocab_size=50257)
    model = trained_looking_model(config)
    save_model(tmp_path, model, GPT2Tokenizer())
    loaded, tokenizer = load_model(tmp_path)
    assert_same_weights(loaded, model)
    assert isinstance(tokenizer, GPT2Tokenizer)
    idx = torch.randint(0, 50257, (1, 8))
    assert torch.equal(loaded.eval()(idx)[0], model.eval()(idx)[0])


def test_save_without_tokenizer(tmp_path, tiny_config):
    save_model(tmp_path, GPT(tiny_config))
    _, tokenizer = load_model(tmp_path)
    assert tokenizer is None


@pytest.fixture
def model_dir(tmp_path, tiny_config):
    save_model(
        tmp_path / "model",
        GPT(tiny_config),
        CharTokenizer([chr(32 + i) for i in range(tiny_config.vocab_size)]),
    )
    return tmp_path / "model"


def test_missing_config(model_dir):
    (model_dir / CONFIG_FILE).unlink()
    with pytest.raises(GptlabError, match=f"no {CONFIG_FILE}"):
        load_model(model_dir)


def test_missing_weights(model_dir):
    (model_dir / WEIGHTS_FILE).unlink()
    with pytest.raises(GptlabError, match=f"holds no model: expected {WEIGHTS_FILE}"):
        load_model(model_dir)


def test_missing_folder(tmp_path):
    with pytest.raises(GptlabError, match="does not exist"):
        load_model(tmp_path / "nowhere")


def test_mismatched_shapes(model_dir):
    config = json.loads((model_dir / CONFIG_FILE).read_text())
    config["n_embd"] = 64  # the weights were saved with 32
    (model_dir / CONFIG_FILE).write_text(json.dumps(config))
    with pytest.raises(
        GptlabError, match=r"wte.weight has shape \(97, 32\), the config needs \(97, 64\)"
    ):
        load_model(model_dir)


def test_missing_layers(model_dir):
    config = json.loads((model_dir / CONFIG_FILE).read_text())
    config["n_layer"] = 3  # the weights have 2 blocks
    (model_dir / CONFIG_FILE).write_text(json.dumps(config))
    with pytest.raises(GptlabError, match="missing blocks.2"):
        load_model(model_dir)


def test_corrupt_weights_and_config(model_dir):
    (model_dir / WEIGHTS_FILE).write_bytes(b"not safetensors")
    with pytest.raises(GptlabError, match="could not be read as safetensors"):
        load_model(model_dir)
    (model_dir / CONFIG_FILE).write_text("{not json")
    with pytest.raises(GptlabError, match="(not a valid model config|is not valid JSON)"):
        load_model(model_dir)


def test_tokenizer_vocab_mismatch(model_dir):
    (model_dir / "tokenizer.json").write_text(json.dumps({"type": "char", "chars": list("abc")}))
    with pytest.raises(GptlabError, match="tokenizer has 3 tokens but the model expects 97"):
        load_model(model_dir)


@pytest.mark.parametrize(
    "breakage, message",
    [
        ("no-weights", "holds no model"),
        ("no-config", "has no config.json"),
        ("wrong-shape", "do not match the model config"),
    ],
)
def test_cli_reports_one_line_error(model_dir, tmp_path, capsys, breakage, message):
    if breakage == "no-weights":
        (model_dir / WEIGHTS_FILE).unlink()
    elif breakage == "no-config":
        (model_dir / CONFIG_FILE).unlink()
    else:
        config = json.loads((model_dir / CONFIG_FILE).read_text())
        (model_dir / CONFIG_FILE).write_text(json.dumps({**config, "n_embd": 64}))
    code = main(["export", "--checkpoint", str(model_dir), "--out", str(tmp_path / "out")])
    assert code != 0
    err = capsys.readouterr().err
    assert err.startswith("gptlab: error: ") and message in err
    assert err.count("\n") == 1  # one line, no traceback
