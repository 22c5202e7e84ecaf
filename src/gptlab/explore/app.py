"""The web app: the page's static files and a JSON API, one route per view (FastAPI).

    GET  /                 the page                  GET  /api/models   what is served
    GET  /static/...       its CSS and JavaScript    GET  /api/views    each view's request: defaults,
    GET  /openapi.json     the API (OpenAPI)                             choices, bounds
    POST /api/NAME         one per view of gptlab.explore.registry.VIEWS (next_token, attention,
                           logit_lens, attribution, ablation, sae/fires, sae/feature, sae/ablate)
    POST /api/generate     streamed tokens (NDJSON)  GET  /api/run      curves + samples
    GET  /api/sae/info, /api/sae/dashboard.js        the Features tab (features.py)

Safety: the static files are read into memory when the app is built, and a request's path is
only ever looked up in that table, so no URL reaches the file system; requests name models by
their served name, never by path. Every error is a JSON {"error": "one line"} with a 4xx status
(a value out of a view's range 400, unknown model or file 404, malformed body or a value the request's declaration refuses 422, body over 1 MB 413, a body
stalled 408); gptlab.explore.guards holds the body limits and, for a loopback server, the Host
check and the request-head timeout.
"""

# No `from __future__ import annotations`: FastAPI reads the routes' annotations when they are
# defined. The routes of the views are made from gptlab.explore.registry.VIEWS.

import logging
import mimetypes
from importlib import resources

import torch

from gptlab.errors import GptlabError
from gptlab.explore import runs, streaming
from gptlab.explore.features import add_sae_routes
from gptlab.explore.guards import BodyLimit
from gptlab.explore.registry import VIEWS, GenerateRequest, View, describe_views
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
    from starlette.exceptions import HTTPException

    app = fastapi.FastAPI(
        title="gptlab explore",
        version=fastapi.__version__,
        description="The JSON API behind the page: one route per view. Errors are "
        '{"error": "one line"} with a 4xx status.',
    )
    add_error_handlers(app)
    served = Served(explorers, HTTPException)
    add_page_routes(app, static_files(), HTTPException)
    app.get("/api/models", summary="the served models and runs")(served.describe)
    app.get("/api/views", summary="each view's request: defaults, choices, bounds")(describe_views)
    for view in VIEWS:
        add_view_route(app, view, served)
    add_generate_route(app, served)
    add_sae_routes(app, served.explorer_for)  # the Features tab's info and dashboard script
    app.get("/api/run", summary="a training run's metrics (from record `since` on) and samples")(
        served.run
    )
    return BodyLimit(app, MAX_BODY_BYTES, HTTPException)


class Served:
    """The served models by name, and how a request reaches one."""

    def __init__(self, explorers: dict[str, Explorer], http_exception: type):
        self.explorers = explorers
        self.http_exception = http_exception

    def explorer_for(self, name: str | None) -> Explorer:
        if name is None:
            return next(iter(self.explorers.values()))
        if name not in self.explorers:
            raise self.http_exception(
                404,
                f"no model named {name!r} is served here; served: {', '.join(self.explorers)}",
            )
        return self.explorers[name]

    def answer(self, view: View, request) -> dict:
        """Run one view with the model's lock held: one request at a time per model."""
        explorer = self.explorer_for(request.model)
        with explorer.lock, torch.inference_mode():
            return view.compute(explorer, **view.settings(request))

    def describe(self) -> list[dict]:
        return [explorer.describe() for explorer in self.explorers.values()]

    def run(self, model: str | None = None, since: int = 0) -> dict:
        return runs.run_view(self.explorer_for(model), since)  # files only: no model lock needed


def add_view_route(app, view: View, served: Served) -> None:
    """POST /api/NAME: the view's request as the JSON body, its answer as JSON."""

    def route(body) -> dict:
        return served.answer(view, body)

    # FastAPI reads the body's type from the annotation: the view's request dataclass.
    route.__annotations__ = {"body": view.request, "return": dict}
    route.__name__ = view.name.replace("/", "_")
    app.post(f"/api/{view.name}", summary=view.summary)(route)


def add_generate_route(app, served: Served) -> None:
    """POST /api/generate: a continuation streamed as one JSON line per token (NDJSON)."""
    from fastapi.responses import JSONResponse, StreamingResponse

    streams = streaming.StreamLimit()

    async def generate(body):
        explorer = served.explorer_for(body.model)
        config = streaming.generation_config(
            body.max_new_tokens, body.temperature, body.top_k, body.top_p, body.seed
        )
        events = streaming.stream_events(explorer, body.prompt, config)  # checks, no compute
        if not streams.try_open():
            events.close()
            return JSONResponse({"error": streams.busy_message()}, status_code=429)
        lines = streaming.ndjson_lines(events, streams)
        return StreamingResponse(lines, media_type="application/x-ndjson")

    generate.__annotations__ = {"body": GenerateRequest}
    app.post(
        "/api/generate",
        summary="stream a continuation: one JSON line per token, then a 'done' line",
        response_class=StreamingResponse,
    )(generate)


def add_page_routes(app, files: dict[str, tuple[bytes, str]], http_exception: type) -> None:
    from fastapi.responses import Response

    @app.get("/", include_in_schema=False)
    def page():
        return Response(files["index.html"][0], media_type="text/html")

    @app.get("/static/{path:path}", include_in_schema=False)
    def static(path: str):
        if path not in files:  # a lookup in a table: '..' or '%2e%2e' match nothing
            raise http_exception(404, f"no static file {path!r}")
        content, kind = files[path]
        return Response(content, media_type=kind)


def add_error_handlers(app) -> None:
    """Every error as {"error": "one line"}: a user's mistake 4xx, a bug 500 (logged)."""
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from starlette.exceptions import HTTPException

    def error(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status)

    @app.exception_handler(GptlabError)
    async def user_error(_request, exc: GptlabError):
        return error(400, str(exc))

    @app.exception_handler(RequestValidationError)
    async def bad_body(_request, exc: RequestValidationError):
        return error(422, validation_message(exc.errors()))

    @app.exception_handler(HTTPException)
    async def http_error(_request, exc: HTTPException):
        return error(exc.status_code, str(exc.detail))

    @app.exception_handler(Exception)
    async def bug(_request, exc: Exception):
        log.exception("gptlab explore: request failed")  # the traceback goes to the server's log
        return error(500, f"internal error ({type(exc).__name__}); see the server's output")


def validation_message(errors: list[dict]) -> str:
    """FastAPI's list of validation errors as one line a person can act on."""
    first = errors[0] if errors else {}
    if first.get("type") == "json_invalid":
        return 'the request body is not valid JSON: send a JSON object, e.g. {"prompt": "Hello"}'
    if first.get("type") in ("model_attributes_type", "dataclass_type") or first.get("loc") == (
        "body",
    ):
        return 'the request body must be a JSON object, e.g. {"prompt": "Hello"}'
    where = ".".join(str(part) for part in first.get("loc", ()) if part != "body") or "body"
    if first.get("type") in ("unexpected_keyword_argument", "extra_forbidden"):
        return f"{where}: not a setting of this route (GET /api/views lists each route's)"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{where}: {first.get('msg', 'invalid value')}{more}"
