"""The speedrun's model additions (bigram_embed and its trigram_buckets, value_embed, x0_blend,
smear): each starts as the
plain model, matches a hand computation, decodes with a cache exactly as the full forward pass
predicts, and is counted, saved, optimised and refused where it cannot go."""

from __future__ import annotations

import math
import re

import pytest
import torch
import torch.nn.functional as F

from gptlab.checkpoints.load import load_model
from gptlab.checkpoints.model_folder import save_model
from gptlab.errors import GptlabError
from gptlab.inference.generate import GenerationConfig, generate
from gptlab.inference.speculative import speculative_generate
from gptlab.model import GPT
from gptlab.model.attention import AttentionInputs
from gptlab.model.config import ModelConfig
from gptlab.model.embeddings import SMEAR_GATE_CHANNELS, VALUE_GATE_CHANNELS, bigram_rows
from gptlab.model.hf import hf_config_from_model_config
from gptlab.model.params import count_parameters
from gptlab.model.transformer_lens import check_gpt2_shaped
from gptlab.train.config import TrainConfig
from gptlab.train.flops import flops_per_token
from gptlab.train.optim import build_optimizer

V, L, H, C = 40, 3, 4, 32
BUCKETS = 50  # fewer rows than the 41 x 40 pairs: a hashed bigram table
TRIGRAM_BUCKETS = 96  # far fewer rows than the 41 x 41 x 40 triples
TINY = dict(vocab_size=V, block_size=24, n_layer=L, n_head=H, n_embd=C)
ADDITIONS = {
    "bigram_embed": dict(bigram_embed=True),
    "bigram_hashed": dict(bigram_embed=True, bigram_buckets=BUCKETS),
    "trigram": dict(bigram_embed=True, trigram_buckets=TRIGRAM_BUCKETS),
    "value_embed": dict(value_embed=True),
    "x0_blend": dict(x0_blend=True),
    "smear": dict(smear=True),
    "all": dict(bigram_embed=True, value_embed=True, x0_blend=True, smear=True),
    # the speedrun's shape around them: rotary positions, grouped-query heads, QK-norm, untied
    "all+rope,gqa": dict(
        bigram_embed=True,
        trigram_buckets=TRIGRAM_BUCKETS,
        value_embed=True,
        x0_blend=True,
        smear=True,
        pos="rope",
        n_kv_head=2,
        qk_norm=True,
        tie_weights=False,
        mlp="relu2",
    ),
}


def config(**changes) -> ModelConfig:
    return ModelConfig(**{**TINY, **changes})


def scrambled(model: GPT, seed: int = 0) -> GPT:
    """Large random weights (as model_testing.spiky_model) and the additions' zero-initialised
    scales and gates set to random values, so each addition really acts and greedy decoding
    wanders."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.dim() > 1:
                param.normal_(0.0, 0.3)
            elif "scale" in name or "strength" in name:
                param.uniform_(0.1, 0.4)
    return model.eval()


@pytest.mark.parametrize("changes", ADDITIONS.values(), ids=ADDITIONS.keys())
def test_an_initialised_model_computes_what_the_plain_model_does(changes):
    addition_keys = set(ADDITIONS["all"]) | {"bigram_buckets", "trigram_buckets"}
    base = {k: v for k, v in changes.items() if k not in addition_keys}
    plain = GPT(config(**base))
    model = GPT(config(**changes))
    missing, unexpected = model.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and missing  # the additions' own tensors keep their initial values
    idx = torch.randint(0, V, (2, 16))
    with torch.no_grad():
        torch.testing.assert_close(model(idx)[0], plain(idx)[0], rtol=0, atol=0)


@pytest.mark.parametrize("changes", ADDITIONS.values(), ids=ADDITIONS.keys())
def test_cached_greedy_decoding_is_the_argmax_of_the_full_forward_pass(changes):
    model = scrambled(GPT(config(**changes)))
    prompts = [[1, 2, 3], [7, 8, 9, 10, 4, 5]]  # different lengths: left padding in the batch
    greedy = dict(max_new_tokens=15, temperature=0.0, stop_at_eot=False)  # 6 + 15 < block 24
    for cache in ("dynamic", "static", "none"):
        results = generate(model, prompts, GenerationConfig(**greedy, cache=cache))
        for prompt, result in zip(prompts, results, strict=True):
            full = torch.tensor([prompt + result.token_ids[:-1]])
            with torch.no_grad():
                logits, _ = model(full)
            predicted = logits[0, len(prompt) - 1 :].argmax(dim=-1).tolist()
            assert result.token_ids == predicted, cache
        # Tiny random models fall into short cycles; enough that they do not stay on one token.
        assert len({t for result in results for t in result.token_ids}) > 2


@pytest.mark.parametrize("changes", ADDITIONS.values(), ids=ADDITIONS.keys())
def test_speculative_decoding_keeps_the_previous_token_across_cache_crops(changes):
    target = scrambled(GPT(config(**changes)), seed=1)
    draft = scrambled(GPT(config(**changes)), seed=2)  # a bad draft: many rejections, many crops
    result = speculative_generate(target, draft, [3, 1, 4], 15, draft_tokens=3)
    plain = generate(
        target, [3, 1, 4], GenerationConfig(max_new_tokens=15, temperature=0, stop_at_eot=False)
    )
    assert result.token_ids == plain[0].token_ids
    assert result.accepted < result.proposed


@pytest.mark.parametrize("name", ["all", "all+rope,gqa"])
def test_a_left_padded_row_gets_the_logits_it_gets_alone(name):
    model = scrambled(GPT(config(**ADDITIONS[name])))
    row = torch.tensor([[5, 6, 7, 8]])
    padded = torch.tensor([[0, 0, 5, 6, 7, 8]])  # two pad tokens: the row starts at position 0
    mask = torch.tensor([[0, 0, 1, 1, 1, 1]])
    positions = torch.tensor([[0, 0, 0, 1, 2, 3]])
    with torch.no_grad():
        alone, _ = model(row)
        batched, _ = model(padded, attention_mask=mask, position_ids=positions)
    torch.testing.assert_close(batched[:, 2:], alone, atol=1e-5, rtol=1e-5)


def test_bigram_rows_by_hand():
    model = scrambled(GPT(config(bigram_embed=True)))
    idx = torch.tensor([[3, 3, 0, 39, 7]])
    _, cache = model.run_with_cache(idx, names=["hook_bigram_embed"])
    table = model.bigram_embed.table.weight
    # Row previous * V + token; the first token's previous is "none", the extra row V.
    rows = [V * V + 3, 3 * V + 3, 3 * V + 0, 0 * V + 39, 39 * V + 7]
    torch.testing.assert_close(cache["hook_bigram_embed"][0], table[rows].detach())
    assert table.shape == ((V + 1) * V, C)


def test_hashed_bigram_rows_by_hand():
    model = scrambled(GPT(config(bigram_embed=True, bigram_buckets=BUCKETS)))
    idx = torch.tensor([[3, 3, 0, 39, 7]])
    _, cache = model.run_with_cache(idx, names=["hook_bigram_embed"])
    table = model.bigram_embed.table.weight
    assert table.shape == (BUCKETS, C)

    def row(previous: int, token: int) -> int:  # the hash written out on Python integers
        return ((previous * 1_000_003) ^ (token * 2_654_435_761)) % BUCKETS

    # The first token's previous is "none", spelled V as in the exact table.
    rows = [row(V, 3), row(3, 3), row(3, 0), row(0, 39), row(39, 7)]
    torch.testing.assert_close(cache["hook_bigram_embed"][0], table[rows].detach())
    # Every bucket is used by some pair, and the pairs spread evenly: no bucket holds more
    # than twice its share of the 41 x 40 pairs.
    counts = torch.bincount(
        torch.tensor([row(p, t) for p in range(V + 1) for t in range(V)]), minlength=BUCKETS
    )
    assert counts.min() > 0 and counts.max() <= 2 * (V + 1) * V / BUCKETS


def test_trigram_rows_by_hand():
    model = scrambled(GPT(config(**ADDITIONS["trigram"])))
    idx = torch.tensor([[3, 3, 0, 39, 7]])
    _, cache = model.run_with_cache(idx, names=["hook_bigram_embed"])
    bigram = model.bigram_embed.table.weight
    trigram = model.bigram_embed.trigram_table.weight
    assert trigram.shape == (TRIGRAM_BUCKETS, C)

    def row(two_back: int, previous: int, token: int) -> int:  # the hash on Python integers
        mixed = (two_back * 3_000_017) ^ (previous * 1_000_003) ^ (token * 2_654_435_761)
        return mixed % TRIGRAM_BUCKETS

    # A missing token is spelled V: the first has neither, the second no token two back.
    triples = [(V, V, 3), (V, 3, 3), (3, 3, 0), (3, 0, 39), (0, 39, 7)]
    expected = bigram[[p * V + t for _, p, t in triples]] + trigram[[row(*t) for t in triples]]
    torch.testing.assert_close(cache["hook_bigram_embed"][0], expected.detach())
    counts = torch.bincount(
        torch.tensor([row(a, b, t) for a in range(V + 1) for b in range(V + 1) for t in range(V)]),
        minlength=TRIGRAM_BUCKETS,
    )
    assert counts.min() > 0 and counts.max() <= 2 * (V + 1) ** 2 * V / TRIGRAM_BUCKETS


def test_tokens_back_read_the_cache_and_the_position_ids():
    from gptlab.model.embeddings import tokens_back
    from gptlab.model.kv_cache import KVCache

    cache = KVCache(n_layer=1)
    cache.record_tokens(torch.tensor([[11, 12, 13]]))
    cache._len = 3  # as after a forward pass over those three
    idx, positions = torch.tensor([[14, 15]]), torch.tensor([[3, 4]])
    for distance, expected in [(1, [13, 14]), (2, [12, 13]), (3, [11, 12])]:
        ids, present = tokens_back(idx, positions, cache, distance)
        assert ids.tolist() == [expected] and present.tolist() == [[True, True]]
    # With one cached token, the first column's token two back lies before the sequence.
    short = KVCache(n_layer=1)
    short.record_tokens(torch.tensor([[11]]))
    short._len = 1
    ids, present = tokens_back(idx, torch.tensor([[1, 2]]), short, 2)
    assert present.tolist() == [[False, True]] and ids[0, 1].item() == 11
    # No cache: the first `distance` columns have none; a left-padded row's ids say the same.
    _, present = tokens_back(torch.tensor([[0, 5, 6, 7]]), torch.tensor([[0, 0, 1, 2]]), None, 2)
    assert present.tolist() == [[False, False, False, True]]


def test_with_power_of_two_buckets_a_token_never_shares_a_row_between_two_previous_tokens():
    buckets = 64  # >= V + 1 previous tokens (the odd multiplier permutes the integers mod 64)
    model = GPT(config(bigram_embed=True, bigram_buckets=buckets))
    previous = torch.arange(V + 1)
    for token in range(V):
        rows = bigram_rows(previous, torch.full_like(previous, token), V, buckets)
        assert len(set(rows.tolist())) == V + 1
    assert model.bigram_embed.table.weight.shape == (buckets, C)


def test_a_block_reads_its_blended_input_by_hand():
    model = GPT(config(x0_blend=True, bigram_embed=True))
    block = model.blocks[1]
    torch.manual_seed(0)
    x, x0, bigram = (torch.randn(2, 5, C) for _ in range(3))
    inputs = AttentionInputs(None, True, x0=x0, bigram=bigram)
    with torch.no_grad():
        block.resid_scale.fill_(0.7)
        block.x0_scale.fill_(-0.4)
        block.bigram_scale.fill_(1.3)
        blended = block(x, inputs)
        # The same block with its scalars at their initial (1, 0, 0), given the mix by hand.
        block.resid_scale.fill_(1.0)
        block.x0_scale.fill_(0.0)
        block.bigram_scale.fill_(0.0)
        by_hand = block(0.7 * x - 0.4 * x0 + 1.3 * bigram, inputs)
        # And the pre-norm block written out: x + attn(ln_1(x)), then + mlp(ln_2(.)).
        mixed = 0.7 * x - 0.4 * x0 + 1.3 * bigram
        mid = mixed + block.attn(block.ln_1(mixed), inputs)
        written_out = mid + block.mlp(block.ln_2(mid))
    torch.testing.assert_close(blended, by_hand)
    torch.testing.assert_close(blended, written_out)


def test_smear_by_hand():
    model = scrambled(GPT(config(smear=True)))
    idx = torch.tensor([[4, 9, 2, 2]])
    _, cache = model.run_with_cache(idx, names=["hook_embed", "hook_smear"])
    e = model.wte.weight[idx[0]].detach()  # (T, C)
    w = model.smear.gate.weight.detach()[0]  # (24,)
    strength = model.smear.strength.item()
    expected = torch.zeros(4, C)
    for t in range(1, 4):
        gate = 1 / (1 + math.exp(-float(e[t, :SMEAR_GATE_CHANNELS] @ w)))
        expected[t] = strength * gate * e[t - 1]
    torch.testing.assert_close(cache["hook_smear"][0], expected)
    torch.testing.assert_close(cache["hook_embed"][0], e)  # the token embedding itself


def test_value_embeddings_by_hand_on_alternate_layers():
    assert config(value_embed=True).value_embed_layers() == [
        0,
        2,
    ]  # the last layer, then every other
    assert config(value_embed=True, n_layer=4).value_embed_layers() == [1, 3]
    model = scrambled(GPT(config(value_embed=True, n_kv_head=2)))
    assert [b.attn.value_embed is not None for b in model.blocks] == [True, False, True]
    idx = torch.tensor([[1, 5, 5, 9]])
    names = ["blocks.2.hook_ln1", "blocks.2.attn.hook_v"]
    _, cache = model.run_with_cache(idx, names=names)
    attn = model.blocks[2].attn
    x = cache["blocks.2.hook_ln1"][0]  # (T, C) what attention reads
    D, kv = C // H, 2
    plain_v = (x @ attn.c_attn.weight.T + attn.c_attn.bias)[:, C + kv * D :].detach()  # (T, kv D)
    gate = 2 * torch.sigmoid(x[:, :VALUE_GATE_CHANNELS] @ attn.value_embed.gate.weight.T)  # (T, kv)
    table = attn.value_embed.table.weight[idx[0]].view(4, kv, D)
    expected = plain_v.view(4, kv, D) + gate.unsqueeze(-1) * table
    torch.testing.assert_close(cache["blocks.2.attn.hook_v"][0], expected.transpose(0, 1).detach())


def test_parameter_counts_by_hand():
    Vp, D, kv = V, C // H, H  # no vocabulary padding in TINY; kv heads = n_head
    plain = count_parameters(config()).total_with_tying
    extra = {
        "bigram_embed": (V + 1) * V * C + L,  # the table, one scale per block
        "bigram_hashed": BUCKETS * C + L,
        "trigram": (V + 1) * V * C + TRIGRAM_BUCKETS * C + L,  # both tables, one scale a block
        "value_embed": 2 * (Vp * kv * D + kv * VALUE_GATE_CHANNELS),  # layers 0 and 2
        "x0_blend": 2 * L,  # a and b per block
        "smear": SMEAR_GATE_CHANNELS + 1,  # the gate's weights and its strength
    }
    for name, n in extra.items():
        counts = count_parameters(config(**ADDITIONS[name]))
        assert counts.total_with_tying == plain + n, name
        assert GPT(config(**ADDITIONS[name])).num_parameters() == plain + n, name
    everything = count_parameters(config(**ADDITIONS["all"]))
    assert (
        everything.total_with_tying
        == plain + sum(extra.values()) - extra["bigram_hashed"] - extra["trigram"]
    )
    rows = {
        r.component.split(" (")[0]: r.total
        for r in count_parameters(config(**ADDITIONS["trigram"])).rows
    }
    assert rows["trigram embedding"] == TRIGRAM_BUCKETS * C
    assert rows["bigram embedding"] == (V + 1) * V * C
    rows = {row.component.split(" (")[0]: row.total for row in everything.rows}
    assert rows["bigram embedding"] == (V + 1) * V * C
    assert rows["value embeddings"] == extra["value_embed"]
    assert rows["input scales"] == 3 * L
    assert rows["smear gate"] == SMEAR_GATE_CHANNELS + 1
    assert "smear gate" not in {r.component.split(" (")[0] for r in count_parameters(config()).rows}


def test_flops_leave_out_the_lookup_tables():
    # Only the gates and scalars are multiplied: 6 FLOPs each per token, no more.
    plain = flops_per_token(config(), GPT(config()).num_parameters())
    model = GPT(config(**ADDITIONS["all"]))
    multiplied = 3 * L + SMEAR_GATE_CHANNELS + 1 + 2 * H * VALUE_GATE_CHANNELS
    assert flops_per_token(model.config, model.num_parameters()) == plain + 6 * multiplied
    hashed = GPT(config(**ADDITIONS["bigram_hashed"]))
    assert flops_per_token(hashed.config, hashed.num_parameters()) == plain + 6 * L
    trigram = GPT(config(**ADDITIONS["trigram"]))
    assert flops_per_token(trigram.config, trigram.num_parameters()) == plain + 6 * L


def test_muon_takes_only_the_blocks_linear_weights():
    model = GPT(config(**ADDITIONS["all"]))
    optimizer = build_optimizer(
        model, TrainConfig(optimizer="muon", lr=1e-3, muon_lr=0.02), torch.device("cpu")
    )
    names = {id(p): n for n, p in model.named_parameters()}
    muon = {names[id(p)] for g in optimizer.muon.param_groups for p in g["params"]}
    assert muon == {
        f"blocks.{i}.{m}.weight"
        for i in range(L)
        for m in ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")
    }
    decay, no_decay = ({names[id(p)] for p in g["params"]} for g in optimizer.adamw.param_groups)
    assert {"bigram_embed.table.weight", "blocks.2.attn.value_embed.table.weight"} <= decay
    assert "blocks.0.attn.value_embed.gate.weight" in decay
    assert {"smear.strength", "blocks.1.x0_scale", "blocks.1.bigram_scale"} <= no_decay
    assert muon | decay | no_decay == set(names.values())


def test_every_addition_trains():
    torch.manual_seed(0)
    model = GPT(config(**ADDITIONS["all"]))
    idx = torch.randint(0, V, (4, 17))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    losses = []
    for _ in range(4):
        _, loss = model(idx[:, :-1], idx[:, 1:])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    moved = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert moved == set(before)  # zero scales and zero tables both get going


def test_checkpoint_round_trip(tmp_path):
    model = scrambled(GPT(config(**ADDITIONS["all+rope,gqa"])))
    save_model(tmp_path / "model", model)
    loaded, _ = load_model(tmp_path / "model", "cpu")
    assert loaded.config == model.config
    idx = torch.randint(0, V, (2, 9))
    with torch.no_grad():
        torch.testing.assert_close(loaded(idx)[0], model(idx)[0], rtol=0, atol=0)


def test_the_bigram_table_is_refused_for_large_vocabularies():
    with pytest.raises(GptlabError, match=r"model.bigram_embed needs .* 50258 x 50257 x 768"):
        ModelConfig(bigram_embed=True)
    message = ""
    try:
        ModelConfig(vocab_size=1414, n_embd=32, n_head=4, bigram_embed=True)  # just over the limit
    except GptlabError as exc:
        message = str(exc)
    assert "1415 x 1414 x 32 = 64,025,920 parameters" in message and "\n" not in message
    ModelConfig(vocab_size=1413, n_embd=32, n_head=4, bigram_embed=True)  # 63,935,424: fine
    with pytest.raises(GptlabError, match=r"hash the pairs into fewer rows \(model.bigram_buckets"):
        ModelConfig(vocab_size=8192, n_embd=128, n_head=4, bigram_embed=True)
    # Hashed, an 8,192-token BPE gets a table of 2 x 8,192 rows.
    hashed = ModelConfig(
        vocab_size=8192, n_embd=128, n_head=4, bigram_embed=True, bigram_buckets=16384
    )
    assert hashed.bigram_parameters == 16384 * 128
    with pytest.raises(GptlabError, match=r"bigram_buckets=600000 x n_embd 128 = 76,800,000"):
        ModelConfig(
            vocab_size=8192, n_embd=128, n_head=4, bigram_embed=True, bigram_buckets=600_000
        )


@pytest.mark.parametrize(
    "field, without_bigram",
    [
        ("bigram_buckets", "bigram_buckets=64 sizes the bigram table, which is off"),
        ("trigram_buckets", "trigram_buckets=64 adds its rows to the bigram table's, which is off"),
    ],
)
def test_bucket_counts_are_checked(field, without_bigram):
    with pytest.raises(GptlabError, match=re.escape(without_bigram)):
        config(**{field: 64})
    with pytest.raises(GptlabError, match=rf"model.{field} must be an integer >= 2"):
        config(bigram_embed=True, **{field: 1})
    with pytest.raises(GptlabError, match=rf"{field}=600000 x n_embd 128 = 76,800,000"):
        ModelConfig(vocab_size=65, n_embd=128, n_head=4, bigram_embed=True, **{field: 600_000})


def test_the_trigram_table_is_a_variant():
    assert (
        config(**ADDITIONS["trigram"]).variant_changes()[-1] == f"trigram_buckets={TRIGRAM_BUCKETS}"
    )


@pytest.mark.parametrize("name", ["bigram_embed", "value_embed", "x0_blend", "smear"])
def test_exports_and_decompositions_refuse_the_additions(name):
    from gptlab.interp.attribution import direct_logit_attribution

    model = GPT(config(**ADDITIONS[name]))
    with pytest.raises(GptlabError, match=rf"not a GPT-2 \({name}=True\)"):
        hf_config_from_model_config(model.config)
    with pytest.raises(GptlabError, match=rf"TransformerLens export .* {name}=True"):
        check_gpt2_shaped(model)
    with pytest.raises(GptlabError, match=rf"direct logit attribution .* {name}=true"):
        direct_logit_attribution(model, torch.tensor([[1, 2, 3]]))


def test_hook_points_of_the_additions():
    model = scrambled(GPT(config(**ADDITIONS["all"])))
    idx = torch.randint(0, V, (2, 7))
    logits, cache = model.run_with_cache(idx)
    assert cache["hook_bigram_embed"].shape == (2, 7, C)
    assert cache["hook_smear"].shape == (2, 7, C)
    assert cache["blocks.0.attn.hook_value_embed"].shape == (2, H, 7, C // H)
    assert "blocks.1.attn.hook_value_embed" in model.hook_points  # named, but never fires
    assert "blocks.1.attn.hook_value_embed" not in cache
    # Zeroing the bigram rows through the hook is the same as zeroing each block's scale.
    with model.hooks({"hook_bigram_embed": lambda x, name: torch.zeros_like(x)}):
        hooked, _ = model(idx)
    with torch.no_grad():
        for block in model.blocks:
            block.bigram_scale.zero_()
        unscaled, _ = model(idx)
    torch.testing.assert_close(hooked, unscaled)
    assert not torch.allclose(hooked, logits)
    assert F.cross_entropy(logits[0], idx[0]).isfinite()


def test_compiled_static_decode_step_with_every_addition():
    """torch.compile's graph (the "eager" backend: the same capture, no C++ compiler) reads the
    previous token from the static cache as the uncompiled model does."""
    from gptlab.inference.forward import compiled_decode_step, new_cache, next_token_logits

    torch._dynamo.reset()
    model = scrambled(GPT(config(**ADDITIONS["all+rope,gqa"])))
    step = compiled_decode_step(model, backend="eager")
    tokens, cache = torch.tensor([[3, 1, 4, 1, 5]]), new_cache(model, "static", 1, 24)
    with torch.inference_mode():
        for _ in range(12):
            logits, cache = next_token_logits(model, tokens, None, cache, step)
            tokens = torch.cat([tokens, logits.argmax(-1, keepdim=True)], dim=1)
    greedy = GenerationConfig(max_new_tokens=12, temperature=0, stop_at_eot=False, cache="none")
    assert tokens[0, 5:].tolist() == generate(model, [3, 1, 4, 1, 5], greedy)[0].token_ids


@pytest.mark.parametrize("precision", ["bf16", "int8"])
def test_low_precision_models_decode_alike_with_either_cache(precision):
    """bf16 decodes as without a cache; int8 quantizes activations per call (a lone token
    against the whole prefix), so there the two caches, which make the same calls, must agree."""
    from gptlab.inference.precision import prepare_model

    model = scrambled(GPT(config(**ADDITIONS["all"])))
    if precision == "bf16":
        model, reference = prepare_model(model, dtype="bf16"), "none"
    else:
        model, reference = prepare_model(model, quantize="int8"), "static"
    greedy = dict(max_new_tokens=12, temperature=0, stop_at_eot=False)
    cached = generate(model, [[2, 7, 1], [9, 9]], GenerationConfig(**greedy, cache="dynamic"))
    other = generate(model, [[2, 7, 1], [9, 9]], GenerationConfig(**greedy, cache=reference))
    assert [r.token_ids for r in cached] == [r.token_ids for r in other]
