"""The `gptlab` command: parse the arguments, then call one library function per verb.

Each verb lives in its own module (or subpackage, as `inspect/`) of this package and provides
`register(subparsers)`, which adds its parser and sets `func` to the verb's `main(args)`. Modules import torch and other
heavy packages inside their functions, so `gptlab --help` stays fast.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import pkgutil
import sys

from gptlab.errors import GptlabError

# Failures of the machine rather than of gptlab (a full disk, a read-only folder): one line that
# says what to do, whichever writer met them. Files are written atomically, so nothing half-written
# is left behind.
ENVIRONMENT_ERRNOS = {
    errno.ENOSPC: "free some disk space, or write somewhere else (--out)",
    errno.EDQUOT: "free some of your disk quota, or write somewhere else (--out)",
    errno.EROFS: "that file system is read-only; write somewhere else (--out)",
    errno.EACCES: "you may not write or read there; check its permissions, or use another path",
    errno.EPERM: "you may not write or read there; check its permissions, or use another path",
    errno.ENOTDIR: "a part of that path is a file, not a folder; use another path",
    errno.EISDIR: "that is a folder, not a file; give a file name",
    errno.EIO: "free some disk space, or write somewhere else (--out)",
}


class IntermixedParser(argparse.ArgumentParser):
    """A parser that takes options and positionals in any order.

    Plain argparse fills a `KEY=VALUE...` list when it first meets a positional, so
    `gptlab train --out d train.max_steps=3` failed with "unrecognized arguments". A verb's own
    parser (one without sub-verbs) therefore parses intermixed; argparse cannot do that for a
    parser holding sub-verbs, and needs not: those are chosen by the first word.
    """

    _intermixing = False

    def parse_known_args(self, args=None, namespace=None):
        if self._subparsers is not None or self._intermixing:
            return super().parse_known_args(args, namespace)
        self._intermixing = True  # parse_known_intermixed_args calls back into this method
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._intermixing = False


def build_parser() -> argparse.ArgumentParser:
    from gptlab import __version__

    parser = IntermixedParser(
        prog="gptlab",
        description="Build, train, sample from, evaluate and look inside GPT-2-style models.",
    )
    parser.add_argument("--version", action="version", version=f"gptlab {__version__}")
    subparsers = parser.add_subparsers(dest="verb", metavar="VERB")
    subparsers.required = True
    # iter_modules lists subpackages (inspect/) as well as modules: either may be a verb.
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_") or info.name == "common":
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        module.register(subparsers)
    return parser


def replace_closed_streams() -> None:
    """A process started with a standard stream closed (`gptlab chat <&-`, `>&-`) gets None for
    it, and the first isatty() or readline() is an AttributeError: read nothing from /dev/null
    and write there instead."""
    for name, mode in (("stdin", "r"), ("stdout", "w"), ("stderr", "w")):
        if getattr(sys, name) is None:
            setattr(sys, name, open(os.devnull, mode, encoding="utf-8"))


def main(argv: list[str] | None = None) -> int:
    replace_closed_streams()
    parser = build_parser()
    args = parser.parse_args(argv)
    if not sys.stderr.isatty():
        # A progress bar redrawn ten times a second writes thousands of lines into a log file or
        # pipe; there, redraw every 10 s (tqdm reads this variable; a value the user set wins).
        os.environ.setdefault("TQDM_MININTERVAL", "10")
    # torch's CPU allocator puts each tensor of 2 MB or more on transparent huge pages when this
    # is set. It reads it once, at its first allocation: hence here, before a verb imports torch.
    # Without it a training step's large activations are faulted in 4 KB at a time, every step:
    # prose-cpu trains 1.2x faster with it (BENCHMARKS.md, "Huge pages"). A value set outside wins.
    os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")
    threads_before = None
    try:
        if getattr(args, "threads", None) is not None:
            import torch

            from gptlab.device import use_threads

            threads_before = torch.get_num_threads()
            use_threads(args.threads)
        result = args.func(args)
        sys.stdout.flush()  # here, so a reader gone away is met below rather than at exit
    except BrokenPipeError:
        # The reader went away (`gptlab ... | head`): not an error worth a traceback. Before the
        # OSError handler, which would take it for a bug (BrokenPipeError is an OSError). Point
        # stdout at /dev/null so Python's final flush at exit does not raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except GptlabError as exc:
        print(f"gptlab: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        if exc.errno not in ENVIRONMENT_ERRNOS:
            raise  # anything else is a bug worth its traceback
        where = f" ({exc.filename})" if exc.filename else ""
        print(
            f"gptlab: error: {exc.strerror}{where}; {ENVIRONMENT_ERRNOS[exc.errno]}",
            file=sys.stderr,
        )
        return 1
    except KeyboardInterrupt:
        print("gptlab: interrupted", file=sys.stderr)
        return 130
    finally:
        if threads_before is not None:  # main() called in-process leaves torch as it found it
            import torch

            torch.set_num_threads(threads_before)
    return int(result or 0)
