"""The training settings of the speedrun ladder (issue 28), against hand computations: the batch
ramp's plan and cost lines, the weight average (EMA and tail) by hand and in a real run's final
checkpoint, the settings' one-line errors, and torch.compile's warm-up leaving the run untouched.
(Warmup-stable-decay is in test_train_optim.py, Polar Express in test_train_muon.py, the shifted
loader in test_data_loader.py, exact resume with all of them in test_train.py.)"""

import pytest
import torch
from safetensors.torch import load_file
from test_train import read_metrics, tiny_config

from gptlab.checkpoints import run as ckpt
from gptlab.errors import GptlabError
from gptlab.model.config import ModelConfig
from gptlab.model.gpt import GPT
from gptlab.train import PeriodicEval, train
from gptlab.train.batch_ramp import BatchPlan
from gptlab.train.compile_warmup import warm_up
from gptlab.train.config import build_run_config
from gptlab.train.cost import RunCost
from gptlab.train.weight_average import WeightAverage


def test_the_batch_ramp_grows_by_whole_sequences_to_the_full_step():
    # 16 sequences of 256 tokens a full step, in micro-batches of 8; 100 steps from 4 sequences
    plan = BatchPlan(8, 16, 256, ramp_steps=100, start_sequences=4)
    assert [plan.sequences_at(k) for k in (0, 1, 50, 99, 100, 5000)] == [4, 4, 10, 15, 16, 16]
    # 4 + 12 * k // 100: step 9 is still 5 sequences, step 17 is 6
    assert plan.sequences_at(9) == 5 and plan.sequences_at(17) == 6
    assert plan.micro_batches(0) == [4]
    assert plan.micro_batches(50) == [8, 2]
    assert plan.micro_batches(100) == [8, 8]
    assert plan.tokens_at(50) == 10 * 256
    by_hand = sum(4 + 12 * k // 100 for k in range(100)) * 256 + 2 * 16 * 256
    assert plan.tokens_between(0, 102) == by_hand
    assert plan.tokens_between(100, 110) == 10 * 16 * 256
    assert plan.tokens_between(98, 101) == (15 + 15 + 16) * 256
    no_ramp = BatchPlan(8, 16, 256)
    assert no_ramp.micro_batches(0) == [8, 8] and no_ramp.tokens_between(3, 5) == 2 * 4096


def test_cost_lines_count_a_ramps_tokens():
    plan = BatchPlan(16, 16, 256, ramp_steps=10, start_sequences=4)
    cost = RunCost(4096, 20, None, 0, 6e6, on_cpu=True, batches=plan)
    tokens = plan.tokens_between(0, 20)
    assert tokens == (sum(4 + 12 * k // 10 for k in range(10)) + 10 * 16) * 256 == 64_000
    assert cost.planned_tokens == tokens
    assert "20 steps x 1,024 tokens rising to 4,096 over 10 steps = 64,000 tokens" in cost.plan()
    # 3 steps (4 + 5 + 6 sequences = 3,840 tokens) in 1 s: 3,840 tokens/s, so 64,000 tokens
    # take 16.7 s (counting steps at 1/3 s each would say 7 s)
    (line,) = cost.after_step(3, 1.0, plan.tokens_between(0, 3))
    assert "3,840 tokens/s" in line and "about 17 s" in line
    resumed = RunCost(4096, 20, None, 12, 6e6, on_cpu=True, batches=plan)  # past the ramp
    assert resumed.planned_tokens == 8 * 4096 and "8 steps x 4,096 tokens" in resumed.plan()


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["train.batch_ramp_steps=10"], "a batch ramp needs both train.batch_ramp_steps"),
        (["train.batch_ramp_start=1024"], "a batch ramp needs both"),
        (
            ["train.batch_ramp_steps=10", "train.batch_ramp_start=8192"],
            r"train.batch_ramp_start \(8192\) must be below train.tokens_per_step \(1024\)",
        ),
        (
            ["train.batch_ramp_steps=10", "train.batch_ramp_start=500"],
            r"must be a multiple of block_size x processes \(64\).*batch_ramp_start=512",
        ),
        (["train.cooldown_fraction=0"], "train.cooldown_fraction must be in \\(0, 1\\]"),
        (["train.cooldown_fraction=1.5"], "train.cooldown_fraction must be in"),
        (["train.weight_average=swa"], "train.weight_average must be one of none, ema, tail"),
        (
            ["train.weight_average_decay=1"],
            r"train.weight_average_decay must be in \(0, 1\), got 1.0",
        ),
        (["train.weight_average_tail=0"], "train.weight_average_tail must be in"),
        (
            ["train.weight_average=ema", "train.distributed=fsdp"],
            "train.weight_average keeps a full copy",
        ),
        (
            ["data.loader_mode=shuffle"],
            "data.loader_mode must be one of random, sequential, shifted",
        ),
    ],
)
def test_bad_settings_are_one_line_errors_before_any_work(overrides, message):
    with pytest.raises(GptlabError, match=message) as error:
        build_run_config(overrides=overrides)
    assert "\n" not in str(error.value)


def test_ema_and_tail_averages_match_hand_values():
    model = torch.nn.Linear(1, 1, bias=False)
    ema = WeightAverage("ema", decay=0.5)
    tail = WeightAverage("tail", tail=0.25)
    assert ema.wants(0.1) and not tail.wants(0.7) and tail.wants(0.8)
    for value in (1.0, 2.0, 3.0, 4.0):
        model.weight.data.fill_(value)
        ema.update(model)
        tail.update(model)
    # ema: 1 -> 0.5 * 1 + 0.5 * 2 = 1.5 -> 2.25 -> 3.125; tail: the plain mean, 2.5
    assert ema.average["weight"].item() == 3.125 and ema.count == 4
    assert tail.average["weight"].item() == 2.5
    tail.copy_into(model)
    assert model.weight.item() == 2.5
    restored = WeightAverage("tail", tail=0.25)
    restored.load_state_dict(tail.state_dict(), torch.device("cpu"))
    assert restored.count == 4 and restored.average["weight"].item() == 2.5
    with pytest.raises(GptlabError, match="resume with train.weight_average=ema"):
        WeightAverage("tail").load_state_dict(ema.state_dict(), torch.device("cpu"))


def test_a_tail_averaged_run_scores_and_saves_the_mean_of_its_last_weights(
    prepared_shakespeare, tmp_path
):
    # 8 steps, warmup 2: progress after step k is (k - 2) / 6, so a tail of 0.5 averages the
    # weights after steps 6, 7 and 8 (progress 0.67, 0.83, 1).
    config = tiny_config(
        prepared_shakespeare,
        "train.max_steps=8",
        "train.weight_average=tail",
        "train.weight_average_tail=0.5",
    )
    snapshots = {}

    def snapshot(model, tokenizer):
        snapshots[len(snapshots) + 1] = {k: v.clone() for k, v in model.state_dict().items()}
        return {}

    result = train(
        config, tmp_path / "run", extra_evals=[PeriodicEval(1, snapshot)], show_progress=False
    )
    final = ckpt.latest_checkpoint(tmp_path / "run")
    saved = load_file(str(final / "model.safetensors"))
    raw = ckpt.load_training_state(final)["raw_weights"]
    # snapshot 8 is taken after the average went in; the raw weights of step 8 are in the state
    for name, tensor in saved.items():
        by_hand = (snapshots[6][name] + snapshots[7][name] + raw[name]) / 3
        torch.testing.assert_close(tensor, by_hand, atol=1e-6, rtol=0, msg=name)
        torch.testing.assert_close(snapshots[8][name], tensor, atol=0, rtol=0)
    last = read_metrics(tmp_path / "run")[-1]
    assert last["weights_averaged"] == 3
    assert last["val_loss"] == result.val_loss and last["val_loss_raw"] == result.val_loss_raw
    assert result.val_loss != result.val_loss_raw  # two different sets of weights were scored


def test_the_compile_warm_up_leaves_weights_gradients_and_rngs_alone_and_covers_every_shape():
    from torch._dynamo.utils import counters

    torch.manual_seed(0)
    config = ModelConfig(vocab_size=65, block_size=16, n_layer=1, n_head=2, n_embd=16, dropout=0.1)
    model = GPT(config)
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    torch.manual_seed(5)
    rng_before = torch.get_rng_state()
    torch._dynamo.reset()
    compiled = torch.compile(model, backend="aot_eager")  # the real path, without codegen
    seconds = warm_up(
        compiled,
        model,
        train_rows=[4, 4, 3],  # a full micro-batch and a ramp's shorter one
        eval_rows=4,
        block_size=16,
        device=torch.device("cpu"),
        autocast=torch.autocast("cpu", enabled=False),
    )
    assert seconds > 0
    assert torch.equal(torch.get_rng_state(), rng_before)  # dropout's draws were put back
    assert all(p.grad is None for p in model.parameters())
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, weights[name]), name
    # The real batches then compile nothing new: training sizes 4 and 3, and the eval mode.
    graphs = counters["stats"]["unique_graphs"]
    x = torch.randint(0, 65, (4, 16))
    for rows in (4, 3):
        _, loss = compiled(x[:rows], x[:rows].roll(1, dims=1))
        loss.backward()
    compiled.eval()
    with torch.no_grad():
        compiled(x, x.roll(1, dims=1))
    assert counters["stats"]["unique_graphs"] == graphs
    # and what it computes is the eager model's loss (no dropout in eval mode)
    model.eval()
    with torch.no_grad():
        eager = model(x, x.roll(1, dims=1))[1]
        assert compiled(x, x.roll(1, dims=1))[1].item() == pytest.approx(eager.item(), abs=1e-6)


def test_a_machine_that_cannot_compile_trains_uncompiled_after_a_one_line_notice(
    prepared_shakespeare, tmp_path, monkeypatch, capsys
):
    import torch._inductor.config as inductor_config

    # What a CPU machine without a C++ compiler does: inductor finds none it can run (and no
    # cached kernels to reuse), so every compiled call fails.
    monkeypatch.setattr(inductor_config.cpp, "cxx", ("/nonexistent/c++",))
    monkeypatch.setattr(inductor_config, "force_disable_caches", True)
    torch._dynamo.reset()
    eager = train(
        tiny_config(prepared_shakespeare, "train.max_steps=3"),
        tmp_path / "eager",
        show_progress=False,
    )
    fell_back = train(
        tiny_config(prepared_shakespeare, "train.max_steps=3", "train.compile=true"),
        tmp_path / "compile",
        show_progress=False,
    )
    notices = [line for line in capsys.readouterr().out.splitlines() if line.startswith("compile")]
    assert len(notices) == 1, notices
    assert notices[0].startswith(
        "compile: torch.compile cannot build the model here (InvalidCxxCompiler: No working C++ "
        "compiler found"
    )
    assert "training uncompiled" in notices[0]
    # the run then is the eager run, loss for loss, and reports no warm-up
    assert [r["train_loss"] for r in read_metrics(tmp_path / "compile")] == [
        r["train_loss"] for r in read_metrics(tmp_path / "eager")
    ]
    assert fell_back.val_loss == eager.val_loss and fell_back.compile_warmup_seconds == 0.0
