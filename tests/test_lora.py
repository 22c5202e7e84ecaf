"""LoRA adapters: exact identity at init, merge equivalence, gradients, save/load round trip."""

import pytest
import torch

from gptlab.errors import GptlabError
from gptlab.model.gpt import GPT
from gptlab.model.lora import (
    LoRAConfig,
    LoRALinear,
    add_lora,
    load_adapter,
    merge_lora,
    save_adapter,
)


@pytest.fixture
def model(tiny_config):
    torch.manual_seed(0)
    return GPT(tiny_config).eval()


@pytest.fixture
def tokens(tiny_config):
    return torch.randint(
        0, tiny_config.vocab_size, (2, 16), generator=torch.Generator().manual_seed(1)
    )


def randomize_b(model):
    """Give every B a non-zero value, as training would."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, LoRALinear):
                module.lora_B.normal_(0, 0.05)


def test_fresh_adapters_leave_the_model_exactly_unchanged(model, tokens):
    base_logits, _ = model(tokens)
    wrapped = add_lora(model, LoRAConfig(rank=4, alpha=8))
    assert len(wrapped) == 4 * model.config.n_layer  # c_attn, attn.c_proj, mlp.c_fc, mlp.c_proj
    lora_logits, _ = model(tokens)
    assert torch.equal(base_logits, lora_logits)


def test_targets_choose_the_wrapped_layers(model):
    wrapped = add_lora(model, LoRAConfig(rank=2, targets=("c_fc", "attn.c_proj")))
    assert wrapped == [
        f"blocks.{i}.{name}"
        for i in range(model.config.n_layer)
        for name in ("attn.c_proj", "mlp.c_fc")
    ]


def test_merged_and_unmerged_models_agree(model, tokens):
    add_lora(model, LoRAConfig(rank=4, alpha=8, targets=("c_attn", "c_proj", "c_fc")))
    randomize_b(model)
    adapted_logits, _ = model(tokens)
    merge_lora(model)
    assert not any(isinstance(m, LoRALinear) for m in model.modules())
    merged_logits, _ = model(tokens)
    torch.testing.assert_close(merged_logits, adapted_logits, atol=1e-5, rtol=0)


def test_merge_is_the_hand_formula():
    torch.manual_seed(0)
    base = torch.nn.Linear(5, 3)
    layer = LoRALinear(base, LoRAConfig(rank=2, alpha=6))
    with torch.no_grad():
        layer.lora_B.normal_()
    expected = base.weight + 3.0 * layer.lora_B @ layer.lora_A  # alpha / rank = 3
    torch.testing.assert_close(layer.merged().weight, expected)
    x = torch.randn(4, 5)
    torch.testing.assert_close(layer(x), x @ expected.t() + base.bias)


def test_only_adapter_parameters_receive_gradients(model, tokens):
    add_lora(model, LoRAConfig(rank=4, alpha=8))
    randomize_b(model)
    _, loss = model(tokens, tokens)
    loss.backward()
    for name, param in model.named_parameters():
        is_adapter = name.endswith((".lora_A", ".lora_B"))
        assert param.requires_grad == is_adapter, name
        if is_adapter:
            assert param.grad is not None and param.grad.abs().sum() > 0, name
        else:
            assert param.grad is None, name


def test_adapter_saves_on_its_own_and_loads_back(model, tokens, tiny_config, tmp_path):
    config = LoRAConfig(rank=3, alpha=5, dropout=0.1, targets=("c_attn",))
    add_lora(model, config)
    randomize_b(model)
    expected, _ = model.eval()(tokens)
    save_adapter(tmp_path, model, config)

    torch.manual_seed(0)
    fresh = GPT(tiny_config).eval()  # the same base weights (same seed)
    assert load_adapter(tmp_path, fresh) == config
    actual, _ = fresh(tokens)
    assert torch.equal(actual, expected)


def test_unknown_target_is_a_user_error(model):
    with pytest.raises(GptlabError, match="c_attention"):
        add_lora(model, LoRAConfig(rank=2, targets=("c_attention",)))


def test_the_tied_head_is_never_wrapped(model):
    with pytest.raises(GptlabError, match="lm_head"):
        add_lora(model, LoRAConfig(rank=2, targets=("lm_head",)))
