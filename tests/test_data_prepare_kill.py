"""Killing `gptlab prepare`: its tokenizer workers die with it (SIGKILL or SIGTERM)."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import gptlab

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


def wait_until(condition, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def partials(out: Path) -> list[Path]:
    return sorted(p for p in out.parent.iterdir() if p.name.endswith(".partial"))


def start_prepare_and_wait_for_workers(source: Path, out: Path):
    """Start `gptlab prepare` in its own session; return it and its 2 workers once they run."""
    env = dict(os.environ)
    src = str(Path(gptlab.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join([src] + [p for p in [env.get("PYTHONPATH")] if p])
    process = subprocess.Popen(
        [sys.executable, "-m", "gptlab", "prepare", str(source), "--workers", "2"]
        + ["--out", str(out), "--quiet"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,  # its own process group: the test can always clean up after it
    )
    assert wait_until(lambda: len(children(process.pid)) >= 2 or process.poll() is not None, 15)
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
def test_sigkill_kills_the_workers(big_text, tmp_path, reap):
    out = tmp_path / "out"
    process, workers = start_prepare_and_wait_for_workers(big_text, out)
    reap.append((process, workers))
    process.kill()
    assert process.wait(timeout=10) == -signal.SIGKILL
    assert wait_until(lambda: all(is_gone(pid) for pid in workers), 5), (
        f"workers still running after their parent was SIGKILLed: {sorted(workers)}"
    )


@needs_proc
def test_sigterm_kills_the_workers(big_text, tmp_path, reap):
    out = tmp_path / "out"
    process, workers = start_prepare_and_wait_for_workers(big_text, out)
    reap.append((process, workers))
    process.terminate()
    status = process.wait(timeout=10)
    assert wait_until(lambda: all(is_gone(pid) for pid in workers), 5), (
        f"workers still running after their parent was SIGTERMed: {sorted(workers)}"
    )
    assert status == -signal.SIGTERM


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
    try:
        worker = int(parent.stdout.readline())
        parent.kill()
        parent.wait()
        assert wait_until(lambda: is_gone(worker), 5), "the polling thread did not end the worker"
    finally:
        parent.kill()
        parent.wait()
        parent.stdout.close()
        if not is_gone(worker):
            os.kill(worker, signal.SIGKILL)
