"""Chat that remembers: a conversation in the Alpaca template, decoded on one KV cache.

The history is the template `gptlab finetune instruct` trains on, its preamble once and then one
instruction / response block per turn:

    Below is an instruction that describes a task. Write a response that appropriately completes the request.

    ### Instruction:
    {first instruction}

    ### Response:
    {first answer}

    ### Instruction:
    {second instruction}

    ### Response:
    {the answer being written}

Each turn's prompt is the whole history, encoded afresh (so it is exactly the text a model would
be given in one piece), but the KV cache keeps the keys and values of the tokens it has already
read: only the tokens past the longest prefix it shares with the new prompt go through the model.
When the history plus an answer would pass the context, the oldest turns are dropped (the cache
is then re-read from the preamble on, since every later position moved).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

from gptlab.errors import GptlabError
from gptlab.finetune.instruct import PREAMBLE
from gptlab.inference.config import GenerationConfig
from gptlab.inference.decode import decode_steps
from gptlab.model.kv_cache import KVCache


def turn_block(instruction: str) -> str:
    """One turn's instruction and the start of its response (Alpaca's sections)."""
    return f"### Instruction:\n{instruction}\n\n### Response:\n"


def conversation_text(turns: list[tuple[str, str]], instruction: str) -> str:
    """The prompt for `instruction` after the (instruction, answer) turns: with no turns, exactly
    gptlab.finetune.instruct.format_prompt(instruction)."""
    text = f"{PREAMBLE}\n\n"
    for asked, answered in turns:
        text += turn_block(asked) + answered + "\n\n"
    return text + turn_block(instruction)


def shared_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


class Conversation:
    """The turns so far and the KV cache that has read them."""

    def __init__(self, model, tokenizer, config: GenerationConfig) -> None:
        self.model, self.tokenizer, self.config = model, tokenizer, config
        try:  # once, here: otherwise every line typed would be refused, each time in its own words
            tokenizer.encode(conversation_text([], "?"))
        except GptlabError as exc:
            raise GptlabError(
                f"this model cannot chat: its tokenizer cannot write the instruction template "
                f"({exc}); chat with a model tuned by gptlab finetune instruct"
            ) from None
        self.turns: list[tuple[str, str]] = []
        self.cache = KVCache(model.config.n_layer)
        self.cached: list[int] = []  # the tokens whose keys and values the cache holds

    def reset(self) -> None:
        self.turns = []
        self.cache.reset()
        self.cached = []

    def prompt(self, instruction: str) -> tuple[list[int], int]:
        """(the encoded prompt, how many of the oldest turns were dropped to fit it). Dropping
        stops once the prompt leaves room for max_new_tokens; an instruction that fills the
        context alone is refused."""
        block_size = self.model.config.block_size
        dropped = 0
        ids = self.tokenizer.encode(conversation_text(self.turns, instruction))
        while self.turns and len(ids) + self.config.max_new_tokens > block_size:
            self.turns.pop(0)
            dropped += 1
            ids = self.tokenizer.encode(conversation_text(self.turns, instruction))
        if len(ids) >= block_size:
            raise GptlabError(
                f"the instruction makes a prompt of {len(ids)} tokens and the model's context is "
                f"{block_size}: no room to answer; shorten it"
            )
        return ids, dropped

    def ask(self, instruction: str) -> tuple[int, Iterator[str]]:
        """(turns dropped to make room, the answer's text pieces as they are decoded). The
        prompt is built now; the answer joins the history when its pieces are read to the end
        (or when the reader stops early: what was written so far)."""
        ids, dropped = self.prompt(instruction)
        keep = min(shared_prefix(self.cached, ids), len(ids) - 1)  # at least one token to feed
        self.cache.crop(keep)
        self.cached = self.cached[:keep]
        room = min(self.config.max_new_tokens, self.model.config.block_size - len(ids))
        config = dataclasses.replace(self.config, max_new_tokens=room)
        steps = decode_steps(self.model, ids, config, tokenizer=self.tokenizer, cache=self.cache)
        return dropped, self._answer(instruction, ids, steps)

    def _answer(self, instruction: str, ids: list[int], steps) -> Iterator[str]:
        chosen: list[int] = []
        text = ""
        try:
            for step in steps:
                chosen.append(step.tokens[0])
                text += step.text[0]
                yield step.text[0]
        finally:
            steps.close()
            self.cached = ids + chosen[:-1]  # the last token chosen was never fed
            self.turns.append((instruction, text.strip()))
