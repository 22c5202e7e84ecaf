"""Streamed generation: `gptlab sample`'s decoding loop, one event per token as it is chosen.

The loop is gptlab.inference.generate.generate itself (same processors, same KV cache), so a
greedy stream is exactly `gptlab sample --greedy`'s text. Its `on_token` callback hands over each
step's logits; the event carries the probability the model gave the chosen token (its own
softmax, before temperature and filters: what the model believed) and its top alternatives.

The generation runs on a worker thread that holds the model's lock and puts events on a queue;
the response reads them as they come. A client that goes away stops the loop at its next step.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator

import torch

from gptlab.errors import GptlabError, require
from gptlab.explore.session import Explorer
from gptlab.inference.generate import GenerationConfig, generate

MAX_NEW_TOKENS = 1000
ALTERNATIVES = 5
_END = object()


class Cancelled(Exception):
    """The reader went away; raised inside the loop to end it."""


def generation_config(
    max_new_tokens: int, temperature: float, top_k: int | None, top_p: float, seed: int | None
) -> GenerationConfig:
    require(
        1 <= max_new_tokens <= MAX_NEW_TOKENS,
        f"max_new_tokens must be 1 to {MAX_NEW_TOKENS}, got {max_new_tokens}",
    )
    return GenerationConfig(
        max_new_tokens=max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p, seed=seed
    )


def stream_generation(explorer: Explorer, prompt: str, config: GenerationConfig) -> Iterator[dict]:
    """Events: {"type": "token", id, text, prob, alternatives} per new token, then {"type":
    "done", text, finish_reason} (text: the whole continuation, as `gptlab sample` prints it), or
    {"type": "error", message}. The prompt is checked now, before any event (a bad one raises)."""
    with explorer.lock:
        prompt_ids = explorer.encode(prompt)
    events: queue.Queue = queue.Queue()
    cancelled = threading.Event()
    tokenizer = explorer.tokenizer
    vocab = explorer.model.config.vocab_size

    def on_token(_step: int, logits: torch.Tensor, tokens: torch.Tensor) -> None:
        if cancelled.is_set():
            raise Cancelled
        probs = logits[0, :vocab].float().softmax(-1)
        chosen = int(tokens[0])
        values, ids = probs.topk(ALTERNATIVES)
        events.put(
            {
                "type": "token",
                "id": chosen,
                "text": tokenizer.decode([chosen]),
                "prob": float(probs[chosen]),
                "alternatives": [
                    {"id": i, "text": tokenizer.decode([i]), "prob": p}
                    for i, p in zip(ids.tolist(), values.tolist(), strict=True)
                ],
            }
        )

    def work() -> None:
        try:
            with explorer.lock, torch.inference_mode():
                result = generate(
                    explorer.model, prompt_ids, config, tokenizer=tokenizer, on_token=on_token
                )[0]
            events.put({"type": "done", "text": result.text, "finish_reason": result.finish_reason})
        except Cancelled:
            pass
        except GptlabError as exc:
            events.put({"type": "error", "message": str(exc)})
        finally:
            events.put(_END)

    def read() -> Iterator[dict]:
        worker = threading.Thread(target=work, name=f"generate-{explorer.name}", daemon=True)
        worker.start()
        try:
            while (event := events.get()) is not _END:
                yield event
        finally:
            cancelled.set()

    return read()
