"""Weight-based circuits (Elhage et al. 2021, "A Mathematical Framework for Transformer Circuits").

With row vectors (x @ W), head h of a layer reads the residual stream through
W_Q, W_K, W_V (n_embd x head_dim) and writes through W_O (head_dim x n_embd):

    QK circuit   W_QK = W_Q W_K^T          (n_embd x n_embd): query x_q attends to key x_k by x_q W_QK x_k^T
    OV circuit   W_OV = W_V W_O            (n_embd x n_embd): what a key token makes the head write

Read against the token embedding W_E (vocab x n_embd) and the unembedding W_U (n_embd x vocab):

    OV token circuit  W_E W_OV W_U  (vocab x vocab): attending to token s raises the logit of t
    QK token circuit  W_E W_QK W_E^T (vocab x vocab): query token q attends to key token k

Every such matrix is a FactoredMatrix A @ B with a thin middle (head_dim), so nothing of size
vocab x vocab is ever built: rows are computed for the tokens asked about, eigenvalues come from the
small B @ A, and Frobenius norms from head_dim x head_dim Gram matrices.

Composition between a head h1 of an earlier layer and h2 of a later one is how much of h2's input
circuit reads what h1 writes, the score ||L R||_F / (||L||_F ||R||_F) with L = W_OV^{h1} and
R = W_QK^{h2} (Q-composition), (W_QK^{h2})^T (K-composition) or W_OV^{h2} (V-composition).

LayerNorm: the norms' gains are folded into the matrices that read from them (ln_1's into W_Q, W_K,
W_V; ln_f's into W_U); centring, the normalising scale and all biases are left out, as in the paper
and TransformerLens' defaults. Grouped-query models are read with each query head's shared key and
value head. Only learned-position pre-LayerNorm models with a separate W_Q/W_K per head qualify;
rotary positions rotate queries and keys by position, so no fixed W_QK exists.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from gptlab.errors import GptlabError
from gptlab.interp.tokens import token_label
from gptlab.plotting import heatmap, heatmap_panels
from gptlab.tables import format_table, quoted
from gptlab.tokenizers.base import Tokenizer


@dataclass
class FactoredMatrix:
    """The matrix A @ B, kept as its factors: A (m x d), B (d x n), d small."""

    A: torch.Tensor
    B: torch.Tensor

    @property
    def shape(self) -> tuple[int, int]:
        return self.A.shape[0], self.B.shape[1]

    @property
    def T(self) -> FactoredMatrix:
        return FactoredMatrix(self.B.T, self.A.T)

    def rows(self, ids) -> torch.Tensor:
        """The full rows `ids` of A @ B: (len(ids), n)."""
        return self.A[ids] @ self.B

    def dense(self) -> torch.Tensor:
        return self.A @ self.B

    def __matmul__(self, other: FactoredMatrix) -> FactoredMatrix:
        """(A1 B1)(A2 B2) = A1 (B1 A2 B2), keeping A1's thin side."""
        return FactoredMatrix(self.A, self.B @ other.A @ other.B)

    def norm(self) -> torch.Tensor:
        """Frobenius norm ||A B||_F = sqrt(trace((A^T A)(B B^T))), from d x d matrices only."""
        return torch.sqrt(
            torch.clamp(torch.trace((self.A.T @ self.A) @ (self.B @ self.B.T)), min=0)
        )

    def eigenvalues(self) -> torch.Tensor:
        """The nonzero eigenvalues of A @ B (square), i.e. those of the small B @ A (complex)."""
        return torch.linalg.eigvals(self.B @ self.A)


def check_circuit_model(model) -> None:
    config = model.config
    if config.pos == "rope" or config.norm_placement != "pre":
        raise GptlabError(
            "weight-based circuits need a pre-norm model without rotary positions (this one has "
            f"pos={config.pos}, norm_placement={config.norm_placement}): rotary positions turn "
            "W_Q W_K^T into a different matrix at every distance"
        )
    if config.stream_extras():
        raise GptlabError(
            "weight-based circuits read tokens through wte and values through W_V alone, which "
            f"this model's {', '.join(config.stream_extras())} "
            "changes; they are defined only for models without them"
        )


def head_weights(model, layer: int, head: int) -> dict[str, torch.Tensor]:
    """W_Q, W_K, W_V (n_embd x head_dim) with ln_1's gain folded in, and W_O (head_dim x n_embd)."""
    check_circuit_model(model)
    config = model.config
    C, D = config.n_embd, config.head_dim
    kv_head = head // (config.n_head // config.kv_heads)  # the key/value head this query head uses
    block = model.blocks[layer]
    weight = block.attn.c_attn.weight.detach().double()  # (C + 2 kv_dim, C): q, k, v = x @ weight^T
    kv_dim = config.kv_heads * D
    gain = block.ln_1.weight.detach().double() if block.ln_1.weight is not None else 1.0
    q = weight[head * D : (head + 1) * D].T
    k = weight[C + kv_head * D : C + (kv_head + 1) * D].T
    v = weight[C + kv_dim + kv_head * D : C + kv_dim + (kv_head + 1) * D].T
    gain = gain[:, None] if isinstance(gain, torch.Tensor) else gain
    w_o = block.attn.c_proj.weight.detach().double()[:, head * D : (head + 1) * D].T  # (D, C)
    return {"W_Q": gain * q, "W_K": gain * k, "W_V": gain * v, "W_O": w_o}


def check_qk_circuit_model(model) -> None:
    """QK circuits read attention scores as the bilinear form x W_Q W_K^T y; a model that
    normalises each head's queries and keys (qk_norm) scores norm(x W_Q) . norm(y W_K), which no
    single matrix gives (OV circuits are unaffected)."""
    if model.config.qk_norm:
        raise GptlabError(
            "this model normalises queries and keys (qk_norm=true), so its attention scores are "
            "not x W_Q W_K^T y and QK circuits and Q/K composition would ignore that "
            "normalisation; they are defined only for models without qk_norm"
        )


def qk_circuit(model, layer: int, head: int) -> FactoredMatrix:
    """W_QK = W_Q W_K^T (n_embd x n_embd), factored."""
    check_qk_circuit_model(model)
    w = head_weights(model, layer, head)
    return FactoredMatrix(w["W_Q"], w["W_K"].T)


def ov_circuit(model, layer: int, head: int) -> FactoredMatrix:
    """W_OV = W_V W_O (n_embd x n_embd), factored."""
    w = head_weights(model, layer, head)
    return FactoredMatrix(w["W_V"], w["W_O"])


def embedding(model) -> torch.Tensor:
    return model.wte.weight.detach().double()[: model.config.vocab_size]  # (V, C)


def unembedding(model) -> torch.Tensor:
    """W_U (C, V) with ln_f's gain folded in."""
    w_u = model.lm_head.weight.detach().double()[: model.config.vocab_size].T
    gain = model.ln_f.weight
    return w_u * gain.detach().double()[:, None] if gain is not None else w_u


def ov_token_circuit(model, layer: int, head: int) -> FactoredMatrix:
    """W_E W_OV W_U (vocab x vocab): row s = the logits a head adds when it attends to token s."""
    ov = ov_circuit(model, layer, head)
    return FactoredMatrix(embedding(model) @ ov.A, ov.B @ unembedding(model))


def qk_token_circuit(model, layer: int, head: int) -> FactoredMatrix:
    """W_E W_QK W_E^T (vocab x vocab): row q = the attention score of query token q to each key."""
    qk = qk_circuit(model, layer, head)
    w_e = embedding(model)
    return FactoredMatrix(w_e @ qk.A, qk.B @ w_e.T)


def positional_qk_circuit(model, layer: int, head: int, length: int) -> torch.Tensor:
    """W_pos W_QK W_pos^T for the first `length` positions (query x key); learned positions only.

    A previous-token head shows a bright diagonal just below the main one."""
    if model.wpe is None:
        raise GptlabError("the positional QK circuit needs learned positions (model.pos=learned)")
    w_pos = model.wpe.weight.detach().double()[:length]
    qk = qk_circuit(model, layer, head)
    return (w_pos @ qk.A) @ (qk.B @ w_pos.T)


def copying_score(circuit: FactoredMatrix) -> float:
    """sum(eigenvalues) / sum(|eigenvalues|) of a square circuit: near 1 when it copies (maps a
    token to itself, positive eigenvalues), near -1 when it suppresses it (Elhage et al. 2021)."""
    eig = circuit.eigenvalues()
    total = eig.abs().sum()
    return float(eig.sum().real / total) if total > 0 else 0.0


@dataclass
class TokenMap:
    """For each source token, the tokens a circuit scores highest (OV: raises; QK: attends to)."""

    kind: str
    layer: int
    head: int
    sources: list[int]
    top_ids: list[list[int]]
    top_values: list[list[float]]
    copying_score: float

    def to_dict(self, tokenizer: Tokenizer) -> dict:
        return {
            "kind": self.kind,
            "layer": self.layer,
            "head": self.head,
            "copying_score": self.copying_score,
            "rows": [
                {
                    "token": token_label(tokenizer, s),
                    "id": s,
                    "top": [
                        {"token": token_label(tokenizer, t), "id": t, "value": v}
                        for t, v in zip(ids, values, strict=True)
                    ],
                }
                for s, ids, values in zip(self.sources, self.top_ids, self.top_values, strict=True)
            ],
        }


def top_tokens(model, layer: int, head: int, kind: str, sources: list[int], k: int) -> TokenMap:
    """kind "ov": the top-k tokens each source token's OV circuit raises; "qk": the top-k key
    tokens each source token (as a query) attends to."""
    circuit = (
        ov_token_circuit(model, layer, head)
        if kind == "ov"
        else qk_token_circuit(model, layer, head)
    )
    values, ids = circuit.rows(sources).topk(min(k, circuit.shape[1]), dim=-1)
    return TokenMap(
        kind=kind,
        layer=layer,
        head=head,
        sources=list(sources),
        top_ids=ids.tolist(),
        top_values=values.tolist(),
        copying_score=copying_score(circuit),
    )


def token_map_table(result: TokenMap, tokenizer: Tokenizer) -> str:
    verb = "raises the logits of" if result.kind == "ov" else "attends most to (as key)"
    rows = [
        [
            quoted(token_label(tokenizer, s)),
            ", ".join(quoted(token_label(tokenizer, t)) for t in ids),
        ]
        for s, ids in zip(result.sources, result.top_ids, strict=True)
    ]
    return (
        f"L{result.layer}H{result.head} {result.kind.upper()} circuit (copying score "
        f"{result.copying_score:+.3f}); each token {verb}:\n"
        + format_table(["token", "top tokens"], rows)
    )


COMPOSITION_KINDS = ("Q", "K", "V")


def composition_scores(model) -> dict[str, torch.Tensor]:
    """{"Q" | "K" | "V": (n_layer, n_head, n_layer, n_head)} score of earlier head (l1, h1)
    composing with later head (l2, h2); NaN where l1 >= l2 (no composition possible)."""
    check_qk_circuit_model(model)
    n_layer, n_head = model.config.n_layer, model.config.n_head
    ov = [[ov_circuit(model, lay, h) for h in range(n_head)] for lay in range(n_layer)]
    qk = [[qk_circuit(model, lay, h) for h in range(n_head)] for lay in range(n_layer)]
    scores = {kind: torch.full((n_layer, n_head, n_layer, n_head), float("nan")) for kind in "QKV"}
    for l1 in range(n_layer):
        for h1 in range(n_head):
            left = ov[l1][h1]
            left_norm = left.norm()
            for l2 in range(l1 + 1, n_layer):
                for h2 in range(n_head):
                    rights = {"Q": qk[l2][h2], "K": qk[l2][h2].T, "V": ov[l2][h2]}
                    for kind, right in rights.items():
                        score = (left @ right).norm() / (left_norm * right.norm())
                        scores[kind][l1, h1, l2, h2] = float(score)
    return scores


def composition_table(scores: dict[str, torch.Tensor], top_k: int) -> str:
    """The top_k (earlier head -> later head) pairs of each composition kind."""
    lines = []
    for kind, values in scores.items():
        flat = values.nan_to_num(nan=float("-inf")).flatten()
        n_layer, n_head = values.shape[:2]
        rows = []
        for index in flat.argsort(descending=True)[:top_k]:
            if not torch.isfinite(flat[index]):
                break
            l1, h1, l2, h2 = torch.unravel_index(index, values.shape)
            rows.append([f"L{int(l1)}H{int(h1)}", f"L{int(l2)}H{int(h2)}", float(flat[index])])
        lines += [
            f"{kind}-composition, strongest first:",
            format_table(["from", "into", "score"], rows),
            "",
        ]
    return "\n".join(lines).rstrip()


def save_composition_heatmaps(path: str | Path, scores: dict[str, torch.Tensor]) -> Path:
    """One PNG: Q, K and V composition, rows the heads that write (layers 0..L-2), columns the
    heads that read (layers 1..L-1); cells with no composition (same or earlier layer) blank."""
    n_layer, n_head = next(iter(scores.values())).shape[:2]
    if n_layer < 2:
        raise GptlabError("composition needs at least 2 layers: heads compose across layers")
    flat = {
        f"{kind}-composition": values[:-1, :, 1:].reshape((n_layer - 1) * n_head, -1).numpy()
        for kind, values in scores.items()
    }
    writers = [f"L{lay}H{h}" for lay in range(n_layer - 1) for h in range(n_head)]
    readers = [f"L{lay}H{h}" for lay in range(1, n_layer) for h in range(n_head)]
    return heatmap_panels(
        path,
        flat,
        title="composition scores (row: earlier head writing, column: later head reading)",
        xlabel="later head",
        ylabel="earlier head",
        colorbar_label="||L R||_F / (||L||_F ||R||_F)",
        tick_labels=(readers, writers),
    )


SOURCE_TOKENS = 20  # default rows of the token pictures: readable, and spread over the vocabulary


def source_tokens(model, tokenizer: Tokenizer, text: str | None) -> list[int]:
    """The distinct tokens of `text`, or SOURCE_TOKENS ids spread evenly over the vocabulary."""
    if text is not None:
        ids = list(dict.fromkeys(tokenizer.encode(text)))
        if not ids:
            raise GptlabError("the source tokens' text is empty; give some text, e.g. 'abc'")
        if max(ids) >= model.config.vocab_size:
            raise GptlabError("the source tokens hold ids beyond the model's vocabulary")
        return ids
    vocab = model.config.vocab_size
    spread = torch.linspace(0, vocab - 1, min(SOURCE_TOKENS, vocab)).round().long().tolist()
    return [i for i in dict.fromkeys(spread) if i != tokenizer.eot_id]


def circuit_files(
    directory: str | Path, model, tokenizer: Tokenizer, layer: int, head: int, sources, positions
) -> list[Path]:
    """ov.png and qk.png (source tokens x the same tokens), and positional_qk.png with learned
    positions (the first `positions` positions, future keys blank)."""
    directory = Path(directory)
    labels = [token_label(tokenizer, s) for s in sources]
    files = []
    for kind, circuit, ylabel, xlabel, what in (
        ("ov", ov_token_circuit(model, layer, head), "attended token", "output token", "logit"),
        ("qk", qk_token_circuit(model, layer, head), "query token", "key token", "score"),
    ):
        values = circuit.rows(sources)[:, sources]
        files.append(
            heatmap(
                directory / f"{kind}.png",
                values.numpy(),
                title=f"L{layer}H{head} {kind.upper()} circuit "
                f"(copying score {copying_score(circuit):+.2f})",
                xlabel=xlabel,
                ylabel=ylabel,
                x_labels=labels,
                y_labels=labels,
                colorbar_label=what,
                diverging=True,
            )
        )
    if model.wpe is not None:
        length = min(positions, model.config.block_size)
        scores = positional_qk_circuit(model, layer, head, length)
        scores = scores.masked_fill(
            torch.ones(length, length, dtype=torch.bool).triu(1), float("nan")
        )
        ticks = [str(i) for i in range(length)]
        files.append(
            heatmap(
                directory / "positional_qk.png",
                scores.numpy(),
                title=f"L{layer}H{head} positional QK circuit",
                xlabel="key position",
                ylabel="query position",
                x_labels=ticks,
                y_labels=ticks,
                colorbar_label="attention score",
                diverging=True,
            )
        )
    return files
