// Shared work (docs/ui.md): the ready pool (GET /v1/pool, polled) and one batch
// (GET /v1/batches/ID). What a tenant sees of either is decided by the API: its own
// share and its own items, and aggregate figures; an admin sees every tenant's.
import { $, api, every, fillTable, fmt, link, show } from "./common.js";

const POOL_MS = 2000;

// What each recorded decision term means (control/utility.py, RoundPlan.terms).
const TERMS = [
  ["policy", "the scheduling policy that decided"],
  ["size", "items the decision put in this batch"],
  ["ready", "items of this signature waiting when it was decided"],
  ["oldest_wait_s", "seconds the group's oldest item had waited (value grows with it)"],
  ["fairness", "how under-served the batch's tenants were, -1..1 (raises or lowers value)"],
  ["accelerator", "the chosen worker's accelerator"],
  ["model_warm", "the model was already loaded there (no load time)"],
  ["input_bytes", "bytes the batch needs on the worker (a checkpoint model's files, inputs)"],
  ["input_local", "fraction of those bytes already on the worker's disk (not fetched)"],
  ["price_per_hour", "the worker's $ per hour"],
  ["watts", "the worker's power draw"],
  ["free_workers", "free workers the policy chose among"],
  ["seconds", "expected seconds, model load and input transfer included"],
  ["value", "$ value of running these items now"],
  ["cost_usd", "expected $ on this worker"],
  ["energy_wh", "expected Wh on this worker"],
  ["utility", "value minus weighted $, energy and time"],
  ["rate", "utility per second: what the policy maximises"],
];

export async function showPool() {
  show("pool");
  const tick = async () => {
    const pool = await (await api("/v1/pool")).json();
    const rows = fillTable($("pool-groups"), ["signature", "kind", "model", "size", "oldest wait s", "shares"],
      pool.groups.map((g) => [g.signature.slice(0, 12), g.kind, g.model || "", g.size === null ? "—" : g.size,
        fmt(g.oldest_wait_s, 1), g.shares.map((s) => s.tenant + ": " + s.items).join(" · ")]));
    rows.forEach((tr, i) => { tr.dataset.signature = pool.groups[i].signature; });
    $("pool-empty").textContent = pool.groups.length ? "" : "Nothing of yours is waiting to be batched.";
    $("pool").dataset.at = String(pool.at);
  };
  await tick();
  every(POOL_MS, tick);
}

export async function showBatch(id) {
  show("batch");
  $("batch-title").textContent = "Batch " + id;
  for (const el of ["batch-facts", "batch-terms", "batch-items"]) $(el).replaceChildren();
  let batch;
  try {
    batch = await (await api("/v1/batches/" + encodeURIComponent(id))).json();
  } catch (error) {
    if (error.status === 401) throw error;
    $("batch-title").textContent = error.status === 404 ? "No such batch" : error.message;
    return;
  }
  const opt = (x, digits) => (x === null || x === undefined ? "" : fmt(x, digits));
  fillTable($("batch-facts"), ["figure", "value"], [
    ["worker", batch.worker], ["kind", batch.kind], ["model", batch.model || ""],
    ["items in the batch", batch.size], ["of them shown here", batch.items.length],
    ["assigned at", new Date(batch.assigned_at * 1000).toISOString()],
    ["ran s", batch.finished_at ? fmt(batch.finished_at - batch.assigned_at, 3) : "still running"],
    ["worker-seconds", opt(batch.worker_seconds, 3)], ["$", opt(batch.cost_usd, 6)], ["Wh", opt(batch.energy_wh, 4)],
  ]);
  fillTable($("batch-terms"), ["term", "value", "meaning"],
    TERMS.filter(([name]) => name in batch.terms).map(([name, meaning]) => {
      const value = batch.terms[name];
      return [name, typeof value === "number" ? fmt(value, 6) : String(value), meaning];
    }));
  fillTable($("batch-items"), ["tenant", "workflow", "node", "item", "satisfied by", "status"],
    batch.items.map((r) => [r.tenant, link(r.workflow, "#workflow/" + encodeURIComponent(r.workflow)),
      r.node, r.index, r.satisfied_by, r.status]));
}
