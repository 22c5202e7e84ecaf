"""Weight precision for inference: a dtype for the whole model, or int8 weights in the linears.

fp32   the training dtype; the reference.
bf16   half the bytes per weight, fp32's exponent range (no overflow); CPUs with AVX-512 BF16
       or AMX and every recent GPU have fast bf16 matmuls, older CPUs emulate them.
fp16   half the bytes, narrower range; fast on GPUs only (CPU fp16 matmuls are emulated and
       slow), so on CPU it is replaced by fp32 with a warning.
int8   dynamic quantization of every nn.Linear (torch.ao): weights stored as int8 with one
       scale per output row, activations quantized on the fly per batch; CPU only. The
       embeddings and LayerNorms stay fp32. Its quality cost is measured as a perplexity
       change (`gptlab bench generate` reports it).
"""

from __future__ import annotations

import io
import warnings

import torch
import torch.nn as nn

from gptlab.device import dtype_name, model_device, torch_dtype
from gptlab.errors import GptlabError
from gptlab.inference.weight_layout import to_decode_layout

QUANTIZATIONS = ("int8",)


def dtype_for_device(name: str, device: torch.device) -> tuple[str, str | None]:
    """The dtype to use for `name` on `device`, and a one-line note when it had to change."""
    name = dtype_name(name)
    if name == "fp16" and device.type == "cpu":
        return "fp32", "fp16 needs a GPU (CPU fp16 matmuls are emulated and slow); using fp32"
    return name, None


def cast_model(model: nn.Module, dtype: str) -> nn.Module:
    """The model in `dtype` ("fp32", "bf16" or "fp16"; fp16 on CPU falls back to fp32, warning)."""
    device = model_device(model)
    dtype, note = dtype_for_device(dtype, device)
    if note is not None:
        warnings.warn(note, stacklevel=2)
    return model.to(torch_dtype(dtype))


def quantize_int8(model: nn.Module) -> nn.Module:
    """A copy of the model whose nn.Linear layers hold int8 weights (dynamic quantization).

    The tied lm_head becomes its own int8 copy of the token embedding, which stays fp32 for the
    input lookup. CPU only: the int8 kernels (fbgemm/onednn) have no GPU version.
    """
    if model_device(model).type != "cpu":
        raise GptlabError(
            "int8 dynamic quantization runs on CPU only; leave quantize unset or use the cpu device"
        )
    if next(model.parameters()).dtype != torch.float32:
        raise GptlabError("int8 quantization starts from fp32 weights; leave the dtype at fp32")
    from torch.ao.quantization import quantize_dynamic

    with warnings.catch_warnings():  # torch.ao announces its move to torchao on every call
        warnings.filterwarnings("ignore", message=".*deprecated.*")
        quantized = quantize_dynamic(model.eval(), {nn.Linear}, dtype=torch.qint8)
    return quantized


def prepare_model(
    model: nn.Module, dtype: str = "fp32", quantize: str | None = None, *, compile: bool = False
) -> nn.Module:
    """A loaded model made ready for decoding: the precision switches (dtype, quantize) applied,
    and on a CPU an fp32 model's linears in the faster decode layout (gptlab.inference.weight_layout).
    compile=True: the model will be torch.compiled, which cannot trace oneDNN's packed matrices
    (inductor packs CPU linears itself), so its linears are only stored input-major.
    The model may change in place; it is for inference only afterwards."""
    if quantize is not None:
        if quantize not in QUANTIZATIONS:
            raise GptlabError(
                f"unknown quantization {quantize!r}; choose one of {', '.join(QUANTIZATIONS)}"
            )
        if dtype != "fp32":
            raise GptlabError(
                f"quantization {quantize} starts from fp32 weights; leave the dtype at fp32 (not {dtype})"
            )
        return quantize_int8(model)
    model = cast_model(model, dtype)
    if model_device(model).type == "cpu" and next(model.parameters()).dtype == torch.float32:
        model = to_decode_layout(model, packed=not compile)
    return model


def weight_bytes(model: nn.Module) -> int:
    """Bytes of the model's weights as torch.save writes them (shared tensors stored once,
    int8 weights at one byte each plus their scales)."""
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.tell()
