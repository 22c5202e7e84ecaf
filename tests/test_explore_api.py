"""`gptlab explore`'s JSON API: every route against the library it wraps, and every bad request.

References are independent of the explorer: the model's own forward pass, hand-written
top-k / top-p filtering, hooks written here for the ablations, and `gptlab sample --greedy`.
"""

from __future__ import annotations

import base64
import json
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

pytest.importorskip("fastapi")
pytest.importorskip("httpx")
from explore_testing import PROMPT, metrics_records, model_folder, run_folder  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

from gptlab.checkpoints.load import load_model  # noqa: E402
from gptlab.cli import main  # noqa: E402
from gptlab.explore.app import MAX_BODY_BYTES, create_app  # noqa: E402
from gptlab.explore.sources import Source, load_sources  # noqa: E402
from gptlab.explore.views import LENS_WINDOW  # noqa: E402
from gptlab.interp.attention import attention_patterns  # noqa: E402
from gptlab.interp.attribution import direct_logit_attribution  # noqa: E402
from gptlab.interp.logit_lens import logit_lens  # noqa: E402


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("explore")
    return {"run": run_folder(root / "run"), "model": model_folder(root / "model")}


@pytest.fixture(scope="module")
def client(folders):
    served = load_sources([Source(str(folders["run"])), Source(str(folders["model"]))], "cpu")
    return TestClient(create_app(served))


@pytest.fixture(scope="module")
def reference(folders):
    """The model as the library loads it, the prompt's ids and its own logits."""
    model, tokenizer = load_model(folders["model"])
    idx = torch.tensor([tokenizer.encode(PROMPT)])
    with torch.no_grad():
        logits = model(idx)[0][0, -1].float()
    return model.eval(), tokenizer, idx, logits


def close(answer, expected, atol: float) -> bool:
    """Nested lists of numbers against a tensor (or lists), elementwise."""
    return torch.allclose(
        torch.tensor(answer, dtype=torch.float64),
        torch.as_tensor(expected, dtype=torch.float64),
        atol=atol,
    )


def post(client, route, **body):
    response = client.post(f"/api/{route}", json={"prompt": PROMPT, "model": "model", **body})
    assert response.status_code == 200, response.text
    return response.json()


def test_models_lists_every_source(client):
    models = client.get("/api/models").json()
    assert [m["name"] for m in models] == ["run", "model"]
    assert [m["has_run"] for m in models] == [True, False]
    assert models[1] | {"n_layer": 2, "n_head": 3, "block_size": 64} == models[1]


def test_next_token_bars_are_the_models_probabilities(client, reference):
    _, tokenizer, idx, logits = reference
    answer = post(client, "next_token", k=15)
    assert [t["id"] for t in answer["tokens"]] == idx[0].tolist()
    assert [t["text"] for t in answer["tokens"]] == [tokenizer.decode([i]) for i in idx[0]]
    probs = logits.softmax(-1)
    expected = probs.topk(15)
    assert [c["id"] for c in answer["candidates"]] == expected.indices.tolist()
    assert [c["prob"] for c in answer["candidates"]] == pytest.approx(
        expected.values.tolist(), abs=1e-6
    )
    # No filters at temperature 1: sampling uses the model's distribution as it is.
    assert [c["sample_prob"] for c in answer["candidates"]] == pytest.approx(
        expected.values.tolist(), abs=1e-6
    )
    assert answer["kept_tokens"] == 50257


def test_the_knobs_cut_what_sample_would_cut(client, reference):
    logits = reference[3]
    # top-k 4 at temperature 0.5, by hand: the 4 best logits / 0.5, renormalised.
    answer = post(client, "next_token", k=8, temperature=0.5, top_k=4)
    best = logits.topk(4).indices
    by_hand = torch.zeros_like(logits)
    by_hand[best] = (logits[best] / 0.5).softmax(-1)
    assert [c["sample_prob"] for c in answer["candidates"]] == pytest.approx(
        [float(by_hand[c["id"]]) for c in answer["candidates"]], abs=1e-6
    )
    assert answer["kept_tokens"] == 4
    # top-p: the smallest prefix of the sorted distribution whose mass reaches p.
    probs = logits.softmax(-1)
    sorted_probs = probs.sort(descending=True).values
    p = float(sorted_probs[:3].sum()) - 1e-6  # reached by the third token
    answer = post(client, "next_token", k=8, top_p=p)
    assert answer["kept_tokens"] == 3
    assert [c["sample_prob"] > 0 for c in answer["candidates"]] == [True] * 3 + [False] * 5
    assert answer["kept_mass"] == pytest.approx(float(sorted_probs[:3].sum()), abs=1e-5)
    greedy = post(client, "next_token", k=3, temperature=0)
    assert [c["sample_prob"] for c in greedy["candidates"]] == [1.0, 0.0, 0.0]


def stream(client, **body) -> list[dict]:
    response = client.post("/api/generate", json={"prompt": PROMPT, "model": "model", **body})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/x-ndjson")
    return [json.loads(line) for line in response.text.splitlines()]


def test_greedy_stream_is_gptlab_sample_greedy(client, folders, reference, capsys):
    events = stream(client, temperature=0, max_new_tokens=24)
    code = main(
        ["sample", "--checkpoint", str(folders["model"]), "--device", "cpu", "--prompt", PROMPT]
        + ["--greedy", "--max-new-tokens", "24"]
    )
    assert code == 0
    printed = capsys.readouterr().out
    tokens, done = events[:-1], events[-1]
    assert done["type"] == "done" and printed == done["text"] + "\n"
    assert "".join(t["text"] for t in tokens) == done["text"] and len(tokens) == 24
    # Each token carries the probability the model gave it: check the first by hand.
    model, _, idx, logits = reference
    first = tokens[0]
    assert first["id"] == int(logits.argmax())
    assert first["prob"] == pytest.approx(float(logits.softmax(-1).max()), abs=1e-6)
    assert first["alternatives"][0]["id"] == first["id"] and len(first["alternatives"]) == 5


def test_seeded_samples_repeat(client):
    first = stream(client, seed=7, max_new_tokens=10, top_k=20)
    assert stream(client, seed=7, max_new_tokens=10, top_k=20) == first
    assert stream(client, seed=8, max_new_tokens=10, top_k=20) != first


def test_attention_is_the_library_pattern(client, reference):
    model, _, idx, _ = reference
    answer = post(client, "attention", layer=1, head=2)
    patterns = attention_patterns(model, idx)
    assert close(answer["pattern"], patterns[1, 2], 1e-5)
    T = idx.shape[1]
    assert answer["thumbnail_size"] == T  # short prompts are shown cell for cell
    grid = torch.frombuffer(bytearray(base64.b64decode(answer["thumbnails"])), dtype=torch.uint8)
    grid = grid.reshape(2, 3, T, T).float() / 255
    assert torch.allclose(grid, patterns, atol=0.5 / 255 + 1e-6)


def test_long_prompts_get_max_pooled_thumbnails(client, reference):
    prompt = " one two" * 30  # 60 tokens > 48
    answer = post(client, "attention", prompt=prompt)
    assert answer["thumbnail_size"] == 48 and len(answer["pattern"]) == 60


def test_logit_lens_is_the_library_lens(client, reference):
    model, tokenizer, idx, _ = reference
    answer = post(client, "logit_lens")
    lens = logit_lens(model, idx, k=3)
    assert answer["stages"] == ["embed", "block 0", "block 1"]
    assert (answer["start"], answer["end"]) == (0, 5)
    assert [
        [[c["id"] for c in cell] for cell in stage] for stage in answer["top"]
    ] == lens.top_ids.tolist()
    assert [row[-1] for row in answer["next_token_probs"]] == [None] * 3  # nothing follows
    assert close([row[:-1] for row in answer["next_token_probs"]], lens.next_token_probs, 1e-6)


def test_logit_lens_windows_are_the_hand_computed_lens(client, reference):
    """A 40-token prompt is shown LENS_WINDOW positions at a time; each window's cells are
    ln_final and the unembedding of run_with_cache's residual stream, by hand."""
    model, tokenizer, _, _ = reference
    prompt = " one two three" * 13 + " four"
    ids = tokenizer.encode(prompt)
    idx = torch.tensor([ids])
    names = ["blocks.0.hook_resid_pre", "blocks.0.hook_resid_post", "blocks.1.hook_resid_post"]
    with torch.no_grad():
        _, cache = model.run_with_cache(idx, names=names)
        probs = torch.stack([model.lm_head(model.ln_f(cache[n][0])) for n in names]).softmax(-1)
    T, W = len(ids), LENS_WINDOW
    for end, start in [(None, T - W), (T - W, T - 2 * W), (T - 3 * W, 0), (5, 0)]:
        answer = post(client, "logit_lens", prompt=prompt, end=end)
        stop = len(ids) if end is None else end
        assert (answer["start"], answer["end"]) == (start, stop)
        top = probs[:, start:stop].topk(3, dim=-1)
        assert [[[c["id"] for c in cell] for cell in stage] for stage in answer["top"]] == (
            top.indices.tolist()
        )
        assert close(
            [[[c["prob"] for c in cell] for cell in stage] for stage in answer["top"]],
            top.values,
            1e-5,
        )
        following = torch.tensor(ids[start + 1 : stop + 1])
        expected = probs[:, start : start + len(following)].gather(
            2, following[None, :, None].expand(3, -1, 1)
        )[..., 0]
        shown = [row[: len(following)] for row in answer["next_token_probs"]]
        assert close(shown, expected, 1e-5)


def test_token_loss_is_the_cross_entropy_of_each_next_token(client, reference):
    model, _, idx, _ = reference
    answer = post(client, "token_loss")
    with torch.no_grad():
        logits = model(idx)[0][0].float()  # (T, V)
    losses = torch.nn.functional.cross_entropy(logits[:-1], idx[0, 1:], reduction="none")
    assert close(answer["loss"], losses, 1e-5)
    assert answer["mean_loss"] == pytest.approx(float(losses.mean()), abs=1e-5)
    assert close(answer["next_prob"], (-losses).exp(), 1e-6)
    ranks = [int((logits[t] > logits[t, idx[0, t + 1]]).sum()) + 1 for t in range(4)]
    assert answer["next_rank"] == ranks
    probs = logits.softmax(-1)
    assert close(answer["entropy"], -(probs * probs.clamp_min(1e-30).log()).sum(-1), 1e-4)


def test_attribution_and_logit_difference(client, reference):
    model, tokenizer, idx, logits = reference
    answer = post(client, "attribution")
    top = direct_logit_attribution(model, idx)
    assert answer["target"]["id"] == int(logits.argmax()) == top.target_id
    assert close(answer["heads"], top.heads, 1e-6)
    assert answer["sum_of_terms"] == pytest.approx(answer["logit"], abs=1e-3)
    paris, london = tokenizer.encode(" Paris")[0], tokenizer.encode(" London")[0]
    diff = post(client, "attribution", target=" Paris", contrast=" London")
    a, b = (direct_logit_attribution(model, idx, t) for t in (paris, london))
    assert diff["logit"] == pytest.approx(a.logit - b.logit, abs=1e-4)
    assert diff["logit"] == pytest.approx(float(logits[paris] - logits[london]), abs=1e-3)
    assert diff["mlp"] == pytest.approx((a.mlp - b.mlp).tolist(), abs=1e-6)
    assert diff["sum_of_terms"] == pytest.approx(diff["logit"], abs=1e-3)


def ablated_probs(model, idx, hooks) -> torch.Tensor:
    with torch.no_grad(), model.hooks(hooks):
        return model(idx)[0][0, -1].float().softmax(-1)


def test_zero_ablating_a_head_matches_a_hand_written_hook(client, reference):
    model, _, idx, logits = reference

    def zero_head(z, _name):  # (B, T, H, D)
        z = z.clone()
        z[:, :, 1] = 0
        return z

    expected = ablated_probs(model, idx, {"blocks.0.attn.hook_z": zero_head})
    answer = post(client, "ablation", component="head", layer=0, head=1, mode="zero", k=5)
    assert [r["id"] for r in answer["ablated"]] == expected.topk(5).indices.tolist()
    assert [r["prob"] for r in answer["ablated"]] == pytest.approx(
        expected.topk(5).values.tolist(), abs=1e-6
    )
    assert [r["prob"] for r in answer["intact"]] == pytest.approx(
        logits.softmax(-1).topk(5).values.tolist(), abs=1e-6
    )
    target = answer["target"]["id"]
    assert answer["target_ablated_prob"] == pytest.approx(float(expected[target]), abs=1e-7)
    assert answer["target_intact_prob"] != answer["target_ablated_prob"]  # the head matters


def test_mean_ablating_an_mlp_writes_its_mean_over_the_prompt(client, reference):
    model, _, idx, _ = reference
    with torch.no_grad():
        _, cache = model.run_with_cache(idx, names=["blocks.1.hook_mlp_out"])
    mean = cache["blocks.1.hook_mlp_out"].mean(dim=1, keepdim=True)
    expected = ablated_probs(
        model, idx, {"blocks.1.hook_mlp_out": lambda out, _n: mean.expand_as(out)}
    )
    answer = post(
        client, "ablation", component="mlp", layer=1, head=None, mode="mean", target=" Paris"
    )
    paris = answer["target"]["id"]
    assert answer["target_ablated_prob"] == pytest.approx(float(expected[paris]), rel=1e-4)
    assert answer["head"] is None and answer["mode"] == "mean"


def test_run_view_sends_new_records_and_samples(client, folders):
    answer = client.get("/api/run", params={"model": "run"}).json()
    assert answer["total"] == 20 and len(answer["records"]) == 20
    assert answer["samples"] == [
        {"step": 10, "text": "first sample"},
        {"step": 20, "text": "second\nsample"},
    ]
    smoothed = [r["train_loss_smoothed"] for r in answer["records"]]
    assert smoothed[0] == pytest.approx(answer["records"][0]["train_loss"])  # bias-corrected EMA
    # The run keeps training: two more lines, the last one still being written (torn).
    extra = metrics_records(22)[20:]
    with open(folders["run"] / "metrics.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps(extra[0]) + "\n" + json.dumps(extra[1])[:10])
    newer = client.get("/api/run", params={"model": "run", "since": 20}).json()
    assert newer["total"] == 21 and [r["step"] for r in newer["records"]] == [21]
    # TensorBoard's debiased EMA over the whole run, by hand, so a page that fetched only the
    # newest record still continues the same curve.
    average = 0.0
    for record in metrics_records(21):
        average = 0.9 * average + 0.1 * record["train_loss"]
    assert newer["records"][0]["train_loss_smoothed"] == pytest.approx(average / (1 - 0.9**21))


def test_a_run_without_a_checkpoint_is_served_for_its_curves(tmp_path):
    (tmp_path / "metrics.jsonl").write_text(json.dumps(metrics_records(1)[0]) + "\n")
    client = TestClient(create_app(load_sources([Source(str(tmp_path))], "cpu")))
    assert client.get("/api/models").json()[0]["has_model"] is False
    assert client.get("/api/run").json()["total"] == 1
    response = client.post("/api/next_token", json={"prompt": PROMPT})
    assert response.status_code == 400 and "no checkpoint yet" in response.json()["error"]


BAD_REQUESTS = [
    ("next_token", {"prompt": ""}, 400, "the prompt is empty"),
    ("next_token", {"prompt": " a" * 65}, 400, "longer than the model's context of 64"),
    ("next_token", {"top_p": 1.5}, 400, "top_p must be in (0, 1]"),
    ("next_token", {"top_k": 0}, 400, "top_k must be >= 1"),
    ("next_token", {"k": 0}, 422, "k: Input should be greater than or equal to 1"),
    ("next_token", {"k": True}, 422, "k: Input should be a valid integer"),
    ("next_token", {"temperature": -1}, 400, "temperature must be >= 0"),
    ("next_token", {"temperature": "hot"}, 422, "temperature: Input should be a valid number"),
    ("next_token", {"colour": "red"}, 422, "colour: not a setting of this route"),
    ("next_token", {"model": "runs/../../etc"}, 404, "no model named 'runs/../../etc' is served"),
    ("generate", {"max_new_tokens": 0}, 422, "max_new_tokens: Input should be greater than"),
    ("generate", {"prompt": ""}, 400, "the prompt is empty"),
    ("generate", {"top_p": 1.5}, 400, "top_p must be in (0, 1]"),
    ("attention", {"layer": 2}, 400, "layer 2 is out of range: this model has layers 0..1"),
    ("attention", {"head": 3}, 400, "head 3 is out of range: this model has heads 0..2"),
    ("attention", {"layer": -3}, 400, "layer -3 is out of range"),
    ("attention", {"head": -1}, 400, "head -1 is out of range"),
    (
        "attribution",
        {"target": " Paris London"},
        400,
        "is [' Paris', ' London'] (2 tokens), not one token",
    ),
    ("attribution", {"position": 9}, 400, "position 9 is out of range for a 5-token prompt"),
    ("ablation", {"mode": "half"}, 422, "mode: Input should be 'zero' or 'mean'"),
    ("ablation", {"component": "block"}, 422, "component: Input should be 'head' or 'mlp'"),
    ("ablation", {"head": 7}, 400, "head 7 is out of range"),
    ("ablation", {"head": None}, 400, "a head ablation needs a head number"),
    ("logit_lens", {}, 422, "prompt: Field required"),
    ("logit_lens", {"end": 6}, 400, "end must be 1 to 5"),
]


@pytest.mark.parametrize("route, body, status, message", BAD_REQUESTS)
def test_bad_requests_get_a_one_line_4xx(client, route, body, status, message):
    payload = {"prompt": PROMPT, "model": "model", **body}
    if route == "logit_lens" and not body:
        payload.pop("prompt")
    response = client.post(f"/api/{route}", json=payload)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert message in error and "\n" not in error and "Traceback" not in error


def test_bodies_that_are_not_json_objects(client):
    for content, message in [
        (b"{not json", "not valid JSON"),
        (b"\xff\xfe", "not valid JSON"),
        (b"", "must be a JSON object"),
    ]:
        response = client.post(
            "/api/next_token", content=content, headers={"content-type": "application/json"}
        )
        assert response.status_code == 422 and message in response.json()["error"], content
    response = client.post("/api/next_token", json=["a", "list"])
    assert response.status_code == 422 and "must be a JSON object" in response.json()["error"]


def test_a_10_mb_body_is_refused_declared_or_streamed(client):
    huge = json.dumps({"prompt": "x" * 10_000_000}).encode()
    response = client.post(
        "/api/next_token", content=huge, headers={"content-type": "application/json"}
    )
    assert response.status_code == 413 and "over 1 MB" in response.json()["error"]

    def chunks():  # no Content-Length: the size is only known by counting
        for start in range(0, len(huge), 1 << 20):
            yield huge[start : start + (1 << 20)]

    response = client.post(
        "/api/next_token", content=chunks(), headers={"content-type": "application/json"}
    )
    assert response.status_code == 413 and "over 1 MB" in response.json()["error"]
    assert MAX_BODY_BYTES < len(huge)


@pytest.mark.parametrize(
    "path",
    [
        "/static/../../etc/passwd",
        "/static/%2e%2e/%2e%2e/etc/passwd",
        "/static/..%2f..%2f..%2fetc%2fpasswd",
        "/static/%252e%252e/etc/passwd",
        "/static//etc/passwd",
        "/static/js/../../../pyproject.toml",
        "/static/js/..%5c..%5capp.py",
        "/../../etc/passwd",
        "/api/../../etc/passwd",
    ],
)
def test_no_path_reaches_the_file_system(client, path):
    response = client.get(path)
    assert response.status_code == 404, (path, response.text)
    assert "root:" not in response.text and "[project]" not in response.text
    assert set(response.json()) == {"error"}


def test_the_page_and_its_files_are_served(client):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert 'src="static/js/main.js"' in page.text and "http" not in page.text.replace(
        'href="openapi.json"', ""
    )
    script = client.get("/static/js/main.js")
    assert script.status_code == 200 and script.headers["content-type"].startswith(
        "text/javascript"
    )
    assert client.get("/static/style.css").headers["content-type"].startswith("text/css")


def test_openapi_documents_one_route_per_view(client):
    paths = client.get("/openapi.json").json()["paths"]
    for route in ["next_token", "generate", "attention", "logit_lens", "attribution", "ablation"]:
        assert "post" in paths[f"/api/{route}"], route
    assert "get" in paths["/api/run"] and "get" in paths["/api/models"]


def test_concurrent_requests_get_their_own_answers(client):
    """Tabs asking about two prompts at once: each answer is the one asked alone (the cached
    pass of one prompt never serves another's request)."""
    prompts = [PROMPT, "Once upon a time there"]
    jobs = [("attention", {"layer": 1, "head": h}) for h in range(3)] + [
        ("next_token", {}),
        ("logit_lens", {}),
    ]
    alone = {
        (p, r, json.dumps(b)): post(client, r, prompt=p, **b) for p in prompts for r, b in jobs
    }
    work = [(p, r, b) for _ in range(3) for p in prompts for r, b in jobs]
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(lambda job: post(client, job[1], prompt=job[0], **job[2]), work))
    for (p, r, b), answer in zip(work, answers, strict=True):
        assert answer == alone[(p, r, json.dumps(b))], (p, r, b)


def test_a_hugging_face_folder_is_served_with_transformers_numbers(tmp_path):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.GPT2Config(
        vocab_size=50257, n_positions=32, n_embd=16, n_layer=2, n_head=2
    )
    hf_model = transformers.GPT2LMHeadModel(config).eval()
    hf_model.save_pretrained(tmp_path / "hf-gpt2")
    client = TestClient(
        create_app(load_sources([Source(str(tmp_path / "hf-gpt2"), hf=True)], "cpu"))
    )
    assert client.get("/api/models").json()[0]["name"] == "hf:hf-gpt2"
    answer = client.post("/api/next_token", json={"prompt": PROMPT, "k": 5}).json()
    ids = torch.tensor([[t["id"] for t in answer["tokens"]]])
    with torch.no_grad():
        expected = hf_model(ids).logits[0, -1].softmax(-1).topk(5)
    assert [c["id"] for c in answer["candidates"]] == expected.indices.tolist()
    assert [c["prob"] for c in answer["candidates"]] == pytest.approx(
        expected.values.tolist(), abs=1e-6
    )


def test_run_requests_for_a_model_folder_or_a_negative_start(client):
    response = client.get("/api/run", params={"model": "model"})
    assert response.status_code == 400 and "not a training run" in response.json()["error"]
    response = client.get("/api/run", params={"model": "run", "since": -1})
    assert response.status_code == 400 and "since must be >= 0" in response.json()["error"]
    response = client.get("/api/run", params={"model": "run", "since": "ten"})
    assert response.status_code == 422 and "since" in response.json()["error"]


def test_a_reader_that_goes_away_stops_the_generation(folders):
    """A closed tab must not keep the model busy for 1000 tokens: the loop ends at its next step
    and the model's lock is free again (polled, not timed)."""
    import threading
    import time

    import httpx
    import uvicorn

    from gptlab.explore.server import bind

    served = load_sources([Source(str(folders["model"]))], "cpu")
    explorer = served["model"]
    steps = []
    explorer.model.register_forward_hook(lambda *_: steps.append(1))
    sock = bind("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(create_app(served), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{sock.getsockname()[1]}/api/generate"
    try:
        for _ in range(200):  # until the server answers
            try:
                httpx.get(url.replace("generate", "models"))
                break
            except httpx.TransportError:
                time.sleep(0.05)
        body = {"prompt": PROMPT, "max_new_tokens": 1000}
        with httpx.stream("POST", url, json=body) as response:
            lines = response.iter_lines()
            assert json.loads(next(lines))["type"] == "token"
        for _ in range(600):
            if not explorer.lock.locked():
                break
            time.sleep(0.05)
        assert not explorer.lock.locked()
        assert len(steps) < 500, len(steps)  # stopped long before its 1000 tokens
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
