"""The bad-input sweep for the HTML pages gptlab writes, in headless Chromium: a prompt, a
served model's name, a token or a training sample holding markup ("<!--<script", "</script>",
U+2028) must neither blank the page nor run: the page draws, and the text shows as text."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("fastapi")
pytest.importorskip("selenium")
from explore_testing import run_folder  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from test_explore_browser import browser, drawn, wait_for_draw  # noqa: E402, F401

from gptlab.explore.export import export_page  # noqa: E402
from gptlab.explore.sources import Source, load_sources  # noqa: E402
from gptlab.interp.attention_html import save_attention_html  # noqa: E402

pytestmark = pytest.mark.slow

HOSTILE = 'A <!--<script> x </script><b id="injected">bold</b> & \u2028 </style> <img src=x onerror="document.title=1">'


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile")
    run = run_folder(root / "<!--<script>run")  # a served model's name is its folder's name
    samples = run / "samples.txt"
    samples.write_text(f"=== step 10 ===\n{HOSTILE}\n\n", encoding="utf-8")
    return {"root": root, "run": run}


def test_the_exported_page_shows_hostile_text_as_text(browser, folders, tmp_path):  # noqa: F811
    explorer = next(iter(load_sources([Source(str(folders["run"]))], "cpu").values()))
    page = export_page(explorer, HOSTILE, tmp_path / "page.html")
    browser.get(page.resolve().as_uri())
    wait_for_draw(browser, "next", "")
    assert browser.find_element(By.ID, "prompt").get_attribute("value") == HOSTILE
    assert browser.find_element(By.ID, "model").text.startswith("<!--<script>run (")
    assert not browser.find_elements(By.ID, "injected")
    before = drawn(browser)
    browser.find_element(By.ID, "tab-run").click()
    wait_for_draw(browser, "run", before)
    assert browser.find_element(By.ID, "run-sample").get_attribute("textContent") == HOSTILE
    assert not browser.find_elements(By.ID, "injected") and browser.title != "1"


def test_the_attention_page_shows_hostile_tokens_and_title_as_text(browser, tmp_path):  # noqa: F811
    tokens = ["<!--", "<script>", "</script>", "\u2028", "&amp;", "<b id='injected'>"]
    T = len(tokens)
    patterns = torch.tril(torch.ones(1, 2, T, T))
    patterns = patterns / patterns.sum(-1, keepdim=True)
    page = save_attention_html(tmp_path / "attention.html", patterns, tokens, title=HOSTILE)
    browser.get(page.resolve().as_uri())
    spans = browser.find_elements(By.CSS_SELECTOR, "#tokens span")
    assert [s.get_attribute("textContent") for s in spans] == tokens
    assert browser.find_element(By.TAG_NAME, "h1").get_attribute("textContent") == HOSTILE
    assert browser.find_elements(By.CSS_SELECTOR, "#thumbs canvas")  # the script ran to the end
    assert not browser.find_elements(By.ID, "injected")
