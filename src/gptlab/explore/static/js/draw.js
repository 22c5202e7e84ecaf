// Drawing helpers: DOM and SVG elements, colour scales, a legend, bar and line charts, a tooltip.
// Everything is drawn here with plain SVG: the page loads nothing from the network.

const SVG_NS = "http://www.w3.org/2000/svg";

export function el(tag, attrs = {}, parent = null, text = null) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  if (text !== null) node.textContent = text;
  if (parent) parent.appendChild(node);
  return node;
}

export function svgEl(tag, attrs = {}, parent = null, text = null) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  if (text !== null) node.textContent = text;
  if (parent) parent.appendChild(node);
  return node;
}

// A token's text with its spaces, newlines and tabs made visible (a chip of " the" shows "·the").
export function visible(text) {
  return text.replace(/ /g, "\u00b7").replace(/\n/g, "\u21b5").replace(/\t/g, "\u21e5").replace(/\r/g, "\u240d") || "\u2205";
}

export function percent(p) {
  if (p === 0) return "0";
  if (p >= 0.001) return (100 * p).toFixed(1) + "%";
  return p.toExponential(1);
}

// Sequential scale for probabilities: white (0) to deep blue (1).
export function probColour(p) {
  const t = Math.max(0, Math.min(1, p));
  const light = 97 - 62 * Math.sqrt(t);
  return `hsl(215, 80%, ${light}%)`;
}

// Diverging scale: blue (negative), white (0), red (positive); `scale` maps to full colour.
export function signedColour(value, scale) {
  const t = scale > 0 ? Math.max(-1, Math.min(1, value / scale)) : 0;
  const light = 97 - 50 * Math.abs(t);
  return t >= 0 ? `hsl(5, 75%, ${light}%)` : `hsl(215, 75%, ${light}%)`;
}

export function textOn(background) {
  const light = Number(/(\d+(?:\.\d+)?)%\)$/.exec(background)?.[1] ?? 100);
  return light < 62 ? "#fff" : "#111";
}

// A horizontal colour legend: a gradient bar, its end values and a label.
export function legend(parent, { min, max, colour, label, width = 220 }) {
  const box = svgEl("svg", { width: width + 80, height: 44, class: "legend" }, parent);
  const id = "grad" + Math.random().toString(36).slice(2);
  const gradient = svgEl("linearGradient", { id }, svgEl("defs", {}, box));
  for (let i = 0; i <= 10; i++) {
    svgEl("stop", { offset: `${i * 10}%`, "stop-color": colour(min + ((max - min) * i) / 10) }, gradient);
  }
  svgEl("rect", { x: 40, y: 4, width, height: 14, fill: `url(#${id})`, stroke: "#999" }, box);
  svgEl("text", { x: 36, y: 15, "text-anchor": "end", class: "tick" }, box, String(min));
  svgEl("text", { x: 44 + width, y: 15, class: "tick" }, box, String(max));
  svgEl("text", { x: 40 + width / 2, y: 36, "text-anchor": "middle", class: "axis-label" }, box, label);
  return box;
}

// One shared tooltip that follows the mouse.
let tip = null;
export function showTip(event, lines) {
  if (!tip) tip = el("div", { class: "tooltip" }, document.body);
  tip.replaceChildren(...lines.map((line) => el("div", {}, null, line)));
  tip.style.display = "block";
  const x = Math.min(event.clientX + 14, window.innerWidth - tip.offsetWidth - 8);
  tip.style.left = `${x + window.scrollX}px`;
  tip.style.top = `${event.clientY + 14 + window.scrollY}px`;
}
export function hideTip() {
  if (tip) tip.style.display = "none";
}
export function hoverTip(node, lines) {
  node.addEventListener("mousemove", (event) => showTip(event, typeof lines === "function" ? lines() : lines));
  node.addEventListener("mouseleave", hideTip);
}

// Horizontal bars, one row per item: label, a main bar (value) and an optional thin second bar
// (second). rows: [{label, value, second, muted, title, onClick}], values in [0, max].
export function barChart(parent, rows, { max = 1, valueLabel, secondLabel, width = 520, format = percent }) {
  const rowHeight = 26;
  const labelWidth = 130;
  const barWidth = width - labelWidth - 120;
  const height = rows.length * rowHeight + 40;
  const chart = svgEl("svg", { width, height, class: "bars" }, parent);
  rows.forEach((row, i) => {
    const y = i * rowHeight + 4;
    const g = svgEl("g", { class: "bar-row" + (row.muted ? " muted" : "") + (row.onClick ? " clickable" : "") }, chart);
    svgEl("text", { x: labelWidth - 8, y: y + 15, "text-anchor": "end", class: "bar-label" }, g, row.label);
    svgEl("rect", { x: labelWidth, y, width: barWidth, height: rowHeight - 6, class: "bar-bg" }, g);
    svgEl("rect", { x: labelWidth, y, width: Math.max(1, (barWidth * row.value) / max), height: rowHeight - 6, class: "bar" }, g);
    if (row.second !== undefined) {
      svgEl("rect", { x: labelWidth, y: y + rowHeight - 11, width: Math.max(0, (barWidth * row.second) / max), height: 5, class: "bar-second" }, g);
    }
    // Both numbers when the thin bar says something else (a cut token, a sharper distribution).
    const shown = row.second === undefined || Math.abs(row.second - row.value) < 5e-4 ? format(row.value) : `${format(row.value)} | ${format(row.second)}`;
    svgEl("text", { x: labelWidth + barWidth + 6, y: y + 15, class: "bar-value" }, g, shown);
    if (row.title) hoverTip(g, row.title);
    if (row.onClick) g.addEventListener("click", row.onClick);
  });
  const keyY = rows.length * rowHeight + 18;
  svgEl("rect", { x: labelWidth, y: keyY - 9, width: 14, height: 10, class: "bar" }, chart);
  svgEl("text", { x: labelWidth + 18, y: keyY, class: "tick" }, chart, valueLabel);
  if (secondLabel) {
    const x = labelWidth + 34 + 6.5 * valueLabel.length;
    svgEl("rect", { x, y: keyY - 7, width: 14, height: 5, class: "bar-second" }, chart);
    svgEl("text", { x: x + 18, y: keyY, class: "tick" }, chart, secondLabel);
  }
  return chart;
}

// Tick labels with just enough digits to tell neighbours apart (2000, 2005, 2010 stay distinct).
function tickLabel(value, step) {
  const scale = Math.abs(value) >= 1e6 ? 1e6 : Math.abs(value) >= 1e3 ? 1e3 : 1;
  if (scale === 1 && value !== 0 && Math.abs(value) < 1e-2) return value.toExponential(Math.max(0, Math.round(Math.log10(Math.abs(value) / step))));
  const decimals = Math.max(0, Math.min(6, Math.ceil(-Math.log10(step / scale) - 1e-9)));
  return (value / scale).toFixed(decimals) + (scale === 1e6 ? "M" : scale === 1e3 ? "k" : "");
}

function niceTicks(min, max, count = 5) {
  if (!(max > min)) return [min];
  const step = Math.pow(10, Math.floor(Math.log10((max - min) / count)));
  const best = [1, 2, 5, 10].map((m) => m * step).find((s) => (max - min) / s <= count) ?? 10 * step;
  const ticks = [];
  for (let v = Math.ceil(min / best) * best; v <= max + 1e-12; v += best) ticks.push(Number(v.toPrecision(12)));
  return ticks;
}

// A line chart with labelled axes. series: [{name, points: [[x, y]], colour, dots}].
export function lineChart(parent, series, { title, xLabel, yLabel, width = 460, height = 260 }) {
  const margin = { left: 62, right: 14, top: 26, bottom: 46 };
  const chart = svgEl("svg", { width, height, class: "line-chart" }, parent);
  const points = series.flatMap((s) => s.points).filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y));
  svgEl("text", { x: width / 2, y: 16, "text-anchor": "middle", class: "chart-title" }, chart, title);
  if (!points.length) {
    svgEl("text", { x: width / 2, y: height / 2, "text-anchor": "middle", class: "tick" }, chart, "no data yet");
    return chart;
  }
  let [x0, x1] = [Math.min(...points.map((p) => p[0])), Math.max(...points.map((p) => p[0]))];
  let [y0, y1] = [Math.min(...points.map((p) => p[1])), Math.max(...points.map((p) => p[1]))];
  if (x1 === x0) x1 = x0 + 1;
  if (y1 === y0) [y0, y1] = [y0 - Math.abs(y0) * 0.1 - 1e-9, y1 + Math.abs(y1) * 0.1 + 1e-9];
  const plotW = width - margin.left - margin.right;
  const plotH = height - margin.top - margin.bottom;
  const sx = (x) => margin.left + ((x - x0) / (x1 - x0)) * plotW;
  const sy = (y) => margin.top + plotH - ((y - y0) / (y1 - y0)) * plotH;
  svgEl("rect", { x: margin.left, y: margin.top, width: plotW, height: plotH, class: "plot-bg" }, chart);
  const xTicks = niceTicks(x0, x1);
  for (const t of xTicks) {
    svgEl("line", { x1: sx(t), x2: sx(t), y1: margin.top, y2: margin.top + plotH, class: "grid" }, chart);
    svgEl("text", { x: sx(t), y: margin.top + plotH + 14, "text-anchor": "middle", class: "tick" }, chart, tickLabel(t, xTicks[1] - xTicks[0] || 1));
  }
  const yTicks = niceTicks(y0, y1);
  for (const t of yTicks) {
    svgEl("line", { x1: margin.left, x2: margin.left + plotW, y1: sy(t), y2: sy(t), class: "grid" }, chart);
    svgEl("text", { x: margin.left - 5, y: sy(t) + 4, "text-anchor": "end", class: "tick" }, chart, tickLabel(t, yTicks[1] - yTicks[0] || Math.abs(t) || 1));
  }
  svgEl("text", { x: margin.left + plotW / 2, y: height - 8, "text-anchor": "middle", class: "axis-label" }, chart, xLabel);
  svgEl("text", { x: 14, y: margin.top + plotH / 2, "text-anchor": "middle", class: "axis-label", transform: `rotate(-90 14 ${margin.top + plotH / 2})` }, chart, yLabel);
  // The legend sits top right, where falling curves (losses) leave room.
  const named = series.filter((s) => s.points.length);
  let legendX = margin.left + plotW - 8 - named.reduce((sum, s) => sum + 30 + 6.5 * s.name.length, 0);
  for (const s of series) {
    const good = s.points.filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y));
    if (!good.length) continue;
    const d = good.map(([x, y], i) => `${i ? "L" : "M"}${sx(x).toFixed(1)},${sy(y).toFixed(1)}`).join("");
    svgEl("path", { d, fill: "none", stroke: s.colour, "stroke-width": 1.8, class: "series" }, chart);
    if (s.dots) for (const [x, y] of good) svgEl("circle", { cx: sx(x), cy: sy(y), r: 3, fill: s.colour }, chart);
    if (series.length > 1) {
      svgEl("rect", { x: legendX, y: margin.top + 6, width: 12, height: 4, fill: s.colour }, chart);
      svgEl("text", { x: legendX + 16, y: margin.top + 12, class: "tick" }, chart, s.name);
      legendX += 30 + 6.5 * s.name.length;
    }
  }
  return chart;
}
