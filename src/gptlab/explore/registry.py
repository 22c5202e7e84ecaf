"""Every view of the explorer, declared once: its name, the request it accepts, the function that
answers it, and what the exported page saves of it.

From VIEWS, gptlab.explore.app makes one `POST /api/NAME` route per view, gptlab.explore.export
precomputes the exported page's answers, and `GET /api/views` (embedded in exported pages too)
tells the page each request's defaults, choices and bounds, so the JavaScript copies none of
them. Adding a view is one function, one request class and one View entry here, plus its module
of the page (docs/architecture.md, "Recipe: add an explorer view").

A request is a dataclass declared the way every gptlab setting is (gptlab.overrides): a
`Literal[...]` for a choice, bounds in the field's metadata (`declared(default, says, ge=...)`). FastAPI reads those
declarations for the HTTP body (a wrong type, a choice not offered or a value out of bounds is a
422 naming the field, and the OpenAPI page shows them); building one in Python (the export)
checks them with gptlab's own one-line errors. Unknown fields are refused (a typo is an error,
not a silently ignored setting). What depends on the model (a layer, a head, the prompt's length)
is checked by the view function. No pydantic here: exporting a page needs no web stack.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from gptlab.explore import features, views
from gptlab.explore.session import Explorer
from gptlab.explore.streaming import MAX_NEW_TOKENS
from gptlab.interp.attention_html import check_page_size
from gptlab.overrides import check_fields, choices, field_type

MAX_BARS = 100  # candidates a bar chart shows


def declared(
    default=dataclasses.MISSING, says: str = "", strict: bool = True, **bounds
) -> dataclasses.Field:
    """A request field: its default, its bounds (ge/gt/le/lt, as gptlab.overrides.setting) and
    the line the OpenAPI page shows. FastAPI reads the field strictly: JSON true is not 1, and
    "3" is not 3 (strict=False for a Literal, which matches its values exactly anyway)."""
    metadata = {**bounds, "description": says} | ({"strict": True} if strict else {})
    return dataclasses.field(default=default, metadata=metadata)


@dataclass(kw_only=True)
class ViewRequest:
    """The field every request has: which served model (by its served name; default: the first)."""

    __pydantic_config__ = {"extra": "forbid"}  # read by FastAPI: an unknown field is a 422
    model: str | None = declared(None, "a served model's name (default: the first)")

    def __post_init__(self) -> None:
        check_fields(self)


@dataclass(kw_only=True)
class PromptRequest(ViewRequest):
    prompt: str = declared(says="the text to look at")


@dataclass(kw_only=True)
class NextTokenRequest(PromptRequest):
    temperature: float = declared(1.0, "0 = greedy; as `gptlab sample --temperature`")
    top_k: int | None = declared(None, "keep the k most likely tokens (None: off)")
    top_p: float = declared(1.0, "nucleus: keep the smallest set reaching p (1: off)")
    k: int = declared(20, "how many bars", ge=1, le=MAX_BARS)


@dataclass(kw_only=True)
class GenerateRequest(PromptRequest):
    max_new_tokens: int = declared(50, "tokens to generate", ge=1, le=MAX_NEW_TOKENS)
    temperature: float = declared(1.0, "0 = greedy")
    top_k: int | None = declared(None, "keep the k most likely tokens (None: off)")
    top_p: float = declared(1.0, "nucleus: keep the smallest set reaching p (1: off)")
    seed: int | None = declared(None, "the same seed gives the same text (None: random)")


@dataclass(kw_only=True)
class AttentionRequest(PromptRequest):
    layer: int = declared(0, "the layer (negative counts from the end)")
    head: int = declared(0, "the head shown in full")


@dataclass(kw_only=True)
class LogitLensRequest(PromptRequest):
    end: int | None = declared(
        None, "the window of positions ends before this one (None: the prompt's end)"
    )


@dataclass(kw_only=True)
class AttributionRequest(PromptRequest):
    target: str | None = declared(None, "one token (default: the top prediction)")
    contrast: str | None = declared(None, "a second token: attribute target - contrast")
    position: int = declared(-1, "the position whose prediction is split")


@dataclass(kw_only=True)
class AblationRequest(PromptRequest):
    component: Literal["head", "mlp"] = declared("head", "a head, or a layer's MLP", strict=False)
    layer: int = declared(0, "the component's layer")
    head: int | None = declared(0, "the head (None for an MLP)")
    mode: Literal["zero", "mean"] = declared(
        "zero", "zero, or the mean over the prompt's positions", strict=False
    )
    target: str | None = declared(None, "the token to follow (default: the top one)")
    k: int = declared(10, "how many bars", ge=1, le=MAX_BARS)


@dataclass(kw_only=True)
class FiresRequest(PromptRequest):
    pass


@dataclass(kw_only=True)
class FeatureRequest(ViewRequest):
    feature: int = declared(says="the feature's index", ge=0)
    top: int = declared(10, "how many top contexts", ge=1, le=50)


@dataclass(kw_only=True)
class SaeAblateRequest(PromptRequest):
    feature: int = declared(says="the feature's index", ge=0)


# -- what the exported page saves of each view ------------------------------------------------------


def defaults(_explorer: Explorer, _prompt: str) -> list[dict]:
    """The view with its default settings: what the page asks first."""
    return [{}]


def every_head(explorer: Explorer, prompt: str) -> list[dict]:
    config = explorer.model.config
    # The page holds every head's full pattern: the cap of inspect attention's page, before work.
    check_page_size(
        config.n_layer, config.n_head, len(explorer.encode(prompt)), causal=False, choose=""
    )
    return [
        {"layer": layer, "head": head}
        for layer in range(config.n_layer)
        for head in range(config.n_head)
    ]


def every_lens_window(explorer: Explorer, prompt: str) -> list[dict]:
    """The default window (the prompt's end), then each earlier one the page can step to."""
    length = len(explorer.encode(prompt))
    return [{}] + [{"end": end} for end in views.lens_window_ends(length)[1:]]


def every_component(explorer: Explorer, _prompt: str) -> list[dict]:
    """Zero and mean ablation of every head and every layer's MLP."""
    config = explorer.model.config
    components = [
        {"component": "head", "layer": layer, "head": head}
        for layer in range(config.n_layer)
        for head in range(config.n_head)
    ]
    components += [
        {"component": "mlp", "layer": layer, "head": None} for layer in range(config.n_layer)
    ]
    return [{**component, "mode": mode} for mode in ("zero", "mean") for component in components]


def with_sae(explorer: Explorer, _prompt: str) -> list[dict]:
    """The default settings when the model has an SAE attached; nothing to save otherwise."""
    return [{}] if features.has_sae(explorer) else []


def every_firing_feature(explorer: Explorer, prompt: str) -> list[dict]:
    """Each feature active on some token of the prompt: every chip the Features tab shows."""
    if not features.has_sae(explorer):
        return []
    return [{"feature": feature} for feature in features.firing_features(explorer, prompt)]


@dataclass(frozen=True)
class View:
    name: str  # the route (POST /api/NAME) and the name the page asks for it by
    summary: str  # one line: the route's description on the OpenAPI page
    request: type[ViewRequest]  # the body, checked when built
    compute: Callable[..., dict]  # compute(explorer, **every field of the request but model)
    # The settings the exported page saves answers for, on top of the defaults (a list of
    # partial requests, checked before any work), or None: the view needs the live server.
    export: Callable[[Explorer, str], list[dict]] | None = None
    shared: tuple[str, ...] = ()  # answer fields equal for every settings: saved once per page

    def settings(self, request: ViewRequest) -> dict:
        """The request's values as the keyword arguments of compute."""
        return {
            f.name: getattr(request, f.name)
            for f in dataclasses.fields(request)
            if f.name != "model"
        }


VIEWS = [
    View(
        "next_token",
        "the prompt's tokens and the next-token distribution",
        NextTokenRequest,
        views.next_token,
        export=defaults,
    ),
    View(
        "attention",
        "every head's attention pattern and one head in full",
        AttentionRequest,
        views.attention,
        export=every_head,
        shared=("tokens", "thumbnail_size", "thumbnails"),
    ),
    View(
        "logit_lens",
        "the top predictions of every layer at a window of positions",
        LogitLensRequest,
        views.logit_lens_view,
        export=every_lens_window,
    ),
    View(
        "token_loss",
        "how surprised the model is by each token of the prompt",
        PromptRequest,
        views.token_loss,
        export=defaults,
    ),
    View(
        "attribution",
        "direct logit attribution per head and MLP",
        AttributionRequest,
        views.attribution,
        export=defaults,
    ),
    View(
        "ablation",
        "the next-token distribution with a head or MLP ablated",
        AblationRequest,
        views.ablation,
        export=every_component,
    ),
    View(
        "sae/fires",
        "the SAE features active on each token of a prompt",
        FiresRequest,
        features.fires,
        export=with_sae,
    ),
    View(
        "sae/feature",
        "one feature's dashboard: contexts, histogram, logits",
        FeatureRequest,
        features.feature,
        export=every_firing_feature,
    ),
    View(
        "sae/ablate",
        "zero one feature at its hook: loss and next-token change",
        SaeAblateRequest,
        features.ablate,
        export=every_firing_feature,
    ),
]
VIEWS_BY_NAME = {view.name: view for view in VIEWS}

# The requests the page sends, by route: every view's, and streamed generation's (not a View:
# it answers token by token, gptlab.explore.streaming).
REQUESTS = {view.name: view.request for view in VIEWS} | {"generate": GenerateRequest}


def describe_request(request: type[ViewRequest]) -> dict:
    """Each field's default (or that it is required), its choices and its bounds: what the page
    fills a request from, so the JavaScript copies no number of Python's."""
    described = {}
    for f in dataclasses.fields(request):
        if f.name == "model":
            continue
        entry: dict = (
            {"required": True} if f.default is dataclasses.MISSING else {"default": f.default}
        )
        valid = choices(field_type(request, f.name))
        if valid is not None:
            entry["choices"] = list(valid)
        entry |= {key: f.metadata[key] for key in ("ge", "gt", "le", "lt") if key in f.metadata}
        described[f.name] = entry
    return described


def describe_views() -> dict:
    """GET /api/views: per route, its fields (see describe_request) and whether exported pages
    hold its answers."""
    exported = {view.name for view in VIEWS if view.export is not None}
    return {
        name: {"fields": describe_request(request), "exported": name in exported}
        for name, request in REQUESTS.items()
    }


def check_registry() -> None:
    """Every view's request fields are its function's keyword arguments (a bug otherwise)."""
    for view in VIEWS:
        parameters = set(inspect.signature(view.compute).parameters) - {"explorer"}
        fields = {f.name for f in dataclasses.fields(view.request)} - {"model"}
        if fields - parameters:
            raise TypeError(
                f"view {view.name}: {view.compute.__name__} takes no {sorted(fields - parameters)}"
            )
