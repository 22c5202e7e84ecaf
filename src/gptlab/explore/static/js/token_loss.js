// Token loss: the prompt's text, each token shaded by the model's loss on it (-ln p of that
// token given everything before it); hover a token for its probability, rank and the entropy
// of the prediction it answered.

import { api } from "./api.js";
import { el, hoverTip, legend, percent, textOn, visible } from "./draw.js";

// White (no surprise) to deep orange (a loss of `scale` nats or more).
function lossColour(loss, scale) {
  const t = Math.max(0, Math.min(1, loss / scale));
  return `hsl(25, 90%, ${97 - 50 * t}%)`;
}

export function initTokenLoss(panel) {
  panel.innerHTML = `
    <div class="view-intro">Where the model is surprised. Each token is shaded by the loss the model takes on it:
    -ln p(token | the tokens before it), the number training minimises. Dark tokens are the ones it did not see
    coming; hover a token for its probability, its rank among all tokens, and how unsure the prediction was
    (entropy, in nats). The first token has no loss: nothing predicted it.</div>
    <div id="loss-summary" class="summary"></div>
    <div id="loss-text" class="shaded-text"></div><div id="loss-legend"></div>`;
}

export async function renderTokenLoss(panel, state) {
  const answer = await api("token_loss", { model: state.model, prompt: state.prompt });
  const scale = Math.max(1, ...answer.loss);
  panel.querySelector("#loss-summary").textContent = answer.mean_loss === null
    ? "a one-token prompt: nothing to predict yet"
    : `mean loss ${answer.mean_loss.toFixed(3)} nats over ${answer.loss.length} predicted tokens ` +
      `(perplexity ${Math.exp(answer.mean_loss).toFixed(1)})`;
  const holder = panel.querySelector("#loss-text");
  holder.replaceChildren();
  answer.tokens.forEach((token, position) => {
    const before = position - 1;  // the prediction this token answered
    const span = el("span", { class: "shade-token", "data-position": position }, holder, visible(token.text));
    if (before < 0) {
      hoverTip(span, [`position 0 ${JSON.stringify(token.text)}: no loss (nothing predicted it)`]);
      return;
    }
    const background = lossColour(answer.loss[before], scale);
    span.style.background = background;
    span.style.color = textOn(background);
    span.dataset.loss = answer.loss[before];
    hoverTip(span, [`position ${position} ${JSON.stringify(token.text)}`,
      `loss ${answer.loss[before].toFixed(3)} nats, p = ${percent(answer.next_prob[before])}, rank ${answer.next_rank[before].toLocaleString()}`,
      `entropy of the prediction: ${answer.entropy[before].toFixed(3)} nats`]);
  });
  const legendHolder = panel.querySelector("#loss-legend");
  legendHolder.replaceChildren();
  const rounded = Number(scale.toPrecision(2));
  legend(legendHolder, { min: 0, max: rounded, colour: (v) => lossColour(v, rounded), label: "loss on the token (nats)" });
}
