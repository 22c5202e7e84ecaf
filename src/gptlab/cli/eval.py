"""`gptlab eval perplexity|bpb|hellaswag`: how good a model is, in numbers comparable with papers."""

from __future__ import annotations

import argparse
import json

from gptlab.cli.common import add_model_source_args, check_output_file, load_model_from_args
from gptlab.errors import GptlabError
from gptlab.fileio import atomic_write_text


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "eval", help="evaluate a model: perplexity, bits-per-byte, HellaSwag"
    )
    tasks = parser.add_subparsers(dest="task", metavar="TASK")
    tasks.required = True

    perplexity = tasks.add_parser(
        "perplexity",
        help="mean loss, perplexity and bits-per-byte on a prepared split or a text file",
        description="Score every token of a prepared split or a text file once, with a sliding "
        "window where the text is longer than the model's context.",
    )
    add_model_source_args(perplexity, presets=False)
    source = perplexity.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--data", metavar="PREPARED_DIR", help="a folder written by `gptlab prepare`"
    )
    source.add_argument("--text", metavar="FILE", help="a UTF-8 text file")
    perplexity.add_argument(
        "--split", default="val", help="split of --data to score (default: val)"
    )
    perplexity.add_argument(
        "--stride",
        type=int,
        metavar="N",
        help="tokens each window moves on; every token then sees at least block_size - N + 1 tokens "
        "of context (default: block_size, non-overlapping windows)",
    )
    perplexity.add_argument(
        "--batch-size",
        type=int,
        default=4,
        metavar="N",
        help="windows per forward pass (default 4)",
    )
    perplexity.add_argument(
        "--max-tokens",
        type=int,
        metavar="N",
        help="score only the first N tokens of the text or split",
    )
    perplexity.add_argument("--json", action="store_true", help="print one JSON object")
    perplexity.set_defaults(func=perplexity_main)

    bpb = tasks.add_parser(
        "bpb",
        help="bits per byte on a text or JSONL file, each document scored on its own",
        description="Bits per byte of any model (any tokenizer) on the documents of a file: "
        ".txt is one document, .jsonl one per line. Each document is scored separately after "
        "the end-of-text token (so every byte counts; a tokenizer without one leaves its first "
        "token as context and its bytes uncounted), with a sliding window at the model's context.",
    )
    add_model_source_args(bpb, presets=False)
    bpb.add_argument("file", metavar="FILE", help="a .txt or .jsonl file (or any prepare source)")
    bpb.add_argument(
        "--text-column", default="text", metavar="NAME", help="JSONL text field (default: text)"
    )
    bpb.add_argument(
        "--val-fraction",
        type=float,
        metavar="F",
        help="score only the documents `gptlab train` holds out of FILE at this data.val_fraction "
        "(0.1 by default there): articles the run never trained on",
    )
    bpb.add_argument(
        "--max-bytes",
        type=int,
        metavar="N",
        help="stop after the document that reaches N bytes (whole documents only)",
    )
    bpb.add_argument(
        "--stride",
        type=int,
        metavar="N",
        help="tokens each window moves on (default: half the model's context)",
    )
    bpb.add_argument(
        "--batch-size",
        type=int,
        default=8,
        metavar="N",
        help="windows per forward pass (default 8)",
    )
    bpb.add_argument("--json", action="store_true", help="print one JSON object")
    bpb.set_defaults(func=bpb_main)

    hellaswag = tasks.add_parser(
        "hellaswag",
        help="HellaSwag validation accuracy (acc, acc_norm)",
        description="Pick the most likely of four endings for each HellaSwag validation item. The "
        "official file is downloaded into the gptlab cache on first use.",
    )
    add_model_source_args(hellaswag, presets=False)
    hellaswag.add_argument(
        "--data",
        metavar="FILE",
        help="a HellaSwag jsonl file (default: the official validation set)",
    )
    hellaswag.add_argument("--limit", type=int, metavar="N", help="score only the first N items")
    hellaswag.add_argument(
        "--batch-size",
        type=int,
        default=4,
        metavar="N",
        help="items per forward pass, 4 sequences each (default 4)",
    )
    hellaswag.add_argument(
        "--per-item",
        metavar="FILE",
        help="also write one JSON line per item: label, predictions, the endings' scores",
    )
    hellaswag.add_argument(
        "--overwrite", action="store_true", help="replace an existing --per-item file"
    )
    hellaswag.add_argument("--json", action="store_true", help="print one JSON object")
    hellaswag.set_defaults(func=hellaswag_main)


def check_positive(name: str, value: int | None) -> None:
    if value is not None and value < 1:
        raise GptlabError(f"{name} must be a positive number, got {value}")


def model_name(args: argparse.Namespace) -> str:
    return args.checkpoint or args.hf


def perplexity_main(args: argparse.Namespace) -> int:
    from gptlab.eval.perplexity import evaluate_prepared, evaluate_text, read_text_file

    for flag in ("--stride", "--batch-size", "--max-tokens"):
        check_positive(flag, getattr(args, flag[2:].replace("-", "_")))
    # Read the text first, so a bad path fails before the model loads.
    text = read_text_file(args.text) if args.text else None
    model, tokenizer = load_model_from_args(args)
    options = dict(
        stride=args.stride,
        batch_size=args.batch_size,
        max_tokens=args.max_tokens,
        progress=not args.json,
    )
    if text is not None:
        source = args.text
        result = evaluate_text(model, tokenizer, text, **options)
    else:
        source = f"{args.data} ({args.split})"
        result = evaluate_prepared(model, tokenizer, args.data, args.split, **options)

    if args.json:
        print(json.dumps({"model": model_name(args), "source": source, **result.to_dict()}))
        return 0
    print(f"{model_name(args)} on {source}")
    print(f"  tokens scored  {result.tokens:,} ({result.bytes:,} UTF-8 bytes)")
    print(f"  mean loss      {result.mean_loss:.4f} nats/token")
    print(f"  perplexity     {result.perplexity:.3f}")
    print(f"  bits per byte  {result.bits_per_byte:.4f}")
    print(f"  context {result.context}, stride {result.stride}")
    return 0


def bpb_main(args: argparse.Namespace) -> int:
    from gptlab.data.sources import check_source_spec
    from gptlab.eval.bits_per_byte import score_file

    for flag in ("--stride", "--batch-size", "--max-bytes"):
        check_positive(flag, getattr(args, flag[2:].replace("-", "_")))
    if args.val_fraction is not None and not 0 < args.val_fraction < 1:
        raise GptlabError(f"--val-fraction must be in (0, 1), got {args.val_fraction}")
    check_source_spec(args.file)
    model, tokenizer = load_model_from_args(args)
    score = score_file(
        model,
        tokenizer,
        args.file,
        text_column=args.text_column,
        val_fraction=args.val_fraction,
        max_bytes=args.max_bytes,
        stride=args.stride,
        batch_size=args.batch_size,
        progress=not args.json,
    )
    if args.json:
        print(json.dumps({"model": model_name(args), "file": args.file, **score.to_dict()}))
        return 0
    held_out = f", held out at val_fraction {args.val_fraction}" if args.val_fraction else ""
    print(f"{model_name(args)} on {args.file}{held_out}")
    print(f"  documents      {score.documents:,} scored separately ({score.skipped} too short)")
    print(f"  bytes          {score.bytes:,} in {score.tokens:,} predicted tokens")
    print(
        f"  mean loss      {score.mean_loss:.4f} nats/token ({score.bytes_per_token:.2f} bytes/token)"
    )
    print(f"  bits per byte  {score.bits_per_byte:.4f}")
    print(f"  context {score.context}, stride {score.stride}")
    return 0


def hellaswag_main(args: argparse.Namespace) -> int:
    from gptlab.eval.hellaswag import (
        PUBLISHED_ACC_NORM,
        RANDOM_ACC,
        evaluate_hellaswag,
        load_hellaswag,
    )

    check_positive("--limit", args.limit)
    check_positive("--batch-size", args.batch_size)
    per_item_file = (
        check_output_file(args.per_item, args.overwrite, "--per-item", "hellaswag.jsonl")
        if args.per_item
        else None
    )
    if per_item_file is not None and args.data is not None:
        from gptlab.fileio import refuse_overlap

        refuse_overlap(per_item_file, {"--data file": args.data}, "--per-item")
    items = load_hellaswag(args.data)  # a bad file fails before the model loads
    model, tokenizer = load_model_from_args(args)
    result = evaluate_hellaswag(
        model,
        tokenizer,
        items,
        limit=args.limit,
        batch_size=args.batch_size,
        progress=not args.json,
        per_item=per_item_file is not None,
    )
    if per_item_file is not None:
        records = result.pop("per_item")
        atomic_write_text(per_item_file, "".join(json.dumps(r) + "\n" for r in records))

    if args.json:
        print(
            json.dumps(
                {
                    "model": model_name(args),
                    "data": args.data or "official validation set",
                    **result,
                }
            )
        )
        return 0
    n = result["items"]
    print(f"HellaSwag validation, {n:,} items, {model_name(args)}")
    print(
        f"  acc       {result['acc']:.4f}  ({result['correct']:,}/{n:,}; highest total log-likelihood)"
    )
    print(
        f"  acc_norm  {result['acc_norm']:.4f}  ({result['correct_norm']:,}/{n:,}; highest mean log-likelihood per token)"
    )
    published = ", ".join(f"{name} {value}" for name, value in PUBLISHED_ACC_NORM.items())
    print(f"  reference: random {RANDOM_ACC}; published acc_norm {published}")
    if per_item_file is not None:
        print(f"  per-item scores: {per_item_file}")
    return 0
