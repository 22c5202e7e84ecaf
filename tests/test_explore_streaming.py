"""`/api/generate` streaming under stress: numerically empty settings, failures inside a step,
and more readers than the server streams at once."""

from __future__ import annotations

import json
import math
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")
from explore_testing import PROMPT, model_folder  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

from gptlab.explore import streaming  # noqa: E402
from gptlab.explore.app import create_app  # noqa: E402
from gptlab.explore.sources import Source, load_sources  # noqa: E402


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return model_folder(tmp_path_factory.mktemp("stream") / "model")


@pytest.fixture
def served(folder):
    return load_sources([Source(str(folder))], "cpu")


def stream(client, **body) -> tuple[int, list[dict]]:
    response = client.post("/api/generate", json={"prompt": PROMPT, **body})
    lines = [json.loads(line) for line in response.text.splitlines() if line]
    return response.status_code, lines


UNDERFLOW = [dict(temperature=1e-45), dict(top_p=1e-300), dict(temperature=1e-45, top_p=1e-300)]


@pytest.mark.parametrize("settings", UNDERFLOW)
def test_underflowing_settings_stream_the_greedy_text(served, settings):
    """temperature 1e-45 made every logit +-inf and torch.multinomial raise inside the stream,
    which answered an empty 200. Such settings are greedy decoding in the limit, and give it."""
    client = TestClient(create_app(served))
    status, events = stream(client, max_new_tokens=8, seed=0, **settings)
    assert status == 200 and events[-1]["type"] == "done", events
    _, greedy = stream(client, max_new_tokens=8, temperature=0)
    assert events[-1]["text"] == greedy[-1]["text"]


@pytest.mark.parametrize("settings", UNDERFLOW)
def test_next_token_probabilities_are_numbers(served, settings):
    client = TestClient(create_app(served))
    response = client.post("/api/next_token", json={"prompt": PROMPT, **settings})
    assert response.status_code == 200, response.text
    body = response.json()
    sample_probs = [c["sample_prob"] for c in body["candidates"]]
    assert all(isinstance(p, float) and math.isfinite(p) for p in sample_probs)
    assert sorted(sample_probs)[-1] == 1.0  # all on the argmax: the greedy limit
    assert body["kept_tokens"] == 1


def test_a_failure_inside_a_step_is_an_error_event(served):
    model = served["model"].model
    calls = []

    def fail_on_third_step(*_):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("simulated kernel failure")

    hook = model.register_forward_pre_hook(fail_on_third_step)
    try:
        status, events = stream(TestClient(create_app(served)), max_new_tokens=10)
    finally:
        hook.remove()
    assert status == 200
    assert [e["type"] for e in events] == ["token", "token", "error"]
    assert "RuntimeError" in events[-1]["message"] and "\n" not in events[-1]["message"]
    assert not served["model"].lock.locked()


def test_more_streams_than_the_bound_get_429_and_the_page_still_answers(served):
    """45 readers at once on a real server: MAX_STREAMS stream, the others get a one-line 429
    at once, and `GET /` and `/api/models` answer while the streams wait. The test holds the
    model's lock meanwhile (as a long view would), so no stream can finish and free its slot
    early: the counts are exact, not timed."""
    import httpx
    import uvicorn

    from gptlab.explore.server import bind

    sock = bind("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(create_app(served), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    started = threading.Barrier(46, timeout=60)
    try:
        for _ in range(200):  # until the server answers
            try:
                httpx.get(f"{base}/api/models")
                break
            except httpx.TransportError:
                time.sleep(0.05)

        def read_one(_i: int) -> tuple[int, str]:
            body = {"prompt": PROMPT, "max_new_tokens": 20}
            with httpx.stream("POST", f"{base}/api/generate", json=body, timeout=120) as response:
                started.wait()
                return response.status_code, response.read().decode()

        lock = served["model"].lock
        with ThreadPoolExecutor(45) as pool, lock:
            results = pool.map(read_one, range(45))
            started.wait()  # every request has its status; the streams wait for the model
            page = httpx.get(f"{base}/", timeout=10)
            models = httpx.get(f"{base}/api/models", timeout=10)
            lock.release()  # let the streams run to their end
            results = list(results)
            lock.acquire()
        assert page.status_code == 200 and models.status_code == 200
        statuses = [status for status, _ in results]
        assert statuses.count(200) == streaming.MAX_STREAMS
        assert statuses.count(429) == 45 - streaming.MAX_STREAMS
        for status, text in results:
            if status == 429:
                assert "already streaming" in json.loads(text)["error"]
            else:
                assert json.loads(text.splitlines()[-1])["type"] == "done"
        # Every slot was given back: a new stream is served.
        response = httpx.post(f"{base}/api/generate", json={"prompt": PROMPT, "max_new_tokens": 2})
        assert response.status_code == 200
    finally:
        server.should_exit = True
        thread.join(timeout=10)
