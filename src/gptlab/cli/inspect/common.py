"""What every `gptlab inspect` tool shares: the output folder, JSON and file reports, the model and
prompt (or prompt set) from the arguments, and the common options."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from gptlab.cli.common import load_model_from_args, seed_arg
from gptlab.errors import GptlabError
from gptlab.fileio import refuse_overlap

DEFAULT_OUT_ROOT = Path("inspect_out")


def refusing_a_file_as_out(main):
    """`main`, preceded by the check of --out: a tool writes several files into a folder, and an
    existing file there must stop it before any work, not after."""

    def checked(args: argparse.Namespace) -> int:
        if args.out and Path(args.out).exists() and not Path(args.out).is_dir():
            raise GptlabError(f"--out {args.out} is a file; give a folder for the tool's files")
        if args.out:  # a tool's files written into the model folder it reads would mix with it
            refuse_overlap(
                args.out,
                {
                    "--checkpoint": getattr(args, "checkpoint", None),
                    "--hf": getattr(args, "hf", None),
                },
                "--out",
                holding_ok=True,
            )
        return main(args)

    return checked


def out_dir(args: argparse.Namespace) -> Path:
    directory = Path(args.out) if args.out else DEFAULT_OUT_ROOT / args.tool
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def write_json(path: Path, data: dict) -> Path:
    """`data` as JSON at `path`, NaN and infinities written as null (see json_safe)."""
    from gptlab.fileio import atomic_write_text

    atomic_write_text(path, json.dumps(json_safe(data), indent=1, ensure_ascii=False))
    return path


def report_files(paths: list[Path]) -> None:
    print("\nwrote:")
    for path in paths:
        print(f"  {path}")


def load(args: argparse.Namespace, min_tokens: int = 1):
    """(model, tokenizer, idx (1, T), token labels) for --prompt."""
    from gptlab.interp.tokens import encode_prompt, token_labels

    model, tokenizer = load_model_from_args(args)
    idx = encode_prompt(model, tokenizer, args.prompt, min_tokens=min_tokens)
    return model, tokenizer, idx, token_labels(tokenizer, idx[0].tolist())


def add_prompt(
    parser: argparse.ArgumentParser, help_text: str = "the text to run through the model"
) -> None:
    parser.add_argument("--prompt", required=True, metavar="TEXT", help=help_text)


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (argparse reports anything else as a usage error)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def add_top_k(parser: argparse.ArgumentParser, default: int) -> None:
    parser.add_argument(
        "--top-k",
        type=positive_int,
        default=default,
        metavar="K",
        help=f"how many to list (default {default})",
    )


def json_safe(value):
    """NaN and infinities as null: JSON has no NaN (json.dumps would write invalid JSON)."""
    import math

    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, list):
        return [json_safe(v) for v in value]
    if isinstance(value, tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    return value


def add_prompt_set(parser: argparse.ArgumentParser) -> None:
    """--prompts FILE | --ioi N (with --template, --seed): the prompt set a tool averages over."""
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--prompts",
        metavar="FILE",
        help="a JSONL prompt set: one {clean, corrupted, answer, wrong} object per line",
    )
    source.add_argument(
        "--ioi",
        type=positive_int,
        metavar="N",
        help="N generated IOI prompts with names that are single tokens in the model's tokenizer",
    )
    parser.add_argument(
        "--template", type=int, default=0, metavar="I", help="which IOI template (default 0)"
    )
    parser.add_argument("--seed", type=seed_arg, default=0, help="which IOI names (default 0)")


def load_prompt_set_args(args: argparse.Namespace):
    """(model, tokenizer, prompt set) from the model options and add_prompt_set's options."""
    from gptlab.interp.prompt_sets import ioi_prompt_set, load_prompt_set

    model, tokenizer = load_model_from_args(args)
    if args.prompts is not None:
        prompts = load_prompt_set(model, tokenizer, args.prompts)
    else:
        prompts = ioi_prompt_set(model, tokenizer, args.ioi, args.template, args.seed)
    print(f"{len(prompts)} prompts of {prompts.clean.shape[1]} tokens, e.g. {prompts.texts[0]}")
    return model, tokenizer, prompts
