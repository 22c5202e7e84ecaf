"""Direct logit attribution: the components sum to the logit, and each last-layer term equals
the logit change from removing that component with the final LayerNorm's scale held fixed."""

import pytest
import torch
from interp_testing import random_model, random_tokens

from gptlab.interp.attribution import direct_logit_attribution, save_attribution_plots


@pytest.mark.parametrize("overrides", [{}, {"bias": False}, {"pad_vocab_multiple": 16}])
@pytest.mark.parametrize("position", [-1, 4])
def test_components_sum_to_the_logit(overrides, position):
    model = random_model(**overrides)
    idx = random_tokens(model, 12)
    with torch.no_grad():
        logits, _ = model(idx)
    for target in (None, 7):
        result = direct_logit_attribution(model, idx, target, position)
        expected_target = int(logits[0, position].argmax()) if target is None else target
        assert result.target_id == expected_target
        assert result.logit == pytest.approx(float(logits[0, position, expected_target]), abs=1e-6)
        assert abs(result.total() - result.logit) < 1e-4
        n_components = 2 + model.config.n_layer * (model.config.n_head + 2) + 1
        assert len(result.components()) == n_components
    if not overrides.get("bias", True):
        assert result.attn_bias.abs().sum() == 0 and result.ln_final_bias == 0


def logit_with_frozen_final_norm(model, idx, position, target, replace: dict) -> float:
    """The target logit with hooks replacing activations, ln_f's scale fixed at its clean value.

    Recomputing ln_f by hand with the clean scale makes the readout linear, so removing one
    component that writes directly to the final residual changes the logit by exactly that
    component's direct attribution.
    """
    last = f"blocks.{model.config.n_layer - 1}.hook_resid_post"
    _, cache = model.run_with_cache(idx, names=[last])
    clean = cache[last]
    scale = torch.sqrt(clean.var(-1, unbiased=False, keepdim=True) + model.ln_f.eps)
    seen = {}

    def remember(x, name):
        seen["resid"] = x

    def frozen_norm(x, name):
        r = seen["resid"]
        return (r - r.mean(-1, keepdim=True)) / scale * model.ln_f.weight + model.ln_f.bias

    with model.hooks({**replace, last: remember, "hook_ln_final": frozen_norm}):
        logits, _ = model(idx)
    return float(logits[0, position, target])


def test_last_layer_terms_equal_removing_them_with_the_final_norm_frozen():
    model = random_model()
    idx = random_tokens(model, 9)
    last = model.config.n_layer - 1
    result = direct_logit_attribution(model, idx, target_id=5, position=-1)
    clean = logit_with_frozen_final_norm(model, idx, -1, 5, {})
    assert clean == pytest.approx(result.logit, abs=1e-5)

    # The last MLP reads the heads' output: keep it at its clean value so only direct paths change.
    _, cache = model.run_with_cache(idx, names=[f"blocks.{last}.hook_mlp_out"])
    clean_mlp = cache[f"blocks.{last}.hook_mlp_out"]
    for head in range(model.config.n_head):

        def zero_head(z, name, head=head):
            z = z.clone()
            z[:, :, head] = 0.0
            return z

        replace = {
            f"blocks.{last}.attn.hook_z": zero_head,
            f"blocks.{last}.hook_mlp_out": lambda x, name: clean_mlp,
        }
        without = logit_with_frozen_final_norm(model, idx, -1, 5, replace)
        assert clean - without == pytest.approx(float(result.heads[last, head]), abs=1e-4)

    without_mlp = logit_with_frozen_final_norm(
        model, idx, -1, 5, {f"blocks.{last}.hook_mlp_out": lambda x, name: torch.zeros_like(x)}
    )
    assert clean - without_mlp == pytest.approx(float(result.mlp[last]), abs=1e-4)


def test_attribution_plots(tmp_path):
    model = random_model()
    result = direct_logit_attribution(model, random_tokens(model, 5))
    paths = save_attribution_plots(tmp_path, result, "x")
    assert [p.name for p in paths] == ["attribute_heads.png", "attribute_components.png"]
    assert all(p.read_bytes()[:4] == b"\x89PNG" for p in paths)


def test_unmerged_lora_layers_are_attributed_like_their_merged_weights():
    from gptlab.model.lora import LoRAConfig, add_lora, merge_lora

    model = random_model()
    idx = random_tokens(model, 8)
    add_lora(model, LoRAConfig(rank=2, targets=("attn.c_proj",)))
    with torch.no_grad():
        for block in model.blocks:
            block.attn.c_proj.lora_B.normal_(0.0, 0.5)  # LoRA starts at zero; make it count
    wrapped = direct_logit_attribution(model, idx, target_id=3)
    assert abs(wrapped.total() - wrapped.logit) < 1e-4
    merge_lora(model)
    merged = direct_logit_attribution(model, idx, target_id=3)
    torch.testing.assert_close(wrapped.heads, merged.heads, atol=1e-5, rtol=0)
    torch.testing.assert_close(wrapped.attn_bias, merged.attn_bias, atol=1e-5, rtol=0)
