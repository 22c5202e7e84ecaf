"""The `gptlab` command: parse the arguments, then call one library function per verb.

Each verb lives in its own module in this package and provides `register(subparsers)`, which
adds its parser and sets `func` to the function that runs it. Modules import torch and other
heavy packages inside their functions, so `gptlab --help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys

from gptlab.errors import GptlabError


def build_parser() -> argparse.ArgumentParser:
    from gptlab import __version__

    parser = argparse.ArgumentParser(
        prog="gptlab",
        description="Build, train, sample from, evaluate and look inside GPT-2-style models.",
    )
    parser.add_argument("--version", action="version", version=f"gptlab {__version__}")
    subparsers = parser.add_subparsers(dest="verb", metavar="VERB")
    subparsers.required = True
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_") or info.name == "common":
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not sys.stderr.isatty():
        # A progress bar redrawn ten times a second writes thousands of lines into a log file or
        # pipe; there, redraw every 10 s (tqdm reads this variable; a value the user set wins).
        os.environ.setdefault("TQDM_MININTERVAL", "10")
    try:
        result = args.func(args)
    except GptlabError as exc:
        print(f"gptlab: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("gptlab: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`gptlab ... | head`): not an error worth a traceback. Point stdout
        # at /dev/null so Python's final flush at exit does not raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    return int(result or 0)
