// Attribution: how much each head and MLP writes directly toward the target token's logit
// (or the logit difference target - contrast), as a layer x component heat grid.

import { api, exported } from "./api.js";
import { el, hoverTip, legend, signedColour, textOn, visible } from "./draw.js";

export function initAttribution(panel, state) {
  panel.innerHTML = `
    <div class="view-intro">Which components push the prediction. The final residual stream is a sum of what
    every head, MLP and embedding wrote; with the final LayerNorm's scale frozen, the target's logit splits
    into one term per component (the same split as <code>gptlab inspect attribute</code>). Red pushes the target
    up, blue down. Give a second token to split the logit <i>difference</i>.</div>
    <div class="controls">
      <label>target <input id="attr-target" placeholder="top prediction" size="12"></label>
      <label>minus <input id="attr-contrast" placeholder="(optional)" size="12"></label>
      <button id="attr-go">attribute</button>
    </div>
    <div id="attr-headline" class="summary"></div>
    <div id="attr-grid" class="scroll"></div><div id="attr-legend"></div>`;
  panel.querySelector("#attr-go").addEventListener("click", () => state.refresh("attribution"));
  if (exported) for (const id of ["attr-target", "attr-contrast", "attr-go"]) panel.querySelector(`#${id}`).disabled = true;
}

export async function renderAttribution(panel, state) {
  const target = panel.querySelector("#attr-target").value;
  const contrast = panel.querySelector("#attr-contrast").value;
  const body = { model: state.model, prompt: state.prompt, target: target || null, contrast: contrast || null };
  const answer = await api("attribution", body);
  const what = answer.contrast
    ? `logit(${visible(answer.target.text)}) - logit(${visible(answer.contrast.text)})`
    : `logit of ${visible(answer.target.text)}`;
  panel.querySelector("#attr-headline").textContent =
    `${what} at position ${answer.position}: ${answer.logit.toFixed(3)} = sum of the terms ${answer.sum_of_terms.toFixed(3)}; ` +
    `embeddings ${(answer.embed + answer.pos_embed).toFixed(3)}, final LayerNorm bias ${answer.ln_final_bias.toFixed(3)}`;
  const n_head = answer.heads[0].length;
  const values = answer.heads.flat().concat(answer.mlp, answer.attn_bias);
  const scale = Math.max(...values.map(Math.abs), 1e-9);
  const holder = panel.querySelector("#attr-grid");
  holder.replaceChildren();
  const table = el("table", { class: "heat" }, holder);
  const header = el("tr", {}, table);
  el("th", {}, header, "layer");
  for (let h = 0; h < n_head; h++) el("th", {}, header, `H${h}`);
  el("th", {}, header, "attn bias");
  el("th", {}, header, "MLP");
  answer.heads.forEach((row, layer) => {
    const tr = el("tr", {}, table);
    el("th", {}, tr, String(layer));
    const cells = [...row.map((v, h) => [`L${layer}H${h}`, v]), [`L${layer} attn bias`, answer.attn_bias[layer]], [`L${layer} MLP`, answer.mlp[layer]]];
    for (const [name, value] of cells) {
      const background = signedColour(value, scale);
      const td = el("td", { style: `background:${background};color:${textOn(background)}` }, tr, value.toFixed(2));
      hoverTip(td, [`${name}: ${value.toFixed(4)}`, value >= 0 ? "pushes toward the target" : "pushes away from the target"]);
    }
  });
  const legendHolder = panel.querySelector("#attr-legend");
  legendHolder.replaceChildren();
  const rounded = Number(scale.toPrecision(2));
  legend(legendHolder, { min: -rounded, max: rounded, colour: (v) => signedColour(v, rounded), label: "direct contribution to the logit" });
}
