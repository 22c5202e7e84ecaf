// Logit lens: at every layer's residual stream (rows) and position (columns), the token the
// model would predict if it stopped there, shaded by its probability; a check marks the true
// next token, and hovering a cell shows the runners-up and the true token's probability.

import { api } from "./api.js";
import { el, hoverTip, legend, percent, probColour, textOn, visible } from "./draw.js";

export function initLens(panel, state) {
  panel.innerHTML = `
    <div class="view-intro">How the prediction forms layer by layer. Each row decodes the residual stream
    after one block with the model's own final LayerNorm and unembedding; the last row is the model's real
    output. A cell shows the top token at that position (shade: its probability); &#10003; marks a cell whose top
    token is the token that really comes next. A long prompt is shown a window of positions at a time.</div>
    <div class="controls"><button id="lens-earlier">&#9664; earlier</button><button id="lens-later">later &#9654;</button>
      <span id="lens-where" class="hint"></span></div>
    <div id="lens-table" class="scroll"></div><div id="lens-legend"></div>`;
  panel.lensEnd = null;  // the window ends at the prompt's end
  const step = (direction) => {
    panel.lensEnd = panel.lensAnswer.end + direction * panel.lensAnswer.window;
    if (panel.lensEnd >= panel.lensAnswer.tokens.length) panel.lensEnd = null;
    state.refresh("lens");
  };
  panel.querySelector("#lens-earlier").addEventListener("click", () => step(-1));
  panel.querySelector("#lens-later").addEventListener("click", () => step(1));
}

export async function renderLens(panel, state) {
  const key = `${state.model}\n${state.prompt}`;
  if (panel.lensKey !== key) [panel.lensKey, panel.lensEnd] = [key, null];  // a new prompt: its end
  const answer = await api("logit_lens", { model: state.model, prompt: state.prompt, end: panel.lensEnd });
  panel.lensAnswer = answer;
  panel.querySelector("#lens-earlier").disabled = answer.start === 0;
  panel.querySelector("#lens-later").disabled = answer.end === answer.tokens.length;
  panel.querySelector("#lens-where").textContent = `positions ${answer.start} to ${answer.end - 1} of ${answer.tokens.length}`;
  const holder = panel.querySelector("#lens-table");
  holder.replaceChildren();
  const table = el("table", { class: "lens" }, holder);
  const T = answer.tokens.length;
  const positions = Array.from({ length: answer.end - answer.start }, (_, i) => answer.start + i);
  const head = el("tr", {}, el("thead", {}, table));
  el("th", { class: "corner" }, head, "residual after \\ reads");
  positions.forEach((t) => el("th", {}, head, visible(answer.tokens[t].text)));
  const body = el("tbody", {}, table);
  answer.stages.forEach((stage, s) => {
    const row = el("tr", {}, body);
    el("th", {}, row, stage);
    positions.forEach((t, column) => {
      const [best, ...rest] = answer.top[s][column];
      const background = probColour(best.prob);
      const truth = t + 1 < T ? answer.tokens[t + 1] : null;
      const hit = truth !== null && truth.id === best.id;
      const cell = el("td", { style: `background:${background};color:${textOn(background)}`, class: hit ? "hit" : "" }, row,
        (hit ? "\u2713" : "") + visible(best.text));
      const lines = [`${stage}, position ${t} (reads ${visible(answer.tokens[t].text)})`,
        `top: ${visible(best.text)} ${percent(best.prob)}`, ...rest.map((r) => `     ${visible(r.text)} ${percent(r.prob)}`)];
      if (truth) lines.push(`true next ${visible(truth.text)}: ${percent(answer.next_token_probs[s][column])}`);
      hoverTip(cell, lines);
    });
  });
  const foot = el("tr", { class: "truth" }, el("tfoot", {}, table));
  el("th", {}, foot, "true next token");
  positions.forEach((t) => el("td", {}, foot, t + 1 < T ? visible(answer.tokens[t + 1].text) : "?"));
  const legendHolder = panel.querySelector("#lens-legend");
  legendHolder.replaceChildren();
  legend(legendHolder, { min: 0, max: 1, colour: probColour, label: "probability of the top token" });
}
