"""Sources: where documents come from, as a stream of strings.

A source spec is one of
    tinyshakespeare            the char-rnn TinyShakespeare text (downloaded once, sha256-checked)
    fineweb-edu                HuggingFaceFW/fineweb-edu, config sample-10BT unless --hf-config
    fineweb                    HuggingFaceFW/fineweb, config sample-10BT unless --hf-config
    openwebtext                Skylion007/openwebtext
    hf:OWNER/NAME[:CONFIG]     any Hugging Face hub dataset (split "train", column --text-column)
    PATH | FOLDER | GLOB       local .txt/.jsonl/.json/.parquet/.csv files (see gptlab.data.local_files)
    repeats:SPEC               SPEC's text with spans of it repeated (gptlab.data.repeats), the
                               data of the `induction` preset

Hub datasets are streamed with `datasets` (streaming=True): nothing is downloaded whole, and a
budget (max_docs) stops the stream early. `stream_hub_dataset` is the one function that reads
the hub; given a builder name and local data files ("json", data_files=...) it streams local
files the same way, which is how it is tested offline.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass

from gptlab.data.cache import download, downloads_dir
from gptlab.data.local_files import LocalFiles, TextStats, decode_utf8, looks_like_path
from gptlab.data.repeats import PREFIX as REPEATS_PREFIX
from gptlab.data.repeats import RepeatedSpans
from gptlab.errors import GptlabError
from gptlab.optional import import_optional
from gptlab.samples import shipped_file


@dataclass(frozen=True)
class DownloadedFile:
    """A single text file fetched from a URL and kept in the cache, checked by sha256.

    `shipped` names the same file under the repository's data/samples when a clone carries it:
    then it is read from there and nothing is downloaded.
    """

    url: str
    sha256: str
    filename: str
    shipped: str | None = None


@dataclass(frozen=True)
class HubDataset:
    """A dataset on the Hugging Face hub, streamed."""

    path: str
    config: str | None = None
    split: str = "train"


DOWNLOADS = {
    "tinyshakespeare": DownloadedFile(
        url="https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt",
        sha256="86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed",
        filename="input.txt",
        shipped="tinyshakespeare/input.txt",
    ),
}
HUB_DATASETS = {
    "fineweb-edu": HubDataset("HuggingFaceFW/fineweb-edu", config="sample-10BT"),
    "fineweb": HubDataset("HuggingFaceFW/fineweb", config="sample-10BT"),
    "openwebtext": HubDataset("Skylion007/openwebtext"),
}
SOURCE_NAMES = (*DOWNLOADS, *HUB_DATASETS)
SOURCE_FORMS = (
    "hf:OWNER/NAME[:CONFIG], local .txt/.jsonl/.json/.parquet/.csv files, a folder or a glob, "
    "or repeats:SPEC"
)


def download_path(name: str):
    """Where the cache keeps the downloaded file of source `name` (place it there by hand offline)."""
    return downloads_dir() / name / DOWNLOADS[name].filename


class DownloadedText:
    """One text from a URL (split by its tail: the last val_fraction of its tokens is validation)."""

    single_text = True

    def __init__(self, name: str, *, show_progress: bool = True):
        self.name = name
        self.slug = name
        self.file = DOWNLOADS[name]
        self.stats = TextStats()
        self.show_progress = show_progress

    def documents(self) -> Iterator[str]:
        path = self.file.shipped and shipped_file(self.file.shipped, self.file.sha256)
        if not path:
            path = download(
                self.file.url,
                download_path(self.name),
                self.file.sha256,
                show_progress=self.show_progress,
            )
        text = decode_utf8(path.read_bytes(), self.stats)
        if text:
            yield text

    def known_documents(self) -> int | None:
        return 1

    def describe(self) -> dict:
        return {
            "kind": "download",
            "name": self.name,
            "url": self.file.url,
            "sha256": self.file.sha256,
        }


class HubSource:
    """Documents streamed from a Hugging Face hub dataset."""

    single_text = False

    def __init__(self, dataset: HubDataset, *, text_column: str = "text", name: str | None = None):
        self.dataset = dataset
        self.text_column = text_column
        self.stats = TextStats()
        self.slug = (name or "hf-" + dataset.path.replace("/", "-")) + (
            f"-{dataset.config}" if dataset.config else ""
        )

    def documents(self) -> Iterator[str]:
        for text in stream_hub_dataset(
            self.dataset.path,
            name=self.dataset.config,
            split=self.dataset.split,
            text_column=self.text_column,
        ):
            if text:
                yield text
            else:
                self.stats.empty_documents += 1

    def known_documents(self) -> int | None:
        return None

    def describe(self) -> dict:
        return {
            "kind": "hub",
            "dataset": self.dataset.path,
            "config": self.dataset.config,
            "split": self.dataset.split,
            "text_column": self.text_column,
        }


def stream_hub_dataset(
    path: str,
    *,
    name: str | None = None,
    data_files=None,
    split: str = "train",
    text_column: str = "text",
) -> Iterator[str | None]:
    """Stream the `text_column` of a `datasets` dataset, one document at a time.

    `path` is a hub name ("HuggingFaceFW/fineweb-edu") or a builder for local files ("json",
    "parquet" with `data_files`). Nothing is downloaded whole: `streaming=True` reads as it goes.
    """
    datasets = import_optional("datasets", "data")
    where = path if data_files is None else f"{path} files {data_files}"

    def no_network(reason) -> GptlabError:
        return GptlabError(
            f"could not stream {where} from the Hugging Face hub ({reason}); with no network, "
            "download its data files elsewhere and pass them as local files "
            "(gptlab prepare 'folder/*.parquet'), or copy a prepared dataset folder here"
        )

    try:
        stream = datasets.load_dataset(
            path, name=name, data_files=data_files, split=split, streaming=True
        )
        records = iter(stream)
        first = next(records, None)
    except ConnectionError as exc:
        raise no_network(exc) from None
    except (FileNotFoundError, ValueError, RuntimeError) as exc:
        # DatasetNotFoundError (a FileNotFoundError), unknown config or split (ValueError), a
        # dataset that still needs a loading script, which datasets >= 4 refuses (RuntimeError).
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise GptlabError(
            f"cannot stream {where} (config {name!r}, split {split!r}): {reason}"
        ) from None
    if first is None:
        return
    if text_column not in first:
        raise GptlabError(
            f"{where} has no column {text_column!r}; its columns are: {', '.join(first)} "
            "(choose one as text_column)"
        )
    try:
        for record in itertools.chain([first], records):
            yield record[text_column]
    except ConnectionError as exc:
        raise no_network(f"the stream broke off: {exc}") from None


def check_source_spec(spec: str) -> None:
    """One line for a spec that names nothing ("" or a bare "repeats:"): read as a path, it would
    be the current folder, and every file in it would become a document."""
    if not spec.removeprefix(REPEATS_PREFIX).strip():
        raise GptlabError(
            f"the data source {spec!r} names nothing: use one of {', '.join(SOURCE_NAMES)}, "
            f"{SOURCE_FORMS}"
        )


def resolve_source(
    spec: str,
    *,
    text_column: str = "text",
    hf_config: str | None = None,
    show_progress: bool = True,
):
    """The source object for a spec: `.documents()`, `.describe()`, `.stats`, `.single_text`."""
    check_source_spec(spec)
    if spec.startswith(REPEATS_PREFIX):
        inner = resolve_source(
            spec.removeprefix(REPEATS_PREFIX),
            text_column=text_column,
            hf_config=hf_config,
            show_progress=show_progress,
        )
        return RepeatedSpans(inner)
    if spec in DOWNLOADS:
        return DownloadedText(spec, show_progress=show_progress)
    if spec in HUB_DATASETS:
        dataset = HUB_DATASETS[spec]
        if hf_config is not None:
            dataset = HubDataset(dataset.path, config=hf_config, split=dataset.split)
        return HubSource(dataset, text_column=text_column, name=spec)
    if spec.startswith("hf:"):
        path, _, config = spec[3:].partition(":")
        if path.count("/") > 1 or not path.strip("/"):
            raise GptlabError(f"{spec!r} is not of the form hf:OWNER/NAME[:CONFIG]")
        return HubSource(HubDataset(path, config=config or hf_config), text_column=text_column)
    if looks_like_path(spec):
        return LocalFiles(spec, text_column=text_column)
    raise GptlabError(
        f"unknown source {spec!r}: use one of {', '.join(SOURCE_NAMES)}, {SOURCE_FORMS}"
    )


def iter_documents(
    spec: str,
    *,
    max_docs: int | None = None,
    text_column: str = "text",
    hf_config: str | None = None,
) -> Iterator[str]:
    """Stream the documents of a source spec (at most `max_docs` of them), skipping empty ones."""
    source = resolve_source(spec, text_column=text_column, hf_config=hf_config)
    return itertools.islice(source.documents(), max_docs)


def describe_source(spec: str, *, text_column: str = "text", hf_config: str | None = None) -> dict:
    """What a source spec refers to, as recorded in a prepared dataset's meta.json."""
    return resolve_source(spec, text_column=text_column, hf_config=hf_config).describe()
