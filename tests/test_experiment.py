"""`gptlab experiment` end to end on a tiny model and real TinyShakespeare text: the results files,
determinism across experiments, skipping finished runs, and one-line refusals before training."""

import csv
import json

import pytest
from conftest import prepare_shakespeare_head

from gptlab.cli import main
from gptlab.experiment import runner

TINY = [
    "model.n_layer=1",
    "model.n_head=2",
    "model.n_embd=16",
    "model.block_size=16",
    "train.micro_batch_size=4",
    "train.tokens_per_step=64",
    "train.warmup_steps=1",
    "train.eval_every=0",
    "train.threads=1",
    "train.final_eval_tokens=512",
    "train.sample_tokens=5",
]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """The first 20,000 characters of TinyShakespeare, prepared char-level."""
    return prepare_shakespeare_head(tmp_path_factory, 20_000)


def experiment_args(prepared, out, *vary, seeds=2):
    args = ["experiment", "--out", str(out), "--seeds", str(seeds), "--max-steps", "3"]
    for v in vary:
        args += ["--vary", v]
    return [*args, *TINY, f"data.prepared_dir={prepared}"]


@pytest.fixture(scope="module")
def grid(prepared, tmp_path_factory):
    """A 2 x 1 grid (layernorm vs rmsnorm) with 2 seeds, run through the CLI."""
    out = tmp_path_factory.mktemp("experiment")
    assert main(experiment_args(prepared, out, "model.norm=layernorm,rmsnorm")) == 0
    return out


def test_a_grid_writes_a_row_per_combination_from_its_seeds_runs(grid):
    run_dirs = sorted(p.name for p in (grid / "runs").iterdir())
    assert run_dirs == [
        "norm-layernorm-seed1337",
        "norm-layernorm-seed1338",
        "norm-rmsnorm-seed1337",
        "norm-rmsnorm-seed1338",
    ]
    rows = list(csv.DictReader((grid / "results.csv").open()))
    assert [r["label"] for r in rows] == ["norm=layernorm", "norm=rmsnorm"]
    for row in rows:
        name = row["label"].replace("=", "-")
        losses = [
            json.loads((grid / "runs" / f"{name}-seed{s}" / "result.json").read_text())["result"][
                "val_loss"
            ]
            for s in (1337, 1338)
        ]
        # The summary is the mean and spread of the seeds' own final val losses.
        assert float(row["val_loss_mean"]) == pytest.approx(sum(losses) / 2)
        assert float(row["val_loss_min"]) == pytest.approx(min(losses))
        assert float(row["val_loss_max"]) == pytest.approx(max(losses))
        assert int(row["seeds"]) == 2 and int(row["num_parameters"]) > 0
        assert losses[0] != losses[1]  # the seeds really differ
    markdown = (grid / "results.md").read_text().splitlines()
    assert len(markdown) == 2 + 2 and "norm=rmsnorm" in markdown[-1]
    assert (grid / "loss_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # Every run trained the same budget with the seed its folder names.
    for run_dir in (grid / "runs").iterdir():
        result = json.loads((run_dir / "result.json").read_text())
        assert result["result"]["steps"] == 3
        assert result["config"]["train"]["seed"] == int(run_dir.name.rsplit("seed", 1)[1])


def test_the_same_combination_and_seed_reproduce_the_same_val_loss(grid, prepared, tmp_path):
    assert main(experiment_args(prepared, tmp_path, "model.norm=rmsnorm", seeds=1)) == 0
    again = json.loads((tmp_path / "runs/norm-rmsnorm-seed1337/result.json").read_text())
    first = json.loads((grid / "runs/norm-rmsnorm-seed1337/result.json").read_text())
    assert again["result"]["val_loss"] == first["result"]["val_loss"]


def test_a_rerun_skips_finished_runs_and_trains_only_the_missing_one(
    grid, prepared, tmp_path, monkeypatch
):
    import shutil

    out = tmp_path / "copy"
    shutil.copytree(grid, out)
    (out / "runs/norm-rmsnorm-seed1338/result.json").unlink()  # as if interrupted in that run
    trained = []
    real_train = runner.train_planned_run

    def counting(run, on_step=None):
        trained.append(run.run_dir.name)
        return real_train(run, on_step)

    monkeypatch.setattr(runner, "train_planned_run", counting)
    assert main(experiment_args(prepared, out, "model.norm=layernorm,rmsnorm")) == 0
    assert trained == ["norm-rmsnorm-seed1338"]
    # Retrained from scratch with the same seed and budget: the same val losses as the first time.
    rows = [list(csv.DictReader((d / "results.csv").open())) for d in (out, grid)]
    assert [r["val_loss_mean"] for r in rows[0]] == [r["val_loss_mean"] for r in rows[1]]


@pytest.mark.parametrize(
    ("vary", "seeds", "message"),
    [
        (["model.norm=layernorm,batchnorm"], 1, "model.norm must be one of layernorm, rmsnorm"),
        (["model.n_kv_head=1,3"], 1, "model.n_kv_head (3) must divide model.n_head (2)"),
        ([], 1, "the grid is empty"),
        (["model.norm="], 1, "gives no values"),
        (["model.norm"], 1, "is not of the form"),
        (["model.nrom=layernorm"], 1, "unknown config key 'model.nrom'"),
        (["model.norm=layernorm,layernorm"], 1, "lists a value twice"),
        (["model.norm=layernorm", "model.norm=rmsnorm"], 1, "is given twice"),
        (["train.seed=1,2"], 1, "not allowed"),
        (["model.norm=layernorm"], 0, "seeds must be >= 1"),
    ],
)
def test_bad_input_is_one_line_before_anything_trains(
    prepared, tmp_path, capsys, monkeypatch, vary, seeds, message
):
    def must_not_train(*args, **kwargs):
        raise AssertionError("nothing may train on bad input")

    monkeypatch.setattr(runner, "train_planned_run", must_not_train)
    assert main(experiment_args(prepared, tmp_path / "out", *vary, seeds=seeds)) == 1
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_both_budgets_are_refused_by_the_parser(prepared, tmp_path, capsys):
    args = experiment_args(prepared, tmp_path, "model.norm=rmsnorm", seeds=1)
    with pytest.raises(SystemExit):
        main([*args[:1], "--max-seconds", "5", *args[1:]])
    assert "not allowed with argument" in capsys.readouterr().err


def test_a_finished_run_with_a_different_config_is_refused_not_reused(grid, prepared, capsys):
    args = experiment_args(prepared, grid, "model.norm=layernorm,rmsnorm")
    args[args.index("--max-steps") + 1] = "4"  # another budget into the same folder
    assert main(args) == 1
    err = capsys.readouterr().err.strip()
    assert "holds a finished run with a different config" in err and len(err.splitlines()) == 1


def test_a_base_that_only_the_varied_key_makes_valid_is_accepted(prepared, tmp_path):
    from gptlab.experiment import parse_variation, plan_runs

    # tokens_per_step=64 does not split into micro-batches of 4 x 32; both varied values do.
    overrides = [*TINY, f"data.prepared_dir={prepared}", "model.block_size=32"]
    planned = plan_runs(
        [parse_variation("train.tokens_per_step=128,256")],
        seeds=1,
        out=tmp_path,
        overrides=overrides,
    )
    assert [run.config.train.tokens_per_step for run in planned] == [128, 256]


def test_a_damaged_result_json_is_one_line(tmp_path):
    from gptlab.errors import GptlabError
    from gptlab.experiment import parse_variation, plan_runs
    from gptlab.experiment.runner import RESULT_FILE, finished_result

    (run,) = plan_runs([parse_variation("model.n_layer=1")], seeds=1, out=tmp_path)
    run.run_dir.mkdir(parents=True)
    for content in (b"\xff\xfe", b"[1, 2]", b'{"config": {}, "result": {"nope": 1}}'):
        (run.run_dir / RESULT_FILE).write_bytes(content)
        with pytest.raises(
            GptlabError, match="(is damaged|not UTF-8|holds an array, not an object)"
        ):
            finished_result(run)
