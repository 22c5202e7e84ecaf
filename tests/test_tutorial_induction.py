"""Every command of docs/tutorials/induction-heads.md runs, in order, as a learner would type it.

The training command is shrunk (a few steps on the head of TinyShakespeare instead of the
preset's full run), so the tools run on a model without induction heads; what is checked is that
each command works end to end and writes the files the tutorial shows. The numbers of the real
run are measured and recorded in the tutorial itself.
"""

import shlex
from pathlib import Path

from gptlab.cli import main

TUTORIAL = Path(__file__).resolve().parents[1] / "docs" / "tutorials" / "induction-heads.md"


def tutorial_commands() -> list[list[str]]:
    """The argv of each `gptlab ...` line of the tutorial's ```bash blocks, in order."""
    commands, in_bash = [], False
    lines = iter(TUTORIAL.read_text(encoding="utf-8").splitlines())
    for line in lines:
        stripped = line.strip()
        if stripped.startswith("```"):
            in_bash = stripped == "```bash" and not in_bash
            continue
        if in_bash and stripped.startswith("gptlab "):
            while stripped.endswith("\\"):
                stripped = stripped[:-1] + " " + next(lines).strip()
            commands.append(shlex.split(stripped, comments=True)[1:])
    return commands


def test_the_tutorial_has_commands_for_each_step():
    verbs = [argv[:2] if argv[0] == "inspect" else argv[:1] for argv in tutorial_commands()]
    assert verbs[0] == ["train"]
    for tool in ("loss", "heads", "attention", "circuits", "composition"):
        assert ["inspect", tool] in verbs


def test_every_tutorial_command_runs(tmp_path, monkeypatch, shared_data, capsys):
    head = tmp_path / "shakespeare_head.txt"
    head.write_text((shared_data / "tinyshakespeare" / "input.txt").read_text()[:30_000])
    monkeypatch.chdir(tmp_path)
    shrink = [
        f"data.source=repeats:{head}",
        "train.max_steps=6",
        "train.eval_every=3",
        "train.eval_induction_every=3",
        "train.eval_tokens=1024",
        "train.final_eval_tokens=2048",
        "train.sample_tokens=8",
        "train.threads=1",
    ]
    for argv in tutorial_commands():
        extra = shrink if argv[0] == "train" else []
        code = main([*argv, *extra])
        assert code == 0, f"gptlab {shlex.join(argv)} failed: {capsys.readouterr().err}"
    assert (tmp_path / "runs" / "induction" / "loss.png").is_file()
