"""The GPT model: attention paths, masks, KV cache, vocab padding, loss, init and config checks."""

import math

import pytest
import torch

from gptlab.errors import GptlabError
from gptlab.model import GPT, KVCache
from gptlab.model.config import ModelConfig


def build(config: ModelConfig, seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    return GPT(config).eval()


def twin(model: GPT, **changes) -> GPT:
    """The same weights in a model whose config differs by `changes` (e.g. the attention path)."""
    other = GPT(model.config.replace(**changes)).eval()
    other.load_state_dict(model.state_dict())
    return other


@pytest.fixture
def idx(tiny_config):
    return torch.randint(
        0, tiny_config.vocab_size, (3, 20), generator=torch.Generator().manual_seed(1)
    )


def assert_close(a: torch.Tensor, b: torch.Tensor) -> None:
    torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


def left_padded_batch(prompts: list[torch.Tensor]):
    """(idx, attention_mask, position_ids) with prompts right-aligned, as batched generation does."""
    T = max(len(p) for p in prompts)
    idx = torch.zeros(len(prompts), T, dtype=torch.long)
    mask = torch.zeros(len(prompts), T, dtype=torch.long)
    for row, p in enumerate(prompts):
        idx[row, T - len(p) :] = p
        mask[row, T - len(p) :] = 1
    position_ids = (mask.cumsum(dim=1) - 1).clamp(min=0)
    return idx, mask, position_ids


@torch.no_grad()
def test_sdpa_and_explicit_attention_agree(tiny_config, idx):
    sdpa = build(tiny_config.replace(attention="sdpa"))
    explicit = twin(sdpa, attention="explicit")
    assert_close(sdpa(idx)[0], explicit(idx)[0])


@torch.no_grad()
def test_padding_mask_gives_each_prompt_its_unpadded_logits(tiny_config, idx):
    """Left-padded prompts of different lengths, both attention paths, against each prompt alone."""
    sdpa = build(tiny_config.replace(attention="sdpa"))
    explicit = twin(sdpa, attention="explicit")
    prompts = [idx[0, :12], idx[1, :5], idx[2, :9]]
    batch, mask, position_ids = left_padded_batch(prompts)
    for model in (sdpa, explicit):
        logits, _ = model(batch, attention_mask=mask, position_ids=position_ids)
        for row, prompt in enumerate(prompts):
            alone, _ = model(prompt.unsqueeze(0))
            assert_close(logits[row, -len(prompt) :], alone[0])
    real = mask.bool()
    sdpa_logits = sdpa(batch, attention_mask=mask, position_ids=position_ids)[0]
    explicit_logits = explicit(batch, attention_mask=mask, position_ids=position_ids)[0]
    assert_close(sdpa_logits[real], explicit_logits[real])


@torch.no_grad()
def test_cached_decoding_equals_uncached_step_by_step(tiny_config, idx):
    for attention in ("sdpa", "explicit"):
        model = build(tiny_config.replace(attention=attention))
        cache = KVCache(tiny_config.n_layer)
        prompt_len = 8
        logits, _ = model(idx[:, :prompt_len], kv_cache=cache)
        assert_close(logits, model(idx[:, :prompt_len])[0])
        for t in range(prompt_len, idx.shape[1]):
            step, _ = model(idx[:, t : t + 1], kv_cache=cache)  # one new token, the rest cached
            uncached, _ = model(idx[:, : t + 1])
            assert_close(step[:, -1], uncached[:, -1])
        assert cache.seq_len == idx.shape[1]


@torch.no_grad()
def test_kv_cache_with_padding_mask_matches_explicit(tiny_config, idx):
    sdpa = build(tiny_config.replace(attention="sdpa"))
    explicit = twin(sdpa, attention="explicit")
    batch, mask, position_ids = left_padded_batch([idx[0, :10], idx[1, :4]])
    outputs = []
    for model in (sdpa, explicit):
        cache = KVCache(tiny_config.n_layer)
        model(batch, attention_mask=mask, position_ids=position_ids, kv_cache=cache)
        next_token = idx[:2, 15:16]
        step_mask = torch.cat([mask, torch.ones(2, 1, dtype=mask.dtype)], dim=1)
        step, _ = model(
            next_token,
            attention_mask=step_mask,
            position_ids=position_ids[:, -1:] + 1,
            kv_cache=cache,
        )
        outputs.append(step)
        # ...and the cached step equals the second prompt run alone, uncached, with the new token.
        alone, _ = model(torch.cat([idx[1, :4], idx[1, 15:16]]).unsqueeze(0))
        assert_close(step[1, -1], alone[0, -1])
    assert_close(outputs[0], outputs[1])


@torch.no_grad()
def test_vocab_padding_changes_nothing(tiny_config, idx):
    plain = build(tiny_config)
    padded = GPT(tiny_config.replace(pad_vocab_multiple=64)).eval()
    V = tiny_config.vocab_size
    assert padded.wte.weight.shape[0] == 128
    state = plain.state_dict()
    # The padded model keeps large random rows after the real vocabulary: they must not matter.
    state["wte.weight"] = torch.cat(
        [state["wte.weight"], 10 * torch.randn(128 - V, tiny_config.n_embd)]
    )
    state["lm_head.weight"] = state["wte.weight"]
    padded.load_state_dict(state)
    targets = torch.roll(idx, -1, dims=1)
    logits, loss = padded(idx, targets)
    plain_logits, plain_loss = plain(idx, targets)
    assert logits.shape == (*idx.shape, V)
    assert torch.equal(logits, plain_logits)
    assert torch.equal(loss, plain_loss)
    last, _ = padded(idx, only_last=True)
    assert last.shape == (idx.shape[0], 1, V)


@torch.no_grad()
def test_loss_is_mean_cross_entropy_ignoring_minus_100(tiny_config, idx):
    model = build(tiny_config)
    targets = torch.roll(idx, -1, dims=1)
    targets[0, 5:] = -100
    targets[2, :3] = -100
    logits, loss = model(idx, targets)
    log_probs = logits.double().log_softmax(dim=-1)
    terms = [
        -log_probs[b, t, targets[b, t]]
        for b in range(idx.shape[0])
        for t in range(idx.shape[1])
        if targets[b, t] != -100
    ]
    assert len(terms) == 3 * 20 - 15 - 3
    expected = sum(terms) / len(terms)
    assert loss.item() == pytest.approx(expected.item(), abs=1e-5)
    assert model(idx)[1] is None


def test_init_statistics_and_tying():
    config = ModelConfig(vocab_size=256, block_size=64, n_layer=4, n_head=4, n_embd=128)
    model = build(config)
    assert model.lm_head.weight is model.wte.weight
    assert model.wte.weight.std().item() == pytest.approx(0.02, rel=0.03)
    assert model.blocks[0].attn.c_attn.weight.std().item() == pytest.approx(0.02, rel=0.03)
    residual_std = 0.02 / math.sqrt(2 * config.n_layer)
    for block in model.blocks:
        assert block.attn.c_proj.weight.std().item() == pytest.approx(residual_std, rel=0.05)
        assert block.mlp.c_proj.weight.std().item() == pytest.approx(residual_std, rel=0.05)
        assert torch.all(block.attn.c_attn.bias == 0)
        assert torch.all(block.ln_1.weight == 1) and torch.all(block.ln_1.bias == 0)
    # Tied means one tensor: a training step on the head moves the embedding too.
    idx = torch.randint(0, 256, (2, 8))
    _, loss = model(idx, torch.roll(idx, -1, 1))
    loss.backward()
    with torch.no_grad():
        model.lm_head.weight -= 0.1 * model.lm_head.weight.grad
    assert torch.equal(model.lm_head.weight, model.wte.weight)


@pytest.mark.parametrize(
    "changes, message",
    [
        (dict(n_embd=30, n_head=4), r"n_embd \(30\) must be divisible by model.n_head \(4\)"),
        (dict(block_size=0), "block_size must be a positive integer"),
        (dict(attention="flash"), "attention must be one of sdpa, explicit"),
        (dict(dropout=1.0), r"dropout must be in \[0, 1\)"),
        (dict(vocab_size=1.5), "vocab_size must be a positive integer"),
    ],
)
def test_config_validation(changes, message):
    with pytest.raises(GptlabError, match=message):
        ModelConfig(
            **{**dict(vocab_size=97, block_size=32, n_layer=2, n_head=4, n_embd=32), **changes}
        )


def test_unknown_config_key_is_named():
    with pytest.raises(GptlabError, match="unknown model config key.*n_heads"):
        ModelConfig.from_dict({"n_heads": 4})


@torch.no_grad()
def test_sequence_longer_than_block_size_is_refused(tiny_config):
    model = build(tiny_config)
    B = tiny_config.block_size
    model(torch.zeros(1, B, dtype=torch.long))  # exactly block_size is fine
    with pytest.raises(GptlabError, match=f"longer than the model's block_size \\({B}\\)"):
        model(torch.zeros(1, B + 1, dtype=torch.long))
    cache = KVCache(tiny_config.n_layer)
    model(torch.zeros(1, B, dtype=torch.long), kv_cache=cache)
    with pytest.raises(GptlabError, match="block_size"):
        model(torch.zeros(1, 1, dtype=torch.long), kv_cache=cache)


def test_padded_vocab_loss_and_gradients_equal_the_unpadded_model(tiny_config, idx):
    """Training scores the padded logits with -inf padding columns (GPT.forward): the loss and
    every gradient must be the unpadded model's, and the padding rows must get no gradient."""
    V = tiny_config.vocab_size
    plain = build(tiny_config).train()
    padded = GPT(tiny_config.replace(pad_vocab_multiple=64)).train()
    state = plain.state_dict()
    state["wte.weight"] = torch.cat([state["wte.weight"], torch.randn(128 - V, tiny_config.n_embd)])
    state["lm_head.weight"] = state["wte.weight"]
    padded.load_state_dict(state)
    assert padded.loss_over_padded_vocab()
    targets = torch.roll(idx, -1, dims=1)
    targets[1, :4] = -100
    logits, loss = padded(idx, targets)
    plain_logits, plain_loss = plain(idx, targets)
    assert logits.shape == (*idx.shape, V)
    assert_close(logits, plain_logits)
    assert_close(loss, plain_loss)
    loss.backward()
    plain_loss.backward()
    grads = dict(padded.named_parameters())
    for name, param in plain.named_parameters():
        grad = grads[name].grad
        if name == "wte.weight":
            assert torch.equal(grad[V:], torch.zeros_like(grad[V:]))
            grad = grad[:V]
        assert_close(grad, param.grad)


def test_a_logits_hook_still_sees_the_logits_the_loss_scores(tiny_config, idx):
    padded = build(tiny_config.replace(pad_vocab_multiple=64))
    targets = torch.roll(idx, -1, dims=1)
    with padded.hooks({"hook_logits": lambda logits, name: torch.zeros_like(logits)}):
        assert not padded.loss_over_padded_vocab()
        _, loss = padded(idx, targets)
    assert loss.item() == pytest.approx(math.log(tiny_config.vocab_size), abs=1e-5)
