"""open_model: every way a user names a model opens the model that was saved there."""

import pytest
import torch

from gptlab.checkpoints.model_folder import save_model
from gptlab.checkpoints.open import open_model
from gptlab.checkpoints.run import CHECKPOINTS_DIR, checkpoint_name
from gptlab.errors import GptlabError
from gptlab.model import GPT
from gptlab.model.config import ModelConfig
from gptlab.model.hf import export_hf
from gptlab.tokenizers.base import CharTokenizer, GPT2Tokenizer


def random_model(config: ModelConfig, seed: int) -> GPT:
    torch.manual_seed(seed)
    return GPT(config)


def same_weights(a: GPT, b: GPT) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.fixture
def run_with_two_checkpoints(tmp_path, tiny_config):
    """A run folder by hand: step 1 (the best, by its checkpoint.json) and step 2 (the last)."""
    import json

    run = tmp_path / "run"
    tokenizer = CharTokenizer.from_text("".join(chr(32 + i) for i in range(97)))
    models = {}
    for step, val_loss in ((1, 1.0), (2, 2.0)):
        folder = run / CHECKPOINTS_DIR / checkpoint_name(step)
        models[step] = random_model(tiny_config, seed=step)
        save_model(folder, models[step], tokenizer)
        info = {"step": step, "tokens": 0, "elapsed_s": 0.0, "val_loss": val_loss}
        info |= {"selection_val_loss": val_loss, "best_val_loss": 1.0}
        (folder / "checkpoint.json").write_text(json.dumps(info))
        (folder / "training_state.pt").write_bytes(b"")
    (run / "metrics.jsonl").write_text("")
    return run, models


def test_a_run_opens_at_its_best_last_or_a_step(run_with_two_checkpoints):
    run, models = run_with_two_checkpoints
    cases = {str(run): 1, f"{run}@best": 1, f"{run}@last": 2, f"{run}@2": 2, f"{run}@1": 1}
    for spec, step in cases.items():
        model, tokenizer = open_model(spec)
        assert same_weights(model, models[step]), spec
        assert tokenizer is not None
    for spec, message in ((f"{run}@7", "no checkpoint 7"), (f"{run}@first", "best, last or")):
        with pytest.raises(GptlabError, match=message):
            open_model(spec)


def test_a_hugging_face_folder_and_hf_name_open_the_same_weights(tmp_path):
    pytest.importorskip("transformers")
    config = ModelConfig(vocab_size=50257, block_size=16, n_layer=1, n_head=2, n_embd=8)
    model = random_model(config, seed=3)
    export_hf(model, tmp_path / "hf", GPT2Tokenizer())
    for spec in (str(tmp_path / "hf"), f"hf:{tmp_path / 'hf'}"):
        opened, tokenizer = open_model(spec)
        assert same_weights(opened, model), spec
        assert isinstance(tokenizer, GPT2Tokenizer)


def test_a_preset_is_the_same_random_model_every_time():
    a, tokenizer = open_model("preset:gpt2")
    b, _ = open_model("preset:gpt2")
    assert same_weights(a, b) and isinstance(tokenizer, GPT2Tokenizer)
    with pytest.raises(GptlabError, match="character-level shape"):
        open_model("preset:shakespeare-char")


def test_a_folder_without_tokenizer_is_refused_unless_asked(tmp_path, tiny_config):
    model = random_model(tiny_config, seed=0)
    save_model(tmp_path / "m", model)
    with pytest.raises(GptlabError, match="cannot turn text into tokens"):
        open_model(tmp_path / "m")
    opened, tokenizer = open_model(tmp_path / "m", require_tokenizer=False)
    assert tokenizer is None and same_weights(opened, model)
