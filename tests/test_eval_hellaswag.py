"""HellaSwag scoring against Hugging Face transformers, on real items; bad input through the CLI."""

import json

import pytest
import torch

from gptlab.cli import main
from gptlab.errors import GptlabError
from gptlab.eval.hellaswag import accuracy, hellaswag_training_eval, read_hellaswag, score_endings
from gptlab.tokenizers.base import GPT2Tokenizer

transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def hf_pair():
    """A small random GPT-2 in transformers and the same weights imported into gptlab."""
    from gptlab.model.hf import from_hf_model

    torch.manual_seed(0)
    # A wide init gives peaked, varied predictions, so the comparison is not between near-uniform numbers.
    config = transformers.GPT2Config(
        n_positions=128, n_embd=32, n_layer=2, n_head=4, initializer_range=0.2
    )
    hf_model = transformers.GPT2LMHeadModel(config).eval()
    return hf_model, from_hf_model(hf_model).eval()


@pytest.fixture(scope="module")
def items(shared_data):
    path = shared_data / "hellaswag" / "hellaswag_val.jsonl"
    return read_hellaswag(path)[:8]


def reference_log_likelihood(hf_model, encoding, context: str, ending: str) -> tuple[float, int]:
    """Sum of log p(ending token | everything before it), one plain transformers forward."""
    context_ids = encoding.encode_ordinary(context)
    ending_ids = encoding.encode_ordinary(" " + ending)
    ids = torch.tensor([context_ids + ending_ids])
    with torch.no_grad():
        # The positions whose next token is an ending token.
        logits = hf_model(ids).logits[0, len(context_ids) - 1 : -1]
    log_probs = torch.log_softmax(logits.double(), dim=-1)  # (n_ending, vocab)
    return log_probs[torch.arange(len(ending_ids)), ending_ids].sum().item(), len(ending_ids)


@pytest.fixture(scope="module")
def scores(hf_pair, items):
    # batch_size 5 mixes items of different lengths in one padded batch, and leaves a short last batch.
    return score_endings(hf_pair[1], GPT2Tokenizer(), items, batch_size=5, progress=False)


def test_ending_log_likelihoods_match_transformers(hf_pair, items, scores):
    hf_model, _ = hf_pair
    encoding = GPT2Tokenizer().encoding
    assert len(scores) == len(items)
    for item, score in zip(items, scores, strict=True):
        for k, ending in enumerate(item.endings):
            expected, count = reference_log_likelihood(hf_model, encoding, item.context, ending)
            assert score.counts[k] == count
            assert score.sums[k] == pytest.approx(expected, abs=1e-4)


def test_accuracy_is_argmax_of_sum_and_of_mean(items, scores):
    result = accuracy(items, scores)
    best_sum = [max(range(4), key=lambda k: s.sums[k]) for s in scores]
    best_mean = [max(range(4), key=lambda k: s.sums[k] / s.counts[k]) for s in scores]
    assert best_sum != best_mean  # the two rules disagree somewhere, so both are really tested
    labels = [item.label for item in items]
    assert result["items"] == len(items)
    assert result["correct"] == sum(a == b for a, b in zip(best_sum, labels, strict=True))
    assert result["correct_norm"] == sum(a == b for a, b in zip(best_mean, labels, strict=True))
    assert result["acc_norm"] == result["correct_norm"] / len(items)


def test_training_eval_logs_the_accuracy_of_the_first_items(
    hf_pair, items, scores, tmp_path, shared_data
):
    run = hellaswag_training_eval(shared_data / "hellaswag" / "hellaswag_val.jsonl", limit=4)
    expected = accuracy(items[:4], scores[:4])
    assert run(hf_pair[1], GPT2Tokenizer()) == {
        "hellaswag_acc": expected["acc"],
        "hellaswag_acc_norm": expected["acc_norm"],
    }
    with pytest.raises(GptlabError, match="does not exist"):  # fails when the run is set up
        hellaswag_training_eval(tmp_path / "missing.jsonl")


def test_long_context_is_cropped_from_the_left(hf_pair, items):
    """With a context longer than block_size, the score is that of the last block_size + 1 tokens (here 25)."""
    hf_model, _ = hf_pair
    from gptlab.model.hf import from_hf_model

    torch.manual_seed(1)
    short_hf = transformers.GPT2LMHeadModel(
        transformers.GPT2Config(
            n_positions=24, n_embd=32, n_layer=2, n_head=4, initializer_range=0.2
        )
    ).eval()
    model = from_hf_model(short_hf)
    tokenizer = GPT2Tokenizer()
    # The longest context (~40 tokens): more than the model reads.
    item = max(items, key=lambda i: len(i.context))
    [score] = score_endings(model, tokenizer, [item], progress=False)
    for k, ending in enumerate(item.endings):
        ids = (tokenizer.encode(item.context) + tokenizer.encode(" " + ending))[-25:]
        n = len(tokenizer.encode(" " + ending))
        assert len(ids) == 25 and n < 24
        with torch.no_grad():
            log_probs = torch.log_softmax(short_hf(torch.tensor([ids[:-1]])).logits[0].double(), -1)
        expected = sum(log_probs[t, ids[t + 1]].item() for t in range(24 - n, 24))
        assert score.sums[k] == pytest.approx(expected, abs=1e-4)


# ------------------------------------------------------------------------------------------
# Bad input


def test_malformed_line_is_reported_with_its_number(tmp_path, items):
    path = tmp_path / "bad.jsonl"
    good = json.dumps(
        {"ctx": items[0].context, "endings": list(items[0].endings), "label": items[0].label}
    )
    path.write_text(good + "\n" + good[:-5] + "\n")
    with pytest.raises(GptlabError, match="line 2: not valid JSON"):
        read_hellaswag(path)
    path.write_text(
        good + "\n\n" + json.dumps({"ctx": "x", "endings": ["a", "b"], "label": 7}) + "\n"
    )
    with pytest.raises(GptlabError, match="line 3: 'label' must be an ending index"):
        read_hellaswag(path)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, hf_pair):
    from gptlab.checkpoints.model_folder import save_model

    directory = tmp_path_factory.mktemp("model")
    save_model(directory, hf_pair[1], GPT2Tokenizer())
    return directory


def run_cli(capsys, *args) -> tuple[int, str, str]:
    code = main(["eval", "hellaswag", *map(str, args)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cli_reports_a_malformed_line(tmp_path, model_dir, capsys):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"ctx": "A man", "endings": ["a", "b"], "label": 0}\n{"ctx": \n')
    code, _, err = run_cli(capsys, "--checkpoint", model_dir, "--data", path)
    assert code == 1
    assert err.count("\n") == 1 and "line 2" in err


@pytest.mark.parametrize("limit", [0, -3])
def test_cli_rejects_a_limit_below_one(model_dir, capsys, limit, shared_data):
    data = shared_data / "hellaswag" / "hellaswag_val.jsonl"
    code, _, err = run_cli(capsys, "--checkpoint", model_dir, "--data", data, "--limit", limit)
    assert code == 1
    assert err.count("\n") == 1 and "limit must be a positive number" in err


def test_cli_json_output(model_dir, capsys, shared_data):
    data = shared_data / "hellaswag" / "hellaswag_val.jsonl"
    code, out, _ = run_cli(
        capsys, "--checkpoint", model_dir, "--data", data, "--limit", 6, "--json"
    )
    assert code == 0
    result = json.loads(out)
    assert result["items"] == 6
    assert 0 <= result["acc_norm"] <= 1 and result["correct_norm"] == round(result["acc_norm"] * 6)


def test_cli_per_item_file_holds_each_items_scores_and_choices(
    model_dir, tmp_path, capsys, shared_data
):
    data = shared_data / "hellaswag" / "hellaswag_val.jsonl"
    out = tmp_path / "per_item.jsonl"
    argv = ["--checkpoint", model_dir, "--data", data, "--limit", 5, "--per-item", out, "--json"]
    code, stdout, _ = run_cli(capsys, *argv)
    assert code == 0
    summary = json.loads(stdout)
    assert "per_item" not in summary
    records = [json.loads(line) for line in out.read_text().splitlines()]
    expected = read_hellaswag(data)[:5]
    assert [r["index"] for r in records] == list(range(5))
    assert [r["label"] for r in records] == [item.label for item in expected]
    assert [r["endings"] for r in records] == [list(item.endings) for item in expected]
    for r in records:
        assert r["pred"] == max(range(4), key=lambda k: r["sums"][k])
        assert r["pred_norm"] == max(range(4), key=lambda k: r["means"][k])
        assert r["means"] == pytest.approx(
            [s / n for s, n in zip(r["sums"], r["tokens"], strict=True)]
        )
    # The file's predictions are the ones the summary counted.
    assert summary["correct"] == sum(r["pred"] == r["label"] for r in records)
    assert summary["correct_norm"] == sum(r["pred_norm"] == r["label"] for r in records)
    # An existing file is kept unless --overwrite; the check comes before any scoring.
    code, _, err = run_cli(capsys, *argv)
    assert code == 1 and "pass --overwrite" in err
    assert run_cli(capsys, *argv, "--overwrite")[0] == 0


def test_training_logs_hellaswag_when_the_config_asks(tmp_path, shared_data):
    """train.eval_hellaswag_every=N adds hellaswag_acc(_norm) to metrics.jsonl at those steps."""
    from gptlab.data.prepare import prepare_dataset
    from gptlab.train import train
    from gptlab.train.config import build_run_config

    hellaswag = shared_data / "hellaswag" / "hellaswag_val.jsonl"
    fineweb = shared_data / "fineweb_edu" / "sample.jsonl"
    prepared = prepare_dataset(
        str(fineweb), out=tmp_path / "data", max_docs=10, workers=1, show_progress=False
    )
    config = build_run_config(
        overrides=[
            *(
                f"model.{k}={v}"
                for k, v in dict(n_layer=1, n_head=2, n_embd=16, block_size=32).items()
            ),
            "train.micro_batch_size=4",
            "train.tokens_per_step=128",
            "train.max_steps=4",
            "train.max_seconds=none",
            "train.eval_every=0",
            "train.final_eval_tokens=256",
            "train.sample_tokens=5",
            "train.threads=1",
            "train.eval_hellaswag_every=2",
            "train.eval_hellaswag_limit=3",
            f"train.eval_hellaswag_data={hellaswag}",
            f"data.prepared_dir={prepared}",
        ]
    )
    train(config, tmp_path / "run", show_progress=False)
    records = [
        json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    ]
    logged = [r for r in records if "hellaswag_acc_norm" in r]
    assert [r["step"] for r in logged] == [2, 4]
    for r in logged:  # 3 items: accuracy is a multiple of 1/3
        assert round(r["hellaswag_acc"] * 3, 6) in (0, 1, 2, 3)
        assert round(r["hellaswag_acc_norm"] * 3, 6) in (0, 1, 2, 3)


def test_training_with_a_missing_hellaswag_file_fails_before_it_starts(tmp_path):
    from gptlab.train import train
    from gptlab.train.config import build_run_config

    config = build_run_config(
        overrides=[
            "train.eval_hellaswag_every=2",
            f"train.eval_hellaswag_data={tmp_path / 'nope.jsonl'}",
        ]
    )
    with pytest.raises(GptlabError):
        train(config, tmp_path / "run", show_progress=False)
    assert not (tmp_path / "run").exists()
