// Shared helpers of the dashboard (docs/ui.md): the token, API calls, tables, numbers.
// Every value from the API is written with textContent, never as HTML.

export const TOKEN_KEY = "flowmesh.token";
export const $ = (id) => document.getElementById(id);
export const SECTIONS = ["login", "overview", "fleet", "pool", "workflows", "workflow", "batch"];

// Timers of the page on show; route() clears them when another page opens.
const timers = new Set();

// Run tick every ms (the first time after ms) until it returns false or the page changes.
export function every(ms, tick) {
  let stopped = false;
  const handle = { stop: () => { stopped = true; clearTimeout(handle.id); timers.delete(handle); } };
  const loop = async () => {
    if (stopped) return;
    let again = true;
    try { again = (await tick()) !== false; } catch (error) { again = false; report(error); }
    if (again && !stopped) handle.id = setTimeout(loop, ms);
  };
  timers.add(handle);
  handle.id = setTimeout(loop, ms);
  return handle;
}

export function stopTimers() {
  for (const handle of [...timers]) handle.stop();
}

// Errors of a background tick: a refused token logs out, anything else shows in the page.
export let report = (error) => { throw error; };
export function onBackgroundError(handler) { report = handler; }

export async function api(path, init = {}) {
  const headers = Object.assign({}, init.headers || {}, {
    Authorization: "Bearer " + sessionStorage.getItem(TOKEN_KEY),
  });
  const response = await fetch(path, Object.assign({}, init, { headers }));
  if (!response.ok) {
    let detail = response.status + " " + response.statusText;
    try {
      const body = await response.json();
      if (body && body.error && body.error.message) detail = body.error.message;
      else if (body && body.detail) detail = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail);
    } catch (_) { /* not JSON */ }
    const error = new Error(detail);
    error.status = response.status;
    throw error;
  }
  return response;
}

export function fillTable(table, header, rows) {
  table.replaceChildren();
  const head = table.insertRow();
  for (const name of header) {
    const th = document.createElement("th");
    th.textContent = name;
    head.appendChild(th);
  }
  const made = [];
  for (const row of rows) {
    const tr = table.insertRow();
    for (const cell of row) {
      const td = tr.insertCell();
      if (cell instanceof Node) td.appendChild(cell); else td.textContent = String(cell);
    }
    made.push(tr);
  }
  return made;
}

export const fmt = (x, digits = 4) => (typeof x === "number" ? Number(x.toFixed(digits)).toString() : String(x));

export function link(text, href, title) {
  const a = document.createElement("a");
  a.href = href;
  a.textContent = text;
  if (title) a.title = title;
  return a;
}

export function show(section) {
  for (const id of SECTIONS) $(id).hidden = id !== section;
  $("nav").hidden = section === "login";
}

export async function download(digest) {
  const blob = await (await api("/v1/results/" + encodeURIComponent(digest))).blob();
  const a = document.createElement("a");
  a.href = URL.createObjectURL(blob);
  a.download = digest.replace(":", "-");
  a.click();
  setTimeout(() => URL.revokeObjectURL(a.href), 10000);
}
