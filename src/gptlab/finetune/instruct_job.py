"""`gptlab finetune instruct`: instruction-tune a GPT on Alpaca-format data, then answer the test split.

file -> Alpaca examples -> train / val / test split
     -> template + tokens, prompt and padding masked with -100 (gptlab.finetune.instruct)
     -> pretrained GPT (+ LoRA or --train last-K|all), epochs of AdamW, val loss after each
     -> the fine-tuned folder (a standard model folder + task.json)
     -> greedy answers for the held-out test examples: OUT/test_answers.json, each record
        {instruction, input, output (the reference), model_response}
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from gptlab.checkpoints.finetuned import (
    ANSWERS_FILE,
    FINAL_METRICS_FILE,
    check_output_dir,
    init_reference,
    save_finetuned,
    writing_output,
)
from gptlab.device import resolve_device
from gptlab.errors import GptlabError
from gptlab.fileio import atomic_write_text
from gptlab.finetune.examples import batch_indices, pad_id_for, read_instructions, split_examples
from gptlab.finetune.instruct import (
    ANSWER_STOP,
    TEMPLATE_NAME,
    EncodedExample,
    answer_config,
    encode_example,
    generate_answers,
    inputs_and_targets,
    instruct_step,
    mean_loss,
)
from gptlab.finetune.loop import EpochStats, fit
from gptlab.finetune.options import InstructOptions, Log
from gptlab.finetune.trainable import describe_parameters, load_trainable_model
from gptlab.rng import seed_everything


@dataclass(frozen=True)
class InstructResult:
    out: Path
    val_loss: float
    epochs: list[dict]
    answers_file: Path | None
    train_seconds: float


def finetune_instruct(options: InstructOptions, log: Log = print) -> InstructResult:
    options.validate()
    out = check_output_dir(options.out, options.overwrite, options.init)
    seed_everything(options.seed)
    examples = read_instructions(options.data)
    splits = split_examples(
        examples, options.val_fraction, options.test_fraction, options.seed, options.data
    )
    device = resolve_device(options.device)

    model, tokenizer = load_trainable_model(options, device, log)
    log(describe_parameters(model))
    max_length, pad_id = options.max_length_for(model.config.block_size), pad_id_for(tokenizer)
    encoded = {
        name: _encode_split(tokenizer, getattr(splits, name), max_length, name, log)
        for name in ("train", "val")
    }
    log(
        f"{len(examples)} examples: train {len(encoded['train'])}, val {len(encoded['val'])}, test {len(splits.test)}"
    )

    def batches(data: list[EncodedExample], shuffle: bool, generator=None):
        groups = batch_indices(len(data), options.batch_size, shuffle, generator)
        return [
            tuple(
                t.to(device)
                for t in inputs_and_targets([data[i] for i in g], pad_id, options.keep_prompt_loss)
            )
            for g in groups
        ]

    generator = torch.Generator().manual_seed(options.seed)
    val_batches = batches(encoded["val"], shuffle=False)
    history: list[dict] = []

    def on_epoch_end(stats: EpochStats) -> None:
        val_loss = mean_loss(model, val_batches)
        partial = "" if stats.complete else " (stopped by the time budget)"
        log(f"epoch {stats.epoch}: train loss {stats.loss:.4f} | val loss {val_loss:.4f}{partial}")
        history.append(
            {
                "epoch": stats.epoch,
                "train_loss": stats.loss,
                "val_loss": val_loss,
                "complete": stats.complete,
            }
        )

    fitted = fit(
        model,
        lambda epoch: batches(encoded["train"], True, generator),
        math.ceil(len(encoded["train"]) / options.batch_size),
        instruct_step(model),
        options,
        device,
        on_epoch_end,
    )
    log(
        f"trained {fitted.steps} steps in {fitted.seconds:.1f} s; val loss {history[-1]['val_loss']:.4f}"
    )

    task = {
        "kind": "instruct",
        "template": TEMPLATE_NAME,
        "answer_stop": ANSWER_STOP,
        "max_length": max_length,
        "pad_id": pad_id,
        "keep_prompt_loss": options.keep_prompt_loss,
        "base": init_reference(options.init),
        "train": "lora" if options.lora_rank is not None else options.train,
        "data": str(Path(options.data).resolve()),
        "seed": options.seed,
    }
    # The model first, in one step (an earlier result in --out is replaced only now): answering
    # the test split takes long, and a kill during it must not cost the model.
    with writing_output(out) as stage:
        save_finetuned(stage, model, tokenizer, task, lora=options.lora(), merge=options.merge)
    log(f"saved the model to {out}")

    answers_file = None
    test = splits.test if options.answers is None else splits.test[: options.answers]
    if test:
        started = time.perf_counter()
        with tqdm(total=len(test), desc="answering the test split", unit="example") as bar:
            answers = generate_answers(
                model, tokenizer, test, answer_config(options.max_new_tokens), progress=bar.update
            )
        records = [{**e.to_dict(), "model_response": a} for e, a in zip(test, answers, strict=True)]
        answers_file = out / ANSWERS_FILE
        atomic_write_text(answers_file, json.dumps(records, indent=2, ensure_ascii=False))
        log(
            f"answered {len(test)} test examples in {time.perf_counter() - started:.1f} s: {answers_file}"
        )
    metrics = {
        "epochs": history,
        "val_loss": history[-1]["val_loss"],
        "train_seconds": fitted.seconds,
        "steps": fitted.steps,
    }
    atomic_write_text(out / FINAL_METRICS_FILE, json.dumps(metrics, indent=2))
    return InstructResult(out, history[-1]["val_loss"], history, answers_file, fitted.seconds)


def _encode_split(
    tokenizer, examples, max_length: int, name: str, log: Log
) -> list[EncodedExample]:
    """Encode a split; cut examples are counted, and ones whose prompt leaves no response token dropped."""
    encoded, cut, dropped = [], 0, 0
    for example in examples:
        item, was_cut = encode_example(tokenizer, example, max_length)
        if item.prompt_length >= len(item.ids):
            dropped += 1
            continue
        cut += was_cut
        encoded.append(item)
    if cut:
        log(
            f"warning: {cut} {name} example(s) are longer than {max_length} tokens; their responses are cut"
        )
    if dropped:
        log(
            f"warning: {dropped} {name} example(s) dropped: the prompt alone fills {max_length} tokens"
        )
    if not encoded:
        raise GptlabError(f"no {name} example fits in {max_length} tokens; raise max_length")
    return encoded
