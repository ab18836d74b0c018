// Workflow page (docs/ui.md): the DAG drawn with cytoscape + dagre (static/vendor/,
// VENDOR.md), a table of the same nodes, and the selected node's lineage. Polls
// GET /v1/workflows/ID every second until the workflow is done, failed or cancelled.
import { $, api, download, every, fillTable, fmt, link, show } from "./common.js";

const POLL_MS = 1000;
const COLOURS = {
  waiting: ["#e4e4e4", "#888"], pending: ["#eef2f8", "#7a8ca8"], running: ["#fff4c2", "#d9a400"],
  done: ["#d8f5d8", "#2a8a2a"], failed: ["#f8d0d0", "#b00"], cancelled: ["#f0e6f6", "#7a4d99"],
};
const FINAL = new Set(["done", "failed", "cancelled"]);
let cy = null;
let selected = null;

function summary(node) {
  const count = (kind) => node.lineage.filter((r) => r.satisfied_by === kind).length;
  const cost = node.lineage.reduce((sum, r) => sum + r.cost_usd, 0);
  const seconds = node.lineage.reduce((sum, r) => sum + r.worker_seconds, 0);
  return {
    items: node.items_done + "/" + node.items_total + " items",
    how: "executed " + count("executed") + " · hit " + count("cache_hit") + " · joined " + count("joined"),
    cost: "$" + fmt(cost, 6) + " · " + fmt(seconds, 2) + " worker-s",
  };
}

function label(node) {
  const s = summary(node);
  return [node.node, node.state + " · " + s.items, s.how, s.cost].join("\n");
}

const STYLE = [
  { selector: "node", style: {
    shape: "round-rectangle", width: 230, height: 78, label: "data(label)", "text-wrap": "wrap",
    "text-valign": "center", "text-halign": "center", "font-size": 12, "font-family": "system-ui, sans-serif",
    "background-color": "data(fill)", "border-width": 2, "border-color": "data(line)", color: "#222",
  } },
  { selector: "node:selected", style: { "border-width": 4, "border-color": "#1f2a44" } },
  { selector: "edge", style: {
    width: 2, "line-color": "#8899aa", "target-arrow-color": "#8899aa", "target-arrow-shape": "triangle",
    "curve-style": "bezier",
  } },
];

function elements(status) {
  const nodes = status.nodes.map((n) => ({ group: "nodes", data: nodeData(n) }));
  const edges = status.nodes.flatMap((n) => n.depends_on.map((dep) => (
    { group: "edges", data: { id: dep + "->" + n.node, source: dep, target: n.node } })));
  return nodes.concat(edges);
}

function nodeData(n) {
  const [fill, line] = COLOURS[n.state] || COLOURS.waiting;
  return { id: n.node, label: label(n), state: n.state, fill, line };
}

function draw(status) {
  const graph = $("graph");
  if (cy && cy.workflowId === status.workflow_id) {
    for (const n of status.nodes) cy.getElementById(n.node).data(nodeData(n));
  } else {
    if (cy) cy.destroy();
    cy = window.cytoscape({
      container: graph, elements: elements(status), style: STYLE,
      layout: { name: "dagre", rankDir: "LR", nodeSep: 30, rankSep: 70, padding: 20 },
      maxZoom: 1.2, userZoomingEnabled: false, boxSelectionEnabled: false, autoungrabify: true,
    });
    cy.workflowId = status.workflow_id;
    cy.on("tap", "node", (event) => select(event.target.id()));
    window.flowmesh = { graph: cy }; // for the browser tests: where each node is drawn
  }
  graph.dataset.states = status.nodes.map((n) => n.node + "=" + n.state).join(" ");
}

function nodeTable(status) {
  const rows = fillTable($("nodes"), ["node", "state", "items", "how satisfied", "cost and time", "after"],
    status.nodes.map((n) => {
      const s = summary(n);
      return [n.node, n.state, s.items, s.how, s.cost, n.depends_on.join(", ")];
    }));
  rows.forEach((tr, i) => {
    const n = status.nodes[i];
    tr.className = "node " + n.state + (n.node === selected ? " selected" : "");
    tr.dataset.node = n.node;
    tr.dataset.state = n.state;
    tr.addEventListener("click", () => select(n.node));
  });
}

let last = null;

function select(name) {
  selected = name;
  if (cy) { cy.nodes().unselect(); cy.getElementById(name).select(); }
  if (last) render(last);
}

function renderLineage(node) {
  $("lineage-title").textContent = "Lineage of " + node.node;
  fillTable($("lineage"), ["item", "status", "satisfied by", "batch", "worker", "queued s", "ran s", "$", "result"],
    node.lineage.map((r) => {
      let result = "";
      if (r.result_digest) {
        result = link(r.result_digest.slice(0, 16) + "…", "#", r.result_digest + " (download)");
        result.addEventListener("click", (e) => { e.preventDefault(); download(r.result_digest); });
      }
      const batch = r.batch_id ? link(r.batch_id.slice(0, 12), "#batch/" + encodeURIComponent(r.batch_id), r.batch_id) : "";
      const queued = r.started_at ? fmt(r.started_at - r.requested_at, 3) : "";
      const ran = r.started_at && r.finished_at ? fmt(r.finished_at - r.started_at, 3) : "";
      return [r.index, r.status, r.satisfied_by, batch, r.worker || "", queued, ran, fmt(r.cost_usd, 6), result];
    }));
}

function render(status) {
  last = status;
  $("wf-title").textContent = status.name + " (" + status.workflow_id + ")";
  $("wf-state").textContent = "state: " + status.state;
  $("wf-state").dataset.state = status.state;
  draw(status);
  nodeTable(status);
  const node = status.nodes.find((n) => n.node === selected);
  if (node) renderLineage(node);
}

export async function showWorkflow(id) {
  show("workflow");
  selected = null;
  last = null;
  if (cy) { cy.destroy(); cy = null; }
  for (const el of ["wf-title", "wf-state", "lineage-title"]) $(el).textContent = "";
  for (const el of ["nodes", "lineage"]) $(el).replaceChildren();
  $("wf-state").dataset.state = "";
  const tick = async () => {
    try {
      const status = await (await api("/v1/workflows/" + encodeURIComponent(id))).json();
      render(status);
      return !FINAL.has(status.state);
    } catch (error) {
      if (error.status === 401) throw error;
      $("wf-title").textContent = error.status === 404 ? "No such workflow" : error.message;
      return false;
    }
  };
  if (await tick()) every(POLL_MS, tick);
}
