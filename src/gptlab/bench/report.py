"""The bench's result for people: one Markdown table with a limit line, and a picture."""

from __future__ import annotations

from gptlab.bench.generate import GenerateBench
from gptlab.bench.measure import BANDWIDTH_PROBE_MB
from gptlab.bench.rows import BASELINE_ROLE, DYNAMIC, BenchRow
from gptlab.plotting import new_figure, save_figure
from gptlab.tables import markdown_table


def limit_tokens_per_s(bench: GenerateBench, row: BenchRow) -> float | None:
    """The most tokens/s a batch-1 row could reach: bandwidth / weight bytes read per token.
    (A batch of B rows reads the weights once per step for all B: its limit is B times.)"""
    if bench.bandwidth_gb_s is None or not row.read_mb_per_token:
        return None
    return row.batch * bench.bandwidth_gb_s * 1e9 / (row.read_mb_per_token * 2**20)


def share_of_limit(bench: GenerateBench, row: BenchRow, tokens_per_s: float) -> str:
    limit = limit_tokens_per_s(bench, row)
    return "-" if limit is None else f"{100 * tokens_per_s / limit:.0f}%"


def limit_line(bench: GenerateBench) -> str:
    fp32 = next(r for r in bench.rows if r.name == DYNAMIC)
    limit = limit_tokens_per_s(bench, fp32)
    return (
        f"Limit: memory bandwidth {bench.bandwidth_gb_s:.1f} GB/s (a {BANDWIDTH_PROBE_MB} MB copy, this run) / "
        f"{fp32.read_mb_per_token:.0f} MB of fp32 weights read per token = {limit:.1f} tokens/s "
        "at batch 1; 'of limit' is each row's tokens/s over its own limit (its weight bytes)."
    )


def format_generate_table(bench: GenerateBench) -> str:
    """The result as one Markdown table; speedups relative to the transformers row (or, for a
    model transformers cannot run, the dynamic cache)."""
    baseline_row = bench.speed_baseline()
    baseline = baseline_row.summary(bench.new_tokens)["tokens_per_s"]
    memory = "max_memory_allocated" if bench.machine["device"].startswith("cuda") else "peak RSS"
    lines = [
        f"{bench.model}, prompt {bench.prompt_tokens} tokens, {bench.new_tokens} new tokens (greedy), "
        f"median of {bench.repeats}, device {bench.machine['device']}, "
        f"{bench.machine['torch_threads']} threads, load {fmt_load(bench.machine)}",
        "",
    ]
    headers = [
        "path",
        "batch",
        "tokens/s",
        f"vs {'transformers' if baseline_row.role == BASELINE_ROLE else baseline_row.name}",
        "ms/token p50",
        "p90",
        "first token ms",
        f"{memory} MB (+ during run)",
        "weights MB",
        "read MB/token",
        "of limit",
        "perplexity change",
        "same tokens",
        "notes",
    ]
    rows = []
    for row in bench.rows:
        if row.skipped:
            rows.append([row.name, row.batch, *["-"] * 11, row.skipped])
            continue
        s = row.summary(bench.new_tokens)
        ppl = "-"
        if row.perplexity is not None and bench.reference_perplexity:
            ppl = f"{100 * (row.perplexity / bench.reference_perplexity - 1):+.2f}%"
        rows.append(
            [
                row.name,
                row.batch,
                f"{s['tokens_per_s']:.1f}",
                f"{s['tokens_per_s'] / baseline:.2f}x",
                fmt(s["ms_per_token_p50"]),
                fmt(s["ms_per_token_p90"]),
                fmt(s["first_token_ms"]),
                f"{s['peak_memory_mb']:.0f} (+{s['peak_growth_mb']:.0f})",
                fmt_mb(s["weights_mb"]),
                fmt_mb(s["read_mb_per_token"]),
                share_of_limit(bench, row, s["tokens_per_s"]),
                ppl,
                f"{bench.agreement(row)}/{len(row.tokens)}",
                "; ".join(row.notes),
            ]
        )
    lines.append(markdown_table(headers, rows, align="l" + "r" * 12 + "l").rstrip())
    if bench.bandwidth_gb_s is not None:
        lines += ["", limit_line(bench)]
    if bench.reference_perplexity is not None:
        lines += [
            "",
            f"Perplexity (fp32) on {bench.perplexity_text}: {bench.reference_perplexity:.3f}",
        ]
    return "\n".join(lines)


def fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def fmt_mb(value: float) -> str:
    return f"{value:.1f}" if value < 10 else f"{value:.0f}"


def fmt_load(machine: dict) -> str:
    before, after = machine["load_average_before"][0], machine.get("load_average_after", [None])[0]
    return f"{before:.1f} -> {after:.1f}" if after is not None else f"{before:.1f}"


def plot_generate(bench: GenerateBench, path) -> None:
    """Two panels: throughput vs batch size, and each batch-1 row's speedup over transformers."""
    summaries = [r.summary(bench.new_tokens) for r in bench.rows if not r.skipped]
    by_batch = sorted(
        (s for s in summaries if s["name"] == DYNAMIC or s["name"].startswith(f"{DYNAMIC}, batch")),
        key=lambda s: s["batch"],
    )
    baseline_row = bench.speed_baseline()
    baseline = baseline_row.summary(bench.new_tokens)["tokens_per_s"]
    single = [s for s in summaries if s["batch"] == 1]

    fig = new_figure(12, 4.5)
    left, right = fig.subplots(1, 2)
    batches = [s["batch"] for s in by_batch]
    left.plot(
        batches, [s["tokens_per_s"] for s in by_batch], marker="o", label="tokens/s (all rows)"
    )
    left.set_xscale("log", base=2)
    left.set_xlabel("batch size")
    left.set_ylabel("tokens/s")
    left.set_title("throughput vs batch (dynamic cache)")
    latency = left.twinx()
    latency.plot(batches, [s["ms_per_token_p50"] for s in by_batch], marker="s", color="tab:red")
    latency.set_ylabel("ms per token per request (p50)", color="tab:red")
    right.barh([s["name"] for s in single], [s["tokens_per_s"] / baseline for s in single])
    right.axvline(1.0, color="black", linewidth=0.8)
    right.set_xlabel(f"speedup vs {baseline_row.name} (batch 1)")
    right.invert_yaxis()
    fig.suptitle(f"{bench.model}, {bench.new_tokens} new tokens, {bench.machine['device']}")
    save_figure(fig, path, dpi=120)
