"""SMS-spam classification the way the book reports it, beside the control that says what
pretraining bought: the same fine-tuning from the pretrained model and from a never-trained model
of the same shape, on the book's balanced data (every class downsampled to the smallest, then a
70/10/20 split), with a step budget (epochs) so the numbers repeat on any machine.

    python benchmarks/sms_spam.py --pretrained runs/pretrain-tiny \\
        --data data/samples/sms_spam_collection/SMSSpamCollection --out runs/sms-bench

Prints one Markdown table (test accuracy, majority-class baseline, steps and seconds) to paste
into BENCHMARKS.md. runs/pretrain-tiny is made by the recipe in BENCHMARKS.md ("Fine-tuning").
"""

import argparse
import time
from pathlib import Path

import torch

from gptlab.checkpoints.load import load_model
from gptlab.checkpoints.model_folder import save_model
from gptlab.finetune.classify_job import finetune_classifier
from gptlab.finetune.options import ClassifyOptions
from gptlab.model.gpt import GPT


def random_twin(pretrained: str, out: Path, seed: int) -> Path:
    """A model folder with the pretrained model's config and tokenizer but fresh random weights."""
    model, tokenizer = load_model(pretrained, device="cpu")
    torch.manual_seed(seed)
    save_model(out, GPT(model.config), tokenizer)
    return out


def majority_share(split_labels: list[int]) -> float:
    counts = torch.bincount(torch.tensor(split_labels))
    return counts.max().item() / len(split_labels)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pretrained", required=True, help="a gptlab model or run folder")
    parser.add_argument("--data", required=True, help="the SMSSpamCollection file")
    parser.add_argument("--out", required=True, help="a new folder for the two fine-tuned models")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=123)
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=False)
    inits = {
        "pretrained": args.pretrained,
        "random init (control)": str(random_twin(args.pretrained, out / "random-init", args.seed)),
    }
    rows = []
    for name, init in inits.items():
        options = ClassifyOptions(
            data=args.data,
            init=init,
            out=str(out / name.split()[0]),
            balance="downsample",
            train="all",
            lr=1e-3,
            batch_size=16,
            epochs=args.epochs,
            max_length=64,
            seed=args.seed,
            device="cpu",
        )
        started = time.perf_counter()
        result = finetune_classifier(options, log=lambda line: None)
        seconds = time.perf_counter() - started
        test = result.test
        correct = sum(p == t for p, t in zip(test.predictions, test.labels, strict=True))
        rows.append(
            f"| {name} | {100 * test.accuracy:.2f}% ({correct}/{len(test.labels)}) "
            f"| {100 * result.val.accuracy:.2f}% | {100 * result.train.accuracy:.2f}% "
            f"| {100 * majority_share(test.labels):.2f}% | {args.epochs} "
            f"| {result.train_seconds:.0f} s ({seconds:.0f} s in all) |"
        )
        print(f"{name}: test {100 * test.accuracy:.2f}%", flush=True)
    print()
    print("| init | test accuracy | val | train | majority class (test) | epochs | training time |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
