"""Shared test set-up: offline tokenizer files, an isolated cache, paths to the real data."""

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# The real sample corpora the repository ships (data/samples/README.md): every clone has them, so
# no test depends on a folder beside the checkout.
SAMPLES = REPO / "data" / "samples"

# gptlab reads GPT-2's BPE files from the copy the repository ships (data/samples/gpt2_bpe). Tests
# that call tiktoken itself as the reference get a tiktoken cache seeded with the same files (it
# keeps each under the sha1 of its address, and checks their sha256), so nothing is downloaded and
# a fresh clone needs nothing beside it.
if "TIKTOKEN_CACHE_DIR" not in os.environ:
    _tiktoken_cache = Path(tempfile.mkdtemp(prefix="gptlab-test-tiktoken-"))
    for _name in ("vocab.bpe", "encoder.json"):
        _url = f"https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/{_name}"
        _key = hashlib.sha1(_url.encode()).hexdigest()
        shutil.copyfile(SAMPLES / "gpt2_bpe" / _name, _tiktoken_cache / _key)
    os.environ["TIKTOKEN_CACHE_DIR"] = str(_tiktoken_cache)
# Every test session gets its own gptlab cache so tests never see a user's downloads.
os.environ["GPTLAB_HOME"] = tempfile.mkdtemp(prefix="gptlab-test-home-")
# Tiny test models gain nothing from threads, and OpenMP threads contending for 2 busy cores make
# them many times slower; subprocesses the tests start inherit the setting through the environment.
os.environ.setdefault("OMP_NUM_THREADS", "1")
# Hugging Face libraries must never try the network during tests.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


import torch  # noqa: E402  (after OMP_NUM_THREADS, which torch reads when it starts)

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shipped samples, laid out as data/samples/NAME/FILE (read-only by convention)."""
    return SAMPLES


@pytest.fixture
def tiny_config():
    from gptlab.model.config import ModelConfig

    return ModelConfig(vocab_size=97, block_size=32, n_layer=2, n_head=4, n_embd=32)


def prepare_shakespeare_head(tmp_path_factory, chars: int) -> Path:
    """The first `chars` characters of the shipped TinyShakespeare, prepared char-level (90/10)."""
    from gptlab.data.prepare import prepare_dataset

    folder = tmp_path_factory.mktemp("shakespeare")
    text_file = folder / "shakespeare_head.txt"
    text = (SAMPLES / "tinyshakespeare" / "input.txt").read_text(encoding="utf-8")
    text_file.write_text(text[:chars], encoding="utf-8")
    return prepare_dataset(
        str(text_file), tokenizer="char", out=folder / "prepared", show_progress=False
    )


@pytest.fixture(scope="module")
def prepared_shakespeare(tmp_path_factory):
    """The first 60,000 characters of TinyShakespeare, prepared char-level (90/10 split)."""
    return prepare_shakespeare_head(tmp_path_factory, 60_000)


@pytest.fixture(scope="module")
def gpt2_model_dir(tmp_path_factory):
    """A saved 1-layer model with GPT-2's tokenizer and vocabulary (the eval CLI tests score it)."""
    from gptlab.checkpoints.model_folder import save_model
    from gptlab.model.config import ModelConfig
    from gptlab.model.gpt import GPT
    from gptlab.tokenizers.base import GPT2Tokenizer

    torch.manual_seed(4)
    directory = tmp_path_factory.mktemp("gpt2-tiny")
    save_model(
        directory,
        GPT(ModelConfig(vocab_size=50257, block_size=32, n_layer=1, n_head=2, n_embd=16)),
        GPT2Tokenizer(),
    )
    return directory
