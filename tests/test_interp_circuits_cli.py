"""The circuit-hunting inspect tools end to end on a tiny saved model: files, numbers, errors."""

import json

import pytest
from interp_testing import random_model

from gptlab.checkpoints.model_folder import save_model
from gptlab.cli import main
from gptlab.tokenizers.base import CharTokenizer

ALPHABET = "abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ,.!?"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    tokenizer = CharTokenizer.from_text(ALPHABET)
    folder = tmp_path_factory.mktemp("model")
    save_model(
        folder, random_model(vocab_size=tokenizer.vocab_size, block_size=64, n_layer=2), tokenizer
    )
    return str(folder)


def run_tool(tool, checkpoint, *args):
    return main(["inspect", tool, "--checkpoint", checkpoint, "--device", "cpu", *args])


IOI = ["--ioi", "2", "--template", "2"]
TOOLS = {
    "heads": (["--batch", "2", "--length", "8"], ["heads.png", "heads.json"]),
    "loss": (
        ["--batch", "2", "--length", "8", "--repeats", "3", "--ablate", "1.0", "--ablate", "0.2"],
        ["loss.png", "loss.json"],
    ),
    "circuits": (
        ["--layer", "1", "--head", "2", "--positions", "8"],
        ["ov.png", "qk.png", "positional_qk.png", "circuits.json"],
    ),
    "composition": ([], ["composition.png", "composition.json"]),
    "prompt-set": (IOI, ["attribution.png", "ablation.png", "prompt_set.json"]),
    "patch-sites": (
        IOI + ["--site", "resid_pre", "--site", "v"],
        ["resid_pre.png", "v.png", "patch_sites.json"],
    ),
    "path-patch": (
        IOI + ["--layer", "1", "--head", "0", "--input", "k"],
        ["path_patching.png", "path_patching.json"],
    ),
    "attribution-patch": (IOI, ["estimate.png", "actual.png", "attribution_patching.json"]),
}


@pytest.mark.parametrize("tool", TOOLS)
def test_every_circuit_tool_prints_a_table_and_writes_its_files(tool, checkpoint, tmp_path, capsys):
    args, files = TOOLS[tool]
    out = tmp_path / "out"
    assert run_tool(tool, checkpoint, "--out", str(out), *args) == 0
    printed = capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == sorted(files)
    for name in files:
        assert str(out / name) in printed
        if name.endswith(".json"):
            json.loads((out / name).read_text())  # valid JSON (no NaN)
    assert "---" in printed


def test_heads_json_is_keyed_by_detector_and_custom_pattern(checkpoint, tmp_path):
    pattern = tmp_path / "p.json"
    pattern.write_text(json.dumps([[1.0 if j == 0 else 0.0 for j in range(8)] for _ in range(8)]))
    out = tmp_path / "h"
    args = [
        "--detect",
        "induction,previous-token",
        "--length",
        "4",
        "--batch",
        "2",
        "--pattern",
        str(pattern),
    ]
    assert run_tool("heads", checkpoint, "--out", str(out), *args) == 0
    data = json.loads((out / "heads.json").read_text())
    assert set(data) == {"sequences", "induction", "previous-token", "custom"}
    assert len(data["induction"]) == 2 and len(data["induction"][0]) == 4  # layers x heads


def test_prompts_file_and_repeated_loss_numbers(checkpoint, tmp_path, capsys):
    rows = [
        {
            "clean": "When A and B met, B gave it to ",
            "corrupted": "When A and B met, C gave it to ",
            "answer": "A",
            "wrong": "B",
        },
        {
            "clean": "When D and E met, E gave it to ",
            "corrupted": "When D and E met, F gave it to ",
            "answer": "D",
            "wrong": "E",
        },
    ]
    path = tmp_path / "set.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    assert (
        run_tool("prompt-set", checkpoint, "--out", str(tmp_path / "s"), "--prompts", str(path))
        == 0
    )
    data = json.loads((tmp_path / "s" / "prompt_set.json").read_text())
    assert data["attribution"]["sum_of_components"] == pytest.approx(
        data["attribution"]["logit_diff"], abs=1e-4
    )
    assert run_tool("loss", checkpoint, "--out", str(tmp_path / "l"), "--batch", "3") == 0
    loss = json.loads((tmp_path / "l" / "loss.json").read_text())
    assert loss["length"] == 32 and len(loss["position_loss"]) == 63  # default length fits 64
    assert f"{loss['repeated_half_loss']:.4f}" in capsys.readouterr().out


def test_loss_with_heads_ablated_matches_the_library(checkpoint, tmp_path):
    from gptlab.checkpoints.load import load_model
    from gptlab.interp.ablation import ablation_hooks
    from gptlab.interp.induction import repeated_tokens_loss

    out = tmp_path / "a"
    assert run_tool("loss", checkpoint, "--out", str(out), "--batch", "2", "--ablate", "1.3") == 0
    data = json.loads((out / "loss.json").read_text())
    model, _ = load_model(checkpoint)
    expected = repeated_tokens_loss(model, 32, 2, 2, 0, hooks=ablation_hooks({1: [3]}))
    assert data["ablated"]["repeated_half_loss"] == pytest.approx(expected.repeated_loss, abs=1e-5)
    assert data["ablated"]["heads"] == ["1.3"]


BAD_INPUT = [
    (
        ["circuits", "--layer", "2", "--head", "0"],
        "layer 2 is out of range: this model has layers 0..1",
    ),
    (
        ["circuits", "--layer", "0", "--head", "4"],
        "head 4 is out of range: this model has heads 0..3",
    ),
    (
        ["path-patch", *IOI, "--layer", "0", "--head", "1"],
        "the receiver head must be in layer 1 or later",
    ),
    (["path-patch", *IOI, "--layer", "5", "--head", "1"], "layer 5 is out of range"),
    (["heads", "--detect", "induction,copy"], "unknown detector copy"),
    (["heads", "--length", "40"], "use a length of 32 or less"),
    (["heads", "--length", "4", "--pattern", "missing.json"], "missing.json"),
    (["prompt-set", "--prompts", "missing.jsonl"], "missing.jsonl"),
    (["prompt-set", "--ioi", "2", "--template", "9"], "IOI template 9 does not exist"),
    (["loss", "--prompt", "a"], "at least 2"),
    (["loss", "--ablate", "1"], "--ablate '1' is not LAYER.HEAD"),
    (["loss", "--ablate", "3.0"], "layer 3 is out of range"),
]


@pytest.mark.parametrize(
    "args, message", BAD_INPUT, ids=[a[0] + str(i) for i, (a, _) in enumerate(BAD_INPUT)]
)
def test_bad_input_is_a_one_line_error(args, message, checkpoint, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code = run_tool(args[0], checkpoint, "--out", str(tmp_path), *args[1:])
    err = capsys.readouterr().err
    assert code == 1
    assert message in err
    assert err.count("\n") == 1 and err.startswith("gptlab: error: ")


def tokenizers():
    from gptlab.tokenizers.base import GPT2Tokenizer
    from gptlab.tokenizers.bpe import train_bpe

    text = "When Mary and John went to the store, John gave a drink to Mary. " * 20
    return {
        "char": CharTokenizer.from_text(ALPHABET),
        "gpt2": GPT2Tokenizer(),
        "own-bpe": train_bpe([text], vocab_size=300, progress=False),
    }


@pytest.mark.parametrize("name", ["char", "gpt2", "own-bpe"])
def test_detectors_loss_and_ioi_work_with_every_tokenizer(name, tmp_path, capsys):
    tokenizer = tokenizers()[name]
    folder = tmp_path / "model"
    model = random_model(vocab_size=tokenizer.vocab_size, block_size=64, n_layer=2, n_embd=16)
    save_model(folder, model, tokenizer)
    out = tmp_path / "out"
    assert run_tool("heads", str(folder), "--out", str(out), "--batch", "2", "--length", "6") == 0
    assert run_tool("loss", str(folder), "--out", str(out), "--batch", "2", "--length", "6") == 0
    assert run_tool("prompt-set", str(folder), "--out", str(out), "--ioi", "3") == 0
    data = json.loads((out / "prompt_set.json").read_text())
    answers = {row["answer"] for row in data["prompts"]}
    assert all(len(tokenizer.encode(a)) == 1 for a in answers)
    if name == "gpt2":
        assert answers <= {
            " " + n
            for n in (
                "Mary",
                "John",
                "Alice",
                "Bob",
                "Tom",
                "James",
                "Anna",
                "Paul",
                "Sarah",
                "David",
                "Lisa",
                "Mark",
                "Kate",
                "Peter",
                "Emma",
                "Jack",
                "Laura",
                "Mike",
                "Ben",
                "Rose",
                "Sam",
                "Dan",
            )
        }


def test_an_unknown_patching_site_names_the_valid_ones(checkpoint, tmp_path, capsys):
    assert (
        run_tool("patch-sites", checkpoint, "--out", str(tmp_path), *IOI, "--site", "mlp_in") == 1
    )
    assert "unknown patching site 'mlp_in': use one of resid_pre" in capsys.readouterr().err
