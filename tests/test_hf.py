"""Hugging Face GPT-2 interop, checked against transformers' own GPT2LMHeadModel (random init, no download)."""

import json

import pytest
import torch

from gptlab.checkpoints.hf_hub import load_hf_model
from gptlab.checkpoints.model_folder import save_model
from gptlab.cli import main
from gptlab.errors import GptlabError
from gptlab.model import GPT
from gptlab.model.config import ModelConfig
from gptlab.model.hf import (
    export_hf,
    from_hf_model,
    from_hf_state_dict,
    hf_config_from_model_config,
    model_config_from_hf_config,
    to_hf_model,
)
from gptlab.tokenizers.base import GPT2Tokenizer

transformers = pytest.importorskip("transformers")

GPT2_VOCAB = (
    50257  # load_hf_model pairs weights with the GPT-2 tokenizer, so its tests need this vocab
)


def small_hf_model(vocab_size: int = 97, seed: int = 0):
    torch.manual_seed(seed)
    config = transformers.GPT2Config(
        vocab_size=vocab_size,
        n_positions=32,
        n_embd=32,
        n_layer=2,
        n_head=4,
        bos_token_id=None,
        eos_token_id=None,
    )
    model = transformers.GPT2LMHeadModel(config).eval()
    # HF zero-initialises biases and sets LayerNorms to 1/0; randomise them so the test would
    # notice a bias or a LayerNorm parameter landing in the wrong place.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias") or ".ln_" in name:
                p.add_(torch.randn_like(p) * 0.1)
    return model


def hf_logits(hf_model, idx: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return hf_model(idx).logits


def our_logits(model: GPT, idx: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(idx)[0]


def greedy(logits_fn, prompt: torch.Tensor, steps: int) -> list[int]:
    """Greedy decoding written out: append the argmax of the last position's logits, uncached."""
    idx = prompt
    for _ in range(steps):
        next_id = logits_fn(idx)[:, -1, :].argmax(dim=-1, keepdim=True)
        idx = torch.cat([idx, next_id], dim=1)
    return idx[0, prompt.shape[1] :].tolist()


@pytest.fixture
def idx():
    return torch.randint(0, 97, (2, 24), generator=torch.Generator().manual_seed(1))


def test_import_matches_transformers_logits_and_greedy(idx):
    hf_model = small_hf_model()
    model = from_hf_model(hf_model)
    assert not model.training
    torch.testing.assert_close(our_logits(model, idx), hf_logits(hf_model, idx), atol=1e-5, rtol=0)
    prompt = idx[:1, :5]
    ours = greedy(lambda x: our_logits(model, x), prompt, steps=20)
    theirs = greedy(lambda x: hf_logits(hf_model, x), prompt, steps=20)
    assert ours == theirs


def test_export_loads_in_transformers_with_equal_logits_and_greedy(tmp_path, idx):
    model = from_hf_model(small_hf_model(seed=3))
    export_hf(model, tmp_path / "hf")
    assert sorted(p.name for p in (tmp_path / "hf").iterdir()) == [
        "config.json",
        "model.safetensors",
    ]
    reloaded = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "hf").eval()
    torch.testing.assert_close(hf_logits(reloaded, idx), our_logits(model, idx), atol=1e-5, rtol=0)
    prompt = idx[1:, :3]
    assert greedy(lambda x: hf_logits(reloaded, x), prompt, 20) == greedy(
        lambda x: our_logits(model, x), prompt, 20
    )


def test_to_hf_model_has_the_same_weights(idx):
    torch.manual_seed(0)
    model = GPT(ModelConfig(vocab_size=97, block_size=32, n_layer=2, n_head=4, n_embd=32)).eval()
    hf_model = to_hf_model(model)
    assert not hf_model.training
    assert hf_model.lm_head.weight is hf_model.transformer.wte.weight
    torch.testing.assert_close(hf_logits(hf_model, idx), our_logits(model, idx), atol=1e-5, rtol=0)


def test_export_drops_padded_vocab_rows(tmp_path, idx):
    torch.manual_seed(0)
    config = ModelConfig(
        vocab_size=97, block_size=32, n_layer=2, n_head=4, n_embd=32, pad_vocab_multiple=64
    )
    model = GPT(config).eval()
    export_hf(model, tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["vocab_size"] == 97
    reloaded = transformers.GPT2LMHeadModel.from_pretrained(tmp_path).eval()
    assert reloaded.transformer.wte.weight.shape == (97, 32)
    torch.testing.assert_close(hf_logits(reloaded, idx), our_logits(model, idx), atol=1e-5, rtol=0)


def test_import_into_padded_vocab_gives_the_same_logits(idx):
    hf_model = small_hf_model()
    config = model_config_from_hf_config(hf_model.config).replace(pad_vocab_multiple=64)
    model = from_hf_state_dict(hf_model.state_dict(), config)
    assert model.wte.weight.shape[0] == 128
    torch.testing.assert_close(our_logits(model, idx), hf_logits(hf_model, idx), atol=1e-5, rtol=0)


def test_old_style_state_dict_without_prefix_and_with_mask_buffers(idx):
    """OpenAI's converted checkpoints: no 'transformer.' prefix, causal-mask buffers, no lm_head."""
    hf_model = small_hf_model()
    state = {
        k.removeprefix("transformer."): v
        for k, v in hf_model.state_dict().items()
        if k != "lm_head.weight"
    }
    for i in range(2):
        state[f"h.{i}.attn.bias"] = torch.ones(1, 1, 32, 32).tril()
        state[f"h.{i}.attn.masked_bias"] = torch.tensor(-1e4)
    model = from_hf_state_dict(state, model_config_from_hf_config(hf_model.config))
    torch.testing.assert_close(our_logits(model, idx), hf_logits(hf_model, idx), atol=1e-5, rtol=0)


def test_untied_head_is_refused():
    hf_model = small_hf_model()
    state = dict(hf_model.state_dict())
    state["lm_head.weight"] = torch.randn_like(state["lm_head.weight"])
    with pytest.raises(GptlabError, match="untied"):
        from_hf_state_dict(state, model_config_from_hf_config(hf_model.config))


def test_config_round_trip_and_refusals():
    config = ModelConfig(
        vocab_size=97,
        block_size=32,
        n_layer=3,
        n_head=4,
        n_embd=32,
        dropout=0.1,
        layer_norm_eps=1e-6,
    )
    assert model_config_from_hf_config(hf_config_from_model_config(config)) == config
    # A bare config.json takes GPT2Config's defaults, including its 0.1 dropout.
    assert model_config_from_hf_config({"model_type": "gpt2"}) == ModelConfig(dropout=0.1)
    with pytest.raises(GptlabError, match="bias"):
        hf_config_from_model_config(config.replace(bias=False))
    refused = [
        ({"activation_function": "relu"}, "activation_function"),
        ({"n_inner": 100}, "n_inner"),
        ({"tie_word_embeddings": False}, "tie_word_embeddings"),
        ({"model_type": "llama"}, "llama"),
    ]
    for overrides, message in refused:
        with pytest.raises(GptlabError, match=message):
            model_config_from_hf_config({"model_type": "gpt2", **overrides})


def test_load_hf_model_from_a_save_pretrained_folder(tmp_path, idx):
    hf_model = small_hf_model(vocab_size=GPT2_VOCAB)
    hf_model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file()
    model, tokenizer = load_hf_model(str(tmp_path))
    assert isinstance(tokenizer, GPT2Tokenizer)
    assert not model.training
    torch.testing.assert_close(our_logits(model, idx), hf_logits(hf_model, idx), atol=1e-5, rtol=0)


def test_load_hf_model_from_a_pytorch_bin_folder(tmp_path, idx):
    hf_model = small_hf_model(vocab_size=GPT2_VOCAB)
    hf_model.config.to_json_file(tmp_path / "config.json")
    torch.save(hf_model.state_dict(), tmp_path / "pytorch_model.bin")
    model, _ = load_hf_model(str(tmp_path))
    torch.testing.assert_close(our_logits(model, idx), hf_logits(hf_model, idx), atol=1e-5, rtol=0)


class NotATensor:  # stands in for arbitrary pickled objects, which could run code on load
    pass


def test_pytorch_bin_with_pickled_objects_is_refused(tmp_path):
    small_hf_model(vocab_size=GPT2_VOCAB).config.to_json_file(tmp_path / "config.json")
    torch.save({"wte.weight": NotATensor()}, tmp_path / "pytorch_model.bin")
    with pytest.raises(GptlabError, match="plain tensors"):
        load_hf_model(str(tmp_path))


def test_load_hf_model_bad_folders(tmp_path):
    with pytest.raises(GptlabError, match="config.json"):
        load_hf_model(str(tmp_path))
    small_hf_model(vocab_size=97).config.to_json_file(tmp_path / "config.json")
    with pytest.raises(GptlabError, match="50257"):  # not the GPT-2 tokenizer's vocabulary
        load_hf_model(str(tmp_path))
    with pytest.raises(GptlabError, match="not a folder"):
        load_hf_model(str(tmp_path / "missing"))


def test_load_hf_model_unknown_name_offline(monkeypatch, tmp_path):
    hub = pytest.importorskip("huggingface_hub")
    monkeypatch.setattr(hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hub.constants, "HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(GptlabError, match="offline.*local folder"):
        load_hf_model("gptlab-test/no-such-model")


def test_cli_export(tmp_path, idx):
    torch.manual_seed(0)
    model = GPT(
        ModelConfig(vocab_size=GPT2_VOCAB, block_size=32, n_layer=1, n_head=2, n_embd=16)
    ).eval()
    save_model(tmp_path / "model", model, GPT2Tokenizer())
    out = tmp_path / "exported"
    assert main(["export", "--checkpoint", str(tmp_path / "model"), "--out", str(out)]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["eos_token_id"] == 50256
    reloaded = transformers.GPT2LMHeadModel.from_pretrained(out).eval()
    torch.testing.assert_close(hf_logits(reloaded, idx), our_logits(model, idx), atol=1e-5, rtol=0)

    assert main(["export", "--checkpoint", str(tmp_path / "model"), "--out", str(out)]) == 1
    assert (
        main(["export", "--checkpoint", str(tmp_path / "model"), "--out", str(out), "--overwrite"])
        == 0
    )


@pytest.mark.parametrize("value", ["abc", None])
def test_hf_config_values_of_the_wrong_type_are_one_line(value):
    with pytest.raises(GptlabError, match="resid_pdrop = .*; it must be a number"):
        model_config_from_hf_config({"model_type": "gpt2", "resid_pdrop": value})


def test_a_damaged_or_hostile_safetensors_index_is_refused(tmp_path):
    import json

    small_hf_model(vocab_size=GPT2_VOCAB).config.to_json_file(tmp_path / "config.json")
    index = tmp_path / "model.safetensors.index.json"
    index.write_text(json.dumps({"weight_map": ["model-1.safetensors"]}))
    with pytest.raises(GptlabError, match="has no weight_map object"):
        load_hf_model(str(tmp_path))
    for outside in ("../../etc/passwd", "/etc/passwd"):
        index.write_text(json.dumps({"weight_map": {"wte.weight": outside}}))
        with pytest.raises(GptlabError, match="outside .*; refusing to read it"):
            load_hf_model(str(tmp_path))
