// Two small SVG charts, written here rather than vendored: a time-series line chart
// for live rates and a bar chart for lag per partition.

const NS = "http://www.w3.org/2000/svg";
export const COLORS = ["#2b6cb0", "#dd6b20", "#38a169", "#805ad5", "#d53f8c", "#319795"];

function svg(tag, attrs = {}) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  return el;
}

function niceMax(v) {
  if (v <= 0) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 5, 10]) if (v <= m * p) return m * p;
  return 10 * p;
}

function legend(names) {
  const el = document.createElement("div");
  el.className = "legend";
  names.forEach((name, i) => {
    const s = document.createElement("span");
    s.style.setProperty("--c", COLORS[i % COLORS.length]);
    s.textContent = name;
    el.append(s);
  });
  return el;
}

// A line chart of the last `points` samples of each series; push() adds one sample each.
export class LineChart {
  constructor(title, series, { points = 60, unit = "/s" } = {}) {
    this.series = series;
    this.points = points;
    this.unit = unit;
    this.data = series.map(() => []);
    this.el = document.createElement("div");
    this.el.className = "chart card";
    const head = document.createElement("div");
    head.className = "title";
    head.textContent = title;
    this.svg = svg("svg", { viewBox: "0 0 400 140", role: "img", "aria-label": title });
    this.el.append(head, this.svg, legend(series));
    this.draw();
  }

  push(values) {
    values.forEach((v, i) => {
      const d = this.data[i];
      d.push(v);
      if (d.length > this.points) d.shift();
    });
    this.draw();
  }

  draw() {
    const W = 400, H = 140, L = 44, B = 18, T = 6;
    const max = niceMax(Math.max(0, ...this.data.flat()));
    this.svg.replaceChildren();
    for (const f of [0, 0.5, 1]) {
      const y = T + (H - T - B) * (1 - f);
      this.svg.append(svg("line", { x1: L, x2: W, y1: y, y2: y, stroke: "#e2e8f0" }));
      const label = svg("text", { x: L - 4, y: y + 4, "text-anchor": "end", "font-size": 10,
                                  fill: "#718096" });
      label.textContent = `${+(max * f).toPrecision(3)}${f === 1 ? this.unit : ""}`;
      this.svg.append(label);
    }
    this.data.forEach((d, i) => {
      if (!d.length) return;
      const step = (W - L) / Math.max(1, this.points - 1);
      const x0 = W - step * (d.length - 1);
      const pts = d.map((v, j) => `${(x0 + j * step).toFixed(1)},` +
        `${(T + (H - T - B) * (1 - v / max)).toFixed(1)}`).join(" ");
      this.svg.append(svg("polyline", { points: pts, fill: "none", "stroke-width": 2,
                                        stroke: COLORS[i % COLORS.length],
                                        "data-series": this.series[i] }));
    });
  }
}

// Horizontal bars, one per item {label, value}; the value is printed at the bar's end.
export function barChart(title, items, { unit = "" } = {}) {
  const el = document.createElement("div");
  el.className = "chart card";
  const head = document.createElement("div");
  head.className = "title";
  head.textContent = title;
  const row = 22, W = 400, L = 120;
  const H = Math.max(1, items.length) * row + 4;
  const s = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": title,
                        class: "bars" });
  const max = niceMax(Math.max(0, ...items.map((i) => i.value || 0)));
  items.forEach((item, i) => {
    const y = i * row + 2;
    const label = svg("text", { x: L - 6, y: y + 14, "text-anchor": "end", "font-size": 11,
                                fill: "#4a5568" });
    label.textContent = item.label;
    const w = ((W - L - 60) * (item.value || 0)) / max;
    const bar = svg("rect", { x: L, y: y + 3, width: Math.max(w, 1).toFixed(1), height: row - 8,
                              fill: COLORS[0], "data-label": item.label,
                              "data-value": item.value ?? "" });
    const value = svg("text", { x: L + w + 4, y: y + 14, "font-size": 11, fill: "#1a202c" });
    value.textContent = item.value === null || item.value === undefined ? "–"
      : `${item.value}${unit}`;
    s.append(label, bar, value);
  });
  el.append(head, s);
  return el;
}
