// The dashboard: polls the JSON API once a second and renders it. Hand-written, no dependencies.
// Every text from the server goes in with textContent, never as HTML.
"use strict";
(() => {
  const TOKEN_KEY = "scheduler-admin-token";
  const POLL_MS = 1000;
  const STATES = {
    not_started: ["·", "not started"],
    idle: ["○", "idle"],
    waiting_for_slot: ["…", "waiting for a slot"],
    running: ["▶", "running"],
    paused: ["⏸", "paused"],
    stopping: ["■", "stopping"],
    stopped: ["■", "stopped"],
    finished: ["✓", "finished"],
    disabled: ["⊘", "disabled"],
  };
  const OUTCOMES = {
    succeeded: ["✓", "ok"],
    failed: ["✗", "failed"],
    panicked: ["‼", "panicked"],
    timed_out: ["⧗", "timed out"],
    aborted: ["–", "aborted"],
  };
  const ACTIONS = { "run-now": "Run now", pause: "Pause", resume: "Resume" };

  const $ = (id) => document.getElementById(id);
  const rows = new Map(); // service name -> { tr, cells, buttons }
  let selected = null; // the service shown in the detail view
  let skew = 0; // server clock minus browser clock, in ms
  let readOnly = false; // the server refuses every action

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
    for (const child of children) node.append(child);
    return node;
  }

  function token() {
    return sessionStorage.getItem(TOKEN_KEY) || "";
  }

  async function request(method, path) {
    const headers = { Accept: "application/json" };
    if (method !== "GET" && token()) headers.Authorization = `Bearer ${token()}`;
    const response = await fetch(path, { method, headers, cache: "no-store", credentials: "omit" });
    const body = await response.json().catch(() => ({}));
    if (!response.ok) {
      throw new Error(body.error || `${response.status} ${response.statusText}`);
    }
    return body;
  }

  function servicePath(name, rest) {
    return `api/services/${encodeURIComponent(name)}${rest || ""}`;
  }

  function show(text, kind) {
    const box = $("message");
    box.textContent = text;
    box.className = kind;
    box.hidden = false;
  }

  function relative(iso) {
    if (!iso) return "–";
    const seconds = Math.round((Date.parse(iso) - (Date.now() + skew)) / 1000);
    const size = Math.abs(seconds);
    if (size === 0) return "now";
    const amount =
      size < 90 ? `${size}s` : size < 5400 ? `${Math.round(size / 60)}m` :
      size < 129600 ? `${Math.round(size / 3600)}h` : `${Math.round(size / 86400)}d`;
    return seconds >= 0 ? `in ${amount}` : `${amount} ago`;
  }

  function absolute(iso) {
    return iso ? new Date(iso).toLocaleString() : "";
  }

  function when(iso) {
    return el("span", { class: "when", title: absolute(iso) }, relative(iso));
  }

  function badge(state) {
    const [symbol, text] = STATES[state] || ["?", state];
    return el("span", { class: `badge state-${state}`, "data-state": state },
      el("span", { "aria-hidden": "true" }, `${symbol} `), text);
  }

  function outcome(kind) {
    if (!kind) return el("span", { class: "sub" }, "–");
    const [symbol, text] = OUTCOMES[kind] || ["?", kind];
    return el("span", { class: `outcome-${kind}` }, `${symbol} ${text}`);
  }

  function duration(secs) {
    if (secs === null || secs === undefined) return "–";
    return secs < 1 ? `${Math.round(secs * 1000)} ms` : `${secs.toFixed(secs < 10 ? 2 : 1)} s`;
  }

  function sparkline(recent) {
    if (!recent || recent.length === 0) {
      return el("span", { class: "sub", title: "no run history kept" }, "–");
    }
    const counts = {};
    const marks = recent.map((kind) => {
      counts[kind] = (counts[kind] || 0) + 1;
      const [symbol, text] = OUTCOMES[kind] || ["?", kind];
      return el("span", { class: `outcome-${kind}`, title: text }, symbol);
    });
    const summary = Object.entries(counts)
      .map(([kind, n]) => `${n} ${(OUTCOMES[kind] || [0, kind])[1]}`).join(", ");
    return el("span", { class: "spark", role: "img", "aria-label": `last ${recent.length} runs: ${summary}` },
      ...marks);
  }

  function makeRow(name) {
    const tr = el("tr", { "data-service": name });
    const cells = {};
    const labels = {
      name: "Service", state: "State", schedule: "Schedule", next: "Next run", last: "Last run",
      runs: "Runs", failures: "Failures", skipped: "Skipped", recent: "Recent", actions: "Actions",
    };
    for (const [key, label] of Object.entries(labels)) {
      const numeric = key === "runs" || key === "failures" || key === "skipped";
      cells[key] = el("td", { class: numeric ? `num col-${key}` : `col-${key}`, "data-label": label });
      tr.append(cells[key]);
    }
    const open = el("button", { type: "button", class: "open", title: "Show details" }, name);
    open.addEventListener("click", () => openDetail(name));
    cells.name.append(open);
    const buttons = {};
    const group = el("div", { class: "actions" });
    for (const [action, label] of Object.entries(ACTIONS)) {
      buttons[action] = el("button", { type: "button", "data-action": action }, label);
      if (readOnly) {
        buttons[action].disabled = true;
        buttons[action].title = "This server is read-only";
      }
      buttons[action].addEventListener("click", () => act(name, action));
      group.append(buttons[action]);
    }
    cells.actions.append(group);
    return { tr, cells, buttons };
  }

  function fill(cell, ...children) {
    cell.replaceChildren(...children);
  }

  function renderList(services) {
    const body = document.querySelector("#services tbody");
    const seen = new Set();
    for (const service of services) {
      seen.add(service.name);
      let row = rows.get(service.name);
      if (!row) {
        row = makeRow(service.name);
        rows.set(service.name, row);
      }
      body.append(row.tr); // keeps the server's order
      const c = row.cells;
      fill(c.state, badge(service.state));
      fill(c.schedule, service.schedule);
      fill(c.next, service.next_fire ? when(service.next_fire) : "–");
      fill(c.last, el("span", {}, service.last_start ? when(service.last_start) : "never",
        service.last_outcome ? " " : "", service.last_outcome ? outcome(service.last_outcome) : ""));
      fill(c.runs, String(service.runs));
      fill(c.failures, String(service.failures));
      fill(c.skipped, String(service.skipped));
      fill(c.recent, sparkline(service.recent));
      const paused = service.state === "paused";
      row.buttons.pause.hidden = paused;
      row.buttons.resume.hidden = !paused;
    }
    for (const [name, row] of rows) {
      if (!seen.has(name)) {
        row.tr.remove();
        rows.delete(name);
      }
    }
    const failing = services.filter((s) => s.last_outcome && s.last_outcome !== "succeeded").length;
    $("summary").textContent =
      `${services.length} services · ${failing} with a failed last run · updated ${new Date().toLocaleTimeString()}`;
  }

  function field(list, term, ...value) {
    list.append(el("dt", {}, term), el("dd", {}, ...value));
  }

  function renderDetail(detail) {
    const s = detail.service;
    $("detail-name").textContent = s.name;
    $("detail-description").textContent = detail.schedule.description
      ? `${detail.schedule.description}` : `Schedule: ${detail.schedule.text}`;
    const list = $("detail-fields");
    list.replaceChildren();
    field(list, "State", badge(s.state));
    field(list, "Schedule", detail.schedule.text);
    field(list, "Time zone", detail.schedule.zone || "–");
    field(list, "Configured by", s.origin);
    field(list, "Next run", s.next_fire ? when(s.next_fire) : "–", s.next_fire ? ` (${absolute(s.next_fire)})` : "");
    field(list, "Last run", s.last_start ? when(s.last_start) : "never", s.last_start ? ` (${absolute(s.last_start)})` : "");
    field(list, "Last duration", duration(s.last_duration_secs));
    field(list, "Last outcome", outcome(s.last_outcome));
    field(list, "Runs / failures / skipped", `${s.runs} / ${s.failures} / ${s.skipped}`);
    if (s.claimed_elsewhere) field(list, "Run by other replicas", String(s.claimed_elsewhere));
    if (s.coordinator_error) field(list, "Coordinator", s.coordinator_error);
    if (s.held_elsewhere) field(list, s.held_elsewhere.running_earlier ? "Blocked by" : "Last tick run by",
      `${s.held_elsewhere.replica} (tick ${absolute(s.held_elsewhere.tick)})`);
    if (s.pending_report) field(list, "End of run not recorded yet", `tick ${absolute(s.pending_report)}`);
    if (s.skipped_late) field(list, "Skipped (claimed too late)", String(s.skipped_late));
    $("detail-error-box").hidden = !s.last_error;
    $("detail-error").textContent = s.last_error || "";
    const upcoming = $("detail-upcoming");
    upcoming.replaceChildren(...detail.schedule.upcoming.map((t) =>
      el("li", {}, `${absolute(t)} (${relative(t)})`)));
    if (detail.schedule.upcoming.length === 0) upcoming.append(el("li", { class: "sub" }, "not scheduled"));
    const note = $("detail-history-note");
    note.hidden = !(detail.history_error || detail.history.length === 0);
    note.textContent = detail.history_error ? `History unavailable: ${detail.history_error}` : "No runs recorded.";
    $("history-box").hidden = detail.history.length === 0;
    document.querySelector("#history tbody").replaceChildren(...detail.history.map((run) => el("tr", {},
      el("td", {}, absolute(run.tick)),
      el("td", {}, absolute(run.started)),
      el("td", {}, duration(run.duration_secs)),
      el("td", {}, run.outcome ? outcome(run.outcome) : "running"),
      el("td", {}, run.error || ""),
      el("td", { class: "num" }, String(run.attempt)),
      el("td", {}, run.replica || "this one"))));
    $("detail").hidden = false;
  }

  function openDetail(name) {
    selected = name;
    history.replaceState(null, "", `#service=${encodeURIComponent(name)}`);
    refresh();
    $("detail").scrollIntoView({ block: "start" });
  }

  function closeDetail() {
    selected = null;
    $("detail").hidden = true;
    history.replaceState(null, "", location.pathname + location.search);
  }

  async function act(name, action) {
    try {
      await request("POST", servicePath(name, `/${action}`));
      show(`${ACTIONS[action]}: done for ${name}.`, "info");
    } catch (error) {
      show(`${ACTIONS[action]} refused for ${name}: ${error.message}`, "error");
    }
    refresh();
  }

  async function reloadConfig() {
    try {
      const { reload } = await request("POST", "api/reload");
      show(reload.changed.length
        ? `Configuration reloaded: ${reload.changed.join(", ")} changed.`
        : "Configuration reloaded: nothing changed.", "info");
    } catch (error) {
      show(`Reload refused: ${error.message}`, "error");
    }
    refresh();
  }

  let timer = null;
  async function refresh() {
    clearTimeout(timer);
    try {
      const list = await request("GET", "api/services");
      skew = Date.parse(list.now) - Date.now();
      renderList(list.services);
      if (selected !== null) {
        try {
          renderDetail(await request("GET", servicePath(selected)));
        } catch (error) {
          show(`Cannot show ${selected}: ${error.message}`, "error");
          closeDetail();
        }
      }
    } catch (error) {
      $("summary").textContent = `Cannot reach the server: ${error.message} (retrying)`;
    }
    timer = setTimeout(refresh, POLL_MS);
  }

  function showTokenState() {
    $("token-state").textContent = token() ? "token set for this tab" : "no token: actions will be refused";
  }

  async function setUp() {
    try {
      const { actions } = await request("GET", "api/access");
      readOnly = actions === "read_only";
      $("reload").hidden = readOnly;
      $("token-form").hidden = actions !== "token";
      const note = $("access-note");
      note.hidden = actions === "token";
      note.textContent = actions === "read_only"
        ? "Read-only: this server refuses actions."
        : "Trusted: actions need no token here.";
    } catch (error) {
      show(`Cannot read the access mode: ${error.message}`, "error");
    }
    $("token-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const value = $("token").value.trim();
      if (value) sessionStorage.setItem(TOKEN_KEY, value);
      $("token").value = "";
      showTokenState();
    });
    $("token-forget").addEventListener("click", () => {
      sessionStorage.removeItem(TOKEN_KEY);
      showTokenState();
    });
    $("detail-close").addEventListener("click", closeDetail);
    $("reload").addEventListener("click", reloadConfig);
    showTokenState();
    const match = /^#service=(.+)$/.exec(location.hash);
    if (match) selected = decodeURIComponent(match[1]);
    refresh();
  }

  setUp();
})();
