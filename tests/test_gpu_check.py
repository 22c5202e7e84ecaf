"""benchmarks/gpu_check.py: its CPU smoke run (--device cpu --tiny) goes through every section
and prints one Markdown block; bad arguments are one line."""

import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"


def gpu_check(*args, timeout=900):
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout
    )


@pytest.mark.slow
def test_the_cpu_smoke_run_goes_through_every_section(shared_data, tmp_path):
    out = tmp_path / "gpu_check.md"
    process = gpu_check("--device", "cpu", "--tiny", "--out", str(out))
    assert process.returncode == 0, process.stderr[-3000:]
    block = out.read_text()
    assert block.strip() in process.stdout
    assert block.startswith("### GPU check: CPU")
    # The CUDA tests ran and, without a GPU, every one skipped cleanly.
    tests_line = next(
        line for line in block.splitlines() if line.startswith("`pytest tests/test_cuda.py`")
    )
    assert re.search(r": \d+ skipped in [\d.]+s$", tests_line), tests_line
    rows = [line for line in block.splitlines() if line.startswith(("| gptlab |", "| HF GPT2"))]
    assert len(rows) == 2
    for row in rows:
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        assert float(cells[3].replace(",", "")) > 0  # tokens/s
        assert cells[4] == "- (no known peak)"  # no MFU claimed on a CPU
    assert "gptlab / HF tokens/s" in block
    assert "| dynamic cache | 1 |" in block  # the decode table of gptlab bench generate


def test_cuda_without_a_gpu_and_a_missing_sample_are_one_line(tmp_path):
    if not torch.cuda.is_available():
        process = gpu_check("--device", "cuda", timeout=120)
        assert process.returncode == 1
        assert process.stderr.strip() == (
            "gpu_check: error: no CUDA GPU here; use --device cpu --tiny"
        )
    process = gpu_check("--device", "cpu", "--tiny", "--data", str(tmp_path / "nope"), timeout=120)
    assert process.returncode == 1
    assert process.stderr.strip().splitlines() == [
        f"gpu_check: error: {tmp_path / 'nope'} is not a file; pass --data"
    ]
