"""One dtype vocabulary (fp32, bf16, fp16; PyTorch's names as aliases) and device names."""

import pytest
import torch

from gptlab.device import dtype_name, model_device, resolve_device, torch_dtype
from gptlab.errors import GptlabError
from gptlab.inference.precision import prepare_model
from gptlab.model import GPT
from gptlab.train.config import build_run_config
from gptlab.train.precision import resolve_dtype


@pytest.mark.parametrize(
    "alias, name, dtype",
    [
        ("float32", "fp32", torch.float32),
        ("bfloat16", "bf16", torch.bfloat16),
        ("float16", "fp16", torch.float16),
    ],
)
def test_each_alias_means_the_same_dtype_everywhere(alias, name, dtype, tiny_config):
    assert dtype_name(alias) == dtype_name(name) == name
    assert torch_dtype(alias) is torch_dtype(name) is dtype
    # training: the config keeps one spelling, whichever was typed
    assert build_run_config(overrides=[f"train.dtype={alias}"]).train.dtype == name
    if dtype is not torch.float16:  # fp16 needs a GPU, for both spellings (tested below)
        assert resolve_dtype(alias, torch.device("cpu")) is dtype
        # inference: the same words cast the model
        model = prepare_model(GPT(tiny_config), alias)
        assert next(model.parameters()).dtype is dtype


def test_a_run_config_written_with_old_spellings_still_loads(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text('preset = "shakespeare-char"\n[train]\ndtype = "bfloat16"\n', encoding="utf-8")
    assert build_run_config(config_file=path).train.dtype == "bf16"


def test_unknown_dtypes_fail_in_one_line_naming_the_valid_ones():
    with pytest.raises(GptlabError, match=r"train.dtype must be one of auto, fp32, bf16, fp16"):
        build_run_config(overrides=["train.dtype=fp8"])
    with pytest.raises(GptlabError, match=r"dtype must be one of fp32, bf16, fp16 .*'int4'"):
        dtype_name("int4")
    with pytest.raises(GptlabError, match="train.dtype=fp16 needs a GPU"):
        resolve_dtype("float16", torch.device("cpu"))


def test_sample_takes_either_spelling(tmp_path, capsys, tiny_config):
    from gptlab.checkpoints.model_folder import save_model
    from gptlab.cli import main
    from gptlab.tokenizers.base import CharTokenizer

    tokenizer = CharTokenizer.from_text("".join(chr(32 + i) for i in range(97)))
    save_model(tmp_path, GPT(tiny_config), tokenizer)
    outputs = []
    for dtype in ("bf16", "bfloat16"):
        argv = ["sample", "--checkpoint", str(tmp_path), "--prompt", "ab", "--greedy"]
        assert main([*argv, "--max-new-tokens", "5", "--dtype", dtype, "--device", "cpu"]) == 0
        outputs.append(capsys.readouterr().out)
    assert outputs[0] == outputs[1]
    assert main([*argv, "--dtype", "half", "--device", "cpu"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--dtype must be one of fp32, bf16, fp16" in err


def test_devices():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type in ("cpu", "cuda", "mps")
    with pytest.raises(GptlabError, match="unknown device 'gpu0'"):
        resolve_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(GptlabError, match="no CUDA GPU is available"):
            resolve_device("cuda")
    assert model_device(torch.nn.Linear(2, 2)) == torch.device("cpu")
