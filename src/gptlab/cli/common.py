"""Arguments and helpers shared by several verbs."""

from __future__ import annotations

import argparse
from pathlib import Path

from gptlab.errors import GptlabError

SEED_LIMIT = 2**63  # generation checks this too; torch takes 64-bit seeds, NumPy its own modulo


def seed_arg(text: str) -> int:
    """The argparse type of every --seed: a whole number in [0, 2**63), refused while parsing
    (a seed past 2**64 reached torch.manual_seed and failed there with a traceback)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a seed is a whole number, got {text!r}") from None
    if not 0 <= value < SEED_LIMIT:
        raise argparse.ArgumentTypeError(f"a seed must be in [0, 2**63), got {value}")
    return value


def add_model_source_args(parser: argparse.ArgumentParser, presets: bool = True) -> None:
    """--checkpoint DIR | --hf DIR_OR_NAME | --preset NAME: where the model comes from."""
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument(
        "--checkpoint",
        metavar="DIR",
        help="a gptlab model, fine-tuned or LoRA folder, or a training run folder (its best "
        "checkpoint; RUN@last or RUN@STEP for another)",
    )
    group.add_argument(
        "--hf",
        metavar="DIR_OR_NAME",
        help="Hugging Face GPT-2 weights: a local folder or a hub name",
    )
    if presets:
        group.add_argument(
            "--preset",
            metavar="NAME",
            help="a freshly initialised model of a preset shape (random weights)",
        )
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N, mps or auto (default)")
    add_threads_arg(parser)


# Here, not in gptlab.device: building the parser must not import torch (`gptlab --help` stays fast).
THREADS_HELP = (
    "CPU threads for torch: auto (default: the cores free of other work), a number, "
    "or none (torch's own default)"
)


def add_threads_arg(parser: argparse.ArgumentParser, default: str | None = "auto") -> None:
    """--threads auto|none|N; `gptlab.cli.main` applies it before the verb runs.

    default None: the verb passes the setting on itself (train: to train.threads).
    """
    parser.add_argument("--threads", default=default, metavar="auto|none|N", help=THREADS_HELP)


def run_overrides(args: argparse.Namespace) -> list[str]:
    """The KEY=VALUE overrides of train/experiment, with --threads N as train.threads=N."""
    threads = [] if args.threads is None else [f"train.threads={args.threads}"]
    return [*args.overrides, *threads]


def load_model_from_args(args: argparse.Namespace):
    """(model, tokenizer) from --checkpoint, --hf or --preset, on the chosen device, in eval mode."""
    from gptlab.checkpoints.open import open_model
    from gptlab.device import resolve_device

    if args.checkpoint:
        spec = args.checkpoint
    elif args.hf:
        spec = f"hf:{args.hf}"
    else:
        spec = f"preset:{args.preset}"
    model, tokenizer = open_model(spec, resolve_device(args.device))
    return model.eval(), tokenizer


def check_output_file(path: str, overwrite: bool, flag: str, example: str) -> Path:
    """The file an option names for output, refused before any work if it is a folder or exists
    (unless --overwrite): a long evaluation must not end in an error, or replace a file silently."""
    out = Path(path)
    if out.is_dir():
        raise GptlabError(f"{flag} {out} is a folder; give a file name such as {out / example}")
    if out.exists() and not overwrite:
        raise GptlabError(f"{flag} {out} exists; pass --overwrite to replace it")
    if not out.parent.is_dir():
        raise GptlabError(f"{flag} {out}: the folder {out.parent} does not exist; create it first")
    return out


def refuse_out_over_source(out: str | Path | None, source: str, flag: str = "--out") -> None:
    """Refuse an output that is, lies inside or holds the local files a data SOURCE names (a
    path, a folder or a glob; names such as tinyshakespeare are not local)."""
    import glob

    from gptlab.fileio import refuse_overlap

    if out is None:
        return
    paths = [source] if Path(source).exists() else glob.glob(source, recursive=True)
    for path in paths:
        refuse_overlap(out, {"SOURCE": path}, flag)
