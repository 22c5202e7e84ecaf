"""Parameter accounting, checked against transformers' GPT2LMHeadModel and against hand counts."""

import dataclasses

import pytest
import torch

from gptlab.checkpoints.model_folder import save_model
from gptlab.cli import main
from gptlab.model import GPT
from gptlab.model.config import ModelConfig, model_preset
from gptlab.model.params import count_parameters

GPT2_WITH_TYING = 124_439_808
GPT2_WITHOUT_TYING = 163_037_184


def rows(counts) -> dict[str, tuple[int, int | None]]:
    return {row.component.split(" (")[0]: (row.total, row.per_layer) for row in counts.rows}


def test_gpt2_totals_match_transformers():
    transformers = pytest.importorskip("transformers")
    # The gpt2 preset pads the vocabulary to 50304 rows for speed; OpenAI's shape has 50257.
    counts = count_parameters(dataclasses.replace(model_preset("gpt2"), pad_vocab_multiple=1))
    assert counts.total_with_tying == GPT2_WITH_TYING
    assert counts.total_without_tying == GPT2_WITHOUT_TYING
    # The reference: Hugging Face's own model, built on the meta device (no memory, no download).
    with torch.device("meta"):
        tied = transformers.GPT2LMHeadModel(transformers.GPT2Config())
        untied = transformers.GPT2LMHeadModel(transformers.GPT2Config(tie_word_embeddings=False))
    assert tied.num_parameters() == counts.total_with_tying
    assert untied.num_parameters() == counts.total_without_tying
    assert counts.memory_bytes("fp32") == 4 * GPT2_WITH_TYING
    assert counts.memory_bytes("bf16") == 2 * GPT2_WITH_TYING


def test_tiny_config_rows_by_hand():
    V, T, L, C = 97, 32, 2, 32
    counts = count_parameters(
        ModelConfig(vocab_size=V, block_size=T, n_layer=L, n_head=4, n_embd=C)
    )
    attention = (C * 3 * C + 3 * C) + (C * C + C)  # c_attn, c_proj with biases
    mlp = (C * 4 * C + 4 * C) + (4 * C * C + C)  # c_fc, c_proj with biases
    layer_norms = 2 * 2 * C  # ln_1, ln_2: weight and bias
    assert rows(counts) == {
        "token embedding": (V * C, None),
        "position embedding": (T * C, None),
        "attention": (L * attention, attention),
        "MLP": (L * mlp, mlp),
        "layer norms": (L * layer_norms + 2 * C, layer_norms),  # + ln_f
        "head": (V * C, None),
    }
    assert counts.tied
    body = V * C + T * C + L * (attention + mlp + layer_norms) + 2 * C
    assert counts.total_with_tying == body
    assert counts.total_without_tying == body + V * C
    # The real (allocated) model agrees.
    model = GPT(counts.config)
    assert sum(p.numel() for p in model.parameters()) == body


def test_padded_vocab_counts_padded_rows():
    counts = count_parameters(
        ModelConfig(
            vocab_size=97, block_size=8, n_layer=1, n_head=1, n_embd=8, pad_vocab_multiple=64
        )
    )
    assert rows(counts)["token embedding"] == (128 * 8, None)
    assert counts.padding == (128 - 97) * 8


def test_cli_params_preset(capsys):
    assert main(["params", "--preset", "gpt2"]) == 0
    out = capsys.readouterr().out
    # The preset's model as trained: 47 padding rows of 768 on top of OpenAI's 124,439,808.
    assert "(padded to 50304)" in out
    assert f"{GPT2_WITH_TYING + 47 * 768:,}" in out
    assert "of which padding rows (never used)" in out and f"{47 * 768:,}" in out
    assert "474.8 MiB" in out  # 124,475,904 * 4 bytes
    # OpenAI's count on a line of its own (issue 27: a learner checking the book had to subtract).
    published = next(line for line in out.splitlines() if "the published count" in line)
    assert f"{GPT2_WITH_TYING:,}" in published and GPT2_WITH_TYING == 124_439_808


def test_cli_params_checkpoint(tmp_path, capsys, tiny_config):
    save_model(tmp_path, GPT(tiny_config))
    assert main(["params", "--checkpoint", str(tmp_path)]) == 0
    total = count_parameters(tiny_config).total_with_tying
    assert f"{total:,}" in capsys.readouterr().out


def test_cli_params_unknown_preset(capsys):
    assert main(["params", "--preset", "gpt5"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("gptlab: error: unknown preset 'gpt5'") and err.count("\n") == 1
