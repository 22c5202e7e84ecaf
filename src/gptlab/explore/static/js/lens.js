// Logit lens: at every layer's residual stream (rows) and position (columns), the token the
// model would predict if it stopped there, shaded by its probability; a check marks the true
// next token, and hovering a cell shows the runners-up and the true token's probability.

import { api } from "./api.js";
import { el, hoverTip, legend, percent, probColour, textOn, visible } from "./draw.js";

export function initLens(panel) {
  panel.innerHTML = `
    <div class="view-intro">How the prediction forms layer by layer. Each row decodes the residual stream
    after one block with the model's own final LayerNorm and unembedding; the last row is the model's real
    output. A cell shows the top token at that position (shade: its probability); &#10003; marks a cell whose top
    token is the token that really comes next.</div>
    <div id="lens-table" class="scroll"></div><div id="lens-legend"></div>`;
}

export async function renderLens(panel, state) {
  const answer = await api("logit_lens", { model: state.model, prompt: state.prompt });
  const holder = panel.querySelector("#lens-table");
  holder.replaceChildren();
  const table = el("table", { class: "lens" }, holder);
  const T = answer.tokens.length;
  const head = el("tr", {}, el("thead", {}, table));
  el("th", { class: "corner" }, head, "residual after \\ reads");
  answer.tokens.forEach((t) => el("th", {}, head, visible(t.text)));
  const body = el("tbody", {}, table);
  answer.stages.forEach((stage, s) => {
    const row = el("tr", {}, body);
    el("th", {}, row, stage);
    for (let t = 0; t < T; t++) {
      const [best, ...rest] = answer.top[s][t];
      const background = probColour(best.prob);
      const truth = t + 1 < T ? answer.tokens[t + 1] : null;
      const hit = truth !== null && truth.id === best.id;
      const cell = el("td", { style: `background:${background};color:${textOn(background)}`, class: hit ? "hit" : "" }, row,
        (hit ? "\u2713" : "") + visible(best.text));
      const lines = [`${stage}, position ${t} (reads ${visible(answer.tokens[t].text)})`,
        `top: ${visible(best.text)} ${percent(best.prob)}`, ...rest.map((r) => `     ${visible(r.text)} ${percent(r.prob)}`)];
      if (truth) lines.push(`true next ${visible(truth.text)}: ${percent(answer.next_token_probs[s][t])}`);
      hoverTip(cell, lines);
    }
  });
  const foot = el("tr", { class: "truth" }, el("tfoot", {}, table));
  el("th", {}, foot, "true next token");
  answer.tokens.forEach((_, t) => el("td", {}, foot, t + 1 < T ? visible(answer.tokens[t + 1].text) : "?"));
  const legendHolder = panel.querySelector("#lens-legend");
  legendHolder.replaceChildren();
  legend(legendHolder, { min: 0, max: 1, colour: probColour, label: "probability of the top token" });
}
