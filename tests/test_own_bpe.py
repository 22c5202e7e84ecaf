"""`bpe:N` tokenizers: trained on a corpus's training documents by the first prepare, reused after."""

import json

import pytest

from gptlab.data.prepare import prepare_dataset
from gptlab.data.prepared_folder import load_prepared_tokenizer
from gptlab.errors import GptlabError
from gptlab.tokenizers.bpe import train_bpe
from gptlab.train.config import DataConfig


@pytest.fixture
def corpus(shared_data, tmp_path):
    """30 FineWeb-Edu documents, copied so the test owns their modification time."""
    lines = (shared_data / "fineweb_edu" / "sample.jsonl").read_text(encoding="utf-8").splitlines()
    path = tmp_path / "corpus.jsonl"
    path.write_text("\n".join(lines[:30]) + "\n", encoding="utf-8")
    return path


def test_first_prepare_trains_on_training_documents_and_the_next_reuses(corpus, tmp_path, capsys):
    first = prepare_dataset(str(corpus), tokenizer="bpe:400", out=tmp_path / "a", workers=1)
    captured = capsys.readouterr()
    assert "training a 400-token BPE" in captured.err + captured.out
    texts = [json.loads(line)["text"] for line in corpus.read_text(encoding="utf-8").splitlines()]
    # val_fraction 0.1 holds out documents 0, 10, 20: the reference BPE sees the others only.
    reference = train_bpe([t for i, t in enumerate(texts) if i % 10], 400, progress=False)
    assert load_prepared_tokenizer(first).merges == reference.merges

    second = prepare_dataset(str(corpus), tokenizer="bpe:400", out=tmp_path / "b", workers=1)
    captured = capsys.readouterr()
    assert "reusing the 400-token BPE trained before" in captured.err + captured.out
    assert load_prepared_tokenizer(second).merges == reference.merges


@pytest.mark.parametrize("spec", ["bpe:", "bpe:100", "bpe:8k"])
def test_a_bad_size_is_one_line_before_any_work(spec):
    with pytest.raises(GptlabError, match="bpe:N"):
        DataConfig(source="tinyshakespeare", tokenizer=spec).validate()
