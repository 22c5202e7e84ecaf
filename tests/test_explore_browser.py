"""`gptlab explore` end to end in a real headless Chromium, with the network cut off.

The server runs on a free loopback port; Chromium resolves every other host to nothing
(--host-resolver-rules) and the test checks, from the page's own performance entries, that it
loaded nothing from anywhere else. Each view is driven the way a person would (type, click,
choose), its numbers are checked against the library, and a screenshot of each is saved in the
test's tmp dir (tests/README: look at them after a change to the page).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading

import pytest
import torch

pytest.importorskip("fastapi")
uvicorn = pytest.importorskip("uvicorn")
selenium = pytest.importorskip("selenium")
from explore_testing import PROMPT, metrics_records, model_folder, run_folder  # noqa: E402
from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

from gptlab.checkpoints.load import load_model  # noqa: E402
from gptlab.explore.export import export_page  # noqa: E402
from gptlab.explore.server import bind, http_server  # noqa: E402
from gptlab.explore.sources import Source, load_sources  # noqa: E402
from gptlab.explore.views import LENS_WINDOW  # noqa: E402
from gptlab.inference.generate import GenerationConfig, generate_text  # noqa: E402
from gptlab.train.run_folder import LOCK_FILE  # noqa: E402

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
if not (CHROMIUM and CHROMEDRIVER):
    pytest.skip(
        "needs Debian's chromium and chromium-driver (.ci/run installs them)",
        allow_module_level=True,
    )


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("explore-browser")
    return {"model": model_folder(root / "model"), "run": run_folder(root / "run"), "root": root}


@pytest.fixture(scope="module")
def server(folders):
    served = load_sources([Source(str(folders["model"])), Source(str(folders["run"]))], "cpu")
    sock = bind("127.0.0.1", 0)
    app_server = http_server(served, sock)  # as `gptlab explore` serves: its guards in place
    thread = threading.Thread(target=app_server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{sock.getsockname()[1]}/"
    app_server.should_exit = True
    thread.join(timeout=10)
    sock.close()


@pytest.fixture(scope="module")
def browser(folders):
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in [
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-dev-shm-usage",
        f"--user-data-dir={folders['root'] / 'profile'}",
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
        "--window-size=1400,1000",
    ]:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def library(folders):
    model, tokenizer = load_model(folders["model"])
    return model.eval(), tokenizer


def drawn(driver) -> str:
    return driver.execute_script("return document.body.dataset.drawn || ''")


def wait_for_draw(driver, view: str, before: str, timeout: float = 30) -> None:
    """Until the page says it finished drawing `view` after the state `before`."""
    WebDriverWait(driver, timeout).until(
        lambda d: drawn(d) != before and drawn(d).startswith(view + ":")
    )
    error = driver.find_element(By.ID, "error")
    assert not error.is_displayed(), error.text


def set_slider(driver, element_id: str, value) -> None:
    driver.execute_script(
        "const s = document.getElementById(arguments[0]); s.value = arguments[1];"
        "s.dispatchEvent(new Event('input'));",
        element_id,
        str(value),
    )


def loaded_urls(driver) -> list[str]:
    return driver.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)"
        ".concat(performance.getEntriesByType('navigation').map(e => e.name))"
    )


def only_loopback(urls: list[str]) -> bool:
    return all(url.startswith(("http://127.0.0.1:", "file://", "data:")) for url in urls)


def bars(driver) -> list[tuple[int, float]]:
    return driver.execute_script(
        "return [...document.querySelectorAll('#nt-bars .bar-row')]"
        ".map(r => [Number(r.dataset.id), Number(r.dataset.prob)])"
    )


def library_top(model, tokenizer, prompt: str, k: int) -> list[tuple[int, float]]:
    idx = torch.tensor([tokenizer.encode(prompt)])
    with torch.no_grad():
        probs = model(idx)[0][0, -1].float().softmax(-1)
    top = probs.topk(k)
    return list(zip(top.indices.tolist(), top.values.tolist(), strict=True))


def test_every_view_in_a_real_browser(browser, server, folders, library, tmp_path):
    model, tokenizer = library
    browser.get(server)
    wait_for_draw(browser, "next", "")

    # Next token: type a prompt; the bars are the library's top 20 with its probabilities.
    prompt_box = browser.find_element(By.ID, "prompt")
    before = drawn(browser)
    prompt_box.clear()
    prompt_box.send_keys("The cat sat on the")
    wait_for_draw(browser, "next", before)
    shown = bars(browser)
    expected = library_top(model, tokenizer, "The cat sat on the", 20)
    assert [i for i, _ in shown] == [i for i, _ in expected]
    assert [p for _, p in shown] == pytest.approx([p for _, p in expected], abs=1e-6)
    assert len(browser.find_elements(By.CSS_SELECTOR, "#nt-chips .chip")) == len(
        tokenizer.encode("The cat sat on the")
    )
    # top-k 3 cuts every bar but three; the page says how many tokens can still be drawn.
    before = drawn(browser)
    set_slider(browser, "top-k", 3)
    wait_for_draw(browser, "next", before)
    assert len(browser.find_elements(By.CSS_SELECTOR, "#nt-bars .bar-row.muted")) == 17
    assert "3 of 50,257 tokens can be drawn" in browser.find_element(By.ID, "nt-summary").text
    browser.save_screenshot(str(tmp_path / "next_token.png"))
    # Clicking a bar appends its token.
    before = drawn(browser)
    browser.find_elements(By.CSS_SELECTOR, "#nt-bars .bar-row")[0].click()
    wait_for_draw(browser, "next", before)
    appended = "The cat sat on the" + tokenizer.decode([expected[0][0]])
    assert prompt_box.get_attribute("value") == appended
    # Greedy generation streams `gptlab sample --greedy`'s text.
    before = drawn(browser)
    set_slider(browser, "temperature", 0)
    wait_for_draw(browser, "next", before)
    browser.find_element(By.ID, "gen-start").click()
    WebDriverWait(browser, 60).until(
        lambda d: d.find_element(By.ID, "gen-out").get_attribute("data-text") is not None
    )
    greedy = generate_text(
        model, tokenizer, appended, GenerationConfig(max_new_tokens=40, temperature=0)
    )[0].text
    assert browser.find_element(By.ID, "gen-out").get_attribute("data-text") == greedy
    assert len(browser.find_elements(By.CSS_SELECTOR, "#gen-out .gen-token")) == 40
    browser.execute_script("document.getElementById('gen-out').scrollIntoView({block: 'center'})")
    browser.save_screenshot(str(tmp_path / "generate.png"))

    # Attention: pick layer 1, head 2; the grid marks it and the large pattern is titled so.
    before = drawn(browser)
    browser.find_element(By.ID, "tab-attention").click()
    wait_for_draw(browser, "attention", before)
    before = drawn(browser)
    Select(browser.find_element(By.ID, "att-layer")).select_by_value("1")
    wait_for_draw(browser, "attention", before)
    before = drawn(browser)
    Select(browser.find_element(By.ID, "att-head")).select_by_value("2")
    wait_for_draw(browser, "attention", before)
    assert browser.find_element(By.ID, "att-title").text.startswith("layer 1, head 2")
    selected = browser.find_element(By.CSS_SELECTOR, "canvas.thumb.selected")
    assert (selected.get_attribute("data-layer"), selected.get_attribute("data-head")) == ("1", "2")
    assert len(browser.find_elements(By.CSS_SELECTOR, "canvas.thumb")) == 2 * 3
    before = drawn(browser)
    browser.find_element(By.CSS_SELECTOR, "input[name=att-dir][value=to]").click()
    wait_for_draw(browser, "attention", before)
    assert "attended by" in browser.find_element(By.ID, "att-title").text
    browser.save_screenshot(str(tmp_path / "attention.png"))

    for view in ("lens", "attribution"):
        before = drawn(browser)
        browser.find_element(By.ID, f"tab-{view}").click()
        wait_for_draw(browser, view, before)
        browser.save_screenshot(str(tmp_path / f"{view}.png"))
    rows = browser.find_elements(By.CSS_SELECTOR, "table.lens tbody tr")
    assert len(rows) == 3  # embed, block 0, block 1
    # A prompt longer than the lens's window: its end first, then a step to the window before.
    long_prompt = " one two three" * 6
    T = len(tokenizer.encode(long_prompt))
    before = drawn(browser)
    browser.find_element(By.ID, "tab-lens").click()
    wait_for_draw(browser, "lens", before)
    before = drawn(browser)
    browser.execute_script("window.gptlabExplore.setPrompt(arguments[0])", long_prompt)
    wait_for_draw(browser, "lens", before)
    where = browser.find_element(By.ID, "lens-where")
    assert where.text == f"positions {T - LENS_WINDOW} to {T - 1} of {T}"
    before = drawn(browser)
    browser.find_element(By.ID, "lens-earlier").click()
    wait_for_draw(browser, "lens", before)
    start = max(0, T - 2 * LENS_WINDOW)  # the first window may be shorter
    assert where.text == f"positions {start} to {T - LENS_WINDOW - 1} of {T}"
    cells = browser.find_elements(By.CSS_SELECTOR, "table.lens tbody tr:first-child td")
    assert len(cells) == T - LENS_WINDOW - start
    assert not browser.find_element(By.ID, "lens-later").get_attribute("disabled")
    before = drawn(browser)
    browser.execute_script("window.gptlabExplore.setPrompt(arguments[0])", appended)
    wait_for_draw(browser, "lens", before)

    # Token loss: every token but the first shaded by the model's loss on it.
    before = drawn(browser)
    browser.find_element(By.ID, "tab-loss").click()
    wait_for_draw(browser, "loss", before)
    shown = [
        span.get_attribute("data-loss")
        for span in browser.find_elements(By.CSS_SELECTOR, "#loss-text .shade-token")
    ]
    ids = torch.tensor([tokenizer.encode(appended)])
    with torch.no_grad():
        logits = model(ids)[0][0].float()
    expected = torch.nn.functional.cross_entropy(logits[:-1], ids[0, 1:], reduction="none")
    assert shown[0] is None and len(shown) == ids.shape[1]
    assert [float(v) for v in shown[1:]] == pytest.approx(expected.tolist(), abs=1e-5)
    browser.save_screenshot(str(tmp_path / "token_loss.png"))

    # Ablation: zero-ablate layer 0 head 1; the cell shows the change the library computes.
    before = drawn(browser)
    browser.find_element(By.ID, "tab-ablation").click()
    wait_for_draw(browser, "ablation", before)
    browser.find_element(By.CSS_SELECTOR, "#abl-grid td[data-component='head-0-1']").click()
    WebDriverWait(browser, 30).until(
        lambda d: "zero-ablated" in d.find_element(By.ID, "abl-summary").text
    )
    idx = torch.tensor([tokenizer.encode(appended)])

    def zero_head(z, _name):
        z = z.clone()
        z[:, :, 1] = 0
        return z

    with torch.no_grad():
        intact = model(idx)[0][0, -1].softmax(-1)
        with model.hooks({"blocks.0.attn.hook_z": zero_head}):
            ablated = model(idx)[0][0, -1].softmax(-1)
    target = int(intact.argmax())
    change = 100 * float(ablated[target] - intact[target])
    cell = browser.find_element(By.CSS_SELECTOR, "#abl-grid td[data-component='head-0-1']")
    assert cell.text == f"{change:+.1f}".replace("+-", "-")
    assert "layer 0 head 1 zero-ablated" in browser.find_element(By.ID, "abl-title").text
    assert len(browser.find_elements(By.CSS_SELECTOR, "#abl-ablated .bar-row")) == 10
    browser.save_screenshot(str(tmp_path / "ablation.png"))

    # Training run: the run's curves, its samples, and two new steps arriving while we watch. A
    # process stands for the trainer, named in the run's lock file as a trainer names itself;
    # the page polls only while it lives.
    trainer = subprocess.Popen(["sleep", "300"])
    (folders["run"] / LOCK_FILE).write_text(f"{trainer.pid}\n")
    before = drawn(browser)
    Select(browser.find_element(By.ID, "model")).select_by_value("run")
    wait_for_draw(browser, "ablation", before)
    before = drawn(browser)
    browser.find_element(By.ID, "tab-run").click()
    wait_for_draw(browser, "run", before)
    assert len(browser.find_elements(By.CSS_SELECTOR, "#run-charts svg.line-chart")) == 4
    assert "20 logged steps" in browser.find_element(By.ID, "run-status").text
    assert browser.find_element(By.ID, "run-sample").text == "second\nsample"
    with open(folders["run"] / "metrics.jsonl", "a", encoding="utf-8") as f:
        f.write("".join(json.dumps(r) + "\n" for r in metrics_records(22)[20:]))
    WebDriverWait(browser, 20).until(
        lambda d: "22 logged steps" in d.find_element(By.ID, "run-status").text
    )
    browser.save_screenshot(str(tmp_path / "run.png"))
    trainer.kill()  # the run ends: the next poll says so, and polling stops
    trainer.wait()
    WebDriverWait(browser, 20).until(
        lambda d: "not training now" in d.find_element(By.ID, "run-status").text
    )

    assert only_loopback(loaded_urls(browser)), loaded_urls(browser)


def test_the_exported_page_works_from_disk(browser, folders, tmp_path):
    explorer = load_sources([Source(str(folders["model"]))], "cpu")["model"]
    page = export_page(explorer, PROMPT, tmp_path / "page.html")
    browser.get(page.resolve().as_uri())
    wait_for_draw(browser, "next", "")
    assert len(bars(browser)) == 20
    before = drawn(browser)
    browser.find_element(By.ID, "tab-attention").click()
    wait_for_draw(browser, "attention", before)
    before = drawn(browser)
    browser.find_element(By.CSS_SELECTOR, "canvas.thumb[data-layer='1'][data-head='0']").click()
    wait_for_draw(browser, "attention", before)
    assert browser.find_element(By.ID, "att-title").text.startswith("layer 1, head 0")
    before = drawn(browser)
    browser.find_element(By.ID, "tab-ablation").click()
    wait_for_draw(browser, "ablation", before)
    browser.find_element(By.CSS_SELECTOR, "input[name=abl-mode][value=mean]").click()
    browser.find_element(By.CSS_SELECTOR, "#abl-grid td[data-component='mlp-1-mlp']").click()
    WebDriverWait(browser, 20).until(
        lambda d: "MLP mean-ablated" in d.find_element(By.ID, "abl-title").text
    )
    browser.save_screenshot(str(tmp_path / "exported_ablation.png"))
    urls = loaded_urls(browser)
    assert urls and all(url.startswith("file://") for url in urls), urls


def test_show_draws_inline_in_an_iframe(browser, library, tmp_path):
    """What a notebook gets from gptlab.explore.show: the page in a sandboxed srcdoc iframe."""
    from gptlab.explore import show

    model, tokenizer = library
    notebook = tmp_path / "notebook.html"
    notebook.write_text(f"<html><body>{show(model, PROMPT, tokenizer)._repr_html_()}</body></html>")
    browser.get(notebook.resolve().as_uri())
    browser.switch_to.frame(browser.find_element(By.TAG_NAME, "iframe"))
    try:
        wait_for_draw(browser, "next", "")
        assert [i for i, _ in bars(browser)] == [
            i for i, _ in library_top(model, tokenizer, PROMPT, 20)
        ]
    finally:
        browser.switch_to.default_content()
