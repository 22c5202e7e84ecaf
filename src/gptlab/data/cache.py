"""The gptlab home folder and checksum-verified downloads into it.

Everything gptlab fetches or builds for data lives under one folder: `$GPTLAB_HOME`, or
`~/.cache/gptlab` when that variable is not set.

    downloads/   files fetched from a URL (each verified by sha256 before it is kept)
    prepared/    tokenized datasets written by `gptlab prepare`

A download is streamed into a temp file next to its destination and renamed into place only once
its sha256 matches, so an interrupted or corrupted download is never later taken as complete.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from tqdm import tqdm

from gptlab.errors import GptlabError
from gptlab.fileio import sha256_file

HOME_ENV_VAR = "GPTLAB_HOME"
_CHUNK_BYTES = 1 << 20


def gptlab_home() -> Path:
    """The folder holding downloads and prepared datasets ($GPTLAB_HOME or ~/.cache/gptlab)."""
    configured = os.environ.get(HOME_ENV_VAR)
    if configured:
        return Path(configured).expanduser()
    return Path("~/.cache/gptlab").expanduser()


def downloads_dir() -> Path:
    return gptlab_home() / "downloads"


def prepared_root() -> Path:
    return gptlab_home() / "prepared"


def download(
    url: str, dest: str | Path, sha256: str, *, show_progress: bool = True, timeout: float = 30.0
) -> Path:
    """Make `dest` hold the file at `url` whose sha256 is `sha256`, and return `dest`.

    A `dest` that already exists with the right checksum is used as it is (this is also how a
    file is provided by hand on a machine without network). Otherwise the file is downloaded to
    a temp file in the same folder and renamed to `dest` only after its checksum matched.
    """
    dest = Path(dest)
    no_network_hint = f"with no network, place the file yourself at {dest} (sha256 {sha256})"
    if dest.is_file():
        if sha256_file(dest) == sha256:
            return dest
        no_network_hint += "; the file there now has a different checksum"
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    except OSError as exc:
        raise GptlabError(
            f"cannot write the download folder {dest.parent}: {exc.strerror}"
        ) from None
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            actual = _fetch(url, out, dest, no_network_hint, show_progress, timeout)
        if actual != sha256:
            raise GptlabError(
                f"the file downloaded from {url} has sha256 {actual}, expected {sha256}; "
                "it was not kept (the server sent a different file: try again later)"
            )
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def _fetch(
    url: str, out, dest: Path, no_network_hint: str, show_progress: bool, timeout: float
) -> str:
    """Stream `url` into the open binary file `out` and return the sha256 of what was written."""
    try:
        response = urllib.request.urlopen(url, timeout=timeout)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise GptlabError(f"could not download {url} ({reason}); {no_network_hint}") from None
    digest = hashlib.sha256()
    with response:
        size = response.headers.get("Content-Length")
        with tqdm(
            total=int(size) if size else None,
            unit="B",
            unit_scale=True,
            desc=f"download {dest.name}",
            disable=not show_progress,
        ) as bar:
            while True:
                try:
                    chunk = response.read(_CHUNK_BYTES)
                except OSError as exc:
                    raise GptlabError(
                        f"the download of {url} broke off ({exc}); {no_network_hint}"
                    ) from None
                if not chunk:
                    break
                digest.update(chunk)
                try:
                    out.write(chunk)
                except OSError as exc:
                    raise GptlabError(f"cannot write the download {dest}: {exc.strerror}") from None
                bar.update(len(chunk))
    return digest.hexdigest()
