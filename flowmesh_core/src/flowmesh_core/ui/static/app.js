// FlowMesh dashboard (docs/ui.md): login, routing, the fleet and workflow submission.
// Reads the /v1 API with the token kept in sessionStorage; every value from the API is
// written with textContent, never as HTML.
import { $, TOKEN_KEY, api, fillTable, fmt, onBackgroundError, show, stopTimers } from "./common.js";
import { forgetSamples, showOverview } from "./overview.js";
import { showBatch, showPool } from "./shared.js";
import { showWorkflow } from "./workflow.js";

const KNOWN_KEY = "flowmesh.workflows";

async function showFleet() {
  show("fleet");
  $("fleet-error").textContent = "";
  try {
    const workers = await (await api("/v1/workers")).json();
    fillTable($("workers"), ["worker", "accelerator", "state", "free slots", "running batches", "warm models", "$/h", "W"],
      workers.map((w) => [w.profile.worker_id, w.profile.accelerator,
        !w.alive ? "gone" : w.draining ? "draining" : w.running_batches ? "busy" : "idle",
        w.free_slots, w.running_batches,
        w.warm_models.join(", "), fmt(w.profile.price_per_hour, 4), fmt(w.profile.watts, 1)]));
    const scale = await (await api("/v1/autoscale")).json();
    fillTable($("pools"), ["pool", "replicas", "idle", "batches", "backlog s", "desired", "reason"],
      Object.entries(scale.pools).map(([name, p]) => [name, p.replicas, p.idle, p.batches,
        fmt(p.backlog_s, 1), p.desired, p.reason]));
    $("pools-note").textContent = Object.keys(scale.pools).length ? ""
      : "No worker pools are declared in the settings: nothing to recommend.";
  } catch (error) {
    if (error.status === 401) throw error;
    for (const el of ["workers", "pools"]) $(el).replaceChildren();
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
    if (error.status === 401) return refused();
    $("submit-error").textContent = error.message;
  }
}

function refused() {
  stopTimers();
  sessionStorage.removeItem(TOKEN_KEY);
  show("login");
  $("login-error").textContent = "That token was refused.";
}

onBackgroundError((error) => {
  if (error.status === 401) return refused();
  $("background-error").textContent = "Updates stopped: " + error.message;
  if (error.status === undefined) throw error; // a bug, not an answer: let it reach the console
});

async function route() {
  stopTimers();
  $("background-error").textContent = "";
  if (!sessionStorage.getItem(TOKEN_KEY)) return show("login");
  const hash = location.hash.slice(1) || "overview";
  const [page, ...rest] = hash.split("/");
  const arg = decodeURIComponent(rest.join("/"));
  try {
    if (page === "fleet") await showFleet();
    else if (page === "pool") await showPool();
    else if (page === "workflows") showWorkflows();
    else if (page === "workflow") await showWorkflow(arg);
    else if (page === "batch") await showBatch(arg);
    else await showOverview();
  } catch (error) {
    if (error.status === 401) refused();
    else throw error;
  }
}

$("login-form").addEventListener("submit", (event) => {
  event.preventDefault();
  $("login-error").textContent = "";
  sessionStorage.setItem(TOKEN_KEY, $("token").value);
  sessionStorage.removeItem(KNOWN_KEY);
  forgetSamples();
  route();
});
$("logout").addEventListener("click", () => {
  stopTimers();
  sessionStorage.clear();
  forgetSamples();
  location.hash = "";
  show("login");
});
$("submit-form").addEventListener("submit", submitWorkflow);
$("open-form").addEventListener("submit", (event) => {
  event.preventDefault();
  location.hash = "#workflow/" + encodeURIComponent($("open-id").value.trim());
});
window.addEventListener("hashchange", route);
route();
