"""`gptlab explore` speed: first paint, each view's API answer against one plain forward pass, and
streamed generation against `gptlab sample`'s loop, for GPT-2 124M (random weights) and a
64-token prompt. The server is the real one (uvicorn on a loopback port) and requests go over
HTTP, so the times include JSON encoding and the network stack.

    python benchmarks/bench_explore.py            # needs gptlab[explore]; chromium for first paint

Numbers per view: "new prompt" is the first request after the prompt changed (the cached forward
pass with every hook, then the view); "same prompt" is the median of later requests for it (the
cached pass serves them). Ratios are to the median plain forward pass (model(idx), no hooks),
timed interleaved with that view's requests (a shared machine's speed drifts).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import threading
import time

import httpx
import torch
import uvicorn

from gptlab.explore.app import create_app
from gptlab.explore.server import bind
from gptlab.explore.session import Explorer
from gptlab.inference.generate import GenerationConfig, generate_text
from gptlab.model import GPT
from gptlab.model.config import model_preset
from gptlab.tokenizers.base import GPT2Tokenizer

TEXT = (
    "The history of the city begins with a small settlement on the river, where traders met to "
    "exchange salt, wool and grain. Over the centuries the market grew into a town, the town into "
    "a city, and the city into the capital of a kingdom whose kings built walls, bridges and a "
    "cathedral that still stands. Today its old streets are full of students, and its markets sell "
    "the same salt and wool as they did a thousand years ago."
)
VIEWS = [
    ("next_token", {"k": 20}),
    ("attention", {"layer": 5, "head": 3}),
    ("logit_lens", {}),
    ("attribution", {}),
    ("ablation", {"layer": 5, "head": 3, "mode": "mean"}),
]


def median_seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def start_server(explorer: Explorer) -> tuple[str, uvicorn.Server]:
    sock = bind("127.0.0.1", 0)
    server = uvicorn.Server(
        uvicorn.Config(create_app({explorer.name: explorer}), log_level="warning")
    )
    threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True).start()
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    for _ in range(100):
        try:
            httpx.get(url + "/api/models")
            break
        except httpx.HTTPError:
            time.sleep(0.05)
    return url, server


def first_paint(url: str) -> tuple[float, float] | None:
    """(first contentful paint, first view drawn) in seconds after navigation, in headless Chromium."""
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver):
        return None
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    profile = tempfile.mkdtemp(prefix="bench-explore-")
    for flag in [
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={profile}",
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    ]:
        options.add_argument(flag)
    browser = webdriver.Chrome(service=Service(driver), options=options)
    try:
        paints, drawn = [], []
        for _ in range(3):
            browser.get("about:blank")
            browser.get(url + "/")
            WebDriverWait(browser, 60).until(
                lambda d: d.execute_script("return document.body.dataset.drawn")
            )
            paints.append(
                browser.execute_script(
                    "return performance.getEntriesByName('first-contentful-paint')[0].startTime"
                )
                / 1000
            )
            drawn.append(
                browser.execute_script(
                    "return Number(document.body.dataset.drawn.split(':')[1]) - performance.timeOrigin"
                )
                / 1000
            )
        return statistics.median(paints), statistics.median(drawn)
    finally:
        browser.quit()
        shutil.rmtree(profile, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--new-tokens", type=int, default=48)
    args = parser.parse_args()
    torch.manual_seed(0)
    model = GPT(model_preset("gpt2")).eval().requires_grad_(False)
    tokenizer = GPT2Tokenizer()
    ids = tokenizer.encode(TEXT)[:64]
    prompt = tokenizer.decode(ids)
    assert tokenizer.encode(prompt) == ids and len(ids) == 64
    idx = torch.tensor([ids])
    print(
        f"GPT-2 124M (random weights), {len(ids)}-token prompt, torch threads {torch.get_num_threads()}"
    )

    with torch.inference_mode():
        model(idx)  # warm-up
        forward = median_seconds(lambda: model(idx), args.repeats)
    print(f"plain forward pass: {1000 * forward:.0f} ms")

    explorer = Explorer("gpt2", model, tokenizer)
    url, server = start_server(explorer)
    client = httpx.Client(base_url=url, timeout=120)
    prompts = [prompt, tokenizer.decode(tokenizer.encode(TEXT)[1:65])]

    def ask(route, body, text):
        response = client.post(f"/api/{route}", json={"prompt": text, **body})
        response.raise_for_status()
        return response

    ask("next_token", {}, prompts[1])  # warm-up: first request of the server

    def plain_forward() -> float:
        with torch.inference_mode():
            start = time.perf_counter()
            model(idx)
            return time.perf_counter() - start

    # On a shared machine the speed drifts from minute to minute: each view's requests are
    # interleaved with plain forward passes, and its ratio is to the forwards timed beside it.
    print(
        f"{'view':12} {'new prompt':>12} {'ratio':>7} {'same prompt':>12} {'ratio':>7} {'forward':>9}"
    )
    for route, body in VIEWS:
        cold, warm, forwards = [], [], []
        for _ in range(args.repeats):
            for text in prompts:  # each request comes after the other prompt: no cached pass
                forwards.append(plain_forward())
                start = time.perf_counter()
                ask(route, body, text)
                cold.append(time.perf_counter() - start)
            start = time.perf_counter()
            ask(route, body, prompts[1])  # the prompt just asked: its cached pass serves it
            warm.append(time.perf_counter() - start)
        cold_s, warm_s, forward_s = map(statistics.median, (cold, warm, forwards))
        print(
            f"{route:12} {1000 * cold_s:9.0f} ms {cold_s / forward_s:6.2f}x {1000 * warm_s:9.0f} ms "
            f"{warm_s / forward_s:6.2f}x {1000 * forward_s:6.0f} ms"
        )

    # Generation: `gptlab sample`'s call (generate_text, greedy, streaming to a callback) against
    # the explorer's stream over HTTP, the same number of new tokens.
    config = GenerationConfig(max_new_tokens=args.new_tokens, temperature=0, stop_at_eot=False)
    generate_text(model, tokenizer, prompt, config, on_text=lambda *_: None)  # warm-up
    sample_s = median_seconds(
        lambda: generate_text(model, tokenizer, prompt, config, on_text=lambda *_: None), 3
    )

    def streamed() -> int:
        body = {"prompt": prompt, "temperature": 0, "max_new_tokens": args.new_tokens}
        with client.stream("POST", "/api/generate", json=body) as response:
            return sum(
                json.loads(line)["type"] == "token" for line in response.iter_lines() if line
            )

    stream_s = median_seconds(streamed, 3)
    sample_rate, stream_rate = args.new_tokens / sample_s, args.new_tokens / stream_s
    print(
        f"generation: gptlab sample loop {sample_rate:.1f} tokens/s, explorer stream {stream_rate:.1f} tokens/s "
        f"({stream_rate / sample_rate:.2f}x)"
    )

    paint = first_paint(url)
    if paint is None:
        print("first paint: skipped (no chromium / chromedriver)")
    else:
        print(
            f"first paint (headless Chromium, localhost): first contentful paint {1000 * paint[0]:.0f} ms, "
            f"first view drawn {1000 * paint[1]:.0f} ms"
        )
    server.should_exit = True


if __name__ == "__main__":
    main()
