"""A self-contained HTML page of every live feature's dashboard: open it from disk, offline.

The dashboards travel as one JSON document inside <script type="application/json">, escaped by
gptlab.html_pages: no text in a context (a `</script>` in the training data, say) can close the
tag or open another, and the page's script reads the data with JSON.parse and puts every piece
of text in with textContent (dashboard.js), never as markup. The template's slots are filled in
one pass, so a slot's name inside a filled value (a model folder named `__DATA__`) stays text.
"""

from __future__ import annotations

import html
import re
from importlib import resources
from pathlib import Path

from tqdm.auto import tqdm

from gptlab.fileio import atomic_write_text
from gptlab.html_pages import inline_script, script_json
from gptlab.sae.features import FeatureScan

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>gptlab SAE features: __TITLE__</title>
<style>
body { font-family: system-ui, sans-serif; margin: 0; display: flex; height: 100vh; }
#list { width: 260px; overflow-y: auto; border-right: 1px solid #ccc; padding: 8px; flex: none; }
#list input, #list select { width: 100%; margin-bottom: 6px; box-sizing: border-box; }
.item { cursor: pointer; padding: 2px 4px; font-size: 13px; font-family: monospace; }
.item:hover, .item.chosen { background: #e8eef8; }
#board { flex: 1; overflow-y: auto; padding: 8px 20px; }
__CSS__
</style>
</head>
<body>
<div id="list">
  <div><b>__TITLE__</b></div>
  <input id="find" type="search" placeholder="feature id or text in its top context">
  <select id="order"><option value="id">by id</option><option value="density">by density</option></select>
  <div id="items"></div>
</div>
<div id="board"></div>
<script type="application/json" id="data">__DATA__</script>
<script>
__JS__
const DATA = JSON.parse(document.getElementById("data").textContent);
const styles = document.createElement("style");
styles.textContent = GPTLAB_DASHBOARD_CSS;
document.head.appendChild(styles);
function drawList() {
  const query = document.getElementById("find").value.trim().toLowerCase();
  const byDensity = document.getElementById("order").value === "density";
  const boards = DATA.features.filter((b) => {
    if (!query) return true;
    if (String(b.id) === query) return true;
    return b.contexts.some((c) => c.tokens[c.max_at].toLowerCase() === query || c.tokens.join("").toLowerCase().includes(query));
  });
  if (byDensity) boards.sort((a, b) => b.density - a.density);
  const items = document.getElementById("items");
  items.replaceChildren();
  for (const board of boards.slice(0, 3000)) {
    const item = gptlabEl("div", "item", `${String(board.id).padStart(5)}  ${(100 * board.density).toFixed(2)}%`);
    item.dataset.id = board.id;
    item.onclick = () => show(board.id);
    items.appendChild(item);
  }
}
function show(id) {
  const board = DATA.features.find((b) => b.id === id);
  for (const el of document.querySelectorAll(".item")) el.classList.toggle("chosen", Number(el.dataset.id) === id);
  gptlabDashboard(document.getElementById("board"), board);
}
document.getElementById("find").oninput = drawList;
document.getElementById("order").onchange = drawList;
drawList();
if (DATA.features.length) show(DATA.features[0].id);
</script>
</body>
</html>
"""


def dashboard_script() -> str:
    return (resources.files("gptlab.sae") / "dashboard.js").read_text(encoding="utf-8")


def write_page(
    scan: FeatureScan, out: str | Path, top: int = 10, show_progress: bool = True
) -> Path:
    features = [
        scan.dashboard(feature, top=top)
        for feature in tqdm(
            scan.live_features(), desc="dashboards", unit="feature", disable=not show_progress
        )
    ]
    title = f"{scan.config['hook']} of {scan.config['model']}, {scan.sae.d_sae} features"
    data = {"title": title, "scanned_tokens": scan.num_tokens, "features": features}
    slots = {
        "CSS": "",
        "JS": inline_script(dashboard_script()),
        "TITLE": html.escape(title),
        "DATA": script_json(data),
    }
    page = re.sub(r"__(CSS|JS|TITLE|DATA)__", lambda match: slots[match.group(1)], PAGE)
    atomic_write_text(out, page)
    return Path(out)
