"""`gptlab tokenizer train|encode|compare`: train a byte-level BPE, look at what tokenizers do.

gptlab tokenizer train SOURCE --vocab-size N --out FILE [--max-docs N] [--text-column NAME]
                       [--hf-config NAME] [--overwrite]
gptlab tokenizer encode --tokenizer gpt2|FILE --text TEXT [--allow-special]
gptlab tokenizer compare FILE --text-file PATH
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

from gptlab.cli.common import refuse_out_over_source
from gptlab.errors import GptlabError


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "tokenizer",
        help="train a byte-level BPE tokenizer, encode text, compare compression",
        description="Train your own GPT-2-style byte-level BPE tokenizer and compare it with GPT-2's.",
    )
    actions = parser.add_subparsers(dest="tokenizer_action", metavar="ACTION")
    actions.required = True

    train = actions.add_parser(
        "train",
        help="train a byte-level BPE tokenizer on a source and save it as JSON",
        description="Train a byte-level BPE (GPT-2 pre-tokenization, <|endoftext|> as the last id). "
        "The saved file works anywhere a tokenizer is accepted (--tokenizer FILE).",
    )
    train.add_argument(
        "source",
        metavar="SOURCE",
        help="tinyshakespeare, fineweb-edu, hf:OWNER/NAME[:CONFIG], a file, folder or glob",
    )
    train.add_argument(
        "--vocab-size",
        type=int,
        required=True,
        metavar="N",
        help="tokens in the vocabulary, <|endoftext|> included (>= 257)",
    )
    train.add_argument(
        "--out", required=True, metavar="FILE", help="where to write the tokenizer JSON"
    )
    train.add_argument(
        "--max-docs", type=int, metavar="N", help="train on at most N documents of the source"
    )
    train.add_argument(
        "--text-column",
        default="text",
        metavar="NAME",
        help="text field of dataset/jsonl/parquet/csv sources (default: text)",
    )
    train.add_argument(
        "--hf-config",
        metavar="NAME",
        help="config of a hub dataset (fineweb-edu: sample-10BT unless given)",
    )
    train.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    train.set_defaults(func=train_main)

    encode = actions.add_parser(
        "encode",
        help="show how a text splits into tokens: each token's id, text and bytes",
        description="Print the text with each token coloured, then one row per token: its id, "
        "its text (\\n for a newline) and its bytes in hex (a character that byte-level BPE "
        "splits shows as \ufffd in the text column and exactly in the bytes).",
    )
    encode.add_argument(
        "--tokenizer",
        default="gpt2",
        metavar="gpt2|FILE",
        help="gpt2 (default) or a tokenizer JSON",
    )
    encode.add_argument("--text", required=True, help="the text to encode")
    encode.add_argument(
        "--allow-special",
        action="store_true",
        help="encode the literal <|endoftext|> as the special token",
    )
    encode.add_argument(
        "--ids-only", action="store_true", help="print only the ids, space-separated (for scripts)"
    )
    encode.add_argument(
        "--color",
        choices=("auto", "always", "never"),
        default="auto",
        help="colour each token (auto: when printing to a terminal)",
    )
    encode.set_defaults(func=encode_main)

    compare = actions.add_parser(
        "compare", help="bytes per token of a tokenizer next to GPT-2's on a text file"
    )
    compare.add_argument("tokenizer", metavar="FILE", help="a tokenizer JSON (or gpt2)")
    compare.add_argument(
        "--text-file",
        required=True,
        metavar="PATH",
        help="UTF-8 text to encode with both tokenizers",
    )
    compare.set_defaults(func=compare_main)


def train_main(args: argparse.Namespace) -> int:
    from gptlab.data.sources import iter_documents
    from gptlab.tokenizers.base import save_tokenizer
    from gptlab.tokenizers.bpe import train_bpe

    out = Path(args.out)
    if out.is_dir():
        raise GptlabError(
            f"--out {out} is a folder; give a file path such as {out / 'tokenizer.json'}"
        )
    if out.exists() and not args.overwrite:
        raise GptlabError(
            f"{out} already exists; pass --overwrite to replace it, or choose another --out"
        )
    if args.max_docs is not None and args.max_docs <= 0:
        raise GptlabError(f"--max-docs must be a positive number of documents, got {args.max_docs}")
    refuse_out_over_source(args.out, args.source)

    documents = iter_documents(
        args.source, max_docs=args.max_docs, text_column=args.text_column, hf_config=args.hf_config
    )
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tokenizer = train_bpe(documents, args.vocab_size)
    seconds = time.perf_counter() - start
    for warning in caught:
        print(f"gptlab: warning: {warning.message}", file=sys.stderr)

    stats = tokenizer.metadata
    stats.update(source=args.source, max_docs=args.max_docs, text_column=args.text_column)
    save_tokenizer(tokenizer, out)
    print(
        f"trained a {tokenizer.vocab_size:,}-token BPE on {stats['documents']:,} document(s) "
        f"({stats['bytes'] / 1e6:.1f} MB, {stats['distinct_chunks']:,} distinct chunks) in {seconds:.1f} s; "
        f"{stats['bytes'] / stats['tokens']:.2f} bytes per token on its training text"
    )
    print(f"saved to {out}")
    return 0


# Background colours that alternate between neighbouring tokens, readable with black text.
TOKEN_COLOURS = ("\033[30;48;5;153m", "\033[30;48;5;223m", "\033[30;48;5;157m", "\033[30;48;5;218m")
RESET = "\033[0m"


def encode_main(args: argparse.Namespace) -> int:
    from gptlab.interp.tokens import token_labels
    from gptlab.tables import format_table
    from gptlab.tokenizers.base import get_tokenizer, token_bytes

    tokenizer = get_tokenizer(args.tokenizer)
    ids = tokenizer.encode(args.text, allow_special=args.allow_special)
    if args.ids_only:
        print(" ".join(str(i) for i in ids))
        return 0
    pieces = token_bytes(tokenizer, ids)
    labels = token_labels(tokenizer, ids)  # newlines and tabs escaped, so one line each
    if args.color == "always" or (args.color == "auto" and sys.stdout.isatty()):
        print(
            "".join(
                f"{TOKEN_COLOURS[i % len(TOKEN_COLOURS)]}{label}{RESET}"
                for i, label in enumerate(labels)
            )
        )
    else:  # without colour, a bar marks each boundary
        print("|".join(labels))
    n_bytes = sum(len(piece) for piece in pieces)
    per_token = f" ({n_bytes / len(ids):.2f} bytes/token)" if ids else ""
    print(f"{len(ids)} tokens, {n_bytes} bytes{per_token}")
    rows = [
        [i, token_id, f"'{label}'", piece.hex(" ")]
        for i, (token_id, label, piece) in enumerate(zip(ids, labels, pieces, strict=True))
    ]
    print(format_table(["#", "id", "text", "bytes"], rows))
    return 0


def compare_main(args: argparse.Namespace) -> int:
    from gptlab.fileio import read_text
    from gptlab.tokenizers.base import GPT2Tokenizer, get_tokenizer

    path = Path(args.text_file)
    text = read_text(path, "--text-file")
    n_bytes = len(text.encode("utf-8"))

    rows = [(args.tokenizer, get_tokenizer(args.tokenizer)), ("gpt2", GPT2Tokenizer())]
    print(f"{path}: {n_bytes:,} bytes")
    print(f"{'tokenizer':<40} {'vocab':>8} {'tokens':>12} {'bytes/token':>12}")
    for label, tokenizer in rows:
        n_tokens = len(tokenizer.encode(text))
        print(f"{label:<40} {tokenizer.vocab_size:>8,} {n_tokens:>12,} {n_bytes / n_tokens:>12.3f}")
    return 0
