"""Fine-tuning data files: the formats, line-numbered errors, labels, balancing and splits."""

import json

import pytest

from gptlab.errors import GptlabError
from gptlab.finetune.examples import (
    InstructionExample,
    LabeledText,
    downsample_to_smallest_class,
    label_names,
    read_instructions,
    read_labeled_texts,
    split_examples,
)
from gptlab.model.batching import right_pad

EXPECTED = [LabeledText("ham", "see you at 5"), LabeledText("spam", "WIN a prize, call now")]


def test_tsv_csv_and_jsonl_read_the_same_examples(tmp_path):
    (tmp_path / "a.tsv").write_text("ham\tsee you at 5\n\nspam\tWIN a prize, call now\n")
    (tmp_path / "a.csv").write_text(
        'id,label,text\n1,ham,see you at 5\n2,spam,"WIN a prize, call now"\n'
    )
    (tmp_path / "a.jsonl").write_text(
        "\n".join(json.dumps({"label": e.label, "text": e.text}) for e in EXPECTED) + "\n"
    )
    for name in ("a.tsv", "a.csv", "a.jsonl"):
        assert read_labeled_texts(tmp_path / name) == EXPECTED, name


def test_the_real_sms_collection_reads_completely(shared_data):
    examples = read_labeled_texts(shared_data / "sms_spam_collection" / "SMSSpamCollection")
    assert len(examples) == 5574
    assert sum(e.label == "spam" for e in examples) == 747
    assert label_names(examples, "sms") == ["ham", "spam"]


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("bad.tsv", "ham\tfine\nspam no tab here\n", r"bad.tsv line 2: expected label<TAB>text"),
        ("bad.csv", "label,text\nham,ok\nspam,a,b\n", r"bad.csv line 3: 3 columns"),
        ("bad.csv", "kind,body\nham,ok\n", r"line 1: the header must name"),
        (
            "bad.jsonl",
            '{"label": "a", "text": "x"}\n{"label": "b", "text": \n',
            r"bad.jsonl line 2: not valid JSON",
        ),
        ("bad.jsonl", '{"label": "a", "text": "x"}\n{"text": "y"}\n', r"line 2: a record needs"),
        ("empty.tsv", "\n \n", r"empty.tsv is empty"),
        ("blank.tsv", "ham\t\n", r"line 1: the text is empty"),
        ("data.xml", "<x/>", r"unknown file type .xml"),
    ],
)
def test_malformed_labeled_files_name_file_and_line(tmp_path, name, content, message):
    (tmp_path / name).write_text(content)
    with pytest.raises(GptlabError, match=message):
        read_labeled_texts(tmp_path / name)


def test_a_single_class_is_refused():
    with pytest.raises(GptlabError, match="at least two classes"):
        label_names([LabeledText("ham", "a"), LabeledText("ham", "b")], "one.tsv")


def test_missing_file_is_a_user_error(tmp_path):
    with pytest.raises(GptlabError, match="does not exist"):
        read_labeled_texts(tmp_path / "nope.tsv")


def test_real_alpaca_data_and_missing_input(shared_data, tmp_path):
    examples = read_instructions(shared_data / "instruction_data_alpaca" / "instruction-data.json")
    assert len(examples) == 1100
    assert examples[2] == InstructionExample(
        "Convert 45 kilometers to meters.", "", "45 kilometers is 45000 meters."
    )
    (tmp_path / "x.json").write_text(json.dumps([{"instruction": "Say hi", "output": "hi"}]))
    assert read_instructions(tmp_path / "x.json") == [InstructionExample("Say hi", "", "hi")]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('[\n{"instruction": "a",\n "output": }\n]', r"x.json line 3: not valid JSON"),
        (
            '[{"instruction": "a", "output": "b"}, {"instruction": "c"}]',
            r"record 2: 'output' must be a string \(it is missing\)",
        ),
        ('{"instruction": "a"}', r"expected a JSON list"),
        ("[]", r"holds no examples"),
    ],
)
def test_malformed_instruction_files(tmp_path, content, message):
    (tmp_path / "x.json").write_text(content)
    with pytest.raises(GptlabError, match=message):
        read_instructions(tmp_path / "x.json")


def test_split_is_seeded_disjoint_and_complete():
    items = list(range(100))
    splits = split_examples(items, 0.1, 0.2, seed=3, source="s")
    assert (len(splits.train), len(splits.val), len(splits.test)) == (70, 10, 20)
    assert sorted(splits.train + splits.val + splits.test) == items
    assert split_examples(items, 0.1, 0.2, seed=3, source="s") == splits
    with pytest.raises(GptlabError, match="too few"):
        split_examples([1, 2], 0.1, 0.2, seed=0, source="tiny.tsv")


def test_downsampling_keeps_the_smallest_class_size():
    examples = [LabeledText("a", str(i)) for i in range(10)] + [
        LabeledText("b", "x"),
        LabeledText("b", "y"),
    ]
    kept = downsample_to_smallest_class(examples, seed=0)
    assert sorted(e.label for e in kept) == ["a", "a", "b", "b"]


def test_pad_right():
    assert right_pad([[1, 2, 3], [4]], 0).tolist() == [[1, 2, 3], [4, 0, 0]]
