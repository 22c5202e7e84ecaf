"""The outsider's audit of issue 27 (after the SAE verb, the decode engine, eval bpb and declared
settings landed): each case is one argv that once ended in a traceback, was accepted with a
meaningless value, or destroyed what the user had. Each must now end in one error line naming the
problem, a non-zero exit, and no file changed under the fixtures' root.
"""

from __future__ import annotations

import json
import shlex
import shutil

import pytest
import torch

from gptlab.checkpoints.model_folder import save_model
from gptlab.cli import main
from gptlab.model import GPT
from gptlab.model.config import ModelConfig
from gptlab.sae.folder import save_sae
from gptlab.sae.model import SparseAutoencoder
from gptlab.tokenizers.base import CharTokenizer

VOCAB_TEXT = "abcdefgh \n"
TINY_TRAIN = (
    "model.n_layer=1 model.n_head=2 model.n_embd=16 model.block_size=16 train.micro_batch_size=4 "
    "train.tokens_per_step=64 train.max_steps=1 train.max_seconds=none train.eval_every=0 "
    "train.sample_every=0 train.threads=1"
)

CASES = [
    # an SAE folder whose sae.json was edited or damaged: one line, not a tensor traceback
    ("sae eval {sae_negative}", "d_sae must be a positive integer"),
    ("sae features {sae_negative}", "d_sae must be a positive integer"),
    ("sae eval {sae_k_too_big}", "k (1000) is more than d_sae"),
    ("sae eval {sae_huge}", "memory"),
    ("sae eval {sae_no_data}", "names no prepared data folder"),
    # a damaged training state is one line when --resume reads its settings back
    ("sae train --out {sae_damaged_state} --resume", "cannot be read"),
    ("sae features {sae_no_data}", "names no prepared data folder"),
    ("sample --checkpoint {model} --prompt a --sae {sae_negative} --steer 0:1", "d_sae"),
    (
        "sample --checkpoint {model} --prompt a --sae {sae_other_model} --steer 0:1",
        "trained on other weights",
    ),
    ("sae eval {sae_other_model}", "trained on other weights"),
    # an SAE's size is checked against memory before anything is built or --out made
    (
        "sae train {model} --data {prepared} --hook blocks.0.hook_resid_post --features 1000000000000 --out {new}",
        "memory",
    ),
    (
        "sae train {model} --data {prepared} --hook blocks.0.hook_resid_post --out {new} buffer_size=100000000000",
        "buffer_size",
    ),
    # a damaged SAE is not exported as if it were whole
    ("sae export {sae_truncated} --out {new}", "safetensors"),
    # outputs never land on what the command reads, and --overwrite deletes only an old export
    ("sae features {sae} --export {sae}/sae.json --overwrite", "sae.json it reads"),
    ("sae features {sae} --export {sae}/sae.safetensors --overwrite", "it reads"),
    ("sae features {sae} --export {model}/page.html", "inside the SAE's model"),
    ("sae export {sae} --out {root} --overwrite", "holds the SAE_DIR"),
    ("sae export {sae} --out {sae} --overwrite", "is the SAE_DIR"),
    ("sae export {sae} --out {sae}/inner", "inside the SAE_DIR"),
    ("sae export {sae} --out {other} --overwrite", "replaces only an earlier export"),
    ("sae export {sae} --out {text} --overwrite", "is a file"),
    # an infinite setting passes a one-sided bound (lr > 0) and then poisons the work
    ("train --out {new} data.source={text} {tiny_train} train.lr=inf", "finite"),
    ("train --out {new} data.source={text} {tiny_train} train.max_seconds=inf", "finite"),
    (
        "sae train {model} --data {prepared} --hook blocks.0.hook_resid_post --out {new} lr=inf",
        "finite",
    ),
    ("sample --checkpoint {model} --prompt a --temperature inf", "finite"),
    ("sample --checkpoint {model} --prompt a --repetition-penalty inf", "finite"),
    ("sample --checkpoint {model} --prompt a --sae {sae} --steer 0:inf", "finite"),
    ("sample --checkpoint {model} --prompt a --sae {sae} --steer 0:nan", "finite"),
    ("sample --checkpoint {model} --prompt a --sae {sae} --steer 3:1e308", "at most 1e+06"),
    # sizes: the token buffer decode keeps, and a weight matrix past what bytes can address
    ("sample --checkpoint {model} --prompt a --max-new-tokens 100000000000", "memory"),
    ("sample --checkpoint {model} --prompt a --max-new-tokens 100000000000 --cache none", "memory"),
    (
        "train --out {new} data.source={text} {tiny_train} model.n_embd=1000000000 model.n_head=1",
        "too large",
    ),
]


@pytest.fixture(scope="module")
def places(tmp_path_factory):
    root = tmp_path_factory.mktemp("audit")
    tokenizer = CharTokenizer.from_text(VOCAB_TEXT)
    config = ModelConfig(
        vocab_size=tokenizer.vocab_size, block_size=16, n_layer=1, n_head=2, n_embd=8
    )
    torch.manual_seed(0)
    model = root / "model"
    save_model(model, GPT(config), tokenizer)
    text = root / "corpus.txt"
    text.write_text(VOCAB_TEXT * 400, encoding="utf-8")
    prepared = root / "prepared"
    assert (
        main(["prepare", str(text), "--tokenizer", "char", "--out", str(prepared), "--quiet"]) == 0
    )

    sae_model = SparseAutoencoder(8, 16, "topk", 4)
    sae_model.reset_parameters(torch.Generator().manual_seed(0))
    sae = root / "sae"
    info = {"model": str(model), "hook": "blocks.0.hook_resid_post", "data": str(prepared)}
    save_sae(sae_model, sae, info)

    def damaged(name, change):
        folder = root / name
        shutil.copytree(sae, folder)
        change(folder)
        return folder

    def edited(**values):
        def change(folder):
            config = json.loads((folder / "sae.json").read_text())
            (folder / "sae.json").write_text(json.dumps({**config, **values}))

        return change

    def damaged_state(folder):
        (folder / "sae.json").unlink()  # still training: only its checkpoint is there
        step = folder / "checkpoints" / "step-0000001"
        step.mkdir(parents=True)
        (step / "state.pt").write_bytes(b"not a torch file")

    other = root / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    return {
        "root": root,
        "model": model,
        "text": text,
        "prepared": prepared,
        "sae": sae,
        "other": other,
        "new": root / "new-output",
        "sae_negative": damaged("sae-negative", edited(d_sae=-1, k="four")),
        "sae_k_too_big": damaged("sae-k", edited(k=1000)),
        "sae_huge": damaged("sae-huge", edited(d_sae=10**12)),
        "sae_no_data": damaged("sae-no-data", edited(data=None)),
        # an SAE of another model of the same shape (its fingerprint says so)
        "sae_other_model": damaged("sae-other-model", edited(model_fingerprint="0" * 16)),
        "sae_damaged_state": damaged("sae-damaged-state", damaged_state),
        "sae_truncated": damaged(
            "sae-truncated",
            lambda f: (f / "sae.safetensors").write_bytes(
                (f / "sae.safetensors").read_bytes()[:100]
            ),
        ),
    }


def snapshot(root):
    return sorted(
        (str(p.relative_to(root)), p.stat().st_size) for p in root.rglob("*") if p.is_file()
    )


@pytest.mark.parametrize(("command", "fragment"), CASES, ids=[c for c, _ in CASES])
def test_an_audit_case_is_one_clean_line_and_writes_nothing(places, command, fragment, capsys):
    root = places["root"]
    before = snapshot(root)
    argv = []
    for word in shlex.split(command):
        if word == "{tiny_train}":
            argv += TINY_TRAIN.split()
        else:
            argv.append(word.format(**{k: str(v) for k, v in places.items()}))
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse
        code = exc.code
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code not in (0, None), f"accepted: {command}"
    assert "Traceback" not in err
    last = lines[-1]
    assert last.startswith("gptlab") and ": error: " in last, err
    assert fragment.lower() in last.lower(), last
    assert snapshot(root) == before, f"{command} changed files"
    assert not places["new"].exists()


@pytest.mark.parametrize("feature", [16, 10**30])
def test_the_features_tab_refuses_a_feature_the_sae_lacks(places, feature):
    """/api/sae/ablate indexed the activations with the id before checking it: a 500."""
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from gptlab.explore.app import create_app
    from gptlab.explore.features import attach_sae
    from gptlab.explore.sources import Source, load_sources

    explorers = load_sources([Source(str(places["model"]))], "cpu")
    attach_sae(next(iter(explorers.values())), places["sae"])
    client = TestClient(create_app(explorers), raise_server_exceptions=False)
    response = client.post("/api/sae/ablate", json={"prompt": "abc", "feature": feature})
    assert response.status_code == 400, response.text
    assert "does not exist" in response.json()["error"]


def test_the_features_tab_takes_no_boolean_for_a_feature(places):
    """Pydantic's lax mode read JSON true as feature 1; the id must be a JSON integer."""
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from gptlab.explore.app import create_app
    from gptlab.explore.features import attach_sae
    from gptlab.explore.sources import Source, load_sources

    explorers = load_sources([Source(str(places["model"]))], "cpu")
    attach_sae(next(iter(explorers.values())), places["sae"])
    client = TestClient(create_app(explorers), raise_server_exceptions=False)
    response = client.post("/api/sae/ablate", json={"prompt": "abc", "feature": True})
    assert response.status_code in (400, 422), response.text
    assert "error" in response.json()


def test_a_features_page_fills_its_slots_once(places, tmp_path):
    """A model folder named with a slot of the page's template (`__DATA__`) put the whole data
    document into the page's <title>: the slots were filled one after another, each pass reading
    what the last had put in."""
    model = tmp_path / "m<!--<script>__DATA__&amp;"
    shutil.copytree(places["model"], model)
    sae = tmp_path / "sae"
    shutil.copytree(places["sae"], sae)
    config = json.loads((sae / "sae.json").read_text())
    config.update(model=str(model))
    (sae / "sae.json").write_text(json.dumps(config))
    page = tmp_path / "features.html"
    assert main(["sae", "features", str(sae), "--export", str(page), "--tokens", "256"]) == 0
    text = page.read_text(encoding="utf-8")
    title = text.split("<title>")[1].split("</title>")[0]
    assert title.endswith("m&lt;!--&lt;script&gt;__DATA__&amp;amp;, 16 features"), title
    data = json.loads(text.split('id="data">')[1].split("</script>")[0])
    assert data["title"].endswith("m<!--<script>__DATA__&amp;, 16 features")
    assert text.count("</script>") == 2  # the data's and the code's


@pytest.mark.parametrize(
    ("verb", "closed"),
    [("chat --checkpoint {gpt2_model} --max-new-tokens 2", "<&-"), ("sae features {sae}", ">&-")],
)
def test_a_closed_standard_stream_is_no_traceback(places, gpt2_model_dir, verb, closed):
    """Started with stdin or stdout closed, Python gives None for it: chat's isatty() was an
    AttributeError traceback."""
    import subprocess
    import sys

    # chat needs a tokenizer that writes its template (GPT-2's), not the char fixture's.
    verb = verb.format(**places, gpt2_model=gpt2_model_dir)
    command = shlex.join([sys.executable, "-m", "gptlab", *shlex.split(verb)])
    done = subprocess.run(
        ["sh", "-c", f"exec {command} {closed}"], capture_output=True, text=True, timeout=300
    )
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == 0, done.stderr


def test_explore_export_with_its_prompt_writes_the_page(places, tmp_path):
    """Merging the Features tab turned `elif args.prompt` into the else of its own check, so
    every `explore --export FILE --prompt TEXT` was refused: "--prompt goes with --export"."""
    page = tmp_path / "page.html"
    argv = ["explore", str(places["model"]), "--export", str(page), "--prompt", "abc"]
    assert main(argv) == 0
    assert page.is_file()
