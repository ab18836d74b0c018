// Overview (docs/ui.md): GET /v1/stats now, and over time as samples this tab took.
// The series live in this tab's memory only: they start when the tab logs in and are
// gone on reload; the server keeps counters, not history.
import { $, api, every, fillTable, fmt, show } from "./common.js";

const SAMPLE_MS = 2000;
const MAX_SAMPLES = 300; // ten minutes at one sample every 2 s
const SVG = "http://www.w3.org/2000/svg";
let samples = [];

export function forgetSamples() { samples = []; }

// What the overview derives from one /v1/stats answer.
function figures(stats) {
  const served = stats.cache_hits + stats.joins;
  const perItemUsd = stats.executed ? stats.cost_usd / stats.executed : 0;
  const perItemWh = stats.executed ? stats.energy_wh / stats.executed : 0;
  return Object.assign({}, stats, { saved_usd: served * perItemUsd, saved_wh: served * perItemWh });
}

// Each chart: a title and the series it draws (field, label, colour).
const CHARTS = [
  ["items", [["requested", "requested", "#1f5fbf"], ["executed", "executed", "#d9822b"]]],
  ["served without running", [["cache_hits", "cache hits", "#2a8a2a"], ["joins", "joins", "#8a2a8a"]]],
  ["batches", [["batches", "batches", "#1f2a44"]]],
  ["mean batch size", [["mean_batch_size", "mean size", "#1f2a44"]]],
  ["$", [["cost_usd", "spent", "#b00"], ["saved_usd", "saved (estimate)", "#2a8a2a"]]],
  ["Wh", [["energy_wh", "spent", "#b00"], ["saved_wh", "saved (estimate)", "#2a8a2a"]]],
];

function svg(tag, attrs) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  return el;
}

function chart(title, series) {
  const box = document.createElement("figure");
  box.className = "chart";
  const caption = document.createElement("figcaption");
  const last = samples[samples.length - 1];
  const sig = (x) => (x ? Number(x.toPrecision(3)).toString() : "0");
  caption.textContent = title + ": " + series.map(([f, label]) => label + " " + sig(last[f])).join(" · ");
  const width = 260, height = 70, pad = 4;
  const plot = svg("svg", { width, height, viewBox: `0 0 ${width} ${height}`, role: "img" });
  plot.appendChild(svg("rect", { x: 0, y: 0, width, height, fill: "#fafafa", stroke: "#ddd" }));
  const values = samples.flatMap((s) => series.map(([f]) => s[f]));
  const top = Math.max(...values, 1e-12);
  const t0 = samples[0].at, span = Math.max(last.at - t0, 1);
  for (const [field, label, colour] of series) {
    const points = samples.map((s) => {
      const x = pad + ((s.at - t0) / span) * (width - 2 * pad);
      const y = height - pad - (s[field] / top) * (height - 2 * pad);
      return x.toFixed(1) + "," + y.toFixed(1);
    });
    const line = svg("polyline", { points: points.join(" "), fill: "none", stroke: colour, "stroke-width": 2 });
    const tip = svg("title", {});
    tip.textContent = label;
    line.appendChild(tip);
    plot.appendChild(line);
    const end = points[points.length - 1].split(",");
    plot.appendChild(svg("circle", { cx: end[0], cy: end[1], r: 2.5, fill: colour }));
  }
  box.append(plot, caption);
  return box;
}

function render(stats) {
  const now = figures(stats);
  fillTable($("totals"), ["figure", "value"], [
    ["requested", now.requested], ["executed", now.executed], ["failed", now.failed],
    ["cache hits", now.cache_hits], ["joins", now.joins], ["batches", now.batches],
    ["mean batch size", fmt(now.mean_batch_size, 2)], ["worker-seconds", fmt(now.worker_seconds, 2)],
    ["$ spent", fmt(now.cost_usd, 6)], ["Wh spent", fmt(now.energy_wh, 4)],
    ["$ saved (estimate)", fmt(now.saved_usd, 6)], ["Wh saved (estimate)", fmt(now.saved_wh, 4)],
  ]);
  fillTable($("tenants"), ["tenant", "requested", "cache hits", "joins", "created", "worker-s", "$", "Wh"],
    stats.tenants.map((t) => [t.tenant, t.requested, t.cache_hits, t.joins, t.created,
      fmt(t.worker_seconds, 2), fmt(t.cost_usd, 6), fmt(t.energy_wh, 4)]));
  $("charts").replaceChildren(...CHARTS.map(([title, series]) => chart(title, series)));
  $("samples").textContent = samples.length + " samples over " +
    fmt(samples[samples.length - 1].at - samples[0].at, 0) + " s (kept in this tab only)";
}

export async function showOverview() {
  show("overview");
  const tick = async () => {
    const stats = await (await api("/v1/stats")).json();
    samples.push(Object.assign(figures(stats), { at: Date.now() / 1000 }));
    samples = samples.slice(-MAX_SAMPLES);
    render(stats);
    $("overview").dataset.samples = String(samples.length);
  };
  await tick(); // the first answer (or a refused token) arrives before the page is shown
  every(SAMPLE_MS, tick);
}
