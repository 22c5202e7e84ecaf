"""Train an 8,192-token byte-level BPE three ways on the same text: gptlab's own trainer, Hugging
Face `tokenizers` and `rustbpe` (Karpathy's, the one nanochat uses), interleaved round by round
(a shared machine's speed drifts), each in its own process so its peak memory is its own.

    python benchmarks/bpe_train.py ../shared/data/wikipedia/enwiki2015.jsonl --rounds 2

The text: the documents `gptlab train` would train on (data.val_fraction 0.1 leaves out every
tenth article); bytes per token is measured on the held-out tenth, which no trainer saw. All
three use GPT-2's pre-tokenization pattern and give 8,191 merged/byte tokens plus <|endoftext|>.
Timed: from the documents in memory (read and JSON-decoded before the clock starts) to a
trained tokenizer. HF tokenizers and rustbpe count in parallel threads; gptlab is one Python
thread. Needs `pip install tokenizers rustbpe`.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from fractions import Fraction

import numpy as np

from gptlab.data.sources import iter_documents
from gptlab.data.splits import is_train_document
from gptlab.tokenizers.bpe import END_OF_TEXT, GPT2_SPLIT_PATTERN, train_bpe

TRAINERS = ("gptlab", "hf-tokenizers", "rustbpe")


def split_corpus(path: str, val_fraction: float = 0.1) -> tuple[list[str], list[str]]:
    documents = list(iter_documents(path))
    fraction = Fraction(val_fraction).limit_denominator(1_000_000)
    is_train = is_train_document(np.arange(len(documents)), fraction)
    train = [d for d, t in zip(documents, is_train, strict=True) if t]
    held_out = [d for d, t in zip(documents, is_train, strict=True) if not t]
    return train, held_out


def train_gptlab(documents: list[str], vocab_size: int):
    tokenizer = train_bpe(documents, vocab_size, progress=False)
    return lambda texts: [len(ids) for ids in tokenizer.encode_batch(texts)]


def train_hf(documents: list[str], vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    # ByteLevel with use_regex applies GPT-2's split pattern, then maps bytes to characters.
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[END_OF_TEXT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        min_frequency=0,
        show_progress=False,
    )
    tokenizer.train_from_iterator(documents, trainer=trainer)
    return lambda texts: [len(e.ids) for e in tokenizer.encode_batch(texts)]


def train_rustbpe(documents: list[str], vocab_size: int):
    import rustbpe
    import tiktoken

    tokenizer = rustbpe.Tokenizer()
    # rustbpe's vocabulary has no special tokens: one fewer, so all three have the same count.
    tokenizer.train_from_iterator(iter(documents), vocab_size - 1, pattern=GPT2_SPLIT_PATTERN)
    ranks = {bytes(k): v for k, v in tokenizer.get_mergeable_ranks()}
    encoding = tiktoken.Encoding(
        "rustbpe", pat_str=tokenizer.get_pattern(), mergeable_ranks=ranks, special_tokens={}
    )
    return lambda texts: [len(ids) for ids in encoding.encode_ordinary_batch(texts)]


TRAIN = {"gptlab": train_gptlab, "hf-tokenizers": train_hf, "rustbpe": train_rustbpe}


def run_one(trainer: str, path: str, vocab_size: int) -> dict:
    train, held_out = split_corpus(path)
    start, cpu_start = time.perf_counter(), time.process_time()
    count_tokens = TRAIN[trainer](train, vocab_size)
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    held_out_bytes = sum(len(d.encode("utf-8")) for d in held_out)
    return {
        "trainer": trainer,
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,  # all threads: on a shared machine, steadier than wall time
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "train_bytes": sum(len(d.encode("utf-8")) for d in train),
        "held_out_bytes": held_out_bytes,
        "held_out_bytes_per_token": held_out_bytes / sum(count_tokens(held_out)),
        "load_average": os.getloadavg()[0],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("corpus", help="a JSONL (or any gptlab source) of documents")
    parser.add_argument("--vocab-size", type=int, default=8192)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--trainers", default=",".join(TRAINERS))
    parser.add_argument("--one", choices=TRAINERS, help=argparse.SUPPRESS)  # the child process
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one, args.corpus, args.vocab_size)))
        return

    results: dict[str, list[dict]] = {t: [] for t in args.trainers.split(",")}
    for round_ in range(args.rounds):
        for trainer in results:
            command = [sys.executable, __file__, args.corpus, "--vocab-size", str(args.vocab_size)]
            out = subprocess.run(
                [*command, "--one", trainer], capture_output=True, text=True, check=True
            )
            result = json.loads(out.stdout.strip().splitlines()[-1])
            results[trainer].append(result)
            print(
                f"round {round_ + 1} {trainer:14s} {result['seconds']:7.1f} s ({result['cpu_seconds']:.1f} CPU s)  "
                f"peak {result['peak_rss_mb']:6.0f} MB  held-out {result['held_out_bytes_per_token']:.4f} "
                f"bytes/token  load {result['load_average']:.2f}",
                flush=True,
            )

    first = next(iter(results.values()))[0]
    print(
        f"\n{first['train_bytes'] / 1e6:.1f} MB of training text, {first['held_out_bytes'] / 1e6:.1f} MB "
        f"held out, vocabulary {args.vocab_size}, load average {os.getloadavg()}"
    )
    print(
        "| trainer | median wall s | x gptlab | median CPU s | peak RSS MB | held-out bytes/token |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    ours = statistics.median(r["seconds"] for r in results.get("gptlab", first and [first]))
    for trainer, runs in results.items():
        seconds = statistics.median(r["seconds"] for r in runs)
        cpu = statistics.median(r["cpu_seconds"] for r in runs)
        print(
            f"| {trainer} | {seconds:.1f} | {seconds / ours:.2f} | {cpu:.1f} | "
            f"{max(r['peak_rss_mb'] for r in runs):.0f} | {runs[0]['held_out_bytes_per_token']:.4f} |"
        )


if __name__ == "__main__":
    main()
