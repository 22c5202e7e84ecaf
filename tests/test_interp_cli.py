"""`gptlab inspect ...` end to end on a tiny saved model: tables, files, and one-line errors."""

import dataclasses
import json

import pytest
import torch
from interp_testing import random_model

from gptlab.checkpoints.model_folder import save_model
from gptlab.cli import main
from gptlab.model import GPT
from gptlab.model.config import ModelConfig
from gptlab.tokenizers.base import CharTokenizer

ALPHABET = "abcdefghijklmnopqrstuvwxyz ,.!?"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    tokenizer = CharTokenizer.from_text(ALPHABET)
    folder = tmp_path_factory.mktemp("model")
    save_model(folder, random_model(vocab_size=tokenizer.vocab_size, block_size=32), tokenizer)
    return str(folder)


def run_tool(tool: str, checkpoint: str, *args: str) -> int:
    return main(["inspect", tool, "--checkpoint", checkpoint, "--device", "cpu", *args])


TOOLS = {
    "attention": (["--prompt", "hello world"], ["attention.png", "attention.html"]),
    "logit-lens": (
        ["--prompt", "hello world", "--top-k", "3"],
        ["logit_lens.json", "next_token_prob.png"],
    ),
    "attribute": (
        ["--prompt", "hello world", "--target", "o"],
        ["attribute_heads.png", "attribute_components.png", "attribution.json"],
    ),
    "ablate": (
        ["--prompt", "hello world", "--mode", "mean"],
        ["ablate_heads.png", "ablation.json"],
    ),
    "patch": (
        ["--prompt", "the cat sat", "--corrupted", "the dog sat", "--answer", " ", "--wrong", "s"],
        ["patch_resid.png", "patch_heads.png", "patch.json"],
    ),
    "test-prompt": (["--prompt", "hello wor", "--answer", "ld"], ["test_prompt.json"]),
    "neighbors": (["--token", "e", "--top-k", "4"], ["neighbors.json"]),
}


@pytest.mark.parametrize("tool", TOOLS)
def test_every_tool_prints_a_table_and_writes_its_files(tool, checkpoint, tmp_path, capsys):
    args, files = TOOLS[tool]
    out = tmp_path / "out"
    assert run_tool(tool, checkpoint, "--out", str(out), *args) == 0
    printed = capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == sorted(files)
    for name in files:
        assert str(out / name) in printed
        if name.endswith(".png"):
            assert (out / name).read_bytes()[:4] == b"\x89PNG"
    assert "---" in printed  # a table's rule


def test_files_hold_the_tables_numbers(checkpoint, tmp_path, capsys):
    run_tool("attribute", checkpoint, "--prompt", "hello world", "--out", str(tmp_path / "a"))
    attribution = json.loads((tmp_path / "a" / "attribution.json").read_text())
    assert attribution["sum_of_components"] == pytest.approx(attribution["logit"], abs=1e-4)
    assert f"logit {attribution['logit']:.4f}" in capsys.readouterr().out

    run_tool("logit-lens", checkpoint, "--prompt", "hello world", "--out", str(tmp_path / "l"))
    lens = json.loads((tmp_path / "l" / "logit_lens.json").read_text())
    assert lens["stages"] == ["embed", "block 0", "block 1", "block 2"]
    assert len(lens["next_token_probs"][0]) == len("hello world") - 1


def test_default_output_folder_is_inspect_out_tool(checkpoint, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["inspect", "neighbors", "--checkpoint", checkpoint, "--token", "a"]) == 0
    assert (tmp_path / "inspect_out" / "neighbors" / "neighbors.json").is_file()


BAD_INPUT = [
    (
        ["attention", "--prompt", "abc", "--layer", "3"],
        "layer 3 is out of range: this model has layers 0..2",
    ),
    (
        ["attention", "--prompt", "abc", "--head", "-5"],
        "head -5 is out of range: this model has heads 0..3",
    ),
    (
        ["logit-lens", "--prompt", "abc", "--position", "3"],
        "position 3 is out of range for a 3-token prompt",
    ),
    (
        ["attribute", "--prompt", "abc", "--target", "ab"],
        "--target 'ab' is ['a', 'b'] (2 tokens), not one token",
    ),
    (["ablate", "--prompt", "a"], "at least 2"),
    (
        ["patch", "--prompt", "a cat", "--corrupted", "a bird", "--answer", "s"],
        "clean is 5 tokens ['a', ' ', 'c', 'a', 't'] and corrupted is 6 tokens ['a', ' ', 'b', 'i', 'r', 'd']",
    ),
    (
        ["test-prompt", "--prompt", "x" * 40, "--answer", "y"],
        "longer than the model's block_size (32)",
    ),
    (["neighbors", "--token", "~"], "character vocabulary lacks: '~'"),
]


@pytest.mark.parametrize(
    "args, message", BAD_INPUT, ids=[a[0] + str(i) for i, (a, _) in enumerate(BAD_INPUT)]
)
def test_bad_input_is_a_one_line_error(args, message, checkpoint, tmp_path, capsys):
    code = run_tool(args[0], checkpoint, "--out", str(tmp_path), *args[1:])
    err = capsys.readouterr().err
    assert code == 1
    assert message in err
    assert err.count("\n") == 1 and err.startswith("gptlab: error: ")


def test_ablate_reads_batches_of_a_prepared_dataset(shared_data, tmp_path, capsys):
    from gptlab.data.prepare import prepare_dataset
    from gptlab.data.prepared_folder import load_prepared_tokenizer

    data = prepare_dataset(
        str(shared_data / "tinyshakespeare" / "input.txt"),
        tokenizer="char",
        out=tmp_path / "data",
        max_tokens=20_000,
        workers=1,
        show_progress=False,
    )
    tokenizer = load_prepared_tokenizer(data)
    torch.manual_seed(0)
    model = GPT(
        ModelConfig(vocab_size=tokenizer.vocab_size, block_size=16, n_layer=2, n_head=2, n_embd=16)
    )
    save_model(tmp_path / "model", model, tokenizer)
    out = tmp_path / "out"
    data_args = ["--data", str(data), "--batches", "2", "--batch-size", "3"]
    code = run_tool("ablate", str(tmp_path / "model"), "--out", str(out), *data_args)
    assert code == 0
    result = json.loads((out / "ablation.json").read_text())
    assert result["n_tokens"] == 2 * 3 * 16  # batches x batch size x the model's block_size
    assert f"over {result['n_tokens']} tokens" in capsys.readouterr().out

    # Data tokenized by another tokenizer (here the characters of a smaller text) is refused.
    other = CharTokenizer.from_text("abc")
    save_model(tmp_path / "other", GPT(dataclasses.replace(model.config, vocab_size=3)), other)
    code = run_tool("ablate", str(tmp_path / "other"), "--out", str(out), *data_args)
    err = capsys.readouterr().err
    assert code == 1 and "was tokenized with another tokenizer" in err and err.count("\n") == 1


def test_tools_see_what_a_briefly_trained_model_learned(tmp_path, capsys):
    """After a couple dozen steps on a repeating alphabet, the next letter is the top prediction,
    and the logit lens shows it emerging by the last layer."""
    tokenizer = CharTokenizer.from_text(ALPHABET)
    torch.manual_seed(0)
    config = ModelConfig(
        vocab_size=tokenizer.vocab_size, block_size=16, n_layer=2, n_head=2, n_embd=32
    )
    model = GPT(config)
    text = torch.tensor(tokenizer.encode("abcdefghijklmnopqrstuvwxyz" * 4))
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-2)
    for _ in range(25):
        starts = torch.randint(0, len(text) - 17, (8,))
        batch = torch.stack([text[s : s + 17] for s in starts])  # (8, 17)
        _, loss = model(batch[:, :-1], batch[:, 1:])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    save_model(tmp_path / "model", model, tokenizer)

    run = ["--checkpoint", str(tmp_path / "model"), "--device", "cpu", "--out", str(tmp_path)]
    assert main(["inspect", "test-prompt", *run, "--prompt", "mnopq", "--answer", "rst"]) == 0
    result = json.loads((tmp_path / "test_prompt.json").read_text())
    assert [a["rank"] for a in result["answer"]] == [1, 1, 1]
    assert result["top"][0]["token"] == "r"

    assert main(["inspect", "logit-lens", *run, "--prompt", "defghijk"]) == 0
    lens = json.loads((tmp_path / "logit_lens.json").read_text())
    assert min(lens["next_token_probs"][-1]) > 0.5
    capsys.readouterr()
