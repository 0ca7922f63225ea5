// The console's shell: hash routes, one page module loaded per route when first used,
// polling that stops when the page changes, and the small DOM helpers pages share.
// Values from the broker only ever become text nodes (never HTML).

const ROUTES = [
  [/^\/$/, "overview.js", "overview"],
  [/^\/queues$/, "amqp.js", "queues"],
  [/^\/queues\/([^/]+)\/([^/]+)$/, "amqp.js", "queue"],
  [/^\/exchanges$/, "amqp.js", "exchanges"],
  [/^\/connections$/, "amqp.js", "connections"],
  [/^\/topics$/, "kafka.js", "topics"],
  [/^\/topics\/([^/]+)$/, "kafka.js", "topic"],
  [/^\/groups$/, "kafka.js", "groups"],
  [/^\/groups\/([^/]+)$/, "kafka.js", "group"],
];

export class ApiError extends Error {
  constructor(status, body) {
    const text = body && (body.message || body.reason || body.error);
    super(text ? `${status}: ${text}` : `HTTP ${status}`);
    this.status = status;
    this.body = body;
  }
}

export async function api(path, { method = "GET", body } = {}) {
  const init = { method, credentials: "same-origin", headers: {} };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers["Content-Type"] = "application/json";
  }
  const response = await fetch(path, init);
  const text = await response.text();
  let parsed = null;
  if (text) {
    try { parsed = JSON.parse(text); } catch { parsed = text; }
  }
  if (!response.ok) throw new ApiError(response.status, parsed);
  return parsed;
}

export const enc = encodeURIComponent;

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
    else if (name === "class") el.className = value;
    else el.setAttribute(name, value === true ? "" : value);
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
}

// A table from column specs {label, value(row) -> node|text, num}; `key` keeps rows apart.
export function table(columns, rows, empty = "Nothing here yet.") {
  if (!rows.length) return h("p", { class: "muted" }, empty);
  return h("table", {},
    h("thead", {}, h("tr", {}, columns.map((c) => h("th", { class: c.num ? "num" : "" }, c.label)))),
    h("tbody", {}, rows.map((row) => h("tr", {},
      columns.map((c) => h("td", { class: c.num ? "num" : "" }, c.value(row)))))));
}

export function card(label, value, cls) {
  return h("div", { class: "card" }, h("div", { class: "label" }, label),
    h("div", { class: "value " + (cls || "") }, value));
}

export function notice(text, error = false) {
  return h("div", { class: error ? "notice error" : "notice", role: error ? "alert" : "status" },
    text);
}

export function fmtNum(n) {
  if (n === null || n === undefined) return "–";
  return Number(n).toLocaleString("en-US", { maximumFractionDigits: 1 });
}

export function fmtBytes(n) {
  if (n === null || n === undefined) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  let v = Number(n);
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i += 1; }
  return `${v.toFixed(i ? 1 : 0)} ${units[i]}`;
}

export function fmtTime(ms) {
  if (ms === null || ms === undefined || ms < 0) return "–";
  return new Date(ms).toISOString().replace("T", " ").replace("Z", "");
}

// Rates from counters sampled over time: rate(key, value) is per second since the last call.
export class Rates {
  constructor() { this.last = new Map(); }
  rate(key, value, now = performance.now()) {
    const prev = this.last.get(key);
    this.last.set(key, [value, now]);
    if (!prev || now <= prev[1]) return 0;
    return Math.max(0, (value - prev[0]) / ((now - prev[1]) / 1000));
  }
}

const status = () => document.getElementById("status");

export function setStatus(text, error = false) {
  const el = status();
  el.textContent = text;
  el.className = error ? "status error" : "status";
}

let generation = 0;
const timers = [];

// Run fn now and every ms while this page is shown; errors go to the status line.
export function every(ms, fn) {
  const mine = generation;
  const handle = { timer: null };
  timers.push(() => clearTimeout(handle.timer));
  const tick = async () => {
    if (mine !== generation) return;
    try {
      await fn();
      setStatus(`updated ${new Date().toLocaleTimeString()}`);
    } catch (err) {
      setStatus(String(err.message || err), true);
    }
    if (mine === generation) handle.timer = setTimeout(tick, ms);
  };
  tick();
}

async function route() {
  generation += 1;
  while (timers.length) timers.pop()();
  const path = location.hash.replace(/^#/, "") || "/";
  const view = document.getElementById("view");
  for (const a of document.querySelectorAll("#nav a")) {
    const target = a.getAttribute("href").slice(1);
    a.classList.toggle("active", target === "/" ? path === "/" : path.startsWith(target));
  }
  for (const [pattern, file, name] of ROUTES) {
    const m = path.match(pattern);
    if (!m) continue;
    const module = await import(`./${file}`);
    replace(view);
    try {
      await module[name](view, ...m.slice(1).map(decodeURIComponent));
    } catch (err) {
      replace(view, notice(String(err.message || err), true));
    }
    return;
  }
  replace(view, h("h1", {}, "Not found"), h("p", {}, h("a", { href: "#/" }, "Back to the overview")));
}

window.addEventListener("hashchange", route);
route();
