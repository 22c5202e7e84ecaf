"""Looking inside a model: attention maps, logit lens, attribution, ablation, patching.

Every tool is a plain function over a GPT and token ids, built on the model's hook points
(gptlab.model.hooks, names in docs/hooks.md); `gptlab inspect <tool>` wraps each one with
terminal tables and PNG/HTML/JSON files.
"""

from gptlab.interp.ablation import HeadAblation, ablation_hooks, dataset_sample, head_ablation
from gptlab.interp.attention import attention_patterns, save_attention_grid
from gptlab.interp.attention_html import attention_html, save_attention_html
from gptlab.interp.attribution import LogitAttribution, direct_logit_attribution
from gptlab.interp.logit_lens import LogitLens, decode_residual, logit_lens
from gptlab.interp.neighbors import nearest_tokens
from gptlab.interp.patching import (
    PatchingResult,
    activation_patching,
    answer_probability,
    logit_difference,
)
from gptlab.interp.prompts import PromptTest, rank_answer

__all__ = [
    "HeadAblation",
    "LogitAttribution",
    "LogitLens",
    "PatchingResult",
    "PromptTest",
    "ablation_hooks",
    "activation_patching",
    "answer_probability",
    "attention_html",
    "attention_patterns",
    "dataset_sample",
    "decode_residual",
    "direct_logit_attribution",
    "head_ablation",
    "logit_difference",
    "logit_lens",
    "nearest_tokens",
    "rank_answer",
    "save_attention_grid",
    "save_attention_html",
]
