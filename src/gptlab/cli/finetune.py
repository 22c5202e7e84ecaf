"""`gptlab finetune classify | instruct | merge`: fine-tune a pretrained GPT for a task."""

from __future__ import annotations

import argparse
import time

CLASSIFY_EXAMPLES = """examples:
  gptlab finetune classify --data SMSSpamCollection --init hf:gpt2 --out runs/spam
  gptlab finetune classify --data reviews.csv --init runs/my-pretrain --train all --epochs 5
  gptlab finetune classify --data texts.jsonl --init hf:gpt2 --lora-rank 8 --merge

data: .tsv (label<TAB>text), .csv (label,text header) or .jsonl ({"label", "text"} per line)
"""

INSTRUCT_EXAMPLES = """examples:
  gptlab finetune instruct --data instruction-data.json --init hf:gpt2-medium --out runs/alpaca
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
    add_common_args(
        classify, default_train="last-1", default_epochs=5, default_lr=5e-5, splits=(0.1, 0.2)
    )
    classify.add_argument(
        "--balance",
        choices=("none", "downsample", "weight"),
        default="none",
        help="class balancing: downsample every class to the smallest, or weight the "
        "loss by inverse class frequency (default none)",
    )
    classify.set_defaults(func=run_classify)

    instruct = verbs.add_parser(
        "instruct",
        help="instruction-tune on Alpaca-format data",
        epilog=INSTRUCT_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train on the Alpaca prompt template with the prompt and padding masked out of "
        "the loss; afterwards the held-out examples are answered into test_answers.json.",
    )
    add_common_args(
        instruct, default_train="all", default_epochs=2, default_lr=5e-5, splits=(0.05, 0.1)
    )
    instruct.add_argument(
        "--keep-prompt-loss",
        action="store_true",
        help="count the prompt tokens in the loss too (default: only the response)",
    )
    instruct.add_argument(
        "--max-new-tokens", type=int, default=256, help="answer length limit (default 256)"
    )
    instruct.add_argument(
        "--answers",
        type=int,
        default=None,
        metavar="N",
        help="answer only the first N held-out examples (default all; 0 skips answering)",
    )
    instruct.set_defaults(func=run_instruct)

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
    merge.set_defaults(func=run_merge)


def add_common_args(
    parser, default_train: str, default_epochs: int, default_lr: float, splits: tuple[float, float]
) -> None:
    """Arguments both tasks take; `splits` are the default validation and test fractions."""
    val, test = splits
    parser.add_argument("--data", required=True, metavar="FILE", help="the training data file")
    parser.add_argument(
        "--init",
        required=True,
        metavar="DIR|hf:NAME",
        help="start from a gptlab model/run folder, or Hugging Face GPT-2 weights (hf:gpt2)",
    )
    parser.add_argument(
        "--out", metavar="DIR", help="output folder (default runs/finetune-TASK-DATE-TIME)"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace a model already in --out")
    parser.add_argument(
        "--train",
        default=default_train,
        metavar="head|last-K|all",
        help=f"what trains besides the task head (default {default_train}); last-K also "
        "trains the final LayerNorm",
    )
    parser.add_argument(
        "--epochs", type=int, default=default_epochs, help=f"default {default_epochs}"
    )
    parser.add_argument(
        "--lr",
        type=float,
        default=default_lr,
        help=f"peak AdamW learning rate (default {default_lr:g})",
    )
    parser.add_argument(
        "--weight-decay",
        type=float,
        default=0.1,
        help="AdamW weight decay on 2-D weights (default 0.1)",
    )
    parser.add_argument(
        "--warmup-steps", type=int, default=0, help="linear warmup steps before the cosine decay"
    )
    parser.add_argument("--batch-size", type=int, default=8, help="examples per step (default 8)")
    parser.add_argument(
        "--max-length",
        type=int,
        default=None,
        metavar="N",
        help="tokens per example (default the model's context); longer ones are cut, with a warning",
    )
    parser.add_argument(
        "--val-fraction", type=float, default=val, help=f"held out for validation (default {val})"
    )
    parser.add_argument(
        "--test-fraction", type=float, default=test, help=f"held out for the test (default {test})"
    )
    parser.add_argument(
        "--max-seconds", type=float, default=None, help="stop training after this many seconds"
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=123,
        help="drives the split, the head's init and the batch order",
    )
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N, mps or auto (default)")
    lora = parser.add_argument_group("LoRA (freezes the base model and trains low-rank adapters)")
    lora.add_argument(
        "--lora-rank", type=int, default=None, metavar="R", help="adapter rank; turns LoRA on"
    )
    lora.add_argument(
        "--lora-alpha",
        type=float,
        default=None,
        metavar="A",
        help="scale alpha/rank (default alpha = 2 x rank)",
    )
    lora.add_argument(
        "--lora-dropout",
        type=float,
        default=0.0,
        metavar="P",
        help="dropout on the adapter input (default 0)",
    )
    lora.add_argument(
        "--lora-targets",
        default="c_attn,c_proj,c_fc",
        metavar="NAMES",
        help="comma-separated linear layers to adapt (default c_attn,c_proj,c_fc)",
    )
    lora.add_argument(
        "--merge",
        action="store_true",
        help="also save the adapter merged into the base as a model folder",
    )


def common_options(args, task: str) -> dict:
    from gptlab.model.lora import LoRAConfig

    lora = None
    if args.lora_rank is not None:
        lora = LoRAConfig(
            rank=args.lora_rank,
            alpha=args.lora_alpha if args.lora_alpha is not None else 2.0 * args.lora_rank,
            dropout=args.lora_dropout,
            targets=tuple(t.strip() for t in args.lora_targets.split(",") if t.strip()),
        )
    return dict(
        data=args.data,
        init=args.init,
        out=args.out or time.strftime(f"runs/finetune-{task}-%Y%m%d-%H%M%S"),
        overwrite=args.overwrite,
        train=args.train,
        epochs=args.epochs,
        lr=args.lr,
        weight_decay=args.weight_decay,
        warmup_steps=args.warmup_steps,
        batch_size=args.batch_size,
        max_length=args.max_length,
        val_fraction=args.val_fraction,
        test_fraction=args.test_fraction,
        max_seconds=args.max_seconds,
        seed=args.seed,
        device=args.device,
        lora=lora,
        merge=args.merge,
    )


def run_classify(args) -> int:
    from gptlab.finetune.run_classify import ClassifyOptions, finetune_classifier

    finetune_classifier(ClassifyOptions(**common_options(args, "classify"), balance=args.balance))
    return 0


def run_instruct(args) -> int:
    from gptlab.finetune.run_instruct import InstructOptions, finetune_instruct

    finetune_instruct(
        InstructOptions(
            **common_options(args, "instruct"),
            keep_prompt_loss=args.keep_prompt_loss,
            max_new_tokens=args.max_new_tokens,
            answers=args.answers,
        )
    )
    return 0


def run_merge(args) -> int:
    from gptlab.checkpoints.finetuned import merge_checkpoint

    out = merge_checkpoint(args.checkpoint, args.out)
    print(f"merged the adapter into the base weights: {out} is a standard model folder")
    return 0
