"""`gptlab classify`: label texts with a classifier made by `gptlab finetune classify`."""

from __future__ import annotations

from gptlab.cli.common import add_threads_arg


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "classify",
        help="label texts with a fine-tuned classifier",
        description="Print the predicted label and its probability for each --text, one line each "
        "(label<TAB>probability), or for each non-blank line of --file "
        "(line number<TAB>label<TAB>probability). Texts longer than the classifier's max_length "
        "are cut, with a warning.",
        epilog='example: gptlab classify --checkpoint runs/spam --text "You won a prize! Call now"',
    )
    parser.add_argument(
        "--checkpoint",
        required=True,
        metavar="DIR",
        help="a folder written by gptlab finetune classify",
    )
    texts = parser.add_mutually_exclusive_group(required=True)
    texts.add_argument("--text", action="append", help="a text to classify (repeat for several)")
    texts.add_argument(
        "--file", metavar="TEXTS", help="a UTF-8 file of texts, one per line (blank lines skipped)"
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=32,
        metavar="N",
        help="texts per forward pass (default 32)",
    )
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N, mps or auto (default)")
    add_threads_arg(parser)
    parser.set_defaults(func=main)


def main(args) -> int:
    import sys

    from gptlab.checkpoints.finetuned import load_finetuned
    from gptlab.device import resolve_device
    from gptlab.errors import GptlabError
    from gptlab.fileio import read_text
    from gptlab.finetune.classify import GPTClassifier, predict_probabilities

    if args.batch_size < 1:
        raise GptlabError(f"--batch-size must be at least 1, got {args.batch_size}")
    if args.file is not None:
        # Line numbers (from 1) say which text each answer belongs to, blank lines being skipped.
        lines = read_text(args.file, "--file").splitlines()
        numbered = [(n, line.strip()) for n, line in enumerate(lines, 1) if line.strip()]
    else:
        numbered = [(None, t.strip()) for t in args.text]
        if not all(text for _, text in numbered):
            raise GptlabError("a --text is empty; give some text to classify")
    texts = [text for _, text in numbered]
    loaded = load_finetuned(args.checkpoint, resolve_device(args.device))
    if loaded.task["kind"] != "classifier":
        raise GptlabError(
            f"{args.checkpoint} is an {loaded.task['kind']} model, not a classifier; use gptlab chat"
        )
    labels, max_length = loaded.task["labels"], loaded.task["max_length"]
    too_long = sum(len(ids) > max_length for ids in loaded.tokenizer.encode_batch(texts))
    if too_long:
        print(
            f"warning: {too_long} text(s) are longer than {max_length} tokens; only their start is used",
            file=sys.stderr,
        )
    classifier = GPTClassifier(loaded.body, len(labels), head=loaded.head)
    probs = predict_probabilities(
        classifier,
        loaded.tokenizer,
        texts,
        max_length,
        loaded.task["pad_id"],
        batch_size=args.batch_size,
        progress=args.file is not None,
    )
    for (line, _), row in zip(numbered, probs, strict=True):
        best = int(row.argmax())
        answer = f"{labels[best]}\t{row[best].item():.4f}"
        print(answer if line is None else f"{line}\t{answer}")
    return 0
