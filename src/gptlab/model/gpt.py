"""GPT-2, readable top to bottom, with switchable architecture variants.

    tokens (B, T)
      -> token embedding + learned position embedding -> dropout       (B, T, C)
      -> n_layer x Block:
             x = x + attn(ln_1(x))     causal multi-head self-attention (attention.py)
             x = x + mlp(ln_2(x))      Linear(C, 4C) -> GELU(tanh) -> Linear(4C, C)
      -> ln_f -> lm_head (tied to the token embedding)                 (B, T, vocab_size)

Module names follow OpenAI's checkpoint (c_attn, c_proj, c_fc, ln_1, ln_2, ln_f) so that reading
this file next to the paper or the Hugging Face weights is easy.

ModelConfig's variant switches (all default to GPT-2) change single pieces: `pos` (learned, rope
or none; see positions.py), `norm` (norms.py), `norm_placement`, `mlp` (mlp.py), `n_kv_head`
(grouped-query attention), `qk_norm`, `bias`, `tie_weights` and `logit_softcap`; the speedrun's
additions `bigram_embed`, `smear`, `value_embed` (embeddings.py) and `x0_blend` (Block) add to
what a block or its values read, each through a scale or gate that starts at zero.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from gptlab.errors import GptlabError
from gptlab.model.attention import AttentionInputs, CausalSelfAttention, causal_mask
from gptlab.model.batching import IGNORE_INDEX
from gptlab.model.config import ModelConfig
from gptlab.model.embeddings import BigramEmbedding, Smear, tokens_back
from gptlab.model.hooks import (
    BackwardHookFn,
    HookFn,
    HookPoint,
    attached,
    gradient_taps,
    name_hook_points,
    select_hook_points,
)
from gptlab.model.kv_cache import KVCacheLike
from gptlab.model.mlp import MLP
from gptlab.model.norms import RMSNorm, make_norm
from gptlab.model.positions import rope_angles


class Block(nn.Module):
    """One transformer block.

    Pre-LN (GPT-2): normalise, transform, add back to the residual stream: x + f(ln(x)).
    Post-LN (the 2017 Transformer): transform, add, then normalise the sum: ln(x + f(x)).

    With x0_blend and bigram_embed, what the block reads is first
        x = a * x + b * x0 + c * bigram        (a = 1, b = c = 0 at initialisation)
    so every layer can draw on the token embedding and the bigram table directly.
    """

    def __init__(self, config: ModelConfig, layer: int) -> None:
        super().__init__()
        self.pre_norm = config.norm_placement == "pre"
        self.ln_1 = make_norm(config)
        self.attn = CausalSelfAttention(config, layer)
        self.ln_2 = make_norm(config)
        self.mlp = MLP(config)
        # Learned scalars of the block's input (see the class docstring); reset_parameters sets them.
        self.resid_scale = nn.Parameter(torch.ones(1)) if config.x0_blend else None  # a
        self.x0_scale = nn.Parameter(torch.zeros(1)) if config.x0_blend else None  # b
        self.bigram_scale = nn.Parameter(torch.zeros(1)) if config.bigram_embed else None  # c
        # The residual stream at each stage, and what each sublayer reads and writes. All (B, T, C).
        self.hook_resid_pre = HookPoint()
        self.hook_ln1 = HookPoint()
        self.hook_attn_out = HookPoint()
        self.hook_resid_mid = HookPoint()
        self.hook_ln2 = HookPoint()
        self.hook_mlp_out = HookPoint()
        self.hook_resid_post = HookPoint()

    def forward(self, x: torch.Tensor, inputs: AttentionInputs) -> torch.Tensor:
        x = self.hook_resid_pre(self.blend_inputs(x, inputs))
        if self.pre_norm:
            attn_out = self.hook_attn_out(self.attn(self.hook_ln1(self.ln_1(x)), inputs))
            x = self.hook_resid_mid(x + attn_out)
            mlp_out = self.hook_mlp_out(self.mlp(self.hook_ln2(self.ln_2(x))))
            return self.hook_resid_post(x + mlp_out)
        # Post-LN: the norms sit on the residual stream itself, so hook_ln1 is hook_resid_mid's
        # input and hook_ln2 is hook_resid_post's.
        attn_out = self.hook_attn_out(self.attn(x, inputs))
        x = self.hook_resid_mid(self.hook_ln1(self.ln_1(x + attn_out)))
        mlp_out = self.hook_mlp_out(self.mlp(x))
        return self.hook_resid_post(self.hook_ln2(self.ln_2(x + mlp_out)))

    def blend_inputs(self, x: torch.Tensor, inputs: AttentionInputs) -> torch.Tensor:
        """a * x + b * x0 (x0_blend), plus c * bigram (bigram_embed); x itself otherwise."""
        if self.resid_scale is not None:
            x = self.resid_scale * x + self.x0_scale * inputs.x0
        if self.bigram_scale is not None:
            x = x + self.bigram_scale * inputs.bigram
        return x


class GPT(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.wte = nn.Embedding(config.padded_vocab_size, config.n_embd)  # token embedding
        # Learned position embedding; rotary and no-position models have none ("none" relies on
        # the causal mask alone, which lets a model count how many tokens precede it).
        self.wpe = (
            nn.Embedding(config.block_size, config.n_embd) if config.pos == "learned" else None
        )
        self.bigram_embed = BigramEmbedding(config) if config.bigram_embed else None
        self.smear = Smear(config) if config.smear else None
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList([Block(config, layer) for layer in range(config.n_layer)])
        self.ln_f = make_norm(config)
        self.lm_head = nn.Linear(config.n_embd, config.padded_vocab_size, bias=False)
        if config.tie_weights:  # one matrix reads tokens in and writes them out
            self.lm_head.weight = self.wte.weight
        self.hook_embed = HookPoint()  # (B, T, C) token embeddings
        self.hook_pos_embed = HookPoint()  # (B, T, C) position embeddings (pos = learned only)
        self.hook_smear = HookPoint()  # (B, T, C) what the smear adds to the token embeddings
        self.hook_bigram_embed = HookPoint()  # (B, T, C) bigram (+ trigram) rows, pre-scale
        self.hook_ln_final = HookPoint()  # (B, T, C) the final norm's output
        self.hook_logits = HookPoint()  # (B, T, vocab_size)
        # 0 for the real vocabulary, -inf for the padding rows: added to the padded logits, it
        # lets the loss run over all padded_vocab_size columns (see head_and_loss). Not saved.
        padding = torch.zeros(config.padded_vocab_size)
        padding[config.vocab_size :] = float("-inf")
        self.register_buffer("vocab_padding_bias", padding, persistent=False)
        self.hook_points = name_hook_points(self)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """GPT-2's init: N(0, 0.02) everywhere, residual projections scaled by 1/sqrt(2 n_layer).

        Each block adds two outputs (attention, MLP) to the residual stream; scaling their
        projections keeps the stream's variance from growing with depth.
        """
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, mean=0.0, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Embedding):
                nn.init.normal_(module.weight, mean=0.0, std=0.02)
            elif isinstance(module, (nn.LayerNorm, RMSNorm)):
                nn.init.ones_(module.weight)
                if getattr(module, "bias", None) is not None:
                    nn.init.zeros_(module.bias)
        residual_std = 0.02 / math.sqrt(2 * self.config.n_layer)
        for block in self.blocks:
            nn.init.normal_(block.attn.c_proj.weight, mean=0.0, std=residual_std)
            nn.init.normal_(block.mlp.c_proj.weight, mean=0.0, std=residual_std)
        self.reset_speedrun_parameters()

    def reset_speedrun_parameters(self) -> None:
        """The speedrun additions start switched off: every scale and gate that would let them
        change the output is 0 (a gate's zero weights put it at its midpoint). The bigram table
        keeps its N(0, 0.02) rows: with its scales at 0, a zero table would never get a gradient."""
        if self.smear is not None:
            nn.init.zeros_(self.smear.strength)
            nn.init.zeros_(self.smear.gate.weight)
        for block in self.blocks:
            if block.resid_scale is not None:
                nn.init.ones_(block.resid_scale)
                nn.init.zeros_(block.x0_scale)
            if block.bigram_scale is not None:
                nn.init.zeros_(block.bigram_scale)
            if block.attn.value_embed is not None:  # zero rows: the gate's own 1 is harmless
                nn.init.zeros_(block.attn.value_embed.table.weight)
                nn.init.zeros_(block.attn.value_embed.gate.weight)

    def forward(
        self,
        idx: torch.Tensor,
        targets: torch.Tensor | None = None,
        *,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        kv_cache: KVCacheLike | None = None,
        only_last: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Logits for every position and, given targets, the mean cross-entropy loss.

        idx: (B, T) token ids. targets: (B, T) ids, IGNORE_INDEX (-100) where a position should not count.
        attention_mask: (B, T_past + T), 1 for real tokens and 0 for padding (batched prompts).
        position_ids: (B, T); by default T_past, T_past + 1, ... (left-padded batches pass their own).
        kv_cache: holds the keys/values of earlier positions; this call appends to it.
        only_last: compute logits for the last position only (generation does not need the rest).
        """
        B, T = idx.shape
        past = kv_cache.seq_len if kv_cache is not None else 0
        if past + T > self.config.block_size:
            raise GptlabError(
                f"sequence of {past + T} tokens is longer than the model's block_size "
                f"({self.config.block_size}); crop it to the last {self.config.block_size} tokens"
            )
        if position_ids is None:
            position_ids = torch.arange(past, past + T, device=idx.device).unsqueeze(0)
        key_len = kv_cache.key_len(T) if kv_cache is not None else T  # a static cache: max_len
        mask, is_causal = causal_mask(T, past, attention_mask, idx.device, key_len)
        rope = (
            rope_angles(position_ids, self.config.head_dim, truncated=self.config.rope_truncated)
            if self.config.pos == "rope"
            else None
        )
        # back[d - 1]: (ids, present) of the token d places back, for bigram_embed and smear (d = 1)
        # and the trigram table (d = 2)
        back = [
            tokens_back(idx, position_ids, kv_cache, distance)
            for distance in range(1, self.config.tokens_read_back + 1)
        ]
        if back and kv_cache is not None:
            kv_cache.record_tokens(idx)

        x = self.embed(idx, position_ids, back[0] if back else None)  # (B, T, C)
        bigram = None
        if self.bigram_embed is not None:
            bigram = self.hook_bigram_embed(self.bigram_embed(idx, back))
        x0 = x if self.config.x0_blend else None
        inputs = AttentionInputs(mask, is_causal, kv_cache, rope, idx, x0, bigram)
        for block in self.blocks:
            x = block(x, inputs)
        x = self.hook_ln_final(self.ln_f(x))
        if only_last:
            x = x[:, -1:, :]
        if targets is None:
            return self.head(x), None
        return self.head_and_loss(x, targets)

    def embed(
        self,
        idx: torch.Tensor,
        position_ids: torch.Tensor,
        previous: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Token embedding (+ smear, + learned position embedding), then dropout: (B, T) ->
        (B, T, C). previous: (previous token ids, present) from tokens_back(..., 1) (smear)."""
        x = self.hook_embed(self.wte(idx))
        if self.smear is not None:
            ids, has_previous = previous
            first_previous = self.wte(ids[:, :1])  # the rest are x's own rows, shifted
            x = x + self.hook_smear(self.smear(x, first_previous, has_previous))
        if self.wpe is not None:
            x = x + self.hook_pos_embed(self.wpe(position_ids))
        return self.drop(x)

    def head(self, x: torch.Tensor) -> torch.Tensor:
        """The final norm's output (B, T, C) -> logits over the real vocabulary (B, T, vocab_size)."""
        logits = self.lm_head(x)  # (B, T, padded_vocab_size)
        if self.config.padded_vocab_size != self.config.vocab_size:
            logits = logits[..., : self.config.vocab_size]  # padding rows never leave the model
        if self.config.logit_softcap is not None:
            # Soft-capping squashes logits smoothly into (-cap, cap): no token gets runaway
            # confidence, while small logits pass almost unchanged.
            cap = self.config.logit_softcap
            logits = cap * torch.tanh(logits / cap)
        return self.hook_logits(logits)

    def head_and_loss(
        self, x: torch.Tensor, targets: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits, mean cross-entropy over the targets that are not IGNORE_INDEX)."""
        if self.loss_over_padded_vocab():
            # exp(-inf) = 0, so the padding columns change neither the loss nor, with a zero
            # softmax, any gradient. Scoring the sliced logits instead copies the (B*T, vocab)
            # tensor forward and back: ~10% of a small-bpe training step on CPU (BENCHMARKS.md).
            padded = F.linear(x, self.lm_head.weight, self.vocab_padding_bias)
            loss = F.cross_entropy(
                padded.view(-1, padded.size(-1)), targets.reshape(-1), ignore_index=IGNORE_INDEX
            )
            return padded[..., : self.config.vocab_size], loss
        logits = self.head(x)
        loss = F.cross_entropy(
            logits.reshape(-1, logits.size(-1)), targets.reshape(-1), ignore_index=IGNORE_INDEX
        )
        return logits, loss

    def loss_over_padded_vocab(self) -> bool:
        """Whether head_and_loss may score the padded logits directly: a padded vocabulary, a plain
        Linear head (not int8), no soft-cap (it would turn -inf into -cap) and no hook that
        could replace the logits the loss must see."""
        return (
            self.config.padded_vocab_size != self.config.vocab_size
            and isinstance(self.lm_head, nn.Linear)
            and self.config.logit_softcap is None
            and not self.hook_logits.active
        )

    def hooks(self, fns: dict[str, HookFn]):
        """Context manager: `with model.hooks({"blocks.0.hook_resid_post": fn}): model(idx)`.

        Keys are hook names or shell-style patterns; fn(activation, name) may return a
        replacement tensor, or None to only read.
        """
        return attached(self.hook_points, fns)

    def backward_hooks(self, fns: dict[str, BackwardHookFn]):
        """Context manager: `with model.backward_hooks({"blocks.0.hook_resid_post": fn}):` then
        a forward pass and .backward() on anything computed from it calls fn(grad, name) with the
        gradient at that hook point (fn may return a replacement gradient, or None to only read).
        Works on frozen models too: see gptlab.model.hooks.gradient_taps."""
        return attached(self.hook_points, gradient_taps(fns, self.hook_points))

    def run_with_grads(
        self,
        idx: torch.Tensor,
        metric,
        names: list[str],
        **forward_kwargs,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """(metric value, {name: activation}, {name: d metric / d activation}) for the chosen hook
        points, where metric(logits) returns a scalar tensor (e.g. a mean logit difference)."""
        points = select_hook_points(self.hook_points, names)
        cache: dict[str, torch.Tensor] = {}
        grads: dict[str, torch.Tensor] = {}

        def save(x: torch.Tensor, name: str) -> None:
            cache[name] = x.detach()

        def save_grad(grad: torch.Tensor, name: str) -> None:
            grads[name] = grad.detach()

        with torch.enable_grad(), self.hooks({p.name: save for p in points}):
            with self.backward_hooks({p.name: save_grad for p in points}):
                logits, _ = self(idx, **forward_kwargs)
                value = metric(logits)
                value.backward()
        return value.detach(), cache, grads

    def run_with_cache(
        self, idx: torch.Tensor, names: list[str] | None = None, **forward_kwargs
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Run the model and return (logits, {hook name: activation}) for the chosen hook points.

        names: hook names or patterns; all hook points when None.
        """
        points = (
            list(self.hook_points.values())
            if names is None
            else select_hook_points(self.hook_points, names)
        )
        cache: dict[str, torch.Tensor] = {}

        def save(x: torch.Tensor, name: str) -> None:
            cache[name] = x.detach()

        with self.hooks({p.name: save for p in points}):
            logits, _ = self(idx, **forward_kwargs)
        return logits, cache

    def num_parameters(self) -> int:
        """Distinct parameters (a tied head counted once)."""
        return sum(p.numel() for p in self.parameters())
