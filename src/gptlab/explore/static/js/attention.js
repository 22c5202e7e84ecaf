// Attention: the layer x head grid of small patterns, the chosen head large with token-labelled
// axes and a legend, a toggle between "what this token attends to" and "who attends to this
// token", and the prompt's text shaded by the hovered token's attention.

import { api } from "./api.js";
import { el, hideTip, legend, probColour, showTip, visible } from "./draw.js";

function decodeBytes(base64) {
  const raw = atob(base64);
  const bytes = new Uint8Array(raw.length);
  for (let i = 0; i < raw.length; i++) bytes[i] = raw.charCodeAt(i);
  return bytes;
}

function rgbOf(p) {
  // probColour's hsl as rgb, for canvas pixels.
  const probe = document.createElement("canvas").getContext("2d");
  probe.fillStyle = probColour(p);
  const hex = probe.fillStyle;
  return [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16));
}
const PALETTE = Array.from({ length: 256 }, (_, i) => rgbOf(i / 255));

function drawThumbnail(canvas, bytes, offset, size) {
  const context = canvas.getContext("2d");
  const image = context.createImageData(size, size);
  for (let i = 0; i < size * size; i++) {
    const [r, g, b] = PALETTE[bytes[offset + i]];
    image.data.set([r, g, b, 255], i * 4);
  }
  const scratch = document.createElement("canvas");
  scratch.width = scratch.height = size;
  scratch.getContext("2d").putImageData(image, 0, 0);
  context.imageSmoothingEnabled = false;
  context.drawImage(scratch, 0, 0, canvas.width, canvas.height);
}

export function initAttention(panel, state) {
  panel.innerHTML = `
    <div class="view-intro">Where each head looks. Row <i>i</i> of a pattern is the attention of token <i>i</i>
    over the tokens before it (each row sums to 1). Click a small pattern, or pick a layer and head, to see it
    large; hover a token to shade the text by its attention.</div>
    <div class="controls">
      <label>layer <select id="att-layer"></select></label>
      <label>head <select id="att-head"></select></label>
      <label><input type="radio" name="att-dir" value="from" checked> what this token attends to</label>
      <label><input type="radio" name="att-dir" value="to"> who attends to this token</label>
    </div>
    <div class="attention-layout">
      <div><div class="caption">all heads (rows: layers, columns: heads)</div><div id="att-grid"></div></div>
      <div class="large-pattern"><div class="caption" id="att-title"></div><div id="att-large" class="scroll"></div><div id="att-legend"></div></div>
    </div>
    <div class="caption">the prompt, shaded by the hovered token's attention</div>
    <div id="att-text" class="shaded-text"></div>`;
  for (const id of ["att-layer", "att-head"]) {
    panel.querySelector(`#${id}`).addEventListener("change", () => state.refresh("attention"));
  }
  panel.querySelectorAll("input[name=att-dir]").forEach((r) => r.addEventListener("change", () => state.refresh("attention")));
}

function fillSelect(select, count) {
  if (select.options.length === count) return;
  const chosen = Math.min(Number(select.value) || 0, count - 1);
  select.replaceChildren(...Array.from({ length: count }, (_, i) => el("option", { value: i }, null, String(i))));
  select.value = chosen;
}

export async function renderAttention(panel, state) {
  const info = state.modelInfo();
  const layerSelect = panel.querySelector("#att-layer");
  const headSelect = panel.querySelector("#att-head");
  fillSelect(layerSelect, info.n_layer);
  fillSelect(headSelect, info.n_head);
  const layer = Number(layerSelect.value);
  const head = Number(headSelect.value);
  const answer = await api("attention", { model: state.model, prompt: state.prompt, layer, head });
  const direction = panel.querySelector("input[name=att-dir]:checked").value;
  drawGrid(panel, answer, state);
  drawLarge(panel, answer, direction);
  drawShadedText(panel, answer, direction);
}

function drawGrid(panel, answer, state) {
  const grid = panel.querySelector("#att-grid");
  grid.replaceChildren();
  const bytes = decodeBytes(answer.thumbnails);
  const size = answer.thumbnail_size;
  const n_layer = bytes.length / (size * size) / state.modelInfo().n_head;
  const n_head = state.modelInfo().n_head;
  const cell = Math.max(16, Math.min(56, Math.floor(420 / n_head)));  // the grid stays ~420 px wide
  const table = el("table", { class: "thumb-grid" }, grid);
  const header = el("tr", {}, table);
  el("th", {}, header, "");
  for (let h = 0; h < n_head; h++) el("th", {}, header, String(h));
  for (let l = 0; l < n_layer; l++) {
    const row = el("tr", {}, table);
    el("th", {}, row, String(l));
    for (let h = 0; h < n_head; h++) {
      const td = el("td", {}, row);
      const canvas = el("canvas", { width: cell, height: cell, class: "thumb" + (l === answer.layer && h === answer.head ? " selected" : ""), "data-layer": l, "data-head": h }, td);
      drawThumbnail(canvas, bytes, (l * n_head + h) * size * size, size);
      canvas.title = `layer ${l} head ${h}`;
      canvas.addEventListener("click", () => {
        panel.querySelector("#att-layer").value = l;
        panel.querySelector("#att-head").value = h;
        state.refresh("attention");
      });
    }
  }
}

function drawLarge(panel, answer, direction) {
  const tokens = answer.tokens.map((t) => visible(t.text));
  const T = tokens.length;
  const cell = Math.max(5, Math.min(26, Math.floor(520 / T)));
  const labelRoom = Math.min(110, 12 + 7 * Math.max(...tokens.map((t) => Math.min(t.length, 14))));
  const showLabels = cell >= 9;
  const axisRoom = 18;  // the rotated "query" title, left of the row labels
  const width = axisRoom + labelRoom + T * cell + 10;
  const height = labelRoom + T * cell + 34;
  panel.querySelector("#att-title").textContent = `layer ${answer.layer}, head ${answer.head}: ` +
    (direction === "from" ? "rows attend to columns (hover a row)" : "columns are attended by rows (hover a column)");
  const holder = panel.querySelector("#att-large");
  holder.replaceChildren();
  const canvas = el("canvas", { width, height, id: "att-canvas" }, holder);
  const context = canvas.getContext("2d");
  context.fillStyle = "#fff";
  context.fillRect(0, 0, width, height);
  context.translate(axisRoom, 0);
  for (let i = 0; i < T; i++) {
    for (let j = 0; j < T; j++) {
      context.fillStyle = j > i ? "#f3f3f3" : probColour(answer.pattern[i][j]);
      context.fillRect(labelRoom + j * cell, labelRoom + i * cell, cell - (cell > 8 ? 1 : 0), cell - (cell > 8 ? 1 : 0));
    }
  }
  context.fillStyle = "#222";
  context.font = `${Math.min(12, cell)}px sans-serif`;
  if (showLabels) {
    context.textAlign = "right";
    context.textBaseline = "middle";
    tokens.forEach((t, i) => context.fillText(t.slice(0, 14), labelRoom - 4, labelRoom + i * cell + cell / 2));
    tokens.forEach((t, j) => {
      context.save();
      context.translate(labelRoom + j * cell + cell / 2, labelRoom - 4);
      context.rotate(-Math.PI / 2);
      context.textAlign = "left";
      context.fillText(t.slice(0, 14), 0, 0);
      context.restore();
    });
  }
  context.font = "12px sans-serif";
  context.textAlign = "center";
  context.fillText("key: the token attended to", labelRoom + (T * cell) / 2, labelRoom + T * cell + 20);
  context.save();
  context.translate(12 - axisRoom, labelRoom + (T * cell) / 2);
  context.rotate(-Math.PI / 2);
  context.fillText("query: the token attending", 0, 0);
  context.restore();
  canvas.addEventListener("mousemove", (event) => {
    const box = canvas.getBoundingClientRect();
    const j = Math.floor((event.clientX - box.left - axisRoom - labelRoom) / cell);
    const i = Math.floor((event.clientY - box.top - labelRoom) / cell);
    if (i < 0 || j < 0 || i >= T || j >= T) return hideTip();
    showTip(event, [`query ${i} ${tokens[i]} -> key ${j} ${tokens[j]}`, `weight ${answer.pattern[i][j].toFixed(4)}`]);
    shadeText(panel, answer, direction, direction === "from" ? i : j);
  });
  canvas.addEventListener("mouseleave", hideTip);
  const legendHolder = panel.querySelector("#att-legend");
  legendHolder.replaceChildren();
  legend(legendHolder, { min: 0, max: 1, colour: probColour, label: "attention weight" });
}

function drawShadedText(panel, answer, direction) {
  const holder = panel.querySelector("#att-text");
  holder.replaceChildren();
  answer.tokens.forEach((token, position) => {
    const span = el("span", { class: "shade-token", "data-position": position }, holder, visible(token.text));
    span.addEventListener("mouseenter", () => shadeText(panel, answer, direction, position));
  });
  shadeText(panel, answer, direction, answer.tokens.length - 1);
}

function shadeText(panel, answer, direction, position) {
  const spans = panel.querySelectorAll("#att-text .shade-token");
  spans.forEach((span, j) => {
    const weight = direction === "from" ? answer.pattern[position][j] : answer.pattern[j][position];
    span.style.background = probColour(weight);
    span.style.color = weight > 0.55 ? "#fff" : "#111";
    span.classList.toggle("focus", j === position);
  });
}
