"""The bad-input sweep for `gptlab explore`'s server: hostile Host headers, bodies and
connections, a run log that grows (or is damaged), and --export past its size cap. Each answer
is the API's error shape, {"error": "one line"}, with a 4xx status."""

from __future__ import annotations

import json
import socket
import threading
import time

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
from explore_testing import metrics_records, model_folder, run_folder  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

from gptlab.cli import main  # noqa: E402
from gptlab.explore import guards, runs  # noqa: E402
from gptlab.explore.app import create_app  # noqa: E402
from gptlab.explore.server import bind, http_server  # noqa: E402
from gptlab.explore.sources import Source, load_sources  # noqa: E402
from gptlab.train.plots import smooth  # noqa: E402


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("explore-sweep")
    return {"run": run_folder(root / "run"), "model": model_folder(root / "model")}


@pytest.fixture(scope="module")
def served(folders):
    return load_sources([Source(str(folders["run"])), Source(str(folders["model"]))], "cpu")


@pytest.fixture(scope="module")
def client(served):
    return TestClient(create_app(served))


# ---- Host: a loopback server answers only its own names (DNS rebinding) -----------------------


@pytest.mark.parametrize(
    ("host", "status"),
    [
        ("localhost:8765", 200),
        ("127.0.0.1:8765", 200),
        ("[::1]:8765", 200),
        ("LOCALHOST:8765", 200),
        ("localhost", 200),
        ("evil.example:8765", 400),
        ("localhost.evil.example:8765", 400),
        ("127.0.0.1:9999", 400),
        ("", 400),
    ],
)
def test_a_loopback_server_answers_only_loopback_host_names(served, host, status):
    client = TestClient(guards.LoopbackHostOnly(create_app(served), 8765))
    response = client.get("/api/models", headers={"host": host})
    assert response.status_code == status, response.text
    if status != 200:
        assert "Host" in response.json()["error"]


# ---- bodies: nested, stalled --------------------------------------------------------------------


@pytest.mark.parametrize("depth", [150, 5000])
def test_a_deeply_nested_body_is_a_400_naming_the_nesting(client, depth):
    body = '{"prompt": "hi", "model": "model", "x": ' + "[" * depth + "]" * depth + "}"
    response = client.post(
        "/api/attention", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 400 and "nested" in response.json()["error"], response.text


# ---- the run view: incremental, and it says when the run has ended -----------------------------


def test_the_run_view_reads_only_new_lines_and_smooths_across_polls(tmp_path, monkeypatch):
    run = run_folder(tmp_path / "run", steps=6)
    explorer = load_sources([Source(str(run))], "cpu")["run"]
    first = runs.run_view(explorer)
    tail = runs._TAILS[str(run.resolve())]
    read_at = tail.offset
    with (run / "metrics.jsonl").open("a", encoding="utf-8") as f:
        for record in metrics_records(9)[6:]:
            f.write(json.dumps(record) + "\n")
        f.write('{"step": 10, "train_lo')  # the line being written: not read yet
    second = runs.run_view(explorer, since=first["total"])
    assert first["total"] == 6 and second["total"] == 9 and len(second["records"]) == 3
    assert tail.offset > read_at and (run / "metrics.jsonl").stat().st_size > tail.offset
    everything = metrics_records(9)
    expected = smooth([r["train_loss"] for r in everything], runs.SMOOTHING)
    got = [r["train_loss_smoothed"] for r in first["records"] + second["records"]]
    assert got == pytest.approx(expected, rel=1e-12)
    assert first["training"] is False  # nobody holds the run's lock
    # A run started again (--overwrite rewrites the log): read from the start.
    (run / "metrics.jsonl").write_text(json.dumps(everything[0]) + "\n", encoding="utf-8")
    assert runs.run_view(explorer)["total"] == 1


def test_the_run_view_says_whether_the_run_is_training(tmp_path):
    from gptlab.train.run_folder import lock_run_folder

    run = run_folder(tmp_path / "run", steps=3)
    explorer = load_sources([Source(str(run))], "cpu")["run"]
    lock = lock_run_folder(run)
    try:
        assert runs.run_view(explorer)["training"] is True
    finally:
        lock.close()
    (run / ".gptlab.lock").write_text("999999999\n")  # a pid no process has
    assert runs.run_view(explorer)["training"] is False


def test_a_damaged_run_log_is_a_400_not_a_500(tmp_path):
    run = run_folder(tmp_path / "run", steps=3)
    client = TestClient(create_app(load_sources([Source(str(run))], "cpu")))
    with (run / "metrics.jsonl").open("a", encoding="utf-8") as f:
        f.write('{"step": ' + "[" * 5000 + "]" * 5000 + "}\n")
    response = client.get("/api/run")
    assert response.status_code == 400 and "line 4" in response.json()["error"], response.text


# ---- connections: a request head or body left unfinished is not held forever -------------------


@pytest.fixture
def live_server(served, monkeypatch):
    monkeypatch.setattr(guards, "HEADER_TIMEOUT_S", 0.5)
    monkeypatch.setattr(guards, "BODY_TIMEOUT_S", 0.5)
    sock = bind("127.0.0.1", 0)
    server = http_server(served, sock)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    yield sock.getsockname()[1]
    server.should_exit = True
    thread.join(timeout=10)
    sock.close()


def talk(port: int, data: bytes) -> bytes:
    """Send `data`, then read until the server closes the connection (or 20 s pass)."""
    with socket.create_connection(("127.0.0.1", port), timeout=20) as conn:
        conn.sendall(data)
        received = b""
        while chunk := conn.recv(65536):
            received += chunk
        return received


def test_a_half_sent_request_head_is_closed(live_server):
    assert talk(live_server, b"GET /api/models HTTP/1.1\r\nHost: local") == b""
    assert talk(live_server, b"") == b""  # connected, sent nothing


def test_a_stalled_body_is_a_408(live_server):
    head = (
        b"POST /api/attention HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
        b"Content-Type: application/json\r\nContent-Length: 100\r\nConnection: close\r\n\r\n"
        % live_server
    )
    answer = talk(live_server, head + b'{"prompt": "hi"')
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert b"stopped arriving" in answer


def test_the_live_server_refuses_a_foreign_host_and_answers_its_own(live_server):
    request = b"GET /api/models HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n"
    assert talk(live_server, request % b"attacker.example").startswith(b"HTTP/1.1 400")
    own = b"127.0.0.1:%d" % live_server
    assert talk(live_server, request % own).startswith(b"HTTP/1.1 200")


# ---- --export: the size cap before the work -----------------------------------------------------


def test_export_refuses_a_page_past_the_cap_before_the_work(folders, tmp_path, capsys, monkeypatch):
    import sys

    page = tmp_path / "page.html"
    prompt = " the" * 60  # 60 tokens: the page would hold 2 x 3 x 60 x 60 weights
    cap = sys.modules["gptlab.interp.attention_html"]
    monkeypatch.setattr(cap, "MAX_PAGE_WEIGHTS", 2 * 3 * 60 * 60 - 1)
    code = main(["explore", str(folders["model"]), "--export", str(page), "--prompt", prompt])
    err = capsys.readouterr().err
    assert code == 1 and "21,600 attention weights" in err and "ablating" not in err, err
    assert not page.exists()
