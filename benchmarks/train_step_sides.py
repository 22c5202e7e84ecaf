"""The two sides the training-speed benchmarks time: gptlab's trainer and a reference step.

bench_train_step.py (CPU, ms per step) and gpu_check.py (CUDA, tokens/s and MFU) both use them.

GptlabTraining is gptlab's real loop, set up in a scratch run folder: each `step()` is one
`Trainer.advance` (micro-batches from the TokenLoader, forward and backward, clip, AdamW, the
loss read, the metrics.jsonl line written), exactly as `gptlab train` does it.

ReferenceTraining is Hugging Face GPT2LMHeadModel + torch AdamW: the plain PyTorch step of a
well-known implementation, the same
shape as gptlab's model (tied head over the unpadded vocabulary, SDPA attention, the same
dropout), torch.optim.AdamW (fused) over the same two weight-decay groups, clip_grad_norm_, the
loss read once per step, on the very same batches (its own TokenLoader over the same prepared
folder, with the same seed and mode).
"""

from __future__ import annotations

import contextlib
import dataclasses
from pathlib import Path

import torch
import torch.nn.functional as F

from gptlab.data.loader import TokenLoader
from gptlab.device import resolve_device
from gptlab.optional import import_optional
from gptlab.train.config import RunConfig
from gptlab.train.distributed import DistributedContext, Parallelism
from gptlab.train.flops import flops_per_token
from gptlab.train.optim import parameter_groups
from gptlab.train.trainer import Trainer, build_trainer


class GptlabTraining:
    """gptlab's trainer for `config` in `run_dir` (no progress bar); `step()` is one advance."""

    def __init__(self, config: RunConfig, run_dir: Path):
        device = resolve_device(config.train.device, "train.device=")
        self.trainer = build_trainer(
            config,
            run_dir,
            Parallelism(DistributedContext(), device, sharded=False),
            show_progress=False,
        )

    def step(self) -> None:
        self.trainer.advance()

    def close(self) -> None:
        self.trainer.release()


class ReferenceTraining:
    """One optimizer step of GPT2LMHeadModel per `step()` (the module docstring)."""

    def __init__(
        self,
        config: RunConfig,
        data_folder: Path,
        device: torch.device,
        dtype: torch.dtype,
        accumulation_steps: int,
        *,
        compile: bool = False,
    ):
        """`config` as gptlab's trainer completed it (vocab_size from the data)."""
        transformers = import_optional("transformers", "hf")
        model_cfg, cfg = config.model, config.train
        hf_config = transformers.GPT2Config(
            vocab_size=model_cfg.vocab_size,
            n_positions=model_cfg.block_size,
            n_embd=model_cfg.n_embd,
            n_layer=model_cfg.n_layer,
            n_head=model_cfg.n_head,
            resid_pdrop=model_cfg.dropout,
            embd_pdrop=model_cfg.dropout,
            attn_pdrop=model_cfg.dropout,
            layer_norm_epsilon=model_cfg.layer_norm_eps,
            attn_implementation="sdpa",
            bos_token_id=model_cfg.vocab_size - 1,  # GPT-2's 50256 lies outside a char vocabulary
            eos_token_id=model_cfg.vocab_size - 1,
        )
        torch.manual_seed(cfg.seed)
        self.device = device
        self.model = transformers.GPT2LMHeadModel(hf_config).to(self.device)
        self.model.train()
        self.num_parameters = sum(p.numel() for p in self.model.parameters())
        # FLOPs per token by the same accounting as gptlab's MFU, over HF's own (unpadded) matrices.
        self.flops_per_token = flops_per_token(
            dataclasses.replace(model_cfg, pad_vocab_multiple=1), self.num_parameters
        )
        self.forward = torch.compile(self.model) if compile else self.model
        self.optimizer = torch.optim.AdamW(
            parameter_groups(self.model, cfg.weight_decay),
            lr=cfg.lr,
            betas=(cfg.beta1, cfg.beta2),
            fused=True,  # torch 2.13 has the fused kernel on CPU as well as CUDA
        )
        self.autocast = (
            torch.autocast(self.device.type, dtype=dtype)
            if dtype != torch.float32
            else contextlib.nullcontext()
        )
        self.grad_clip = cfg.grad_clip
        self.loader = TokenLoader(
            data_folder,
            "train",
            cfg.micro_batch_size,
            model_cfg.block_size,
            mode=config.data.loader_mode,
            seed=cfg.seed,
            device=self.device,
        )
        self.accumulation_steps = accumulation_steps
        self.tokens_per_step = cfg.tokens_per_step

    @classmethod
    def like(cls, trainer: Trainer, *, compile: bool = False) -> ReferenceTraining:
        """The reference for gptlab Trainer `trainer`: its shape, data, device, dtype and batch."""
        return cls(
            trainer.config,
            trainer.data.folder,
            trainer.parallel.device,
            trainer.dtype,
            trainer.accumulation_steps,
            compile=compile,
        )

    def step(self) -> float:
        """One optimizer step; returns its loss (read on the host, which waits for the device)."""
        for _ in range(self.accumulation_steps):
            x, y = self.loader.next_batch()
            with self.autocast:
                logits = self.forward(input_ids=x).logits
                loss = F.cross_entropy(logits.view(-1, logits.size(-1)), y.view(-1))
            (loss / self.accumulation_steps).backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return loss.item()  # any training script reads its loss once a step, to log it
