"""Looking inside a model: attention maps, logit lens, attribution, ablation, patching, head
detectors, weight-based circuits and prompt-set metrics.

Every tool is a plain function over a GPT and token ids, built on the model's hook points
(gptlab.model.hooks, names in docs/hooks.md); `gptlab inspect <tool>` wraps each one with
terminal tables and PNG/HTML/JSON files.
"""

from gptlab.interp.ablation import HeadAblation, ablation_hooks, dataset_sample, head_ablation
from gptlab.interp.attention import attention_patterns, save_attention_grid
from gptlab.interp.attention_html import attention_html, save_attention_html
from gptlab.interp.attribution import LogitAttribution, direct_logit_attribution
from gptlab.interp.circuits import (
    FactoredMatrix,
    composition_scores,
    ov_token_circuit,
    qk_token_circuit,
)
from gptlab.interp.detectors import detect_heads
from gptlab.interp.induction import per_position_loss, repeated_random_tokens, repeated_tokens_loss
from gptlab.interp.logit_lens import LogitLens, decode_residual, logit_lens
from gptlab.interp.neighbors import nearest_tokens
from gptlab.interp.patching import (
    PatchingResult,
    activation_patching,
    answer_probability,
    logit_difference,
)
from gptlab.interp.patching_sites import compare_attribution_patching, patch_site, path_patching
from gptlab.interp.prompt_sets import PromptSet, ioi_prompt_set, load_prompt_set
from gptlab.interp.prompts import PromptTest, rank_answer
from gptlab.interp.set_metrics import set_head_ablation, set_logit_attribution

__all__ = [
    "FactoredMatrix",
    "HeadAblation",
    "LogitAttribution",
    "LogitLens",
    "PatchingResult",
    "PromptSet",
    "PromptTest",
    "ablation_hooks",
    "activation_patching",
    "answer_probability",
    "attention_html",
    "attention_patterns",
    "compare_attribution_patching",
    "composition_scores",
    "dataset_sample",
    "decode_residual",
    "detect_heads",
    "direct_logit_attribution",
    "head_ablation",
    "ioi_prompt_set",
    "load_prompt_set",
    "logit_difference",
    "logit_lens",
    "nearest_tokens",
    "ov_token_circuit",
    "patch_site",
    "path_patching",
    "per_position_loss",
    "qk_token_circuit",
    "rank_answer",
    "repeated_random_tokens",
    "repeated_tokens_loss",
    "save_attention_grid",
    "save_attention_html",
    "set_head_ablation",
    "set_logit_attribution",
]
