"""Sparse autoencoders: the maths by hand on tiny tensors, training, exact resume after SIGKILL,
evaluation, features, interventions and the CLI, on a tiny char-level model."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys

import pytest
import torch

from gptlab.cli import main
from gptlab.errors import GptlabError
from gptlab.sae.model import SparseAutoencoder, auxk_loss, l1_penalty
from gptlab.sae.options import SaeOptions, load_sae_options
from gptlab.sae.train import train_sae

TINY_RUN = [
    "model.n_layer=2",
    "model.n_head=2",
    "model.n_embd=32",
    "model.block_size=32",
    "train.micro_batch_size=8",
    "train.tokens_per_step=256",
    "train.max_seconds=none",
    "train.max_steps=30",
    "train.eval_every=0",
    "train.sample_every=0",
    "train.final_eval_tokens=2048",
    "train.threads=1",
]


@pytest.fixture(scope="module")
def tiny_run(prepared_shakespeare, tmp_path_factory):
    from gptlab.train import train
    from gptlab.train.config import build_run_config

    run = tmp_path_factory.mktemp("sae") / "run"
    config = build_run_config(overrides=[*TINY_RUN, f"data.prepared_dir={prepared_shakespeare}"])
    train(config, run, show_progress=False)
    return run


def tiny_options(run, out, *extra) -> SaeOptions:
    return load_sae_options(
        given={"model": str(run), "out": str(out)},
        overrides=[
            "features=64",
            "k=4",
            "batch_size=256",
            "buffer_size=2048",
            "model_batch_size=8",
            "tokens=5120",
            "warmup_steps=3",
            "dead_window=1024",
            "checkpoint_every=0",
            *extra,
        ],
    )


@pytest.fixture(scope="module")
def tiny_sae(tiny_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("sae") / "sae"
    torch.set_num_threads(1)
    return train_sae(tiny_options(tiny_run, out, "tokens=20480"), show_progress=False)


# -- the maths, by hand ----------------------------------------------------------------------------


def hand_sae(kind="topk", k=2) -> SparseAutoencoder:
    sae = SparseAutoencoder(d_in=2, d_sae=3, kind=kind, k=k)
    with torch.no_grad():
        sae.W_enc.copy_(torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, -1.0]]))
        sae.b_enc.copy_(torch.tensor([0.0, -0.5, 0.0]))
        sae.W_dec.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]]))
        sae.b_dec.copy_(torch.tensor([1.0, 1.0]))
    return sae


def test_topk_encode_and_decode_by_hand():
    sae = hand_sae(k=2)
    x = torch.tensor([[4.0, 2.0]])
    # x - b_dec = (3, 1); pre = (3, 1 - 0.5, 3 - 1) = (3, 0.5, 2); the top 2 are features 0 and 2.
    assert sae.pre_activations(x).tolist() == [[3.0, 0.5, 2.0]]
    f = sae.encode(x)
    assert f.tolist() == [[3.0, 0.0, 2.0]]
    # x_hat = 3 * (1, 0) + 2 * (0.6, 0.8) + (1, 1) = (5.2, 2.6)
    assert sae.decode(f)[0].tolist() == pytest.approx([5.2, 2.6])
    # A negative value among the top k is ReLU'd to zero (as SAELens' TopK does).
    assert sae.encode(torch.tensor([[1.0, 1.0]])).tolist() == [[0.0, 0.0, 0.0]]


def test_relu_kind_and_its_l1_penalty_by_hand():
    sae = hand_sae(kind="relu")
    f = sae.encode(torch.tensor([[4.0, 2.0]]))
    assert f.tolist() == [[3.0, 0.5, 2.0]]
    with torch.no_grad():
        sae.W_dec[2] *= 2  # norm 2: the penalty weighs that feature twice
    assert l1_penalty(sae, f).item() == pytest.approx(3.0 + 0.5 + 2 * 2.0)


def test_auxk_loss_by_hand():
    sae = SparseAutoencoder(d_in=4, d_sae=3, kind="topk", k=1)
    with torch.no_grad():
        sae.W_dec.copy_(torch.eye(3, 4))
    x = torch.tensor([[1.0, 2.0, 3.0, 4.0], [1.0, 0.0, 1.0, 0.0]])
    x_hat = torch.tensor([[1.0, 0.0, 0.0, 4.0], [1.0, 0.0, 1.0, 0.0]])  # e = (0, 2, 3, 0), 0
    pre = torch.tensor([[5.0, 1.5, -1.0], [5.0, -2.0, 0.5]])
    dead = torch.tensor([False, True, True])
    # k_aux = 2 covers both dead features; after ReLU f_aux = (0, 1.5, 0) and (0, 0, 0.5):
    # e_hat = (0, 1.5, 0, 0) and (0, 0, 0.5, 0); |e_hat - e|^2 = (0.25 + 9) + 0.25 = 9.5.
    # e's mean is (0, 1, 1.5, 0): |e - mean|^2 = 2 * (1 + 2.25) = 6.5.
    # x's mean is (1, 1, 2, 2): |x - mean|^2 = 6 + 6 over 2 tokens, 6 per token.
    assert auxk_loss(sae, x, x_hat, pre, dead, k_aux=2).item() == pytest.approx(6 * 9.5 / 6.5)
    # One dead feature: only feature 1 (1.5 on the first token, ReLU'd -2 on the second),
    # |e_hat - e|^2 = 9.25 + 0, and scaled by 1 dead / k_aux 2.
    one = torch.tensor([False, True, False])
    assert auxk_loss(sae, x, x_hat, pre, one, k_aux=2).item() == pytest.approx(0.5 * 6 * 9.25 / 6.5)
    # k_aux = 1 among two dead: the larger of each token's two (1.5, then 0.5), scale 1.
    assert auxk_loss(sae, x, x_hat, pre, dead, k_aux=1).item() == pytest.approx(6 * 9.5 / 6.5)
    assert auxk_loss(sae, x, x_hat, pre, torch.zeros(3, dtype=torch.bool), k_aux=2).item() == 0.0
    # Its gradient reaches the dead features only.
    pre = pre.clone().requires_grad_(True)
    auxk_loss(sae, x, x_hat, pre, dead, k_aux=2).backward()
    assert pre.grad[:, 0].abs().sum() == 0 and pre.grad[:, 1:].abs().sum() > 0


def test_resampling_restarts_dead_features_only():
    from gptlab.sae.resample import resample_dead

    # Features 0-3 are the identity on x - b_dec; 4 and 5 never win the top k = 4.
    sae = SparseAutoencoder(d_in=4, d_sae=6, kind="topk", k=4)
    with torch.no_grad():
        sae.W_enc.copy_(torch.cat([torch.eye(4), torch.zeros(4, 2)], dim=1))
        sae.b_enc.copy_(torch.tensor([0.0, 0.0, 0.0, 0.0, -100.0, -100.0]))
        sae.W_dec.copy_(torch.cat([torch.eye(4), torch.full((2, 4), 0.5)]))
        sae.b_dec.copy_(torch.tensor([1.0, 1.0, 1.0, 1.0]))
    optimizer = torch.optim.Adam(sae.parameters(), lr=1e-3)
    x = 1.0 + torch.rand(8, 4, generator=torch.Generator().manual_seed(0))  # x - b_dec > 0
    x[5] = torch.tensor([1.0, 4.0, -1.0, 3.0])  # the only token with an error: (x - b_dec)_2 < 0
    sae(x).sub(x).pow(2).sum().backward()
    optimizer.step()  # Adam now has moments for every row
    with torch.no_grad():  # undo the step, so the reconstruction errors are as planned above
        sae.W_enc.copy_(torch.cat([torch.eye(4), torch.zeros(4, 2)], dim=1))
        sae.b_enc.copy_(torch.tensor([0.0, 0.0, 0.0, 0.0, -100.0, -100.0]))
        sae.W_dec.copy_(torch.cat([torch.eye(4), torch.full((2, 4), 0.5)]))
        sae.b_dec.copy_(torch.tensor([1.0, 1.0, 1.0, 1.0]))
    before = {name: p.detach().clone() for name, p in sae.named_parameters()}
    moments = {
        name: {m: optimizer.state[p][m].clone() for m in ("exp_avg", "exp_avg_sq")}
        for name, p in sae.named_parameters()
    }
    since_fired = torch.tensor([0, 3, 0, 1, 900, 700])
    dead = since_fired >= 500

    assert resample_dead(sae, optimizer, x, dead, since_fired, torch.Generator()) == 2
    # Both restarts aim at token 5, the only one with an error: direction (0, 3, -2, 2) / sqrt 17.
    direction = torch.tensor([0.0, 3.0, -2.0, 2.0]) / 17**0.5
    for row in (4, 5):
        torch.testing.assert_close(sae.W_dec[row].detach(), direction)
        # 0.2 x the live encoder columns' mean norm (1, the identity's).
        torch.testing.assert_close(sae.W_enc[:, row].detach(), 0.2 * direction)
    assert sae.b_enc[4:].tolist() == [0.0, 0.0]
    assert since_fired.tolist() == [0, 3, 0, 1, 0, 0]
    # Everything of the live features (and b_dec) is bitwise what it was, moments included.
    params = dict(sae.named_parameters())
    assert torch.equal(params["W_dec"][:4], before["W_dec"][:4])
    assert torch.equal(params["W_enc"][:, :4], before["W_enc"][:, :4])
    assert torch.equal(params["b_enc"][:4], before["b_enc"][:4])
    assert torch.equal(params["b_dec"], before["b_dec"])
    for m in ("exp_avg", "exp_avg_sq"):
        state = {name: optimizer.state[p][m] for name, p in params.items()}
        assert torch.equal(state["W_dec"][:4], moments["W_dec"][m][:4])
        assert torch.equal(state["W_enc"][:, :4], moments["W_enc"][m][:, :4])
        assert torch.equal(state["b_enc"][:4], moments["b_enc"][m][:4])
        assert torch.equal(state["b_dec"], moments["b_dec"][m])
        assert state["W_dec"][4:].abs().sum() == 0 and state["W_enc"][:, 4:].abs().sum() == 0
        assert state["b_enc"][4:].abs().sum() == 0
    # Nothing dead: nothing changes.
    assert (
        resample_dead(
            sae, optimizer, x, torch.zeros(6, dtype=torch.bool), since_fired, torch.Generator()
        )
        == 0
    )


def test_the_lr_schedule_warms_up_holds_and_decays_to_zero():
    options = SaeOptions(lr=1.0, warmup_steps=2, decay_fraction=0.5, batch_size=1, tokens=10)
    assert [options.lr_at(s) for s in range(10)] == pytest.approx(
        [0.5, 1.0, 1.0, 1.0, 1.0, 1.0, 0.8, 0.6, 0.4, 0.2]
    )


def test_the_encoder_calibration_by_hand():
    """The encoder shrinks to the largest scale whose reconstruction is no worse than b_dec."""
    sae = SparseAutoencoder(d_in=2, d_sae=3, kind="topk", k=3)
    with torch.no_grad():
        sae.W_dec.copy_(torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.8, 0.6]]))
        sae.W_enc.copy_(sae.W_dec.t())
        sae.b_dec.copy_(torch.tensor([0.5, -1.0]))
    x = torch.tensor([[1.5, -1.0]])  # x - b_dec = (1, 0): projections 1, 0.6, 0.8
    # r = 1 (1, 0) + 0.6 (0.6, 0.8) + 0.8 (0.8, 0.6) = (2, 0.96): |r|^2 = 4.9216, <x - b_dec, r> = 2
    assert sae.calibrate_encoder(x) == pytest.approx(2 * 2 / 4.9216)
    assert sae.W_enc.detach() == pytest.approx(2 * 2 / 4.9216 * sae.W_dec.detach().t())
    error = (sae(x) - x).pow(2).sum().item()  # at that scale: exactly the mean's error, |(1, 0)|^2
    assert error == pytest.approx(1.0)
    # An orthonormal dictionary reconstructs x exactly at the transpose: nothing to shrink.
    square = SparseAutoencoder(d_in=2, d_sae=2, kind="topk", k=2)
    with torch.no_grad():
        square.W_dec.copy_(torch.eye(2))
        square.W_enc.copy_(torch.eye(2))
    assert square.calibrate_encoder(torch.tensor([[3.0, 4.0]])) == 1.0
    assert torch.equal(square.W_enc.detach(), torch.eye(2))


def test_unit_norm_decoder_and_parallel_gradient_removal():
    sae = SparseAutoencoder(d_in=8, d_sae=16)
    sae.reset_parameters(torch.Generator().manual_seed(0), encoder_scale=0.1)
    assert sae.W_dec.detach().norm(dim=-1).tolist() == pytest.approx([1.0] * 16, abs=1e-6)
    assert torch.equal(sae.W_enc, 0.1 * sae.W_dec.t())
    sae.W_dec.grad = torch.randn(16, 8)
    sae.remove_parallel_decoder_gradient()
    assert (sae.W_dec.grad * sae.W_dec).sum(dim=-1).abs().max() < 1e-6


# -- settings ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "override, message",
    [
        ("kind=gated", "kind must be one of topk, relu"),
        ("k=100", "k (100) must be at most features (64)"),
        ("buffer_size=300", "buffer_size (300) must hold at least two batches"),
        ("lr=0", "lr must be > 0"),
        ("tokens=10", "is less than one batch"),
        ("featurs=3", "did you mean 'features'"),
    ],
)
def test_bad_settings_are_one_line_before_any_work(tiny_run, tmp_path, override, message):
    with pytest.raises(GptlabError, match=re.escape(message)):
        tiny_options(tiny_run, tmp_path / "sae", override)
    assert not (tmp_path / "sae").exists()


# -- training and resume -------------------------------------------------------------------------------


def test_training_learns_a_reconstruction_and_writes_a_complete_folder(tiny_sae):
    config = json.loads((tiny_sae / "sae.json").read_text())
    assert config["kind"] == "topk" and config["d_in"] == 32 and config["d_sae"] == 64
    assert config["hook"] == "blocks.1.hook_resid_post" and config["trained_tokens"] == 20480
    # Which weights it read: the model's own fingerprint, checked wherever the SAE meets a model.
    from gptlab.checkpoints.open import open_model
    from gptlab.sae.folder import model_fingerprint

    assert config["model_fingerprint"] == model_fingerprint(open_model(config["model"])[0])
    records = [json.loads(line) for line in (tiny_sae / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["fve"] > records[0]["fve"] and records[-1]["fve"] > 0.5
    assert all(r["l0"] <= 4 for r in records)
    assert not (tiny_sae / "checkpoints").exists()


KILL_AFTER_STEP = """
import os, signal, sys, torch
torch.set_num_threads(1)
from gptlab.sae.options import load_sae_options
from gptlab.sae.train import train_sae

def kill_after(record):
    if record["step"] == int(sys.argv[2]):
        os.kill(os.getpid(), signal.SIGKILL)

train_sae(load_sae_options(sys.argv[1]), on_step=kill_after, show_progress=False)
"""


def test_an_sae_run_killed_with_sigkill_resumes_exactly(tiny_run, tmp_path):
    from safetensors.torch import load_file

    torch.set_num_threads(1)
    # 20 steps with a checkpoint every 6; the buffer (8 batches) refills mid-run, so the resumed
    # run must restore its unserved rows, its loader and its shuffling generator.
    # Resampling every 4 steps (dead after 2) restarts features before and after the kill.
    extra = ["checkpoint_every=6", "dead_window=512", "resample_every=4"]
    reference = train_sae(
        tiny_options(tiny_run, tmp_path / "reference", *extra), show_progress=False
    )

    killed = tmp_path / "killed"
    options = tiny_options(tiny_run, killed, *extra)
    config_file = tmp_path / "sae.toml"
    config_file.write_text(options.to_toml())
    process = subprocess.run(
        [sys.executable, "-c", KILL_AFTER_STEP, str(config_file), "15"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert process.returncode == -signal.SIGKILL, process.stderr
    assert not (killed / "sae.json").exists()
    assert (killed / "checkpoints" / "step-0000012").is_dir()

    assert main(["sae", "train", "--out", str(killed), "--resume", "--threads", "1"]) == 0
    want = load_file(reference / "sae.safetensors")
    got = load_file(killed / "sae.safetensors")
    for name in want:
        torch.testing.assert_close(got[name], want[name], rtol=0, atol=1e-6)
    steps = [
        json.loads(line)["step"] for line in (killed / "metrics.jsonl").read_text().splitlines()
    ]
    assert steps == [10, 20]  # steps 13-15 ran twice but are logged once


def test_an_occupied_out_folder_is_refused(tiny_sae, tiny_run, capsys):
    argv = ["sae", "train", str(tiny_run), "--out", str(tiny_sae), "tokens=1024", "batch_size=256"]
    assert main([*argv, "buffer_size=512"]) == 1
    assert "already holds an SAE; replace it (overwrite)" in capsys.readouterr().err
    assert main(["sae", "train", "--print-options", "k=8"]) == 0
    assert "k = 8" in capsys.readouterr().out


# -- evaluation ----------------------------------------------------------------------------------------


def test_fve_l0_density_and_loss_recovered_by_hand():
    from gptlab.sae.evaluate import ReconstructionStats, loss_recovered

    stats = ReconstructionStats(d_sae=3)
    x = torch.tensor([[1.0, 0.0], [3.0, 2.0]])  # mean (2, 1): sum |x - mean|^2 = 2 + 2 = 4
    x_hat = torch.tensor([[1.0, 1.0], [3.0, 2.0]])  # error 1
    f = torch.tensor([[0.5, 0.0, 0.0], [1.0, 2.0, 0.0]])
    stats.add(x[:1], x_hat[:1], f[:1])  # two batches add up to the same as one
    stats.add(x[1:], x_hat[1:], f[1:])
    assert stats.fve() == pytest.approx(1 - 1 / 4)
    assert stats.l0() == pytest.approx(1.5)
    assert stats.density().tolist() == [1.0, 0.5, 0.0]
    assert loss_recovered(clean=2.0, spliced=2.5, zero=4.0) == pytest.approx(0.75)


def test_eval_reports_and_plots(tiny_sae):
    from gptlab.sae.evaluate import evaluate_sae

    report = evaluate_sae(tiny_sae, tokens=1024, device="cpu", show_progress=False)
    assert report["tokens"] == 1024 and report["l0"] <= 4
    assert report["loss_zero_ablated"] > report["loss_spliced"] >= report["loss_clean"] - 0.05
    assert 0 < report["loss_recovered"] <= 1.05
    assert report["dead"] + report["dense"] <= report["features"]
    assert json.loads((tiny_sae / "eval.json").read_text())["fve"] == report["fve"]
    assert (tiny_sae / "feature-density.png").read_bytes()[:4] == b"\x89PNG"


# -- SAELens, the independent reference ----------------------------------------------------------------


@pytest.mark.parametrize("kind", ["topk", "relu"])
def test_the_saelens_export_loads_in_saelens_and_encodes_and_decodes_the_same(tmp_path, kind):
    sae_lens = pytest.importorskip(
        "sae_lens", reason="SAELens is the reference: pip install sae-lens"
    )
    from gptlab.sae.folder import export_saelens, save_sae

    sae = SparseAutoencoder(d_in=16, d_sae=48, kind=kind, k=5)
    sae.reset_parameters(torch.Generator().manual_seed(0))
    with torch.no_grad():  # biases and a non-transposed encoder, so every term is exercised
        sae.W_enc.add_(0.3 * torch.randn(16, 48))
        sae.b_enc.copy_(0.1 * torch.randn(48))
        sae.b_dec.copy_(torch.randn(16))
    save_sae(sae, tmp_path / "ours", {"model": "runs/x", "hook": "blocks.0.hook_resid_post"})
    exported = export_saelens(tmp_path / "ours", tmp_path / "saelens")

    theirs = sae_lens.SAE.load_from_disk(str(exported), device="cpu")
    assert theirs.cfg.d_in == 16 and theirs.cfg.d_sae == 48
    assert theirs.cfg.metadata.hook_name == "blocks.0.hook_resid_post"
    x = torch.randn(2, 7, 16)
    with torch.no_grad():
        f_ours, f_theirs = sae.encode(x), theirs.encode(x)
        torch.testing.assert_close(f_ours, f_theirs, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(
            sae.decode(f_ours), theirs.decode(f_theirs), rtol=1e-5, atol=1e-5
        )
        torch.testing.assert_close(sae(x), theirs(x), rtol=1e-5, atol=1e-5)
    assert (f_ours > 0).sum(-1).max() <= (5 if kind == "topk" else 48)


# -- features, the page, interventions -----------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_scan(tiny_sae):
    from gptlab.sae.features import scan_features

    return scan_features(tiny_sae, tokens=512, device="cpu", show_progress=False)


def test_dashboards_match_a_dense_recomputation(tiny_scan):
    from gptlab.sae.activations import activations_at

    scan = tiny_scan
    f = scan.sae.encode(activations_at(scan.model, scan.tokens, scan.config["hook"])).detach()
    feature = max(scan.live_features(), key=lambda i: (f[..., i] > 0).sum().item())
    board = scan.dashboard(feature, top=3)
    assert board["density"] == pytest.approx((f[..., feature] > 0).float().mean().item())
    assert board["max_act"] == pytest.approx(f[..., feature].max().item(), rel=1e-5)
    first = board["contexts"][0]
    assert first["acts"][first["max_at"]] == pytest.approx(board["max_act"], rel=1e-4)
    assert sum(board["histogram"]["counts"]) == (f[..., feature] > 0).sum().item()
    # The logit effect by hand: ln_f (a LayerNorm) linearised: centre, times the gain, unembed.
    d = scan.sae.W_dec[feature].detach()
    by_hand = scan.model.lm_head.weight @ ((d - d.mean()) * scan.model.ln_f.weight)
    best = by_hand.argmax().item()
    token, value = board["promoted"][0]
    assert token == scan.tokenizer.decode([best]) and value == pytest.approx(
        by_hand[best].item(), abs=1e-3
    )


def test_the_page_embeds_its_data_so_no_markup_can_break_it(tiny_scan, tmp_path):
    from gptlab.html_pages import script_json
    from gptlab.sae.page import write_page

    hostile = {"tokens": ["</script><script>alert(1)</script>", "<!--"]}
    assert "<" not in script_json(hostile) and json.loads(script_json(hostile)) == hostile
    page = write_page(tiny_scan, tmp_path / "features.html", top=3, show_progress=False).read_text()
    assert page.count("</script>") == 2  # the data's and the code's, nothing from the contexts
    data = page.split('id="data">')[1].split("</script>")[0]
    assert len(json.loads(data)["features"]) == len(tiny_scan.live_features())


def test_steering_adds_the_feature_direction_and_ablation_removes_its_part(tiny_sae):
    from gptlab.sae.folder import load_sae_and_model
    from gptlab.sae.intervene import ablation_effect, steer_model

    sae, config, model, tokenizer = load_sae_and_model(tiny_sae)
    hook = config["hook"]
    idx = torch.tensor([tokenizer.encode("ROMEO: what")])
    _, clean = model.run_with_cache(idx, [hook])
    with steer_model(model, tiny_sae, ["3:2.5", "5:-1"]):
        _, steered = model.run_with_cache(idx, [hook])
    added = 2.5 * sae.W_dec[3] - sae.W_dec[5]
    torch.testing.assert_close(steered[hook] - clean[hook], added.detach().expand_as(clean[hook]))

    f = sae.encode(clean[hook])[0]
    feature = int(f[-1].argmax())  # active on the last token: its next-token distribution moves
    result = ablation_effect(model, tokenizer, sae, hook, feature, "ROMEO: what")
    assert result["acts"] == pytest.approx(f[:, feature].tolist(), rel=1e-5)
    assert result["loss_clean"] == pytest.approx(model(idx[:, :-1], idx[:, 1:])[1].item(), rel=1e-5)
    assert result["kl"] > 0
    never = int((f.sum(0) == 0).nonzero()[0])  # a feature silent on the prompt changes nothing
    assert ablation_effect(model, tokenizer, sae, hook, never, "ROMEO: what")[
        "kl"
    ] == pytest.approx(0, abs=1e-9)


def test_the_cli_verbs(tiny_sae, tiny_run, tmp_path, capsys):
    assert main(["sae", "eval", str(tiny_sae), "--tokens", "512", "--threads", "1"]) == 0
    assert "loss recovered" in capsys.readouterr().out
    assert (
        main(["sae", "features", str(tiny_sae), "--top", "2", "--limit", "2", "--tokens", "512"])
        == 0
    )
    assert "promotes:" in capsys.readouterr().out
    out = tmp_path / "page.html"
    assert main(["sae", "features", str(tiny_sae), "--tokens", "512", "--export", str(out)]) == 0
    assert out.read_text().startswith("<!doctype html>")
    assert main(["sae", "ablate", str(tiny_sae), "--feature", "1", "--prompt", "ROMEO:"]) == 0
    assert "next token after the prompt" in capsys.readouterr().out
    sample = ["sample", "--checkpoint", str(tiny_run), "--prompt", "ROMEO:", "--seed", "1"]
    assert main([*sample, "--max-new-tokens", "30", "--no-stream"]) == 0
    plain = capsys.readouterr().out
    assert (
        main(
            [
                *sample,
                "--max-new-tokens",
                "30",
                "--no-stream",
                "--sae",
                str(tiny_sae),
                "--steer",
                "1:40",
            ]
        )
        == 0
    )
    assert capsys.readouterr().out != plain
    assert main([*sample, "--steer", "1:4"]) == 1
    assert "--steer needs --sae" in capsys.readouterr().err
    assert main([*sample, "--sae", str(tiny_sae), "--steer", "1"]) == 1
    assert "not ID:SCALE" in capsys.readouterr().err
    assert main(["sae", "export", str(tiny_sae), "--out", str(tmp_path / "lens")]) == 0
    assert (tmp_path / "lens" / "cfg.json").is_file()


def test_overwrite_never_deletes_files_an_sae_did_not_write(tiny_run, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(GptlabError, match=r"holds files that are not an SAE's \(notes.txt\)"):
        train_sae(tiny_options(tiny_run, out), overwrite=True, show_progress=False)
    assert (out / "notes.txt").read_text() == "keep me"


def test_the_exported_explorer_page_saves_the_features_tab(tiny_sae, tiny_run, tmp_path, capsys):
    """`gptlab explore RUN --sae DIR --export`: the page holds the features on each token and,
    for every feature listed, the dashboard and ablation the live server answers."""
    from explore_testing import exported_data

    from gptlab.explore import features
    from gptlab.explore.sources import Source, load_sources

    prompt = "ROMEO: But soft"
    page = tmp_path / "page.html"
    argv = ["explore", "--device", "cpu", str(tiny_run), "--sae", str(tiny_sae)]
    assert main([*argv, "--export", str(page), "--prompt", prompt]) == 0
    capsys.readouterr()
    html = page.read_text(encoding="utf-8")
    assert "function gptlabDashboard(" in html  # the renderer travels with the page
    data = exported_data(html)
    live = next(iter(load_sources([Source(str(tiny_run))], "cpu").values()))
    features.attach_sae(live, tiny_sae)
    assert (
        data["sae"]
        == {"sae": True, "hook": "blocks.1.hook_resid_post", "features": 64, "kind": "topk", "k": 4}
        == features.sae_info(live)
    )
    answers = data["answers"]
    fires = answers["sae/fires"]["saved"]
    assert [s["settings"] for s in fires] == [{}]
    with torch.no_grad():
        assert fires[0]["answer"] == json.loads(json.dumps(features.fires(live, prompt)))
    assert len(fires[0]["answer"]["tokens"]) == len(prompt)  # the run is character-level
    listed = {f["id"] for token in fires[0]["answer"]["tokens"] for f in token["features"]}
    boards = {s["settings"]["feature"]: s for s in answers["sae/feature"]["saved"]}
    ablations = {s["settings"]["feature"]: s for s in answers["sae/ablate"]["saved"]}
    assert listed and set(boards) == set(ablations) == listed
    some = min(listed)
    assert boards[some]["settings"] == {"feature": some, "top": 10}  # the page asks the default
    with torch.no_grad():
        assert boards[some]["answer"] == json.loads(json.dumps(features.feature(live, some)))
        assert ablations[some]["answer"] == json.loads(
            json.dumps(features.ablate(live, prompt, some))
        )
    assert data["views"]["sae/feature"]["exported"] and data["views"]["sae/ablate"]["exported"]
