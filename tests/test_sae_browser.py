"""The SAE pages in a real headless Chromium, with the network cut off: the exported feature
page from disk (with markup planted in a context, which must stay text), and the explorer's
Features tab driven like a person would (type, click a feature, read its dashboard), served and
exported."""

from __future__ import annotations

import shutil
import threading

import pytest
import torch

pytest.importorskip("fastapi")
uvicorn = pytest.importorskip("uvicorn")
pytest.importorskip("selenium")
from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from gptlab.explore.app import create_app  # noqa: E402
from gptlab.explore.export import export_page  # noqa: E402
from gptlab.explore.features import attach_sae  # noqa: E402
from gptlab.explore.server import bind  # noqa: E402
from gptlab.explore.sources import Source, load_sources  # noqa: E402
from gptlab.sae.features import scan_features  # noqa: E402
from gptlab.sae.options import load_sae_options  # noqa: E402
from gptlab.sae.page import write_page  # noqa: E402
from gptlab.sae.train import train_sae  # noqa: E402

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
if not (CHROMIUM and CHROMEDRIVER):
    pytest.skip("needs Debian's chromium and chromium-driver", allow_module_level=True)

HOSTILE = "</script><b id='pwn'>x</b><!--"


@pytest.fixture(scope="module")
def folders(prepared_shakespeare, tmp_path_factory):
    from gptlab.train import train
    from gptlab.train.config import build_run_config

    root = tmp_path_factory.mktemp("sae-browser")
    torch.set_num_threads(1)
    overrides = [
        "model.n_layer=2",
        "model.n_head=2",
        "model.n_embd=32",
        "model.block_size=32",
        "train.micro_batch_size=8",
        "train.tokens_per_step=256",
        "train.max_seconds=none",
        "train.max_steps=20",
        "train.eval_every=0",
        "train.sample_every=0",
        "train.final_eval_tokens=1024",
        f"data.prepared_dir={prepared_shakespeare}",
    ]
    train(build_run_config(overrides=overrides), root / "run", show_progress=False)
    options = load_sae_options(
        given={"model": str(root / "run"), "out": str(root / "sae")},
        overrides=["features=64", "k=4", "batch_size=256", "buffer_size=1024", "tokens=4096"],
    )
    train_sae(options, show_progress=False)
    return root


@pytest.fixture(scope="module")
def browser(folders):
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in [
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        f"--user-data-dir={folders / 'profile'}",
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
        "--window-size=1300,1000",
    ]:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


def test_the_exported_feature_page_keeps_planted_markup_as_text(browser, folders, tmp_path):
    scan = scan_features(folders / "sae", tokens=1024, device="cpu", show_progress=False)
    feature = scan.live_features()[0]
    top_token = int(scan.tokens.reshape(-1)[scan.activations(feature)[0][0]])
    scan._token_strings[top_token] = HOSTILE  # as if the data held it
    page = write_page(scan, tmp_path / "features.html", top=5, show_progress=False)
    browser.get(page.resolve().as_uri())
    WebDriverWait(browser, 30).until(lambda d: d.find_elements(By.CSS_SELECTOR, ".sae-context"))
    assert browser.find_elements(By.ID, "pwn") == []
    assert len(browser.find_elements(By.CSS_SELECTOR, ".item")) == len(scan.live_features())
    assert browser.find_element(By.CSS_SELECTOR, "#board h2").text == f"feature {feature}"
    assert "</script><b id='pwn'>" in browser.find_element(By.ID, "board").text.replace(
        "\u23ce", ""
    )
    browser.save_screenshot(str(tmp_path / "feature_page.png"))


def test_the_features_tab_lists_features_per_token_and_opens_a_dashboard(
    browser, folders, tmp_path
):
    served = load_sources([Source(str(folders / "run"))], "cpu")
    attach_sae(next(iter(served.values())), folders / "sae")
    sock = bind("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(create_app(served), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        browser.get(f"http://127.0.0.1:{sock.getsockname()[1]}/#features")
        WebDriverWait(browser, 60).until(lambda d: d.find_elements(By.CSS_SELECTOR, ".sae-chip"))
        columns = browser.find_elements(By.CSS_SELECTOR, ".sae-column-token")
        assert len(columns) == len(
            "The capital of France is"
        )  # the page's default prompt, char-level
        chip = browser.find_elements(By.CSS_SELECTOR, ".sae-chip")[0]
        feature = chip.get_attribute("data-feature")
        chip.click()
        WebDriverWait(browser, 60).until(
            lambda d: (
                "features-board"
                in (d.find_element(By.TAG_NAME, "body").get_attribute("data-drawn") or "")
            )
        )
        assert browser.find_element(By.CSS_SELECTOR, "#sae-board h2").text == f"feature {feature}"
        assert "zeroed" in browser.find_element(By.ID, "sae-ablation").text
        assert not browser.find_element(By.ID, "error").is_displayed()
        browser.save_screenshot(str(tmp_path / "features_tab.png"))
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def test_the_exported_explorer_page_opens_feature_dashboards_from_disk(browser, folders, tmp_path):
    explorer = next(iter(load_sources([Source(str(folders / "run"))], "cpu").values()))
    attach_sae(explorer, folders / "sae")
    page = export_page(explorer, "ROMEO: But soft", tmp_path / "page.html")
    browser.get(page.resolve().as_uri() + "#features")
    WebDriverWait(browser, 60).until(lambda d: d.find_elements(By.CSS_SELECTOR, ".sae-chip"))
    assert len(browser.find_elements(By.CSS_SELECTOR, ".sae-column-token")) == len(
        "ROMEO: But soft"
    )
    chip = browser.find_elements(By.CSS_SELECTOR, ".sae-chip")[-1]
    feature = chip.get_attribute("data-feature")
    chip.click()
    WebDriverWait(browser, 60).until(
        lambda d: (
            f"features-board:{feature}:"
            in (d.find_element(By.TAG_NAME, "body").get_attribute("data-drawn") or "")
        )
    )
    assert browser.find_element(By.CSS_SELECTOR, "#sae-board h2").text == f"feature {feature}"
    assert browser.find_elements(By.CSS_SELECTOR, "#sae-board .sae-context")
    assert "zeroed" in browser.find_element(By.ID, "sae-ablation").text
    assert not browser.find_element(By.ID, "error").is_displayed()
    urls = browser.execute_script(
        "return performance.getEntriesByType('resource').map((e) => e.name)"
    )
    assert all(url.startswith("file://") for url in urls), urls  # nothing fetched from a server
