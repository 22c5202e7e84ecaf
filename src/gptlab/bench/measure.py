"""What the bench measures besides the rows: time and peak memory of one run, the memory
bandwidth of this machine and the weight bytes a decode step must read (the physical limit),
and the machine itself."""

from __future__ import annotations

import os
import platform
import time

import torch
from torch import nn

from gptlab.bench.rows import BenchRow
from gptlab.optional import import_optional

BANDWIDTH_PROBE_MB = 256  # far past any CPU cache, so the copy runs at memory speed


def time_row(row: BenchRow, prompt: torch.Tensor, new_tokens: int, device: torch.device) -> None:
    """Run the row once on prompt (B, P), recording wall time, per-step times and peak memory."""
    prompt = prompt.expand(row.batch, -1)
    marks: list[float] = []

    def clock() -> None:
        synchronize(device)
        marks.append(time.perf_counter())

    before_mb = reset_peak_memory(device)
    synchronize(device)
    start = time.perf_counter()
    row.tokens = row.run(prompt, new_tokens, clock)
    synchronize(device)
    row.seconds.append(time.perf_counter() - start)
    row.peak_mb.append(peak_memory_mb(device))
    row.growth_mb.append(row.peak_mb[-1] - before_mb)
    if marks:
        row.first_token_s.append(marks[0] - start)
        row.step_ms += [1000 * (b - a) for a, b in zip(marks, marks[1:], strict=False)]


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak_memory(device: torch.device) -> float:
    """Start measuring a new peak; return the memory in use now (MB)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return torch.cuda.memory_allocated(device) / 2**20
    try:  # Linux: writing 5 resets the process's peak RSS (VmHWM) to the current RSS
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass  # elsewhere the peak is the process's lifetime peak
    return peak_memory_mb(device)


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    import resource  # POSIX only, so imported where it is needed

    try:
        with open("/proc/self/status") as f:
            line = next(line for line in f if line.startswith("VmHWM:"))
        return int(line.split()[1]) / 1024  # kB
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bandwidth_gb_s(device: torch.device, repeats: int = 5) -> float:
    """The memory bandwidth a large copy reaches (bytes read + written per second, best of
    `repeats`), with torch's threads as set: the speed a decode step's weight reads can hope
    for, measured in the same process as the rows."""
    n = BANDWIDTH_PROBE_MB * 2**20 // 4
    source = torch.ones(n, device=device)
    target = torch.empty_like(source)
    best = float("inf")
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        target.copy_(source)
        synchronize(device)
        best = min(best, time.perf_counter() - start)
    return 2 * source.nbytes / best / 1e9


def read_bytes_per_token(model: nn.Module) -> int:
    """Weight bytes one batch-1 decode step reads: every matrix that multiplies (linears, the
    head; a tied head reads the embedding once), but of a lookup table (token, position
    embedding) only one row, so the tables themselves are left out unless the head is one.
    Quantized linears count their int8 weights (one byte each)."""
    head = getattr(model, "lm_head", None)
    head_weight = getattr(head, "weight", None)
    tied_table = head_weight if isinstance(head_weight, torch.Tensor) else None
    seen: list[torch.Tensor] = []  # kept alive, so that identity means the same tensor
    total = 0
    for module in model.modules():
        for tensor in module_weights(module):
            if any(tensor is other for other in seen):
                continue
            seen.append(tensor)
            if isinstance(module, nn.Embedding) and tensor is not tied_table:
                continue
            total += tensor.numel() * tensor.element_size()
    return total


def module_weights(module: nn.Module) -> list[torch.Tensor]:
    """The module's own weights (not its children's), int8 packed weights unpacked."""
    own = [p for p in module.parameters(recurse=False)]
    packed_matrix = getattr(module, "packed_weight", None)  # a decode-layout linear's oneDNN matrix
    if isinstance(packed_matrix, torch.Tensor):
        own.append(packed_matrix)
    packed = getattr(module, "_packed_params", None)
    if packed is not None and hasattr(packed, "_weight_bias"):
        weight, bias = packed._weight_bias()
        own += [weight] + ([bias] if bias is not None else [])
    return own


def machine_info(device: torch.device) -> dict:
    transformers = import_optional("transformers", "hf")  # the reference the bench runs beside
    info = {
        "device": str(device),
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "load_average_before": os.getloadavg(),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info
