"""bf16 training on a CPU: it runs under autocast where the cores have bf16 matrix units, and falls
back to fp32 with a notice where /proc/cpuinfo says they are missing or cannot tell (emulated bf16
is ~80x slower).

The CPU's flags are faked with a cpuinfo file, so both branches run on any machine; autocast itself
works without the units (only slower), which lets the bf16 branch run on an AVX2 CI machine too.
"""

import pytest
import torch
from test_train import read_metrics, tiny_config

from gptlab.model.config import ModelConfig
from gptlab.model.gpt import GPT
from gptlab.train import precision, train
from gptlab.train.config import TrainConfig
from gptlab.train.muon import orthogonalise
from gptlab.train.optim import build_optimizer
from gptlab.train.precision import (
    cpu_has_bf16_units,
    fall_back_from_emulated_bf16,
    newton_schulz_dtype,
)

ZEN4 = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16 avx512_vnni\n"
SKYLAKE = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512bw\n"
SAPPHIRE_RAPIDS = "processor\t: 0\nflags\t\t: avx2 avx512f amx_tile amx_bf16 amx_int8\n"
GRAVITON3 = "processor\t: 0\nFeatures\t: fp asimd sve bf16 i8mm\n"
CORTEX_A72 = "processor\t: 0\nFeatures\t: fp asimd evtstrm crc32 cpuid\n"
NO_FLAGS = "processor\t: 0\nmodel name\t: some CPU\n"


@pytest.fixture
def cpuinfo(tmp_path, monkeypatch):
    """Point the check at a fake /proc/cpuinfo with the given text (None: no such file)."""

    def write(text: str | None):
        path = tmp_path / "cpuinfo"
        path.unlink(missing_ok=True)
        if text is not None:
            path.write_text(text)
        monkeypatch.setattr(precision, "CPUINFO", path)

    return write


@pytest.mark.parametrize(
    "text, expected",
    [
        (ZEN4, True),
        (SAPPHIRE_RAPIDS, True),
        (GRAVITON3, True),
        (SKYLAKE, False),
        (CORTEX_A72, False),
        (NO_FLAGS, None),
        (None, None),
    ],
)
def test_the_bf16_units_are_read_from_the_cpu_flags(cpuinfo, text, expected):
    cpuinfo(text)
    assert cpu_has_bf16_units() is expected


def test_bf16_on_a_cpu_trains_in_fp32_unless_the_units_are_known_to_be_there(cpuinfo):
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    for text, says in [(SKYLAKE, "no bf16 matrix units"), (None, "cannot be read here")]:
        cpuinfo(text)
        dtype, notice = fall_back_from_emulated_bf16(torch.bfloat16, cpu)
        assert dtype is torch.float32 and says in notice and "\n" not in notice
        # a GPU, and fp32 asked for, are not the CPU's business
        assert fall_back_from_emulated_bf16(torch.bfloat16, cuda) == (torch.bfloat16, None)
        assert fall_back_from_emulated_bf16(torch.float32, cpu) == (torch.float32, None)
    for text in (ZEN4, GRAVITON3):
        cpuinfo(text)
        assert fall_back_from_emulated_bf16(torch.bfloat16, cpu) == (torch.bfloat16, None)


def test_a_cpu_run_in_bf16_tracks_fp32_and_falls_back_to_it_exactly(
    prepared_shakespeare, tmp_path, cpuinfo, capsys
):
    def losses(name: str, *overrides: str) -> list[float]:
        config = tiny_config(
            prepared_shakespeare, "train.max_steps=30", "train.eval_every=0", *overrides
        )
        train(config, tmp_path / name, show_progress=False)
        return [record["train_loss"] for record in read_metrics(tmp_path / name)]

    fp32 = losses("fp32", "train.dtype=fp32")
    cpuinfo(ZEN4)
    bf16 = losses("bf16", "train.dtype=bf16")
    assert "no bf16 matrix units" not in capsys.readouterr().out
    # autocast really ran: bf16's 8-bit mantissa moves every loss, but only by ~0.01 a step
    # (the loss falls from ln 65 = 4.2 to ~2.8 over these steps)
    assert bf16 != fp32
    assert max(abs(a - b) for a, b in zip(bf16, fp32, strict=True)) < 0.05
    cpuinfo(SKYLAKE)
    fallen_back = losses("fallback", "train.dtype=bf16")
    assert "no bf16 matrix units" in capsys.readouterr().out
    assert fallen_back == fp32


def test_muon_ns_dtype_picks_the_newton_schulz_dtype_and_falls_back_like_train_dtype(cpuinfo):
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    cpuinfo(ZEN4)
    assert newton_schulz_dtype("bf16", cpu) is torch.bfloat16
    assert newton_schulz_dtype("fp32", cpu) is torch.float32
    assert newton_schulz_dtype("auto", cpu) is None  # Muon's own choice
    model = GPT(ModelConfig(n_layer=1, n_head=2, n_embd=16, block_size=8, vocab_size=32))
    config = TrainConfig(optimizer="muon", muon_ns_dtype="bf16")
    assert build_optimizer(model, config, cpu).muon.ns_dtype is torch.bfloat16
    for text in (SKYLAKE, None):  # emulated bf16 would be the slow choice: float32
        cpuinfo(text)
        assert newton_schulz_dtype("bf16", cpu) is torch.float32
        assert newton_schulz_dtype("bf16", cuda) is torch.bfloat16


def test_newton_schulz_in_bf16_lands_near_the_float32_result():
    # the stack shapes of the prose-cpu preset's matrices; bf16's 8-bit mantissa leaves ~1%
    generator = torch.Generator().manual_seed(0)
    for shape in [(4, 384, 128), (4, 128, 128), (4, 128, 512)]:
        update = torch.randn(shape, generator=generator)
        exact, fast = (
            orthogonalise(update, 5, torch.float32),
            orthogonalise(update, 5, torch.bfloat16),
        )
        assert fast.dtype == torch.float32
        assert ((fast - exact).norm() / exact.norm()).item() < 0.03
