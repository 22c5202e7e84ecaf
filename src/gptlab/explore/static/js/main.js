// The page: the model menu, the shared prompt, the tabs, the error line; each view draws itself.

import { exported, listModels } from "./api.js";
import { initAblation, renderAblation } from "./ablation.js";
import { initAttention, renderAttention } from "./attention.js";
import { initAttribution, renderAttribution } from "./attribution.js";
import { initFeatures, renderFeatures } from "./features.js";
import { initLens, renderLens } from "./lens.js";
import { initNextToken, renderNextToken } from "./next_token.js";
import { initRun, renderRun } from "./run.js";
import { initTokenLoss, renderTokenLoss } from "./token_loss.js";

const VIEWS = [
  { id: "next", title: "Next token", init: initNextToken, render: renderNextToken, needsModel: true },
  { id: "attention", title: "Attention", init: initAttention, render: renderAttention, needsModel: true },
  { id: "lens", title: "Logit lens", init: initLens, render: renderLens, needsModel: true },
  { id: "loss", title: "Token loss", init: initTokenLoss, render: renderTokenLoss, needsModel: true },
  { id: "attribution", title: "Attribution", init: initAttribution, render: renderAttribution, needsModel: true },
  { id: "ablation", title: "Ablation", init: initAblation, render: renderAblation, needsModel: true },
  { id: "features", title: "Features", init: initFeatures, render: renderFeatures, needsModel: true },
  { id: "run", title: "Training run", init: initRun, render: renderRun, needsModel: false },
];

async function start() {
  const models = await listModels();
  const promptBox = document.querySelector("#prompt");
  const modelSelect = document.querySelector("#model");
  const errorLine = document.querySelector("#error");
  const tabs = document.querySelector("#tabs");
  const panels = document.querySelector("#panels");
  let active = null;
  let drawing = Promise.resolve();

  const state = {
    model: models[0].name,
    prompt: exported ? exported.prompt : promptBox.value,
    modelInfo: () => models.find((m) => m.name === state.model),
    activeView: () => active,
    showError(message) {
      errorLine.textContent = message;
      errorLine.hidden = false;
    },
    setPrompt(text) {
      promptBox.value = text;
      state.prompt = text;
      state.refresh(active);
    },
    refresh(viewId) {
      if (viewId !== active) return drawing;
      const view = VIEWS.find((v) => v.id === viewId);
      const panel = document.querySelector(`#panel-${viewId}`);
      drawing = drawing.then(async () => {
        errorLine.hidden = true;
        if (view.needsModel && !state.modelInfo().has_model) {
          state.showError(`${state.model} is a training run with no checkpoint yet: only its curves are served`);
          return;
        }
        panel.classList.add("busy");
        try {
          await view.render(panel, state);
          document.body.dataset.drawn = `${viewId}:${Date.now()}`;  // tests wait on this
        } catch (error) {
          state.showError(error.message);
        } finally {
          panel.classList.remove("busy");
        }
      });
      return drawing;
    },
  };
  window.gptlabExplore = state;

  for (const m of models) {
    const label = m.has_model ? `${m.name} (${m.n_layer} layers, ${m.n_head} heads, ${(m.parameters / 1e6).toFixed(1)}M)` : `${m.name} (run, no checkpoint yet)`;
    modelSelect.appendChild(Object.assign(document.createElement("option"), { value: m.name, textContent: label }));
  }
  modelSelect.addEventListener("change", () => {
    state.model = modelSelect.value;
    state.refresh(active);
  });
  if (exported) {
    promptBox.value = exported.prompt;
    promptBox.readOnly = true;
    document.querySelector("#export-note").hidden = false;
  }
  let typing = null;
  promptBox.addEventListener("input", () => {
    clearTimeout(typing);
    typing = setTimeout(() => state.setPrompt(promptBox.value), 250);
  });

  for (const view of VIEWS) {
    const tab = Object.assign(document.createElement("button"), { textContent: view.title, className: "tab", id: `tab-${view.id}` });
    tab.addEventListener("click", () => show(view.id));
    tabs.appendChild(tab);
    const panel = Object.assign(document.createElement("section"), { id: `panel-${view.id}`, className: "panel" });
    panel.hidden = true;
    panels.appendChild(panel);
    view.init(panel, state);
  }
  function show(viewId) {
    active = viewId;
    for (const view of VIEWS) {
      document.querySelector(`#panel-${view.id}`).hidden = view.id !== viewId;
      document.querySelector(`#tab-${view.id}`).classList.toggle("active", view.id === viewId);
    }
    state.refresh(viewId);
  }
  const first = models[0].has_model ? "next" : "run";
  show(location.hash.slice(1) && VIEWS.some((v) => v.id === location.hash.slice(1)) ? location.hash.slice(1) : first);
}

start().catch((error) => {
  const line = document.querySelector("#error");
  line.textContent = `the page could not start: ${error.message}`;
  line.hidden = false;
});
