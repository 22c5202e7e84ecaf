"""Benchmark `gptlab prepare` with GPT-2 BPE against raw tiktoken, and its peak memory.

    python benchmarks/prepare.py [--mb 200] [--workers N] [--repeats 2]
    python benchmarks/prepare.py --corpus ../shared/data/wikipedia/enwiki2015.jsonl [--tokenizer FILE]

1. Builds a corpus of about --mb megabytes of UTF-8 text as a .jsonl file, by repeating the
   real documents of ../shared/data (FineWeb-Edu and FineWeb samples) in order; or takes the
   .jsonl file --corpus names. --tokenizer: gpt2 (default) or a trained BPE's JSON (its tiktoken
   encoding is then the raw reference).
2. Raw reference: tiktoken's `encode_ordinary_batch` with one thread per core on the same
   documents, already in memory, fed in ~4 MB batches whose results are dropped (the reference
   pays for tokenization only: no file reading, no writing).
3. `prepare_dataset(corpus.jsonl, tokenizer="gpt2", workers=N)` in a child process, timed there,
   while this process samples the resident memory (RSS) of the child and its worker processes
   every 20 ms; the peak of their sum is reported.

Throughput is text megabytes (UTF-8, 10^6 bytes) per second of wall time. Runs alternate raw and
prepare so that load from other processes on a shared machine affects both alike. CPU seconds
per MB (all threads and worker processes, start-up included) are printed too: unlike wall time
they barely depend on what else the machine runs.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
SAMPLES = [SHARED_DATA / "fineweb_edu" / "sample.jsonl", SHARED_DATA / "fineweb" / "sample.jsonl"]


def build_corpus(path: Path, megabytes: float) -> tuple[int, int]:
    """Write about `megabytes` of documents to `path`; return (documents, text bytes)."""
    texts = [
        json.loads(line)["text"] for sample in SAMPLES for line in sample.open(encoding="utf-8")
    ]
    target = int(megabytes * 1e6)
    docs = size = 0
    with path.open("w", encoding="utf-8") as f:
        while size < target:
            for text in texts:
                f.write(json.dumps({"text": text}, ensure_ascii=False) + "\n")
                docs += 1
                size += len(text.encode("utf-8"))
                if size >= target:
                    break
    return docs, size


def raw_tiktoken_seconds(corpus: Path, threads: int, tokenizer: str) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of encode_ordinary_batch over the corpus's documents."""
    from gptlab.tokenizers.base import get_tokenizer

    enc = get_tokenizer(tokenizer).encoding  # the tiktoken Encoding that prepare's workers use
    texts = [json.loads(line)["text"] for line in corpus.open(encoding="utf-8")]
    batches, batch, chars = [], [], 0
    for text in texts:
        batch.append(text)
        chars += len(text)
        if chars >= 4_000_000:
            batches.append(batch)
            batch, chars = [], 0
    batches.append(batch)
    started, cpu_started = time.perf_counter(), time.process_time()
    for batch in batches:
        enc.encode_ordinary_batch(batch, num_threads=threads)
    return time.perf_counter() - started, time.process_time() - cpu_started


PREPARE_CHILD = """
import resource, sys, time
from gptlab.data.prepare import prepare_dataset
def cpu():
    children = resource.getrusage(resource.RUSAGE_CHILDREN)  # the worker processes, once joined
    return time.process_time() + children.ru_utime + children.ru_stime
started, cpu_started = time.perf_counter(), cpu()
prepare_dataset(sys.argv[1], tokenizer=sys.argv[4], out=sys.argv[2], workers=int(sys.argv[3]), show_progress=False)
print(time.perf_counter() - started, cpu() - cpu_started)
"""


def tree_rss_bytes(pid: int) -> int:
    """Resident memory of a process and all its descendants (Linux /proc)."""
    total, stack = 0, [pid]
    while stack:
        current = stack.pop()
        try:
            with open(f"/proc/{current}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
            with open(f"/proc/{current}/task/{current}/children") as f:
                stack.extend(int(child) for child in f.read().split())
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total


def prepare_seconds_and_peak_rss(
    corpus: Path, out: Path, workers: int, tokenizer: str
) -> tuple[float, float, int]:
    """(wall seconds, CPU seconds of the process and its workers, peak RSS bytes) of a prepare."""
    child = subprocess.Popen(
        [sys.executable, "-c", PREPARE_CHILD, str(corpus), str(out), str(workers), tokenizer],
        stdout=subprocess.PIPE,
        text=True,
    )
    peak = 0

    def sample() -> None:
        nonlocal peak
        while child.poll() is None:
            peak = max(peak, tree_rss_bytes(child.pid))
            time.sleep(0.02)

    sampler = threading.Thread(target=sample)
    sampler.start()
    stdout, _ = child.communicate()
    sampler.join()
    if child.returncode != 0:
        raise SystemExit(f"prepare failed with exit code {child.returncode}")
    wall, cpu = (float(v) for v in stdout.split())
    return wall, cpu, peak


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--mb", type=float, default=200.0, help="corpus size in MB of text (default 200)"
    )
    parser.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument(
        "--corpus", type=Path, help="a .jsonl corpus to use instead of building one"
    )
    parser.add_argument("--tokenizer", default="gpt2", help="gpt2 or a tokenizer JSON")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-prepare-") as tmp:
        if args.corpus:
            corpus = args.corpus
            texts = [json.loads(line)["text"] for line in corpus.open(encoding="utf-8")]
            docs, text_bytes = len(texts), sum(len(t.encode("utf-8")) for t in texts)
            del texts
        else:
            corpus = Path(tmp) / "corpus.jsonl"
            docs, text_bytes = build_corpus(corpus, args.mb)
        mb = text_bytes / 1e6
        print(
            f"corpus: {docs:,} documents, {mb:.1f} MB of text, file {corpus.stat().st_size / 1e6:.1f} MB"
        )
        print(
            f"cores: {len(os.sched_getaffinity(0))}, workers/threads: {args.workers}, load before: {os.getloadavg()}"
        )
        results = []
        for repeat in range(args.repeats):
            raw, raw_cpu = raw_tiktoken_seconds(corpus, args.workers, args.tokenizer)
            prep, prep_cpu, peak = prepare_seconds_and_peak_rss(
                corpus, Path(tmp) / f"out{repeat}", args.workers, args.tokenizer
            )
            results.append((raw, prep, peak))
            print(
                f"run {repeat + 1}: raw tiktoken {mb / raw:.2f} MB/s ({raw_cpu / mb:.3f} CPU s/MB), "
                f"gptlab prepare {mb / prep:.2f} MB/s ({prep_cpu / mb:.3f} CPU s/MB), "
                f"throughput ratio {raw / prep:.2f}x, CPU cost ratio {prep_cpu / raw_cpu:.2f}x, "
                f"prepare peak RSS {peak / 2**20:.0f} MiB, load {os.getloadavg()[0]:.2f}"
            )
        ratios = sorted(raw / prep for raw, prep, _ in results)
        print(
            f"throughput ratio prepare/raw: median {ratios[len(ratios) // 2]:.2f}x "
            f"(all: {', '.join(f'{r:.2f}' for r in ratios)}); "
            f"max peak RSS {max(r[2] for r in results) / 2**20:.0f} MiB"
        )


if __name__ == "__main__":
    main()
