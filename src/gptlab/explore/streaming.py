"""Streamed generation: `gptlab sample`'s decoding loop, one event per token as it is chosen.

The loop is gptlab.inference.decode.decode_steps itself (same processors, same KV cache), so a
greedy stream is exactly `gptlab sample --greedy`'s text. Each step hands over its logits; the
event carries the probability the model gave the chosen token (its own softmax, before
temperature and filters: what the model believed) and its top alternatives.

How it is served: each step runs on a worker thread (torch would block the event loop) while
holding the model's lock, so other views of the same model interleave between tokens. The
workers come from a limiter of their own, never from the pool that serves the page and the other
routes, and at most MAX_STREAMS streams run at once: one more is refused with 429 at once, so
40 open tabs cannot starve `GET /`. A reader that goes away stops the iteration, which is all
there is to cancel; any failure inside a step becomes an {"type": "error"} event, so a stream is
never an empty 200.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import AsyncIterator, Iterator

from gptlab.errors import GptlabError, require
from gptlab.explore.session import Explorer
from gptlab.inference.config import GenerationConfig
from gptlab.inference.decode import DecodeStep, decode_steps

MAX_NEW_TOKENS = 1000
MAX_STREAMS = 8  # concurrent streams per server; the next one gets 429
ALTERNATIVES = 5
log = logging.getLogger("gptlab.explore")


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


class StreamLimit:
    """Counts the open streams (at most `limit`) and owns the worker threads' limiter."""

    def __init__(self, limit: int = MAX_STREAMS) -> None:
        self.limit = limit
        self._slots = threading.BoundedSemaphore(limit)
        self._threads = None  # anyio.CapacityLimiter, made inside the event loop on first use

    def try_open(self) -> bool:
        return self._slots.acquire(blocking=False)

    def close(self) -> None:
        self._slots.release()

    def threads(self):
        if self._threads is None:
            import anyio  # comes with FastAPI (the explore extra)

            self._threads = anyio.CapacityLimiter(self.limit)
        return self._threads

    def busy_message(self) -> str:
        return (
            f"{self.limit} generations are already streaming from this server; "
            "wait for one to finish and try again"
        )


def stream_events(explorer: Explorer, prompt: str, config: GenerationConfig) -> Iterator[dict]:
    """Events: {"type": "token", id, text, prob, alternatives} per new token, then {"type":
    "done", text, finish_reason} (text: the whole continuation, as `gptlab sample` prints it), or
    {"type": "error", message} as the last event. The prompt and settings are checked now,
    before any event (a bad one raises GptlabError)."""
    prompt_ids = explorer.encode(prompt)
    steps = decode_steps(
        explorer.model, prompt_ids, config, tokenizer=explorer.tokenizer, logits=True
    )
    return _events(explorer, steps)


def _events(explorer: Explorer, steps: Iterator[DecodeStep]) -> Iterator[dict]:
    try:
        while True:
            with explorer.lock:  # one step at a time: the other views run between tokens
                step = next(steps, None)
            if step is None:
                return
            yield token_event(explorer, step)
            if step.done:
                row = step.rows[0]
                yield {"type": "done", "text": row.text, "finish_reason": row.finish_reason}
                return
    except GptlabError as exc:
        yield {"type": "error", "message": str(exc)}
    except Exception as exc:  # noqa: BLE001  (a bug: logged, and the reader is told)
        log.exception("gptlab explore: generation failed")
        yield {
            "type": "error",
            "message": f"generation failed ({type(exc).__name__}); see the server's output",
        }
    finally:
        steps.close()


def token_event(explorer: Explorer, step: DecodeStep) -> dict:
    probs = step.logits[0].float().softmax(-1)
    chosen = step.tokens[0]
    values, ids = probs.topk(min(ALTERNATIVES, probs.numel()))
    decode = explorer.tokenizer.decode
    return {
        "type": "token",
        "id": chosen,
        "text": decode([chosen]),
        "prob": float(probs[chosen]),
        "alternatives": [
            {"id": i, "text": decode([i]), "prob": p}
            for i, p in zip(ids.tolist(), values.tolist(), strict=True)
        ],
    }


async def ndjson_lines(events: Iterator[dict], limit: StreamLimit) -> AsyncIterator[str]:
    """The events as JSON lines, each computed on a worker thread of the stream limiter. Holds
    one of the limit's slots (taken by the caller) until the stream ends or the reader leaves."""
    import anyio

    try:
        while True:
            # Not abandoned on cancel: a reader leaving waits for the step in flight, then the
            # generator is closed below (closing a running generator is an error).
            event = await anyio.to_thread.run_sync(next, events, None, limiter=limit.threads())
            if event is None:
                return
            yield json.dumps(event) + "\n"
    finally:
        events.close()
        limit.close()
