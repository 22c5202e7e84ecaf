"""The Features tab: a sparse autoencoder attached to a served model (`gptlab explore RUN --sae
DIR`), and the routes behind the tab.

    GET  /api/sae/info?model=M    whether M has an SAE, its hook and width
    POST /api/sae/fires           the features active on each token of a prompt (largest first)
    POST /api/sae/feature         one feature's dashboard (gptlab.sae.features, from the scan)
    POST /api/sae/ablate          the feature zeroed at its hook: loss and next-token change
    GET  /api/sae/dashboard.js    the dashboard renderer

The three POST routes are views of gptlab.explore.registry (their requests are declared there).

The feature scan (top contexts, densities) is read from the SAE folder's features.safetensors,
made on first use if it is missing (a few seconds to a minute for the default 32,768 tokens).
"""

# No `from __future__ import annotations`: FastAPI reads the routes' annotations when they are defined.

from collections.abc import Callable
from pathlib import Path

import torch

from gptlab.errors import GptlabError
from gptlab.explore.session import Explorer
from gptlab.sae.activations import check_hook
from gptlab.sae.features import FeatureScan, load_or_scan
from gptlab.sae.folder import check_sae_model, load_sae
from gptlab.sae.intervene import ablation_effect, check_feature
from gptlab.sae.page import dashboard_script

SCAN_TOKENS = 32_768
MAX_FIRING = 8  # features listed per token


class AttachedSae:
    def __init__(self, folder: str | Path, explorer: Explorer, scan_tokens: int = SCAN_TOKENS):
        explorer.require_model()
        device = next(explorer.model.parameters()).device
        self.folder = Path(folder)
        self.sae, self.config = load_sae(folder, device)
        self.hook = check_hook(explorer.model, self.config["hook"])
        check_sae_model(self.config, explorer.model, folder)
        if self.sae.d_in != explorer.model.config.n_embd:
            raise GptlabError(
                f"the SAE in {folder} reads {self.sae.d_in}-wide activations; "
                f"{explorer.name}'s are {explorer.model.config.n_embd}: give the SAE trained on it"
            )
        self.scan_tokens = scan_tokens
        self._scan: FeatureScan | None = None

    def scan(self) -> FeatureScan:
        if self._scan is None:
            self._scan = load_or_scan(
                self.folder, tokens=self.scan_tokens, device="cpu", show_progress=False
            )
        return self._scan

    def describe(self) -> dict:
        return {
            "sae": True,
            "hook": self.hook,
            "features": self.sae.d_sae,
            "kind": self.sae.kind,
            "k": self.sae.k,
        }


def attach_sae(explorer: Explorer, folder: str | Path) -> None:
    explorer.sae = AttachedSae(folder, explorer)


def has_sae(explorer: Explorer) -> bool:
    return getattr(explorer, "sae", None) is not None


def sae_info(explorer: Explorer) -> dict:
    """GET /api/sae/info's answer (saved in exported pages too)."""
    return explorer.sae.describe() if has_sae(explorer) else {"sae": False}


def attached(explorer: Explorer) -> AttachedSae:
    sae = getattr(explorer, "sae", None)
    if sae is None:
        raise GptlabError(f"{explorer.name} has no SAE: start the explorer with --sae DIR")
    return sae


def fires(explorer: Explorer, prompt: str, k: int = MAX_FIRING) -> dict:
    """Per token of the prompt, the features active on it with their activations, largest first."""
    sae = attached(explorer)
    ids = explorer.encode(prompt)
    idx = torch.tensor([ids], device=next(explorer.model.parameters()).device)
    _, cache = explorer.model.run_with_cache(idx, [sae.hook])
    f = sae.sae.encode(cache[sae.hook])[0]  # (T, d_sae)
    top = f.topk(min(k, f.shape[-1]), dim=-1)
    tokens = []
    for t, token in enumerate(ids):
        active = [
            {"id": i, "act": round(v, 4)}
            for v, i in zip(top.values[t].tolist(), top.indices[t].tolist(), strict=True)
            if v > 0
        ]
        tokens.append({"text": explorer.tokenizer.decode([token]), "features": active})
    return {"hook": sae.hook, "tokens": tokens}


def firing_features(explorer: Explorer, prompt: str) -> list[int]:
    """The features fires() lists on some token of the prompt, by index."""
    with torch.no_grad():
        answer = fires(explorer, prompt)
    return sorted({f["id"] for token in answer["tokens"] for f in token["features"]})


def feature(explorer: Explorer, feature: int, top: int = 10) -> dict:
    """One feature's dashboard: its top contexts, activation histogram and logit effect."""
    sae = attached(explorer)
    check_feature(sae.sae, feature)
    return sae.scan().dashboard(feature, top=top)


def ablate(explorer: Explorer, prompt: str, feature: int) -> dict:
    """The feature zeroed at its hook: the prompt's loss and next-token change."""
    sae = attached(explorer)
    return ablation_effect(
        explorer.model, explorer.tokenizer, sae.sae, sae.hook, feature, prompt, top=10
    )


def add_sae_routes(app, explorer_for: Callable) -> None:
    """The Features tab's two GET routes (its POST views are in gptlab.explore.registry)."""
    from fastapi.responses import Response

    script = dashboard_script().encode("utf-8")

    @app.get("/api/sae/dashboard.js", include_in_schema=False)
    def dashboard_js():
        return Response(script, media_type="text/javascript")

    @app.get("/api/sae/info", summary="whether a model has an SAE attached, and its shape")
    def info(model: str | None = None) -> dict:
        return sae_info(explorer_for(model))
