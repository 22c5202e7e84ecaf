"""Hugging Face GPT-2 weights by folder or hub name: the one place gptlab fetches a model over the
network (into Hugging Face's own cache, through huggingface_hub from the `hf` extra).

gptlab.model.hf reads a local folder's config and weights; this module adds the hub names
("gpt2", "openai-community/gpt2-medium"), so the model floor never downloads.
"""

from __future__ import annotations

from pathlib import Path

from gptlab.errors import GptlabError
from gptlab.model.gpt import GPT
from gptlab.model.hf import (
    GPT2_VOCAB_SIZE,
    HF_CONFIG_FILE,
    HF_PYTORCH_FILE,
    HF_SAFETENSORS_FILE,
    from_hf_state_dict,
    model_config_from_hf_config,
    read_hf_config,
    read_hf_weights,
)
from gptlab.optional import import_optional
from gptlab.tokenizers.base import GPT2Tokenizer


def load_hf_model(dir_or_name: str) -> tuple[GPT, GPT2Tokenizer]:
    """GPT-2 weights in Hugging Face layout, from a local folder or a hub name (e.g. "gpt2").

    A folder needs config.json and model.safetensors (or a sharded safetensors index, or
    pytorch_model.bin, read with torch.load(weights_only=True) so it cannot run code). The model
    comes back in eval mode with the GPT-2 BPE tokenizer.
    """
    path = Path(dir_or_name).expanduser()
    if path.is_dir():
        folder = path
    elif path.exists() or dir_or_name.startswith((".", "/", "~")):  # a path, not a hub name
        raise GptlabError(f"{dir_or_name} is not a folder with Hugging Face GPT-2 weights")
    else:
        folder = download_from_hub(dir_or_name)

    config = model_config_from_hf_config(read_hf_config(folder))
    if config.vocab_size != GPT2_VOCAB_SIZE:
        raise GptlabError(
            f"{dir_or_name} has a vocabulary of {config.vocab_size} tokens, not GPT-2's {GPT2_VOCAB_SIZE}; "
            "gptlab pairs Hugging Face weights with the GPT-2 BPE tokenizer only"
        )
    model = from_hf_state_dict(read_hf_weights(folder), config)
    return model, GPT2Tokenizer()


def download_from_hub(name: str) -> Path:
    """Fetch config.json and the weights of a hub model into the Hugging Face cache; return the folder."""
    hub = import_optional("huggingface_hub", "hf")
    from huggingface_hub.errors import (
        EntryNotFoundError,
        HfHubHTTPError,
        HFValidationError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
    )

    def fetch(filename: str) -> Path:
        return Path(hub.hf_hub_download(repo_id=name, filename=filename))

    try:
        config_path = fetch(HF_CONFIG_FILE)
        try:
            fetch(HF_SAFETENSORS_FILE)
        except EntryNotFoundError:
            fetch(HF_PYTORCH_FILE)  # older repositories only have the PyTorch pickle
    except LocalEntryNotFoundError:
        raise GptlabError(
            f"could not fetch {name!r} from the Hugging Face hub: offline and not in the local cache "
            "(connect to the internet, or pass a local folder with config.json and model.safetensors)"
        ) from None
    except (RepositoryNotFoundError, HFValidationError):
        raise GptlabError(
            f"{name!r} is neither a local folder nor a model on the Hugging Face hub "
            "(check the name, or pass a local folder with config.json and model.safetensors)"
        ) from None
    except (EntryNotFoundError, HfHubHTTPError, OSError) as exc:
        raise GptlabError(f"could not fetch {name!r} from the Hugging Face hub ({exc})") from None
    return config_path.parent
