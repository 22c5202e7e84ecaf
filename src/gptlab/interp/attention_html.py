"""A self-contained HTML page to browse attention patterns: one file, no network, no CDN.

The page carries its data as inline JSON and its script and style inline, so it opens offline
from disk or an e-mail attachment. It shows a thumbnail grid of the layers x heads (all, or the
ones chosen; click one to select it), the selected head's full pattern, and the prompt's tokens: hovering a token (or a row
of the pattern) shades the tokens it attends to in the selected head. A link can open a given
view: attention.html#layer=1&head=2&query=5.
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from pathlib import Path

import torch

from gptlab.errors import GptlabError
from gptlab.fileio import atomic_write_text

STYLE = """
body { font-family: system-ui, sans-serif; margin: 1em; color: #222; }
h1 { font-size: 1.2em; }
#controls { margin: 0.5em 0; }
#thumbs { display: inline-grid; gap: 3px; margin: 0.5em 0; align-items: center; }
#thumbs .label { font-size: 0.75em; color: #666; text-align: center; }
#thumbs canvas { border: 2px solid transparent; cursor: pointer; image-rendering: pixelated; }
#thumbs canvas.selected { border-color: #e67e22; }
#main { display: flex; gap: 2em; align-items: flex-start; flex-wrap: wrap; }
#pattern { border: 1px solid #aaa; image-rendering: pixelated; }
#tokens { max-width: 40em; line-height: 2em; }
#tokens span { padding: 2px 1px; margin: 1px; border: 1px solid #ddd; border-radius: 3px;
               white-space: pre; cursor: default; }
#tokens span.query { outline: 2px solid #e67e22; }
#info { font-family: monospace; min-height: 1.5em; }
.axis { font-size: 0.8em; color: #666; }
"""

# Plain JavaScript, no libraries. DATA = {tokens: [...], layers: [...], heads: [...] (the model's
# indices of the layers and heads shown), patterns: [i][j][query] -> weights of keys 0..query (the
# causal part of each row) for layers[i], heads[j]}. `layer`/`head` below index those lists.
SCRIPT = """
const T = DATA.tokens.length;
let layer = 0, head = 0, query = null;

function weight(l, h, q, k) { return k <= q ? DATA.patterns[l][h][q][k] : 0; }
function color(w) {  // white -> blue, light enough at 1 for black text to stay readable
  return `rgb(${Math.round(255 - 200 * w)}, ${Math.round(255 - 140 * w)}, 255)`;
}
function drawPattern(canvas, l, h, scale) {
  canvas.width = T * scale; canvas.height = T * scale;
  const ctx = canvas.getContext('2d');
  for (let q = 0; q < T; q++) for (let k = 0; k < T; k++) {
    ctx.fillStyle = color(weight(l, h, q, k));
    ctx.fillRect(k * scale, q * scale, scale, scale);
  }
}
function label(text) {
  const d = document.createElement('div');
  d.className = 'label'; d.textContent = text;
  return d;
}
function buildThumbs() {  // a layer x head grid, with a header row of heads and a column of layers
  const box = document.getElementById('thumbs');
  box.style.gridTemplateColumns = `repeat(${DATA.heads.length + 1}, auto)`;
  box.appendChild(label(''));
  DATA.heads.forEach(h => box.appendChild(label(`H${h}`)));
  const scale = Math.max(1, Math.floor(48 / T));
  for (let l = 0; l < DATA.layers.length; l++) for (let h = 0; h < DATA.heads.length; h++) {
    if (h === 0) box.appendChild(label(`L${DATA.layers[l]}`));
    const c = document.createElement('canvas');
    c.title = name(l, h);
    c.dataset.layer = l; c.dataset.head = h;
    drawPattern(c, l, h, scale);
    c.onclick = () => select(l, h);
    box.appendChild(c);
  }
}
function buildTokens() {
  const box = document.getElementById('tokens');
  DATA.tokens.forEach((tok, i) => {
    const s = document.createElement('span');
    s.textContent = tok; s.dataset.pos = i;
    s.onmouseenter = () => { query = i; shadeTokens(); };
    box.appendChild(s);
  });
  box.onmouseleave = () => { query = null; shadeTokens(); };
}
function shadeTokens() {  // shades relative to the row's strongest weight, so faint rows still read
  const top = query === null ? 1 : Math.max(...DATA.patterns[layer][head][query]);
  document.querySelectorAll('#tokens span').forEach((s, k) => {
    s.classList.toggle('query', k === query);
    s.style.background = query === null ? '' : color(weight(layer, head, query, k) / top);
  });
  const info = document.getElementById('info');
  if (query === null) { info.textContent = 'hover a token to see what it attends to'; return; }
  const row = DATA.patterns[layer][head][query];
  const best = row.indexOf(Math.max(...row));
  info.textContent = `${name(layer, head)}: query ${query} ${JSON.stringify(DATA.tokens[query])} ` +
    `attends most to ${best} ${JSON.stringify(DATA.tokens[best])} (${row[best].toFixed(3)})`;
}
function name(l, h) { return `layer ${DATA.layers[l]}, head ${DATA.heads[h]}`; }
function select(l, h) {
  layer = l; head = h;
  document.getElementById('layer').value = l;
  document.getElementById('head').value = h;
  document.querySelectorAll('#thumbs canvas').forEach(c =>
    c.classList.toggle('selected', +c.dataset.layer === l && +c.dataset.head === h));
  drawPattern(document.getElementById('pattern'), l, h, Math.max(2, Math.floor(400 / T)));
  document.getElementById('title').textContent = name(l, h);
  shadeTokens();
}
function buildControls() {
  for (const [id, indices] of [['layer', DATA.layers], ['head', DATA.heads]]) {
    const sel = document.getElementById(id);
    indices.forEach((index, i) => sel.add(new Option(index, i)));
    sel.onchange = () => select(+document.getElementById('layer').value,
                                +document.getElementById('head').value);
  }
  document.getElementById('pattern').onmousemove = (e) => {
    const rect = e.target.getBoundingClientRect();
    query = Math.min(T - 1, Math.floor((e.clientY - rect.top) / rect.height * T));
    shadeTokens();
  };
}
// A link can open a given view: attention.html#layer=1&head=2&query=5
const start = new URLSearchParams(location.hash.slice(1));
const find = (indices, v) => Math.max(0, indices.indexOf(parseInt(v)));
buildControls(); buildThumbs(); buildTokens();
if (start.has('query')) query = Math.min(T - 1, Math.max(0, parseInt(start.get('query')) || 0));
select(find(DATA.layers, start.get('layer')), find(DATA.heads, start.get('head')));
"""

PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<style>{style}</style>
</head>
<body>
<h1>{title}</h1>
<div id="controls">layer <select id="layer"></select> head <select id="head"></select>
<span class="axis">(or click a thumbnail; rows are queries, columns are keys)</span></div>
<div id="thumbs"></div>
<div id="main">
<div><div id="title"></div><canvas id="pattern"></canvas></div>
<div><div id="tokens"></div><p id="info"></p></div>
</div>
<script>const DATA = {data};</script>
<script>{script}</script>
</body>
</html>
"""


# A page past this many attention weights gets slow to open (about 6 bytes of JSON each).
MAX_PAGE_WEIGHTS = 4_000_000


def page_weight_count(n_layers: int, n_heads: int, T: int) -> int:
    """How many attention weights the page stores (the causal half of each T x T pattern)."""
    return n_layers * n_heads * T * (T + 1) // 2


def check_page_size(n_layers: int, n_heads: int, T: int) -> None:
    count = page_weight_count(n_layers, n_heads, T)
    if count > MAX_PAGE_WEIGHTS:
        raise GptlabError(
            f"the HTML page would hold {count:,} attention weights ({n_layers} layers x {n_heads} "
            f"heads x {T} tokens), more than {MAX_PAGE_WEIGHTS:,}; show fewer layers or heads, "
            "or shorten the prompt"
        )


def attention_page_data(
    patterns: torch.Tensor,
    tokens: Sequence[str],
    layers: Sequence[int] | None = None,
    heads: Sequence[int] | None = None,
    decimals: int = 4,
) -> dict:
    """The page's data for the chosen layers and heads (all by default): each query row keeps
    only its causal part (keys 0..query), rounded."""
    n_layer, n_head, T, _ = patterns.shape
    layers = list(range(n_layer)) if layers is None else list(layers)
    heads = list(range(n_head)) if heads is None else list(heads)
    check_page_size(len(layers), len(heads), T)
    rows = patterns.float().cpu().tolist()
    return {
        "tokens": list(tokens),
        "layers": layers,
        "heads": heads,
        "patterns": [
            [
                [[round(w, decimals) for w in rows[layer][h][q][: q + 1]] for q in range(T)]
                for h in heads
            ]
            for layer in layers
        ],
    }


def attention_html(
    patterns: torch.Tensor,
    tokens: Sequence[str],
    title: str = "attention patterns",
    layers: Sequence[int] | None = None,
    heads: Sequence[int] | None = None,
) -> str:
    """The page as one string. patterns: (n_layer, n_head, T, T); tokens: T labels."""
    data = json.dumps(attention_page_data(patterns, tokens, layers, heads), separators=(",", ":"))
    # Inside <script>, a token like "</script>" or "<!--" would end or confuse the element;
    # the escape \u003c is the same "<" to JavaScript and cannot.
    data = data.replace("<", "\\u003c")
    return PAGE.format(title=html.escape(title), style=STYLE, data=data, script=SCRIPT)


def save_attention_html(
    path: str | Path,
    patterns: torch.Tensor,
    tokens: Sequence[str],
    title: str = "attention patterns",
    layers: Sequence[int] | None = None,
    heads: Sequence[int] | None = None,
) -> Path:
    path = Path(path)
    atomic_write_text(path, attention_html(patterns, tokens, title, layers, heads))
    return path
