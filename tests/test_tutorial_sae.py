"""Every command of docs/tutorials/sae.md runs, in order, as a learner would type it.

The budgets are shrunk (a few training steps on the head of TinyShakespeare, a 128-wide SAE on
a few thousand activations, small scans), so the features are not the tutorial's; what is
checked is that each command works end to end and writes what the tutorial shows. `gptlab
explore` without `--export` serves until stopped, so it is only parsed here
(tests/test_sae_browser.py drives the Features tab in a browser). The prose model's BPE is
trained on the same head, with 512 tokens instead of 8,192. The tutorial's numbers are from the real run, recorded in it.
"""

import shlex
from pathlib import Path

from gptlab.cli import build_parser, main

TUTORIAL = Path(__file__).resolve().parents[1] / "docs" / "tutorials" / "sae.md"

SHRINK = {
    "train": [
        "train.max_steps=5",
        "train.max_seconds=none",
        "train.eval_every=0",
        "train.final_eval_tokens=1024",
        "train.sample_every=0",
        "train.threads=1",
    ],
    ("sae", "train"): [
        "features=128",
        "tokens=4096",
        "batch_size=512",
        "buffer_size=2048",
        "model_batch_size=4",
        "max_seconds=none",
        "--threads",
        "1",
    ],
    ("sae", "eval"): ["--tokens", "1024"],
    ("sae", "features"): ["--tokens", "2048"],
    "sample": ["--max-new-tokens", "20"],
}


def tutorial_commands() -> list[list[str]]:
    """The argv of each `gptlab ...` line of the tutorial's ```bash blocks, in order."""
    commands, in_bash = [], False
    for line in TUTORIAL.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if stripped.startswith("```"):
            in_bash = stripped == "```bash" and not in_bash
            continue
        if in_bash and stripped.startswith("gptlab "):
            commands.append(shlex.split(stripped, comments=True)[1:])
    return commands


def test_the_tutorial_covers_every_step():
    verbs = [argv[:2] if argv[0] == "sae" else argv[:1] for argv in tutorial_commands()]
    assert verbs[0] == ["train"]
    for step in (["sae", "train"], ["sae", "eval"], ["sae", "features"], ["explore"], ["sample"]):
        assert step in verbs
    assert any("--steer" in argv for argv in tutorial_commands())


def test_every_tutorial_command_runs(tmp_path, monkeypatch, shared_data, capsys):
    head = tmp_path / "shakespeare_head.txt"
    head.write_text((shared_data / "tinyshakespeare" / "input.txt").read_text()[:40_000])
    monkeypatch.chdir(tmp_path)
    for argv in tutorial_commands():
        if argv[0] == "explore" and "--export" not in argv:  # serving: parsed only
            build_parser().parse_args(argv)
            continue
        extra = SHRINK.get(argv[0]) or SHRINK.get(tuple(argv[:2]), [])
        if argv[0] == "train":
            extra = [*extra, f"data.source={head}"]
            if "--preset" in argv:  # the prose model's own BPE, trained on the head instead
                extra.append("data.tokenizer=bpe:512")
        code = main([*argv, *extra])
        assert code == 0, f"gptlab {shlex.join(argv)} failed: {capsys.readouterr().err}"
    assert (tmp_path / "runs" / "sae-char" / "feature-density.png").is_file()
    assert (tmp_path / "runs" / "sae-char" / "features.html").is_file()
    assert (tmp_path / "runs" / "sae-char-saelens" / "cfg.json").is_file()
    assert (tmp_path / "runs" / "sae-prose" / "features.html").is_file()
    assert "window.GPTLAB_EXPORT" in (tmp_path / "runs" / "prose-features.html").read_text()
