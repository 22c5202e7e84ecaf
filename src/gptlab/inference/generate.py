"""Text generation: `generate` and `generate_text`, the whole-sequence face of `decode_steps`.

One step of decoding is

    logits of the next token (B, vocab)                       the model, with or without KV cache
      -> repetition penalty -> temperature -> top-k -> top-p    logits processors, in HF's order
      -> argmax (greedy) or a draw from the softmax             choose_next_tokens

and decoding repeats it until every sequence has max_new_tokens, produced the end-of-text token,
or (given a tokenizer) produced one of the stop strings. The loop is
gptlab.inference.decode.decode_steps, a generator every caller shares; `generate` runs it to the
end and returns the sequences. To stream, iterate decode_steps yourself.

Where each part lives: GenerationConfig (inference/config.py), the processors
(inference/sampling.py), the model's side with its KV caches and the context window
(inference/forward.py), incremental text and stop strings (inference/text_stream.py). Weight
dtypes and int8 quantization are properties of the model: gptlab.inference.precision.
Speculative decoding: gptlab.inference.speculative.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from gptlab.errors import require
from gptlab.inference.config import GenerationConfig
from gptlab.inference.decode import decode_steps


@dataclass
class Generation:
    """One generated sequence: the new tokens (without the end-of-text token) and their text."""

    prompt_index: int
    sample_index: int
    token_ids: list[int]
    finish_reason: str  # FINISH_LENGTH, FINISH_EOT or FINISH_STOP
    text: str | None = None  # set when a tokenizer was given; cut before a stop string


def generate(
    model,
    prompt_ids: Sequence[int] | Sequence[Sequence[int]],
    config: GenerationConfig,
    *,
    tokenizer=None,
) -> list[Generation]:
    """Continue one prompt (a list of token ids) or a batch of them, num_samples times each.

    Returns the sequences prompt by prompt, sample by sample. A tokenizer is needed for stop
    strings and gives each Generation its text; its end-of-text token (tokenizer.eot_id) stops
    a sequence when config.stop_at_eot.
    """
    steps = decode_steps(model, prompt_ids, config, tokenizer=tokenizer)
    last = deque(steps, maxlen=1).pop()  # run to the end; every row's state is in each step
    return [
        Generation(row.prompt_index, row.sample_index, row.tokens, row.finish_reason, row.text)
        for row in last.rows
    ]


def encode_prompts(tokenizer, prompts: str | Sequence[str]) -> list[list[int]]:
    """Text prompt(s) -> token ids. Special tokens written in a prompt (GPT-2's "<|endoftext|>")
    count as those tokens: a user typing a prompt means them, unlike text read from a corpus."""
    if isinstance(prompts, str):
        prompts = [prompts]
    prompt_ids = []
    for prompt in prompts:
        require(len(prompt) > 0, "the prompt is empty; give some text to continue")
        prompt_ids.append(tokenizer.encode(prompt, allow_special=True))
    return prompt_ids


def generate_text(
    model, tokenizer, prompts: str | Sequence[str], config: GenerationConfig
) -> list[Generation]:
    """Encode text prompt(s), generate, and return Generations with their decoded text."""
    return generate(model, encode_prompts(tokenizer, prompts), config, tokenizer=tokenizer)
