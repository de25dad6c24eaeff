// The dashboard: polls the JSON API once a second and renders it. Hand-written, no dependencies.
// Every text from the server goes in with textContent, never as HTML.
"use strict";
(() => {
  const TOKEN_KEY = "scheduler-admin-token";
  const POLL_MS = 1000;
  // Icons are drawn by the style sheet (class `icon-<shape>`), never by font glyphs: a server
  // without emoji or symbol fonts shows them as well as a desktop does.
  const STATES = {
    not_started: ["dot", "not started"],
    idle: ["ring", "idle"],
    waiting_for_slot: ["dotted", "waiting for a slot"],
    running: ["play", "running"],
    paused: ["pause", "paused"],
    stopping: ["square", "stopping"],
    stopped: ["square", "stopped"],
    finished: ["check", "finished"],
    disabled: ["slash", "disabled"],
  };
  const OUTCOMES = {
    succeeded: ["check", "ok"],
    failed: ["cross", "failed"],
    panicked: ["bang", "panicked"],
    timed_out: ["hourglass", "timed out"],
    aborted: ["dash", "aborted"],
    abandoned: ["diamond", "abandoned"],
    skipped: ["skip", "skipped"],
    lease_lost: ["bolt", "lease lost"],
  };
  // Every kind of skip the runtime counts, with what it means (the table's tooltip, the detail
  // and the legend say the same). `ticks: false` counts something other than ticks.
  const SKIPS = [
    ["skipped", "overlap", "ticks skipped because the previous run was still going (or waiting for a worker); with a coordinator, also ticks skipped because another replica was still running an earlier one", true],
    ["skipped_paused", "paused", "ticks that came while the service was paused", true],
    ["skipped_misfire", "misfired", "ticks that could not start within their misfire grace (a suspend, a clock jump, a full worker pool, the process being down) and that the misfire policy did not run", true],
    ["skipped_late", "claimed too late", "cluster mode: ticks not run because no claim came back from the coordinator before the next tick was due", true],
    ["retries_dropped", "retries dropped", "retries of a failed run not made because the next tick came first", false],
    ["claimed_elsewhere", "run elsewhere", "cluster mode: ticks another replica claimed and ran (not lost: run once, there)", false],
  ];
  const HISTORY_PAGE = 20;
  const FILTERS = [
    ["", "all outcomes"],
    ["failed,panicked,timed_out", "any failure"],
    ["succeeded", "ok"], ["failed", "failed"], ["panicked", "panicked"], ["timed_out", "timed out"],
    ["aborted", "aborted"], ["skipped", "skipped"], ["abandoned", "abandoned"], ["running", "running"],
  ];
  const ACTIONS = {
    "run-now": "Run now", pause: "Pause", resume: "Resume", disable: "Disable", enable: "Enable",
  };

  const $ = (id) => document.getElementById(id);
  const rows = new Map(); // service name -> { tr, cells, buttons }
  let selected = null; // the service shown in the detail view
  let skew = 0; // server clock minus browser clock, in ms
  let readOnly = false; // the server refuses every action
  // The history view: its outcome filter, and the `before` cursors of the pages above the one
  // shown (empty: the newest page).
  const historyView = { outcome: "", above: [], next: null };

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

  function icon(shape) {
    return el("span", { class: `icon icon-${shape}`, "aria-hidden": "true" });
  }

  function badge(state) {
    const [shape, text] = STATES[state] || ["dot", state];
    return el("span", { class: `badge state-${state}`, "data-state": state }, icon(shape), text);
  }

  function outcome(kind) {
    if (!kind) return el("span", { class: "sub" }, "–");
    const [shape, text] = OUTCOMES[kind] || ["dot", kind];
    return el("span", { class: `outcome outcome-${kind}` }, icon(shape), text);
  }

  // The non-zero skip kinds of a service: [field, count, label, meaning, ticks].
  function skipsOf(service) {
    return SKIPS.filter(([key]) => service[key] > 0)
      .map(([key, label, meaning, ticks]) => [key, service[key], label, meaning, ticks]);
  }

  function skipCell(service) {
    const kinds = skipsOf(service);
    const ticks = kinds.filter((k) => k[4]).reduce((sum, k) => sum + k[1], 0);
    const cell = el("span", { class: "skips" }, el("span", { class: "skip-total" }, String(ticks)));
    if (kinds.length) {
      cell.title = kinds.map(([, n, label, meaning]) => `${n} ${label}: ${meaning}`).join("\n");
      cell.append(el("span", { class: "sub skip-kinds" },
        kinds.map(([, n, label]) => `${n} ${label}`).join(" · ")));
    }
    return cell;
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
      const [shape, text] = OUTCOMES[kind] || ["dot", kind];
      const mark = el("span", { class: `outcome-${kind}`, title: text }, icon(shape));
      return mark;
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
      fill(c.skipped, skipCell(service));
      fill(c.recent, sparkline(service.recent));
      // Each pair shows the one that changes the state; a disabled service can only be enabled
      // (nothing of it runs, and pausing it would say nothing).
      const disabled = service.state === "disabled";
      const paused = service.state === "paused";
      row.buttons.disable.hidden = disabled;
      row.buttons.enable.hidden = !disabled;
      row.buttons.pause.hidden = paused || disabled;
      row.buttons.resume.hidden = !paused || disabled;
      row.buttons["run-now"].hidden = disabled;
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
    field(list, "Runs / failures", `${s.runs} / ${s.failures}`);
    const skips = skipsOf(s);
    field(list, "Skipped", skips.length === 0 ? "nothing skipped" : el("ul", { class: "skip-list" },
      ...skips.map(([key, n, label, meaning]) =>
        el("li", { "data-skip": key }, el("strong", {}, `${n} ${label}`), ` — ${meaning}`))));
    if (s.coordinator_error) field(list, "Coordinator", s.coordinator_error);
    if (s.held_elsewhere) field(list, s.held_elsewhere.running_earlier ? "Blocked by" : "Last tick run by",
      `${s.held_elsewhere.replica} (tick ${absolute(s.held_elsewhere.tick)})`);
    if (s.pending_report) field(list, "End of run not recorded yet", `tick ${absolute(s.pending_report)}`);
    $("detail-error-box").hidden = !s.last_error;
    $("detail-error").textContent = s.last_error || "";
    const upcoming = $("detail-upcoming");
    upcoming.replaceChildren(...detail.schedule.upcoming.map((t) =>
      el("li", {}, `${absolute(t)} (${relative(t)})`)));
    if (detail.schedule.upcoming.length === 0) upcoming.append(el("li", { class: "sub" }, "not scheduled"));
    $("detail").hidden = false;
  }

  function historyPath(name) {
    const query = new URLSearchParams({ limit: String(HISTORY_PAGE) });
    if (historyView.outcome) query.set("outcome", historyView.outcome);
    const before = historyView.above[historyView.above.length - 1];
    if (before) query.set("before", before);
    return servicePath(name, `/history?${query}`);
  }

  // One page of the history, as the filter and the paging buttons ask.
  function renderHistory(page, error) {
    const runs = error ? [] : page.runs;
    historyView.next = error ? null : page.next;
    const note = $("detail-history-note");
    const filtered = historyView.outcome !== "";
    note.hidden = !(error || runs.length === 0);
    note.textContent = error ? `History unavailable: ${error}`
      : filtered ? "No runs with this outcome on this page." : "No runs recorded.";
    $("history-box").hidden = runs.length === 0;
    const depth = historyView.above.length;
    $("history-page").textContent = depth === 0
      ? `newest ${runs.length} runs` : `older runs, page ${depth + 1} (${runs.length} runs)`;
    $("history-newer").disabled = depth === 0;
    $("history-older").disabled = !historyView.next;
    document.querySelector("#history tbody").replaceChildren(...runs.map((run) => el("tr", {
      "data-attempt": String(run.attempt), "data-outcome": run.outcome || "running" },
      el("td", {}, absolute(run.tick)),
      el("td", {}, absolute(run.started)),
      el("td", {}, duration(run.duration_secs)),
      el("td", { class: "col-outcome" }, run.outcome ? outcome(run.outcome) : "running"),
      el("td", { class: "col-error" }, run.error || ""),
      el("td", { class: "num col-attempt", title: run.attempt > 1 ? "a retry (or a takeover) of this tick" : "" },
        run.attempt > 1 ? `${run.attempt} (retry)` : String(run.attempt)),
      el("td", {}, run.replica || "this one"))));
  }

  function resetHistory() {
    historyView.above = [];
    historyView.next = null;
  }

  // What each icon and each skip kind means, under the table.
  function renderLegend() {
    const legend = $("legend");
    const entry = (...children) => el("li", {}, ...children);
    legend.append(
      el("h3", {}, "States"),
      el("ul", {}, ...Object.keys(STATES).map((state) => entry(badge(state)))),
      el("h3", {}, "Outcomes"),
      el("ul", {}, ...Object.keys(OUTCOMES).map((kind) => entry(outcome(kind)))),
      el("h3", {}, "Skipped"),
      el("dl", { id: "legend-skips" }, ...SKIPS.flatMap(([key, label, meaning]) => [
        el("dt", { "data-skip": key }, label), el("dd", {}, meaning)])),
    );
  }

  function openDetail(name) {
    if (name !== selected) resetHistory();
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
      renderCoordinator(list.coordinator);
      renderList(list.services);
      if (selected !== null) {
        const name = selected;
        try {
          renderDetail(await request("GET", servicePath(name)));
        } catch (error) {
          show(`Cannot show ${name}: ${error.message}`, "error");
          closeDetail();
        }
        if (selected === name) {
          try {
            renderHistory(await request("GET", historyPath(name)));
          } catch (error) {
            renderHistory(null, error.message);
          }
        }
      }
    } catch (error) {
      $("summary").textContent = `Cannot reach the server: ${error.message} (retrying)`;
    }
    timer = setTimeout(refresh, POLL_MS);
  }

  // The banner: shown while this replica's calls to the coordinator fail (its runs wait, and
  // what the page shows of the cluster may be stale).
  function renderCoordinator(health) {
    const banner = $("coordinator-banner");
    const down = Boolean(health) && health.state === "unreachable";
    banner.hidden = !down;
    if (!down) {
      banner.replaceChildren();
      return;
    }
    banner.replaceChildren(
      `This replica cannot reach the coordinator's database since ${absolute(health.since)} (`,
      when(health.since),
      `): ${health.last_error}. Coordinated runs wait until it answers again; pauses and ` +
        "resumes made here are applied here and written once it is back.");
  }

  // The replicas panel: its own poll, so the services' refresh stays as it is.
  let replicasTimer = null;
  async function refreshReplicas() {
    clearTimeout(replicasTimer);
    try {
      renderReplicas(await request("GET", "api/replicas"));
    } catch (error) {
      const note = $("replicas-note");
      note.hidden = false;
      note.textContent = `Cannot read the replicas: ${error.message} (retrying)`;
    }
    replicasTimer = setTimeout(refreshReplicas, POLL_MS);
  }

  function renderReplicas(body) {
    $("replicas").hidden = false;
    const note = $("replicas-note");
    note.hidden = !body.name_shared_with;
    note.textContent = body.name_shared_with
      ? `Another process (${body.name_shared_with}) uses this replica's name "${body.replica}": give each replica its own name.`
      : "";
    const rows = body.replicas.map((replica) => {
      const name = el("th", { scope: "row" }, replica.name);
      if (replica.this_replica) name.append(" (this one)");
      const status = replica.name_shared ? `${replica.status}, name shared` : replica.status;
      const held = replica.services_held.length
        ? replica.services_held.join(", ")
        : "nothing";
      return el("tr", { "data-replica": replica.name, class: `replica-${replica.status}` },
        name,
        el("td", { class: "replica-status" }, status),
        el("td", {}, replica.version),
        el("td", {}, when(replica.started)),
        el("td", {}, when(replica.last_seen)),
        el("td", { class: "replica-held" }, held));
    });
    $("replica-list").tBodies[0].replaceChildren(...rows);
  }

  // The token is checked by the server as soon as it is set (and when the page loads with one),
  // so a wrong one is said to be refused before the operator's first action.
  async function showTokenState() {
    const state = $("token-state");
    if (!token()) {
      state.textContent = "no token: actions will be refused";
      state.dataset.check = "missing";
      return;
    }
    state.textContent = "checking the token…";
    state.dataset.check = "checking";
    try {
      const response = await fetch("api/access", {
        headers: { Accept: "application/json", Authorization: `Bearer ${token()}` },
        cache: "no-store", credentials: "omit",
      });
      const body = await response.json();
      state.dataset.check = body.token;
      state.textContent = body.token === "accepted" ? "token accepted for this tab"
        : body.token === "refused" ? "token refused: actions will be refused (enter the right one)"
        : `token not checked (${body.token})`;
    } catch (error) {
      state.dataset.check = "unknown";
      state.textContent = `token set, but not checked: ${error.message}`;
    }
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
    const filter = $("history-outcome");
    for (const [value, label] of FILTERS) filter.append(el("option", { value }, label));
    filter.addEventListener("change", () => {
      historyView.outcome = filter.value;
      resetHistory();
      refresh();
    });
    $("history-older").addEventListener("click", () => {
      if (!historyView.next) return;
      historyView.above.push(historyView.next);
      refresh();
    });
    $("history-newer").addEventListener("click", () => {
      resetHistory();
      refresh();
    });
    renderLegend();
    $("reload").addEventListener("click", reloadConfig);
    showTokenState();
    const match = /^#service=(.+)$/.exec(location.hash);
    if (match) selected = decodeURIComponent(match[1]);
    refresh();
    refreshReplicas();
  }

  setUp();
})();
