"""Testing a prompt: how does the model rank the answer we expect, and what does it prefer?

For an answer of several tokens each token is scored given the prompt and the answer tokens
before it (the prompt + answer is run once; position t's logits predict token t + 1).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from gptlab.errors import GptlabError
from gptlab.interp.tokens import encode_prompt, token_label
from gptlab.tables import format_table, quoted
from gptlab.tokenizers.base import Tokenizer


@dataclass
class TokenScore:
    token_id: int
    token: str
    rank: int  # 1 = the model's top choice
    prob: float
    logit: float


@dataclass
class PromptTest:
    answer: list[TokenScore]  # one per answer token, each given everything before it
    top: list[TokenScore]  # the k most likely next tokens after the prompt

    def to_dict(self) -> dict:
        return {"answer": [asdict(s) for s in self.answer], "top": [asdict(s) for s in self.top]}


def score_token(tokenizer: Tokenizer, logits: torch.Tensor, token_id: int) -> TokenScore:
    """Rank, probability and logit of token_id in one position's logits (V,)."""
    logits = logits.float()
    logit = logits[token_id]
    return TokenScore(
        token_id=int(token_id),
        token=token_label(tokenizer, token_id),
        rank=int((logits > logit).sum()) + 1,
        prob=float(logits.softmax(dim=-1)[token_id]),
        logit=float(logit),
    )


@torch.no_grad()
def rank_answer(model, tokenizer: Tokenizer, prompt: str, answer: str, k: int = 10) -> PromptTest:
    """Score each token of `answer` after `prompt`, plus the top-k alternatives to its first token."""
    prompt_ids = encode_prompt(model, tokenizer, prompt)  # (1, T)
    answer_ids = tokenizer.encode(answer)
    if not answer_ids:
        raise GptlabError(
            "the answer is empty; give the text expected after the prompt (e.g. ' Paris')"
        )
    full = torch.cat([prompt_ids, torch.tensor([answer_ids], device=prompt_ids.device)], dim=1)
    if full.shape[1] - 1 > model.config.block_size:
        raise GptlabError(
            f"prompt + answer is {full.shape[1]} tokens, more than the model's block_size "
            f"({model.config.block_size}) + 1; shorten them"
        )
    logits, _ = model(full[:, :-1])  # (1, T + A - 1, V): position t predicts token t + 1
    first = prompt_ids.shape[1] - 1  # the position that predicts the first answer token
    answer_scores = [
        score_token(tokenizer, logits[0, first + i], tid) for i, tid in enumerate(answer_ids)
    ]
    top_ids = logits[0, first].topk(min(k, logits.shape[-1])).indices
    return PromptTest(
        answer=answer_scores,
        top=[score_token(tokenizer, logits[0, first], int(t)) for t in top_ids],
    )


# Ranks count from 1 (the top choice is rank 1); TransformerLens' test_prompt counts from 0.
RANK_HEADER = "rank (1 = top)"


def prompt_test_tables(result: PromptTest) -> str:
    answer = format_table(
        ["token", "id", RANK_HEADER, "prob", "logit"],
        [[quoted(s.token), s.token_id, s.rank, s.prob, s.logit] for s in result.answer],
    )
    top = format_table(
        [RANK_HEADER, "token", "id", "prob", "logit"],
        [[s.rank, quoted(s.token), s.token_id, s.prob, s.logit] for s in result.top],
    )
    return (
        "answer, token by token (each given the prompt and the answer tokens before it):\n"
        f"{answer}\n\ntop {len(result.top)} next tokens after the prompt:\n{top}"
    )
