"""Round 3 of the bad-input sweep: the cases that are not one argv and one error line (a file
a writer fails on, a page in a browser, a server request), each checked against what it should
leave behind."""

from __future__ import annotations

import json
import shutil

import pytest

from gptlab.cli import main
from gptlab.data.files import LocalFiles
from gptlab.errors import GptlabError


def test_a_corpus_folder_skips_prepared_datasets_and_runs_inside_it(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a.txt").write_text("first document\n" * 50)
    (corpus / "b.jsonl").write_text(json.dumps({"text": "second"}) + "\n")
    elsewhere = tmp_path / "prepared"
    assert (
        main(
            [
                "prepare",
                str(corpus / "a.txt"),
                "--tokenizer",
                "char",
                "--out",
                str(elsewhere),
                "--quiet",
            ]
        )
        == 0
    )
    shutil.copytree(elsewhere, corpus / "prepared")  # a prepared folder moved into the corpus
    run = corpus / "runs" / "r1"
    (run / "checkpoints" / "step-0000001").mkdir(parents=True)
    (run / "checkpoints" / "step-0000001" / "config.json").write_text("{}")
    (run / "metrics.jsonl").write_text('{"step": 1}\n')
    (corpus / "runs" / "notes.txt").write_text("kept: a plain file beside the run")

    files = LocalFiles(str(corpus)).files
    assert [p.relative_to(corpus.resolve()).as_posix() for p in files] == [
        "a.txt",
        "b.jsonl",
        "runs/notes.txt",
    ]
    with pytest.raises(GptlabError, match="prepared dataset"):
        LocalFiles(str(elsewhere))
