"""The SAE folder: what it holds, how it is written and read, and its SAELens export.

    sae.safetensors     W_enc (d_in, d_sae), b_enc, W_dec (d_sae, d_in), b_dec (float32)
    sae.json            the model and hook it reads, its kind and shape, every training setting
    metrics.jsonl       one line per logged training step
    checkpoints/step-N  the resumable training state (removed once training finishes)
    eval.json, feature-density.png, features.safetensors   written by `gptlab sae eval|features`

Each file is written atomically, and sae.json last: a folder with sae.json is complete. A
checkpoint folder is built under a hidden name and renamed, so a kill leaves the previous one.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from pathlib import Path

import torch

from gptlab.device import require_memory
from gptlab.errors import GptlabError
from gptlab.fileio import atomic_write, atomic_write_text, read_json, refuse_overlap
from gptlab.sae.model import KINDS, SparseAutoencoder

WEIGHTS_FILE = "sae.safetensors"
CONFIG_FILE = "sae.json"
METRICS_FILE = "metrics.jsonl"
CHECKPOINTS_DIR = "checkpoints"
STATE_FILE = "state.pt"
FORMAT = "gptlab-sae"
# SAELens' file names (sae_lens.constants), for the export.
SAELENS_WEIGHTS_FILE = "sae_weights.safetensors"
SAELENS_CONFIG_FILE = "cfg.json"
SAELENS_FORMAT_VERSION = "6.0.0"  # the cfg.json layout written here: SAELens 6's


def save_weights(sae: SparseAutoencoder, path: Path) -> None:
    from safetensors.torch import save_file

    tensors = {name: p.detach().float().cpu().contiguous() for name, p in sae.named_parameters()}
    atomic_write(path, lambda tmp: save_file(tensors, tmp))


def load_weights(sae: SparseAutoencoder, path: Path) -> None:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        tensors = load_file(path)
    except (SafetensorError, OSError) as exc:
        raise GptlabError(f"{path} is not a readable safetensors file ({exc})") from None
    expected = {name: tuple(p.shape) for name, p in sae.named_parameters()}
    found = {name: tuple(t.shape) for name, t in tensors.items()}
    if found != expected:
        raise GptlabError(
            f"{path} holds tensors {found}, not the {expected} its sae.json describes"
        )
    with torch.no_grad():
        for name, p in sae.named_parameters():
            p.copy_(tensors[name])


def save_sae(sae: SparseAutoencoder, out: Path, info: dict) -> None:
    """Write the weights, then sae.json (the mark of a complete folder)."""
    out.mkdir(parents=True, exist_ok=True)
    save_weights(sae, out / WEIGHTS_FILE)
    config = {
        "format": FORMAT,
        "kind": sae.kind,
        "d_in": sae.d_in,
        "d_sae": sae.d_sae,
        "k": sae.k,
        **info,
    }
    atomic_write_text(out / CONFIG_FILE, json.dumps(config, indent=2) + "\n")


def model_fingerprint(model) -> str:
    """A short hash of the model's token embedding: which weights an SAE was trained on.

    Shape and hook alone let an SAE of another model with the same width steer this one, which
    runs but means nothing. The embedding changes with any training, so a run that trained on
    after its SAE was made no longer matches either.
    """
    embedding = model.wte.weight[: model.config.vocab_size].detach().float().cpu().contiguous()
    return hashlib.sha256(embedding.numpy().tobytes()).hexdigest()[:16]


def check_sae_model(config: dict, model, folder: str | Path) -> None:
    """Refuse an SAE trained on other weights than `model` (folders written before the
    fingerprint existed are taken on trust)."""
    expected = config.get("model_fingerprint")
    if expected is not None and expected != model_fingerprint(model):
        raise GptlabError(
            f"the SAE in {folder} was trained on other weights than this model has (it read "
            f"{config['model']} then; the token embeddings differ): train an SAE on this model"
        )


def read_sae_config(folder: str | Path) -> dict:
    folder = Path(folder)
    if not folder.is_dir():
        raise GptlabError(f"SAE folder {folder} does not exist (train one with gptlab sae train)")
    if not (folder / CONFIG_FILE).is_file():
        raise GptlabError(
            f"{folder} holds no {CONFIG_FILE}: not a finished SAE (still training? resume it with "
            "gptlab sae train --resume)"
        )
    config = read_json(folder / CONFIG_FILE, "SAE config")
    if config.get("format") != FORMAT or config.get("kind") not in KINDS:
        raise GptlabError(f"{folder / CONFIG_FILE} is not a gptlab SAE config")
    for key in ("d_in", "d_sae", "k", "model", "hook"):
        if key not in config:
            raise GptlabError(f"{folder / CONFIG_FILE} lacks {key!r}; the folder is damaged")
    for key in ("d_in", "d_sae", "k"):
        value = config[key]
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise GptlabError(
                f"{folder / CONFIG_FILE}: {key} must be a positive integer, got {value!r}; "
                "the folder is damaged"
            )
    if config["kind"] == "topk" and config["k"] > config["d_sae"]:
        raise GptlabError(
            f"{folder / CONFIG_FILE}: k ({config['k']}) is more than d_sae ({config['d_sae']}); "
            "the folder is damaged"
        )
    for key in ("model", "hook"):
        if not isinstance(config[key], str) or not config[key]:
            raise GptlabError(
                f"{folder / CONFIG_FILE}: {key} must name a {key}, got {config[key]!r}; "
                "the folder is damaged"
            )
    return config


def sae_data(config: dict, folder: str | Path) -> str:
    """The prepared folder sae.json says the SAE was trained on (eval and features read it)."""
    data = config.get("data")
    if not isinstance(data, str) or not data:
        raise GptlabError(
            f"{Path(folder) / CONFIG_FILE} names no prepared data folder (data); "
            "the folder is damaged"
        )
    return data


def load_sae(
    folder: str | Path, device: str | torch.device = "cpu"
) -> tuple[SparseAutoencoder, dict]:
    """(the SAE in eval mode, its sae.json) from an SAE folder."""
    config = read_sae_config(folder)
    require_memory(
        SparseAutoencoder.weight_bytes(config["d_in"], config["d_sae"]),
        f"the SAE in {folder} (d_in {config['d_in']}, d_sae {config['d_sae']})",
    )
    sae = SparseAutoencoder(config["d_in"], config["d_sae"], config["kind"], config["k"])
    load_weights(sae, Path(folder) / WEIGHTS_FILE)
    return sae.to(device).eval(), config


def load_sae_and_model(folder: str | Path, device: str | torch.device = "cpu"):
    """(sae, config, model, tokenizer): the SAE and the model it was trained on, checked to match."""
    from gptlab.checkpoints.open import open_model
    from gptlab.sae.activations import check_hook

    sae, config = load_sae(folder, device)
    if not Path(config["model"]).exists():
        raise GptlabError(
            f"the model this SAE reads, {config['model']}, is not there any more (sae.json names it)"
        )
    model, tokenizer = open_model(config["model"], device)
    check_sae_model(config, model, folder)
    check_hook(model, config["hook"])
    return sae, config, model.eval(), tokenizer


# -- resumable checkpoints -------------------------------------------------------------------------


def latest_checkpoint(out: Path) -> Path | None:
    folder = out / CHECKPOINTS_DIR
    if not folder.is_dir():
        return None
    done = sorted(p for p in folder.glob("step-*") if (p / STATE_FILE).is_file())
    return done[-1] if done else None


def save_checkpoint(out: Path, step: int, sae: SparseAutoencoder, state: dict) -> None:
    """checkpoints/step-N: weights (safetensors) and the rest of the training state (torch.save
    of tensors and plain values, read back with weights_only=True); earlier ones are removed."""
    folder = out / CHECKPOINTS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=".incomplete-", dir=folder))
    try:
        save_weights(sae, stage / WEIGHTS_FILE)
        atomic_write(stage / STATE_FILE, lambda tmp: torch.save(state, tmp))
        stage.rename(folder / f"step-{step:07d}")
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    for old in folder.iterdir():
        if old.name != f"step-{step:07d}":
            shutil.rmtree(old, ignore_errors=True)


def read_checkpoint_state(checkpoint: Path) -> dict:
    """The training state (optimizer, step, options ...) a checkpoint folder holds."""
    try:
        state = torch.load(checkpoint / STATE_FILE, weights_only=True)
    except Exception as exc:  # a damaged file: any unpickling error
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise GptlabError(
            f"{checkpoint / STATE_FILE} cannot be read ({first_line}); start again (overwrite)"
        ) from None
    if not isinstance(state, dict) or not isinstance(state.get("options"), dict):
        raise GptlabError(
            f"{checkpoint / STATE_FILE} is not an SAE training state; start again (overwrite)"
        )
    return state


def load_checkpoint(checkpoint: Path, sae: SparseAutoencoder) -> dict:
    load_weights(sae, checkpoint / WEIGHTS_FILE)
    return read_checkpoint_state(checkpoint)


# -- SAELens --------------------------------------------------------------------------------------


def saelens_config(config: dict) -> dict:
    """cfg.json for SAELens' SAE.load_from_disk (its "topk" or "standard" architecture)."""
    common = {
        "d_in": config["d_in"],
        "d_sae": config["d_sae"],
        "dtype": "float32",
        "device": "cpu",
        "apply_b_dec_to_input": True,  # gptlab always subtracts b_dec before encoding
        "normalize_activations": "none",
        "reshape_activations": "none",
        "metadata": {
            "model_name": str(config["model"]),
            "hook_name": config["hook"],
            "context_size": config.get("context_size"),
            "prepend_bos": False,
            # SAELens reads a config without this as its pre-6.0 layout and drops the metadata.
            "sae_lens_version": SAELENS_FORMAT_VERSION,
        },
    }
    if config["kind"] == "topk":
        return {
            **common,
            "architecture": "topk",
            "k": config["k"],
            "rescale_acts_by_decoder_norm": False,
        }
    return {**common, "architecture": "standard"}


def export_saelens(folder: str | Path, out: str | Path, overwrite: bool = False) -> Path:
    """Write the SAE in `folder` as a SAELens folder (cfg.json + sae_weights.safetensors): the
    tensors are the same, by name and shape. Built under a hidden name, then renamed."""
    out = Path(out)
    _, config = load_sae(folder)  # the weights are read and checked: a damaged SAE is refused
    refuse_overlap(out, {"SAE_DIR": folder, "SAE's model": config["model"]})
    if out.exists():
        if not out.is_dir():
            raise GptlabError(f"{out} is a file; give a folder for the export (out)")
        held = {path.name for path in out.iterdir()}
        if held and not overwrite:
            raise GptlabError(f"{out} is not empty; replace it (overwrite) or pick another folder")
        # --overwrite replaces an earlier export, never a folder of other things (it is deleted)
        foreign = sorted(held - {SAELENS_CONFIG_FILE, SAELENS_WEIGHTS_FILE})
        if foreign:
            raise GptlabError(
                f"{out} holds files an SAELens export does not ({', '.join(foreign[:3])}); "
                "overwrite replaces only an earlier export: pick another folder"
            )
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    try:
        shutil.copyfile(Path(folder) / WEIGHTS_FILE, stage / SAELENS_WEIGHTS_FILE)
        (stage / SAELENS_CONFIG_FILE).write_text(json.dumps(saelens_config(config), indent=2))
        if out.exists():
            shutil.rmtree(out)
        stage.rename(out)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return out
