"""`gptlab explore --export page.html`: the page with every view precomputed, in one file.

The exported file is the served page itself: its CSS inlined, its JavaScript modules joined into
one inline script (bundle_scripts), and window.GPTLAB_EXPORT holding, for one prompt, the
answers of every view the registry (gptlab.explore.registry) marks for export, each beside the
settings it was computed with, and the views' request descriptions (GET /api/views): the page's
api.js fills a request from those and looks for the saved answer with the same settings. It opens from disk, in a
notebook or as an attachment, with no server and no network. What needs a model at hand (another
prompt, the sampling knobs, generation, another attribution target) says so in the page.
"""

from __future__ import annotations

import dataclasses
import json
import re
from importlib import resources
from pathlib import Path

import torch
from tqdm.auto import tqdm

from gptlab.errors import GptlabError
from gptlab.explore import runs
from gptlab.explore.features import has_sae, sae_info
from gptlab.explore.registry import VIEWS, View, describe_views
from gptlab.explore.session import Explorer
from gptlab.fileio import atomic_write_text
from gptlab.html_pages import inline_script, script_json
from gptlab.sae.page import dashboard_script

MAIN_MODULE = "main.js"
# The two module forms the page's scripts use (anything else is refused by bundle_scripts):
IMPORT = re.compile(r'^import \{([^}]*)\} from "\./([\w.]+)";[ \t]*$', re.MULTILINE)
EXPORT = re.compile(r"^export ((?:async )?function\*? |const |let |class )(\w+)", re.MULTILINE)


def saved_views(explorer: Explorer, prompt: str) -> list[tuple[View, list]]:
    """Each exported view with the requests the page saves for it, all built (so checked) before
    any work: a setting the request refuses, or a page too large, fails in a moment."""
    planned = []
    for view in VIEWS:
        if view.export is not None:
            # A request without a prompt (one feature's dashboard) is the same for any prompt.
            given = {"prompt": prompt} if takes_prompt(view) else {}
            settings = view.export(explorer, prompt)
            planned.append((view, [view.request(**given, **s) for s in settings]))
    return planned


def takes_prompt(view: View) -> bool:
    return any(f.name == "prompt" for f in dataclasses.fields(view.request))


def precomputed_answers(explorer: Explorer, prompt: str, progress: bool = True) -> dict:
    """Every answer the page asks for, for one prompt: per view of the registry with export
    settings, {"shared": the fields equal in every answer (saved once), "saved": [{"settings",
    "answer"}]}; with an SAE attached, the Features tab's: the features on each token, and the
    dashboard and the ablation of every feature active on the prompt. A view the model cannot
    answer (attribution of a post-norm model) saves its one-line error, which the page shows."""
    explorer.require_model()
    planned = saved_views(explorer, prompt)
    answers = {}
    bar = tqdm(
        total=sum(len(requests) for _, requests in planned),
        desc="precomputing the page",
        unit="view",
        disable=not progress,
    )
    with explorer.lock, torch.inference_mode():
        for view, requests in planned:
            shared, saved = {}, []
            for request in requests:
                settings = view.settings(request)
                try:
                    answer = view.compute(explorer, **settings)
                except GptlabError as exc:
                    answer = {"error": str(exc)}
                shared |= {key: answer.pop(key) for key in view.shared if key in answer}
                settings.pop("prompt", None)
                saved.append({"settings": settings, "answer": answer})
                bar.update()
            answers[view.name] = {"shared": shared, "saved": saved}
    bar.close()
    return answers


def page_html(explorer: Explorer, prompt: str, progress: bool = True) -> str:
    """The self-contained page for `prompt`."""
    data = {
        "models": [explorer.describe()],
        "views": describe_views(),
        "prompt": prompt,
        "answers": {},
        "run": None,
        "sae": sae_info(explorer),
    }
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
    # The Features tab's dashboards are drawn by the SAE package's renderer, which the live
    # server sends on first use (GET /api/sae/dashboard.js); a page from disk carries it.
    dashboard = (
        f"<script>\n{inline_script(dashboard_script())}</script>\n" if has_sae(explorer) else ""
    )
    page = replace_once(
        page, '<link rel="stylesheet" href="static/style.css">', f"<style>\n{style}</style>"
    )
    page = replace_once(
        page,
        '<script type="module" src="static/js/main.js"></script>',
        f"<script>window.GPTLAB_EXPORT = {payload};</script>\n{dashboard}"
        f'<script type="module">\n{script}</script>',
    )
    return page


def replace_once(text: str, old: str, new: str) -> str:
    if text.count(old) != 1:
        raise RuntimeError(
            f"index.html no longer holds {old!r} exactly once"
        )  # a bug, not a user's
    return text.replace(old, new)


def bundle_scripts(folder) -> str:
    """The page's ES modules as one script. A page opened from disk (or in a notebook's
    sandboxed iframe) cannot load module files, so the exported page carries them inline.

    Each module becomes a function of its own, run once, in dependency order; what it exports
    is the object that function returns, kept in a module map by file name, and each of its
    `import { a, b } from "./x.js";` lines reads those names from x.js's entry. So two modules
    may declare the same top-level name (each has its own scope), and nothing is renamed. The
    modules may use only those two forms: an `import { ... } from "./file.js";` line and
    `export` before a function, const, let or class declaration (anything else is refused)."""
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
        for _, dependency in IMPORT.findall(sources[name]):
            visit(dependency, path + (name,))
        order.append(name)

    visit(MAIN_MODULE, ())
    return "\n".join(
        ["const gptlabModules = {};"] + [module_function(n, sources[n]) for n in order]
    )


def module_function(name: str, source: str) -> str:
    """One ES module as a function scope in the module map (see bundle_scripts)."""
    body = IMPORT.sub(
        lambda m: f"const {{{m.group(1)}}} = gptlabModules[{json.dumps(m.group(2))}];", source
    )
    exported = [declared for _, declared in EXPORT.findall(body)]
    body = EXPORT.sub(r"\1\2", body)
    leftover = re.search(r"^[ \t]*(?:import|export)\b.*$", body, re.MULTILINE)
    if leftover:  # a bug in the page's source, not a user's
        raise RuntimeError(
            f"{name}: the bundler reads only import {{...}} lines and export declarations, "
            f"not {leftover.group(0).strip()!r}"
        )
    return (
        f"// ---- {name}\ngptlabModules[{json.dumps(name)}] = (() => {{\n{body}\n"
        f"return {{ {', '.join(exported)} }};\n}})();"
    )


def export_page(explorer: Explorer, prompt: str, path: str | Path) -> Path:
    """Write the page for `prompt` to `path` (atomically: a kill leaves no half page)."""
    path = Path(path)
    atomic_write_text(path, page_html(explorer, prompt))
    return path
