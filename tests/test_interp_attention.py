"""Attention patterns (against a hand computation from q and k) and the offline HTML page."""

import json
import math
import re

import pytest
import torch
from interp_testing import random_model, random_tokens

from gptlab.errors import GptlabError
from gptlab.interp.attention import attention_patterns, save_attention_grid
from gptlab.interp.attention_html import attention_html, save_attention_html


def test_attention_rows_sum_to_one_and_are_zero_above_the_diagonal():
    model = random_model()
    patterns = attention_patterns(model, random_tokens(model, 15))  # (L, H, T, T)
    assert patterns.shape == (3, 4, 15, 15)
    torch.testing.assert_close(patterns.sum(-1), torch.ones(3, 4, 15), atol=1e-6, rtol=0)
    above = torch.ones(15, 15, dtype=torch.bool).triu(diagonal=1)
    assert torch.all(patterns[..., above] == 0)
    assert torch.all(patterns[..., ~above] > 0)


def test_attention_patterns_equal_softmax_of_cached_queries_and_keys():
    model = random_model()
    idx = random_tokens(model, 11)
    _, cache = model.run_with_cache(idx, names=["blocks.*.attn.hook_q", "blocks.*.attn.hook_k"])
    patterns = attention_patterns(model, idx)
    T, D = 11, model.config.head_dim
    causal = torch.ones(T, T, dtype=torch.bool).tril()
    for layer in range(model.config.n_layer):
        q, k = cache[f"blocks.{layer}.attn.hook_q"][0], cache[f"blocks.{layer}.attn.hook_k"][0]
        scores = (q @ k.transpose(-1, -2) / math.sqrt(D)).masked_fill(~causal, float("-inf"))
        torch.testing.assert_close(patterns[layer], scores.softmax(-1), atol=1e-6, rtol=1e-5)


def page_data(page: str) -> dict:
    match = re.search(r"<script>const DATA = (.*?);</script>", page, re.S)
    assert match, "the page carries its data inline"
    return json.loads(match.group(1))


def test_attention_page_is_one_offline_file_with_the_data_inline(tmp_path):
    model = random_model()
    patterns = attention_patterns(model, random_tokens(model, 6))
    tokens = ["a", " b", "</script>", "<!--", "\\n", "é"]
    path = save_attention_html(tmp_path / "attention.html", patterns, tokens, title="t <x>")
    assert [p.name for p in tmp_path.iterdir()] == ["attention.html"]
    page = path.read_text(encoding="utf-8")

    assert not re.search(r"(https?:)?//[\w.-]+\.\w", page), "no external URL"
    assert not re.search(r"<(link|img|iframe)\b|\bsrc=|@import", page), (
        "nothing loaded from elsewhere"
    )
    assert page.count("<script>") == 2 and page.count("</script>") == 2, (
        "tokens cannot close the script"
    )
    assert "<title>t &lt;x&gt;</title>" in page

    data = page_data(page)
    assert data["tokens"] == tokens
    assert (data["layers"], data["heads"]) == ([0, 1, 2], [0, 1, 2, 3])
    for layer in range(3):
        for head in range(4):
            for q in range(6):
                row = data["patterns"][layer][head][q]
                assert len(row) == q + 1  # only the causal part of each row is stored
                torch.testing.assert_close(
                    torch.tensor(row), patterns[layer, head, q, : q + 1], atol=6e-5, rtol=0
                )


def test_attention_page_can_show_chosen_layers_and_heads_only():
    model = random_model()
    patterns = attention_patterns(model, random_tokens(model, 4))
    data = page_data(attention_html(patterns, list("abcd"), layers=[2], heads=[3, 1]))
    assert (data["layers"], data["heads"]) == ([2], [3, 1])
    torch.testing.assert_close(
        torch.tensor(data["patterns"][0][1][3]), patterns[2, 1, 3], atol=6e-5, rtol=0
    )


def test_attention_page_refuses_to_grow_past_its_limit():
    patterns = torch.ones(2, 2, 2000, 2000).tril()
    with pytest.raises(GptlabError, match="would hold 8,004,000 attention weights"):
        attention_html(patterns, ["x"] * 2000)


def test_attention_page_script_uses_the_page_elements():
    page = attention_html(torch.full((1, 1, 2, 2), 0.5).tril(), ["x", "y"])
    for element_id in re.findall(r"getElementById\('(\w+)'\)", page):
        assert f'id="{element_id}"' in page


def test_attention_grid_png(tmp_path):
    model = random_model()
    patterns = attention_patterns(model, random_tokens(model, 5))
    path = save_attention_grid(
        tmp_path / "grid.png", patterns, list("abcde"), layers=[2], heads=[0, 3]
    )
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_single_head_pictures_title_fits_inside_the_figure():
    """The attention grid of one head is narrow; its title is wrapped to fit, not clipped."""
    from gptlab.plotting import fit_title, new_figure

    title = "attention patterns (row: query position, column: key position)"
    width = 3.5 * 1 + 1  # one column, as attention_grid sizes it
    figure = new_figure(width, 3.5 + 0.6)
    text = figure.suptitle(fit_title(title, width))
    figure.canvas.draw()
    box, frame = text.get_window_extent(), figure.bbox
    assert box.x0 >= frame.x0 and box.x1 <= frame.x1
    assert fit_title(title, 30) == title  # a wide figure keeps it on one line


def test_prompt_test_header_says_where_ranks_start():
    from gptlab.interp.prompts import PromptTest, TokenScore, prompt_test_tables

    score = TokenScore(token_id=1, token="a", rank=1, prob=0.5, logit=2.0)
    assert "rank (1 = top)" in prompt_test_tables(PromptTest(answer=[score], top=[score]))
