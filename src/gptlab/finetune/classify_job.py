"""`gptlab finetune classify`: read labelled texts, fine-tune a classifier, score it, save it.

file -> labelled texts -> (balance) -> train / val / test split
     -> pretrained GPT (+ LoRA or --train head|last-K|all) + a new linear head
     -> epochs of AdamW, val loss and accuracy after each
     -> train / val / test accuracy, test confusion matrix (table + PNG)
     -> the fine-tuned folder (see gptlab.checkpoints.finetuned) and metrics.json
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from gptlab.checkpoints.finetuned import (
    CONFUSION_PNG_FILE,
    CONFUSION_TABLE_FILE,
    FINAL_METRICS_FILE,
    check_output_dir,
    init_reference,
    save_finetuned,
    writing_output,
)
from gptlab.device import resolve_device
from gptlab.fileio import atomic_write_text
from gptlab.finetune.classify import (
    GPTClassifier,
    SplitScore,
    balanced_class_weights,
    classification_step,
    encode_texts,
    evaluate,
    make_batches,
)
from gptlab.finetune.confusion import confusion_matrix, confusion_table, save_confusion_png
from gptlab.finetune.examples import (
    downsample_to_smallest_class,
    label_names,
    pad_id_for,
    read_labeled_texts,
    split_examples,
)
from gptlab.finetune.loop import EpochStats, fit
from gptlab.finetune.options import ClassifyOptions, Log
from gptlab.finetune.trainable import describe_parameters, load_trainable_model
from gptlab.rng import seed_everything


@dataclass(frozen=True)
class ClassifyResult:
    out: Path
    labels: list[str]
    train: SplitScore
    val: SplitScore
    test: SplitScore
    epochs: list[dict]
    train_seconds: float


def _pct(x: float) -> str:
    return f"{100 * x:.2f}%"


def finetune_classifier(options: ClassifyOptions, log: Log = print) -> ClassifyResult:
    options.validate()
    final_out = check_output_dir(options.out, options.overwrite, options.init)
    seed_everything(options.seed)
    examples = read_labeled_texts(options.data)
    labels = label_names(examples, options.data)
    if options.balance == "downsample":
        examples = downsample_to_smallest_class(examples, options.seed)
    splits = split_examples(
        examples, options.val_fraction, options.test_fraction, options.seed, options.data
    )
    device = resolve_device(options.device)

    body, tokenizer = load_trainable_model(options, device, log)
    classifier = GPTClassifier(body, len(labels)).to(device)  # the new head always trains
    log(describe_parameters(classifier))
    max_length, pad_id = options.max_length_for(body.config.block_size), pad_id_for(tokenizer)
    encoded = {
        name: encode_texts(tokenizer, getattr(splits, name), labels, max_length)
        for name in ("train", "val", "test")
    }
    truncated = sum(e.truncated for e in encoded.values())
    if truncated:
        log(
            f"warning: {truncated} text(s) are longer than {max_length} tokens; only their first {max_length} tokens are used"
        )
    counts = ", ".join(f"{label} {sum(e.label == label for e in examples)}" for label in labels)
    log(
        f"{len(examples)} examples ({counts}): train {len(encoded['train'])}, val {len(encoded['val'])}, test {len(encoded['test'])}"
    )

    class_weights = None
    if options.balance == "weight":
        class_weights = balanced_class_weights(encoded["train"].labels, len(labels)).to(device)
    generator = torch.Generator().manual_seed(options.seed)
    val_batches = make_batches(encoded["val"], options.batch_size, pad_id, device)
    history: list[dict] = []

    def train_batches(epoch: int):
        return make_batches(
            encoded["train"], options.batch_size, pad_id, device, shuffle=True, generator=generator
        )

    def on_epoch_end(stats: EpochStats) -> None:
        val = evaluate(classifier, val_batches, class_weights)
        partial = "" if stats.complete else " (stopped by the time budget)"
        log(
            f"epoch {stats.epoch}: train loss {stats.loss:.4f} acc {_pct(stats.accuracy)} | "
            f"val loss {val.loss:.4f} acc {_pct(val.accuracy)}{partial}"
        )
        history.append(
            {
                "epoch": stats.epoch,
                "train_loss": stats.loss,
                "train_accuracy": stats.accuracy,
                "val_loss": val.loss,
                "val_accuracy": val.accuracy,
                "complete": stats.complete,
            }
        )

    started = time.perf_counter()
    fitted = fit(
        classifier,
        train_batches,
        math.ceil(len(encoded["train"]) / options.batch_size),
        classification_step(classifier, class_weights),
        options,
        device,
        on_epoch_end,
    )
    log(
        f"trained {fitted.steps} steps in {fitted.seconds:.1f} s ({time.perf_counter() - started:.1f} s with evaluation)"
    )

    scores = {
        name: evaluate(
            classifier,
            make_batches(encoded[name], options.batch_size, pad_id, device),
            class_weights,
        )
        for name in ("train", "val", "test")
    }
    log(
        "final accuracy: "
        + ", ".join(f"{name} {_pct(score.accuracy)}" for name, score in scores.items())
    )
    matrix = confusion_matrix(scores["test"].labels, scores["test"].predictions, len(labels))
    table = confusion_table(matrix, labels)
    log("test confusion matrix (rows true, columns predicted):\n" + table.rstrip())

    task = {
        "kind": "classifier",
        "labels": labels,
        "max_length": max_length,
        "pad_id": pad_id,
        "base": init_reference(options.init),
        "train": "lora" if options.lora_rank is not None else options.train,
        "balance": options.balance,
        "data": str(Path(options.data).resolve()),
        "seed": options.seed,
    }
    metrics = {
        "epochs": history,
        "train_seconds": fitted.seconds,
        "steps": fitted.steps,
        **{f"{name}_accuracy": s.accuracy for name, s in scores.items()},
        **{f"{name}_loss": s.loss for name, s in scores.items()},
    }
    # An earlier result in --out is replaced only now, by a complete new one.
    with writing_output(final_out) as out:
        atomic_write_text(out / CONFUSION_TABLE_FILE, table)
        title = f"test accuracy {_pct(scores['test'].accuracy)}"
        save_confusion_png(matrix, labels, out / CONFUSION_PNG_FILE, title)
        save_finetuned(
            out,
            body,
            tokenizer,
            task,
            head=classifier.head,
            lora=options.lora(),
            merge=options.merge,
        )
        atomic_write_text(out / FINAL_METRICS_FILE, json.dumps(metrics, indent=2))
    log(f"saved the classifier to {final_out}")
    return ClassifyResult(
        final_out, labels, scores["train"], scores["val"], scores["test"], history, fitted.seconds
    )
