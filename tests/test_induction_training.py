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


def _first_copies(record: str, lengths: list[int]) -> str:
    """The first copies of a record's spans, checking each second copy as far as the record goes."""
    firsts, at = "", 0
    for length in lengths:
        span = record[at : at + length]
        assert record[at + length : at + 2 * length] == span[: max(0, len(record) - at - length)]
        firsts, at = firsts + span, at + 2 * length
    return firsts


def test_repeated_spans_are_aligned_records_that_keep_the_whole_text():
    text = "".join(chr(ord("a") + (i * 7) % 26) for i in range(1000)) + "\nend."
    out = repeats.with_repeated_spans(text, random.Random(0))
    size = repeats.RECORD_CHARS
    assert len(out) % size == 0  # every record full, so the next document stays aligned
    records = [out[k : k + size] for k in range(0, len(out), size)]
    # Replay the generator: a text record draws one length per span, a random record a length
    # and that many characters per span, until the record holds RECORD_CHARS characters.
    rng, position, recovered = random.Random(0), 0, ""
    for index, record in enumerate(records):
        if index % 2 == 0:  # a text record: consecutive spans of the text, each twice
            lengths, filled = [], 0
            while filled < size and position < len(text):
                length = min(rng.randint(repeats.MIN_SPAN, repeats.MAX_SPAN), len(text) - position)
                length = min(length, size - filled)  # cut inside its first copy: the rest
                lengths.append(length)  # starts the next text record
                filled, position = filled + 2 * length, position + length
            recovered += _first_copies(record, lengths)
            if position == len(text):  # the last text record; random spans fill it up
                assert set(record[filled:]) <= set(text) - {"\n"}
                assert index == len(records) - 2  # then one random record, and the end
                break
        else:  # a random record: spans of the text's alphabet, each twice
            lengths, filled = [], 0
            while filled < size:
                lengths.append(rng.randint(repeats.MIN_SPAN, repeats.MAX_SPAN))
                rng.choices("x", k=lengths[-1])
                filled += 2 * lengths[-1]
            _first_copies(record, lengths)
            assert set(record) <= set(text) - {"\n"}
    assert recovered == text  # all of it, in order
    assert set(records[-1]) <= set(text) - {"\n"}


def test_the_repeats_prefix_wraps_any_source(tmp_path):
    path = tmp_path / "t.txt"
    text = "To be, or not to be, that is the question. " * 10
    path.write_text(text)
    source = resolve_source(f"repeats:{path}")
    (doc,) = list(source.documents())
    assert doc.startswith(text[: repeats.MIN_SPAN]) and len(doc) % repeats.RECORD_CHARS == 0
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
