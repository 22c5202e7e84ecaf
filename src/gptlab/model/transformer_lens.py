"""TransformerLens interop: a gptlab GPT-2 as a HookedTransformer config + state dict.

TransformerLens (and SAELens, which builds on it) runs its tutorials on a `HookedTransformer`.
`transformer_lens_config(model)` gives the keyword arguments of its `HookedTransformerConfig` and
`transformer_lens_state_dict(model)` the weights in its layout:

    embed.W_E (V, C)   pos_embed.W_pos (T, C)   unembed.W_U (C, V), unembed.b_U (V,) = 0
    blocks.i.attn.W_Q/W_K/W_V (H, C, D), b_Q/b_K/b_V (H, D), W_O (H, D, C), b_O (C,)
    blocks.i.ln1.w/b, ln2.w/b, ln_final.w/b   blocks.i.mlp.W_in (C, 4C), b_in, W_out (4C, C), b_out

so that, with TransformerLens installed (the 3.x line keeps HookedTransformer; 4.0 removed it):

    model = HookedTransformer(HookedTransformerConfig(**config)); model.load_state_dict(state, strict=False)

reproduces gptlab's logits (tested). The weights are not processed (no LayerNorm folding,
centering or bias folding), so activations match gptlab's hook points one for one.
`hooked_transformer(model)` does both steps. Only GPT-2-shaped models qualify: TransformerLens'
GPT-2 block has no switch for gptlab's variants (see ModelConfig.variant_changes).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

from gptlab.errors import GptlabError
from gptlab.fileio import atomic_write, atomic_write_text
from gptlab.model.gpt import GPT
from gptlab.optional import import_optional


def check_gpt2_shaped(model: GPT) -> None:
    changes = model.config.variant_changes()
    if changes or model.config.kv_heads != model.config.n_head:
        raise GptlabError(
            "TransformerLens export needs a GPT-2-shaped model, but this one changes "
            f"{', '.join(changes) or 'n_kv_head'}"
        )


def transformer_lens_config(model: GPT) -> dict:
    """Keyword arguments of transformer_lens.HookedTransformerConfig for this model."""
    check_gpt2_shaped(model)
    c = model.config
    return {
        "n_layers": c.n_layer,
        "d_model": c.n_embd,
        "n_ctx": c.block_size,
        "d_head": c.head_dim,
        "n_heads": c.n_head,
        "d_mlp": 4 * c.n_embd,
        "d_vocab": c.vocab_size,
        "act_fn": "gelu_new",  # GPT-2's tanh approximation, as gptlab's MLP
        "normalization_type": "LN",
        "eps": c.layer_norm_eps,
        "positional_embedding_type": "standard",
        "original_architecture": "GPT2LMHeadModel",
        # gptlab tokenizers add no BOS token; TransformerLens would otherwise prepend one.
        "default_prepend_bos": False,
    }


def transformer_lens_state_dict(model: GPT) -> dict[str, torch.Tensor]:
    """The weights under TransformerLens' names and shapes (float32, contiguous, on the CPU)."""
    check_gpt2_shaped(model)
    c = model.config
    C, H, D, V = c.n_embd, c.n_head, c.head_dim, c.vocab_size
    sd = {k: v.detach().float().cpu() for k, v in model.state_dict().items()}
    out = {
        "embed.W_E": sd["wte.weight"][:V],
        "pos_embed.W_pos": sd["wpe.weight"],
        "ln_final.w": sd["ln_f.weight"],
        "ln_final.b": sd["ln_f.bias"],
        "unembed.W_U": sd["lm_head.weight"][:V].T,
        "unembed.b_U": torch.zeros(V),
    }
    for i in range(c.n_layer):
        p, t = f"blocks.{i}.", f"blocks.{i}."
        w_q, w_k, w_v = sd[p + "attn.c_attn.weight"].split(C, dim=0)  # each (C_out, C_in)
        b_q, b_k, b_v = sd[p + "attn.c_attn.bias"].split(C, dim=0)
        for name, w, b in (("Q", w_q, b_q), ("K", w_k, b_k), ("V", w_v, b_v)):
            out[t + f"attn.W_{name}"] = w.view(H, D, C).transpose(1, 2)  # (H, C, D)
            out[t + f"attn.b_{name}"] = b.view(H, D)
        out[t + "attn.W_O"] = sd[p + "attn.c_proj.weight"].T.reshape(H, D, C)
        out[t + "attn.b_O"] = sd[p + "attn.c_proj.bias"]
        out[t + "ln1.w"], out[t + "ln1.b"] = sd[p + "ln_1.weight"], sd[p + "ln_1.bias"]
        out[t + "ln2.w"], out[t + "ln2.b"] = sd[p + "ln_2.weight"], sd[p + "ln_2.bias"]
        out[t + "mlp.W_in"] = sd[p + "mlp.c_fc.weight"].T
        out[t + "mlp.b_in"] = sd[p + "mlp.c_fc.bias"]
        out[t + "mlp.W_out"] = sd[p + "mlp.c_proj.weight"].T
        out[t + "mlp.b_out"] = sd[p + "mlp.c_proj.bias"]
    return {k: v.contiguous() for k, v in out.items()}


def hooked_transformer(model: GPT):
    """A transformer_lens.HookedTransformer with this model's weights (needs transformer_lens)."""
    tl = import_optional("transformer_lens", "interop")
    hooked = tl.HookedTransformer(tl.HookedTransformerConfig(**transformer_lens_config(model)))
    missing, unexpected = hooked.load_state_dict(transformer_lens_state_dict(model), strict=False)
    # Only TransformerLens' own buffers (attention masks, IGNORE) may be left to it.
    missing = [k for k in missing if not k.endswith(("attn.mask", "attn.IGNORE"))]
    if missing or unexpected:
        raise GptlabError(
            f"TransformerLens expects other weights (missing {missing}, unexpected {unexpected}); "
            "this transformer_lens version is not supported, use transformer_lens<4"
        )
    return hooked.eval()


def export_transformer_lens(model: GPT, out_dir: str | Path) -> None:
    """config.json (HookedTransformerConfig's arguments) + model.safetensors (the state dict)."""
    config = transformer_lens_config(model)
    state = transformer_lens_state_dict(model)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(out_dir / "model.safetensors", lambda tmp: save_file(state, tmp))
    atomic_write_text(out_dir / "config.json", json.dumps(config, indent=2))
