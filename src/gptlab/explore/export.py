"""`gptlab explore --export page.html`: the page with every view precomputed, in one file.

The exported file is the served page itself: its CSS inlined, its JavaScript modules joined into
one inline module (bundle_scripts), and window.GPTLAB_EXPORT holding the API's answers for one
prompt under the keys the page's api.js looks them up by (answer_key). It opens from disk, in a
notebook or as an attachment, with no server and no network. What needs a model at hand (another
prompt, the sampling knobs, generation, another attribution target) says so in the page.
"""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

import torch
from tqdm.auto import tqdm

from gptlab.errors import GptlabError
from gptlab.explore import runs, views
from gptlab.explore.session import Explorer
from gptlab.fileio import atomic_write_text
from gptlab.html_pages import inline_script, script_json
from gptlab.interp.attention_html import check_page_size

NEXT_TOKEN_BARS = 20  # as the page asks (next_token.js)
ABLATION_BARS = 10  # as the page asks (ablation.js)
MAIN_MODULE = "main.js"
IMPORT = re.compile(r'^import \{[^}]*\} from "\./([\w.]+)";\s*$', re.MULTILINE)
DECLARATION = re.compile(
    r"^(?:export )?(?:async )?(?:function\*? |const |let |class )(\w+)", re.MULTILINE
)


def answer_key(route: str, settings: dict) -> str:
    """The key api.js's answerKey() builds from a request (without model and prompt)."""
    parts = "&".join(
        f"{key}={'' if value is None else value}" for key, value in sorted(settings.items())
    )
    return f"{route}?{parts}"


def precomputed_answers(explorer: Explorer, prompt: str, progress: bool = True) -> dict:
    """Every answer the page asks for, for one prompt: next token, attention for each head,
    the logit lens, the top prediction's attribution, and zero and mean ablation of every head
    and MLP."""
    explorer.require_model()
    config = explorer.model.config
    # The page holds every head's full pattern: the cap of inspect attention's page, before work.
    check_page_size(
        config.n_layer, config.n_head, len(explorer.encode(prompt)), causal=False, choose=""
    )
    answers = {}
    with explorer.lock, torch.inference_mode():
        answers[answer_key("next_token", {"k": NEXT_TOKEN_BARS})] = views.next_token(
            explorer, prompt, k=NEXT_TOKEN_BARS
        )
        first = views.attention(explorer, prompt, 0, 0)
        # The thumbnails are the same for every head: saved once, merged in by api.js.
        answers["attention?common"] = {
            key: first[key] for key in ("tokens", "thumbnail_size", "thumbnails")
        }
        patterns = views.prompt_patterns(explorer, explorer.prompt_pass(prompt))
        for layer in range(config.n_layer):
            for head in range(config.n_head):
                answers[answer_key("attention", {"layer": layer, "head": head})] = {
                    "layer": layer,
                    "head": head,
                    "pattern": [[round(float(v), 4) for v in row] for row in patterns[layer, head]],
                }
        answers[answer_key("logit_lens", {})] = views.logit_lens_view(explorer, prompt)
        key = answer_key("attribution", {"target": None, "contrast": None})
        try:
            answers[key] = views.attribution(explorer, prompt)
        except GptlabError as exc:  # a model the split is not exact for: the page says why
            answers[key] = {"error": str(exc)}
        components = [
            ("head", layer, head)
            for layer in range(config.n_layer)
            for head in range(config.n_head)
        ]
        components += [("mlp", layer, None) for layer in range(config.n_layer)]
        bar = tqdm(
            total=2 * len(components),
            desc="ablating for the page",
            unit="pass",
            disable=not progress,
        )
        for mode in ("zero", "mean"):
            for component, layer, head in components:
                settings = {"component": component, "layer": layer, "head": head, "mode": mode}
                answer = views.ablation(
                    explorer, prompt, component, layer, head, mode, None, ABLATION_BARS
                )
                answers[
                    answer_key("ablation", {**settings, "target": None, "k": ABLATION_BARS})
                ] = answer
                bar.update()
        bar.close()
    return answers


def page_html(explorer: Explorer, prompt: str, progress: bool = True) -> str:
    """The self-contained page for `prompt`."""
    data = {"models": [explorer.describe()], "prompt": prompt, "answers": {}, "run": None}
    if explorer.model is not None:
        data["answers"] = precomputed_answers(explorer, prompt, progress)
    if explorer.run_dir is not None:
        data["run"] = runs.run_view(explorer)
    static = resources.files("gptlab.explore") / "static"
    page = (static / "index.html").read_text(encoding="utf-8")
    style = (static / "style.css").read_text(encoding="utf-8")
    # A prompt, model name or sample holding "</script>" or "<!--<script" must not end or
    # swallow the element (gptlab.html_pages).
    payload = script_json(data)
    script = inline_script(bundle_scripts(static / "js"))
    page = replace_once(
        page, '<link rel="stylesheet" href="static/style.css">', f"<style>\n{style}</style>"
    )
    page = replace_once(
        page,
        '<script type="module" src="static/js/main.js"></script>',
        f'<script>window.GPTLAB_EXPORT = {payload};</script>\n<script type="module">\n{script}</script>',
    )
    return page


def replace_once(text: str, old: str, new: str) -> str:
    if text.count(old) != 1:
        raise RuntimeError(
            f"index.html no longer holds {old!r} exactly once"
        )  # a bug, not a user's
    return text.replace(old, new)


def bundle_scripts(folder) -> str:
    """The page's ES modules as one script: each module after the ones it imports, its import
    lines dropped and `export` keywords removed. A page opened from disk cannot load module
    files, so this is how the exported page gets them; the modules' top-level names must
    therefore be unique across files (checked here)."""
    sources = {
        entry.name: entry.read_text(encoding="utf-8")
        for entry in folder.iterdir()
        if entry.name.endswith(".js")
    }
    order: list[str] = []

    def visit(name: str, path: tuple[str, ...]) -> None:
        if name in order:
            return
        if name in path:
            raise RuntimeError(
                f"the page's modules import each other in a cycle: {' -> '.join(path + (name,))}"
            )
        for dependency in IMPORT.findall(sources[name]):
            visit(dependency, path + (name,))
        order.append(name)

    visit(MAIN_MODULE, ())
    seen: dict[str, str] = {}
    parts = []
    for name in order:
        body = IMPORT.sub("", sources[name])
        for declared in DECLARATION.findall(body):
            if declared in seen:
                raise RuntimeError(f"{declared} is declared in both {seen[declared]} and {name}")
            seen[declared] = name
        parts.append(f"// ---- {name}\n" + re.sub(r"^export ", "", body, flags=re.MULTILINE))
    return "\n".join(parts)


def export_page(explorer: Explorer, prompt: str, path: str | Path) -> Path:
    """Write the page for `prompt` to `path` (atomically: a kill leaves no half page)."""
    path = Path(path)
    atomic_write_text(path, page_html(explorer, prompt))
    return path
