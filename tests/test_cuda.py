"""The GPU path: mixed precision, loss scaling, compile, compiled decoding, hooks, pinned copies,
resume and out-of-memory, on a CUDA GPU. Without one every test here skips (one reason line);
benchmarks/gpu_check.py runs this file first.

Tolerances are stated where a GPU's arithmetic cannot be bit-equal to a reference: bf16 keeps 8
bits of mantissa (~3 significant digits), and compiled kernels fuse and reorder float sums.
"""

import json

import pytest
import torch
from test_train import read_metrics, tiny_config

from gptlab.checkpoints import run as ckpt
from gptlab.cli import main
from gptlab.data.loader import TokenLoader
from gptlab.inference.generate import GenerationConfig, generate
from gptlab.model import GPT
from gptlab.model.config import ModelConfig
from gptlab.train import train

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

CUDA = ["train.device=cuda", "train.eval_every=0", "train.sample_every=0"]


def losses(run_dir) -> list[float]:
    return [record["train_loss"] for record in read_metrics(run_dir)]


def run(prepared, out, *overrides) -> list[float]:
    train(tiny_config(prepared, *CUDA, *overrides), out, show_progress=False)
    return losses(out)


class Interrupted(Exception):
    pass


def run_interrupted_and_resumed(prepared, out, stop_after: int, *overrides) -> list[float]:
    """The same run stopped after step `stop_after` (its checkpoint written), then resumed."""
    config = tiny_config(prepared, *CUDA, *overrides)

    def stop(record):
        if record["step"] == stop_after:
            raise Interrupted

    with pytest.raises(Interrupted):
        train(config, out, on_step=stop, show_progress=False)
    train(config, out, resume=True, show_progress=False)
    return losses(out)


def test_bf16_autocast_losses_track_fp32_over_50_steps(prepared_shakespeare, tmp_path):
    fp32 = run(prepared_shakespeare, tmp_path / "fp32", "train.dtype=fp32", "train.max_steps=50")
    bf16 = run(prepared_shakespeare, tmp_path / "bf16", "train.dtype=bf16", "train.max_steps=50")
    assert len(bf16) == 50
    # Tolerance: 0.05 per step (the loss starts near ln 65 = 4.2 and falls to ~2.5); bf16's
    # rounding moves single steps by ~0.01 and the trajectories drift apart only slowly.
    for step, (want, got) in enumerate(zip(fp32, bf16, strict=True), start=1):
        assert got == pytest.approx(want, abs=0.05), step
    assert bf16[-1] < bf16[0] - 1.0  # and it learns


def test_fp16_with_grad_scaler_trains_and_its_scale_survives_resume(prepared_shakespeare, tmp_path):
    fp16 = ["train.dtype=fp16", "train.checkpoint_every=10", "train.keep_last=5"]
    whole = run(prepared_shakespeare, tmp_path / "whole", *fp16, "train.max_steps=20")
    assert all(torch.isfinite(torch.tensor(whole)))
    assert whole[-1] < whole[0]
    halves = tmp_path / "halves"
    resumed = run_interrupted_and_resumed(
        prepared_shakespeare, halves, 10, *fp16, "train.max_steps=20"
    )
    saved = ckpt.load_training_state(halves / ckpt.CHECKPOINTS_DIR / ckpt.checkpoint_name(10))
    saved = saved["scaler"]
    assert saved["scale"] > 0  # the scaler was active (a disabled one saves an empty state)
    # The resumed run continues from the saved scale: the same losses and the same final scale.
    assert resumed == pytest.approx(whole, abs=1e-3)
    final = {
        name: ckpt.load_training_state(ckpt.latest_checkpoint(folder))["scaler"]
        for name, folder in (("whole", tmp_path / "whole"), ("halves", halves))
    }
    assert final["halves"]["scale"] == final["whole"]["scale"]


def test_compile_on_and_off_give_the_same_losses(prepared_shakespeare, tmp_path):
    eager = run(prepared_shakespeare, tmp_path / "eager", "train.dtype=fp32", "train.max_steps=15")
    compiled = run(
        prepared_shakespeare,
        tmp_path / "compiled",
        "train.dtype=fp32",
        "train.max_steps=15",
        "train.compile=true",
    )
    # Tolerance 1e-3: fused kernels reorder float32 sums (~1e-6 a step, growing with training).
    assert compiled == pytest.approx(eager, abs=1e-3)


def small_model() -> GPT:
    torch.manual_seed(0)
    config = ModelConfig(vocab_size=97, block_size=64, n_layer=2, n_head=4, n_embd=64)
    return GPT(config).cuda().eval()


def test_compiled_static_cache_decoding_gives_the_eager_greedy_tokens():
    model = small_model()
    prompt = [5, 17, 42, 3, 8]
    greedy = {"max_new_tokens": 24, "temperature": 0.0, "stop_at_eot": False}
    eager = generate(model, prompt, GenerationConfig(**greedy, cache="dynamic"))
    compiled = generate(model, prompt, GenerationConfig(**greedy, cache="static", compile=True))
    assert compiled[0].token_ids == eager[0].token_ids


def test_hooks_work_on_a_compiled_model():
    model = small_model()
    idx = torch.randint(0, 97, (2, 16), device="cuda")
    compiled = torch.compile(model)

    def zero_head(z, name):
        z = z.clone()
        z[:, :, 0] = 0  # head 0's output
        return z

    with model.hooks({"blocks.1.attn.hook_z": zero_head}):
        want, _ = model(idx)
        got, _ = compiled(idx)
    plain, _ = compiled(idx)  # the hook is gone again
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
    assert not torch.allclose(plain, want, atol=1e-4)


def test_pinned_non_blocking_batches_equal_the_cpu_batches(prepared_shakespeare):
    loaders = [
        TokenLoader(prepared_shakespeare, "train", 8, 32, seed=3, device=device)
        for device in ("cpu", "cuda")
    ]
    for _ in range(5):
        (x_cpu, y_cpu), (x_gpu, y_gpu) = (loader.next_batch() for loader in loaders)
        assert x_gpu.device.type == "cuda"
        assert torch.equal(x_gpu.cpu(), x_cpu) and torch.equal(y_gpu.cpu(), y_cpu)


def test_resume_on_cuda_continues_the_loss_curve(prepared_shakespeare, tmp_path):
    settings = ["train.dtype=fp32", "train.checkpoint_every=6", "model.dropout=0.1"]
    whole = run(prepared_shakespeare, tmp_path / "whole", *settings, "train.max_steps=12")
    resumed = run_interrupted_and_resumed(
        prepared_shakespeare, tmp_path / "halves", 6, *settings, "train.max_steps=12"
    )
    # Dropout's CUDA generator, AdamW's moments and the loader are restored: the same curve.
    assert resumed == pytest.approx(whole, abs=1e-4)


def test_out_of_memory_is_one_line(prepared_shakespeare, tmp_path, capsys):
    config = tiny_config(
        prepared_shakespeare, *CUDA, "train.max_steps=2", "train.micro_batch_size=65536"
    )
    config.train.tokens_per_step = 65536 * 32
    config_file = tmp_path / "config.toml"
    config.save(config_file)
    # A cap of 1% of the GPU's memory (0.8 GB of an 80 GB GPU) is far below the activations of
    # 2M tokens a micro-step (~10 GB), whatever the GPU.
    torch.cuda.set_per_process_memory_fraction(0.01)
    try:
        status = main(["train", "--config", str(config_file), "--out", str(tmp_path / "run")])
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0)
        torch.cuda.empty_cache()
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 1
    assert err[-1].startswith("gptlab: error: out of GPU memory")
    assert "train.micro_batch_size=65536" in err[-1]
    json.dumps(err)  # one plain line, no traceback
    assert not any("Traceback" in line for line in err)
