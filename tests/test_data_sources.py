"""Sources and the cache: checksum-verified downloads (against a 127.0.0.1 server), hub streaming
(through local jsonl/parquet files), local file formats and the bad-input errors."""

import dataclasses
import functools
import http.server
import json
import shutil
import threading

import pytest

from gptlab.data.cache import download, gptlab_home
from gptlab.data.sources import (
    DOWNLOADS,
    SOURCE_NAMES,
    describe_source,
    download_path,
    iter_documents,
    resolve_source,
    stream_hub_dataset,
)
from gptlab.errors import GptlabError

TINYSHAKESPEARE_SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"


@pytest.fixture
def local_server(shared_data):
    """An HTTP server on 127.0.0.1 serving ../shared/data; yields its base URL."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(shared_data))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def fineweb_edu_texts(shared_data):
    lines = (shared_data / "fineweb_edu" / "sample.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line)["text"] for line in lines]


def test_home_follows_the_environment_variable(monkeypatch, tmp_path):
    monkeypatch.setenv("GPTLAB_HOME", str(tmp_path / "home"))
    assert gptlab_home() == tmp_path / "home"
    monkeypatch.delenv("GPTLAB_HOME")
    assert gptlab_home().parts[-2:] == (".cache", "gptlab")


def test_download_from_a_local_server_keeps_the_verified_file(local_server, shared_data, tmp_path):
    dest = tmp_path / "cache" / "input.txt"
    url = f"{local_server}/tinyshakespeare/input.txt"
    assert download(url, dest, TINYSHAKESPEARE_SHA256, show_progress=False) == dest
    assert dest.read_bytes() == (shared_data / "tinyshakespeare" / "input.txt").read_bytes()
    assert [p.name for p in dest.parent.iterdir()] == ["input.txt"]  # no temp file left


def test_download_with_a_wrong_checksum_keeps_nothing(local_server, tmp_path):
    dest = tmp_path / "cache" / "input.txt"
    with pytest.raises(GptlabError, match="expected 0000"):
        download(f"{local_server}/tinyshakespeare/input.txt", dest, "0" * 64, show_progress=False)
    assert list(dest.parent.iterdir()) == []


def test_download_without_network_says_where_to_place_the_file(tmp_path):
    dest = tmp_path / "cache" / "input.txt"
    # Port 1 on the loopback interface refuses connections: the same path as no network.
    with pytest.raises(GptlabError, match=f"place the file yourself at {dest}"):
        download("http://127.0.0.1:1/input.txt", dest, TINYSHAKESPEARE_SHA256, show_progress=False)
    assert not dest.exists()


def test_a_file_placed_by_hand_is_used_without_network(shared_data, tmp_path):
    dest = tmp_path / "input.txt"
    shutil.copy(shared_data / "tinyshakespeare" / "input.txt", dest)
    assert download("http://127.0.0.1:1/input.txt", dest, TINYSHAKESPEARE_SHA256) == dest


def test_tinyshakespeare_source_reads_the_shipped_copy_without_network(
    shared_data, tmp_path, monkeypatch
):
    """A clone trains the default source offline: the repository's copy, no download attempted."""
    monkeypatch.setenv("GPTLAB_HOME", str(tmp_path))  # a cache no other test has filled

    def no_download(*args, **kwargs):
        raise AssertionError("the shipped copy should have been used")

    monkeypatch.setattr("gptlab.data.sources.download", no_download)
    docs = list(iter_documents("tinyshakespeare"))
    assert docs == [(shared_data / "tinyshakespeare" / "input.txt").read_text(encoding="utf-8")]
    assert not download_path("tinyshakespeare").exists()  # nothing copied into the cache


def test_a_shipped_copy_with_another_checksum_is_not_taken_for_the_original(tmp_path, monkeypatch):
    (tmp_path / "tinyshakespeare").mkdir()
    (tmp_path / "tinyshakespeare" / "input.txt").write_text("edited\n", encoding="utf-8")
    monkeypatch.setattr("gptlab.samples.SAMPLES_DIR", tmp_path)
    monkeypatch.setenv("GPTLAB_HOME", str(tmp_path / "home"))  # and an empty download cache
    from gptlab.samples import shipped_file

    assert shipped_file("tinyshakespeare/input.txt", TINYSHAKESPEARE_SHA256) is None
    with pytest.raises(GptlabError, match="place the file yourself"):
        monkeypatch.setattr(
            "gptlab.data.sources.DOWNLOADS",
            {
                "tinyshakespeare": dataclasses.replace(
                    DOWNLOADS["tinyshakespeare"], url="http://127.0.0.1:1/input.txt"
                )
            },
        )
        list(iter_documents("tinyshakespeare"))


def test_tinyshakespeare_source_reads_the_seeded_cache(shared_data, tmp_path, monkeypatch):
    monkeypatch.setattr("gptlab.samples.SAMPLES_DIR", tmp_path)  # an installed wheel ships none
    path = download_path("tinyshakespeare")
    assert path.is_relative_to(gptlab_home())
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(shared_data / "tinyshakespeare" / "input.txt", path)
    docs = list(iter_documents("tinyshakespeare"))
    assert docs == [(shared_data / "tinyshakespeare" / "input.txt").read_text(encoding="utf-8")]
    assert describe_source("tinyshakespeare")["sha256"] == TINYSHAKESPEARE_SHA256


def test_hub_streaming_function_streams_local_jsonl_and_parquet(shared_data, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    texts = fineweb_edu_texts(shared_data)
    jsonl = str(shared_data / "fineweb_edu" / "sample.jsonl")
    assert list(stream_hub_dataset("json", data_files=jsonl)) == texts

    parquet = tmp_path / "sample.parquet"
    table = pa.table({"id": list(range(len(texts))), "body": texts})
    pq.write_table(table, parquet, row_group_size=40)
    assert list(stream_hub_dataset("parquet", data_files=str(parquet), text_column="body")) == texts
    # The local-file readers give the same documents as the hub path.
    assert list(iter_documents(jsonl)) == texts
    assert list(iter_documents(str(parquet), text_column="body")) == texts
    assert list(iter_documents(str(parquet), text_column="body", max_docs=3)) == texts[:3]


def test_missing_text_column_lists_the_columns(shared_data, tmp_path):
    jsonl = str(shared_data / "fineweb" / "sample.jsonl")
    with pytest.raises(GptlabError, match="no column 'body'.*text, language, language_score"):
        list(stream_hub_dataset("json", data_files=jsonl, text_column="body"))
    with pytest.raises(GptlabError, match="no field 'body'.*text, language, language_score"):
        list(iter_documents(jsonl, text_column="body"))
    csv_file = tmp_path / "a.csv"
    csv_file.write_text("title,content\nx,y\n")
    with pytest.raises(GptlabError, match="no column 'text'.*title, content"):
        list(iter_documents(str(csv_file)))


def test_unknown_source_lists_the_valid_ones():
    with pytest.raises(
        GptlabError, match="unknown source 'shakespeare'.*tinyshakespeare, fineweb-edu"
    ):
        resolve_source("shakespeare")
    assert SOURCE_NAMES == ("tinyshakespeare", "fineweb-edu", "fineweb", "openwebtext")


def test_hub_source_without_network_is_a_clear_error():
    # conftest sets HF_DATASETS_OFFLINE=1: the hub cannot be reached, as on a machine offline.
    with pytest.raises(GptlabError, match="could not stream HuggingFaceFW/fineweb-edu"):
        list(iter_documents("fineweb-edu", max_docs=1))
    assert describe_source("fineweb-edu")["config"] == "sample-10BT"
    assert describe_source("hf:owner/name:cfg")["config"] == "cfg"


def test_text_files_folders_and_globs(tmp_path):
    (tmp_path / "b.txt").write_text("second")
    (tmp_path / "a.txt").write_text("first")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "c.txt").write_text("third\nline")
    (tmp_path / "sub" / "empty.txt").write_text("")
    (tmp_path / "notes.md").write_text("ignored in a folder")
    assert list(iter_documents(str(tmp_path))) == ["first", "second", "third\nline"]
    assert list(iter_documents(str(tmp_path / "*.txt"))) == ["first", "second"]
    assert list(iter_documents(str(tmp_path / "**" / "c.txt"))) == ["third\nline"]
    assert resolve_source(str(tmp_path / "a.txt")).single_text
    assert not resolve_source(str(tmp_path)).single_text
    with pytest.raises(GptlabError, match="no file matches"):
        resolve_source(str(tmp_path / "*.parquet"))
    with pytest.raises(GptlabError, match="not a supported file type"):
        resolve_source(str(tmp_path / "notes.md"))


def test_csv_with_multiline_fields_and_a_json_array(shared_data, tmp_path):
    csv_file = tmp_path / "docs.csv"
    csv_file.write_text('id,text\n1,"one\nwith, comma"\n2,two\n3,\n', encoding="utf-8")
    source = resolve_source(str(csv_file))
    assert list(source.documents()) == ["one\nwith, comma", "two"]
    assert source.stats.empty_documents == 1

    alpaca = shared_data / "instruction_data_alpaca" / "instruction-data.json"
    expected = [r["instruction"] for r in json.loads(alpaca.read_text(encoding="utf-8"))]
    assert list(iter_documents(str(alpaca), text_column="instruction")) == expected


def test_invalid_utf8_is_replaced_and_counted(tmp_path):
    path = tmp_path / "bad.jsonl"
    # Two invalid sequences (\xff, \xc3 cut short) and one genuine U+FFFD that must not be counted.
    path.write_bytes(b'{"text": "caf\xc3\xa9 \xff ok"}\n{"text": "\xc3 x \xef\xbf\xbd"}\n')
    source = resolve_source(str(path))
    assert list(source.documents()) == ["café \ufffd ok", "\ufffd x \ufffd"]
    assert source.stats.invalid_utf8 == 2


def test_an_empty_file_is_an_error(tmp_path):
    path = tmp_path / "empty.txt"
    path.write_text("")
    with pytest.raises(GptlabError, match="is empty"):
        list(iter_documents(str(path)))
    with pytest.raises(GptlabError, match="does not exist"):
        resolve_source(str(tmp_path / "missing.jsonl"))


def test_local_fingerprint_changes_when_a_file_changes(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("one")
    before = describe_source(str(path))["fingerprint"]
    path.write_text("one more")
    assert describe_source(str(path))["fingerprint"] != before
