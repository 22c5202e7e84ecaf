"""A sweep of user mistakes and damaged files over every verb: each ends in one error line that
names the problem, a non-zero exit, no traceback, and nothing written.

Each case is an argv (with {placeholders} for the fixtures below) and a fragment the error line
must hold, so a case cannot pass by failing for another reason (an argparse complaint about a
mistyped flag in the case itself, say). Argparse's own errors (exit 2, "gptlab VERB: error: ...")
count as clean when that is the case's point: a missing or malformed flag value.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

import pytest
import torch

from gptlab.checkpoints.model_folder import save_model
from gptlab.cli import main
from gptlab.model import GPT
from gptlab.model.config import ModelConfig
from gptlab.tokenizers.base import CharTokenizer

VOCAB_TEXT = "abcdefgh \n"

CASES = [
    # sample
    ("sample --checkpoint {missing} --prompt a", "does not exist"),
    ("sample --checkpoint {model} --prompt ''", "prompt"),
    ("sample --checkpoint {model} --prompt a --temperature -1", "temperature"),
    ("sample --checkpoint {model} --prompt a --top-k 0", "top"),
    ("sample --checkpoint {model} --prompt a --top-p 1.5", "top_p"),
    ("sample --checkpoint {model} --prompt a --top-p 0", "top_p"),
    ("sample --checkpoint {model} --prompt a --max-new-tokens 0", "max_new_tokens"),
    ("sample --checkpoint {model} --prompt a --max-new-tokens -5", "max_new_tokens"),
    ("sample --checkpoint {model} --prompt a --num-samples 0", "num_samples"),
    ("sample --checkpoint {model} --prompt a --repetition-penalty 0", "repetition"),
    ("sample --checkpoint {model} --prompt a --seed -1", "seed"),
    ("sample --checkpoint {model} --prompt a --seed 1180591620717411303424", "seed"),
    ("sample --checkpoint {model} --prompt zzz", "vocabulary lacks"),
    ("sample --checkpoint {text} --prompt a", "holds no model"),
    ("sample --checkpoint {empty_dir} --prompt a", "holds no model"),
    ("sample --checkpoint {model} --prompt a --greedy --draft {missing}", "does not exist"),
    ("sample --checkpoint {model} --prompt a --quantize int8 --dtype bf16", "dtype"),
    ("sample --checkpoint {model} --prompt a --device quantum", "device"),
    ("sample --checkpoint {model} --prompt a --dtype fp8", "fp8"),
    ("sample --checkpoint {model} --prompt a --temperature abc", "invalid float value"),
    ("sample --checkpoint {model} --prompt a --cache ring", "invalid choice"),
    ("sample --checkpoint {binary_config} --prompt a", "config"),
    ("sample --checkpoint {truncated_weights} --prompt a", "safetensors"),
    ("sample --checkpoint {no_weights} --prompt a", "model.safetensors"),
    ("sample --checkpoint {no_tokenizer} --prompt a", "tokenizer"),
    ("sample --prompt a", "one of the arguments --checkpoint --hf --preset is required"),
    # train
    ("train --out {new} --config {missing}", "does not exist"),
    ("train --out {new} --config {empty_dir}", "folder"),
    ("train --out {new} --config {bad_toml}", "TOML"),
    ("train --out {new} --preset nope", "preset"),
    ("train --out {new} train.max_steps=0", "max_steps"),
    ("train --out {new} train.lr=abc", "train.lr"),
    ("train --out {new} train.nonexistent=1", "nonexistent"),
    ("train --out {new} train.lrr=1e-3", "train.lr"),
    ("train --out {new} model.n_head=3 model.n_embd=32", "n_head"),
    ("train --out {new} train.threads=0", "threads"),
    ("train --out {new} data.val_fraction=0", "val_fraction"),
    ("train --out {new} data.loader_mode=weird", "loader_mode"),
    ("train --out {new} data.source=", "names nothing"),
    ("train --out {new} data.source=repeats:", "names nothing"),
    ("train --out {new} data.verify_shards=sometimes", "verify_shards"),
    ("train --out {new} model.dropout=1.5", "dropout"),
    ("train --out {new} train.tokens_per_step=100", "tokens_per_step"),
    ("train --out {new} train.sample_temperature=-1", "sample_temperature"),
    ("train --out {new} train.seed=-3", "seed"),
    ("train --out {new} model.norm=batchnorm", "norm"),
    ("train --out {text} {tiny_train}", "file"),
    ("train --out {empty_dir} --resume {tiny_train}", "nothing to resume"),
    ("train --out {run} --resume --overwrite", "contradict"),
    ("train --out {new} data.prepared_dir={text} {tiny_train}", "prepared"),
    (
        "train --out {new} {tiny_train} data.prepared_dir={prepared} train.sample_prompt=zzz",
        "sample_prompt",
    ),
    # prepare
    ("prepare {missing}", "does not exist"),
    ("prepare repeats:", "names nothing"),
    ("prepare {binary} --tokenizer char", "not a supported file type"),
    ("prepare {text} --tokenizer char --val-fraction 0 --out {new}", "val_fraction"),
    ("prepare {text} --tokenizer char --val-fraction 1.5 --out {new}", "val_fraction"),
    ("prepare {text} --tokenizer char --workers 0 --out {new}", "workers"),
    ("prepare {text} --tokenizer char --shard-tokens 0 --out {new}", "shard"),
    ("prepare {text} --tokenizer char --max-docs 0 --out {new}", "max_docs"),
    ("prepare {text} --tokenizer char --max-tokens -1 --out {new}", "max_tokens"),
    ("prepare {text} --tokenizer {bad_json} --out {new}", "JSON"),
    ("prepare {text} --tokenizer nope --out {new}", "nope"),
    ("prepare {empty_dir}", "no"),
    ("prepare {damaged_meta} --verify", "damaged"),
    # eval
    ("eval perplexity --checkpoint {model} --text {missing}", "does not exist"),
    ("eval perplexity --checkpoint {model} --text {empty}", "fewer than 2 tokens"),
    ("eval perplexity --checkpoint {model} --text {text} --stride 0", "stride"),
    ("eval perplexity --checkpoint {model} --text {text} --batch-size 0", "batch-size"),
    ("eval perplexity --checkpoint {model} --data {missing}", "prepared"),
    ("eval perplexity --checkpoint {model} --data {prepared} --split test", "split"),
    ("eval hellaswag --checkpoint {model} --data {bad_jsonl}", "line 1"),
    ("eval hellaswag --checkpoint {model} --data {bad_jsonl} --limit 0", "limit"),
    ("eval hellaswag --checkpoint {model} --data {bad_jsonl} --per-item {empty_dir}", "folder"),
    # inspect
    ("inspect attention --checkpoint {model} --prompt abc --layer 5", "layer"),
    ("inspect attention --checkpoint {model} --prompt abc --head -1", "head"),
    ("inspect attention --checkpoint {model} --prompt abc --head 9", "head"),
    ("inspect logit-lens --checkpoint {model} --prompt ''", "prompt"),
    ("inspect logit-lens --checkpoint {model} --prompt abc --position 99", "position"),
    ("inspect logit-lens --checkpoint {model} --prompt abc --top-k 0", "top-k"),
    ("inspect attribute --checkpoint {model} --prompt abc --target zz", "vocabulary lacks"),
    ("inspect ablate --checkpoint {model} --data {missing}", "prepared"),
    ("inspect ablate --checkpoint {model} --prompt a", "token"),
    (
        "inspect patch --checkpoint {model} --prompt abc --corrupted abcd --answer a",
        "same number of tokens",
    ),
    ("inspect test-prompt --checkpoint {model} --prompt abc --answer ''", "answer"),
    ("inspect neighbors --checkpoint {model} --token zz", "vocabulary lacks"),
    ("inspect attention --checkpoint {model} --prompt abc --out {text}", "file"),
    (
        "inspect patch --checkpoint {model} --prompt abc --corrupted abc --answer a",
        "score the same",
    ),
    (
        "inspect patch-sites --checkpoint {model} --prompts {prompts_same}",
        "corrupted prompt is the clean",
    ),
    (
        "inspect prompt-set --checkpoint {model} --prompts {prompts_same}",
        "corrupted prompt is the clean",
    ),
    ("inspect circuits --checkpoint {qk_norm_model} --layer 0 --head 0", "qk_norm"),
    ("inspect composition --checkpoint {qk_norm_model}", "qk_norm"),
    # tokenizer
    ("tokenizer encode --tokenizer {missing} --text a", "unknown tokenizer"),
    ("tokenizer encode --tokenizer {bad_json} --text a", "JSON"),
    ("tokenizer train {missing} --vocab-size 300 --out {new}", "does not exist"),
    ("tokenizer train {text} --vocab-size 10 --out {new}", "too small"),
    ("tokenizer compare --text-file {missing} {bad_json}", "does not exist"),
    ("tokenizer encode --tokenizer {pattern_empty} --text a", "pattern"),
    ("tokenizer encode --tokenizer {pattern_invalid} --text a", "not a valid regular expression"),
    ("tokenizer encode --tokenizer {pattern_drops_text} --text a", "drops text"),
    ("tokenizer encode --tokenizer {pattern_not_tiktoken} --text a", "not valid for tiktoken"),
    ("inspect heads --checkpoint {model} --seed 1180591620717411303424", "seed"),
    ("inspect loss --checkpoint {model} --seed 18446744073709551616", "seed"),
    ("inspect heads --checkpoint {model} --seed -1", "seed"),
    ("chat --checkpoint {model} --seed 18446744073709551616", "seed"),
    ("finetune classify --data {spam} --init {model} --out {new} --seed 2e70", "seed"),
    ("inspect heads --checkpoint {model} --batch 1000000000", "memory"),
    ("inspect loss --checkpoint {model} --batch 1000000000", "memory"),
    ("inspect ablate --checkpoint {model} --data {prepared} --batch-size 1000000000", "memory"),
    ("prepare {text} --tokenizer char --workers 100000 --out {new}", "workers"),
    ("inspect ablate --checkpoint {model} --data {prepared} --batches 100000000000", "memory"),
    # params, export, plot
    ("params --preset nope", "preset"),
    ("params --checkpoint {missing}", "does not exist"),
    ("export --checkpoint {missing} --out {new}", "does not exist"),
    ("export --checkpoint {model} --out {run} --overwrite", "run"),
    ("export --checkpoint {model} --out {model} --overwrite", "is the --checkpoint"),
    ("export --checkpoint {model} --out {model}/hf --overwrite", "inside the --checkpoint"),
    ("export --checkpoint {model} --out {root} --overwrite", "holds the --checkpoint"),
    ("export --checkpoint {run} --out {run_step} --overwrite", "inside the --checkpoint"),
    ("export --checkpoint {model} --out {run_step} --overwrite", "training run"),
    ("export --checkpoint {model} --out {run}/exported", "training run"),
    ("prepare {text} --tokenizer char --out {root}", "holds the SOURCE"),
    ("prepare {root} --tokenizer char --out {root}/prepared-again", "inside the SOURCE"),
    ("tokenizer train {text} --vocab-size 300 --out {text} --overwrite", "is the SOURCE"),
    ("plot {run} --out {run}/metrics.jsonl --overwrite", "metrics"),
    (
        "eval hellaswag --checkpoint {model} --data {bad_jsonl} --per-item {bad_jsonl} --overwrite",
        "--data",
    ),
    ("inspect attention --checkpoint {model} --prompt abc --out {model}", "is the --checkpoint"),
    ("finetune classify --data {spam} --init {model} --out {model}/tuned", "inside the init model"),
    ("finetune classify --data {spam} --init {model} --out {run_step}", "training run"),
    ("plot {missing}", "does not exist"),
    ("plot {run} --out {text}", "--overwrite"),
    ("plot {run} --out {empty_dir}", "folder"),
    # chat, classify, fine-tuning
    ("chat --checkpoint {model} --max-new-tokens 0", "max_new_tokens"),
    ("classify --checkpoint {model} --text a", "not a fine-tuned"),
    ("classify --checkpoint {model} --file {missing}", "does not exist"),
    ("finetune classify --data {missing} --init {model} --out {new}", "does not exist"),
    ("finetune classify --data {spam} --init {missing} --out {new}", "does not exist"),
    ("finetune classify --data {spam} --init {model} --out {new} --epochs 0", "epochs"),
    ("finetune classify --data {spam} --init {model} --out {new} lr=-1", "lr"),
    ("finetune classify --data {spam} --init {model} --out {new} weight_decay=-1", "weight_decay"),
    ("finetune classify --data {spam} --init {model} --out {new} balance=some", "balance"),
    ("finetune classify --data {spam} --init {model} --out {run}", "run"),
    ("finetune classify --data {spam} --init {model} --out {model}", "init"),
    ("finetune instruct --data {bad_json} --init {model} --out {new}", "JSON"),
    ("finetune instruct --data {spam} --init {model} --out {new} --answers -1", "answers"),
    ("finetune merge --checkpoint {model}", "not a fine-tuned"),
    # experiment, bench
    ("experiment --out {new} --vary foo", "vary 'foo' is not of the form"),
    ("experiment --out {new} --vary model.norm=rmsnorm --seeds 0", "seeds"),
    ("experiment --out {new} --vary model.norm=rmsnorm,rmsnorm", "twice"),
    ("bench generate --checkpoint {missing} --quick", "does not exist"),
    ("bench generate --checkpoint {model} --quick --batches 0", "batch"),
    ("bench generate --checkpoint {model} --quick --threads 0", "threads"),
]

TINY_TRAIN = (
    "model.n_layer=1 model.n_head=2 model.n_embd=16 model.block_size=16 train.micro_batch_size=4 "
    "train.tokens_per_step=64 train.max_steps=1 train.max_seconds=none train.eval_every=0 "
    "train.final_eval_tokens=64 train.sample_every=0 train.sample_tokens=4 train.threads=1"
)


@pytest.fixture(scope="module")
def places(tmp_path_factory):
    """Every file and folder the cases name: good ones to be wrong about, and damaged ones."""
    root = tmp_path_factory.mktemp("sweep")
    tokenizer = CharTokenizer.from_text(VOCAB_TEXT)
    config = ModelConfig(
        vocab_size=tokenizer.vocab_size, block_size=16, n_layer=1, n_head=2, n_embd=8
    )
    torch.manual_seed(0)
    model = root / "model"
    save_model(model, GPT(config), tokenizer)

    qk_norm_model = root / "qk-norm-model"
    save_model(qk_norm_model, GPT(replace(config, n_layer=2, qk_norm=True)), tokenizer)

    def damaged(name, change):
        folder = root / name
        shutil.copytree(model, folder)
        change(folder)
        return folder

    text = root / "corpus.txt"
    text.write_text((VOCAB_TEXT * 400), encoding="utf-8")
    prepared = root / "prepared"
    assert (
        main(["prepare", str(text), "--tokenizer", "char", "--out", str(prepared), "--quiet"]) == 0
    )
    run = root / "run"
    assert (
        main(["train", "--out", str(run), f"data.prepared_dir={prepared}", *TINY_TRAIN.split()])
        == 0
    )
    meta_damaged = root / "prepared-damaged"
    shutil.copytree(prepared, meta_damaged)
    meta = json.loads((meta_damaged / "meta.json").read_text())
    meta["splits"] = ["train", "val"]
    (meta_damaged / "meta.json").write_text(json.dumps(meta))
    (root / "empty_dir").mkdir()
    (root / "empty.txt").write_text("")
    (root / "binary.bin").write_bytes(bytes(range(256)) * 4)
    (root / "bad.json").write_text('{"a": ')
    (root / "bad.toml").write_text("[train\nlr = ")
    (root / "bad.jsonl").write_text('{"ctx": \n')
    for name, pattern in [
        ("empty", ""),
        ("invalid", "(unclosed"),
        ("drops_text", "[a-z]+"),
        ("not_tiktoken", "\\X+|[\\s\\S]"),
    ]:
        (root / f"pattern-{name}.json").write_text(
            json.dumps({"type": "bpe", "pattern": pattern, "merges": []})
        )
    same = {"clean": "abc", "corrupted": "abd", "answer": "a", "wrong": "b"}
    (root / "prompts-same.jsonl").write_text(
        json.dumps(same) + "\n" + json.dumps({**same, "corrupted": "abc"}) + "\n"
    )
    (root / "spam.tsv").write_text("ham\thello there\nspam\twin a prize\n" * 20)
    return {
        "model": model,
        "run": run,
        "prepared": prepared,
        "damaged_meta": meta_damaged,
        "text": text,
        "missing": root / "does-not-exist",
        "root": root,
        "run_step": sorted((run / "checkpoints").iterdir())[-1],
        "new": root / "new-output",
        "empty_dir": root / "empty_dir",
        "empty": root / "empty.txt",
        "binary": root / "binary.bin",
        "bad_json": root / "bad.json",
        "bad_toml": root / "bad.toml",
        "bad_jsonl": root / "bad.jsonl",
        "spam": root / "spam.tsv",
        "binary_config": damaged(
            "binary-config", lambda f: (f / "config.json").write_bytes(b"\x00\xff" * 64)
        ),
        "truncated_weights": damaged(
            "truncated",
            lambda f: (f / "model.safetensors").write_bytes(
                (f / "model.safetensors").read_bytes()[:200]
            ),
        ),
        "no_weights": damaged("no-weights", lambda f: (f / "model.safetensors").unlink()),
        "no_tokenizer": damaged("no-tokenizer", lambda f: (f / "tokenizer.json").unlink()),
        "tiny_train": TINY_TRAIN,
        "qk_norm_model": qk_norm_model,
        "prompts_same": root / "prompts-same.jsonl",
        **{
            f"pattern_{name}": root / f"pattern-{name}.json"
            for name in ("empty", "invalid", "drops_text", "not_tiktoken")
        },
    }


def snapshot(root):
    return sorted(
        (str(p.relative_to(root)), p.stat().st_size) for p in root.rglob("*") if p.is_file()
    )


@pytest.mark.parametrize(("command", "fragment"), CASES, ids=[c for c, _ in CASES])
def test_a_bad_input_is_one_clean_line_and_writes_nothing(places, command, fragment, capsys):
    import shlex

    root = places["model"].parent
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
    assert lines, f"no message for: {command}"
    last = lines[-1]
    assert "Traceback" not in err
    assert last.startswith("gptlab") and ": error: " in last, err
    assert fragment.lower() in last.lower(), last
    assert snapshot(root) == before, f"{command} changed files"
    assert not places["new"].exists()
