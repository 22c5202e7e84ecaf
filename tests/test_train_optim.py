"""Optimizer groups, the learning-rate schedule, gradient accumulation and MFU arithmetic."""

import math
from dataclasses import replace

import pytest
import torch

from gptlab.model.config import ModelConfig
from gptlab.model.gpt import GPT
from gptlab.train.config import TrainConfig
from gptlab.train.flops import flops_per_token, mfu, peak_flops
from gptlab.train.optim import Schedule, build_optimizer, parameter_groups
from gptlab.train.precision import grad_scaler
from gptlab.train.trainer import accumulate_gradients


def test_weight_decay_applies_to_matmul_weights_and_embeddings_only(tiny_config):
    model = GPT(tiny_config)
    decay, no_decay = parameter_groups(model, 0.1)
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    names = {id(p): n for n, p in model.named_parameters()}
    decay_names = {names[id(p)] for p in decay["params"]}
    no_decay_names = {names[id(p)] for p in no_decay["params"]}
    # Independent rule by name: Linear and Embedding weights decay; biases and LayerNorm gains do not.
    expected_decay = {
        n
        for n in names.values()
        if n.endswith("weight") and ".ln_" not in n and not n.startswith("ln_f")
    }
    assert decay_names == expected_decay
    assert no_decay_names == set(names.values()) - expected_decay
    assert "wte.weight" in decay_names  # the tied head is the same tensor, listed once
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))
    per_layer_decay = 4  # c_attn, attn.c_proj, c_fc, mlp.c_proj
    assert len(decay_names) == 2 + per_layer_decay * tiny_config.n_layer


def test_optimizer_uses_the_config(tiny_config):
    config = TrainConfig(lr=3e-4, beta1=0.8, beta2=0.95, weight_decay=0.2)
    optimizer = build_optimizer(GPT(tiny_config), config, torch.device("cpu"))
    assert isinstance(optimizer, torch.optim.AdamW)
    assert optimizer.defaults["betas"] == (0.8, 0.95)
    assert [g["weight_decay"] for g in optimizer.param_groups] == [0.2, 0.0]


def test_learning_rate_schedule_by_steps_matches_hand_values():
    schedule = Schedule(lr=1e-3, min_lr=1e-4, warmup_steps=10, max_steps=110, max_seconds=None)

    def lr(step):
        return schedule.lr_at(step, 0.0)

    assert lr(0) == pytest.approx(1e-4)  # 1e-3 * 1/10
    assert lr(4) == pytest.approx(5e-4)  # 1e-3 * 5/10
    assert lr(9) == pytest.approx(1e-3)  # end of warmup
    assert lr(10) == pytest.approx(1e-3)  # cosine starts at the top
    assert lr(60) == pytest.approx(1e-4 + 0.9e-3 * 0.5)  # half way: cos(pi/2) = 0
    assert lr(35) == pytest.approx(1e-4 + 0.9e-3 * 0.5 * (1 + math.cos(math.pi / 4)))
    assert lr(110) == pytest.approx(1e-4)  # the end
    assert lr(500) == pytest.approx(1e-4)  # past the end it stays at min_lr


def test_learning_rate_schedule_by_seconds_and_by_whichever_is_further():
    by_time = Schedule(lr=1e-3, min_lr=0.0, warmup_steps=5, max_steps=None, max_seconds=100.0)
    assert by_time.progress(50, 25.0) == pytest.approx(0.25)
    assert by_time.lr_at(50, 25.0) == pytest.approx(1e-3 * 0.5 * (1 + math.cos(math.pi * 0.25)))
    assert by_time.lr_at(2, 1.0) == pytest.approx(1e-3 * 3 / 5)  # warmup is in steps
    both = Schedule(lr=1e-3, min_lr=0.0, warmup_steps=0, max_steps=100, max_seconds=100.0)
    assert both.progress(10, 60.0) == pytest.approx(0.6)  # time is further along
    assert both.progress(70, 20.0) == pytest.approx(0.7)  # steps are further along
    # pretraining's schedule is read from its config
    config = TrainConfig(lr=2e-3, min_lr=2e-4, warmup_steps=7, max_steps=50, max_seconds=9.0)
    assert Schedule.of(config) == Schedule(2e-3, 2e-4, 7, 50, 9.0)


@pytest.mark.parametrize(
    "variant, lookup_only",
    [
        ({}, 64 * 32),  # GPT-2: the learned position table (block_size x n_embd)
        ({"pos": "rope"}, 0),  # rotary positions: no table at all
        ({"pos": "none"}, 0),
        ({"tie_weights": False}, 64 * 32 + 128 * 32),  # + the untied token embedding (a lookup)
    ],
)
def test_flops_count_only_multiplied_parameters(variant, lookup_only):
    config = ModelConfig(
        vocab_size=100, block_size=64, n_layer=2, n_head=4, n_embd=32, pad_vocab_multiple=64
    )
    config = replace(config, **variant)
    n = GPT(config).num_parameters()
    attention = 12 * 2 * 64 * 32
    assert flops_per_token(config, n) == 6 * (n - lookup_only) + attention


def test_accumulated_micro_batches_give_the_gradient_of_one_big_batch(tiny_config):
    torch.manual_seed(0)
    x = torch.randint(0, tiny_config.vocab_size, (8, 16))
    y = torch.randint(0, tiny_config.vocab_size, (8, 16))
    big, accumulated = GPT(tiny_config), GPT(tiny_config)
    accumulated.load_state_dict(big.state_dict())
    scaler = grad_scaler(torch.device("cpu"), torch.float32)  # disabled: passes through
    from contextlib import nullcontext

    whole = iter([(x, y)])
    loss_big = accumulate_gradients(big, lambda rows: next(whole), [8], nullcontext(), scaler)
    quarters = iter([(x[i : i + 2], y[i : i + 2]) for i in range(0, 8, 2)])
    loss_acc = accumulate_gradients(
        accumulated, lambda rows: next(quarters), [2, 2, 2, 2], nullcontext(), scaler
    )
    assert loss_acc.item() == pytest.approx(loss_big.item(), abs=1e-6)
    assert_same_gradients(big, accumulated)
    # A batch ramp's step may end on a shorter micro-batch (5 + 3 rows): each counts by its rows.
    uneven = GPT(tiny_config)
    uneven.load_state_dict(big.state_dict())
    parts = iter([(x[:5], y[:5]), (x[5:], y[5:])])
    asked = []

    def next_batch(rows):
        asked.append(rows)
        return next(parts)

    loss_uneven = accumulate_gradients(uneven, next_batch, [5, 3], nullcontext(), scaler)
    assert asked == [5, 3]
    assert loss_uneven.item() == pytest.approx(loss_big.item(), abs=1e-6)
    assert_same_gradients(big, uneven)


def assert_same_gradients(reference, other):
    for (name, p_ref), (_, p) in zip(
        reference.named_parameters(), other.named_parameters(), strict=True
    ):
        torch.testing.assert_close(p.grad, p_ref.grad, atol=1e-6, rtol=1e-5, msg=name)


def test_warmup_stable_decay_holds_lr_then_falls_linearly_by_steps_and_by_seconds():
    schedule = Schedule(1e-3, 1e-4, warmup_steps=10, max_steps=110, cooldown_fraction=0.4)
    assert schedule.lr_at(4, 0.0) == pytest.approx(5e-4)  # warmup as before
    # the 100 steps after warmup: stable until progress 0.6 (step 70), then linear to min_lr
    assert schedule.lr_at(10, 0.0) == schedule.lr_at(70, 0.0) == pytest.approx(1e-3)
    assert schedule.lr_at(80, 0.0) == pytest.approx(1e-4 + 0.9e-3 * 0.3 / 0.4)  # progress 0.7
    assert schedule.lr_at(90, 0.0) == pytest.approx(1e-4 + 0.9e-3 * 0.5)  # half way down
    assert schedule.lr_at(110, 0.0) == pytest.approx(1e-4)
    assert schedule.lr_at(500, 0.0) == pytest.approx(1e-4)
    # A clock budget: the cooldown starts at 1 - f of the seconds, whatever the step.
    by_time = Schedule(1e-3, 0.0, 5, None, max_seconds=180.0, cooldown_fraction=0.5)
    assert by_time.lr_at(40, 89.0) == pytest.approx(1e-3)
    assert by_time.lr_at(41, 135.0) == pytest.approx(1e-3 * 0.5)  # 45 s of 90 left
    assert by_time.lr_at(42, 171.0) == pytest.approx(1e-3 * 0.1)
    whole = Schedule(1e-3, 0.0, 0, 100, cooldown_fraction=1.0)  # f = 1: linear from the start
    assert [whole.lr_at(k, 0.0) for k in (0, 25, 100)] == pytest.approx([1e-3, 7.5e-4, 0.0])
    config = TrainConfig(warmup_steps=3, cooldown_fraction=0.5)
    assert Schedule.of(config).cooldown_fraction == 0.5


def test_mfu_uses_known_peaks_only(tiny_config):
    assert peak_flops("NVIDIA H100 80GB HBM3") == 989e12
    assert peak_flops("NVIDIA H100 PCIe") == 756e12
    assert peak_flops("NVIDIA H200") == 989e12
    assert peak_flops("NVIDIA A100-SXM4-80GB") == 312e12
    assert peak_flops("NVIDIA L4") == 121e12
    assert peak_flops("NVIDIA L40S") == 362e12
    assert peak_flops("NVIDIA GeForce RTX 4090") == 165e12
    assert peak_flops("NVIDIA A10G") is None  # no claim where the peak is not known
    assert peak_flops("Some Future GPU") is None
    assert mfu(1000.0, 6e9, None) is None
    # Hand value for GPT-2 124M at context 1024: 6 * (124.4M - 0.79M position table) + 12*12*1024*768.
    model_params = 124_439_808
    from dataclasses import replace

    from gptlab.model.config import model_preset

    per_token = flops_per_token(replace(model_preset("gpt2"), pad_vocab_multiple=1), model_params)
    assert per_token == 6 * (model_params - 1024 * 768) + 12 * 12 * 1024 * 768
    assert mfu(400_000.0, per_token, 989e12) == pytest.approx(400_000 * per_token / 989e12)
    assert mfu(400_000.0, per_token, 989e12, world_size=8) == pytest.approx(
        400_000 * per_token / 989e12 / 8
    )


def test_rate_scales_give_tables_head_and_dials_their_own_adamw_rate_by_hand():
    """One AdamW step from zero state moves each parameter by about lr_group * sign(grad)
    (Adam's first step is m / sqrt(v) = g / |g|), so the step sizes show each group's rate."""
    from gptlab.train.optim import set_learning_rate

    config = ModelConfig(
        vocab_size=40,
        block_size=16,
        n_layer=2,
        n_head=2,
        n_embd=16,
        tie_weights=False,
        bigram_embed=True,
        x0_blend=True,
        smear=True,
    )
    torch.manual_seed(0)
    model = GPT(config)
    with torch.no_grad():  # the dials start at 0 or 1 with zero-gated tables: give them gradients
        for name, p in model.named_parameters():
            if name.endswith(("_scale", "strength")):
                p.fill_(0.3)
    train = TrainConfig(
        optimizer="muon",
        lr=1e-3,
        weight_decay=0.0,
        embed_lr_scale=10.0,
        head_lr_scale=0.2,
        scalar_lr_scale=50.0,
    )
    optimizer = build_optimizer(model, train, torch.device("cpu"))
    set_learning_rate(optimizer, 1e-3)  # as the trainer does each step
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    idx = torch.randint(0, 40, (4, 16))
    _, loss = model(idx[:, :-1], idx[:, 1:])
    loss.backward()
    optimizer.step()
    step = {n: (p.detach() - before[n]).abs().max().item() for n, p in model.named_parameters()}
    expected = {
        "wte.weight": 1e-2,  # embed
        "bigram_embed.table.weight": 1e-2,  # embed
        "lm_head.weight": 2e-4,  # head
        "blocks.1.x0_scale": 5e-2,  # scalar
        "blocks.0.bigram_scale": 5e-2,  # scalar
        "smear.strength": 5e-2,  # scalar
        "ln_f.weight": 1e-3,  # the rest: lr
        "smear.gate.weight": 1e-3,
    }
    for name, rate in expected.items():
        assert step[name] == pytest.approx(rate, rel=1e-3), name


def test_without_rate_scales_adamw_keeps_its_two_groups(tiny_config):
    model = GPT(tiny_config)
    optimizer = build_optimizer(model, TrainConfig(lr=1e-3), torch.device("cpu"))
    assert [g["lr_scale"] for g in optimizer.param_groups] == [1.0, 1.0]
    assert [g["weight_decay"] for g in optimizer.param_groups] == [0.1, 0.0]
    scaled = build_optimizer(model, TrainConfig(lr=1e-3, embed_lr_scale=3.0), torch.device("cpu"))
    assert sorted(g["lr_scale"] for g in scaled.param_groups) == [1.0, 1.0, 3.0]
    with pytest.raises(Exception, match=r"train.head_lr_scale must be > 0"):
        TrainConfig(head_lr_scale=0)


def test_a_state_saved_with_other_rate_groups_is_refused_in_one_line():
    from gptlab.errors import GptlabError
    from gptlab.train.resume import check_same_rate_groups

    config = ModelConfig(vocab_size=40, block_size=16, n_layer=1, n_head=2, n_embd=16)
    model = GPT(config)
    cpu = torch.device("cpu")
    # With Muon the matrices leave AdamW: its decay group holds only the (tied) embedding.
    for optimizer, saved in [("adamw", r"\[5\.0, 1\.0, 1\.0\]"), ("muon", r"\[5\.0, 1\.0\]")]:
        scaled = build_optimizer(model, TrainConfig(optimizer=optimizer, embed_lr_scale=5.0), cpu)
        plain = build_optimizer(model, TrainConfig(optimizer=optimizer), cpu)
        check_same_rate_groups(scaled.state_dict(), scaled)  # the same groups: resumable
        with pytest.raises(GptlabError, match="AdamW rate multiples " + saved) as exc:
            check_same_rate_groups(scaled.state_dict(), plain)
        assert "\n" not in str(exc.value)
