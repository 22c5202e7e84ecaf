"""Data-parallel training across processes (DDP), started by torchrun.

    torchrun --nproc_per_node=N -m gptlab train ...

torchrun starts N copies of the program and gives each RANK, LOCAL_RANK and WORLD_SIZE in the
environment. Each process holds a full copy of the model, trains on its own share of every batch,
and DDP averages the gradients across processes during backward. Gradient accumulation skips the
averaging (no_sync) on all but the last micro-step, so the network is used once per optimizer step.
Only rank 0 writes files and prints.

Models too large for one GPU need their parameters sharded as well (FSDP,
torch.distributed.fsdp.fully_shard); see the README's distributed section for that path.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel


@dataclass(frozen=True)
class DistributedContext:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launched_by_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def init_distributed(device_name: str) -> tuple[DistributedContext, str]:
    """Join the process group when started by torchrun. Returns the context and the device to use.

    NCCL on CUDA (each process drives the GPU numbered by its LOCAL_RANK), gloo on CPU.
    """
    if not launched_by_torchrun() or int(os.environ["WORLD_SIZE"]) == 1:
        return DistributedContext(), device_name
    context = DistributedContext(
        rank=int(os.environ["RANK"]),
        local_rank=int(os.environ.get("LOCAL_RANK", 0)),
        world_size=int(os.environ["WORLD_SIZE"]),
    )
    use_cuda = device_name.startswith("cuda") or (
        device_name == "auto" and torch.cuda.is_available()
    )
    if use_cuda:
        torch.cuda.set_device(context.local_rank)
        device_name = f"cuda:{context.local_rank}"
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return context, device_name


def shutdown_distributed(context: DistributedContext) -> None:
    if context.enabled and dist.is_initialized():
        dist.destroy_process_group()


def wrap_model(
    model: torch.nn.Module, context: DistributedContext, device: torch.device
) -> torch.nn.Module:
    if not context.enabled:
        return model

    device_ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=device_ids)


def maybe_no_sync(model: torch.nn.Module, sync: bool):
    """A context that skips DDP's gradient all-reduce unless `sync` (the last micro-step)."""
    if sync or not hasattr(model, "no_sync"):
        return contextlib.nullcontext()
    return model.no_sync()


def mean_across_ranks(
    values: list[float], context: DistributedContext, device: torch.device
) -> list[float]:
    """Average a few floats over all processes (every rank gets the same result)."""
    if not context.enabled:
        return values
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return (tensor / context.world_size).tolist()


def broadcast_from_main(value, context: DistributedContext):
    """Rank 0's `value` (any picklable object), on every rank."""
    if not context.enabled:
        return value
    holder = [value]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


def barrier(context: DistributedContext) -> None:
    if context.enabled:
        dist.barrier()
