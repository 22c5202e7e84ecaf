"""What each feature responds to: a scan of held-out text, and per-feature dashboards from it.

The scan runs the model and the SAE over `tokens` tokens of the data's val split once and keeps,
per token, its largest feature activations (all k of them for a TopK SAE, so nothing is lost;
the largest 64 for a ReLU SAE) in features.safetensors in the SAE folder. Every view (terminal,
HTML page, explorer) reads its dashboards from that file:

    density          fraction of scanned tokens the feature is active on
    top contexts     the tokens where it is most active, with the text around them and the
                     feature's activation on every token of that text (for the shading)
    histogram        of its non-zero activations
    logit effect     the tokens its decoder direction promotes and suppresses, read through the
                     unembedding: W_U @ (gain * centred(d)) where d is the decoder row. This is
                     ln_final linearised: LayerNorm's centring and gain are applied (RMSNorm: the
                     gain only), its division by the norm is not (a positive factor that scales
                     every token's logit alike, so it changes no ranking).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from gptlab.data.loader import TokenLoader
from gptlab.device import resolve_device
from gptlab.errors import GptlabError
from gptlab.fileio import atomic_write
from gptlab.sae.activations import activations_at
from gptlab.sae.folder import WEIGHTS_FILE, load_sae_and_model, sae_data

SCAN_FILE = "features.safetensors"
RELU_KEPT = 64  # a ReLU SAE's activations kept per token (its L0 is usually far below)
CONTEXT_BEFORE, CONTEXT_AFTER = 16, 4  # tokens shown around a top activation


@dataclass
class FeatureScan:
    sae: object  # SparseAutoencoder
    config: dict
    model: object  # GPT
    tokenizer: object
    tokens: torch.Tensor  # (W, T) token ids of the scanned windows
    values: torch.Tensor  # (W, T, kept) largest activations per token
    indices: torch.Tensor  # (W, T, kept) their feature ids

    def __post_init__(self) -> None:
        # Every (window, position, activation) sorted by feature: feature i's entries are
        # order[starts[i]:starts[i + 1]], so each dashboard is a slice, not a scan.
        flat = self.indices.reshape(-1)
        live = self.values.reshape(-1) > 0
        entries = torch.nonzero(live).squeeze(1)
        ids = flat[entries]
        sort = torch.argsort(ids, stable=True)
        self._entries = entries[sort]
        counts = torch.bincount(ids, minlength=self.sae.d_sae)
        self._starts = torch.cat([torch.zeros(1, dtype=torch.long), counts.cumsum(0)])
        self._token_strings: dict[int, str] = {}

    @property
    def num_tokens(self) -> int:
        return self.tokens.numel()

    def densities(self) -> torch.Tensor:
        return (self._starts[1:] - self._starts[:-1]).double() / self.num_tokens

    def live_features(self) -> list[int]:
        return torch.nonzero(self._starts[1:] > self._starts[:-1]).squeeze(1).tolist()

    def token_text(self, token: int) -> str:
        if token not in self._token_strings:
            self._token_strings[token] = self.tokenizer.decode([int(token)])
        return self._token_strings[token]

    def activations(self, feature: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(flat token positions, activations) where `feature` is active."""
        entries = self._entries[self._starts[feature] : self._starts[feature + 1]]
        kept = self.values.shape[-1]
        return entries // kept, self.values.reshape(-1)[entries]

    def dashboard(self, feature: int, top: int = 10, bins: int = 20) -> dict:
        """Everything shown for one feature, as plain JSON-ready values."""
        if not 0 <= feature < self.sae.d_sae:
            raise GptlabError(
                f"feature {feature} does not exist: this SAE has 0..{self.sae.d_sae - 1}"
            )
        positions, acts = self.activations(feature)
        order = torch.argsort(acts, descending=True)[:top]
        T = self.tokens.shape[1]
        contexts = []
        for flat in positions[order].tolist():
            window, position = divmod(flat, T)
            lo, hi = max(0, position - CONTEXT_BEFORE), min(T, position + CONTEXT_AFTER + 1)
            ids = self.tokens[window, lo:hi].tolist()
            here = (self.values[window, lo:hi] * (self.indices[window, lo:hi] == feature)).sum(-1)
            contexts.append(
                {
                    "tokens": [self.token_text(t) for t in ids],
                    "acts": [round(a, 4) for a in here.tolist()],
                    "max_at": position - lo,
                }
            )
        histogram = {"edges": [], "counts": []}
        if acts.numel():
            counts, edges = torch.histogram(acts.float(), bins=bins)
            histogram = {
                "edges": [round(e, 4) for e in edges.tolist()],
                "counts": counts.int().tolist(),
            }
        promoted, suppressed = self.logit_effect(feature)
        return {
            "id": feature,
            "density": acts.numel() / self.num_tokens,
            "max_act": acts.max().item() if acts.numel() else 0.0,
            "contexts": contexts,
            "histogram": histogram,
            "promoted": promoted,
            "suppressed": suppressed,
        }

    @torch.no_grad()
    def logit_effect(self, feature: int, n: int = 10) -> tuple[list, list]:
        """([(token, logit change)] promoted, [...] suppressed) by the feature's decoder row."""
        direction = self.sae.W_dec[feature].float()
        effect = logit_effect(self.model, direction)
        up = effect.topk(min(n, effect.numel()))
        down = (-effect).topk(min(n, effect.numel()))
        promoted = [
            (self.token_text(i), round(v, 3))
            for v, i in zip(up.values.tolist(), up.indices.tolist(), strict=True)
        ]
        suppressed = [
            (self.token_text(i), round(-v, 3))
            for v, i in zip(down.values.tolist(), down.indices.tolist(), strict=True)
        ]
        return promoted, suppressed


@torch.no_grad()
def logit_effect(model, direction: torch.Tensor) -> torch.Tensor:
    """The change in every token's logit per unit of `direction` added before ln_final,
    through ln_final linearised (see the module docstring): (vocab_size,)."""
    ln_f = model.ln_f
    if getattr(ln_f, "bias", None) is not None or isinstance(ln_f, torch.nn.LayerNorm):
        direction = direction - direction.mean()
    if getattr(ln_f, "weight", None) is not None:
        direction = direction * ln_f.weight.float()
    head = model.lm_head.weight[: model.config.vocab_size].float()
    return head @ direction


def scan_features(
    folder: str | Path,
    *,
    tokens: int = 131_072,
    device: str = "auto",
    split: str = "val",
    show_progress: bool = True,
) -> FeatureScan:
    """Scan `tokens` tokens of the val split and save the result in the SAE folder."""
    from safetensors.torch import save_file

    if tokens < 1:
        raise GptlabError(f"tokens must be >= 1, got {tokens}")
    sae, config, model, tokenizer = load_sae_and_model(folder, resolve_device(device))
    batch = 8
    loader = TokenLoader(
        sae_data(config, folder),
        split,
        batch,
        model.config.block_size,
        mode="sequential",
        seed=0,
        device=next(model.parameters()).device,
    )
    batches = max(
        1, min(loader.batches_per_epoch, math.ceil(tokens / (batch * model.config.block_size)))
    )
    kept = sae.k if sae.kind == "topk" else min(RELU_KEPT, sae.d_sae)
    windows, values, indices = [], [], []
    with torch.no_grad():
        for _ in tqdm(
            range(batches), desc="gptlab sae features", unit="batch", disable=not show_progress
        ):
            x, _ = loader.next_batch()
            f = sae.encode(activations_at(model, x, config["hook"]))
            top = f.topk(kept, dim=-1)
            windows.append(x.cpu().int())
            values.append(top.values.cpu())
            indices.append(top.indices.cpu().int())
    scan = {
        "tokens": torch.cat(windows),
        "values": torch.cat(values).contiguous(),
        "indices": torch.cat(indices).contiguous(),
    }
    meta = {
        "scan": json.dumps({"tokens": tokens, "split": split, "weights": _weights_stamp(folder)})
    }
    atomic_write(Path(folder) / SCAN_FILE, lambda tmp: save_file(scan, tmp, metadata=meta))
    return FeatureScan(
        sae, config, model, tokenizer, scan["tokens"].long(), scan["values"], scan["indices"].long()
    )


def load_or_scan(
    folder: str | Path,
    *,
    tokens: int = 131_072,
    device: str = "auto",
    split: str = "val",
    show_progress: bool = True,
) -> FeatureScan:
    """The saved scan if it was made with these settings from these weights, else a new one."""
    from safetensors import safe_open

    path = Path(folder) / SCAN_FILE
    wanted = {"tokens": tokens, "split": split, "weights": _weights_stamp(folder)}
    if path.is_file():
        try:
            with safe_open(path, "pt") as f:
                saved = json.loads((f.metadata() or {}).get("scan", "{}"))
                if saved == wanted:
                    sae, config, model, tokenizer = load_sae_and_model(
                        folder, resolve_device(device)
                    )
                    return FeatureScan(
                        sae,
                        config,
                        model,
                        tokenizer,
                        f.get_tensor("tokens").long(),
                        f.get_tensor("values"),
                        f.get_tensor("indices").long(),
                    )
        except Exception:  # a damaged cache is only a cache: scan again
            pass
    return scan_features(
        folder, tokens=tokens, device=device, split=split, show_progress=show_progress
    )


def _weights_stamp(folder: str | Path) -> str:
    stat = (Path(folder) / WEIGHTS_FILE).stat()
    return f"{stat.st_size}-{stat.st_mtime_ns}"


# -- the terminal ----------------------------------------------------------------------------------


def shown_text(token: str) -> str:
    return token.replace("\n", "⏎").replace("\t", "⇥")


def context_line(context: dict, color: bool) -> str:
    """The context on one line, the top token in [brackets]; with color, every token's background
    shaded by the feature's activation on it (ANSI 256 colours, white to orange)."""
    peak = max(max(context["acts"]), 1e-9)
    parts = []
    for i, (token, act) in enumerate(zip(context["tokens"], context["acts"], strict=True)):
        text = shown_text(token)
        if i == context["max_at"]:
            text = f"[{text}]"
        if color and act > 0:
            level = min(5, 1 + int(4 * act / peak))
            text = f"\x1b[48;5;{(231, 230, 223, 216, 215, 208)[level]}m\x1b[30m{text}\x1b[0m"
        parts.append(text)
    return "".join(parts)


def feature_report(
    scan: FeatureScan, *, features: list[int] | None, limit: int, top: int, color: bool = False
) -> str:
    densities = scan.densities()
    live = scan.live_features()
    chosen = features if features else live[:limit]
    lines = [
        f"SAE {scan.config.get('hook')}: {scan.sae.d_sae} features, {len(live)} active in "
        f"{scan.num_tokens:,} scanned tokens; showing {len(chosen)} "
        f"(--feature ID for others, --export FILE.html for all)"
    ]
    for feature in chosen:
        board = scan.dashboard(feature, top=top)
        lines += [
            "",
            f"feature {feature}: density {100 * densities[feature]:.3f}%, max activation "
            f"{board['max_act']:.2f}",
            "  promotes:   "
            + " ".join(f"{shown_text(t)!r}({v:+.2f})" for t, v in board["promoted"][:8]),
            "  suppresses: "
            + " ".join(f"{shown_text(t)!r}({v:+.2f})" for t, v in board["suppressed"][:8]),
        ]
        if not board["contexts"]:
            lines.append("  never active in the scanned tokens")
        for context in board["contexts"]:
            act = context["acts"][context["max_at"]]
            lines.append(f"  {act:7.2f}  {context_line(context, color)}")
    return "\n".join(lines)
