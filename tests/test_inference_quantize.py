"""Weight precision: int8 dynamic quantization and bf16 against the fp32 model they came from.

The model is trained for 150 steps on TinyShakespeare first, so its logits and its
perplexity on real text mean something (a random model's are all near uniform)."""

import copy
import warnings

import pytest
import torch
import torch.nn.functional as F

from gptlab.errors import GptlabError
from gptlab.eval.perplexity import evaluate_text
from gptlab.inference.generate import GenerationConfig, generate
from gptlab.inference.precision import cast_model, dtype_for_device, prepare_model, weight_bytes
from gptlab.model import GPT
from gptlab.model.config import ModelConfig
from gptlab.tokenizers.base import CharTokenizer

BLOCK = 32


@pytest.fixture(scope="module")
def trained(request, shared_data):
    """(model, tokenizer, validation text): a tiny char model after 150 AdamW steps."""
    path = shared_data / "tinyshakespeare" / "input.txt"
    text = path.read_text(encoding="utf-8")
    split = int(0.9 * len(text))
    tokenizer = CharTokenizer.from_text(text)
    data = torch.tensor(tokenizer.encode(text[:split]), dtype=torch.long)
    torch.manual_seed(0)
    model = GPT(
        ModelConfig(
            vocab_size=tokenizer.vocab_size, block_size=BLOCK, n_layer=2, n_head=4, n_embd=64
        )
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(150):
        starts = torch.randint(len(data) - BLOCK - 1, (16,))
        x = torch.stack([data[s : s + BLOCK] for s in starts])
        y = torch.stack([data[s + 1 : s + BLOCK + 1] for s in starts])
        _, loss = model(x, y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval(), tokenizer, text[split : split + 6000]


def perplexity(model, tokenizer, text) -> float:
    return evaluate_text(model, tokenizer, text, progress=False).perplexity


def test_int8_logits_close_to_fp32_and_perplexity_barely_changes(trained):
    model, tokenizer, text = trained
    quantized = prepare_model(model, quantize="int8")
    idx = torch.tensor([tokenizer.encode(text[:BLOCK])])
    with torch.no_grad():
        reference, _ = model(idx)
        logits, _ = quantized(idx)
    # Tolerance: int8 with per-row scales keeps ~2 significant digits per weight; over a
    # 2-layer model the logits move by at most 5% of their range.
    spread = reference.max() - reference.min()
    assert (logits - reference).abs().max() <= 0.05 * spread
    # The predicted distributions agree: tiny KL divergence, same top-1 almost everywhere.
    kl = F.kl_div(
        F.log_softmax(logits, -1),
        F.log_softmax(reference, -1),
        log_target=True,
        reduction="batchmean",
    )
    assert kl < 0.01
    assert (logits.argmax(-1) == reference.argmax(-1)).float().mean() >= 0.9
    fp32_ppl, int8_ppl = perplexity(model, tokenizer, text), perplexity(quantized, tokenizer, text)
    assert fp32_ppl < 15  # the model did learn something: uniform would be ~65
    assert abs(int8_ppl / fp32_ppl - 1) < 0.01
    # Smaller: the linears' weights take one byte instead of four.
    assert weight_bytes(quantized) < 0.6 * weight_bytes(model)


def test_int8_generation_runs_with_either_cache(trained):
    model, tokenizer, _ = trained
    quantized = prepare_model(model, quantize="int8")
    prompt = tokenizer.encode("ROMEO:\n")
    for cache in ("dynamic", "static"):
        out = generate(
            quantized, prompt, GenerationConfig(max_new_tokens=20, temperature=0, cache=cache)
        )
        assert len(out[0].token_ids) == 20


def test_bf16_runs_and_is_close(trained):
    model, tokenizer, text = trained
    half = prepare_model(copy.deepcopy(model), "bf16")
    assert half.wte.weight.dtype == torch.bfloat16
    idx = torch.tensor([tokenizer.encode(text[:BLOCK])])
    with torch.no_grad():
        reference, _ = model(idx)
        logits, _ = half(idx)
    # bf16 keeps 8 bits of mantissa (~0.4% per value); the logits stay within 5% of their range.
    spread = reference.max() - reference.min()
    assert (logits.float() - reference).abs().max() <= 0.05 * spread
    assert abs(perplexity(half, tokenizer, text) / perplexity(model, tokenizer, text) - 1) < 0.02
    out = generate(
        half,
        tokenizer.encode("ROMEO:\n"),
        GenerationConfig(max_new_tokens=10, temperature=0, cache="static"),
    )
    assert len(out[0].token_ids) == 10


def test_fp16_on_cpu_falls_back_to_fp32_with_one_line():
    assert dtype_for_device("fp16", torch.device("cpu"))[0] == "fp32"
    assert dtype_for_device("fp16", torch.device("cuda")) == ("fp16", None)
    model = GPT(ModelConfig(vocab_size=20, block_size=8, n_layer=1, n_head=2, n_embd=8))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = cast_model(model, "fp16")
    assert model.wte.weight.dtype == torch.float32
    assert [str(w.message) for w in caught] == [
        "fp16 needs a GPU (CPU fp16 matmuls are emulated and slow); using fp32"
    ]


def test_bad_precision_requests_raise():
    model = GPT(ModelConfig(vocab_size=20, block_size=8, n_layer=1, n_head=2, n_embd=8))
    with pytest.raises(GptlabError, match="dtype must be one of fp32, bf16, fp16"):
        prepare_model(model, "fp8")
    with pytest.raises(GptlabError, match="unknown quantization"):
        prepare_model(model, quantize="int4")
    with pytest.raises(GptlabError, match="leave the dtype at fp32"):
        prepare_model(model, "bf16", quantize="int8")
