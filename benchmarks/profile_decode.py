"""Where a GPT-2 decode step's time goes: torch.profiler over greedy tokens of decode_steps.

    python benchmarks/profile_decode.py                 # fp32, 30 tokens, 2 threads
    python benchmarks/profile_decode.py --int8 --threads 1

GPT-2 124M shape with random weights (speed does not depend on the values), a 16-token prompt,
one untimed warm-up decode, then one profiled decode; prints the top operators by self CPU time.
"""

from __future__ import annotations

import argparse

import torch
from torch.profiler import profile

from gptlab.inference.config import GenerationConfig
from gptlab.inference.decode import decode_steps
from gptlab.inference.precision import prepare_model
from gptlab.model import GPT
from gptlab.model.config import ModelConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--int8", action="store_true", help="also profile the int8 model")
    parser.add_argument("--rows", type=int, default=12, help="operators to print")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = GPT(ModelConfig(vocab_size=50257, block_size=1024, n_layer=12, n_head=12, n_embd=768))
    models = [("fp32", model.eval())]
    if args.int8:
        models.append(("int8", prepare_model(model, quantize="int8")))
    prompt = torch.randint(50257, (1, 16), generator=torch.Generator().manual_seed(0))
    config = GenerationConfig(max_new_tokens=args.tokens, temperature=0, stop_at_eot=False)
    for name, decoder in models:
        with torch.inference_mode():
            for _ in decode_steps(decoder, prompt, config):  # warm-up
                pass
            with profile() as profiler:
                for _ in decode_steps(decoder, prompt, config):
                    pass
        print(f"== {name}, {args.tokens} tokens, {args.threads} threads")
        table = profiler.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.rows)
        print(table)


if __name__ == "__main__":
    main()
