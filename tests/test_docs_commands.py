"""Every `gptlab ...` command shown in the docs parses, and its config overrides are real.

The docs are the first thing a learner copies from, so a renamed flag or config key must break a
test, not a reader. This file extracts each command from the fenced code blocks of README.md,
BENCHMARKS.md and docs/*.md and checks it the way `gptlab` itself would, without running it:

- the argv goes through the real CLI parser (`gptlab.cli.build_parser`), so an unknown verb,
  flag or choice fails;
- `gptlab train` and `gptlab experiment` commands also build their run config (preset, TOML
  file, key=value overrides, every --vary combination), so an unknown key, a mistyped value or
  an invalid combination fails; `gptlab finetune classify|instruct` resolve their options;
- `--preset NAME` of the other verbs must name a model preset;
- a command shown with its error (`$ gptlab ...` followed by a `gptlab: error: ...` line) must
  fail with exactly that message when the error comes from these checks.

Files named in commands do not have to exist: a missing --config/--base file is left out (the
overrides are then checked against the default preset, for keys and types only).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest

from gptlab.cli import build_parser
from gptlab.cli.experiment import budget_overrides
from gptlab.cli.finetune import NOT_OPTIONS
from gptlab.errors import GptlabError
from gptlab.experiment import parse_variation, plan_runs
from gptlab.finetune.options import ClassifyOptions, InstructOptions, load_options
from gptlab.model.config import model_preset
from gptlab.train.config import build_run_config

ROOT = Path(__file__).resolve().parent.parent
DOC_FILES = [ROOT / "README.md", ROOT / "BENCHMARKS.md", *sorted((ROOT / "docs").glob("**/*.md"))]

# `gptlab ...`, `$ gptlab ...`, `python -m gptlab ...` and `torchrun ... -m gptlab ...`
COMMAND = re.compile(r"^(?:\$ )?(?:(?:python|torchrun)\b.*?-m )?gptlab (?P<rest>.*)$")


@dataclass(frozen=True)
class DocCommand:
    file: str
    line: int
    text: str  # the command after `gptlab `, continuations joined
    error: str | None  # the `gptlab: error: ...` message shown right after it, if any

    @property
    def id(self) -> str:
        return f"{self.file}:{self.line}"


def fenced_blocks(text: str):
    """(first line number, lines) of each ``` fenced block."""
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        if lines[i].lstrip().startswith("```"):
            start = i + 1
            j = start
            while j < len(lines) and not lines[j].lstrip().startswith("```"):
                j += 1
            yield start + 1, lines[start:j]
            i = j + 1
        else:
            i += 1


def commands_in(path: Path) -> list[DocCommand]:
    found = []
    name = str(path.relative_to(ROOT))
    for first_line, lines in fenced_blocks(path.read_text(encoding="utf-8")):
        i = 0
        while i < len(lines):
            line_no, line = first_line + i, lines[i].strip()
            # `pip install -e ".[dev]" && gptlab train`: the command after the last &&
            match = COMMAND.match(line.rpartition("&& ")[2] if "&& gptlab " in line else line)
            i += 1
            if match is None:
                continue
            rest = match.group("rest")
            while rest.endswith("\\") and i < len(lines):  # join backslash continuations
                rest = rest[:-1] + " " + lines[i].strip()
                i += 1
            words = rest.split()
            # Output, not a command: `gptlab train: 0.81M parameters ...`, `gptlab: error: ...`
            if not words or words[0].endswith(":"):
                continue
            error = None
            if i < len(lines) and lines[i].strip().startswith("gptlab: error: "):
                error = lines[i].strip().removeprefix("gptlab: error: ")
            found.append(DocCommand(name, line_no, rest, error))
    return found


COMMANDS = [command for path in DOC_FILES for command in commands_in(path)]


SHELL_OPERATORS = set("();<>|&")


def split_like_a_shell(text: str) -> list[str]:
    """The argv a shell would pass: quotes removed, `# comment` dropped, cut at `>`, `|`, `&&`."""
    lexer = shlex.shlex(text, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    argv = []
    for word in lexer:
        if set(word) <= SHELL_OPERATORS:
            break
        argv.append(word)
    return argv


def parse(argv: list[str]) -> argparse.Namespace:
    """The CLI's own parsing; argparse's exit becomes a test failure with its message."""
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
            return build_parser().parse_args(argv)
    except SystemExit as exc:
        if exc.code == 0:  # --help / --version
            return argparse.Namespace(verb=None)
        pytest.fail(f"gptlab {shlex.join(argv)}\n{stderr.getvalue().strip()}")


def existing(path: str | None) -> str | None:
    """A config file the command names, if it exists here (relative to the repository)."""
    if path is None:
        return None
    for candidate in (Path(path), ROOT / path):
        if candidate.is_file():
            return str(candidate)
    return None


def check_config(args: argparse.Namespace, tmp_path: Path) -> None:
    """Build the run config(s) the command would train with (raises GptlabError when invalid)."""
    if args.verb == "train":
        if args.list_presets:
            return
        config_file = existing(args.config)
        named_but_missing = args.config is not None and config_file is None
        build_run_config(
            preset=args.preset,
            config_file=config_file,
            overrides=args.overrides,
            validate=not named_but_missing and not args.resume,
        )
    elif args.verb == "experiment":
        config_file = existing(args.base)
        plan_runs(
            [parse_variation(text) for text in args.vary],
            seeds=args.seeds,
            out=tmp_path / "experiment",
            preset=args.preset,
            config_file=config_file,
            overrides=args.overrides,
            budget=budget_overrides(args.max_steps, args.max_seconds),
        )
    elif args.verb == "finetune" and args.finetune_verb in FINETUNE_OPTIONS:
        given = {k: v for k, v in vars(args).items() if k not in NOT_OPTIONS}
        load_options(
            FINETUNE_OPTIONS[args.finetune_verb],
            existing(args.config),
            given,
            args.overrides,
            validate=False,  # files named in the docs need not exist here
        )
    elif getattr(args, "preset", None):
        model_preset(args.preset)


FINETUNE_OPTIONS = {"classify": ClassifyOptions, "instruct": InstructOptions}


def test_the_docs_show_enough_commands():
    # A regex that stops matching would otherwise let every check below pass on nothing.
    assert len(COMMANDS) >= 100, f"only {len(COMMANDS)} gptlab commands found in the docs"
    per_file = {command.file for command in COMMANDS}
    assert "README.md" in per_file
    assert len(per_file) >= 10, sorted(per_file)
    verbs = {command.text.split()[0] for command in COMMANDS}
    for verb in (
        "prepare",
        "tokenizer",
        "train",
        "sample",
        "eval",
        "inspect",
        "finetune",
        "params",
        "export",
        "bench",
        "experiment",
        "plot",
        "classify",
        "chat",
    ):
        assert verb in verbs, f"no doc shows `gptlab {verb}`"
    assert any(command.error for command in COMMANDS)  # the error examples are recognised


@pytest.mark.parametrize("command", COMMANDS, ids=[c.id for c in COMMANDS])
def test_doc_command_parses(command: DocCommand, tmp_path: Path):
    try:
        argv = split_like_a_shell(command.text)
    except ValueError as exc:
        pytest.fail(f"{command.id}: cannot split `gptlab {command.text}` like a shell ({exc})")
    args = parse(argv)
    if args.verb is None:
        return
    try:
        check_config(args, tmp_path)
    except GptlabError as exc:
        if command.error is None:
            pytest.fail(f"{command.id}: gptlab {command.text}\ngptlab: error: {exc}")
        assert str(exc) == command.error, f"{command.id}: the doc shows another error message"


def readme_command_under(heading: str) -> str:
    """The first command of the first bash block after `heading` in the README, without comment."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split(f"\n{heading}\n", 1)[1]
    block = section.split("```bash\n", 1)[1].split("```", 1)[0]
    return block.splitlines()[0].split("  #", 1)[0].strip()


def test_ci_runs_the_readmes_test_command_word_for_word():
    """CI installs exactly what a user's copy of the README's test command installs, so a test that
    needs a package the README does not install fails in CI too (issue 27: they had drifted)."""
    command = readme_command_under("## Tests")
    assert command == 'pip install -e ".[dev]" && pytest'
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert command in ci_lines
    # Nothing else is pip-installed besides torch's CPU build, which the README also advises.
    installs = [line for line in ci_lines if "pip install" in line and not line.startswith("#")]
    assert installs == ["python -m pip install --quiet torch==2.13.0", command]
