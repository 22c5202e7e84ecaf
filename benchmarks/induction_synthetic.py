"""How fast a 2-layer gptlab model grows an induction head on pure repeated random tokens.

Not a gptlab recipe (no text, no run folder): a plain AdamW loop over batches of random character
sequences of 8-32 tokens written twice, printing every 100 steps the mean loss on held-out
repeated random tokens (first copy vs repeat, gptlab.interp.induction.repeated_tokens_loss).
It measures how far the `induction` preset's text-based recipe is from what the architecture can
do in the same minutes; see docs/tutorials/induction-heads.md.

    python benchmarks/induction_synthetic.py --pos rope --lr 3e-3 --batch 64
"""

import argparse
import time

import torch

from gptlab.interp.induction import repeated_tokens_loss
from gptlab.model import GPT
from gptlab.model.config import ModelConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pos", default="rope", choices=("learned", "rope"))
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--n-embd", type=int, default=64)
    parser.add_argument("--n-head", type=int, default=4)
    parser.add_argument("--steps", type=int, default=1500)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    config = ModelConfig(
        vocab_size=65,
        block_size=128,
        n_layer=2,
        n_head=args.n_head,
        n_embd=args.n_embd,
        pos=args.pos,
    )
    model = GPT(config)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=args.lr, weight_decay=0.1, betas=(0.9, 0.99)
    )
    generator = torch.Generator().manual_seed(1)
    started = time.time()
    print("step  seconds  train_loss  first_copy  repeat")
    for step in range(1, args.steps + 1):
        length = int(torch.randint(8, 33, (1,), generator=generator))
        x = torch.randint(0, 65, (args.batch, length), generator=generator).repeat(1, 2)
        _, loss = model(x[:, :-1], x[:, 1:])
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        if step % 100 == 0:
            model.eval()
            result = repeated_tokens_loss(model, 32, 2, 16, 0)
            model.train()
            print(
                f"{step:4d}  {time.time() - started:7.0f}  {loss.item():10.3f}  "
                f"{result.first_loss:10.3f}  {result.repeated_loss:6.3f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
