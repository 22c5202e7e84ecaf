"""`gptlab classify`: label texts with a classifier made by `gptlab finetune classify`."""

from __future__ import annotations

from gptlab.cli.common import add_threads_arg


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "classify",
        help="label texts with a fine-tuned classifier",
        description="Print the predicted label and its probability for each --text, one line each "
        "(label<TAB>probability). Texts longer than the classifier's max_length are cut, with a warning.",
        epilog='example: gptlab classify --checkpoint runs/spam --text "You won a prize! Call now"',
    )
    parser.add_argument(
        "--checkpoint",
        required=True,
        metavar="DIR",
        help="a folder written by gptlab finetune classify",
    )
    parser.add_argument(
        "--text", required=True, action="append", help="a text to classify (repeat for several)"
    )
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N, mps or auto (default)")
    add_threads_arg(parser)
    parser.set_defaults(func=run)


def run(args) -> int:
    import sys

    from gptlab.checkpoints.finetuned import load_finetuned
    from gptlab.device import resolve_device
    from gptlab.errors import GptlabError
    from gptlab.finetune.classify import GPTClassifier, predict_probabilities

    loaded = load_finetuned(args.checkpoint, resolve_device(args.device))
    if loaded.task["kind"] != "classifier":
        raise GptlabError(
            f"{args.checkpoint} is an {loaded.task['kind']} model, not a classifier; use gptlab chat"
        )
    texts = [t.strip() for t in args.text]
    if not all(texts):
        raise GptlabError("a --text is empty; give some text to classify")
    labels, max_length = loaded.task["labels"], loaded.task["max_length"]
    too_long = sum(len(ids) > max_length for ids in loaded.tokenizer.encode_batch(texts))
    if too_long:
        print(
            f"warning: {too_long} text(s) are longer than {max_length} tokens; only their start is used",
            file=sys.stderr,
        )
    classifier = GPTClassifier(loaded.body, len(labels), head=loaded.head)
    probs = predict_probabilities(
        classifier, loaded.tokenizer, texts, max_length, loaded.task["pad_id"]
    )
    for row in probs:
        best = int(row.argmax())
        print(f"{labels[best]}\t{row[best].item():.4f}")
    return 0
