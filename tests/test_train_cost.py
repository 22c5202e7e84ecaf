"""The cost lines of a training run: the plan before it starts, the measured rate after it starts."""

import pytest

from gptlab.train.cost import LAPTOP_POINTER, MEASURED_STEPS, RunCost, human_duration


def cost(**overrides) -> RunCost:
    settings = dict(
        tokens_per_step=16_384,
        max_steps=5_000,
        max_seconds=None,
        start_step=0,
        flops_per_token=6 * 30e6,
        on_cpu=True,
    )
    return RunCost(**(settings | overrides))


def test_plan_states_tokens_and_flops_of_a_step_budget():
    line = cost().plan()
    assert "5,000 steps x 16,384 tokens = 81.9M tokens" in line
    assert f"{5000 * 16384 * 6 * 30e6:.2g} FLOPs" in line
    assert "after the first steps" in cost(max_steps=None, max_seconds=600).plan()


def test_rate_is_reported_once_after_the_first_steps_with_the_run_time():
    c = cost()
    assert c.after_step(1, 2.0) == []  # one quick step: still warming up
    lines = c.after_step(MEASURED_STEPS, 6.0)  # 3 steps in 6 s: 2 s/step, 8,192 tokens/s
    assert len(lines) == 1
    assert "8,192 tokens/s" in lines[0] and "2.00 s/step" in lines[0]
    assert human_duration(5000 * 2.0) in lines[0]  # 2.8 h: no pointer yet
    assert c.after_step(MEASURED_STEPS + 1, 8.0) == []  # said once


def test_a_slow_first_step_is_enough_and_a_long_cpu_run_gets_the_pointer():
    lines = cost().after_step(1, 388.0)  # SmallGPT's first step on a busy 2-core CPU
    assert "about 22.5 days" in lines[0]
    assert lines[1] == f"cost: {LAPTOP_POINTER}"
    assert len(cost(on_cpu=False).after_step(1, 388.0)) == 1  # on a GPU: no pointer


def test_time_budget_and_resumed_runs():
    lines = cost(max_steps=None, max_seconds=600.0).after_step(3, 3.0)
    assert "10 min" in lines[0] and "9.8M tokens" in lines[0]  # 16,384 tokens/s x 600 s
    resumed = cost(start_step=4_000)
    assert resumed.planned_tokens == 1_000 * 16_384
    assert resumed.after_step(4_000, 0.0) == []


@pytest.mark.parametrize(
    "seconds,text", [(59, "59 s"), (600, "10 min"), (3.5 * 3600, "3.5 h"), (5 * 86400, "5.0 days")]
)
def test_human_duration(seconds, text):
    assert human_duration(seconds) == text


def test_small_plans_count_tokens_not_fractions_of_millions():
    assert "= 24,576 tokens" in cost(max_steps=3, tokens_per_step=8_192).plan()
