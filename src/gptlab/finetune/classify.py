"""Turn a pretrained GPT into a text classifier.

    text -> tokens (right-padded batch, B x T)
         -> GPT body up to the final LayerNorm                        (B, T, C)
         -> the hidden state of each row's LAST REAL token            (B, C)
         -> head: Linear(C, n_classes)                                (B, n_classes)

The last token is the one that has attended to the whole text (attention is causal), so it is the
natural summary. With right padding nothing real attends to the padding, so the padded batch
computes exactly what each text alone would; the padding token's id does not matter (the
end-of-text token is used, or 0 for tokenizers that have none).

The language-model head stays in the model (tied to the token embedding, untouched unless
`--train all`), so the classifier's body is still a standard GPT model folder.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from gptlab.device import model_device
from gptlab.errors import GptlabError
from gptlab.finetune.examples import LabeledText
from gptlab.finetune.loop import StepResult
from gptlab.model.batching import right_pad
from gptlab.model.gpt import GPT
from gptlab.tokenizers.base import Tokenizer


def final_hidden_states(body: GPT, tokens: torch.Tensor) -> torch.Tensor:
    """The final LayerNorm's output (B, T, C) for tokens (B, T), read at the model's hook point.

    only_last=True keeps the unused vocabulary projection to one position.
    """
    captured: list[torch.Tensor] = []
    with body.hooks({"hook_ln_final": lambda x, name: captured.append(x)}):
        body(tokens, only_last=True)
    return captured[0]


class GPTClassifier(nn.Module):
    def __init__(self, body: GPT, n_classes: int, head: nn.Linear | None = None) -> None:
        super().__init__()
        self.body = body
        self.head = head if head is not None else nn.Linear(body.config.n_embd, n_classes)

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """tokens (B, T) right-padded, lengths (B,) real tokens per row -> logits (B, n_classes)."""
        hidden = final_hidden_states(self.body, tokens)  # (B, T, C)
        last = hidden[torch.arange(tokens.size(0), device=tokens.device), lengths - 1]  # (B, C)
        return self.head(last)


@dataclass
class EncodedTexts:
    """Texts as token ids (cut to max_length) with their class indices."""

    ids: list[list[int]]
    labels: list[int]
    truncated: int  # how many texts were longer than max_length

    def __len__(self) -> int:
        return len(self.ids)


def encode_texts(
    tokenizer: Tokenizer, examples: Sequence[LabeledText], labels: Sequence[str], max_length: int
) -> EncodedTexts:
    """Encode and keep the first max_length tokens of each text (the start carries the content)."""
    index = {label: i for i, label in enumerate(labels)}
    ids = tokenizer.encode_batch([e.text for e in examples])
    truncated = sum(len(seq) > max_length for seq in ids)
    return EncodedTexts(
        [seq[:max_length] for seq in ids], [index[e.label] for e in examples], truncated
    )


# tokens (B, T), lengths (B,), labels (B,), and each row's position in its split (B,)
Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[int]]


def make_batches(
    data: EncodedTexts,
    batch_size: int,
    pad_id: int,
    device: torch.device,
    shuffle: bool = False,
    generator: torch.Generator | None = None,
) -> list[Batch]:
    """Batches padded to their own longest text, grouping texts of similar length.

    Unshuffled (evaluation), the texts go in order of length, so little compute goes to padding.
    Shuffled (training), batches are drawn from length-sorted buckets of 50 batches, and the batch
    order is random.
    """
    if shuffle:
        order = torch.randperm(len(data), generator=generator).tolist()
        bucket = 50 * batch_size
        order = [
            i
            for start in range(0, len(order), bucket)
            for i in sorted(order[start : start + bucket], key=lambda i: len(data.ids[i]))
        ]
        groups = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
        groups = [groups[i] for i in torch.randperm(len(groups), generator=generator).tolist()]
    else:
        order = sorted(range(len(data)), key=lambda i: len(data.ids[i]))
        groups = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    batches = []
    for group in groups:
        seqs = [data.ids[i] for i in group]
        batches.append(
            (
                right_pad(seqs, pad_id).to(device),
                torch.tensor([len(s) for s in seqs], device=device),
                torch.tensor([data.labels[i] for i in group], device=device),
                group,
            )
        )
    return batches


def classification_step(
    classifier: GPTClassifier, class_weights: torch.Tensor | None = None
) -> Callable[[Batch], StepResult]:
    def step(batch: Batch) -> StepResult:
        tokens, lengths, labels, _ = batch
        logits = classifier(tokens, lengths)
        loss = F.cross_entropy(logits, labels, weight=class_weights)
        correct = int((logits.argmax(-1) == labels).sum())
        return StepResult(loss=loss, weight=len(labels), correct=correct)

    return step


@dataclass(frozen=True)
class SplitScore:
    loss: float
    accuracy: float
    predictions: list[int]
    labels: list[int]


@torch.no_grad()
def evaluate(
    classifier: GPTClassifier, batches: Sequence[Batch], class_weights: torch.Tensor | None = None
) -> SplitScore:
    """Mean loss, accuracy, and every prediction and label in the split's order (dropout off)."""
    was_training = classifier.training
    classifier.eval()
    n = sum(len(batch[3]) for batch in batches)
    loss_sum, predictions, labels = 0.0, [0] * n, [0] * n
    for tokens, lengths, batch_labels, positions in batches:
        logits = classifier(tokens, lengths)
        loss_sum += F.cross_entropy(
            logits, batch_labels, weight=class_weights, reduction="sum"
        ).item()
        for position, predicted, label in zip(
            positions, logits.argmax(-1).tolist(), batch_labels.tolist(), strict=True
        ):
            predictions[position], labels[position] = predicted, label
    classifier.train(was_training)
    correct = sum(p == t for p, t in zip(predictions, labels, strict=True))
    return SplitScore(loss_sum / n, correct / n, predictions, labels)


def balanced_class_weights(labels: Sequence[int], n_classes: int) -> torch.Tensor:
    """Inverse-frequency weights, scaled so that a balanced data set gets weight 1 per class."""
    counts = torch.bincount(torch.tensor(labels), minlength=n_classes).float().clamp(min=1)
    return counts.sum() / (n_classes * counts)


@torch.no_grad()
def predict_probabilities(
    classifier: GPTClassifier,
    tokenizer: Tokenizer,
    texts: Sequence[str],
    max_length: int,
    pad_id: int,
    batch_size: int = 32,
    progress: bool = False,
) -> torch.Tensor:
    """Class probabilities (len(texts), n_classes) for raw texts, cut to max_length tokens.

    Texts go through in batches of `batch_size`, so a file of many texts needs the memory of one
    batch, not of all of them.
    """
    if batch_size < 1:
        raise GptlabError(f"batch_size must be at least 1, got {batch_size}")
    classifier.eval()
    device = model_device(classifier)
    ids = [seq[:max_length] for seq in tokenizer.encode_batch(list(texts))]
    batches = []
    with tqdm(total=len(ids), unit="text", desc="classify", disable=not progress) as bar:
        for start in range(0, len(ids), batch_size):
            chunk = ids[start : start + batch_size]
            tokens = right_pad(chunk, pad_id).to(device)
            lengths = torch.tensor([len(seq) for seq in chunk], device=device)
            batches.append(torch.softmax(classifier(tokens, lengths), dim=-1).cpu())
            bar.update(len(chunk))
    return torch.cat(batches)
