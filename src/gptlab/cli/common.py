"""Arguments and helpers shared by several verbs."""

from __future__ import annotations

import argparse

from gptlab.errors import GptlabError


def add_model_source_args(parser: argparse.ArgumentParser, presets: bool = True) -> None:
    """--checkpoint DIR | --hf DIR_OR_NAME | --preset NAME: where the model comes from."""
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument(
        "--checkpoint", metavar="DIR", help="a gptlab model folder or training run folder"
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
    from gptlab.device import resolve_device

    device = resolve_device(args.device)
    if args.checkpoint:
        from gptlab.checkpoints.finetuned import is_unmerged_adapter, load_finetuned
        from gptlab.checkpoints.load import load_model

        if is_unmerged_adapter(args.checkpoint):  # the base model with its adapter applied
            loaded = load_finetuned(args.checkpoint, device)
            model, tokenizer = loaded.body, loaded.tokenizer
        else:
            model, tokenizer = load_model(args.checkpoint, device=device)
        if tokenizer is None:
            raise GptlabError(
                f"{args.checkpoint} has no tokenizer.json; it cannot turn text into tokens"
            )
    elif args.hf:
        from gptlab.model.hf import load_hf_model

        model, tokenizer = load_hf_model(args.hf)
        model = model.to(device)
    else:
        import torch

        from gptlab.model import GPT
        from gptlab.model.config import model_preset
        from gptlab.model.params import require_model_fits
        from gptlab.tokenizers.base import GPT2Tokenizer

        config = model_preset(args.preset)
        if config.vocab_size != 50257:
            raise GptlabError(
                f"preset {args.preset!r} is a character-level shape whose vocabulary comes from its "
                "training data; train it first (gptlab train) and use --checkpoint"
            )
        require_model_fits(config, device)
        torch.manual_seed(0)  # the same random preset model every time; --seed is for sampling
        model, tokenizer = GPT(config).to(device), GPT2Tokenizer()
    return model.eval(), tokenizer
