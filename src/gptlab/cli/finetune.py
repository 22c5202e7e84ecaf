"""`gptlab finetune classify | instruct | merge`: fine-tune a pretrained GPT for a task."""

from __future__ import annotations

import argparse
import time

from gptlab.cli.common import add_threads_arg, seed_arg

CLASSIFY_EXAMPLES = """examples:
  gptlab finetune classify --data data/samples/sms_spam_collection/SMSSpamCollection --init hf:gpt2 --out runs/spam
  gptlab finetune classify --data reviews.csv --init runs/my-pretrain --train all --epochs 5
  gptlab finetune classify --data texts.jsonl --init hf:gpt2 --lora-rank 8 --merge

data: .tsv (label<TAB>text), .csv (label,text header) or .jsonl ({"label", "text"} per line)
"""

INSTRUCT_EXAMPLES = """examples:
  gptlab finetune instruct --data data/samples/instruction_data_alpaca/instruction-data.json --init hf:gpt2-medium --out runs/alpaca
  gptlab finetune instruct --data data.json --init hf:gpt2 --lora-rank 16 --epochs 2
  gptlab chat --checkpoint runs/alpaca

data: Alpaca JSON, a list of {"instruction", "input", "output"} (or one per line in .jsonl)
"""


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "finetune",
        help="fine-tune a pretrained GPT: classifier, instruction follower, LoRA",
        description="Fine-tune a pretrained GPT (a gptlab folder or hf:NAME) into a classifier or "
        "an instruction follower, fully or with LoRA adapters.",
    )
    verbs = parser.add_subparsers(dest="finetune_verb", metavar="TASK")
    verbs.required = True

    classify = verbs.add_parser(
        "classify",
        help="train a text classifier",
        epilog=CLASSIFY_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Replace the language-model output by a class head reading the last token; "
        "prints loss and accuracy per epoch, final train/val/test accuracy and a confusion matrix.",
    )
    add_common_args(classify)
    classify.add_argument(
        "--balance",
        choices=("none", "downsample", "weight"),
        default=argparse.SUPPRESS,
        help="class balancing: downsample every class to the smallest, or weight the "
        "loss by inverse class frequency (default none)",
    )
    classify.set_defaults(func=classify_main)

    instruct = verbs.add_parser(
        "instruct",
        help="instruction-tune on Alpaca-format data",
        epilog=INSTRUCT_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train on the Alpaca prompt template with the prompt and padding masked out of "
        "the loss; afterwards the held-out examples are answered into test_answers.json.",
    )
    add_common_args(instruct)
    instruct.add_argument(
        "--keep-prompt-loss",
        action="store_true",
        default=argparse.SUPPRESS,
        help="count the prompt tokens in the loss too (default: only the response)",
    )
    instruct.add_argument(
        "--max-new-tokens",
        type=int,
        default=argparse.SUPPRESS,
        help="answer length limit (default 256)",
    )
    instruct.add_argument(
        "--answers",
        type=int,
        default=argparse.SUPPRESS,
        metavar="N",
        help="answer only the first N held-out examples (default all; 0 skips answering)",
    )
    instruct.set_defaults(func=instruct_main)

    merge = verbs.add_parser(
        "merge",
        help="fold a LoRA adapter into its base weights",
        description="Write the base model with the LoRA adapter folded in as a "
        "standard model folder (in place unless --out is given).",
    )
    merge.add_argument(
        "--checkpoint", required=True, metavar="DIR", help="a folder written by a --lora-rank run"
    )
    merge.add_argument("--out", metavar="DIR", help="write the merged folder here instead")
    merge.set_defaults(func=merge_main)


def add_common_args(parser) -> None:
    """Arguments both tasks take. Each flag sets the option of the same name (--batch-size is
    batch_size); a flag not given keeps the task's default, or the --config file's value."""
    flag = argparse.SUPPRESS  # only flags actually given reach the options
    parser.add_argument("--data", default=flag, metavar="FILE", help="the training data file")
    parser.add_argument(
        "--init",
        default=flag,
        metavar="DIR|hf:NAME",
        help="start from a gptlab model/run folder, or Hugging Face GPT-2 weights (hf:gpt2)",
    )
    parser.add_argument(
        "--out",
        default=flag,
        metavar="DIR",
        help="output folder (default runs/finetune-TASK-DATE-TIME)",
    )
    parser.add_argument(
        "--overwrite", action="store_true", default=flag, help="replace a model already in --out"
    )
    parser.add_argument(
        "--train",
        default=flag,
        metavar="head|last-K|all",
        help="what trains besides the task head; last-K also trains the final LayerNorm",
    )
    parser.add_argument("--epochs", type=int, default=flag)
    parser.add_argument("--lr", type=float, default=flag, help="peak AdamW learning rate")
    parser.add_argument(
        "--weight-decay", type=float, default=flag, help="AdamW weight decay on 2-D weights"
    )
    parser.add_argument(
        "--warmup-steps", type=int, default=flag, help="linear warmup steps before the cosine decay"
    )
    parser.add_argument("--batch-size", type=int, default=flag, help="examples per step")
    parser.add_argument(
        "--max-length",
        type=int,
        default=flag,
        metavar="N",
        help="tokens per example (default the model's context); longer ones are cut, with a warning",
    )
    parser.add_argument("--val-fraction", type=float, default=flag, help="held out for validation")
    parser.add_argument("--test-fraction", type=float, default=flag, help="held out for the test")
    parser.add_argument(
        "--max-seconds", type=float, default=flag, help="stop training after this many seconds"
    )
    parser.add_argument(
        "--seed",
        type=seed_arg,
        default=flag,
        help="drives the split, the head's init and the batch order",
    )
    parser.add_argument("--device", default=flag, help="cpu, cuda, cuda:N, mps or auto (default)")
    add_threads_arg(parser)
    lora = parser.add_argument_group("LoRA (freezes the base model and trains low-rank adapters)")
    lora.add_argument(
        "--lora-rank", type=int, default=flag, metavar="R", help="adapter rank; turns LoRA on"
    )
    lora.add_argument(
        "--lora-alpha",
        type=float,
        default=flag,
        metavar="A",
        help="scale alpha/rank (default alpha = 2 x rank)",
    )
    lora.add_argument(
        "--lora-dropout", type=float, default=flag, metavar="P", help="dropout on the adapter input"
    )
    lora.add_argument(
        "--lora-targets",
        default=flag,
        metavar="NAMES",
        help="comma-separated linear layers to adapt (default c_attn,c_proj,c_fc)",
    )
    lora.add_argument(
        "--merge",
        action="store_true",
        default=flag,
        help="also save the adapter merged into the base as a model folder",
    )
    settings = parser.add_argument_group(
        "settings as in a file (every option, with its default: --print-options)"
    )
    settings.add_argument(
        "--config", metavar="FILE.toml", help="options as `key = value` lines (e.g. epochs = 3)"
    )
    settings.add_argument(
        "--print-options", action="store_true", help="print the resolved options as TOML and exit"
    )
    settings.add_argument(
        "overrides",
        nargs="*",
        metavar="KEY=VALUE",
        help="options applied last, e.g. epochs=3 lora_rank=8 (the names --print-options shows)",
    )


# Arguments that are not fine-tuning options.
NOT_OPTIONS = ("verb", "finetune_verb", "func", "config", "print_options", "overrides", "threads")


def resolve_options(args, options_class, task: str):
    """The task's options: its defaults -> --config -> the flags given -> KEY=VALUE."""
    from gptlab.finetune.options import load_options

    given = {k: v for k, v in vars(args).items() if k not in NOT_OPTIONS}
    options = load_options(options_class, args.config, given, args.overrides, validate=False)
    # Fallbacks below every layer: a --config file's out, data and init win over them.
    options.out = options.out or time.strftime(f"runs/finetune-{task}-%Y%m%d-%H%M%S")
    if args.print_options:  # a template that prints before data and init are chosen
        options.data = options.data or "FILE"
        options.init = options.init or "DIR_OR_hf:NAME"
        return options.validate(check_paths=False)  # every value checked, files aside
    return options.validate()


def finetune_task(args, options_class, task: str, finetune) -> int:
    import dataclasses

    from gptlab.overrides import dump_flat_toml

    options = resolve_options(args, options_class, task)
    if args.print_options:
        header = f"gptlab finetune {task} options (use with --config FILE.toml)"
        print(dump_flat_toml(dataclasses.asdict(options), header=header))
        return 0
    finetune(options)
    return 0


def classify_main(args) -> int:
    from gptlab.finetune.classify_job import finetune_classifier
    from gptlab.finetune.options import ClassifyOptions

    return finetune_task(args, ClassifyOptions, "classify", finetune_classifier)


def instruct_main(args) -> int:
    from gptlab.finetune.instruct_job import finetune_instruct
    from gptlab.finetune.options import InstructOptions

    return finetune_task(args, InstructOptions, "instruct", finetune_instruct)


def merge_main(args) -> int:
    from gptlab.checkpoints.finetuned import merge_checkpoint

    out = merge_checkpoint(args.checkpoint, args.out)
    print(f"merged the adapter into the base weights: {out} is a standard model folder")
    return 0
