"""The web app: the page's static files and a JSON API, one route per view (FastAPI).

    GET  /                 the page                  GET  /api/models        what is served
    GET  /static/...       its CSS and JavaScript    POST /api/next_token    bars + filters
    GET  /docs             the API (OpenAPI)         POST /api/generate      streamed tokens (NDJSON)
                                                     POST /api/attention     patterns
                                                     POST /api/logit_lens    layer x position
                                                     POST /api/attribution   per-head logit split
                                                     POST /api/ablation      intact vs ablated
                                                     GET  /api/run           curves + samples
                                                     /api/sae/...            the Features tab (features.py)

Safety: the static files are read into memory when the app is built, and a request's path is
only ever looked up in that table, so no URL reaches the file system; requests name models by
their served name, never by path. Every error is a JSON {"error": "one line"} with a 4xx status
(bad values 400, unknown model or file 404, malformed body 422, body over 1 MB 413, a body
stalled 408); gptlab.explore.guards holds the body limits and, for a loopback server, the Host
check and the request-head timeout.
"""

# No `from __future__ import annotations`: FastAPI reads the routes' annotations at definition
# time, and the request models are imported inside create_app (pydantic comes with the extra).

import logging
import mimetypes
from collections.abc import Callable
from importlib import resources

import torch

from gptlab.errors import GptlabError
from gptlab.explore import runs, streaming, views
from gptlab.explore.features import add_sae_routes
from gptlab.explore.guards import BodyLimit
from gptlab.explore.session import Explorer
from gptlab.optional import import_optional

MAX_BODY_BYTES = 1_000_000  # a prompt is at most a context of tokens: far below this
log = logging.getLogger("gptlab.explore")


def static_files() -> dict[str, tuple[bytes, str]]:
    """Every file of the package's static/ folder: {relative path: (bytes, media type)}."""
    root = resources.files("gptlab.explore") / "static"
    found: dict[str, tuple[bytes, str]] = {}

    def walk(folder, prefix: str) -> None:
        for entry in folder.iterdir():
            if entry.is_dir():
                walk(entry, f"{prefix}{entry.name}/")
            else:
                kind = mimetypes.guess_type(entry.name)[0] or "application/octet-stream"
                if entry.name.endswith(".js"):
                    kind = "text/javascript"  # module scripts need a JavaScript type
                found[prefix + entry.name] = (entry.read_bytes(), kind)

    walk(root, "")
    return found


def create_app(explorers: dict[str, Explorer]):
    """The FastAPI app over already loaded models (see gptlab.explore.sources)."""
    fastapi = import_optional("fastapi", "explore")
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse, Response, StreamingResponse
    from starlette.exceptions import HTTPException

    from gptlab.explore.requests import (
        AblationRequest,
        AttentionRequest,
        AttributionRequest,
        GenerateRequest,
        NextTokenRequest,
        PromptRequest,
    )

    app = FastAPI(
        title="gptlab explore",
        version=fastapi.__version__,
        description="The JSON API behind the page: one route per view. Errors are "
        '{"error": "one line"} with a 4xx status.',
    )
    files = static_files()

    def error(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status)

    @app.exception_handler(GptlabError)
    async def user_error(_request: Request, exc: GptlabError):
        return error(400, str(exc))

    @app.exception_handler(RequestValidationError)
    async def bad_body(_request: Request, exc: RequestValidationError):
        return error(422, validation_message(exc.errors()))

    @app.exception_handler(HTTPException)
    async def http_error(_request: Request, exc: HTTPException):
        return error(exc.status_code, str(exc.detail))

    @app.exception_handler(Exception)
    async def bug(_request: Request, exc: Exception):
        log.exception("gptlab explore: request failed")  # the traceback goes to the server's log
        return error(500, f"internal error ({type(exc).__name__}); see the server's output")

    def explorer_for(name: str | None) -> Explorer:
        if name is None:
            return next(iter(explorers.values()))
        if name not in explorers:
            raise HTTPException(
                404, f"no model named {name!r} is served here; served: {', '.join(explorers)}"
            )
        return explorers[name]

    def answer(name: str | None, view: Callable, *args, **kwargs) -> dict:
        """Run one view with the model's lock held: one request at a time per model."""
        explorer = explorer_for(name)
        with explorer.lock, torch.inference_mode():
            return view(explorer, *args, **kwargs)

    @app.get("/", include_in_schema=False)
    def page():
        return Response(files["index.html"][0], media_type="text/html")

    @app.get("/static/{path:path}", include_in_schema=False)
    def static(path: str):
        if path not in files:  # a lookup in a table: '..' or '%2e%2e' match nothing
            raise HTTPException(404, f"no static file {path!r}")
        content, kind = files[path]
        return Response(content, media_type=kind)

    @app.get("/api/models", summary="the served models and runs")
    def models() -> list[dict]:
        return [explorer.describe() for explorer in explorers.values()]

    @app.post("/api/next_token", summary="the prompt's tokens and the next-token distribution")
    def next_token(body: NextTokenRequest) -> dict:
        return answer(
            body.model,
            views.next_token,
            body.prompt,
            body.temperature,
            body.top_k,
            body.top_p,
            body.k,
        )

    streams = streaming.StreamLimit()

    @app.post(
        "/api/generate",
        summary="stream a continuation: one JSON line per token, then a 'done' line",
        response_class=StreamingResponse,
    )
    async def generate(body: GenerateRequest):
        explorer = explorer_for(body.model)
        config = streaming.generation_config(
            body.max_new_tokens, body.temperature, body.top_k, body.top_p, body.seed
        )
        events = streaming.stream_events(explorer, body.prompt, config)  # checks, no compute
        if not streams.try_open():
            events.close()
            return error(429, streams.busy_message())
        lines = streaming.ndjson_lines(events, streams)
        return StreamingResponse(lines, media_type="application/x-ndjson")

    @app.post("/api/attention", summary="every head's attention pattern and one head in full")
    def attention(body: AttentionRequest) -> dict:
        return answer(body.model, views.attention, body.prompt, body.layer, body.head)

    @app.post("/api/logit_lens", summary="the top prediction of every layer at every position")
    def logit_lens(body: PromptRequest) -> dict:
        return answer(body.model, views.logit_lens_view, body.prompt)

    @app.post("/api/attribution", summary="direct logit attribution per head and MLP")
    def attribution(body: AttributionRequest) -> dict:
        return answer(
            body.model, views.attribution, body.prompt, body.target, body.contrast, body.position
        )

    @app.post("/api/ablation", summary="the next-token distribution with a head or MLP ablated")
    def ablation(body: AblationRequest) -> dict:
        return answer(
            body.model,
            views.ablation,
            body.prompt,
            body.component,
            body.layer,
            body.head,
            body.mode,
            body.target,
            body.k,
        )

    add_sae_routes(app, answer, explorer_for)  # the Features tab (gptlab explore --sae DIR)

    @app.get("/api/run", summary="a training run's metrics (from record `since` on) and samples")
    def run(model: str | None = None, since: int = 0) -> dict:
        explorer = explorer_for(model)
        return runs.run_view(explorer, since)  # reads files only: no model lock needed

    return BodyLimit(app, MAX_BODY_BYTES, HTTPException)


def validation_message(errors: list[dict]) -> str:
    """FastAPI's list of validation errors as one line a person can act on."""
    first = errors[0] if errors else {}
    if first.get("type") == "json_invalid":
        return 'the request body is not valid JSON: send a JSON object, e.g. {"prompt": "Hello"}'
    if first.get("type") == "model_attributes_type" or first.get("loc") == ("body",):
        return 'the request body must be a JSON object, e.g. {"prompt": "Hello"}'
    where = ".".join(str(part) for part in first.get("loc", ()) if part != "body") or "body"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{where}: {first.get('msg', 'invalid value')}{more}"
