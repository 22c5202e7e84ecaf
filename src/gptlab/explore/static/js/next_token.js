// Next token: the prompt's tokens as chips, the next-token distribution as bars, the sampling
// knobs of `gptlab sample` redrawing which tokens they cut, click-to-append, streamed generation.

import { api, exported, streamGenerate, viewRequests } from "./api.js";
import { barChart, el, hoverTip, percent, probColour, textOn, visible } from "./draw.js";

export function tokenChips(parent, tokens) {
  const row = el("div", { class: "chips" }, parent);
  tokens.forEach((token, position) => {
    const chip = el("span", { class: "chip", "data-position": position }, row);
    el("span", { class: "chip-text" }, chip, visible(token.text));
    el("span", { class: "chip-id" }, chip, String(token.id));
    hoverTip(chip, [`position ${position}`, `id ${token.id}`, JSON.stringify(token.text)]);
  });
  return row;
}

function samplingSettings(panel) {
  const temperature = Number(panel.querySelector("#temperature").value);
  const topK = Number(panel.querySelector("#top-k").value);
  const topP = Number(panel.querySelector("#top-p").value);
  return { temperature, top_k: topK > 0 ? topK : null, top_p: topP };
}

function describeSettings(settings) {
  const t = settings.temperature === 0 ? "greedy (temperature 0)" : `temperature ${settings.temperature}`;
  return `${t}, top-k ${settings.top_k ?? "off"}, top-p ${settings.top_p >= 1 ? "off" : settings.top_p}`;
}

export function initNextToken(panel, state) {
  panel.innerHTML = `
    <div class="view-intro">What the model predicts next. Each bar is one candidate token: the wide bar is the
    model's own probability, the thin bar the probability <code>gptlab sample</code> would draw it with under
    these settings (grey rows are cut by top-k / top-p). Click a bar to append that token.</div>
    <div id="nt-chips"></div>
    <div class="controls">
      <label>temperature <input id="temperature" type="range" min="0" max="2" step="0.05" value="1"><output id="temperature-out">1</output></label>
      <label>top-k <input id="top-k" type="range" min="0" max="50" step="1" value="0"><output id="top-k-out">off</output></label>
      <label>top-p <input id="top-p" type="range" min="0.05" max="1" step="0.05" value="1"><output id="top-p-out">off</output></label>
    </div>
    <div id="nt-summary" class="summary"></div>
    <div id="nt-bars"></div>
    <h3>Generate</h3>
    <div class="controls">
      <label>new tokens <input id="gen-tokens" type="number" value="40"></label>
      <label>seed <input id="gen-seed" type="number" min="0" placeholder="random"></label>
      <button id="gen-start">generate</button> <button id="gen-stop" disabled>stop</button>
      <span class="hint">uses the settings above; each token is shaded by the probability the model gave it (hover for its alternatives)</span>
    </div>
    <div id="gen-out" class="generated"></div>`;
  const sliders = [
    ["temperature", (v) => (Number(v) === 0 ? "0 (greedy)" : v)],
    ["top-k", (v) => (Number(v) === 0 ? "off" : v)],
    ["top-p", (v) => (Number(v) >= 1 ? "off" : v)],
  ];
  let pending = null;
  for (const [id, show] of sliders) {
    const input = panel.querySelector(`#${id}`);
    input.addEventListener("input", () => {
      panel.querySelector(`#${id}-out`).textContent = show(input.value);
      clearTimeout(pending);
      pending = setTimeout(() => state.refresh("next"), 60);  // redraw while the knob moves
    });
    if (exported) input.disabled = true;
  }
  if (exported) {
    panel.querySelector("#gen-start").disabled = true;
    panel.querySelector("#gen-out").textContent = "Generation and the knobs need the server: run `gptlab explore`.";
  }
  viewRequests().then((views) => {  // the limits are the server's (GET api/views)
    const limit = views.generate.fields.max_new_tokens;
    Object.assign(panel.querySelector("#gen-tokens"), { min: limit.ge, max: limit.le });
  }).catch((error) => state.showError(error.message));
  let controller = null;
  panel.querySelector("#gen-start").addEventListener("click", async () => {
    const out = panel.querySelector("#gen-out");
    out.replaceChildren(el("span", { class: "gen-prompt" }, null, state.prompt));
    const seed = panel.querySelector("#gen-seed").value;
    const body = {
      model: state.model,
      prompt: state.prompt,
      max_new_tokens: Number(panel.querySelector("#gen-tokens").value),
      seed: seed === "" ? null : Number(seed),
      ...samplingSettings(panel),
    };
    controller = new AbortController();
    panel.querySelector("#gen-start").disabled = true;
    panel.querySelector("#gen-stop").disabled = false;
    try {
      await streamGenerate(body, (event) => {
        if (event.type === "token") {
          const background = probColour(event.prob);
          const span = el("span", { class: "gen-token", style: `background:${background};color:${textOn(background)}` }, out, event.text);
          hoverTip(span, [`${JSON.stringify(event.text)}: p = ${percent(event.prob)}`, "alternatives:",
            ...event.alternatives.map((a) => `  ${visible(a.text)}  ${percent(a.prob)}`)]);
        } else if (event.type === "done") {
          out.dataset.text = event.text;
          out.dataset.finish = event.finish_reason;
          el("div", { class: "gen-done" }, out, `(${event.finish_reason === "eot" ? "end of text" : "done"})`);
        } else if (event.type === "error") {
          state.showError(event.message);
        }
      }, controller.signal);
    } catch (error) {
      if (error.name !== "AbortError") state.showError(error.message);
    } finally {
      panel.querySelector("#gen-start").disabled = false;
      panel.querySelector("#gen-stop").disabled = true;
    }
  });
  panel.querySelector("#gen-stop").addEventListener("click", () => controller?.abort());
}

export async function renderNextToken(panel, state) {
  const settings = samplingSettings(panel);
  const answer = await api("next_token", { model: state.model, prompt: state.prompt, ...(exported ? {} : settings) });
  const chips = panel.querySelector("#nt-chips");
  chips.replaceChildren();
  el("div", { class: "caption" }, chips, `${answer.tokens.length} tokens (hover a chip for its id and text)`);
  tokenChips(chips, answer.tokens);
  panel.querySelector("#nt-summary").textContent =
    `${describeSettings(exported ? { temperature: 1, top_k: null, top_p: 1 } : settings)}: ` +
    `${answer.kept_tokens.toLocaleString()} of ${answer.vocab_size.toLocaleString()} tokens can be drawn, ` +
    `holding ${percent(answer.kept_mass)} of the model's probability`;
  const bars = panel.querySelector("#nt-bars");
  bars.replaceChildren();
  const max = Math.max(...answer.candidates.map((c) => Math.max(c.prob, c.sample_prob)), 1e-9);
  barChart(bars, answer.candidates.map((c) => ({
    label: visible(c.text),
    value: c.prob,
    second: c.sample_prob,
    muted: c.sample_prob === 0,
    title: [`${JSON.stringify(c.text)} (id ${c.id})`, `model p = ${percent(c.prob)}`, `sampled with p = ${percent(c.sample_prob)}`, exported ? "" : "click to append"],
    onClick: exported ? null : () => state.setPrompt(state.prompt + c.text),
  })), { max, valueLabel: "model probability", secondLabel: "sampling probability (these settings)", width: 640 });
  bars.querySelectorAll(".bar-row").forEach((row, i) => {
    row.dataset.id = answer.candidates[i].id;
    row.dataset.prob = answer.candidates[i].prob;
  });
}
