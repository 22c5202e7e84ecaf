"""Instruction tuning: the Alpaca prompt template, loss masking and answer generation.

The template (Stanford Alpaca's, as used in "Build a Large Language Model (From Scratch)"), where
the "### Input:" section is left out when the input is empty:

    Below is an instruction that describes a task. Write a response that appropriately completes the request.

    ### Instruction:
    {instruction}

    ### Input:
    {input}

    ### Response:
    {output}<|endoftext|>

A training sequence is prompt + response + end-of-text (tokenizers without one, like the character
tokenizer, get no end marker: answers then end at the length limit or at a "\\n\\n###" the model
writes). The model learns to predict each next token; the targets are the inputs shifted by one,
with -100 (ignored by the loss) on

    - every target that is part of the prompt (unless keep_prompt_loss): the model is not asked to
      reproduce the instruction, only to answer it;
    - every padding position: batches are padded on the right to their longest sequence.

Sequences longer than max_length + 1 tokens are cut at the end (the response is shortened).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from gptlab.errors import GptlabError
from gptlab.finetune.examples import InstructionExample
from gptlab.finetune.loop import StepResult
from gptlab.inference.config import GenerationConfig
from gptlab.inference.generate import generate
from gptlab.model.batching import IGNORE_INDEX, right_pad
from gptlab.model.gpt import GPT
from gptlab.tokenizers.base import Tokenizer

TEMPLATE_NAME = "alpaca"
PREAMBLE = (
    "Below is an instruction that describes a task. "
    "Write a response that appropriately completes the request."
)
ANSWER_STOP = "\n\n###"  # the model starting a new template section ends its answer


def format_prompt(instruction: str, input: str = "") -> str:
    """The Alpaca prompt up to and including "### Response:\\n" (see the module docstring)."""
    text = f"{PREAMBLE}\n\n### Instruction:\n{instruction}"
    if input:
        text += f"\n\n### Input:\n{input}"
    return text + "\n\n### Response:\n"


@dataclass(frozen=True)
class EncodedExample:
    ids: list[int]  # prompt + response (+ end-of-text), cut to max_length + 1
    prompt_length: int  # how many of ids belong to the prompt


def encode_example(
    tokenizer: Tokenizer, example: InstructionExample, max_length: int
) -> tuple[EncodedExample, bool]:
    """(the encoded example, whether it was cut to fit max_length).

    Prompt and response are encoded separately, so the prompt's length in tokens is exact; the
    prompt ends in a newline, which GPT-2's BPE never merges with the text after it.
    """
    prompt = tokenizer.encode(format_prompt(example.instruction, example.input))
    response = tokenizer.encode(example.output)
    if tokenizer.eot_id is not None:
        response.append(tokenizer.eot_id)
    ids = prompt + response
    return EncodedExample(ids[: max_length + 1], len(prompt)), len(ids) > max_length + 1


def inputs_and_targets(
    examples: Sequence[EncodedExample], pad_id: int, keep_prompt_loss: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """A right-padded batch: inputs (B, T) and targets (B, T) with -100 on prompt and padding.

    Position t of a row predicts ids[t + 1]; that target belongs to the prompt when
    t + 1 < prompt_length, so the first prompt_length - 1 targets are masked.
    """
    inputs = right_pad([e.ids[:-1] for e in examples], pad_id)
    targets = right_pad([e.ids[1:] for e in examples], IGNORE_INDEX)
    if not keep_prompt_loss:
        for row, example in enumerate(examples):
            targets[row, : example.prompt_length - 1] = IGNORE_INDEX
    return inputs, targets


def instruct_step(model: GPT) -> Callable[[tuple[torch.Tensor, torch.Tensor]], StepResult]:
    def step(batch: tuple[torch.Tensor, torch.Tensor]) -> StepResult:
        inputs, targets = batch
        _, loss = model(inputs, targets)
        return StepResult(loss=loss, weight=int((targets != IGNORE_INDEX).sum()))

    return step


@torch.no_grad()
def mean_loss(model: GPT, batches: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> float:
    """The loss per target token over all batches (each batch weighted by its target count)."""
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for inputs, targets in batches:
        _, loss = model(inputs, targets)
        n = int((targets != IGNORE_INDEX).sum())
        total += loss.item() * n
        count += n
    model.train(was_training)
    return total / max(count, 1)


def answer_config(
    max_new_tokens: int, temperature: float = 0.0, top_k: int | None = None, seed: int | None = None
) -> GenerationConfig:
    """How answers are decoded: greedy by default; ends at end-of-text or a new "\\n\\n###" section."""
    return GenerationConfig(
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        top_k=top_k,
        seed=seed,
        stop_strings=(ANSWER_STOP,),
    )


def prompt_ids(tokenizer: Tokenizer, instruction: str, input: str, block_size: int) -> list[int]:
    """The whole encoded prompt; one that leaves no room in the context to answer is refused.

    The prompt is never cut: a model shown half an instruction answers another question (and a
    prompt cut to make room for a long answer can lose the instruction altogether).
    """
    ids = tokenizer.encode(format_prompt(instruction, input))
    if len(ids) >= block_size:
        raise GptlabError(
            f"the prompt is {len(ids)} tokens and the model's context {block_size}: no room to "
            "answer; shorten the instruction and its input"
        )
    return ids


def answer_room(prompt: Sequence[int], block_size: int, max_new_tokens: int) -> int:
    """New tokens that fit in the context after the prompt, at most max_new_tokens."""
    return min(max_new_tokens, block_size - len(prompt))


def generate_answers(
    model: GPT,
    tokenizer: Tokenizer,
    examples: Sequence[InstructionExample],
    config: GenerationConfig,
    batch_size: int = 8,
    progress: Callable[[int], None] = lambda n: None,
) -> list[str]:
    """One answer per example, generated in batches; progress(n) after each batch of n.

    Answers stay within the model's context: a batch's length limit is the smallest room its
    prompts leave (at most config.max_new_tokens). An example whose prompt fills the context is
    answered with an empty string.
    """
    block_size = model.config.block_size
    answers = []
    for start in range(0, len(examples), batch_size):
        chunk = examples[start : start + batch_size]
        prompts, fits = [], []
        for e in chunk:
            ids = tokenizer.encode(format_prompt(e.instruction, e.input))
            fits.append(len(ids) < block_size)
            if fits[-1]:
                prompts.append(ids)
        if prompts:
            room = min(answer_room(p, block_size, config.max_new_tokens) for p in prompts)
            batch_config = dataclasses.replace(config, max_new_tokens=room)
            generated = iter(generate(model, prompts, batch_config, tokenizer=tokenizer))
        answers += [next(generated).text.strip() if fit else "" for fit in fits]
        progress(len(chunk))
    return answers
