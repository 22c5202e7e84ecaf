"""`gptlab bench SUBJECT`: measurements a user can rerun on their own machine.

Each subject is a sub-verb with its own flags (today `generate`); add one by writing a
`register_<subject>(subparsers)` function and listing it in SUBJECTS.
"""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "bench", help="measure speed (decode tokens/s, ...) against a reference"
    )
    subjects = parser.add_subparsers(dest="bench_subject", metavar="SUBJECT")
    subjects.required = True
    for register_subject in SUBJECTS:
        register_subject(subjects)


def register_generate(subjects) -> None:
    parser = subjects.add_parser(
        "generate",
        help="decode tokens/s at batch 1: no cache, KV cache, transformers' generate",
        description="Time greedy decoding of a fixed number of new tokens on the same weights along "
        "each path (gptlab without and with a KV cache, transformers' generate), check that they "
        "produce the same tokens, and print one table with speedups.",
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--preset", metavar="NAME", help="a random-weight model of a preset shape (default: gpt2)"
    )
    source.add_argument(
        "--checkpoint", metavar="DIR", help="a gptlab model folder or training run folder"
    )
    parser.add_argument(
        "--new-tokens", type=int, default=200, metavar="N", help="tokens to generate (default 200)"
    )
    parser.add_argument(
        "--prompt-tokens", type=int, default=16, metavar="N", help="prompt length (default 16)"
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=3,
        metavar="N",
        help="timed runs per path; the median counts (default 3)",
    )
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N, mps or auto")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        metavar="N",
        help="CPU threads for torch (default: torch's choice)",
    )
    parser.add_argument(
        "--json", action="store_true", help="print the result as JSON instead of a table"
    )
    parser.set_defaults(func=run_generate, hf=None)


SUBJECTS = (register_generate,)


def run_generate(args: argparse.Namespace) -> int:
    import json

    from gptlab.bench import bench_generate, format_generate_table
    from gptlab.cli.common import load_model_from_args
    from gptlab.errors import require

    require(args.new_tokens >= 1, f"--new-tokens must be >= 1, got {args.new_tokens}")
    require(args.prompt_tokens >= 1, f"--prompt-tokens must be >= 1, got {args.prompt_tokens}")
    require(args.repeats >= 1, f"--repeats must be >= 1, got {args.repeats}")
    if args.threads is not None:
        import torch

        require(args.threads >= 1, f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    if args.checkpoint is None and args.preset is None:
        args.preset = "gpt2"
    model, _ = load_model_from_args(args)
    require(
        args.prompt_tokens + args.new_tokens <= model.config.block_size,
        f"--prompt-tokens + --new-tokens ({args.prompt_tokens + args.new_tokens}) must fit the model's "
        f"block_size ({model.config.block_size}), so every path decodes the same way",
    )
    name = f"preset {args.preset}" if args.preset else str(args.checkpoint)
    result = bench_generate(
        model,
        name,
        new_tokens=args.new_tokens,
        prompt_tokens=args.prompt_tokens,
        repeats=args.repeats,
    )
    print(json.dumps(result.to_dict(), indent=2) if args.json else format_generate_table(result))
    return 0
