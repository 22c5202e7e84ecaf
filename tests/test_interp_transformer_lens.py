"""TransformerLens interop: the exported config + state dict make a HookedTransformer that
reproduces gptlab's logits, activations and composition scores, and TransformerLens 4's
TransformerBridge reads the Hugging Face export with the same logits and hook points (skipped
without transformer_lens)."""

import json

import pytest
import torch
from interp_testing import random_model
from safetensors.torch import load_file

from gptlab.checkpoints.model_folder import save_model
from gptlab.cli import main
from gptlab.errors import GptlabError
from gptlab.interp.circuits import composition_scores
from gptlab.model.transformer_lens import hooked_transformer, transformer_lens_state_dict
from gptlab.tokenizers.base import CharTokenizer

tl = pytest.importorskip("transformer_lens", reason="TransformerLens is not installed")


def tokens(model, length=12):
    return torch.randint(
        0, model.config.vocab_size, (2, length), generator=torch.Generator().manual_seed(0)
    )


def test_hooked_transformer_reproduces_logits_and_hook_points():
    model = random_model()
    hooked = hooked_transformer(model)
    idx = tokens(model)
    logits, cache = model.run_with_cache(
        idx, names=["blocks.1.hook_resid_mid", "blocks.2.attn.hook_pattern"]
    )
    tl_logits, tl_cache = hooked.run_with_cache(idx)
    torch.testing.assert_close(tl_logits, logits, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(
        tl_cache["blocks.1.hook_resid_mid"], cache["blocks.1.hook_resid_mid"], atol=1e-4, rtol=1e-4
    )
    torch.testing.assert_close(
        tl_cache["blocks.2.attn.hook_pattern"],
        cache["blocks.2.attn.hook_pattern"],
        atol=1e-5,
        rtol=1e-4,
    )


def test_composition_scores_match_transformer_lens():
    model = random_model()
    with torch.no_grad():  # TransformerLens' scores read raw weights: unit LayerNorm gains agree
        for block in model.blocks:
            block.ln_1.weight.fill_(1.0)
    hooked = hooked_transformer(model)
    ours = composition_scores(model)
    for kind in "QKV":
        theirs = hooked.all_composition_scores(kind)  # (L, H, L, H), zero where l1 >= l2
        mask = ~torch.isnan(ours[kind])
        torch.testing.assert_close(ours[kind][mask], theirs[mask].float(), atol=1e-4, rtol=1e-4)


def test_export_cli_writes_a_folder_transformer_lens_loads(tmp_path):
    tokenizer = CharTokenizer.from_text("abcdefghij ")
    model = random_model(vocab_size=tokenizer.vocab_size)
    save_model(tmp_path / "m", model, tokenizer)
    out = tmp_path / "tl"
    assert (
        main(
            [
                "export",
                "--checkpoint",
                str(tmp_path / "m"),
                "--out",
                str(out),
                "--format",
                "transformer-lens",
            ]
        )
        == 0
    )
    hooked = tl.HookedTransformer(
        tl.HookedTransformerConfig(**json.loads((out / "config.json").read_text()))
    )
    hooked.load_state_dict(load_file(out / "model.safetensors"), strict=False)
    idx = tokens(model, 8)
    torch.testing.assert_close(hooked(idx), model(idx)[0], atol=1e-4, rtol=1e-4)


def test_transformer_bridge_reads_the_hugging_face_export(tmp_path):
    """TransformerLens 4's own loader on `gptlab export --format hf`: raw weights, so logits and
    the residual stream, attention pattern and MLP activations equal gptlab's hook points."""
    bridge_module = pytest.importorskip(
        "transformer_lens.model_bridge", reason="this TransformerLens has no TransformerBridge"
    )
    tokenizer = CharTokenizer.from_text("abcdefghij ")
    model = random_model(vocab_size=tokenizer.vocab_size)
    save_model(tmp_path / "m", model, tokenizer)
    out = tmp_path / "hf"
    assert main(["export", "--checkpoint", str(tmp_path / "m"), "--out", str(out)]) == 0
    bridge = bridge_module.TransformerBridge.boot_transformers(str(out), device="cpu")
    idx = tokens(model, 10)
    with torch.no_grad():
        logits, cache = bridge.run_with_cache(idx)
        ours, our_cache = model.run_with_cache(idx)
    torch.testing.assert_close(logits, ours, atol=1e-4, rtol=1e-4)
    for name in (
        "blocks.0.hook_resid_post",
        "blocks.1.hook_resid_mid",
        "blocks.1.attn.hook_pattern",
        "blocks.0.mlp.hook_post",
    ):
        torch.testing.assert_close(cache[name], our_cache[name], atol=1e-4, rtol=1e-4)


def test_variant_models_are_refused_in_one_line():
    with pytest.raises(GptlabError, match="GPT-2-shaped"):
        transformer_lens_state_dict(random_model(norm="rmsnorm"))
