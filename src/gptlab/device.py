"""Where tensors live and in which number format: device names, CPU threads, the dtype vocabulary.

Every setting that takes a dtype (train.dtype, `gptlab sample --dtype`, `gptlab bench`) speaks the
same words: fp32, bf16, fp16. PyTorch's names (float32, bfloat16, float16) are accepted as
aliases everywhere and mean the same thing.
"""

from __future__ import annotations

import math
import os
import time

import torch

from gptlab.errors import GptlabError

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
DTYPE_ALIASES = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}
BYTES_PER_ELEMENT = {"fp32": 4, "bf16": 2, "fp16": 2}


def dtype_name(name: str, setting: str = "dtype", extra: tuple[str, ...] = ()) -> str:
    """The canonical spelling of a dtype name (an alias maps to it); `extra` allows e.g. "auto"."""
    name = DTYPE_ALIASES.get(name, name)
    if name not in DTYPES and name not in extra:
        valid = ", ".join((*extra, *DTYPES))
        raise GptlabError(
            f"{setting} must be one of {valid} (or float32, bfloat16, float16), got {name!r}"
        )
    return name


def torch_dtype(name: str) -> torch.dtype:
    return DTYPES[dtype_name(name)]


def dtype_label(dtype: torch.dtype) -> str:
    """The vocabulary's word for a torch dtype (fp32, bf16, fp16), for what gptlab prints."""
    return next((name for name, value in DTYPES.items() if value == dtype), str(dtype))


def resolve_device(name: str, setting: str = "--device") -> torch.device:
    """A torch.device from cpu, cuda, cuda:N, mps or auto (the best one available).

    `setting` is how the user chose it (`--device`, or `train.device=` for a run config), so the
    fix an error suggests is one the user's own command accepts.
    """
    spell = f"{setting} " if setting.startswith("--") else setting
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise GptlabError(
            f"unknown device {name!r}: use {spell}cpu, cuda, cuda:N, mps or auto"
        ) from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise GptlabError(
            f"device {name} was asked for but no CUDA GPU is available; use {spell}cpu "
            f"(or {spell}auto, the best device present)"
        )
    return device


def available_cores() -> int:
    """The CPU cores this process may run on (its affinity mask, e.g. under taskset or a cgroup)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS and Windows have no affinity masks
        return os.cpu_count() or 1


# How long auto_threads watches the cores: long enough to average over the scheduler's ticks,
# short enough not to be felt when a verb starts.
CPU_PROBE_SECONDS = 0.3


def cpu_times() -> tuple[int, int] | None:
    """(busy, total) CPU time of the whole machine since boot, in ticks, from /proc/stat.

    None where there is no /proc/stat (macOS, Windows). Idle and I/O wait count as free; user,
    nice, system, interrupts and steal (another VM on the same host) as busy.
    """
    try:
        with open("/proc/stat", encoding="ascii") as f:
            fields = f.readline().split()
    except OSError:
        return None
    if len(fields) < 5 or fields[0] != "cpu":
        return None
    ticks = [int(value) for value in fields[1:9]]  # user nice system idle iowait irq softirq steal
    free = ticks[3] + ticks[4]
    return sum(ticks) - free, sum(ticks)


def busy_cores(before: tuple[int, int], after: tuple[int, int], cpus: int) -> float:
    """How many of `cpus` cores were busy between two cpu_times() readings (0.0 to cpus)."""
    busy, total = after[0] - before[0], after[1] - before[1]
    return cpus * busy / total if total > 0 else 0.0


def busy_cores_now(seconds: float = CPU_PROBE_SECONDS) -> float:
    """The cores other work keeps busy right now: /proc/stat watched for `seconds`.

    The 1-minute load average is the fallback only (macOS): it remembers a job that ended a
    minute ago, so a run started right after another would take one thread on an idle machine.
    """
    before = cpu_times()
    if before is None:
        return os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    time.sleep(seconds)
    after = cpu_times()
    return busy_cores(before, after, os.cpu_count() or 1) if after is not None else 0.0


def auto_threads() -> int:
    """Threads that will not fight other work for the cores.

    torch's default (one thread per core) assumes an idle machine; with other processes running,
    its OpenMP threads wait on each other and a step gets several times slower than with fewer
    threads. So: the cores available minus the ones other work keeps busy now (busy_cores_now,
    a half-busy core counted as busy), at least 1. An OMP_NUM_THREADS the user set wins (torch
    already follows it).
    """
    if os.environ.get("OMP_NUM_THREADS"):
        return torch.get_num_threads()
    cores = available_cores()
    busy = math.floor(busy_cores_now() + 0.5)
    return max(1, min(cores, cores - busy))


def threads_setting(value: str, setting: str = "--threads") -> str:
    """The canonical spelling of a threads setting (auto, none or a positive integer), checked."""
    text = str(value).strip().lower()
    if text in ("auto", "none"):
        return text
    if not text.isdigit() or int(text) < 1:
        raise GptlabError(f"{setting} must be auto, none or a whole number >= 1, got {value!r}")
    return str(int(text))


def resolve_threads(value: str, setting: str = "--threads") -> int | None:
    """The thread count a setting means; None for `none` (leave torch's default alone)."""
    text = threads_setting(value, setting)
    if text == "none":
        return None
    return auto_threads() if text == "auto" else int(text)


def use_threads(value: str, setting: str = "--threads") -> int:
    """Set torch's CPU threads as the setting says; returns the number in use."""
    count = resolve_threads(value, setting)
    if count is not None:
        torch.set_num_threads(count)
    return torch.get_num_threads()


def model_device(model: torch.nn.Module) -> torch.device:
    """The device of a model's parameters."""
    return next(model.parameters()).device


def memory_of(device: torch.device) -> int:
    """Bytes of memory the device has in all: a GPU's own, else the machine's RAM."""
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def require_memory(n_bytes: int, what: str, device: torch.device | str = "cpu") -> None:
    """Refuse work that cannot fit before it starts, rather than as an allocator traceback."""
    device = torch.device(device)
    available = memory_of(device)
    if n_bytes > available:
        raise GptlabError(
            f"{what} needs {gib(n_bytes)} of memory, more than this {device.type} has "
            f"({gib(available)}); choose smaller sizes"
        )


def gib(n_bytes: float) -> str:
    return f"{n_bytes / 2**30:,.1f} GiB"
