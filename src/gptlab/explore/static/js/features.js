// Features: a sparse autoencoder's features on the prompt (gptlab explore RUN --sae DIR).
// Each token lists the features active on it; clicking one opens its dashboard (top contexts,
// activation histogram, logit effect; drawn by the SAE package's dashboard.js, which the server
// serves, or an exported page carries) and what zeroing it at its hook does to the loss and the
// next token here. An exported page saves the dashboard and ablation of every feature listed.

import { api, exported } from "./api.js";
import { el, percent, visible } from "./draw.js";

let dashboardReady = null;

function loadDashboard() {
  // gptlabDashboard and its CSS come from the SAE package's dashboard.js: inlined in an exported
  // page, loaded from the live server on first use otherwise.
  if (!dashboardReady) {
    dashboardReady = (exported ? Promise.resolve() : new Promise((resolve, reject) => {
      const script = Object.assign(document.createElement("script"), { src: "api/sae/dashboard.js" });
      script.onload = resolve;
      script.onerror = () => reject(new Error("the feature dashboards need the server: run gptlab explore"));
      document.head.appendChild(script);
    })).then(() => {
      const style = document.createElement("style");
      style.textContent = GPTLAB_DASHBOARD_CSS;  // eslint-disable-line no-undef
      document.head.appendChild(style);
    });
  }
  return dashboardReady;
}

export function initFeatures(panel) {
  panel.innerHTML = `
    <div class="view-intro">A sparse autoencoder reads the model's activations at one hook point and writes
    each token's activation as a few active <em>features</em> out of thousands. Each token below lists the
    features active on it, largest first; click a feature for its dashboard: the text where it fires most
    (shading: its activation on each token), how strongly it fires, the tokens its direction pushes up and
    down, and what zeroing it does to this prompt.</div>
    <div id="sae-info" class="summary"></div>
    <div id="sae-tokens" class="scroll sae-token-grid"></div>
    <div id="sae-ablation" class="summary"></div>
    <div id="sae-board"></div>`;
}

export async function renderFeatures(panel, state) {
  const info = exported ? exported.sae : await (await fetch(`api/sae/info?model=${encodeURIComponent(state.model)}`)).json();
  const infoLine = panel.querySelector("#sae-info");
  const grid = panel.querySelector("#sae-tokens");
  grid.replaceChildren();
  if (!info.sae) {
    infoLine.textContent = `${state.model} has no SAE: ${exported ? "export" : "start"} the explorer with --sae DIR (gptlab sae train makes one)`;
    return;
  }
  infoLine.textContent = `${info.kind} SAE at ${info.hook}: ${info.features} features` + (info.kind === "topk" ? `, ${info.k} active per token` : "");
  const answer = await api("sae/fires", { model: state.model, prompt: state.prompt });
  const peak = Math.max(1e-9, ...answer.tokens.flatMap((t) => t.features.map((f) => f.act)));
  for (const token of answer.tokens) {
    const column = el("div", { class: "sae-column" }, grid);
    el("div", { class: "sae-column-token" }, column, visible(token.text));
    for (const feature of token.features) {
      const alpha = (0.15 + 0.85 * feature.act / peak).toFixed(3);
      const chip = el("button", { class: "sae-chip", style: `background: rgba(255, 140, 0, ${alpha})`, "data-feature": feature.id }, column,
        `${feature.id} ${feature.act.toFixed(1)}`);
      chip.addEventListener("click", () => showFeature(panel, state, feature.id).catch((error) => state.showError(error.message)));
    }
  }
}

async function showFeature(panel, state, id) {
  await loadDashboard();
  const [board, ablation] = await Promise.all([
    api("sae/feature", { model: state.model, feature: id }),
    api("sae/ablate", { model: state.model, prompt: state.prompt, feature: id }),
  ]);
  const summary = panel.querySelector("#sae-ablation");
  summary.replaceChildren();
  const loss = ablation.loss_clean === null ? "" :
    `loss on this prompt ${ablation.loss_clean.toFixed(4)} -> ${ablation.loss_ablated.toFixed(4)} with feature ${id} zeroed; `;
  el("div", {}, summary, `${loss}next token (KL ${ablation.kl.toFixed(5)}):`);
  const changes = ablation.next.slice(0, 6).map((n) => `${visible(n.token)} ${percent(n.clean)} -> ${percent(n.ablated)}`);
  el("div", { class: "sae-changes" }, summary, changes.join("   "));
  gptlabDashboard(panel.querySelector("#sae-board"), board);  // eslint-disable-line no-undef
  document.body.dataset.drawn = `features-board:${id}:${Date.now()}`;  // tests wait on this
}
