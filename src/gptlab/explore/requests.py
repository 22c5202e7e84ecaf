"""The JSON bodies the API accepts, one per view (pydantic models: FastAPI checks them and draws
them on its OpenAPI page, /docs). Unknown fields are refused, so a typo is an error, not a
silently ignored setting. Ranges that depend on the model (layer, head, prompt length) are
checked by gptlab.explore.views."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class PromptRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str | None = Field(None, description="a served model's name (default: the first)")
    prompt: str = Field(description="the text to look at")


class NextTokenRequest(PromptRequest):
    temperature: float = Field(1.0, description="0 = greedy; as `gptlab sample --temperature`")
    top_k: int | None = Field(None, description="keep the k most likely tokens (None: off)")
    top_p: float = Field(1.0, description="nucleus: keep the smallest set reaching p (1: off)")
    k: int = Field(10, description="how many bars to return (1..100)")


class GenerateRequest(PromptRequest):
    max_new_tokens: int = 50
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float = 1.0
    seed: int | None = None


class AttentionRequest(PromptRequest):
    layer: int = 0
    head: int = 0


class AttributionRequest(PromptRequest):
    target: str | None = Field(None, description="one token (default: the top prediction)")
    contrast: str | None = Field(None, description="a second token: attribute target - contrast")
    position: int = Field(-1, description="the position whose prediction is split")


class AblationRequest(PromptRequest):
    component: str = Field("head", description="'head' or 'mlp'")
    layer: int = 0
    head: int | None = 0
    mode: str = Field("zero", description="'zero' or 'mean' (the mean over the prompt)")
    target: str | None = Field(None, description="the token to follow (default: the top one)")
    k: int = 10
