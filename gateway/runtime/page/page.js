// streetgate status page: polls /api/status every 2 s and /api/history every 30 s (docs/status-page.md).
"use strict";
const STATUS_EVERY = 2000, HISTORY_EVERY = 30000, SVG = "http://www.w3.org/2000/svg";
let history = new Map(), historyAt = 0, missing = false;

function el(tag, attrs, ...kids) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  for (const kid of kids) node.append(kid);
  return node;
}
function badge(state, text) { return el("span", {class: "badge", "data-state": state}, text || state); }
function age(s) {
  if (s === null || s === undefined) return "never";
  if (s < 120) return `${Math.round(s)} s ago`;
  if (s < 7200) return `${Math.round(s / 60)} min ago`;
  return `${(s / 3600).toFixed(1)} h ago`;
}
function num(v) {
  if (v === null) return "–";
  const a = Math.abs(v);
  return a !== 0 && (a >= 1e6 || a < 1e-3) ? v.toExponential(3) : String(Number(v.toPrecision(5)));
}
function facts(dl, rows) {
  dl.replaceChildren(...rows.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]));
}

function chart(all) {
  const values = all.slice(Math.max(0, all.findIndex((v) => v !== null))); // the hour, or since start
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("class", "chart");
  svg.setAttribute("viewBox", "0 0 120 28");
  svg.setAttribute("preserveAspectRatio", "none");
  const known = values.filter((v) => v !== null);
  if (!known.length) return svg;
  const lo = Math.min(...known), hi = Math.max(...known);
  const y = (v) => (hi === lo ? 14 : 26 - ((v - lo) / (hi - lo)) * 24);
  const step = 120 / Math.max(1, values.length - 1);
  let run = [];
  const flush = () => {
    if (!run.length) return;
    if (run.length === 1) run.unshift([Math.max(0, run[0][0] - 1.5), run[0][1]]); // one point: a dash
    const line = document.createElementNS(SVG, "polyline");
    line.setAttribute("points", run.map(([x, y]) => `${x.toFixed(1)},${y.toFixed(1)}`).join(" "));
    svg.append(line);
    run = [];
  };
  values.forEach((v, i) => (v === null ? flush() : run.push([i * step, y(v)])));
  flush();
  return svg;
}

function device(dev) {
  const errors = Object.entries(dev.errors).map(([k, n]) => `${k} ${n}`).join(", ");
  const rows = dev.metrics.map((m) => el("tr", {"data-metric": m.name},
    el("td", {class: "name", title: m.name}, m.name),
    el("td", {class: "value"}, `${num(m.value)} ${m.unit}`.trim()),
    el("td", {class: "chart"}, chart(history.get(`${dev.name}\u0000${m.name}`) || [m.value]))));
  const card = el("article", {class: "card device", "data-device": dev.name, "data-health": dev.health},
    el("h3", {}, el("span", {}, dev.name), badge(dev.health)),
    el("p", {}, `last good poll ${age(dev.last_ok_age_s)}`),
    el("p", {class: "errors"}, errors ? `errors: ${errors}` : "no errors"));
  if (dev.last_error && dev.health !== "ok") card.append(el("p", {}, dev.last_error));
  if (rows.length) card.append(el("table", {}, el("tbody", {}, ...rows)));
  if (dev.metrics.some((m) => !history.has(`${dev.name}\u0000${m.name}`))) missing = true;
  return card;
}

function show(s) {
  const up = s.uplink, box = s.outbox;
  document.title = `${s.gateway} – streetgate`;
  document.getElementById("gateway").textContent = s.gateway;
  document.getElementById("summary").textContent =
    `version ${s.version} · up ${age(s.uptime_s).replace(" ago", "")} · clock ` +
    (s.clock_synchronised ? "synchronised" : "NOT synchronised") +
    (s.insecure.length ? ` · insecure: ${s.insecure.join(", ")}` : "");
  const state = document.getElementById("uplink-state");
  state.textContent = up.state;
  state.dataset.state = up.state;
  facts(document.getElementById("uplink-facts"), [
    ["broker", up.broker + (up.failovers ? ` (${up.failovers} failover${up.failovers === 1 ? "" : "s"})` : "")],
    ["connected", up.connected_since ? `since ${up.connected_since} (${age(up.connected_for_s).replace(" ago", "")})` : "no"],
    ["last acknowledged", age(up.last_ack_age_s)],
    ["backlog", `${box.backlog} readings` + (box.oldest_age_s === null ? "" : `, oldest ${age(box.oldest_age_s)}`)],
    ["dropped", `${box.dropped}` + (box.disk_full ? " (disk full)" : "")],
    ...(up.last_error ? [["last error", up.last_error]] : []),
  ]);
  missing = false;
  document.getElementById("devices").replaceChildren(...s.devices.map(device));
}

function link(state, text) {
  const node = document.getElementById("link");
  node.dataset.state = state;
  node.textContent = text;
}

async function get(path) {
  const answer = await fetch(path, {cache: "no-store", credentials: "same-origin"});
  if (!answer.ok) throw new Error(`${path}: ${answer.status}`);
  return answer.json();
}

async function loadHistory() {
  const h = await get("/api/history");
  history = new Map(h.series.map((s) => [`${s.device}\u0000${s.metric}`, s.values]));
  historyAt = Date.now();
}

async function tick() {
  try {
    if (Date.now() - historyAt >= HISTORY_EVERY || missing) await loadHistory();
    show(await get("/api/status"));
    link("live", `live · ${new Date().toLocaleTimeString()}`);
  } catch (e) {
    link("offline", `gateway not answering (${e.message}); retrying`);
  }
  setTimeout(tick, STATUS_EVERY);
}

tick();
