"""Where a model's parameters live: a table by component, totals with and without tying, memory.

The counts come from a real GPT built on PyTorch's "meta" device, which has shapes but no
storage, so even gpt2-xl (1.5B parameters) is counted instantly without allocating memory, and
the numbers cannot drift from the model code.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from gptlab.device import BYTES_PER_ELEMENT, dtype_name, require_memory
from gptlab.errors import GptlabError
from gptlab.model.config import ModelConfig
from gptlab.model.gpt import GPT

# Which component each parameter belongs to, by a piece of its name (checked in this order).
COMPONENTS = (
    ("wte.", "token embedding (wte)"),
    ("wpe.", "position embedding (wpe)"),
    ("bigram_embed.trigram_table.", "trigram embedding (trigram_buckets)"),
    ("bigram_embed.", "bigram embedding (bigram_embed)"),
    (".value_embed.", "value embeddings (value_embed)"),
    (".attn.", "attention (c_attn, c_proj)"),
    (".mlp.", "MLP (c_fc, c_proj)"),
    ("ln_", "layer norms (ln_1, ln_2, ln_f)"),
    ("smear.", "smear gate (smear)"),
    ("_scale", "input scales (x0_blend, bigram)"),
)
# The components a GPT-2 has: always listed, even when empty (a rotary model's wpe is 0); the
# others only when the model has them.
GPT2_COMPONENTS = {"wte.", "wpe.", ".attn.", ".mlp.", "ln_"}
HEAD = "head (lm_head)"
TABLE_DTYPES = ("fp32", "bf16")  # the memory lines of the table


@dataclass
class ParamRow:
    component: str
    total: int
    per_layer: int | None = None  # for components repeated in every block


@dataclass
class ParamCounts:
    config: ModelConfig
    rows: list[ParamRow]  # the body components, then the head
    tied: bool  # lm_head shares the token embedding's matrix
    total_with_tying: int  # distinct parameters: the head counted once, as the embedding
    total_without_tying: int  # as if the head had its own matrix
    padding: int  # rows added by pad_vocab_multiple (in the embedding, and in an untied head)

    def memory_bytes(self, dtype: str) -> int:
        """Bytes to hold the weights (as stored, i.e. with tying) in `dtype`."""
        return self.total_with_tying * BYTES_PER_ELEMENT[dtype_name(dtype)]


def count_parameters(config: ModelConfig) -> ParamCounts:
    """Counts from a one-block model on the meta device, with the block repeated n_layer times:
    every block has the same shape but for value embeddings (every other layer; a one-block
    model's only block is its last, which has one), so this is exact, and instant even for
    absurd configs."""
    try:
        with torch.device("meta"):
            model = GPT(dataclasses.replace(config, n_layer=1))
    except RuntimeError as exc:  # even the meta device refuses a tensor of more than 2**63 bytes
        if "overflow" not in str(exc):
            raise
        raise GptlabError(
            f"a model of n_embd={config.n_embd}, vocab_size={config.vocab_size}, "
            f"block_size={config.block_size} has a weight matrix too large to address; "
            "choose smaller sizes"
        ) from None

    totals = {name: 0 for _, name in COMPONENTS}
    per_layer = {name: 0 for _, name in COMPONENTS}
    # named_parameters lists a shared tensor once, so the tied lm_head does not appear here.
    for name, param in model.named_parameters():
        if name.startswith("lm_head."):
            continue  # an untied head has its own row below, like the tied one
        component = next((label for key, label in COMPONENTS if key in name), None)
        if component is None:
            raise AssertionError(f"parameter {name} belongs to no component in COMPONENTS")
        totals[component] += param.numel()
        if name.startswith("blocks.0."):
            per_layer[component] += param.numel()
    layers_with = {name: config.n_layer for _, name in COMPONENTS}
    layers_with["value embeddings (value_embed)"] = len(config.value_embed_layers())
    for name in totals:
        totals[name] += (layers_with[name] - 1) * per_layer[name]
    per_layer["value embeddings (value_embed)"] = 0  # not every layer: no per-layer figure

    head = model.lm_head.weight.numel()
    rows = [
        ParamRow(name, totals[name], per_layer[name] or None)
        for key, name in COMPONENTS
        if key in GPT2_COMPONENTS or totals[name]
    ]
    rows.append(ParamRow(HEAD, head))
    tied = model.lm_head.weight is model.wte.weight
    with_tying = sum(totals.values()) + (0 if tied else head)
    padding_rows = config.padded_vocab_size - config.vocab_size
    return ParamCounts(
        config=config,
        rows=rows,
        tied=tied,
        total_with_tying=with_tying,
        total_without_tying=with_tying + head if tied else with_tying,
        padding=padding_rows * config.n_embd * (1 if tied else 2),
    )


# Bytes per parameter while training with AdamW in fp32: the weight, its gradient, two moments.
TRAINING_BYTES_PER_PARAM = 16


def require_model_fits(config: ModelConfig, device: torch.device, training: bool = False) -> None:
    """Refuse, before anything is allocated, a model whose weights (and, training, its gradients
    and optimizer state) cannot fit the device's memory."""
    n = count_parameters(config).total_with_tying
    per_param = TRAINING_BYTES_PER_PARAM if training else BYTES_PER_ELEMENT["fp32"]
    shape = (
        f"n_layer={config.n_layer}, n_embd={config.n_embd}, block_size={config.block_size}, "
        f"vocab_size={config.padded_vocab_size}"
    )
    what = f"a {_short(n)}-parameter model ({shape}){' in training' if training else ''}"
    require_memory(n * per_param, what, device)


def format_parameter_table(counts: ParamCounts, title: str) -> str:
    """The table `gptlab params` prints."""
    c = counts.config
    lines = [
        f"{title}: n_layer={c.n_layer} n_head={c.n_head} n_embd={c.n_embd} "
        f"block_size={c.block_size} vocab_size={c.vocab_size}"
        + (f" (padded to {c.padded_vocab_size})" if c.padded_vocab_size != c.vocab_size else ""),
        "",
        f"{'component':<32}{'per layer':>14}{'total':>16}",
    ]
    for row in counts.rows:
        per_layer = f"{row.per_layer:,}" if row.per_layer is not None else "-"
        note = (
            "  (tied: shares the token embedding)" if row.component == HEAD and counts.tied else ""
        )
        lines.append(f"{row.component:<32}{per_layer:>14}{row.total:>16,}{note}")
    lines += [
        "",
        f"{'total with tying':<46}{counts.total_with_tying:>16,}  ({_short(counts.total_with_tying)})",
        *(
            [
                f"{'  of which padding rows (never used)':<46}{counts.padding:>16,}",
                # The number the papers and OpenAI quote, so nobody has to subtract by hand.
                f"{'total without padding (the published count)':<46}"
                f"{counts.total_with_tying - counts.padding:>16,}"
                f"  ({_short(counts.total_with_tying - counts.padding)})",
            ]
            if counts.padding
            else []
        ),
        f"{'total without tying':<46}{counts.total_without_tying:>16,}  ({_short(counts.total_without_tying)})",
    ]
    for dtype in TABLE_DTYPES:
        lines.append(f"{f'weights in {dtype}':<46}{_mib(counts.memory_bytes(dtype)):>16}")
    return "\n".join(lines)


def _short(n: int) -> str:
    return f"{n / 1e9:.2f}B" if n >= 1e9 else f"{n / 1e6:.1f}M"


def _mib(n_bytes: int) -> str:
    return f"{n_bytes / 2**30:.2f} GiB" if n_bytes >= 2**30 else f"{n_bytes / 2**20:.1f} MiB"
