"""`gptlab prepare SOURCE`: tokenize a data source into shards that training reads."""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    from gptlab.data.prepared_folder import DEFAULT_SHARD_TOKENS, DEFAULT_VAL_FRACTION

    parser = subparsers.add_parser(
        "prepare",
        help="tokenize a data source into train/val token shards",
        description=(
            "Tokenize a data source into train/val token shards plus meta.json. SOURCE is "
            "tinyshakespeare, fineweb-edu, fineweb, openwebtext, hf:OWNER/NAME[:CONFIG], or local "
            ".txt/.jsonl/.json/.parquet/.csv files, a folder or a quoted glob. Preparing again "
            "with the same settings does nothing."
        ),
    )
    parser.add_argument("source", metavar="SOURCE")
    parser.add_argument(
        "--tokenizer",
        default="gpt2",
        metavar="gpt2|char|PATH",
        help="gpt2 (default), char (vocabulary from the corpus), bpe:N (an N-token BPE trained on "
        "the corpus first, or the one trained before) or a tokenizer JSON file",
    )
    parser.add_argument(
        "--out", metavar="DIR", help="output folder (default: $GPTLAB_HOME/prepared/<name>)"
    )
    parser.add_argument(
        "--val-fraction",
        type=float,
        default=DEFAULT_VAL_FRACTION,
        metavar="F",
        help=f"share of documents (or of a single text's tail) kept for validation (default {DEFAULT_VAL_FRACTION})",
    )
    parser.add_argument(
        "--workers", type=int, metavar="N", help="tokenizer processes (default: one per CPU core)"
    )
    parser.add_argument(
        "--shard-tokens",
        type=int,
        default=DEFAULT_SHARD_TOKENS,
        metavar="N",
        help=f"tokens per shard file (default {DEFAULT_SHARD_TOKENS:,})",
    )
    parser.add_argument("--max-docs", type=int, metavar="N", help="stop after N documents")
    parser.add_argument("--max-tokens", type=int, metavar="N", help="stop after N tokens")
    parser.add_argument(
        "--text-column",
        default="text",
        metavar="NAME",
        help="field holding the text (default: text)",
    )
    parser.add_argument(
        "--hf-config", metavar="NAME", help="hub dataset config (fineweb-edu default: sample-10BT)"
    )
    parser.add_argument(
        "--verify",
        action="store_true",
        help=(
            "re-hash every shard and compare with meta.json's sha256 (SOURCE may be a prepared "
            "folder: then only verify it)"
        ),
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar or messages")
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from pathlib import Path

    from gptlab.data.prepare import prepare_dataset
    from gptlab.data.prepared_folder import read_meta
    from gptlab.data.shards import check_shard_hashes

    if args.verify and (Path(args.source) / "meta.json").is_file():
        folder = Path(args.source)
        checked = check_shard_hashes(folder, read_meta(folder), show_progress=not args.quiet)
        print(f"{folder}: every shard matches meta.json ({checked:,} bytes checked)")
        return 0
    from gptlab.cli.common import refuse_out_over_source

    refuse_out_over_source(args.out, args.source)
    folder = prepare_dataset(
        args.source,
        tokenizer=args.tokenizer,
        out=args.out,
        val_fraction=args.val_fraction,
        workers=args.workers,
        shard_tokens=args.shard_tokens,
        max_docs=args.max_docs,
        max_tokens=args.max_tokens,
        text_column=args.text_column,
        hf_config=args.hf_config,
        show_progress=not args.quiet,
    )
    meta = read_meta(folder)
    if args.verify:
        check_shard_hashes(folder, meta, show_progress=not args.quiet)
    train, val = meta["splits"]["train"], meta["splits"]["val"]
    print(folder)
    if not args.quiet:
        print(
            f"  tokenizer {meta['tokenizer']['type']} (vocab {meta['vocab_size']:,}, {meta['dtype']}); "
            f"train {train['tokens']:,} tokens / {train['documents']:,} docs; "
            f"val {val['tokens']:,} tokens / {val['documents']:,} docs"
        )
    return 0
