"""`gptlab sample` end to end on a tiny checkpoint with a TinyShakespeare character tokenizer."""

import pytest
import torch

from gptlab.checkpoints.load import load_model
from gptlab.checkpoints.model_folder import save_model
from gptlab.cli import main
from gptlab.inference.generate import GenerationConfig, generate_text
from gptlab.model import GPT
from gptlab.model.config import ModelConfig
from gptlab.tokenizers.base import CharTokenizer

PROMPT = "ROMEO:\nBut soft"


@pytest.fixture
def checkpoint(tmp_path, shared_data):
    tokenizer = CharTokenizer.from_text(
        (shared_data / "tinyshakespeare" / "input.txt").read_text(encoding="utf-8")
    )
    torch.manual_seed(0)
    model = GPT(
        ModelConfig(vocab_size=tokenizer.vocab_size, block_size=32, n_layer=2, n_head=2, n_embd=32)
    )
    # Large random weights, so the greedy text varies instead of repeating one character.
    with torch.no_grad():
        for param in model.parameters():
            if param.dim() > 1:
                param.normal_(0.0, 0.3)
    save_model(tmp_path / "model", model, tokenizer)
    return tmp_path / "model"


def sample(capsys, checkpoint, *flags) -> tuple[int, str, str]:
    code = main(["sample", "--checkpoint", str(checkpoint), "--device", "cpu", *flags])
    out, err = capsys.readouterr()
    return code, out, err


def test_greedy_prints_the_library_continuation(capsys, checkpoint):
    code, out, _ = sample(
        capsys, checkpoint, "--prompt", PROMPT, "--greedy", "--max-new-tokens", "50"
    )
    assert code == 0
    model, tokenizer = load_model(checkpoint)
    expected = generate_text(
        model, tokenizer, PROMPT, GenerationConfig(max_new_tokens=50, temperature=0)
    )[0].text
    assert len(expected) == 50 and len(set(expected)) > 5
    assert out == expected + "\n"
    greedy_flags = ("--prompt", PROMPT, "--greedy", "--max-new-tokens", "50")
    for flags in ((), ("--no-stream",), ("--seed", "123", "--temperature", "1.5")):
        assert sample(capsys, checkpoint, *greedy_flags, *flags)[1] == out  # greedy ignores these


def test_stop_string_and_seeded_samples(capsys, checkpoint):
    _, greedy_out, _ = sample(
        capsys, checkpoint, "--prompt", PROMPT, "--greedy", "--max-new-tokens", "50"
    )
    stop = greedy_out[20:23]
    code, out, _ = sample(
        capsys, checkpoint, "--prompt", PROMPT, "--greedy", "--max-new-tokens", "50", "--stop", stop
    )
    assert code == 0 and out == greedy_out[: greedy_out.find(stop)] + "\n"

    flags = (
        "--prompt",
        PROMPT,
        "--num-samples",
        "2",
        "--seed",
        "7",
        "--top-k",
        "10",
        "--top-p",
        "0.9",
    )
    code, first, _ = sample(capsys, checkpoint, *flags, "--max-new-tokens", "20")
    assert code == 0
    assert first.count("--- sample ") == 2 and "--- sample 2/2 ---\n" in first
    assert sample(capsys, checkpoint, *flags, "--max-new-tokens", "20")[1] == first


@pytest.mark.parametrize(
    "flags, message",
    [
        (("--prompt", ""), "prompt is empty"),
        (("--prompt", "hi", "--max-new-tokens", "0"), "max_new_tokens"),
        (("--prompt", "hi", "--top-p", "1.5"), "top_p"),
        (("--prompt", "hi", "--temperature", "-1"), "temperature"),
        (("--prompt", "naïve 🙂"), "'ï', '🙂'"),
    ],
)
def test_bad_input_is_one_error_line(capsys, checkpoint, flags, message):
    code, out, err = sample(capsys, checkpoint, *flags)
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and err.startswith("gptlab: error: ") and message in err


def test_missing_checkpoint_is_one_error_line(capsys, tmp_path):
    code, _, err = sample(capsys, tmp_path / "nowhere", "--prompt", "hi")
    assert code == 1
    assert err.count("\n") == 1 and err.startswith("gptlab: error: ") and "does not exist" in err


def test_speed_switches_keep_the_greedy_text(capsys, checkpoint):
    """--cache static/none give the same text; fp16 on CPU says in one line that fp32 is used."""
    greedy_flags = ("--prompt", PROMPT, "--greedy", "--max-new-tokens", "30")
    _, reference, _ = sample(capsys, checkpoint, *greedy_flags)
    for flags in (("--cache", "static"), ("--cache", "none"), ("--dtype", "fp16")):
        code, out, err = sample(capsys, checkpoint, *greedy_flags, *flags)
        assert code == 0 and out == reference
    assert (
        err
        == "gptlab: warning: fp16 needs a GPU (CPU fp16 matmuls are emulated and slow); using fp32\n"
    )
    for flags in (("--dtype", "bf16"), ("--quantize", "int8")):
        code, out, err = sample(capsys, checkpoint, *greedy_flags, *flags)
        assert code == 0 and len(out) == 31 and err == ""  # 30 characters and a newline
    code, _, err = sample(
        capsys, checkpoint, *greedy_flags, "--dtype", "bf16", "--quantize", "int8"
    )
    assert code == 1 and err.count("\n") == 1 and "leave the dtype at fp32" in err
