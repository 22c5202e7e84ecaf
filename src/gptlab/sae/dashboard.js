// One SAE feature's dashboard, drawn into a container from the JSON gptlab.sae.features makes:
// {id, density, max_act, contexts: [{tokens, acts, max_at}], histogram: {edges, counts},
//  promoted: [[token, value]], suppressed: [[token, value]]}.
// Used by the exported page (gptlab sae features --export) and the explorer's Features tab.
// Every piece of text goes in through textContent: a context holding markup stays text.

function gptlabShown(token) {
  return token.replace(/\n/g, "\u23ce").replace(/\t/g, "\u21e5");
}

function gptlabEl(tag, cls, text) {
  const el = document.createElement(tag);
  if (cls) el.className = cls;
  if (text !== undefined) el.textContent = text;
  return el;
}

// A token's background: transparent at 0, orange at the context's peak activation.
function gptlabShade(act, peak) {
  const a = peak > 0 ? Math.max(0, Math.min(1, act / peak)) : 0;
  return a > 0 ? `rgba(255, 140, 0, ${(0.12 + 0.88 * a).toFixed(3)})` : "transparent";
}

function gptlabHistogram(histogram) {
  const box = gptlabEl("div", "sae-hist");
  const counts = histogram.counts || [];
  const top = Math.max(1, ...counts);
  counts.forEach((count, i) => {
    const bar = gptlabEl("div", "sae-bar");
    bar.style.height = `${Math.round((100 * count) / top)}%`;
    bar.title = `${histogram.edges[i]} to ${histogram.edges[i + 1]}: ${count} tokens`;
    box.appendChild(bar);
  });
  const axis = gptlabEl("div", "sae-axis");
  if (counts.length) {
    axis.appendChild(gptlabEl("span", "", histogram.edges[0].toFixed(2)));
    axis.appendChild(gptlabEl("span", "", histogram.edges[histogram.edges.length - 1].toFixed(2)));
  }
  const wrap = gptlabEl("div");
  wrap.appendChild(box);
  wrap.appendChild(axis);
  return wrap;
}

function gptlabLogitTable(title, rows) {
  const table = gptlabEl("table", "sae-logits");
  const head = table.insertRow();
  head.appendChild(gptlabEl("th", "", title));
  head.appendChild(gptlabEl("th", "", "logit"));
  for (const [token, value] of rows) {
    const row = table.insertRow();
    row.appendChild(gptlabEl("td", "sae-token", JSON.stringify(gptlabShown(token))));
    row.appendChild(gptlabEl("td", "", (value >= 0 ? "+" : "") + value.toFixed(3)));
  }
  return table;
}

function gptlabContext(context) {
  const line = gptlabEl("div", "sae-context");
  const peak = Math.max(...context.acts, 1e-9);
  line.appendChild(gptlabEl("span", "sae-value", context.acts[context.max_at].toFixed(2)));
  context.tokens.forEach((token, i) => {
    const span = gptlabEl("span", i === context.max_at ? "sae-tok sae-max" : "sae-tok", gptlabShown(token));
    span.style.background = gptlabShade(context.acts[i], peak);
    span.title = `activation ${context.acts[i].toFixed(3)}`;
    line.appendChild(span);
  });
  return line;
}

function gptlabDashboard(container, board) {
  container.replaceChildren();
  container.appendChild(gptlabEl("h2", "", `feature ${board.id}`));
  container.appendChild(
    gptlabEl(
      "p",
      "sae-stats",
      `active on ${(100 * board.density).toFixed(3)}% of scanned tokens; max activation ${board.max_act.toFixed(2)}`
    )
  );
  const row = gptlabEl("div", "sae-row");
  const hist = gptlabEl("div", "sae-panel");
  hist.appendChild(gptlabEl("h3", "", "activations when active"));
  hist.appendChild(gptlabHistogram(board.histogram));
  row.appendChild(hist);
  const logits = gptlabEl("div", "sae-panel");
  logits.appendChild(gptlabEl("h3", "", "logit effect (decoder direction through ln_final and the unembedding)"));
  const tables = gptlabEl("div", "sae-row");
  tables.appendChild(gptlabLogitTable("promotes", board.promoted));
  tables.appendChild(gptlabLogitTable("suppresses", board.suppressed));
  logits.appendChild(tables);
  row.appendChild(logits);
  container.appendChild(row);
  container.appendChild(gptlabEl("h3", "", "top activations (the top token boxed; shading: activation on each token)"));
  if (!board.contexts.length) container.appendChild(gptlabEl("p", "", "never active in the scanned tokens"));
  for (const context of board.contexts) container.appendChild(gptlabContext(context));
}

const GPTLAB_DASHBOARD_CSS = `
.sae-row { display: flex; gap: 24px; flex-wrap: wrap; }
.sae-panel { min-width: 260px; }
.sae-hist { display: flex; align-items: flex-end; height: 90px; width: 260px; gap: 1px; border-bottom: 1px solid #888; }
.sae-bar { flex: 1; background: #4c72b0; min-height: 1px; }
.sae-axis { display: flex; justify-content: space-between; width: 260px; font-size: 11px; color: #555; }
.sae-logits { border-collapse: collapse; font-size: 13px; }
.sae-logits td, .sae-logits th { padding: 1px 8px; text-align: left; }
.sae-token { font-family: monospace; }
.sae-context { font-family: monospace; white-space: pre; margin: 2px 0; font-size: 14px; }
.sae-value { display: inline-block; width: 4.5em; color: #555; }
.sae-tok { border-radius: 2px; }
.sae-max { outline: 1.5px solid #c44e52; }
.sae-stats { color: #333; }
`;
