"""Muon (train/muon.py) against torch.optim.Muon and the SVD, and its wiring as train.optimizer."""

import pytest
import torch

from gptlab.errors import GptlabError
from gptlab.model.gpt import GPT
from gptlab.train import muon
from gptlab.train.config import TrainConfig, build_run_config
from gptlab.train.muon import (
    POLAR_EXPRESS_COEFFICIENTS,
    POLAR_EXPRESS_MARGIN,
    Muon,
    orthogonalise,
    step_coefficients,
)
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


@pytest.mark.parametrize("shape", [(48, 16), (16, 48)])
def test_orthogonalise_of_a_stack_is_each_matrix_on_its_own(shape):
    generator = torch.Generator().manual_seed(2)
    stack = torch.randn(3, *shape, generator=generator, dtype=torch.float64)
    stack[1] *= 1e3  # each matrix is normalised by its own norm, not the stack's
    result = orthogonalise(stack, coefficients="polar_express")
    for update, direction in zip(stack, result, strict=True):
        expected = orthogonalise(update, coefficients="polar_express")
        torch.testing.assert_close(direction, expected, atol=1e-12, rtol=0)


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


def test_same_shape_batches_group_by_shape_and_cap_each_batch(monkeypatch):
    monkeypatch.setattr(muon, "BATCH_NUMBERS", 400)
    a1, b1, a2, a3, b2 = (
        torch.zeros(shape) for shape in [(24, 8), (8, 40), (24, 8), (24, 8), (8, 40)]
    )
    batches = muon.same_shape_batches([a1, b1, a2, a3, b2])
    # 24 x 8 = 192 numbers: two a batch; 8 x 40 = 320: one a batch
    assert [[id(m) for m in batch] for batch in batches] == [
        [id(a1), id(a2)],
        [id(a3)],
        [id(b1)],
        [id(b2)],
    ]


@pytest.mark.parametrize("batch_numbers", [None, 400])
def test_muon_steps_same_shape_matrices_as_if_each_were_alone(monkeypatch, batch_numbers):
    """Matrices of one shape are orthogonalised as a batch (400 numbers at most: batches of two
    24 x 8 matrices and one, and one 8 x 40 at a time); each must move as on its own."""
    if batch_numbers is not None:
        monkeypatch.setattr(muon, "BATCH_NUMBERS", batch_numbers)
    generator = torch.Generator().manual_seed(3)
    start = [torch.randn(shape, generator=generator) for shape in [(24, 8), (8, 40)] * 3]
    together = [p.clone().requires_grad_() for p in start]
    alone = [p.clone().requires_grad_() for p in start]
    options = dict(lr=0.05, momentum=0.9, weight_decay=0.1, ns_dtype=torch.float64)
    optimizer = Muon(together, **options)
    one_each = [Muon([p], **options) for p in alone]
    for _ in range(3):
        grads = [torch.randn(p.shape, generator=generator) for p in start]
        for p, q, g in zip(together, alone, grads, strict=True):
            p.grad, q.grad = g.clone(), g.clone()
        optimizer.step()
        for single in one_each:
            single.step()
    for p, q in zip(together, alone, strict=True):
        torch.testing.assert_close(p, q, atol=1e-6, rtol=0)


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


def composed(kind: str, steps: int, singular_values: torch.Tensor) -> torch.Tensor:
    """The scalar map the iteration applies to each singular value (of the normalised input)."""
    x = singular_values
    for a, b, c in step_coefficients(kind, steps):
        x = a * x + b * x**3 + c * x**5
    return x


def test_polar_express_coefficients_are_the_published_ones_and_repeat_the_last():
    # Amsel et al. 2025, as published with the paper's code and used by the GPU speedruns.
    assert POLAR_EXPRESS_COEFFICIENTS[0] == (
        8.156554524902461,
        -22.48329292557795,
        15.878769915207462,
    )
    assert POLAR_EXPRESS_COEFFICIENTS[4] == (
        2.3465413258596377,
        -1.7097828382687081,
        0.42323551169305323,
    )
    assert step_coefficients("polar_express", 3) == list(POLAR_EXPRESS_COEFFICIENTS[:3])
    assert step_coefficients("polar_express", 7)[5:] == [POLAR_EXPRESS_COEFFICIENTS[4]] * 2
    assert step_coefficients("quintic", 2) == [(3.4445, -4.7750, 2.0315)] * 2


def test_polar_express_takes_every_singular_value_near_1_in_five_steps():
    # Every singular value the normalisation can leave, from 1e-3 (the interval the coefficients
    # were derived for) to 1 / 1.02 (the Frobenius norm bounds the largest), on a fine grid.
    grid = torch.logspace(-3, 0, 4001, dtype=torch.float64) / POLAR_EXPRESS_MARGIN
    polar = composed("polar_express", 5, grid)
    assert polar.min() > 0.84 and polar.max() < 1.15  # measured: [0.847, 1.141]
    # the quintic, five steps: [0.47, 1.20] on the same interval, so Polar Express is tighter
    quintic = composed("quintic", 5, grid * POLAR_EXPRESS_MARGIN)
    assert quintic.min() < 0.5 and quintic.max() > 1.2
    # Each step narrows the band: the worst distance from 1 shrinks step by step after the first.
    worst = [(composed("polar_express", k, grid) - 1).abs().max().item() for k in range(1, 6)]
    assert worst[1:] == sorted(worst[1:], reverse=True)


@pytest.mark.parametrize("shape", [(96, 32), (32, 80)])
def test_polar_express_on_matrices_matches_the_svd_prediction(shape):
    """orthogonalise(A diag(s) B^T) = A diag(p(s / (1.02 |s|))) B^T, with p the composed
    polynomial: checked against an SVD on random matrices with singular values spread over
    three decades."""
    generator = torch.Generator().manual_seed(2)
    rank = min(shape)
    a, _ = torch.linalg.qr(torch.randn(shape[0], rank, generator=generator, dtype=torch.float64))
    b, _ = torch.linalg.qr(torch.randn(shape[1], rank, generator=generator, dtype=torch.float64))
    s = torch.cat([torch.ones(1), torch.logspace(-2.5, -1, rank - 1)]).double()
    update = a @ torch.diag(s) @ b.T
    result = orthogonalise(update, steps=5, dtype=torch.float64, coefficients="polar_express")
    expected = (
        a @ torch.diag(composed("polar_express", 5, s / (POLAR_EXPRESS_MARGIN * s.norm()))) @ b.T
    )
    torch.testing.assert_close(result, expected, atol=1e-10, rtol=0)
    singular_values = torch.linalg.svdvals(result)
    assert singular_values.min() > 0.84 and singular_values.max() < 1.15
    # the polar factor A B^T, which the SVD gives exactly: the update points the same way
    cosine = (result * (a @ b.T)).sum() / (result.norm() * (a @ b.T).norm())
    assert cosine > 0.99


def test_the_muon_settings_reach_the_optimizer(tiny_config):
    config = TrainConfig(optimizer="muon", muon_ns_steps=3, muon_coefficients="polar_express")
    optimizer = build_optimizer(GPT(tiny_config), config, torch.device("cpu"))
    assert optimizer.muon.param_groups[0]["ns_steps"] == 3
    assert optimizer.muon.ns_coefficients == "polar_express"
    defaults = build_optimizer(GPT(tiny_config), TrainConfig(optimizer="muon"), torch.device("cpu"))
    assert defaults.muon.param_groups[0]["ns_steps"] == 5
    assert defaults.muon.ns_coefficients == "quintic"
    assert not defaults.muon.neuron_norm
    normuon = TrainConfig(optimizer="muon", muon_neuron_norm=True)
    assert build_optimizer(GPT(tiny_config), normuon, torch.device("cpu")).muon.neuron_norm
    with pytest.raises(GptlabError, match="train.muon_coefficients must be one of"):
        build_run_config(overrides=["train.muon_coefficients=cubic"])
    with pytest.raises(GptlabError, match="train.muon_ns_steps"):
        build_run_config(overrides=["train.muon_ns_steps=0"])


def reference_normuon_steps(start, grads, lr, weight_decay, neuron_norm=True):
    """Muon written out one neuron at a time from NorMuon's formulas (arXiv:2510.05491): the
    reference for the vectorised optimizer. The orthogonalisation is gptlab's own, checked
    against the SVD above."""
    param, buffer = start.clone(), torch.zeros_like(start)
    rows, cols = start.shape
    tall = rows >= cols
    neurons = rows if tall else cols
    mean_square = [0.0] * neurons
    for grad in grads:
        buffer = 0.95 * buffer + grad
        direction = orthogonalise(grad + 0.95 * buffer)
        if neuron_norm:
            size = direction.norm()
            evened = direction.clone()
            for i in range(neurons):
                share = direction[i] if tall else direction[:, i]
                mean_square[i] = 0.95 * mean_square[i] + 0.05 * share.square().mean().item()
                if tall:
                    evened[i] = share / mean_square[i] ** 0.5
                else:
                    evened[:, i] = share / mean_square[i] ** 0.5
            direction = evened * size / evened.norm()
        param = param * (1 - lr * weight_decay) - lr * max(1.0, rows / cols) ** 0.5 * direction
    return param


@pytest.mark.parametrize("shape", [(12, 4), (4, 12), (6, 6)])
def test_normuon_matches_its_formulas_written_out(shape):
    torch.manual_seed(0)
    start = torch.randn(*shape)
    grads = [torch.randn(*shape) for _ in range(3)]
    param = torch.nn.Parameter(start.clone())
    optimizer = Muon([param], lr=0.05, weight_decay=0.5, neuron_norm=True)
    for grad in grads:
        param.grad = grad.clone()
        optimizer.step()
    expected = reference_normuon_steps(start, grads, 0.05, 0.5)
    torch.testing.assert_close(param.detach(), expected, atol=1e-5, rtol=1e-5)
    plain = reference_normuon_steps(start, grads, 0.05, 0.5, neuron_norm=False)
    assert not torch.allclose(expected, plain, atol=1e-3)  # evening the neurons changed the steps


def test_normuon_keeps_the_size_of_each_orthogonalised_update():
    torch.manual_seed(0)
    param = torch.nn.Parameter(torch.randn(16, 8))
    before = param.detach().clone()
    optimizer = Muon([param], lr=0.1, neuron_norm=True)
    param.grad = torch.randn(16, 8)
    optimizer.step()
    step = (before - param.detach()) / (0.1 * 2**0.5)
    plain = orthogonalise(param.grad * 1.95)  # the first Nesterov update is (1 + momentum) G
    torch.testing.assert_close(step.norm(), plain.norm(), atol=1e-5, rtol=1e-5)
    assert not torch.allclose(step, plain, atol=1e-3)
