"""test-prompt (rank, probability and logit of an answer) and embedding neighbours, against
direct computations."""

import pytest
import torch
from interp_testing import random_model

from gptlab.errors import GptlabError
from gptlab.interp import prompts
from gptlab.interp.neighbors import nearest_tokens
from gptlab.tokenizers.base import CharTokenizer

TOKENIZER = CharTokenizer.from_text(
    "abcdefghijklmnopqrstuvwxyz ,.!?'ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
)


def test_answer_tokens_are_scored_one_by_one_given_what_comes_before():
    model = random_model(vocab_size=TOKENIZER.vocab_size)
    prompt, answer = "the cat sat", " on"
    result = prompts.rank_answer(model, TOKENIZER, prompt, answer, k=5)
    ids = TOKENIZER.encode(prompt)
    assert [s.token for s in result.answer] == [" ", "o", "n"]
    for i, score in enumerate(result.answer):
        context = torch.tensor([ids + TOKENIZER.encode(answer)[:i]])
        logits = model(context)[0][0, -1]  # the prediction after prompt + earlier answer tokens
        order = logits.argsort(descending=True).tolist()
        assert score.rank == order.index(score.token_id) + 1
        assert score.logit == pytest.approx(float(logits[score.token_id]), abs=1e-5)
        assert score.prob == pytest.approx(float(logits.softmax(-1)[score.token_id]), abs=1e-6)

    logits = model(torch.tensor([ids]))[0][0, -1]
    assert [s.token_id for s in result.top] == logits.topk(5).indices.tolist()
    assert [s.rank for s in result.top] == [1, 2, 3, 4, 5]


def test_empty_answer_and_unknown_characters_are_user_errors():
    model = random_model(vocab_size=TOKENIZER.vocab_size)
    with pytest.raises(GptlabError, match="the answer is empty"):
        prompts.rank_answer(model, TOKENIZER, "abc", "")
    with pytest.raises(GptlabError, match="character vocabulary lacks"):
        prompts.rank_answer(model, TOKENIZER, "abc~", "d")


def test_nearest_tokens_are_the_most_cosine_similar_embeddings():
    model = random_model(pad_vocab_multiple=16)  # 61 real tokens, 64 rows: padding is no neighbour
    with torch.no_grad():
        model.wte.weight[61:] = model.wte.weight[3] * 2  # would be perfect matches if considered
    neighbours = nearest_tokens(model, 3, k=60)
    embeddings = model.wte.weight[:61].double()
    cosine = torch.nn.functional.cosine_similarity(embeddings, embeddings[3:4], dim=-1)
    cosine[3] = -2.0  # not its own neighbour
    expected = cosine.argsort(descending=True)[:60].tolist()
    assert [i for i, _ in neighbours] == expected
    assert [c for _, c in neighbours] == pytest.approx(cosine[expected].tolist(), abs=1e-6)
