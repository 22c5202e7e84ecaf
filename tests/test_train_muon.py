"""Muon (train/muon.py) against torch.optim.Muon and the SVD, and its wiring as train.optimizer."""

import pytest
import torch

from gptlab.errors import GptlabError
from gptlab.model.gpt import GPT
from gptlab.train.config import TrainConfig, build_run_config
from gptlab.train.muon import Muon, orthogonalise
from gptlab.train.optim import (
    OptimizerPair,
    build_optimizer,
    saved_optimizer_name,
    set_learning_rate,
)


@pytest.mark.parametrize("shape", [(48, 16), (16, 48), (32, 32)])
def test_orthogonalise_approximates_the_polar_factor(shape):
    generator = torch.Generator().manual_seed(0)
    update = torch.randn(shape, generator=generator)
    result = orthogonalise(update)
    assert result.shape == update.shape and result.dtype == update.dtype
    # The quintic does not converge to exactly 1: singular values land in about [0.7, 1.2].
    singular_values = torch.linalg.svdvals(result)
    assert singular_values.min() > 0.6 and singular_values.max() < 1.25
    # Its direction is the polar factor U V^T of the SVD.
    u, _, vh = torch.linalg.svd(update, full_matrices=False)
    polar = u @ vh
    cosine = (result * polar).sum() / (result.norm() * polar.norm())
    assert cosine > 0.95


def test_muon_in_bfloat16_matches_torch_optim_muon():
    generator = torch.Generator().manual_seed(1)
    start = [torch.randn(24, 8, generator=generator), torch.randn(8, 40, generator=generator)]
    ours = [p.clone().requires_grad_() for p in start]
    reference = [p.clone().requires_grad_() for p in start]
    options = dict(lr=0.05, momentum=0.9, weight_decay=0.1)
    optimizer = Muon(ours, ns_dtype=torch.bfloat16, **options)
    torch_optimizer = torch.optim.Muon(reference, nesterov=True, adjust_lr_fn="original", **options)
    for _ in range(3):
        grads = [torch.randn(p.shape, generator=generator) for p in start]
        for p, q, g in zip(ours, reference, grads, strict=True):
            p.grad, q.grad = g.clone(), g.clone()
        optimizer.step()
        torch_optimizer.step()
    for p, q in zip(ours, reference, strict=True):
        # torch keeps an exponential moving average where we keep a sum: the two differ by a
        # constant factor, which the iteration's normalisation removes (up to bfloat16 rounding).
        torch.testing.assert_close(p, q, atol=2e-3, rtol=0)


def test_muon_refuses_tensors_that_are_not_matrices():
    with pytest.raises(ValueError, match="2-D weight matrices only"):
        Muon([torch.zeros(4, requires_grad=True)])


def test_muon_optimiser_splits_the_hidden_matrices_from_the_rest(tiny_config):
    model = GPT(tiny_config)
    config = TrainConfig(optimizer="muon", lr=1e-3, muon_lr=0.02)
    optimizer = build_optimizer(model, config, torch.device("cpu"))
    assert isinstance(optimizer, OptimizerPair)
    names = {id(p): n for n, p in model.named_parameters()}
    muon_names = {names[id(p)] for g in optimizer.muon.param_groups for p in g["params"]}
    adamw_names = {names[id(p)] for g in optimizer.adamw.param_groups for p in g["params"]}
    assert muon_names == {
        f"blocks.{i}.{m}.weight"
        for i in range(tiny_config.n_layer)
        for m in ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")
    }
    assert muon_names.isdisjoint(adamw_names)
    assert muon_names | adamw_names == set(names.values())
    assert "wte.weight" in adamw_names  # embeddings (and the tied head) stay on AdamW

    set_learning_rate(optimizer, 5e-4)  # the schedule halves lr: Muon's lr halves with it
    assert [g["lr"] for g in optimizer.adamw.param_groups] == [5e-4, 5e-4]
    assert optimizer.muon.param_groups[0]["lr"] == pytest.approx(0.01)


def test_a_muon_run_learns_and_its_state_round_trips(tiny_config):
    torch.manual_seed(0)
    model = GPT(tiny_config)
    optimizer = build_optimizer(
        model, TrainConfig(optimizer="muon", lr=3e-3, muon_lr=0.02), torch.device("cpu")
    )
    tokens = torch.randint(0, tiny_config.vocab_size, (4, 17))
    losses = []
    for _ in range(25):
        _, loss = model(tokens[:, :-1], tokens[:, 1:])
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < 0.6 * losses[0]  # memorising one batch

    restored = build_optimizer(
        GPT(tiny_config), TrainConfig(optimizer="muon", lr=3e-3), torch.device("cpu")
    )
    restored.load_state_dict(optimizer.state_dict())
    for key in ("adamw", "muon"):
        saved, loaded = optimizer.state_dict()[key]["state"], restored.state_dict()[key]["state"]
        assert saved.keys() == loaded.keys()
        for index in saved:
            for name, value in saved[index].items():
                torch.testing.assert_close(loaded[index][name], value, rtol=0, atol=0)
    adamw_only = build_optimizer(GPT(tiny_config), TrainConfig(), torch.device("cpu"))
    assert saved_optimizer_name(optimizer.state_dict()) == "muon"
    assert saved_optimizer_name(adamw_only.state_dict()) == "adamw"


def test_an_unknown_optimizer_is_a_one_line_error():
    with pytest.raises(GptlabError, match="train.optimizer must be one of adamw, muon, got 'sgd'"):
        build_run_config(overrides=["train.optimizer=sgd"])
