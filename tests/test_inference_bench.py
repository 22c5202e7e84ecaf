"""`gptlab bench generate` on a tiny checkpoint: every row runs and decodes like the others.
Not a timing test: speed goes in BENCHMARKS.md."""

import json
import string

import pytest
import torch

from gptlab.checkpoints.model_folder import save_model
from gptlab.cli import main
from gptlab.model import GPT
from gptlab.model.config import ModelConfig
from gptlab.tokenizers.base import CharTokenizer

CHARS = list(" .,;!?\n" + string.ascii_lowercase + string.ascii_uppercase)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    model = GPT(ModelConfig(vocab_size=len(CHARS), block_size=32, n_layer=2, n_head=4, n_embd=32))
    with torch.no_grad():  # large weights: greedy text varies, so agreement means something
        for param in model.parameters():
            if param.dim() > 1:
                param.normal_(0.0, 0.3)
    path = tmp_path_factory.mktemp("bench") / "tiny"
    save_model(path, model, CharTokenizer(CHARS))
    return path


def test_quick_bench_runs_every_row_and_they_agree(checkpoint, tmp_path, capsys):
    pytest.importorskip("transformers")
    text = tmp_path / "text.txt"
    text.write_text("the quick brown fox jumps over the lazy dog. " * 20)
    flags = ["--checkpoint", str(checkpoint), "--quick", "--device", "cpu", "--prompt-tokens", "4"]
    flags += ["--draft", str(checkpoint), "--ppl-text", str(text)]
    assert main(["bench", "generate", *flags, "--json", "--plot", str(tmp_path / "b.png")]) == 0
    result = json.loads(capsys.readouterr().out)
    rows = {row["name"]: row for row in result["rows"]}
    assert list(rows) == [
        "transformers generate",
        "no cache",
        "dynamic cache",
        "dynamic cache, nn.Linear layout",
        "static cache",
        "bf16, dynamic cache",
        "fp16",
        "int8, dynamic cache",
        "int8, static cache",
        "speculative (draft 0.0M, k=4)",
        "dynamic cache, batch 2",
    ]
    assert "needs a GPU" in rows["fp16"]["skipped"]
    ran = [row for row in rows.values() if not row.get("skipped")]
    assert all(row["tokens_per_s"] > 0 and row["peak_memory_mb"] > 0 for row in ran)
    exact = ["transformers generate", "no cache", "static cache", "dynamic cache, batch 2"]
    exact.append("dynamic cache, nn.Linear layout")
    assert all(rows[name]["same_greedy_tokens_as_dynamic_cache"] == 8 for name in exact)
    speculative = rows["speculative (draft 0.0M, k=4)"]
    assert speculative["same_greedy_tokens_as_dynamic_cache"] == 8
    assert speculative["notes"][0].startswith("acceptance 100%")  # its own draft
    assert rows["int8, dynamic cache"]["perplexity"] > 0
    assert rows["int8, dynamic cache"]["weights_mb"] < rows["dynamic cache"]["weights_mb"]
    assert (tmp_path / "b.png").read_bytes()[:4] == b"\x89PNG"

    assert main(["bench", "generate", *flags]) == 0
    table = capsys.readouterr().out
    assert "| static cache | 1 |" in table and "Perplexity (fp32)" in table


def test_a_model_transformers_cannot_run_is_benched_against_the_dynamic_cache(
    tmp_path, capsys, monkeypatch, shared_data
):
    """Rotary positions and squared-ReLU are not GPT-2: the transformers row is skipped with its
    reason, and the speedups are relative to gptlab's dynamic cache instead. The default
    perplexity text (TinyShakespeare) has characters this model's vocabulary lacks: the bench
    leaves the perplexity out with a note instead of failing after the timing."""
    pytest.importorskip("transformers")
    shakespeare = shared_data / "tinyshakespeare" / "input.txt"
    monkeypatch.setattr("gptlab.data.sources.download_path", lambda name: shakespeare)
    torch.manual_seed(0)
    config = ModelConfig(
        vocab_size=len(CHARS),
        block_size=32,
        n_layer=2,
        n_head=4,
        n_embd=32,
        pos="rope",
        mlp="relu2",
    )
    save_model(tmp_path / "rope", GPT(config), CharTokenizer(CHARS))
    flags = ["--checkpoint", str(tmp_path / "rope"), "--quick", "--device", "cpu"]
    assert (
        main(["bench", "generate", *flags, "--prompt-tokens", "4", "--rows", "static cache"]) == 0
    )
    captured = capsys.readouterr()
    table = captured.out
    assert "no perplexity column (text has 3 character(s)" in captured.err
    assert "vs dynamic cache" in table and "| dynamic cache | 1 |" in table
    assert "transformers' GPT-2 cannot run this model" in table
    assert "| 1.00x |" in table  # the dynamic cache against itself


def test_bench_bad_input_is_one_line(checkpoint, capsys):
    assert main(["bench", "generate", "--checkpoint", str(checkpoint), "--new-tokens", "40"]) == 1
    assert "block_size" in capsys.readouterr().err


def test_a_rows_pattern_that_matches_no_row_is_one_line(checkpoint, capsys):
    flags = ["--checkpoint", str(checkpoint), "--quick", "--device", "cpu", "--rows", "int9*"]
    assert main(["bench", "generate", *flags]) == 1
    err = capsys.readouterr().err  # a note on the perplexity text may come first: the last line
    last = err.strip().splitlines()[-1]
    assert last.startswith("gptlab: error: --rows 'int9*' matches no row")
    assert "'int8, dynamic cache'" in last and "Traceback" not in err


def test_quick_keeps_the_values_given_explicitly(checkpoint, tmp_path, capsys):
    pytest.importorskip("transformers")
    text = tmp_path / "text.txt"  # the model's own characters (not the cache's TinyShakespeare)
    text.write_text("the quick brown fox jumps over the lazy dog. " * 20)
    flags = ["--checkpoint", str(checkpoint), "--quick", "--device", "cpu", "--prompt-tokens", "4"]
    flags += ["--ppl-text", str(text)]
    flags += ["--new-tokens", "5", "--rows", "dynamic cache", "--json"]
    assert main(["bench", "generate", *flags]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["new_tokens"] == 5 and result["repeats"] == 1  # given, and --quick's


def test_bytes_read_per_token_by_hand():
    """A step reads every matrix once (the tied head reads the token table once) and one row of
    the position table, which is left out; int8 linears count one byte per weight."""
    from gptlab.bench.measure import bandwidth_gb_s, read_bytes_per_token
    from gptlab.inference.precision import prepare_model

    torch.manual_seed(0)
    model = GPT(ModelConfig(vocab_size=len(CHARS), block_size=32, n_layer=2, n_head=4, n_embd=32))
    every = dict(model.named_parameters())  # the tied head appears once, as wte.weight
    expected = sum(p.numel() for name, p in every.items() if not name.startswith("wpe")) * 4
    assert read_bytes_per_token(model) == expected
    quantized = prepare_model(model, quantize="int8")
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    weights = sum(m.weight.numel() for m in linears)  # int8: one byte each
    biases = sum(m.bias.numel() for m in linears if m.bias is not None) * 4
    norms = sum(p.numel() for n, p in every.items() if ".ln_" in n or n.startswith("ln_f")) * 4
    assert read_bytes_per_token(quantized) == weights + biases + norms
    assert bandwidth_gb_s(torch.device("cpu"), repeats=1) > 0
