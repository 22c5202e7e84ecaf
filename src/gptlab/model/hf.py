"""Hugging Face GPT-2 interop: load `GPT2LMHeadModel` weights into a gptlab GPT and export back.

The two layouts hold the same numbers under different names and shapes:

    Hugging Face (GPT2LMHeadModel)              gptlab (GPT)
    transformer.wte / wpe / ln_f                wte / wpe / ln_f
    transformer.h.{i}.ln_1, ln_2                blocks.{i}.ln_1, ln_2
    transformer.h.{i}.attn.c_attn, c_proj       blocks.{i}.attn.c_attn, c_proj
    transformer.h.{i}.mlp.c_fc, c_proj          blocks.{i}.mlp.c_fc, c_proj
    lm_head (tied to wte)                       lm_head (tied to wte)

OpenAI wrote the projections as "Conv1D" layers whose weight is stored (in, out); nn.Linear stores
(out, in), so those four weights are transposed on the way in and on the way out.

Reading a local folder needs only safetensors/torch (config.json is read as plain JSON); building
a `transformers` model (`to_hf_model`, `hf_config_from_model_config`) needs the `hf` extra.
Nothing here touches the network: gptlab.checkpoints.hf_hub opens a folder or a hub name.
"""

from __future__ import annotations

import json
import pickle
import re
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from gptlab.errors import GptlabError
from gptlab.fileio import atomic_write, atomic_write_text, inside, read_json
from gptlab.model.config import ModelConfig
from gptlab.model.gpt import GPT
from gptlab.model.state import load_state_checked
from gptlab.optional import import_optional
from gptlab.tokenizers.base import Tokenizer

HF_CONFIG_FILE = "config.json"
HF_SAFETENSORS_FILE = "model.safetensors"
HF_SAFETENSORS_INDEX_FILE = "model.safetensors.index.json"  # sharded checkpoints (large models)
HF_PYTORCH_FILE = "pytorch_model.bin"

# Weights that OpenAI's Conv1D stores as (in, out): transposed to nn.Linear's (out, in).
CONV1D_SUFFIXES = (
    "attn.c_attn.weight",
    "attn.c_proj.weight",
    "mlp.c_fc.weight",
    "mlp.c_proj.weight",
)
# Old checkpoints saved the causal mask as buffers; they carry no learned numbers.
MASK_BUFFER_SUFFIXES = (".attn.bias", ".attn.masked_bias")
# Hugging Face names for the tanh approximation of GELU, the only activation GPT-2 uses.
TANH_GELU_NAMES = ("gelu_new", "gelu_pytorch_tanh", "gelu_fast")
GPT2_VOCAB_SIZE = 50257  # tiktoken's GPT-2 BPE, the tokenizer Hugging Face weights are paired with


# ---------------------------------------------------------------------------------------------
# Configs


def hf_config_dict(config: ModelConfig, eot_id: int | None = None) -> dict:
    """The GPT2Config fields (as written to config.json) that describe `config`'s model."""
    changes = config.variant_changes()
    if changes:
        raise GptlabError(
            f"this model is not a GPT-2 ({', '.join(changes)}), which Hugging Face GPT-2 cannot "
            "express; only models with every variant at its GPT-2 default can be exported"
        )
    return {
        "model_type": "gpt2",
        "architectures": ["GPT2LMHeadModel"],
        "vocab_size": config.vocab_size,  # padded rows are dropped on export
        "n_positions": config.block_size,
        "n_embd": config.n_embd,
        "n_layer": config.n_layer,
        "n_head": config.n_head,
        "n_inner": None,  # 4 * n_embd
        "activation_function": "gelu_new",
        "resid_pdrop": config.dropout,
        "embd_pdrop": config.dropout,
        "attn_pdrop": config.dropout,
        "layer_norm_epsilon": config.layer_norm_eps,
        "initializer_range": 0.02,
        "scale_attn_weights": True,
        "scale_attn_by_inverse_layer_idx": False,
        "reorder_and_upcast_attn": False,
        "add_cross_attention": False,
        "tie_word_embeddings": True,
        "bos_token_id": eot_id,
        "eos_token_id": eot_id,
    }


def hf_config_from_model_config(config: ModelConfig):
    """A `transformers.GPT2Config` for the same architecture (needs the `hf` extra)."""
    transformers = import_optional("transformers", "hf")
    return transformers.GPT2Config(**hf_config_dict(config))


def model_config_from_hf_config(hf_config) -> ModelConfig:
    """A ModelConfig from a GPT2Config or the dict of a config.json; refuses what GPT-2 here lacks.

    Keys missing from old config.json files take GPT2Config's defaults. The three dropout rates
    of Hugging Face (embedding, attention, residual) become the one rate gptlab has: the largest.
    """
    d = hf_config if isinstance(hf_config, dict) else hf_config.to_dict()
    model_type = d.get("model_type", "gpt2")
    if model_type != "gpt2":
        raise GptlabError(
            f"the Hugging Face config is for a {model_type!r} model; only GPT-2 ('gpt2') can be loaded"
        )
    n_embd = d.get("n_embd", 768)
    requirements = {  # key: (whether this config meets it, what gptlab needs)
        "activation_function": (
            d.get("activation_function", "gelu_new") in TANH_GELU_NAMES,
            "tanh-approximated GELU",
        ),
        "n_inner": (d.get("n_inner") in (None, 4 * n_embd), f"None or 4 * n_embd = {4 * n_embd}"),
        "scale_attn_weights": (d.get("scale_attn_weights", True), "true"),
        "scale_attn_by_inverse_layer_idx": (
            not d.get("scale_attn_by_inverse_layer_idx", False),
            "false",
        ),
        "add_cross_attention": (not d.get("add_cross_attention", False), "false"),
        "tie_word_embeddings": (d.get("tie_word_embeddings", True), "true"),
    }
    for key, (supported, needed) in requirements.items():
        if not supported:
            raise GptlabError(
                f"the Hugging Face config has {key} = {d.get(key)!r}, which gptlab's GPT-2 does not "
                f"support (it needs {needed})"
            )
    dropout = max(hf_number(d, k, 0.1) for k in ("resid_pdrop", "embd_pdrop", "attn_pdrop"))
    return ModelConfig(
        vocab_size=d.get("vocab_size", GPT2_VOCAB_SIZE),
        block_size=d.get("n_positions", 1024),
        n_layer=d.get("n_layer", 12),
        n_head=d.get("n_head", 12),
        n_embd=n_embd,
        dropout=dropout,
        bias=True,
        layer_norm_eps=hf_number(d, "layer_norm_epsilon", 1e-5),
    )


def hf_number(d: dict, key: str, default: float) -> float:
    """A float setting of a Hugging Face config; null or text there is a damaged config."""
    value = d.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise GptlabError(f"the Hugging Face config has {key} = {value!r}; it must be a number")
    return float(value)


# ---------------------------------------------------------------------------------------------
# Weights


def from_hf_state_dict(state: dict[str, torch.Tensor], config: ModelConfig) -> GPT:
    """A GPT holding the weights of a GPT2LMHeadModel state dict (with or without 'transformer.').

    With vocab padding in `config`, the extra embedding rows are zero; they never reach the output.
    """
    ours: dict[str, torch.Tensor] = {}
    hf_head = None
    for name, tensor in state.items():
        name = name.removeprefix("transformer.")
        if name.endswith(MASK_BUFFER_SUFFIXES):
            continue
        if name == "lm_head.weight":
            hf_head = tensor
            continue
        if name.endswith(CONV1D_SUFFIXES):
            tensor = tensor.t()
        ours[re.sub(r"^h\.(\d+)\.", r"blocks.\1.", name)] = tensor

    wte = ours.get("wte.weight")
    if hf_head is not None and wte is not None and not torch.equal(hf_head.to(wte.device), wte):
        raise GptlabError(
            "these weights have an lm_head that differs from wte (untied), which gptlab's GPT-2 does not support"
        )
    if wte is not None and wte.shape[0] == config.vocab_size < config.padded_vocab_size:
        padding = wte.new_zeros(config.padded_vocab_size - config.vocab_size, wte.shape[1])
        ours["wte.weight"] = torch.cat([wte, padding])

    model = GPT(config)
    load_state_checked(model, ours, source="the Hugging Face state dict")
    return model.eval()


def to_hf_state_dict(model: GPT) -> dict[str, torch.Tensor]:
    """The model's weights in GPT2LMHeadModel's names and layout: fp32, contiguous, on the CPU.

    The tied lm_head is left out (Hugging Face re-ties it on load) and padded vocab rows dropped.
    """
    state = {}
    for name, tensor in model.state_dict().items():
        if name == "lm_head.weight":
            continue
        tensor = tensor.detach().to(device="cpu", dtype=torch.float32)
        if name == "wte.weight":
            tensor = tensor[: model.config.vocab_size]
        if name.endswith(CONV1D_SUFFIXES):
            tensor = tensor.t()
        state["transformer." + re.sub(r"^blocks\.(\d+)\.", r"h.\1.", name)] = tensor.contiguous()
    return state


def from_hf_model(hf_model) -> GPT:
    """A GPT with the same weights as a `transformers` GPT2LMHeadModel (fp32, eval mode)."""
    config = model_config_from_hf_config(hf_model.config)
    return from_hf_state_dict(hf_model.state_dict(), config)


def to_hf_model(model: GPT):
    """A `transformers.GPT2LMHeadModel` with the same weights (fp32, CPU, eval mode)."""
    transformers = import_optional("transformers", "hf")
    hf_model = transformers.GPT2LMHeadModel(hf_config_from_model_config(model.config))
    state = to_hf_state_dict(model)
    state["lm_head.weight"] = state["transformer.wte.weight"]
    hf_model.load_state_dict(state, strict=True)
    return hf_model.eval()


# ---------------------------------------------------------------------------------------------
# Hugging Face folders (gptlab.checkpoints.hf_hub adds hub names)


def read_hf_config(folder: Path) -> dict:
    path = folder / HF_CONFIG_FILE
    if not path.is_file():
        raise GptlabError(
            f"{folder} has no {HF_CONFIG_FILE}: it is not a Hugging Face model folder"
        )
    return read_json(path, "Hugging Face config")


def read_hf_weights(folder: Path) -> dict[str, torch.Tensor]:
    """The state dict of a Hugging Face folder: safetensors (single or sharded), else pytorch_model.bin."""
    if (folder / HF_SAFETENSORS_FILE).is_file():
        files = [folder / HF_SAFETENSORS_FILE]
    elif (folder / HF_SAFETENSORS_INDEX_FILE).is_file():
        index = read_json(folder / HF_SAFETENSORS_INDEX_FILE, "safetensors index")
        weight_map = index.get("weight_map")
        if not isinstance(weight_map, dict) or not weight_map:
            raise GptlabError(f"{folder / HF_SAFETENSORS_INDEX_FILE} has no weight_map object")
        files = [
            inside(folder, shard, HF_SAFETENSORS_INDEX_FILE)
            for shard in sorted(set(map(str, weight_map.values())))
        ]
    elif (folder / HF_PYTORCH_FILE).is_file():
        return read_pytorch_bin(folder / HF_PYTORCH_FILE)
    else:
        raise GptlabError(
            f"{folder} has no {HF_SAFETENSORS_FILE} or {HF_PYTORCH_FILE}: no weights to load"
        )

    state: dict[str, torch.Tensor] = {}
    for file in files:
        try:
            state.update(load_file(str(file), device="cpu"))
        except (SafetensorError, OSError) as exc:
            raise GptlabError(f"{file} could not be read as safetensors ({exc})") from None
    return state


def read_pytorch_bin(path: Path) -> dict[str, torch.Tensor]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)  # never unpickles code
    except (pickle.UnpicklingError, RuntimeError, OSError, EOFError) as exc:
        raise GptlabError(
            f"{path} could not be loaded as plain tensors ({str(exc).splitlines()[0]}); "
            "convert it to safetensors, or get the weights from a source you trust"
        ) from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise GptlabError(f"{path} does not hold a state dict of tensors")
    return state


def export_hf(model: GPT, out_dir: str | Path, tokenizer: Tokenizer | None = None) -> None:
    """Write config.json + model.safetensors that `GPT2LMHeadModel.from_pretrained(out_dir)` loads.

    Only weights and config are written, whatever the tokenizer: for models trained with the GPT-2
    BPE, `AutoTokenizer.from_pretrained("gpt2")` is the matching Hugging Face tokenizer; char and
    own-BPE tokenizers have no Hugging Face equivalent. The tokenizer's end-of-text id, if it has
    one, becomes the config's bos/eos token id.
    """
    eot_id = tokenizer.eot_id if tokenizer is not None else None
    config = hf_config_dict(model.config, eot_id=eot_id)
    state = to_hf_state_dict(model)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(
        out_dir / HF_SAFETENSORS_FILE, lambda tmp: save_file(state, tmp, metadata={"format": "pt"})
    )
    atomic_write_text(out_dir / HF_CONFIG_FILE, json.dumps(config, indent=2))
