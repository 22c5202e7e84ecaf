// Training run: loss (train smoothed, val), learning rate, gradient norm and tokens/s against
// tokens seen, and the samples written during training, step by step. A run that is training
// now is polled every few seconds and its curves grow as it logs; polling stops when it ends.

import { exported, runData } from "./api.js";
import { el, lineChart } from "./draw.js";

const POLL_MS = 2000;

export function initRun(panel, state) {
  panel.innerHTML = `
    <div class="view-intro">How training went. The train loss is smoothed as in the run's loss.png; val loss
    dots are the evaluations. Samples are the text the model wrote at each sampling step: watch it learn.</div>
    <div id="run-status" class="summary"></div>
    <div id="run-charts" class="charts"></div>
    <h3>Samples</h3>
    <div class="controls"><label>step <input id="run-sample-step" type="range" min="0" max="0" value="0"></label>
      <output id="run-sample-label"></output></div>
    <pre id="run-sample" class="sample"></pre>`;
  panel.runs = new Map();  // model name -> {records, samples}
  panel.querySelector("#run-sample-step").addEventListener("input", () => drawSample(panel, state));
  if (!exported) poll(panel, state);
}

// One poll at a time: the next is scheduled when the last has answered (a slow answer never
// piles requests up), and a run the server says is no longer training is not polled again.
function poll(panel, state) {
  setTimeout(async () => {
    const info = state.modelInfo();
    const known = panel.runs.get(info.name);
    if (state.activeView() === "run" && info.has_run && (known?.training ?? true)) {
      await renderRun(panel, state, true).catch((e) => state.showError(e.message));
    }
    poll(panel, state);
  }, POLL_MS);
}

export async function renderRun(panel, state, polling = false) {
  const info = state.modelInfo();
  if (!info.has_run) {
    panel.querySelector("#run-status").textContent = `${info.name} is a model folder, not a training run: name a run folder on the command line to see its curves.`;
    panel.querySelector("#run-charts").replaceChildren();
    return;
  }
  const known = panel.runs.get(info.name) ?? { records: [], samples: [] };
  const answer = await runData(info.name, known.records.length);
  if (answer.total < known.records.length) known.records = [];  // the run was restarted
  const grew = answer.records.length > 0 || answer.samples.length !== known.samples.length;
  known.records = known.records.slice(0, answer.since).concat(answer.records);
  known.samples = answer.samples;
  known.training = answer.training;
  panel.runs.set(info.name, known);
  const last = known.records[known.records.length - 1];
  panel.querySelector("#run-status").textContent = last
    ? `${info.name}: ${known.records.length} logged steps, last step ${last.step} at ${(last.tokens ?? 0).toLocaleString()} tokens` +
      (exported ? "" : answer.training
        ? ` (training: checked ${new Date().toLocaleTimeString()}, every ${POLL_MS / 1000} s)`
        : " (not training now)")
    : `${info.name}: nothing logged yet`;
  if (polling && !grew) return;
  drawCharts(panel, known.records);
  const slider = panel.querySelector("#run-sample-step");
  const atEnd = Number(slider.value) >= Number(slider.max);
  slider.max = Math.max(0, known.samples.length - 1);
  if (atEnd || !polling) slider.value = slider.max;
  drawSample(panel, state);
}

function series(records, key) {
  return records.filter((r) => typeof r[key] === "number").map((r) => [r.tokens, r[key]]);
}

function drawCharts(panel, records) {
  const charts = panel.querySelector("#run-charts");
  charts.replaceChildren();
  lineChart(charts, [
    { name: "train (smoothed)", points: series(records, "train_loss_smoothed"), colour: "#1f77b4" },
    { name: "val", points: series(records, "val_loss"), colour: "#d62728", dots: true },
  ], { title: "loss", xLabel: "tokens seen", yLabel: "loss (nats/token)" });
  lineChart(charts, [{ name: "lr", points: series(records, "lr"), colour: "#2ca02c" }],
    { title: "learning rate", xLabel: "tokens seen", yLabel: "lr" });
  lineChart(charts, [{ name: "grad norm", points: series(records, "grad_norm"), colour: "#9467bd" }],
    { title: "gradient norm (before clipping)", xLabel: "tokens seen", yLabel: "global L2 norm" });
  lineChart(charts, [{ name: "tokens/s", points: series(records, "tokens_per_s"), colour: "#8c564b" }],
    { title: "throughput", xLabel: "tokens seen", yLabel: "tokens / s" });
}

function drawSample(panel, state) {
  const known = panel.runs.get(state.modelInfo().name);
  const index = Number(panel.querySelector("#run-sample-step").value);
  const sample = known?.samples[index];
  panel.querySelector("#run-sample-label").textContent = sample ? `step ${sample.step} (${index + 1} of ${known.samples.length})` : "no samples yet";
  panel.querySelector("#run-sample").textContent = sample ? sample.text : "";
}
