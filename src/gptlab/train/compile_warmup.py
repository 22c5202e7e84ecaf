"""torch.compile's warm-up, before the training clock starts (train.compile = true).

torch.compile compiles lazily: the first call with each new input shape (and each mode, training
or eval) traces and compiles the model, which on a 2-core CPU takes tens of seconds. Left inside
the first step, that time is charged to train.max_seconds, and a compiled 180-s run loses most of
what the faster steps win. So, as the GPU speedrun records time themselves, the trainer compiles
first, on dummy batches of every shape the run will use:

    training   forward + backward on each micro-batch size the steps take (a batch-size ramp has
               several; after the second torch marks the batch dimension dynamic)
    evaluation forward in eval mode, without gradients, on the eval batch

and only then starts the clock. The warm-up leaves the run as it found it: the gradients it made
are dropped, the optimizer is not stepped, and every RNG (dropout draws from torch's) is put back,
so a compiled run trains on the same numbers as an uncompiled one. Its seconds are reported
beside the training seconds (`compile_warmup_s`).

The warm-up is also where a machine that cannot compile says so: on CPU, torch.compile's inductor
backend needs a working C++ compiler, and without one every call fails. Such a failure is raised as
CompileUnavailable (one line saying why), and the trainer goes on uncompiled: a preset may then
ask for compile and still run everywhere, only slower where no compiler is found.
"""

from __future__ import annotations

import time

import torch
from torch._dynamo.exc import BackendCompilerFailed

from gptlab.rng import capture_rng_state, restore_rng_state
from gptlab.train.distributed import maybe_no_sync


class CompileUnavailable(Exception):
    """torch.compile's backend failed to build the model here (e.g. no C++ compiler on CPU)."""


def dummy_batch(rows: int, block_size: int, device: torch.device):
    """(x, y) of the real shapes and dtype. Two tensors, not one passed twice: torch.compile
    guards on inputs that alias each other, and the real x and y never do."""
    return tuple(torch.zeros((rows, block_size), dtype=torch.long, device=device) for _ in range(2))


def warm_up(
    forward_model: torch.nn.Module,
    model: torch.nn.Module,
    *,
    train_rows: list[int],
    eval_rows: int,
    block_size: int,
    device: torch.device,
    autocast,
) -> float:
    """Run the compiled `forward_model` once per shape (module docstring); returns the seconds.

    `model` is the plain module under it, whose gradients are cleared afterwards.
    """
    started = time.perf_counter()
    rng = capture_rng_state()
    was_training = forward_model.training
    try:
        forward_model.train()
        for rows in sorted(set(train_rows), reverse=True):  # the usual size first
            with maybe_no_sync(forward_model, sync=False), autocast:
                _, loss = forward_model(*dummy_batch(rows, block_size, device))
            loss.backward()
        forward_model.eval()
        with torch.no_grad(), autocast:
            forward_model(*dummy_batch(eval_rows, block_size, device))
    except BackendCompilerFailed as exc:
        raise CompileUnavailable(first_line(exc.inner_exception)) from exc
    finally:  # a failed warm-up leaves the run as untouched as a finished one
        model.zero_grad(set_to_none=True)
        forward_model.train(was_training)
        restore_rng_state(rng)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - started


def first_line(exc: BaseException) -> str:
    """The exception's kind and the first line of its message (inductor's run to many lines)."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
