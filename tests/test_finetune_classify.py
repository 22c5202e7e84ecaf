"""Classification: exact padded batching, an end-to-end run on real SMS data, reloading, LoRA, bad input."""

import pytest
import torch
from model_testing import save_tiny_gpt2_model

from gptlab.checkpoints.finetuned import load_finetuned, merge_checkpoint
from gptlab.cli import main
from gptlab.errors import GptlabError
from gptlab.finetune.classify import GPTClassifier, predict_probabilities
from gptlab.finetune.classify_job import finetune_classifier
from gptlab.finetune.examples import read_labeled_texts
from gptlab.finetune.options import ClassifyOptions
from gptlab.model.gpt import GPT


@pytest.fixture(scope="module")
def tiny_gpt2_dir(tmp_path_factory):
    return save_tiny_gpt2_model(tmp_path_factory.mktemp("tiny-gpt2"), block_size=64)


@pytest.fixture
def sms_slice(shared_data, tmp_path):
    """40 spam and 40 ham messages from the real SMS Spam Collection, as a .tsv file."""
    examples = read_labeled_texts(shared_data / "sms_spam_collection" / "SMSSpamCollection")
    spam = [e for e in examples if e.label == "spam"][:40]
    ham = [e for e in examples if e.label == "ham"][:40]
    path = tmp_path / "sms.tsv"
    path.write_text("".join(f"{e.label}\t{e.text}\n" for e in spam + ham))
    return path


def test_padded_batch_gives_each_text_its_own_logits(tiny_config):
    torch.manual_seed(0)
    classifier = GPTClassifier(GPT(tiny_config), n_classes=3).eval()
    texts = [[5, 6, 7, 8, 9], [10, 11], [12, 13, 14]]
    tokens = torch.tensor([[5, 6, 7, 8, 9], [10, 11, 0, 0, 0], [12, 13, 14, 0, 0]])
    batched = classifier(tokens, torch.tensor([5, 2, 3]))
    for row, ids in enumerate(texts):
        alone = classifier(torch.tensor([ids]), torch.tensor([len(ids)]))
        torch.testing.assert_close(batched[row], alone[0], atol=1e-6, rtol=0)


def test_classifier_trains_on_real_sms_and_reloads_identically(tiny_gpt2_dir, sms_slice, tmp_path):
    out = tmp_path / "spam"
    lines = []
    result = finetune_classifier(
        ClassifyOptions(
            data=str(sms_slice),
            init=str(tiny_gpt2_dir),
            out=str(out),
            train="all",
            epochs=2,
            lr=3e-3,
            batch_size=8,
            max_length=24,
            device="cpu",
        ),
        log=lines.append,
    )
    assert result.epochs[1]["train_loss"] < result.epochs[0]["train_loss"]
    assert any("longer than 24 tokens" in line for line in lines)  # truncation is announced
    assert (out / "confusion.png").stat().st_size > 0 and "| spam |" in (
        out / "confusion.md"
    ).read_text()

    loaded = load_finetuned(out)
    assert loaded.task["labels"] == ["ham", "spam"]
    reloaded = GPTClassifier(loaded.body, 2, head=loaded.head)
    test_texts = read_test_texts(sms_slice, seed=123)
    probs = predict_probabilities(reloaded, loaded.tokenizer, test_texts, 24, loaded.task["pad_id"])
    assert probs.argmax(-1).tolist() == result.test.predictions


def read_test_texts(path, seed):
    """The test split's texts, as finetune_classifier drew it."""
    from gptlab.finetune.examples import split_examples

    return [e.text for e in split_examples(read_labeled_texts(path), 0.1, 0.2, seed, "sms").test]


def test_lora_classifier_loads_unmerged_and_merged_alike(tiny_gpt2_dir, sms_slice, tmp_path):
    out = tmp_path / "lora"
    lora = dict(lora_rank=2, lora_alpha=4, lora_targets="c_attn")
    finetune_classifier(
        classify_options(sms_slice, tiny_gpt2_dir, out, **lora, lr=1e-2, max_length=24),
        log=lambda line: None,
    )
    texts = ["WINNER! Claim your free prize now", "see you at lunch"]

    def probabilities():
        loaded = load_finetuned(out)
        return predict_probabilities(
            GPTClassifier(loaded.body, 2, head=loaded.head), loaded.tokenizer, texts, 24, 50256
        )

    unmerged = probabilities()
    merge_checkpoint(out)
    assert (out / "model.safetensors").is_file()
    torch.testing.assert_close(probabilities(), unmerged, atol=1e-5, rtol=0)


def test_classify_cli_prints_label_and_probability(tiny_gpt2_dir, sms_slice, tmp_path, capsys):
    out = tmp_path / "cli"
    assert (
        main(
            [
                "finetune",
                "classify",
                "--data",
                str(sms_slice),
                "--init",
                str(tiny_gpt2_dir),
                "--out",
                str(out),
                "--train",
                "head",
                "--epochs",
                "1",
                "--max-length",
                "16",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    assert "final accuracy: train" in capsys.readouterr().out
    assert (
        main(["classify", "--checkpoint", str(out), "--text", "Call now to win", "--device", "cpu"])
        == 0
    )
    label, probability = capsys.readouterr().out.strip().split("\t")
    assert label in ("ham", "spam") and 0.5 <= float(probability) <= 1.0

    # --file: one answer per non-blank line, numbered, equal to classifying each text alone.
    texts = ["Call now to win", "WINNER! Claim your prize", "see you at lunch", "ok thanks"]
    listing = tmp_path / "texts.txt"
    listing.write_text(f"{texts[0]}\n\n{texts[1]}\n{texts[2]}\n  \n{texts[3]}\n")
    one_by_one = []
    for text in texts:
        assert main(["classify", "--checkpoint", str(out), "--text", text]) == 0
        one_by_one.append(capsys.readouterr().out.strip().split("\t"))
    argv = ["classify", "--checkpoint", str(out), "--file", str(listing), "--batch-size", "3"]
    assert main(argv) == 0
    rows = [line.split("\t") for line in capsys.readouterr().out.splitlines()]
    assert [row[0] for row in rows] == ["1", "3", "4", "6"]
    assert [row[1] for row in rows] == [label for label, _ in one_by_one]
    for row, (_, p) in zip(rows, one_by_one, strict=True):
        assert float(row[2]) == pytest.approx(float(p), abs=2e-4)
    blank = tmp_path / "blank.txt"
    blank.write_text("\n  \n")
    assert main(["classify", "--checkpoint", str(out), "--file", str(blank)]) == 1
    assert "is empty" in capsys.readouterr().err
    assert main([*argv[:-1], "0"]) == 1
    assert "--batch-size must be at least 1" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("content", "init", "message"),
    [
        ("ham\thello\nham\tthere\n", None, "at least two classes"),
        ("", None, "is empty"),
        ("ham\thello\nspam  no tab\n", None, "line 2"),
        (
            "ham\thello\nspam\tbuy\n",
            "/nonexistent/model",
            "init /nonexistent/model does not exist",
        ),
    ],
)
def test_bad_input_is_one_line_and_a_nonzero_exit(
    tiny_gpt2_dir, tmp_path, capsys, content, init, message
):
    data = tmp_path / "bad.tsv"
    data.write_text(content)
    code = main(
        [
            "finetune",
            "classify",
            "--data",
            str(data),
            "--init",
            init or str(tiny_gpt2_dir),
            "--out",
            str(tmp_path / "out"),
            "--device",
            "cpu",
        ]
    )
    err = capsys.readouterr().err.strip()
    assert code == 1 and message in err and "\n" not in err


def classify_options(sms_slice, init, out, **more):
    """A one-epoch run on the SMS slice; `more` adds or replaces options."""
    settings = dict(epochs=1, lr=1e-3, batch_size=16, max_length=16, device="cpu")
    return ClassifyOptions(data=str(sms_slice), init=str(init), out=str(out), **settings | more)


def test_overwrite_replaces_the_earlier_model_only_once_the_new_one_is_complete(
    tiny_gpt2_dir, sms_slice, tmp_path, monkeypatch
):
    from gptlab.finetune import classify_job

    out = tmp_path / "spam"
    finetune_classifier(classify_options(sms_slice, tiny_gpt2_dir, out), log=lambda line: None)
    (out / "my-notes.txt").write_text("not gptlab's")  # a file of the user's own
    before = (out / "model.safetensors").read_bytes()

    def killed(*args, **kwargs):
        raise KeyboardInterrupt  # the run is killed while it trains

    monkeypatch.setattr(classify_job, "fit", killed)
    with pytest.raises(KeyboardInterrupt):
        finetune_classifier(
            classify_options(sms_slice, tiny_gpt2_dir, out, overwrite=True), log=lambda line: None
        )
    assert (out / "model.safetensors").read_bytes() == before  # the earlier model is intact
    assert load_finetuned(out).task["labels"] == ["ham", "spam"]
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".partial")]
    monkeypatch.undo()

    # A LoRA run over it: the new adapter arrives, the earlier full model's weights go, the
    # user's own file stays.
    lora = classify_options(
        sms_slice, tiny_gpt2_dir, out, overwrite=True, lora_rank=2, lora_targets="c_attn"
    )
    finetune_classifier(lora, log=lambda line: None)
    assert (out / "adapter").is_dir() and not (out / "model.safetensors").exists()
    assert (out / "my-notes.txt").read_text() == "not gptlab's"
    assert load_finetuned(out).task["train"] == "lora"


def test_out_may_not_be_a_training_run_or_the_init_model(tiny_gpt2_dir, sms_slice, tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    with pytest.raises(GptlabError, match="is a training run folder"):
        finetune_classifier(classify_options(sms_slice, tiny_gpt2_dir, run), log=print)
    with pytest.raises(GptlabError, match="is the init model it reads"):
        finetune_classifier(
            classify_options(sms_slice, tiny_gpt2_dir, tiny_gpt2_dir, overwrite=True), log=print
        )
    (tmp_path / "file").write_text("x")
    with pytest.raises(GptlabError, match="is a file; give a folder"):
        finetune_classifier(
            classify_options(sms_slice, tiny_gpt2_dir, tmp_path / "file"), log=print
        )


def test_progress_into_a_log_redraws_at_the_interval_not_every_step(
    tiny_gpt2_dir, sms_slice, tmp_path, capsys, monkeypatch
):
    monkeypatch.setenv("TQDM_MININTERVAL", "10")  # what `gptlab` sets when stderr is not a tty
    argv = ["finetune", "classify", "--data", str(sms_slice), "--init", str(tiny_gpt2_dir)]
    argv += ["--out", str(tmp_path / "out"), "--epochs", "1", "--batch-size", "4"]
    assert main([*argv, "--max-length", "16", "--device", "cpu"]) == 0
    err = capsys.readouterr().err
    steps = len(read_labeled_texts(sms_slice)) * 0.7 / 4
    assert steps > 10 and err.count("epoch 1/1") <= 3  # first draw, final draw, close


def test_an_unmerged_lora_folder_samples_and_loads_with_its_base_and_merges(
    tiny_gpt2_dir, sms_slice, tmp_path, capsys
):
    from gptlab.checkpoints.load import load_model

    out = tmp_path / "lora"
    options = classify_options(sms_slice, tiny_gpt2_dir, out, lora_rank=2, lora_targets="c_attn")
    finetune_classifier(options, log=lambda line: None)
    argv = ["sample", "--checkpoint", str(out), "--prompt", "Hi", "--greedy", "--device", "cpu"]
    assert main([*argv, "--max-new-tokens", "3"]) == 0  # the base with the adapter applied
    expected = load_finetuned(out).body
    assert capsys.readouterr().out.strip()
    adapted, _ = load_model(out)  # load_model opens what `gptlab sample` opens
    idx = torch.tensor([[1, 2, 3, 4]])
    torch.testing.assert_close(adapted.eval()(idx)[0], expected(idx)[0])
    merge_checkpoint(out)
    merged, _ = load_model(out)
    torch.testing.assert_close(merged.eval()(idx)[0], expected(idx)[0], atol=1e-5, rtol=1e-5)
