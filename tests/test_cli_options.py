"""Options shared by the verbs: overrides anywhere on the line, --threads, device hints."""

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import gptlab
from gptlab import device
from gptlab.cli import build_parser, main
from gptlab.device import auto_threads, resolve_device, resolve_threads
from gptlab.errors import GptlabError


def test_overrides_may_come_before_and_after_options():
    parser = build_parser()
    args = parser.parse_args(["train", "--out", "d", "train.max_steps=3", "--preset", "speedrun"])
    assert (args.out, args.preset, args.overrides) == ("d", "speedrun", ["train.max_steps=3"])
    args = parser.parse_args(["train", "train.lr=1e-3", "--out", "d", "train.max_steps=3"])
    assert args.overrides == ["train.lr=1e-3", "train.max_steps=3"]
    args = parser.parse_args(
        ["experiment", "--vary", "train.lr=1,2", "model.n_layer=2", "--seeds", "2"]
    )
    assert (args.vary, args.overrides, args.seeds) == (["train.lr=1,2"], ["model.n_layer=2"], 2)


def test_threads_option_becomes_the_run_config_setting(capsys):
    before = torch.get_num_threads()
    assert main(["train", "--print-config", "--threads", "3", "train.max_steps=2"]) == 0
    assert torch.get_num_threads() == before  # main() in-process leaves torch as it found it
    assert 'threads = "3"' in capsys.readouterr().out
    assert main(["train", "--print-config", "train.max_steps=2"]) == 0
    assert 'threads = "auto"' in capsys.readouterr().out


def test_every_compute_verb_takes_threads():
    parser = build_parser()
    for argv in (
        ["sample", "--preset", "gpt2", "--prompt", "a"],
        ["eval", "perplexity", "--checkpoint", "d", "--data", "x"],
        ["inspect", "attention", "--preset", "gpt2", "--prompt", "a"],
        ["finetune", "classify", "--data", "x"],
        ["classify", "--checkpoint", "d", "--text", "a"],
        ["chat", "--checkpoint", "d"],
        ["experiment", "--vary", "train.lr=1,2"],
        ["explore", "d"],
        ["inspect", "heads", "--preset", "gpt2"],
    ):
        assert parser.parse_args([*argv, "--threads", "2"]).threads == "2", argv


def test_a_bad_thread_count_is_one_line(capsys):
    assert main(["train", "--threads", "0", "train.max_steps=1"]) == 1
    err = capsys.readouterr().err
    assert err == "gptlab: error: --threads must be auto, none or a whole number >= 1, got '0'\n"


def fake_proc_stat(monkeypatch, readings):
    """/proc/stat's first line as a sequence of readings: (user, nice, system, idle, iowait)."""
    lines = iter(f"cpu {u} {n} {s} {i} {w} 0 0 0 0 0\n" for u, n, s, i, w in readings)
    real_open = open

    def fake_open(path, *args, **kwargs):
        if path == "/proc/stat":
            return io.StringIO(next(lines))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr("builtins.open", fake_open)
    monkeypatch.setattr(device.time, "sleep", lambda seconds: None)


def test_auto_threads_leaves_the_cores_busy_now_alone(monkeypatch):
    """The probe reads what the cores do now, not the 1-minute load average: a run started right
    after another job ended takes every core (issue 28: it took one and ran 1.7x slower)."""
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(device, "available_cores", lambda: 8)
    monkeypatch.setattr(device.os, "cpu_count", lambda: 8)
    monkeypatch.setattr(os, "getloadavg", lambda: (30.0, 30.0, 30.0))  # a past job: ignored
    # 8 cores watched for 100 ticks each = 800 ticks; `busy` of them went to other work.
    for busy, expected in ((0, 8), (10, 8), (260, 5), (300, 5), (350, 4), (700, 1), (800, 1)):
        fake_proc_stat(monkeypatch, [(1000, 0, 0, 5000, 0), (1000 + busy, 0, 0, 5800 - busy, 0)])
        assert auto_threads() == expected, busy
    assert resolve_threads("4") == 4 and resolve_threads("none") is None


def test_io_wait_counts_as_free_and_a_half_busy_core_as_busy():
    assert device.busy_cores((0, 0), (0, 100), 2) == 0.0
    assert device.busy_cores((10, 100), (60, 200), 2) == 1.0  # half the ticks busy on 2 cores
    assert device.busy_cores((5, 5), (5, 5), 2) == 0.0  # no ticks passed: nothing measured


def test_without_proc_stat_the_load_average_is_the_fallback(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(device, "cpu_times", lambda: None)
    monkeypatch.setattr(device, "available_cores", lambda: 8)
    monkeypatch.setattr(os, "getloadavg", lambda: (2.6, 2.6, 2.6))
    assert auto_threads() == 5


def test_auto_threads_follows_an_omp_num_threads_the_user_set(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert auto_threads() == torch.get_num_threads()


@pytest.mark.parametrize(
    "setting, fix", [("--device", "--device cpu"), ("train.device=", "train.device=cpu")]
)
def test_a_missing_gpu_suggests_a_fix_the_command_accepts(monkeypatch, setting, fix):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(GptlabError, match=f"no CUDA GPU is available; use {fix} "):
        resolve_device("cuda", setting)


def test_threads_in_toml_may_be_a_number_as_older_configs_wrote_it(tmp_path):
    from gptlab.train.config import build_run_config

    path = tmp_path / "run.toml"
    for written in ("4", '"4"'):
        path.write_text(f'preset = "shakespeare-char"\n[train]\nthreads = {written}\n')
        assert build_run_config(config_file=path).train.threads == "4"
    path.write_text('preset = "shakespeare-char"\n[train]\nthreads = 0\n')
    with pytest.raises(GptlabError, match="train.threads must be auto, none or a whole number"):
        build_run_config(config_file=path)
    path.write_text('preset = "shakespeare-char"\n[train]\nthreads = 2.5\n')
    with pytest.raises(GptlabError, match=r"train.threads must be a string, got 2.5 \(in TOML"):
        build_run_config(config_file=path)


def huge_page_run(thp_setting: str | None) -> tuple[str, int]:
    """In a fresh interpreter: `gptlab params`, then one 64 MB CPU tensor. Returns the
    THP_MEM_ALLOC_ENABLE the process ended with and its anonymous huge pages in kB."""
    script = (
        "import os\n"
        "from gptlab.cli import main\n"
        "main(['params', '--preset', 'speedrun'])\n"
        "import torch\n"
        "x = torch.ones(64 << 20, dtype=torch.uint8)\n"
        "rollup = open('/proc/self/smaps_rollup').read()\n"
        "print(os.environ['THP_MEM_ALLOC_ENABLE'], rollup.split('AnonHugePages:')[1].split()[0])\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "THP_MEM_ALLOC_ENABLE"}
    if thp_setting is not None:
        env["THP_MEM_ALLOC_ENABLE"] = thp_setting
    src = str(Path(gptlab.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join([src] + [p for p in [env.get("PYTHONPATH")] if p])
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
    )
    setting, kilobytes = result.stdout.split()[-2:]
    return setting, int(kilobytes)


def test_gptlab_puts_large_cpu_tensors_on_huge_pages_unless_told_otherwise():
    """torch reads THP_MEM_ALLOC_ENABLE once, at its first allocation, so `gptlab` sets it before
    any verb imports torch; the tensor then lies on 2 MB pages instead of 16,384 faulted 4 KB ones."""
    thp = Path("/sys/kernel/mm/transparent_hugepage/enabled")
    if not thp.is_file() or "[never]" in thp.read_text():
        pytest.skip("this kernel gives no transparent huge pages (or is not Linux)")
    setting, huge_kb = huge_page_run(None)
    assert setting == "1"
    assert huge_kb >= 32 * 1024, f"only {huge_kb} kB of the 64 MB tensor on huge pages"
    setting, huge_kb = huge_page_run("0")  # a value set outside wins
    assert setting == "0"
    if "[madvise]" in thp.read_text():  # only asked-for memory gets huge pages
        assert huge_kb < 32 * 1024
