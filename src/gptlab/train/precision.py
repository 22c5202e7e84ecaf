"""Numeric precision for training: which dtype, autocast, loss scaling, TF32.

The weights and optimizer state stay in float32. Under autocast, matmuls run in bf16 or
fp16 (the tensor cores' formats) while reductions such as softmax and the loss stay in float32.
float16's narrow exponent range makes small gradients underflow to zero, so with float16 the loss
is multiplied by a large factor before backward and the gradients divided by it before the
update (GradScaler); bfloat16 has float32's range and needs no scaling.

On a CPU, bf16 pays only where the cores multiply bf16 matrices in hardware (x86's AVX512-BF16 or
AMX, Arm's BF16): there a matmul runs ~2x float32's speed, elsewhere torch emulates it ~80x slower
(both measured, BENCHMARKS.md). A run that asks for bf16 on a CPU not known to have the units
trains in float32 after a one-line notice, so a preset that sets bf16 is never the slow choice.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import torch

from gptlab.device import torch_dtype
from gptlab.errors import GptlabError


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """train.dtype as a torch dtype: 'auto' is bf16 on GPUs that have it, fp16 on older GPUs,
    and fp32 elsewhere; a name may be an alias (bfloat16 for bf16, ...)."""
    if name == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    dtype = torch_dtype(name)
    if dtype == torch.float16 and device.type == "cpu":
        raise GptlabError("train.dtype=fp16 needs a GPU; on CPU use fp32 or bf16")
    return dtype


# /proc/cpuinfo's names for the instructions that multiply bf16 matrices in hardware: x86's
# AVX512-BF16 and AMX (its "flags" line), Arm's BF16 extension (its "Features" line)
CPU_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})
CPUINFO = Path("/proc/cpuinfo")


def cpu_has_bf16_units() -> bool | None:
    """Whether this CPU multiplies bf16 matrices in hardware, from the flags in /proc/cpuinfo;
    None where that cannot be told (no /proc/cpuinfo, as on macOS, or no flags line in it)."""
    try:
        text = CPUINFO.read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            return not CPU_BF16_FLAGS.isdisjoint(line.partition(":")[2].split())
    return None


def fall_back_from_emulated_bf16(
    dtype: torch.dtype, device: torch.device
) -> tuple[torch.dtype, str | None]:
    """(the dtype to train in, a notice or None): bf16 on a CPU not known to have bf16 units ->
    fp32, which is never the slow choice there."""
    if dtype != torch.bfloat16 or device.type != "cpu":
        return dtype, None
    units = cpu_has_bf16_units()
    if units:
        return dtype, None
    why = (
        "this CPU has no bf16 matrix units (AVX512-BF16, AMX or Arm's BF16), so bf16 would be "
        "emulated, many times slower than fp32"
        if units is False
        else "whether this CPU multiplies bf16 in hardware cannot be read here (no /proc/cpuinfo)"
    )
    return torch.float32, f"dtype: {why}; training in fp32 (train.dtype=fp32 skips this check)"


def newton_schulz_dtype(setting: str, device: torch.device) -> torch.dtype | None:
    """train.muon_ns_dtype as a torch dtype, None for auto (Muon's own choice: bf16 on a GPU,
    float32 elsewhere); bf16 on a CPU without bf16 units is float32 (emulated, the slow choice)."""
    if setting == "auto":
        return None
    return fall_back_from_emulated_bf16(torch_dtype(setting), device)[0]


def autocast_context(device: torch.device, dtype: torch.dtype):
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def grad_scaler(device: torch.device, dtype: torch.dtype) -> torch.amp.GradScaler:
    """A GradScaler that is active only for float16 (a disabled one passes everything through)."""
    return torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)


def enable_tf32() -> None:
    """Let float32 matmuls use TF32 tensor cores (Ampere and newer): ~10 bits of mantissa, far faster."""
    if torch.cuda.is_available():
        torch.set_float32_matmul_precision("high")
