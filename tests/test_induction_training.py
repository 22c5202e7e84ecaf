"""The induction recipe's pieces: `repeats:SOURCE` data and `train.eval_induction_every`."""

import json
import random

import pytest

from gptlab.checkpoints.load import load_model
from gptlab.data import repeats
from gptlab.data.sources import resolve_source
from gptlab.errors import GptlabError
from gptlab.interp.induction import repeated_tokens_loss
from gptlab.train import train
from gptlab.train.config import build_run_config


def test_repeated_spans_keep_the_text_and_double_each_random_span():
    text = "abcdefgh" * 40
    out = repeats.with_repeated_spans(text, random.Random(0))
    rng = random.Random(0)
    position, kept = 0, []
    for start in range(0, len(text), repeats.SEGMENT_CHARS):
        segment = text[start : start + repeats.SEGMENT_CHARS]
        assert out[position : position + len(segment)] == segment
        kept.append(segment)
        position += len(segment)
        length = rng.randint(repeats.MIN_SPAN, repeats.MAX_SPAN)
        span = out[position : position + length]
        assert out[position + length : position + 2 * length] == span  # written twice
        assert set(span) <= set(text)  # the text's own alphabet
        rng.choices("x", k=length)  # keep the reference generator in step
        position += 2 * length
    assert position == len(out) and "".join(kept) == text


def test_the_repeats_prefix_wraps_any_source(tmp_path):
    path = tmp_path / "t.txt"
    text = "To be, or not to be, that is the question. " * 10
    path.write_text(text)
    source = resolve_source(f"repeats:{path}")
    (doc,) = list(source.documents())
    assert doc.startswith(text[: repeats.SEGMENT_CHARS]) and len(doc) > len(text)
    assert source.describe()["kind"] == "repeats" and source.single_text
    assert source.slug.startswith("repeats-")


TINY = [
    "model.n_layer=2",
    "model.n_head=2",
    "model.n_embd=32",
    "model.block_size=32",
    "train.micro_batch_size=4",
    "train.tokens_per_step=128",
    "train.max_seconds=none",
    "train.max_steps=5",
    "train.eval_every=0",
    "train.eval_tokens=256",
    "train.final_eval_tokens=256",
    "train.sample_tokens=4",
    "train.threads=1",
    "train.log_every=3",
    "train.eval_induction_every=2",
    "train.eval_induction_length=8",
]


def test_eval_induction_every_logs_the_repeated_token_loss(tmp_path, shared_data):
    text = tmp_path / "head.txt"
    text.write_text((shared_data / "tinyshakespeare" / "input.txt").read_text()[:20_000])
    config = build_run_config(overrides=[*TINY, f"data.source=repeats:{text}"])
    train(config, tmp_path / "run", show_progress=False)
    records = [
        json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    ]
    logged = {r["step"]: r for r in records if "induction_repeated_loss" in r}
    assert sorted(logged) == [2, 4, 5]  # every 2 steps and at the end, whatever log_every says
    # the last numbers are the repeated-token loss of the final model (same fixed sequences)
    model, tokenizer = load_model(tmp_path / "run")
    expected = repeated_tokens_loss(model, 8, 2, 16, 0, tokenizer.eot_id)
    assert logged[5]["induction_first_loss"] == pytest.approx(expected.first_loss, abs=1e-5)
    assert logged[5]["induction_repeated_loss"] == pytest.approx(expected.repeated_loss, abs=1e-5)
    assert (tmp_path / "run" / "loss.png").is_file()


def test_an_induction_length_that_does_not_fit_is_refused_before_training():
    with pytest.raises(GptlabError, match="eval_induction_length must be 2 to 16"):
        build_run_config(overrides=[*TINY, "train.eval_induction_length=17"])
