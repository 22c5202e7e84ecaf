"""Speculative decoding (greedy): a small draft model guesses, the target model checks in one pass.

Each round:

    draft   proposes k tokens d1..dk, one at a time (cheap: a small model; decode_steps on the
            draft's own KV cache)
    target  runs [last token, d1..dk] in ONE forward pass; its greedy choice after each prefix
            gives g1..g(k+1)
    accept  the longest prefix with d_i == g_i (n tokens), then g(n+1): the target's own token
            where the draft went wrong, or a bonus token when all k were right

so every round yields 1..k+1 tokens for one target pass, and the tokens are exactly the target's
greedy tokens: a draft token is kept only where the target would have chosen it. Both KV caches
are cropped back to the accepted tokens after each round.

Batch 1 and greedy only; the prompt plus the new tokens must fit both models' block_size.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from gptlab.device import model_device
from gptlab.errors import GptlabError, require
from gptlab.inference.config import GenerationConfig
from gptlab.inference.decode import decode_steps
from gptlab.model.kv_cache import KVCache


@dataclass
class SpeculativeResult:
    token_ids: list[int]  # the new tokens (without an end-of-text token)
    proposed: int  # draft tokens offered to the target
    accepted: int  # of those, how many the target agreed with
    target_passes: int  # forward passes of the target (plain decoding needs one per token)

    @property
    def acceptance_rate(self) -> float:
        return self.accepted / self.proposed if self.proposed else 0.0


def check_draft_compatible(target_tokenizer, draft_tokenizer) -> None:
    """A draft must speak the target's tokens: the same tokenizer (speculative_generate also
    checks the vocabulary sizes)."""
    if target_tokenizer.to_dict() != draft_tokenizer.to_dict():
        raise GptlabError(
            "the draft model's tokenizer differs from the target's; speculative decoding needs a "
            "draft trained with the same tokenizer"
        )


def _feed(model, cache: KVCache, tokens: list[int], device) -> torch.Tensor:
    """Run the tokens the cache has not seen yet; return their logits (T_new, V)."""
    new = torch.tensor([tokens[cache.seq_len :]], device=device)  # (1, T_new)
    logits, _ = model(new, kv_cache=cache)
    return logits[0]


def propose(draft, cache: KVCache, tokens: list[int], k: int) -> list[int]:
    """The draft's k greedy tokens after `tokens`, decoded by the shared loop on its own cache
    (which then holds tokens + all guesses but the last)."""
    if k == 0:
        return []
    config = GenerationConfig(max_new_tokens=k, temperature=0, stop_at_eot=False)
    return [step.tokens[0] for step in decode_steps(draft, tokens, config, cache=cache)]


@torch.inference_mode()
def speculative_generate(
    target,
    draft,
    prompt_ids: Sequence[int],
    max_new_tokens: int,
    *,
    draft_tokens: int = 4,
    eot_id: int | None = None,
) -> SpeculativeResult:
    """Greedy decoding of `target`, sped up by `draft` proposing `draft_tokens` per round."""
    require(draft_tokens >= 1, f"draft_tokens must be >= 1, got {draft_tokens}")
    require(max_new_tokens >= 1, f"max_new_tokens must be >= 1, got {max_new_tokens}")
    require(len(prompt_ids) > 0, "the prompt is empty; give some text to continue")
    if target.config.vocab_size != draft.config.vocab_size:
        raise GptlabError(
            f"the draft's vocabulary ({draft.config.vocab_size}) differs from the target's "
            f"({target.config.vocab_size}); use a draft with the same tokenizer"
        )
    limit = min(target.config.block_size, draft.config.block_size)
    require(
        len(prompt_ids) + max_new_tokens <= limit,
        f"prompt ({len(prompt_ids)} tokens) + max_new_tokens ({max_new_tokens}) must fit the "
        f"smaller block_size of target and draft ({limit}) for speculative decoding",
    )
    target.eval()
    draft.eval()
    device = model_device(target)
    target_cache, draft_cache = KVCache(target.config.n_layer), KVCache(draft.config.n_layer)
    tokens = [int(t) for t in prompt_ids]
    new: list[int] = []
    proposed = accepted = passes = 0

    while len(new) < max_new_tokens:
        # The last round's final token is always the target's own, so at most
        # max_new_tokens - len(new) - 1 draft tokens can still be useful.
        k = min(draft_tokens, max_new_tokens - len(new) - 1)
        guesses = propose(draft, draft_cache, tokens, k)
        # Target: logits after each of the last k + 1 tokens of tokens + guesses.
        logits = _feed(target, target_cache, tokens + guesses, device)  # (T_new, V)
        choices = logits[-(k + 1) :].argmax(dim=-1).tolist()  # g1 .. g(k+1)
        passes += 1
        n = next((i for i in range(k) if guesses[i] != choices[i]), k)
        proposed, accepted = proposed + k, accepted + n
        round_tokens = guesses[:n] + [choices[n]]

        kept = len(tokens) + n  # positions whose keys are still valid in the target's cache
        target_cache.crop(kept)
        draft_cache.crop(min(draft_cache.seq_len, kept))
        for token in round_tokens:
            if token == eot_id or len(new) == max_new_tokens:
                return SpeculativeResult(new, proposed, accepted, passes)
            new.append(token)
            tokens.append(token)
    return SpeculativeResult(new, proposed, accepted, passes)
