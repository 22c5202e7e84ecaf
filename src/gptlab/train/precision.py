"""Numeric precision for training: which dtype, autocast, loss scaling, TF32.

The weights and optimizer state stay in float32. Under autocast, matmuls run in bf16 or
fp16 (the tensor cores' formats) while reductions such as softmax and the loss stay in float32.
float16's narrow exponent range makes small gradients underflow to zero, so with float16 the loss
is multiplied by a large factor before backward and the gradients divided by it before the
update (GradScaler); bfloat16 has float32's range and needs no scaling.
"""

from __future__ import annotations

import contextlib

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
