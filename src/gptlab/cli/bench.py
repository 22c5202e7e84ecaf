"""`gptlab bench SUBJECT`: measurements a user can rerun on their own machine.

Each subject is a sub-verb with its own flags (today `generate`); add one by writing a
`register_<subject>(subparsers)` function and listing it in SUBJECTS.
"""

from __future__ import annotations

import argparse

from gptlab.cli.common import add_threads_arg


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
        help="which inference optimisations matter: caches, compile, dtypes, int8, batching, drafts",
        description="Time greedy decoding of a fixed number of new tokens on the same weights along "
        "each path (transformers' generate as the baseline; gptlab without a cache, with a dynamic "
        "or static cache, compiled, bf16/fp16, int8, speculative with --draft, batches), and print "
        "one table: tokens/s, ms/token p50/p90, time to first token, peak memory, weight size, "
        "perplexity change of the rows that change the weights.",
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--preset", metavar="NAME", help="a random-weight model of a preset shape (default: gpt2)"
    )
    source.add_argument(
        "--checkpoint", metavar="DIR", help="a gptlab model folder or training run folder"
    )
    parser.add_argument(
        "--draft",
        metavar="DIR",
        help="a small gptlab model with the same tokenizer: adds a speculative row",
    )
    parser.add_argument(
        "--draft-tokens",
        type=int,
        default=4,
        metavar="K",
        help="draft tokens per round (default 4)",
    )
    parser.add_argument(
        "--new-tokens", type=int, default=None, metavar="N", help="tokens to generate (default 200)"
    )
    parser.add_argument(
        "--prompt-tokens", type=int, default=16, metavar="N", help="prompt length (default 16)"
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=None,
        metavar="N",
        help="timed runs per row, interleaved; the median counts (default 3)",
    )
    parser.add_argument(
        "--batches",
        type=int,
        nargs="+",
        default=None,
        metavar="B",
        help="batch sizes for the throughput rows (default 1 8 32)",
    )
    parser.add_argument(
        "--rows",
        nargs="+",
        metavar="PATTERN",
        help="run only the rows whose names match these shell patterns, e.g. 'int8*' 'static*' "
        "(the transformers and dynamic cache rows always run: they are the references)",
    )
    parser.add_argument(
        "--no-compile",
        action="store_true",
        help="leave out the torch.compile row (compiling takes minutes)",
    )
    parser.add_argument(
        "--ppl-text",
        metavar="FILE",
        help="text for the perplexity change of bf16/int8 (default: the TinyShakespeare validation "
        "text, the last 10%%, if the tinyshakespeare download is in the gptlab cache)",
    )
    parser.add_argument(
        "--ppl-tokens",
        type=int,
        default=None,
        metavar="N",
        help="tokens of it to score (default 4096)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run: 8 new tokens, 1 repeat, batches 1 2, no compile, 256 perplexity tokens "
        "(values given explicitly win)",
    )
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N, mps or auto")
    # default none: torch's choice, unless given (a fixed number, e.g. 1, gives steadier timings)
    add_threads_arg(parser, default=None)
    parser.add_argument(
        "--json", action="store_true", help="print the result as JSON instead of a table"
    )
    parser.add_argument(
        "--plot", metavar="FILE", help="also draw throughput vs batch and speedups (PNG)"
    )
    parser.set_defaults(func=generate_main, hf=None)


SUBJECTS = (register_generate,)
DEFAULTS = {"new_tokens": 200, "repeats": 3, "batches": [1, 8, 32], "ppl_tokens": 4096}
QUICK = {"new_tokens": 8, "repeats": 1, "batches": [1, 2], "ppl_tokens": 256}


def generate_main(args: argparse.Namespace) -> int:
    import json

    from gptlab.bench.generate import bench_generate
    from gptlab.bench.report import format_generate_table, plot_generate
    from gptlab.cli.common import load_model_from_args
    from gptlab.errors import require

    # Explicit values win over both the --quick values and the defaults.
    defaults = QUICK if args.quick else DEFAULTS
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    args.no_compile = args.no_compile or args.quick
    require(args.new_tokens >= 1, f"--new-tokens must be >= 1, got {args.new_tokens}")
    require(args.prompt_tokens >= 1, f"--prompt-tokens must be >= 1, got {args.prompt_tokens}")
    require(args.repeats >= 1, f"--repeats must be >= 1, got {args.repeats}")
    require(all(b >= 1 for b in args.batches), f"--batches must be >= 1, got {args.batches}")
    if args.checkpoint is None and args.preset is None:
        args.preset = "gpt2"
    model, tokenizer = load_model_from_args(args)
    require(
        args.prompt_tokens + args.new_tokens <= model.config.block_size,
        f"--prompt-tokens + --new-tokens ({args.prompt_tokens + args.new_tokens}) must fit the model's "
        f"block_size ({model.config.block_size}), so every path decodes the same way",
    )
    draft = None
    if args.draft:
        from gptlab.checkpoints.load import load_model
        from gptlab.device import model_device
        from gptlab.inference.speculative import check_draft_compatible

        draft, draft_tokenizer = load_model(args.draft, device=model_device(model))
        check_draft_compatible(tokenizer, draft_tokenizer)
    name = f"preset {args.preset}" if args.preset else str(args.checkpoint)
    result = bench_generate(
        model,
        name,
        tokenizer=tokenizer,
        new_tokens=args.new_tokens,
        prompt_tokens=args.prompt_tokens,
        repeats=args.repeats,
        batches=tuple(args.batches),
        draft=draft,
        draft_tokens=args.draft_tokens,
        compile=not args.no_compile,
        perplexity_text=perplexity_text(args.ppl_text, tokenizer),
        perplexity_tokens=args.ppl_tokens,
        only=args.rows,
    )
    print(json.dumps(result.to_dict(), indent=2) if args.json else format_generate_table(result))
    if args.plot:
        plot_generate(result, args.plot)
    return 0


def perplexity_text(path: str | None, tokenizer) -> tuple[str, str] | None:
    """(description, text) for the perplexity rows: --ppl-text, else TinyShakespeare's val tail.

    Checked against the model's tokenizer before any timing starts: a --ppl-text the model cannot
    read is an error now, not after minutes of decoding; the default text, when the model cannot
    read it (a character vocabulary without some of its characters), is left out with a note.
    """
    import sys

    from gptlab.errors import GptlabError
    from gptlab.fileio import read_text

    if path is not None:
        text = read_text(path, "--ppl-text")
        if tokenizer is not None:
            tokenizer.encode(text)
        return path, text
    from gptlab.data.sources import download_path

    cached = download_path("tinyshakespeare")
    if not cached.is_file():
        return None
    text = cached.read_text(encoding="utf-8")
    tail = text[int(0.9 * len(text)) :]
    if tokenizer is not None:
        try:
            tokenizer.encode(tail)
        except GptlabError as exc:
            print(f"gptlab bench: no perplexity column ({exc}); pass --ppl-text", file=sys.stderr)
            return None
    return "TinyShakespeare validation text (last 10%)", tail
