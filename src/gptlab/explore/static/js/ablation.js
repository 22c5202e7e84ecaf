// Ablation: click a head (or a layer's MLP) to knock it out, zero or mean, and see the
// next-token distribution and the target's probability beside the intact model's.

import { api, exported } from "./api.js";
import { barChart, el, percent, signedColour, textOn, visible } from "./draw.js";

export function initAblation(panel, state) {
  panel.innerHTML = `
    <div class="view-intro">What a component is needed for. Click a head or an MLP: its output is replaced by
    zero, or by its mean over this prompt's positions (it still writes its average, but nothing about this
    input), and the model runs again. Clicked cells keep the change they made to the target's probability.</div>
    <div class="controls">
      <label><input type="radio" name="abl-mode" value="zero" checked> zero</label>
      <label><input type="radio" name="abl-mode" value="mean"> mean</label>
      <label>target <input id="abl-target" placeholder="top prediction" size="12"></label>
    </div>
    <div class="ablation-layout">
      <div><div class="caption">click to ablate (cell: change in the target's probability, in percentage points)</div><div id="abl-grid"></div></div>
      <div><div id="abl-summary" class="summary">no component ablated yet</div>
        <div class="side-by-side"><div><h4>intact</h4><div id="abl-intact"></div></div>
        <div><h4 id="abl-title">ablated</h4><div id="abl-ablated"></div></div></div></div>
    </div>`;
  if (exported) panel.querySelector("#abl-target").disabled = true;  // saved for the top prediction only
  panel.ablationEffects = new Map();
  panel.querySelectorAll("input[name=abl-mode]").forEach((r) => r.addEventListener("change", () => {
    panel.ablationEffects.clear();
    state.refresh("ablation");
  }));
  panel.querySelector("#abl-target").addEventListener("change", () => {
    panel.ablationEffects.clear();
    state.refresh("ablation");
  });
}

export async function renderAblation(panel, state) {
  const key = `${state.model}\n${state.prompt}`;
  if (panel.ablationKey !== key) {
    panel.ablationEffects.clear();
    panel.ablationKey = key;
    panel.chosen = null;
  }
  drawAblationGrid(panel, state);
  if (panel.chosen) await ablate(panel, state, panel.chosen);
}

function drawAblationGrid(panel, state) {
  const { n_layer, n_head } = state.modelInfo();
  const holder = panel.querySelector("#abl-grid");
  holder.replaceChildren();
  const table = el("table", { class: "heat clickable-grid" }, holder);
  const header = el("tr", {}, table);
  el("th", {}, header, "layer");
  for (let h = 0; h < n_head; h++) el("th", {}, header, `H${h}`);
  el("th", {}, header, "MLP");
  for (let layer = 0; layer < n_layer; layer++) {
    const tr = el("tr", {}, table);
    el("th", {}, tr, String(layer));
    for (let h = 0; h <= n_head; h++) {
      const component = h < n_head ? { component: "head", layer, head: h } : { component: "mlp", layer, head: null };
      const id = `${component.component}-${layer}-${component.head ?? "mlp"}`;
      const effect = panel.ablationEffects.get(id);
      const td = el("td", { "data-component": id, class: panel.chosen && idOf(panel.chosen) === id ? "selected" : "" }, tr,
        effect === undefined ? "" : (effect >= 0 ? "+" : "") + (100 * effect).toFixed(1));
      if (effect !== undefined) {
        const background = signedColour(effect, 0.2);
        td.style.background = background;
        td.style.color = textOn(background);
      }
      td.addEventListener("click", async () => {
        panel.chosen = component;
        try {
          await ablate(panel, state, component);
        } catch (error) {
          state.showError(error.message);
        }
        drawAblationGrid(panel, state);
      });
    }
  }
}

function idOf(component) {
  return `${component.component}-${component.layer}-${component.head ?? "mlp"}`;
}

async function ablate(panel, state, component) {
  const mode = panel.querySelector("input[name=abl-mode]:checked").value;
  const target = panel.querySelector("#abl-target").value || null;
  const answer = await api("ablation", { model: state.model, prompt: state.prompt, ...component, mode, target });
  panel.ablationEffects.set(idOf(component), answer.target_ablated_prob - answer.target_intact_prob);
  const name = answer.component === "head" ? `layer ${answer.layer} head ${answer.head}` : `layer ${answer.layer} MLP`;
  panel.querySelector("#abl-title").textContent = `${name} ${answer.mode}-ablated`;
  panel.querySelector("#abl-summary").textContent =
    `p(${visible(answer.target.text)}): ${percent(answer.target_intact_prob)} intact -> ${percent(answer.target_ablated_prob)} ` +
    `with ${name} ${answer.mode}-ablated; KL(intact || ablated) = ${answer.kl_divergence.toFixed(4)} nats`;
  const max = Math.max(...answer.intact.concat(answer.ablated).map((r) => Math.max(r.intact_prob, r.ablated_prob)), 1e-9);
  for (const [id, rows, main, other] of [["abl-intact", answer.intact, "intact_prob", "ablated_prob"], ["abl-ablated", answer.ablated, "ablated_prob", "intact_prob"]]) {
    const holder = panel.querySelector(`#${id}`);
    holder.replaceChildren();
    barChart(holder, rows.map((r) => ({ label: visible(r.text), value: r[main], second: r[other],
      title: [`${JSON.stringify(r.text)}`, `intact ${percent(r.intact_prob)}`, `ablated ${percent(r.ablated_prob)}`] })),
    { max, valueLabel: main === "intact_prob" ? "intact" : "ablated", secondLabel: main === "intact_prob" ? "ablated" : "intact", width: 440 });
  }
}
