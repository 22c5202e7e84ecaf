"""The decode weight layout for CPU decoding: the same model, the same logits and tokens."""

import copy

import pytest
import torch
import torch.nn as nn

from gptlab.bench.measure import read_bytes_per_token
from gptlab.inference import weight_layout
from gptlab.inference.generate import GenerationConfig, generate
from gptlab.inference.precision import prepare_model, weight_bytes
from gptlab.inference.weight_layout import InputMajorLinear, PackedLinear
from gptlab.model import GPT
from gptlab.model.config import ModelConfig
from gptlab.model.lora import LoRAConfig, add_lora


def tiny(**changes) -> GPT:
    torch.manual_seed(0)
    config = ModelConfig(vocab_size=97, block_size=32, n_layer=2, n_head=4, n_embd=32, **changes)
    model = GPT(config).eval()
    with torch.no_grad():  # large weights: greedy text varies, so equal tokens mean something
        for param in model.parameters():
            if param.dim() > 1:
                param.normal_(0.0, 0.3)
    return model


@pytest.fixture
def pack_small_matrices(monkeypatch):
    """The tiny test models' matrices are below the packing threshold: pack them anyway."""
    monkeypatch.setattr(weight_layout, "PACK_MIN_BYTES", 0)


@pytest.mark.usefixtures("pack_small_matrices")
def test_prepared_model_gives_the_same_logits_and_greedy_tokens():
    model = tiny()
    prepared = prepare_model(copy.deepcopy(model))
    assert not any(type(m) is nn.Linear for m in prepared.modules())
    assert isinstance(prepared.lm_head, InputMajorLinear)  # the head: input-major, tied to wte
    assert sum(isinstance(m, PackedLinear) for m in prepared.modules()) == 2 * 4
    idx = torch.randint(97, (3, 20), generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        torch.testing.assert_close(prepared(idx)[0], model(idx)[0], rtol=1e-5, atol=1e-5)
    config = GenerationConfig(max_new_tokens=24, temperature=0, stop_at_eot=False)
    prompt = [5, 17, 3, 60]
    assert (
        generate(prepared, prompt, config)[0].token_ids
        == generate(model, prompt, config)[0].token_ids
    )


def test_a_tied_head_is_stored_once_and_untied_ones_stay_apart():
    prepared = prepare_model(tiny())
    head = prepared.lm_head.weight_t
    assert (
        prepared.wte.weight.data_ptr() == head.data_ptr()
    )  # the embedding reads the head's matrix
    assert prepared.wte.weight.shape == (97, 32) and head.shape == (32, 97)
    assert torch.equal(prepared.lm_head.weight, prepared.wte.weight)
    untied = prepare_model(tiny(tie_weights=False))
    assert untied.wte.weight.data_ptr() != untied.lm_head.weight_t.data_ptr()


@pytest.mark.parametrize("layout", [InputMajorLinear, PackedLinear])
def test_each_layout_gives_nn_linear_product_and_weight_by_hand(layout):
    torch.manual_seed(2)
    linear = nn.Linear(5, 3)
    fast = layout.from_linear(linear)
    x = torch.randn(2, 4, 5)
    by_hand = torch.einsum("bti,oi->bto", x, linear.weight) + linear.bias
    with torch.inference_mode():
        torch.testing.assert_close(fast(x), by_hand)
    assert torch.equal(fast.weight, linear.weight)
    assert layout.from_linear(nn.Linear(5, 3, bias=False)).bias is None


def test_lora_layers_keep_their_update_after_preparation():
    model = tiny()
    add_lora(model, LoRAConfig(rank=2, alpha=4.0))
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0.0, 0.5)  # a non-zero update, so losing it would show
    prepared = prepare_model(copy.deepcopy(model))
    idx = torch.randint(97, (1, 12), generator=torch.Generator().manual_seed(3))
    with torch.inference_mode():
        torch.testing.assert_close(prepared(idx)[0], model(idx)[0], rtol=1e-5, atol=1e-5)


@pytest.mark.usefixtures("pack_small_matrices")
def test_a_prepared_model_saves_copies_and_measures_like_the_plain_one():
    model = tiny(tie_weights=False)
    prepared = prepare_model(copy.deepcopy(model))
    state, plain = prepared.state_dict(), model.state_dict()
    packed_names = [name for name, m in prepared.named_modules() if isinstance(m, PackedLinear)]
    assert packed_names
    for name in packed_names:  # saved as their plain (out, in) copies
        torch.testing.assert_close(state[f"{name}.weight"], plain[f"{name}.weight"], rtol=0, atol=0)
    assert weight_bytes(prepared) == weight_bytes(model)
    assert read_bytes_per_token(prepared) == read_bytes_per_token(model)
    twin = copy.deepcopy(prepared)
    idx = torch.randint(97, (2, 9), generator=torch.Generator().manual_seed(5))
    with torch.inference_mode():
        torch.testing.assert_close(twin(idx)[0], prepared(idx)[0], rtol=0, atol=0)


@pytest.mark.parametrize("why", ["small matrices", "no oneDNN"])
def test_small_matrices_or_no_onednn_leave_every_linear_input_major(monkeypatch, why):
    if why == "no oneDNN":
        monkeypatch.setattr(weight_layout, "PACK_MIN_BYTES", 0)
        monkeypatch.setattr(weight_layout, "packing_available", lambda: False)
    else:  # the tiny model's largest matrix, 32 x 128 floats, is far below the threshold
        assert 32 * 128 * 4 < weight_layout.PACK_MIN_BYTES
    prepared = prepare_model(tiny())
    assert sum(isinstance(m, InputMajorLinear) for m in prepared.modules()) == 2 * 4 + 1
    assert not any(isinstance(m, PackedLinear) for m in prepared.modules())


@pytest.mark.usefixtures("pack_small_matrices")
def test_a_model_for_torch_compile_keeps_traceable_linears_and_packed_ones_are_refused():
    from gptlab.errors import GptlabError
    from gptlab.inference.forward import compiled_decode_step

    for_compile = prepare_model(tiny(), compile=True)
    assert not any(isinstance(m, PackedLinear) for m in for_compile.modules())
    assert compiled_decode_step(for_compile, backend="eager") is not None
    with pytest.raises(GptlabError, match="prepare_model\\(model, compile=True\\)"):
        compiled_decode_step(prepare_model(tiny()), backend="eager")
