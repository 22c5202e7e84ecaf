"""The one reader of user-named files: every way a file can be wrong is one GptlabError line."""

import pytest

from gptlab.errors import GptlabError
from gptlab.fileio import atomic_write_text, jsonl_records, read_text


def test_read_text_round_trips_and_names_what_is_wrong(tmp_path):
    path = tmp_path / "a.txt"
    atomic_write_text(path, "héllo\n")
    assert read_text(path) == "héllo\n"
    cases = {
        tmp_path / "missing.txt": "data file .*missing.txt does not exist",
        tmp_path: "is a folder, not a file",
    }
    (tmp_path / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    cases[tmp_path / "latin1.txt"] = r"is not UTF-8 text \(unexpected end of data at byte 3\)"
    (tmp_path / "blank.txt").write_text(" \n", encoding="utf-8")
    cases[tmp_path / "blank.txt"] = "data file .*blank.txt is empty"
    for bad, message in cases.items():
        with pytest.raises(GptlabError, match=message):
            read_text(bad, "data file")
    assert read_text(tmp_path / "blank.txt", allow_empty=True) == " \n"


def test_jsonl_records_skip_blank_lines_and_point_at_the_bad_one(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text('{"a": 1}\n\n{"a": 2}\n', encoding="utf-8")
    assert list(jsonl_records(path)) == [(1, {"a": 1}), (3, {"a": 2})]
    path.write_text('{"a": 1}\n{"a": \n', encoding="utf-8")
    with pytest.raises(GptlabError, match=r"r.jsonl line 2: not valid JSON \(Expecting value"):
        list(jsonl_records(path))
    path.write_text("[1, 2]\n", encoding="utf-8")
    with pytest.raises(GptlabError, match="line 1: expected a JSON object"):
        list(jsonl_records(path))
    with pytest.raises(GptlabError, match="metrics file .* does not exist"):
        list(jsonl_records(tmp_path / "none.jsonl", "metrics file"))


def test_files_written_atomically_respect_the_umask(tmp_path):
    import os

    from gptlab.checkpoints.model_folder import save_model
    from gptlab.model import GPT
    from gptlab.model.config import ModelConfig

    old = os.umask(0o022)
    try:
        save_model(
            tmp_path, GPT(ModelConfig(vocab_size=8, block_size=4, n_layer=1, n_head=1, n_embd=4))
        )
        atomic_write_text(tmp_path / "a.txt", "x")
    finally:
        os.umask(old)
    for name in ("model.safetensors", "config.json", "a.txt"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o644, name
