"""Data-parallel training across processes (DDP or FSDP), started by torchrun.

    torchrun --nproc_per_node=N -m gptlab train ... [train.distributed=fsdp]

torchrun starts N copies of the program and gives each RANK, LOCAL_RANK and WORLD_SIZE in the
environment. Every process trains on its own share of every batch; only rank 0 writes files and
prints. train.distributed chooses how the model is spread over the processes:

- "ddp" (the default): each process holds a full copy of the model and optimizer, and DDP
  averages the gradients during backward. Gradient accumulation skips the averaging (no_sync)
  on all but the last micro-step, so the network is used once per optimizer step.
- "fsdp": FSDP2 (torch.distributed.fsdp.fully_shard) on each transformer block, then on the
  whole model (embeddings, final norm, head). Each process keeps 1/N of the parameters,
  gradients and AdamW moments; a block's full weights are all-gathered just before it runs and
  freed after, and gradients are reduce-scattered. For models whose optimizer state does not
  fit on one GPU. Checkpoints gather a full state dict onto rank 0, so they load in one process
  like any other; a run resumes with the same number of processes.

The trainer sees all of this through one `Parallelism` object (start_parallelism): which rank
writes, how the model is spread, how numbers are averaged and checkpoints gathered.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_optimizer_state_dict,
)
from torch.distributed.fsdp import FSDPModule, fully_shard
from torch.distributed.tensor import DTensor
from torch.nn.parallel import DistributedDataParallel

from gptlab.device import resolve_device
from gptlab.model.state import load_state_checked


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


def shard_model(model: torch.nn.Module) -> None:
    """FSDP2, in place: each block is its own shard group, then the root holds the rest.

    Per block, so that only one block's full weights exist at a time; the tied embedding and
    head share one parameter, which stays in the root group with the final norm. Must run before
    the optimizer is built: the parameters become DTensors (each rank's shard of the whole).
    """
    for block in model.blocks:
        fully_shard(block)
    fully_shard(model)


def maybe_no_sync(model: torch.nn.Module, sync: bool):
    """A context that skips the gradient all-reduce (DDP) or reduce-scatter (FSDP) unless `sync`
    (the last micro-step)."""
    inner = getattr(model, "_orig_mod", model)  # torch.compile's wrapper keeps the module here
    if isinstance(inner, FSDPModule):
        inner.set_requires_gradient_sync(sync)
        return contextlib.nullcontext()
    if sync or not hasattr(model, "no_sync"):
        return contextlib.nullcontext()
    return model.no_sync()


def local_shard(value: torch.Tensor) -> torch.Tensor:
    """This rank's part of a sharded DTensor (FSDP), or the tensor itself."""
    return value.to_local() if isinstance(value, DTensor) else value


def full_tensor(value: torch.Tensor) -> torch.Tensor:
    """A plain tensor of the whole value: a sharded DTensor (FSDP's grad norm) is gathered."""
    return value.full_tensor() if isinstance(value, DTensor) else value


# Full (unsharded) state dicts, on the CPU of rank 0 only: what a checkpoint holds under FSDP.
_ON_RANK_0 = StateDictOptions(full_state_dict=True, cpu_offload=True)


def gathered_model_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The sharded model's full state dict on rank 0 (empty elsewhere); every rank must call."""
    return get_model_state_dict(model, options=_ON_RANK_0)


def gathered_optimizer_state(model: torch.nn.Module, optimizer) -> dict:
    """The optimizer's full state on rank 0 (empty elsewhere), keyed by parameter names."""
    return get_optimizer_state_dict(model, optimizer, options=_ON_RANK_0)


def load_gathered_optimizer_state(model: torch.nn.Module, optimizer, state: dict) -> None:
    """Give every rank its shard of a full optimizer state saved by gathered_optimizer_state."""
    set_optimizer_state_dict(
        model, optimizer, optim_state_dict=state, options=StateDictOptions(full_state_dict=True)
    )


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


@dataclass
class Parallelism:
    """How this process takes part in a run (alone, DDP or FSDP), so the training loop needs no
    rank or FSDP branches: the loop asks it to spread the model, average numbers, agree on
    finiteness and gather what a checkpoint holds.

    sharded: FSDP under several processes (train.distributed=fsdp); DDP or one process otherwise.
    """

    context: DistributedContext
    device: torch.device
    sharded: bool
    # rank 0's plain copy of an FSDP model, made once and refilled for every checkpoint
    _unsharded: torch.nn.Module | None = None

    @property
    def is_main(self) -> bool:
        return self.context.is_main

    @property
    def world_size(self) -> int:
        return self.context.world_size

    @property
    def runs_model_here(self) -> bool:
        """Whether this rank runs the model for samples and extra evals: rank 0 only, except
        under FSDP, whose forward is collective (every rank runs it, rank 0 keeps the result)."""
        return self.is_main or self.sharded

    def shard(self, model: torch.nn.Module) -> None:
        """FSDP: shard `model` in place (before its optimizer exists); otherwise nothing."""
        if self.sharded:
            shard_model(model)

    def forward_model(self, model: torch.nn.Module, compile: bool) -> torch.nn.Module:
        """What training steps and evaluations call: `model`, compiled if asked, inside DDP under
        several processes. Checkpoints and samples keep using `model` itself (no prefixes)."""
        forward = torch.compile(model) if compile else model
        return forward if self.sharded else wrap_model(forward, self.context, self.device)

    def mean(self, values: list[float]) -> list[float]:
        return mean_across_ranks(values, self.context, self.device)

    def barrier(self) -> None:
        barrier(self.context)

    def clip_grad_norm(self, model: torch.nn.Module, max_norm: float) -> torch.Tensor:
        """Clip the global gradient norm (over every rank's shards); returns it, unclipped."""
        return full_tensor(torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm))

    def all_finite(self, model: torch.nn.Module) -> bool:
        """Whether every weight is finite, on every rank (FSDP ranks each see only their shards,
        so they agree before anyone raises)."""
        finite = all(torch.isfinite(local_shard(p)).all() for p in model.parameters())
        if self.sharded:
            finite = self.mean([float(finite)])[0] == 1.0
        return finite

    def gather(self, value) -> list:
        """Every rank's `value` (picklable), on every rank, in rank order."""
        if not self.context.enabled:
            return [value]
        values = [None] * self.world_size
        dist.all_gather_object(values, value)
        return values

    def checkpoint_parts(self, model: torch.nn.Module, optimizer, make_model) -> tuple:
        """(the model to save, the optimizer state) for a checkpoint that loads in one process.

        Under FSDP both are gathered onto rank 0 (a collective: every rank calls this); rank 0
        fills a plain model made once by `make_model()`. Other ranks get (model, {}): rank 0
        alone writes.
        """
        if not self.sharded:
            return model, optimizer.state_dict()
        model_state = gathered_model_state(model)
        optimizer_state = gathered_optimizer_state(model, optimizer)
        if not self.is_main:
            return model, optimizer_state
        if self._unsharded is None:
            self._unsharded = make_model()
        load_state_checked(self._unsharded, model_state, source="the gathered FSDP state")
        return self._unsharded, optimizer_state

    def close(self) -> None:
        shutdown_distributed(self.context)


def start_parallelism(device_name: str, distributed: str) -> Parallelism:
    """Join torchrun's process group when there is one; `distributed` is train.distributed."""
    context, device_name = init_distributed(device_name)
    try:
        device = resolve_device(device_name, "train.device=")
    except BaseException:
        shutdown_distributed(context)
        raise
    return Parallelism(context, device, sharded=context.enabled and distributed == "fsdp")
