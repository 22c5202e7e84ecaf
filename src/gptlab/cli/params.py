"""`gptlab params`: where a model's parameters are, and how much memory its weights take."""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "params",
        help="parameter counts by component, with and without tying, and weight memory",
        description="Print a table of a model's parameters: embeddings, attention, MLP, layer norms, "
        "head; totals with and without weight tying; memory in fp32 and bf16. Nothing is allocated.",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--preset", metavar="NAME", help="a preset shape, e.g. gpt2 or gpt2-xl")
    source.add_argument(
        "--checkpoint", metavar="DIR", help="a gptlab model folder or training run folder"
    )
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from gptlab.model.params import count_parameters, format_parameter_table

    if args.preset:
        from gptlab.model.config import model_preset

        config, title = model_preset(args.preset), args.preset
    else:
        from gptlab.checkpoints.model_folder import read_model_config
        from gptlab.checkpoints.open import resolve_model_dir

        directory = resolve_model_dir(args.checkpoint)
        config, title = read_model_config(directory), str(directory)
    print(format_parameter_table(count_parameters(config), title))
    return 0
