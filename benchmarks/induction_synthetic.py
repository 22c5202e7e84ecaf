"""Which data layouts let a 2-layer gptlab model grow an induction head in minutes on a CPU.

Not a gptlab recipe (no run folder): a plain AdamW loop (constant lr, clip 1.0) over batches built
in one of the layouts below, printing every 100 steps the mean loss on held-out repeated random
tokens (first copy vs repeat, gptlab.interp.induction.repeated_tokens_loss). It is how the
`induction` preset's data (gptlab.data.repeats) was found; BENCHMARKS.md has the results.

A "pair" is a span of 8-32 tokens written twice. Layouts (every row is --block + 1 tokens except
in `sequences`):
  sequences        each row one pair starting at position 0, the same span length in a batch
  aligned          each row pairs back to back from position 0, cut at the row's end
  stream           pairs back to back in one long stream, rows read at random offsets
  aligned-gaps     as aligned, with 16 random tokens between pairs
  half-text        half the rows `aligned`, half windows of TinyShakespeare at random offsets
  text-pairs       each row pairs of consecutive TinyShakespeare spans, back to back
  half-text-pairs  half the rows `aligned`, half `text-pairs` (what `repeats:` writes)

    python benchmarks/induction_synthetic.py --layout half-text-pairs
"""

import argparse
import time
from pathlib import Path

import torch

from gptlab.interp.induction import repeated_tokens_loss
from gptlab.model import GPT
from gptlab.model.config import ModelConfig

SHAKESPEARE = Path(__file__).resolve().parents[1] / "data/samples/tinyshakespeare/input.txt"
LAYOUTS = (
    "sequences",
    "aligned",
    "stream",
    "aligned-gaps",
    "half-text",
    "text-pairs",
    "half-text-pairs",
)
VOCAB = 65


class Batches:
    """Rows of token ids in one layout, from a seeded generator."""

    def __init__(self, layout: str, batch: int, block: int, seed: int = 1):
        self.layout, self.batch, self.width = layout, batch, block + 1
        self.generator = torch.Generator().manual_seed(seed)
        if "text" in layout:
            text = SHAKESPEARE.read_text(encoding="utf-8")
            ids = {c: i for i, c in enumerate(sorted(set(text)))}
            self.text = torch.tensor([ids[c] for c in text])
        if layout == "stream":
            self.stream = torch.tensor(self._pairs(3_000_000))

    def _randint(self, low: int, high: int) -> int:
        return int(torch.randint(low, high, (1,), generator=self.generator))

    def _pairs(self, length: int, gap: int = 0) -> list[int]:
        """Random pairs back to back (with `gap` random tokens before each), cut at `length`."""
        row: list[int] = []
        while len(row) < length:
            row += torch.randint(0, VOCAB, (gap,), generator=self.generator).tolist()
            span = torch.randint(0, VOCAB, (self._randint(8, 33),), generator=self.generator)
            row += span.tolist() * 2
        return row[:length]

    def _text_pairs(self) -> list[int]:
        position, row = self._randint(0, len(self.text) - 4 * self.width), []
        while len(row) < self.width:
            length = self._randint(8, 33)
            row += self.text[position : position + length].tolist() * 2
            position += length
        return row[: self.width]

    def _text_window(self) -> list[int]:
        start = self._randint(0, len(self.text) - self.width)
        return self.text[start : start + self.width].tolist()

    def _stream_window(self) -> list[int]:
        start = self._randint(0, len(self.stream) - self.width)
        return self.stream[start : start + self.width].tolist()

    def next(self) -> torch.Tensor:
        if self.layout == "sequences":
            length = self._randint(8, 33)
            span = torch.randint(0, VOCAB, (self.batch, length), generator=self.generator)
            return span.repeat(1, 2)
        half = self.batch // 2
        row_of = {
            "aligned": lambda i: self._pairs(self.width),
            "stream": lambda i: self._stream_window(),
            "aligned-gaps": lambda i: self._pairs(self.width, gap=16),
            "half-text": lambda i: self._pairs(self.width) if i < half else self._text_window(),
            "text-pairs": lambda i: self._text_pairs(),
            "half-text-pairs": lambda i: (
                self._pairs(self.width) if i < half else self._text_pairs()
            ),
        }[self.layout]
        return torch.tensor([row_of(i) for i in range(self.batch)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layout", default="half-text-pairs", choices=LAYOUTS)
    parser.add_argument("--pos", default="rope", choices=("learned", "rope"))
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--block", type=int, default=64, help="row length - 1 (not `sequences`)")
    parser.add_argument("--steps", type=int, default=2000)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    config = ModelConfig(
        vocab_size=VOCAB, block_size=128, n_layer=2, n_head=4, n_embd=64, pos=args.pos
    )
    model = GPT(config)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=args.lr, weight_decay=0.1, betas=(0.9, 0.99)
    )
    batches = Batches(args.layout, args.batch, args.block)
    started = time.time()
    print("step  seconds  train_loss  first_copy  repeat")
    for step in range(1, args.steps + 1):
        x = batches.next()
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
