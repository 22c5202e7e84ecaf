"""The explorer's view registry (gptlab.explore.registry): every view gets its route, its
request's declarations reach the page and the OpenAPI description, and the exported page holds
every view that can be exported."""

from __future__ import annotations

import dataclasses
import inspect

import pytest
from explore_testing import PROMPT, tiny_model

from gptlab.errors import GptlabError
from gptlab.explore.export import precomputed_answers
from gptlab.explore.registry import (
    REQUESTS,
    VIEWS,
    AblationRequest,
    View,
    check_registry,
    describe_views,
)
from gptlab.explore.session import Explorer
from gptlab.tokenizers.base import GPT2Tokenizer


@pytest.fixture(scope="module")
def client():
    pytest.importorskip("fastapi")
    pytest.importorskip("httpx")
    from fastapi.testclient import TestClient

    from gptlab.explore.app import create_app

    return TestClient(create_app({"model": Explorer("model", tiny_model(), GPT2Tokenizer())}))


def test_every_view_gets_its_post_route_with_its_request_as_body(client):
    spec = client.get("/openapi.json").json()
    schemas = spec["components"]["schemas"]
    for view in VIEWS:
        route = spec["paths"][f"/api/{view.name}"]["post"]
        assert route["summary"] == view.summary
        body = route["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        fields = set(schemas[body.rsplit("/", 1)[1]]["properties"])
        assert fields == {f.name for f in dataclasses.fields(view.request)}, view.name


def test_only_the_registry_makes_view_routes(client):
    """Every POST route of the app is a view of the registry, or streamed generation."""
    posts = {
        path.removeprefix("/api/")
        for path, methods in client.get("/openapi.json").json()["paths"].items()
        if "post" in methods
    }
    assert posts == {view.name for view in VIEWS} | {"generate"}


def test_each_view_function_takes_its_request_fields_as_keywords():
    check_registry()
    for view in VIEWS:
        parameters = inspect.signature(view.compute).parameters
        for f in dataclasses.fields(view.request):
            if f.name != "model":
                assert parameters[f.name].kind is not inspect.Parameter.POSITIONAL_ONLY


def test_a_view_whose_function_lacks_a_field_is_a_bug():
    broken = View("broken", "", AblationRequest, lambda explorer, prompt: {})
    VIEWS.append(broken)
    try:
        with pytest.raises(TypeError, match="takes no"):
            check_registry()
    finally:
        VIEWS.remove(broken)


def test_the_page_gets_defaults_choices_and_bounds_from_the_api(client):
    served = client.get("/api/views").json()
    assert served == describe_views() and set(served) == set(REQUESTS)
    assert served["next_token"]["fields"]["k"] == {"default": 20, "ge": 1, "le": 100}
    assert served["ablation"]["fields"]["component"] == {
        "default": "head",
        "choices": ["head", "mlp"],
    }
    assert served["generate"]["fields"]["max_new_tokens"] == {"default": 50, "ge": 1, "le": 1000}
    assert served["attention"]["fields"]["prompt"] == {"required": True}
    # Streamed generation needs the server; every view, the Features tab's too, is saved.
    assert served["generate"]["exported"] is False and served["attention"]["exported"] is True
    assert served["sae/fires"]["exported"] is True and served["sae/feature"]["exported"] is True


def test_a_request_built_in_python_checks_its_declarations():
    with pytest.raises(GptlabError, match="mode must be one of zero, mean, got 'half'"):
        AblationRequest(prompt=PROMPT, mode="half")
    with pytest.raises(GptlabError, match=r"k must be in \[1, 100\], got 0"):
        AblationRequest(prompt=PROMPT, k=0)


def test_the_export_covers_every_exportable_view_with_the_view_functions_answers():
    explorer = Explorer("model", tiny_model(), GPT2Tokenizer())
    answers = precomputed_answers(explorer, PROMPT, progress=False)
    exported = {view.name for view in VIEWS if view.export is not None}
    assert set(answers) == exported
    assert exported == {view.name for view in VIEWS}
    # Without an SAE attached, the Features tab's views save nothing (tests/test_sae.py checks
    # them with one).
    assert [answers[name]["saved"] for name in ("sae/fires", "sae/feature", "sae/ablate")] == [
        [],
        [],
        [],
    ]
    for view in VIEWS:
        if view.export is None:
            continue
        for saved in answers[view.name]["saved"]:
            request = view.request(prompt=PROMPT, **saved["settings"])
            with explorer.lock:
                live = view.compute(explorer, **view.settings(request))
            assert live == answers[view.name]["shared"] | saved["answer"], view.name
