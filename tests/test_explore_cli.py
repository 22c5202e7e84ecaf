"""`gptlab explore` on the command line: one-line errors, the exported page, show() for notebooks."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import sys

import pytest
from explore_testing import PROMPT, exported_data, model_folder, run_folder, tiny_model

from gptlab.cli import main
from gptlab.explore.export import bundle_scripts, page_html
from gptlab.explore.session import Explorer
from gptlab.tokenizers.base import GPT2Tokenizer


def explore(capsys, *args) -> tuple[int, str, str]:
    code = main(["explore", "--device", "cpu", *args])
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(err: str, fragment: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gptlab: error: ") and fragment in lines[0], err


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return model_folder(tmp_path_factory.mktemp("explore-cli") / "model")


def test_a_missing_folder_is_one_line(capsys, tmp_path):
    code, _, err = explore(capsys, str(tmp_path / "nowhere"), "--port", "0")
    assert code == 1
    one_line_error(err, "does not exist")


def test_a_broken_checkpoint_is_one_line(capsys, tmp_path):
    broken = model_folder(tmp_path / "broken")
    (broken / "model.safetensors").write_bytes(b"\x00" * 100)
    code, _, err = explore(capsys, str(broken), "--port", "0")
    assert code == 1
    one_line_error(err, "could not be read as safetensors")


def test_a_port_in_use_is_one_line(capsys, folder):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, _, err = explore(capsys, str(folder), "--port", str(port))
    assert code == 1
    one_line_error(err, f"port {port} is in use")


@pytest.mark.parametrize(
    "args, message",
    [
        (["--port", "70000"], "--port must be 0 to 65535"),
        (["--prompt", "hi"], "--prompt goes with --export"),
        (["--export", "page.html"], "--export needs --prompt"),
    ],
)
def test_bad_options_are_one_line(capsys, folder, args, message):
    code, _, err = explore(capsys, str(folder), *args)
    assert code == 1
    one_line_error(err, message)


def test_no_source_is_one_line(capsys):
    code, _, err = explore(capsys, "--port", "0")
    assert code == 1
    one_line_error(err, "name at least one model folder")


def test_the_missing_extra_is_named(capsys, folder, monkeypatch):
    monkeypatch.setitem(sys.modules, "fastapi", None)  # import fastapi now raises ImportError
    code, _, err = explore(capsys, str(folder), "--port", "0")
    assert code == 1
    one_line_error(err, "pip install 'gptlab[explore]'")


def test_serving_prints_the_address_and_warns_for_0000(capsys, folder, monkeypatch):
    uvicorn = pytest.importorskip("uvicorn")
    served = {}
    monkeypatch.setattr(
        uvicorn.Server, "run", lambda self, sockets: served.update(port=sockets[0].getsockname()[1])
    )
    code, out, err = explore(capsys, str(folder), "--port", "0")
    assert code == 0 and f"http://127.0.0.1:{served['port']}" in out and "warning" not in err
    code, out, err = explore(capsys, str(folder), "--host", "0.0.0.0", "--port", "0")
    assert code == 0 and "gptlab: warning: --host 0.0.0.0 lets anyone" in err


def test_export_writes_one_self_contained_page(capsys, tmp_path):
    run = run_folder(tmp_path / "run")
    code, out, _ = explore(
        capsys, str(run), "--export", str(tmp_path / "page.html"), "--prompt", PROMPT
    )
    assert code == 0 and "wrote" in out
    page = (tmp_path / "page.html").read_text(encoding="utf-8")
    # Nothing is fetched: no src= or stylesheet link, no URL but the API page's relative link.
    assert not re.search(r"""\ssrc=["']""", page) and 'rel="stylesheet"' not in page
    assert "import {" not in page and "http://" not in page.replace(
        "http://www.w3.org/2000/svg", ""
    )
    data = exported_data(page)
    assert data["prompt"] == PROMPT and data["run"]["total"] == 20
    answers = data["answers"]
    # Every view the page asks for, beside the settings the page's api.js matches.
    assert [s["settings"]["k"] for s in answers["next_token"]["saved"]] == [20]  # the default
    heads = [(s["settings"]["layer"], s["settings"]["head"]) for s in answers["attention"]["saved"]]
    assert heads == [(layer, head) for layer in range(2) for head in range(3)]
    assert set(answers["attention"]["shared"]) == {"tokens", "thumbnail_size", "thumbnails"}
    assert [s["settings"]["end"] for s in answers["logit_lens"]["saved"]] == [None]  # 5 tokens
    assert (
        answers["attribution"]["saved"][0]["settings"] | {"target": None, "contrast": None}
        == (answers["attribution"]["saved"][0]["settings"])
    )
    ablations = [s["settings"] for s in answers["ablation"]["saved"]]
    assert len(ablations) == 2 * (2 * 3 + 2)
    assert {
        "component": "mlp",
        "layer": 1,
        "head": None,
        "mode": "mean",
        "target": None,
        "k": 10,
    } in ablations
    assert data["views"]["ablation"]["fields"]["mode"] == {
        "default": "zero",
        "choices": ["zero", "mean"],
    }


def test_export_refuses_a_folder_or_a_missing_folder(capsys, folder, tmp_path):
    code, _, err = explore(capsys, str(folder), "--export", str(tmp_path), "--prompt", PROMPT)
    assert code == 1
    one_line_error(err, "is a folder; give a file name")
    code, _, err = explore(
        capsys, str(folder), "--export", str(tmp_path / "no" / "p.html"), "--prompt", PROMPT
    )
    assert code == 1
    one_line_error(err, "does not exist; create it first")
    assert not (tmp_path / "no").exists()
    # An existing page is kept unless --overwrite (the check comes before the model loads).
    page = tmp_path / "page.html"
    page.write_text("mine")
    argv = [str(folder), "--export", str(page), "--prompt", PROMPT]
    code, _, err = explore(capsys, *argv)
    assert code == 1 and page.read_text() == "mine"
    one_line_error(err, "exists; pass --overwrite to replace it")
    assert explore(capsys, *argv, "--overwrite")[0] == 0 and page.read_text() != "mine"


def test_the_bundle_holds_every_module_once_in_dependency_order(tmp_path):
    from importlib import resources

    folder = resources.files("gptlab.explore") / "static" / "js"
    bundle = bundle_scripts(folder)
    modules = re.findall(r"^// ---- (\S+)$", bundle, re.MULTILINE)
    assert modules[-1] == "main.js" and modules.index("draw.js") < modules.index("attention.js")
    assert modules.index("api.js") < modules.index("next_token.js")
    on_disk = {entry.name for entry in folder.iterdir() if entry.name.endswith(".js")}
    assert len(modules) == len(set(modules)) and set(modules) == on_disk  # each tab's module too
    assert not re.search(r"^export ", bundle, re.MULTILINE) and not re.search(
        r"^import ", bundle, re.MULTILINE
    )


def test_modules_may_share_top_level_names(tmp_path):
    """Each module runs in its own function scope: two may declare the same name."""
    node = shutil.which("node")
    (tmp_path / "a.js").write_text("const top = 1;\nexport function a() { return top; }\n")
    (tmp_path / "b.js").write_text("const top = 2;\nexport const b = () => top;\n")
    (tmp_path / "main.js").write_text(
        'import { a } from "./a.js";\nimport { b } from "./b.js";\nconst top = 3;\n'
        "console.log(a(), b(), top);\n"
    )
    bundle = bundle_scripts(tmp_path)
    if node is None:
        pytest.skip("needs node to run the bundle")
    out = subprocess.run([node, "-e", bundle], capture_output=True, text=True, check=True).stdout
    assert out == "1 2 3\n"


def test_the_bundler_refuses_a_module_form_it_does_not_read(tmp_path):
    (tmp_path / "main.js").write_text("export default function start() {}\n")
    with pytest.raises(RuntimeError, match="export default"):
        bundle_scripts(tmp_path)


def test_show_renders_the_page_inline():
    from gptlab.explore import show

    model = tiny_model().train()
    shown = show(model, PROMPT)
    assert model.training and all(p.requires_grad for p in model.parameters())  # left as it was
    html = shown._repr_html_()
    assert html.startswith('<iframe srcdoc="') and "GPTLAB_EXPORT" in html and "&lt;script" in html
    page = page_html(Explorer("model", tiny_model(), GPT2Tokenizer()), PROMPT, progress=False)
    assert exported_data(page)["answers"].keys() == exported_data(shown.page)["answers"].keys()


def test_two_folders_of_the_same_name_get_two_names(tmp_path):
    from gptlab.explore.sources import Source, load_sources

    first, second = model_folder(tmp_path / "a" / "model"), model_folder(tmp_path / "b" / "model")
    served = load_sources([Source(str(first)), Source(str(second))], "cpu")
    assert list(served) == ["model", "model-2"]
