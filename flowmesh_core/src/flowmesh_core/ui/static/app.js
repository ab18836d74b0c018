// FlowMesh dashboard (docs/ui.md). Reads the /v1 API with the token kept in sessionStorage.
// Every value from the API is written with textContent, never as HTML.
"use strict";

const TOKEN_KEY = "flowmesh.token";
const KNOWN_KEY = "flowmesh.workflows";
const POLL_MS = 1000;
let pollTimer = null;
let selectedNode = null;

const $ = (id) => document.getElementById(id);

async function api(path, init = {}) {
  const headers = Object.assign({}, init.headers || {}, {
    Authorization: "Bearer " + sessionStorage.getItem(TOKEN_KEY),
  });
  const response = await fetch(path, Object.assign({}, init, { headers }));
  if (!response.ok) {
    let detail = response.status + " " + response.statusText;
    try {
      const body = await response.json();
      if (body && body.detail) detail = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail);
    } catch (_) { /* not JSON */ }
    const error = new Error(detail);
    error.status = response.status;
    throw error;
  }
  return response;
}

function fillTable(table, header, rows) {
  table.replaceChildren();
  const head = table.insertRow();
  for (const name of header) {
    const th = document.createElement("th");
    th.textContent = name;
    head.appendChild(th);
  }
  for (const row of rows) {
    const tr = table.insertRow();
    for (const cell of row) {
      const td = tr.insertCell();
      if (cell instanceof Node) td.appendChild(cell); else td.textContent = String(cell);
    }
  }
}

const fmt = (x, digits = 4) => (typeof x === "number" ? Number(x.toFixed(digits)).toString() : String(x));

function show(section) {
  for (const id of ["login", "overview", "fleet", "workflows", "workflow"]) $(id).hidden = id !== section;
  $("nav").hidden = section === "login";
}

async function showOverview() {
  show("overview");
  const stats = await (await api("/v1/stats")).json();
  const saved = stats.cache_hits + stats.joins;
  const perItemUsd = stats.executed ? stats.cost_usd / stats.executed : 0;
  const perItemWh = stats.executed ? stats.energy_wh / stats.executed : 0;
  fillTable($("totals"), ["figure", "value"], [
    ["requested", stats.requested], ["executed", stats.executed], ["failed", stats.failed],
    ["cache hits", stats.cache_hits], ["joins", stats.joins], ["batches", stats.batches],
    ["mean batch size", fmt(stats.mean_batch_size, 2)], ["worker-seconds", fmt(stats.worker_seconds, 2)],
    ["$ spent", fmt(stats.cost_usd, 6)], ["Wh spent", fmt(stats.energy_wh, 4)],
    ["$ saved (estimate)", fmt(saved * perItemUsd, 6)], ["Wh saved (estimate)", fmt(saved * perItemWh, 4)],
  ]);
  fillTable($("tenants"), ["tenant", "requested", "cache hits", "joins", "created", "worker-s", "$", "Wh"],
    stats.tenants.map((t) => [t.tenant, t.requested, t.cache_hits, t.joins, t.created,
      fmt(t.worker_seconds, 2), fmt(t.cost_usd, 6), fmt(t.energy_wh, 4)]));
}

async function showFleet() {
  show("fleet");
  $("fleet-error").textContent = "";
  try {
    const workers = await (await api("/v1/workers")).json();
    fillTable($("workers"), ["worker", "accelerator", "state", "free slots", "running batches", "warm models", "$/h", "W"],
      workers.map((w) => [w.profile.worker_id, w.profile.accelerator,
        w.alive ? (w.running_batches ? "busy" : "idle") : "gone", w.free_slots, w.running_batches,
        w.warm_models.join(", "), fmt(w.profile.price_per_hour, 4), fmt(w.profile.watts, 1)]));
  } catch (error) {
    $("workers").replaceChildren();
    $("fleet-error").textContent = error.status === 403 ? "The fleet needs an admin token." : error.message;
  }
}

function knownWorkflows() {
  return JSON.parse(sessionStorage.getItem(KNOWN_KEY) || "[]");
}

function showWorkflows() {
  show("workflows");
  const list = $("known");
  list.replaceChildren();
  for (const id of knownWorkflows()) {
    const li = document.createElement("li");
    const a = document.createElement("a");
    a.href = "#workflow/" + encodeURIComponent(id);
    a.textContent = id;
    li.appendChild(a);
    list.appendChild(li);
  }
}

async function submitWorkflow(event) {
  event.preventDefault();
  $("submit-error").textContent = "";
  const text = $("spec").value;
  const type = text.trim().startsWith("{") ? "application/json" : "application/yaml";
  try {
    const reply = await (await api("/v1/workflows", { method: "POST", body: text, headers: { "Content-Type": type } })).json();
    const known = knownWorkflows().filter((id) => id !== reply.workflow_id);
    known.unshift(reply.workflow_id);
    sessionStorage.setItem(KNOWN_KEY, JSON.stringify(known.slice(0, 50)));
    location.hash = "#workflow/" + encodeURIComponent(reply.workflow_id);
  } catch (error) {
    $("submit-error").textContent = error.message;
  }
}

async function download(digest) {
  const blob = await (await api("/v1/results/" + encodeURIComponent(digest))).blob();
  const a = document.createElement("a");
  a.href = URL.createObjectURL(blob);
  a.download = digest;
  a.click();
  setTimeout(() => URL.revokeObjectURL(a.href), 10000);
}

function renderLineage(node) {
  $("lineage-title").textContent = "Lineage of " + node.node;
  fillTable($("lineage"), ["item", "status", "satisfied by", "batch", "worker", "queued s", "ran s", "$", "result"],
    node.lineage.map((r) => {
      const link = document.createElement("a");
      if (r.result_digest) {
        link.href = "#";
        link.textContent = r.result_digest.slice(0, 16) + "…";
        link.title = r.result_digest;
        link.addEventListener("click", (e) => { e.preventDefault(); download(r.result_digest); });
      }
      const queued = r.started_at ? fmt(r.started_at - r.requested_at, 3) : "";
      const ran = r.started_at && r.finished_at ? fmt(r.finished_at - r.started_at, 3) : "";
      return [r.index, r.status, r.satisfied_by, r.batch_id || "", r.worker || "", queued, ran,
        fmt(r.cost_usd, 6), r.result_digest ? link : ""];
    }));
}

function renderWorkflow(status) {
  $("wf-title").textContent = status.name + " (" + status.workflow_id + ")";
  $("wf-state").textContent = "state: " + status.state;
  $("wf-state").dataset.state = status.state;
  const graph = $("graph");
  graph.replaceChildren();
  for (const node of status.nodes) {
    const box = document.createElement("div");
    box.className = "node " + node.state + (node.node === selectedNode ? " selected" : "");
    box.dataset.node = node.node;
    box.dataset.state = node.state;
    const count = (kind) => node.lineage.filter((r) => r.satisfied_by === kind).length;
    const cost = node.lineage.reduce((sum, r) => sum + r.cost_usd, 0);
    const seconds = node.lineage.reduce((sum, r) => sum + r.worker_seconds, 0);
    const lines = [node.node, node.state + " · " + node.items_done + "/" + node.items_total + " items",
      "executed " + count("executed") + " · hit " + count("cache_hit") + " · joined " + count("joined"),
      "$" + fmt(cost, 6) + " · " + fmt(seconds, 2) + " worker-s"];
    for (const text of lines) {
      const div = document.createElement("div");
      div.textContent = text;
      box.appendChild(div);
    }
    box.addEventListener("click", () => { selectedNode = node.node; renderWorkflow(status); });
    graph.appendChild(box);
    if (node.node === selectedNode) renderLineage(node);
  }
}

async function showWorkflow(id) {
  show("workflow");
  selectedNode = null;
  $("lineage-title").textContent = "";
  $("lineage").replaceChildren();
  const tick = async () => {
    try {
      const status = await (await api("/v1/workflows/" + encodeURIComponent(id))).json();
      renderWorkflow(status);
      if (status.state === "done" || status.state === "failed") return;
    } catch (error) {
      $("wf-title").textContent = error.status === 404 ? "No such workflow" : error.message;
      return;
    }
    pollTimer = setTimeout(tick, POLL_MS);
  };
  await tick();
}

async function route() {
  clearTimeout(pollTimer);
  if (!sessionStorage.getItem(TOKEN_KEY)) return show("login");
  const hash = location.hash.slice(1) || "overview";
  try {
    if (hash === "overview") await showOverview();
    else if (hash === "fleet") await showFleet();
    else if (hash === "workflows") showWorkflows();
    else if (hash.startsWith("workflow/")) await showWorkflow(decodeURIComponent(hash.slice(9)));
    else await showOverview();
  } catch (error) {
    if (error.status === 401) { sessionStorage.removeItem(TOKEN_KEY); show("login"); $("login-error").textContent = "That token was refused."; }
    else throw error;
  }
}

$("login-form").addEventListener("submit", (event) => {
  event.preventDefault();
  $("login-error").textContent = "";
  sessionStorage.setItem(TOKEN_KEY, $("token").value);
  sessionStorage.removeItem(KNOWN_KEY);
  route();
});
$("logout").addEventListener("click", () => { sessionStorage.clear(); location.hash = ""; show("login"); });
$("submit-form").addEventListener("submit", submitWorkflow);
$("open-form").addEventListener("submit", (event) => {
  event.preventDefault();
  location.hash = "#workflow/" + encodeURIComponent($("open-id").value.trim());
});
window.addEventListener("hashchange", route);
route();
