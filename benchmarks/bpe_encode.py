"""Encoding speed of a trained BPE tokenizer: the trainer's pure-Python reference encoder, the
tiktoken export, and GPT-2's tiktoken, on the same text (one thread each).

    gptlab tokenizer train tinyshakespeare --vocab-size 4096 --out ts4096.json
    python benchmarks/bpe_encode.py ts4096.json data/samples/openwebtext/openwebtext_sample.txt
"""

import argparse
import time

from gptlab.tokenizers.base import GPT2Tokenizer, load_tokenizer


def megabytes_per_second(encode, text: str) -> float:
    start = time.perf_counter()
    encode(text)
    return len(text.encode("utf-8")) / 1e6 / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "tokenizer", help="a BPE tokenizer JSON written by `gptlab tokenizer train`"
    )
    parser.add_argument("text_file", help="a UTF-8 text file to encode")
    args = parser.parse_args()
    text = open(args.text_file, encoding="utf-8").read()
    bpe = load_tokenizer(args.tokenizer)
    print(
        f"BPE-{bpe.vocab_size} encode_slow (pure Python): {megabytes_per_second(bpe.encode_slow, text):.2f} MB/s"
    )
    print(
        f"BPE-{bpe.vocab_size} encode (tiktoken export):  {megabytes_per_second(bpe.encode, text):.2f} MB/s"
    )
    print(
        f"GPT-2 tiktoken encode_ordinary:     {megabytes_per_second(GPT2Tokenizer().encode, text):.2f} MB/s"
    )


if __name__ == "__main__":
    main()
