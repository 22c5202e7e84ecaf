"""Killing `gptlab prepare`: its tokenizer workers die with it (SIGKILL or SIGTERM), SIGTERM removes
its building folder, and the next prepare removes the building folder a SIGKILL left behind (and
never anything else)."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

import gptlab
from gptlab.cli import main
from gptlab.data.prepared_folder import PROGRESS_FILE, read_meta

needs_proc = pytest.mark.skipif(
    not Path("/proc/self/stat").is_file(),
    reason="finding and watching the worker processes reads /proc (Linux only)",
)


@pytest.fixture(scope="module")
def big_text(shared_data, tmp_path_factory) -> Path:
    """About 90 MB of real text (OpenWebText repeated): 2 workers need ~3 s to tokenize it."""
    sample = (shared_data / "openwebtext" / "openwebtext_sample.txt").read_text(encoding="utf-8")
    path = tmp_path_factory.mktemp("big") / "big.txt"
    path.write_text(sample * 180, encoding="utf-8")
    return path


def children(pid: int) -> set[int]:
    """The pids whose parent is `pid` (read from /proc/*/stat, no psutil)."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()  # after "(comm)": state, ppid, ...
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid:
            found.add(int(stat.parent.name))
    return found


def is_gone(pid: int) -> bool:
    """Gone, or dead and waiting to be reaped (a zombie holds no memory and runs nothing)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state in ("Z", "X")


# The bounds below are generous on purpose: the checks return as soon as the condition holds, and
# on a 2-core machine busy with other jobs (load 20) a worker's start or a SIGTERM's unwinding
# took longer than the 5-15 s first used here.
def wait_until(condition, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def partials(out: Path) -> list[Path]:
    return sorted(p for p in out.parent.iterdir() if p.name.endswith(".partial"))


def start_prepare_and_wait_for_workers(source: Path, out: Path, extra: list[str] = ()):
    """Start `gptlab prepare` in its own session; return it and its 2 workers once they run."""
    env = dict(os.environ)
    src = str(Path(gptlab.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join([src] + [p for p in [env.get("PYTHONPATH")] if p])
    process = subprocess.Popen(
        [sys.executable, "-m", "gptlab", "prepare", str(source), "--workers", "2"]
        + ["--out", str(out), "--quiet", *extra],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,  # its own process group: the test can always clean up after it
    )
    assert wait_until(lambda: len(children(process.pid)) >= 2 or process.poll() is not None, 60)
    assert process.poll() is None, f"prepare ended before it was killed: {process.stderr.read()}"
    workers = children(process.pid)
    assert len(workers) == 2 and partials(out)
    time.sleep(0.3)  # past the workers' start-up: now they are tokenizing
    assert process.poll() is None, "prepare finished too soon: the test text is too small"
    return process, workers


@pytest.fixture
def reap():
    """Kill what the test started, if it is still there (without the fix, workers outlive it)."""
    started = []
    yield started
    for process, workers in started:
        for pid in [process.pid, *sorted(workers)]:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        process.wait()
        process.stderr.close()


@needs_proc
def test_sigkill_kills_the_workers_and_the_next_prepare_removes_the_stale_partial(
    big_text, tmp_path, reap
):
    out = tmp_path / "out"
    process, workers = start_prepare_and_wait_for_workers(big_text, out)
    reap.append((process, workers))
    process.kill()
    assert process.wait(timeout=60) == -signal.SIGKILL
    assert wait_until(lambda: all(is_gone(pid) for pid in workers), 30), (
        f"workers still running after their parent was SIGKILLed: {sorted(workers)}"
    )
    [stale] = partials(out)  # SIGKILL runs no cleanup: the building folder stays...

    # ...until the next prepare into the same place (a budget keeps this one short).
    argv = ["prepare", str(big_text), "--out", str(out), "--workers", "2", "--quiet"]
    assert main(argv + ["--max-tokens", "50000"]) == 0
    assert not stale.exists(), "the next prepare kept the building folder SIGKILL left"
    assert partials(out) == []
    meta = read_meta(out)
    assert meta["splits"]["train"]["tokens"] + meta["splits"]["val"]["tokens"] == 50_000
    assert [name for name in os.listdir(out) if name.startswith(".")] == []  # no builder file


@needs_proc
def test_sigterm_cleans_up_the_workers_and_the_partial_folder(big_text, tmp_path, reap):
    out = tmp_path / "out"
    process, workers = start_prepare_and_wait_for_workers(big_text, out)
    reap.append((process, workers))
    process.terminate()
    status = process.wait(timeout=60)
    assert wait_until(lambda: all(is_gone(pid) for pid in workers), 30), (
        f"workers still running after their parent was SIGTERMed: {sorted(workers)}"
    )
    assert partials(out) == [], "SIGTERM left the building folder behind"
    assert not out.exists()
    assert status == 128 + signal.SIGTERM  # it unwound, then exited with SIGTERM's status
    assert process.stderr.read() == b""  # and quietly: no traceback


def test_only_stale_building_folders_of_that_folder_are_removed(tmp_path):
    from gptlab.data.prepared_folder import (
        BUILDER_FILE,
        UNOWNED_PARTIAL_SECONDS,
        remove_stale_partials,
    )

    out = tmp_path / "data"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # reaped: its pid names no process now
    host = socket.gethostname()

    def partial(name: str, builder: str | None = None, age: float = 0) -> Path:
        path = tmp_path / name
        path.mkdir()
        (path / "train_000000.bin").write_bytes(b"\0\0")
        if builder is not None:
            (path / BUILDER_FILE).write_text(builder)
        for p in path.iterdir():
            os.utime(p, (time.time() - age,) * 2)
        os.utime(path, (time.time() - age,) * 2)
        return path

    old = UNOWNED_PARTIAL_SECONDS + 60
    gone = [
        partial(".data.dead0001.partial", f"{dead.pid} {host}\n"),
        partial(".data.noown_01.partial", None, age=old),
    ]
    kept = [
        partial(".data.alive001.partial", f"{os.getpid()} {host}\n", age=old),  # a live builder
        partial(".data.fresh001.partial"),  # no builder file yet, just created
        partial(".data.other001.partial", f"{dead.pid} another-host\n", age=old),
        partial(".data.x.dead0002.partial", f"{dead.pid} {host}\n"),  # the folder "data.x"'s
        partial(".data.dead.partial", f"{dead.pid} {host}\n"),  # not a name mkdtemp gives
        partial("data.dead0003.partial", f"{dead.pid} {host}\n", age=old),
        partial(".data.dead0004.partial.keep", f"{dead.pid} {host}\n", age=old),
    ]
    (tmp_path / ".data.afile001.partial").write_text("a file, not a folder")
    (tmp_path / ".data.alink001.partial").symlink_to(tmp_path / "target", True)
    (tmp_path / "target").mkdir()
    os.utime(tmp_path / ".data.afile001.partial", (time.time() - old,) * 2)

    assert sorted(remove_stale_partials(out)) == sorted(gone)
    assert not any(p.exists() for p in gone)
    assert all((p / "train_000000.bin").exists() for p in kept)
    assert (tmp_path / ".data.afile001.partial").is_file()
    assert (tmp_path / ".data.alink001.partial").is_symlink() and (tmp_path / "target").is_dir()


@needs_proc
def test_a_worker_whose_parent_is_already_gone_or_dies_later_exits(tmp_path):
    # The two paths beside prctl: the parent died before the worker started watching it (getppid
    # is not the pid passed), and the polling thread used where prctl is missing (macOS).
    env = dict(os.environ)
    env["PYTHONPATH"] = str(Path(gptlab.__file__).resolve().parents[1])
    late = "from gptlab.data.parallel import _die_with_parent\n_die_with_parent(1)\nprint('alive')"
    result = subprocess.run([sys.executable, "-c", late], env=env, capture_output=True, text=True)
    assert (result.returncode, result.stdout) == (1, "")

    polled = (
        "import os, sys, time\n"
        "from gptlab.data.parallel import _die_with_parent\n"
        "if os.fork() == 0:\n"
        "    sys.platform = 'darwin'  # no prctl: the polling thread watches the parent\n"
        "    _die_with_parent(os.getppid())\n"
        "    print(os.getpid(), flush=True)\n"
        "    time.sleep(60)\n"
        "    os._exit(0)\n"
        "time.sleep(60)\n"
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", polled], env=env, stdout=subprocess.PIPE, text=True
    )
    worker = None
    try:
        worker = int(parent.stdout.readline())
        parent.kill()
        parent.wait()
        assert wait_until(lambda: is_gone(worker), 5), "the polling thread did not end the worker"
    finally:
        parent.kill()
        parent.wait()
        parent.stdout.close()
        if worker is not None and not is_gone(worker):
            os.kill(worker, signal.SIGKILL)


@pytest.fixture(scope="module")
def many_documents(shared_data, tmp_path_factory) -> Path:
    """About 100 MB of real documents (the FineWeb-Edu sample's, repeated) as JSONL: 2 workers
    need about 4.5 s on a 2-core Zen 4 VM. A progress record is written with each finished
    shard, so with the test's 400,000-token shards the first comes within a fraction of a second
    and the kill lands well before the end, on a fast machine too (with only the 2-s records, a
    machine that tokenized 60 MB in 2.7 s finished before the first one: CI failed so)."""
    lines = (shared_data / "fineweb_edu" / "sample.jsonl").read_text(encoding="utf-8")
    path = tmp_path_factory.mktemp("docs") / "docs.jsonl"
    path.write_text(lines * 250, encoding="utf-8")
    return path


def progress_of(out: Path) -> dict | None:
    for partial in partials(out):
        try:
            return json.loads((partial / PROGRESS_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
    return None


@needs_proc
def test_a_killed_prepare_is_carried_on_and_ends_as_an_uninterrupted_one(
    many_documents, tmp_path, reap, capsys
):
    # Small shards, so the kill finds finished shards and an open one of each split.
    flags = ["--workers", "2", "--shard-tokens", "400000", "--quiet"]
    process, workers = start_prepare_and_wait_for_workers(
        many_documents, tmp_path / "resumed", extra=["--shard-tokens", "400000"]
    )
    reap.append((process, workers))
    assert wait_until(lambda: progress_of(tmp_path / "resumed") is not None, 60)
    process.kill()
    assert process.wait(timeout=60) == -signal.SIGKILL
    recorded = progress_of(tmp_path / "resumed")
    assert recorded["documents_read"] > 0 and recorded["splits"]["train"]["shards"]
    # A kill in the middle of a record's write leaves its temporary file (CI met one): plant one.
    [killed] = partials(tmp_path / "resumed")
    (killed / f".{PROGRESS_FILE}.ab12cd_9.tmp").write_text('{"half": ')

    assert (
        main(["prepare", str(many_documents), "--out", str(tmp_path / "resumed"), *flags[:4]]) == 0
    )
    said = capsys.readouterr().err
    assert f"carrying on a killed prepare after {recorded['documents_read']:,} documents" in said
    assert partials(tmp_path / "resumed") == []
    argv = ["prepare", str(many_documents), "--out", str(tmp_path / "whole"), *flags]
    assert main(argv) == 0
    resumed, whole = read_meta(tmp_path / "resumed"), read_meta(tmp_path / "whole")
    assert resumed["splits"] == whole["splits"]  # every shard's tokens and sha256
    assert resumed["settings_hash"] == whole["settings_hash"]
    assert [n for n in os.listdir(tmp_path / "resumed") if n.startswith(".")] == []
