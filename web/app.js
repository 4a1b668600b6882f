// @ts-check
// Stasis Mirror Sync web UI: plain ES modules, no build step, no network but the API.
// Every piece of server data reaches the page through textContent, never as markup.

const TOKEN_KEY = "stasis.token";
const POLL_MS = 1000;
const SYNCED_FLASH_MS = 3000;

/** @typedef {{ username: string, is_admin: boolean }} Me */
/** @type {Me | null} */
let me = null;

class ApiError extends Error {
  /** @param {number} status @param {string} code @param {string} message */
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/**
 * @param {string} method
 * @param {string} path under /api/v1
 * @param {unknown} [body]
 * @returns {Promise<any>}
 */
/**
 * What the API process answering refused or held back since it started (abuse limits).
 * @param {any} r
 */
function refusals(r) {
  if (!r) return "";
  const limited = r.rate_limited_read + r.rate_limited_write + r.rate_limited_import;
  return `This API process since start: ${limited} rate-limited (read ${r.rate_limited_read}, write ${r.rate_limited_write}, import ${r.rate_limited_import}) · ${r.coalesced_syncs} sync requests coalesced · ${r.timeouts} timed out · ${r.overloaded} shed`;
}

async function api(method, path, body) {
  /** @type {Record<string, string>} */
  const headers = {};
  const token = localStorage.getItem(TOKEN_KEY);
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let resp;
  try {
    resp = await fetch(`/api/v1${path}`, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch {
    throw new ApiError(0, "network", "The server cannot be reached.");
  }
  const data = await resp.json().catch(() => null);
  if (!resp.ok) {
    throw new ApiError(resp.status, data?.code ?? "error", data?.error ?? resp.statusText);
  }
  return data;
}

/**
 * Builds an element; strings become text nodes.
 * @param {string} tag
 * @param {Record<string, any>} [attrs]
 * @param {...(Node | string | null | undefined | false)} children
 * @returns {HTMLElement}
 */
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "text") el.textContent = String(value);
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    el.append(typeof child === "string" ? document.createTextNode(child) : child);
  }
  return el;
}

/** "2m ago", "5h ago", "in 3m": the coarsest unit that is at least 1. */
export function relative(iso, now = Date.now()) {
  if (!iso) return "never";
  const secs = Math.round((now - Date.parse(iso)) / 1000);
  const abs = Math.abs(secs);
  const [n, unit] =
    abs < 60 ? [abs, "s"] : abs < 3600 ? [Math.floor(abs / 60), "m"]
      : abs < 86400 ? [Math.floor(abs / 3600), "h"] : [Math.floor(abs / 86400), "d"];
  if (abs < 5) return "just now";
  return secs >= 0 ? `${n}${unit} ago` : `in ${n}${unit}`;
}

/** @param {string} message */
function toast(message) {
  const el = /** @type {HTMLElement} */ (document.getElementById("toast"));
  el.textContent = message;
  setTimeout(() => { if (el.textContent === message) el.textContent = ""; }, 4000);
}

function main() {
  return /** @type {HTMLElement} */ (document.getElementById("main"));
}

/** @param {string} title @param {...HTMLElement} content */
function page(title, ...content) {
  document.title = `${title} · Stasis Mirror Sync`;
  main().replaceChildren(h("h1", { text: title }), ...content);
  for (const a of document.querySelectorAll("nav a")) {
    if (a.getAttribute("href") === location.hash) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
}

// ---- sign-in -------------------------------------------------------------------------

function signIn() {
  const error = h("p", { id: "token-error", class: "form-error", role: "alert" });
  const input = h("input", {
    id: "token", type: "password", name: "token", required: true,
    autocomplete: "off", "aria-describedby": "token-help token-error",
  });
  const form = h("form", {
    onsubmit: async (/** @type {Event} */ e) => {
      e.preventDefault();
      const token = /** @type {HTMLInputElement} */ (input).value.trim();
      localStorage.setItem(TOKEN_KEY, token);
      try {
        me = await api("GET", "/user");
        location.hash = "#/mirrors";
        route();
      } catch (err) {
        localStorage.removeItem(TOKEN_KEY);
        error.textContent = err.status === 401 ? "That token is not valid." : err.message;
        input.setAttribute("aria-invalid", "true");
        input.focus();
      }
    },
  },
  h("label", { for: "token", text: "API token" }),
  h("p", { id: "token-help", class: "muted", text: "Create one with `stasisctl user create NAME`. It is kept in this browser only." }),
  input, error,
  h("p", {}, h("button", { type: "submit", class: "primary", text: "Sign in" })));
  page("Sign in", form);
  input.focus();
}

function signOut() {
  localStorage.removeItem(TOKEN_KEY);
  me = null;
  location.hash = "";
  route();
}

// ---- mirrors -------------------------------------------------------------------------

const STATUSES = ["idle", "queued", "syncing", "success", "failed", "hard_failed"];

async function mirrors() {
  const params = new URLSearchParams(location.hash.split("?")[1] ?? "");
  const status = params.get("status") ?? "";
  const filter = h("select", {
    id: "status-filter",
    onchange: (/** @type {Event} */ e) => {
      const v = /** @type {HTMLSelectElement} */ (e.target).value;
      location.hash = v ? `#/mirrors?status=${v}` : "#/mirrors";
    },
  }, h("option", { value: "", text: "All" }),
  ...STATUSES.map((s) => h("option", { value: s, selected: s === status, text: s })));
  const list = h("ul", { class: "cards", "aria-label": "Mirrors" });
  page("Mirrors",
    h("div", { class: "toolbar" },
      h("div", {}, h("label", { for: "status-filter", text: "Status" }), filter)),
    list);
  const query = new URLSearchParams({ mirror: "true", per_page: "100" });
  if (status) query.set("sync_status", status);
  try {
    const result = await api("GET", `/users/${encodeURIComponent(me?.username ?? "")}/repos?${query}`);
    if (result.repos.length === 0) {
      list.replaceWith(h("p", { class: "muted" }, "No mirrors here yet. ",
        h("a", { href: "#/import", text: "Import one" }), "."));
      return;
    }
    for (const repo of result.repos) list.append(h("li", {}, mirrorCard(repo)));
  } catch (err) {
    list.replaceWith(h("p", { class: "form-error", role: "alert", text: err.message }));
  }
}

/**
 * The seed's MirrorSyncButton with the mirror's status: idle shows the last sync and
 * "Sync now"; syncing spins and disables the button while it polls; success shows
 * "Synced!" in green for three seconds; failure shows the error in red.
 * @param {any} repo
 */
function mirrorCard(repo) {
  const base = `/repos/${encodeURIComponent(repo.owner)}/${encodeURIComponent(repo.name)}`;
  const badge = h("span", { class: "badge", "data-testid": "sync-state" });
  const button = h("button", { type: "button", class: "primary", text: "Sync now" });
  const last = h("dd", { "data-testid": "last-sync" });
  const next = h("dd");
  const upstream = h("dd", { text: repo.mirror_url ?? "" });
  const error = h("p", { class: "error-text", role: "alert", "data-testid": "sync-error", hidden: true });
  const history = h("div", { class: "table-wrap" });
  const details = h("details", {
    ontoggle: () => { if (/** @type {HTMLDetailsElement} */ (details).open) loadHistory(); },
  }, h("summary", { text: "Recent syncs" }), history);
  const card = h("article", { class: "card", "aria-label": repo.full_name, "data-repo": repo.full_name },
    h("h2", { text: repo.full_name }),
    h("dl", {}, h("dt", { text: "Upstream" }), upstream, h("dt", { text: "Last sync" }), last,
      h("dt", { text: "Next sync" }), next),
    h("div", { class: "sync" }, button, badge),
    error, details);
  /** @type {number | undefined} */
  let poller;
  let flashing = false;

  /** @param {"idle" | "syncing" | "success" | "failed"} view @param {any} status */
  function show(view, status) {
    last.textContent = relative(status.last_synced_at);
    last.title = status.last_synced_at ?? "";
    next.textContent = status.next_sync_at ? relative(status.next_sync_at) : "not scheduled";
    const syncing = view === "syncing";
    /** @type {HTMLButtonElement} */ (button).disabled = syncing;
    button.setAttribute("aria-busy", String(syncing));
    badge.className = "badge";
    badge.replaceChildren();
    error.hidden = true;
    if (syncing) {
      badge.classList.add("busy");
      badge.append(h("span", { class: "spin", "aria-hidden": "true" }),
        status.sync_status === "queued" ? "Queued" : "Syncing");
    } else if (view === "success") {
      badge.classList.add("ok");
      badge.append("Synced!");
    } else if (view === "failed") {
      badge.classList.add("bad");
      badge.append("Failed");
      error.textContent = status.sync_error || "The last sync failed.";
      if (status.sync_status === "hard_failed") {
        error.textContent += " Scheduled syncs stopped: Sync now or a new upstream URL resumes them.";
      }
      error.hidden = false;
    } else {
      badge.append(status.sync_status === "success" ? "Up to date" : status.sync_status);
    }
  }

  /** @param {any} status */
  function settle(status) {
    if (status.sync_status === "queued" || status.sync_status === "syncing") {
      show("syncing", status);
      if (poller === undefined) poller = window.setInterval(poll, POLL_MS);
      return;
    }
    if (poller !== undefined) {
      window.clearInterval(poller);
      poller = undefined;
      if (status.sync_status === "success") {
        flashing = true;
        show("success", status);
        setTimeout(() => { flashing = false; show("idle", status); }, SYNCED_FLASH_MS);
        if (/** @type {HTMLDetailsElement} */ (details).open) loadHistory();
        return;
      }
      if (/** @type {HTMLDetailsElement} */ (details).open) loadHistory();
    }
    const failed = status.sync_status === "failed" || status.sync_status === "hard_failed";
    if (!flashing) show(failed ? "failed" : "idle", status);
  }

  async function poll() {
    // a card replaced by a re-render stops polling (the first poll runs before it is shown)
    if (poller !== undefined && !card.isConnected) { window.clearInterval(poller); return; }
    try {
      settle(await api("GET", `${base}/mirror/status`));
    } catch (err) {
      toast(`${repo.full_name}: ${err.message}`);
    }
  }

  async function loadHistory() {
    try {
      const { runs } = await api("GET", `${base}/mirror/history?limit=5`);
      history.replaceChildren(runs.length === 0 ? h("p", { class: "muted", text: "No syncs yet." })
        : h("table", {},
          h("thead", {}, h("tr", {}, ...["Started", "Outcome", "Took", "Refs"].map((t) => h("th", { scope: "col", text: t })))),
          h("tbody", {}, ...runs.map((/** @type {any} */ r) => h("tr", {},
            h("td", { text: relative(r.started_at), title: r.started_at }),
            h("td", { text: r.outcome ?? "running" }),
            h("td", { text: r.duration_ms == null ? "-" : `${r.duration_ms} ms` }),
            h("td", { text: r.unchanged ? "unchanged" : `+${r.refs_updated} -${r.refs_pruned}` }))))));
    } catch (err) {
      history.replaceChildren(h("p", { class: "form-error", text: err.message }));
    }
  }

  button.addEventListener("click", async () => {
    /** @type {HTMLButtonElement} */ (button).disabled = true;
    try {
      const accepted = await api("POST", `${base}/sync`);
      settle({ ...(await api("GET", `${base}/mirror/status`)), sync_status: accepted.status === "syncing" ? "syncing" : "queued" });
    } catch (err) {
      /** @type {HTMLButtonElement} */ (button).disabled = false;
      toast(`${repo.full_name}: ${err.message}`);
    }
  });
  poll();
  return card;
}

// ---- import --------------------------------------------------------------------------

/** Which field an API error code is about. */
const FIELD_OF_CODE = {
  invalid_name: "name", conflict: "name",
  invalid_url: "clone_url", blocked_url: "clone_url", credentials_unsupported: "clone_url",
};

function importForm() {
  /** @param {string} id @param {string} label @param {Record<string, any>} attrs */
  const field = (id, label, attrs) => {
    const input = h("input", { id, name: id, "aria-describedby": `${id}-error`, ...attrs });
    return [h("label", { for: id, text: label }), input,
      h("p", { id: `${id}-error`, class: "field-error", "data-testid": `${id}-error` })];
  };
  const formError = h("p", { class: "form-error", role: "alert" });
  const form = h("form", { novalidate: true },
    ...field("name", "Repository name", { type: "text", required: true, autocomplete: "off" }),
    ...field("clone_url", "Clone URL", { type: "text", required: true, inputmode: "url", placeholder: "https://example.com/owner/repo.git" }),
    h("label", { class: "inline" }, h("input", { id: "mirror", name: "mirror", type: "checkbox", checked: true }), "Keep it as a mirror (sync on a schedule)"),
    formError,
    h("p", {}, h("button", { type: "submit", class: "primary", text: "Import" })));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const data = new FormData(/** @type {HTMLFormElement} */ (form));
    for (const el of form.querySelectorAll(".field-error")) el.textContent = "";
    for (const el of form.querySelectorAll("[aria-invalid]")) el.removeAttribute("aria-invalid");
    formError.textContent = "";
    /** @param {string} id @param {string} message */
    const invalid = (id, message) => {
      const input = /** @type {HTMLElement} */ (form.querySelector(`#${id}`));
      input.setAttribute("aria-invalid", "true");
      /** @type {HTMLElement} */ (form.querySelector(`#${id}-error`)).textContent = message;
      input.focus();
    };
    const name = String(data.get("name") ?? "").trim();
    const url = String(data.get("clone_url") ?? "").trim();
    if (!name) return invalid("name", "A name is required.");
    if (!url) return invalid("clone_url", "A clone URL is required.");
    try {
      await api("POST", "/repos/import", { name, clone_url: url, mirror: data.get("mirror") === "on" });
      toast(`${name} imported; its first sync is queued.`);
      location.hash = "#/mirrors";
    } catch (err) {
      const id = FIELD_OF_CODE[/** @type {keyof FIELD_OF_CODE} */ (err.code)];
      if (id) invalid(id, err.message);
      else formError.textContent = err.message;
    }
  });
  page("Import a repository", form);
}

// ---- operator ------------------------------------------------------------------------

const JOB_STATES = ["pending", "running", "done", "failed", "dead"];

async function operator() {
  if (!me?.is_admin) {
    page("Operator", h("p", { class: "form-error", text: "This page needs an admin token." }));
    return;
  }
  const params = new URLSearchParams(location.hash.split("?")[1] ?? "");
  const state = params.get("state") ?? "";
  const overview = h("section", { "aria-label": "Queue" });
  const jobs = h("section", { "aria-label": "Jobs" });
  const filter = h("select", {
    id: "job-state",
    onchange: (/** @type {Event} */ e) => {
      const v = /** @type {HTMLSelectElement} */ (e.target).value;
      location.hash = v ? `#/operator?state=${v}` : "#/operator";
    },
  }, h("option", { value: "", text: "All" }),
  ...JOB_STATES.map((s) => h("option", { value: s, selected: s === state, text: s })));
  page("Operator", overview,
    h("h2", { text: "Jobs" }),
    h("div", { class: "toolbar" }, h("div", {}, h("label", { for: "job-state", text: "Job state" }), filter)),
    jobs);

  try {
    const q = await api("GET", "/admin/queue");
    overview.replaceChildren(
      h("ul", { class: "stats", "aria-label": "Jobs per state" },
        ...JOB_STATES.map((s) => h("li", { "data-testid": `depth-${s}` }, h("strong", { text: String(q.jobs[s] ?? 0) }), s))),
      h("p", { class: "muted", text: `Oldest pending: ${q.oldest_pending_age_seconds == null ? "none" : `${Math.round(q.oldest_pending_age_seconds)}s`} · finished in the last minute: ${q.throughput.last_1m}, hour: ${q.throughput.last_1h} · scheduler ${q.scheduler.paused ? "paused" : "running"}` }),
      h("p", { class: "muted", "data-testid": "api-refusals", text: refusals(q.api_refusals) }),
      h("h2", { text: `Workers alive (${q.workers.length})` }),
      h("div", { class: "table-wrap" }, h("table", {},
        h("thead", {}, h("tr", {}, ...["Worker", "Host", "In flight", "Last heartbeat"].map((t) => h("th", { scope: "col", text: t })))),
        h("tbody", {}, ...q.workers.map((/** @type {any} */ w) => h("tr", {},
          h("td", { text: w.name }), h("td", { text: w.host }),
          h("td", { text: `${w.jobs_in_flight} / ${w.concurrency}` }),
          h("td", { text: relative(w.last_heartbeat_at) })))))));
  } catch (err) {
    overview.replaceChildren(h("p", { class: "form-error", text: err.message }));
  }

  try {
    const query = new URLSearchParams({ per_page: "50" });
    if (state) query.set("state", state);
    const list = await api("GET", `/admin/jobs?${query}`);
    if (list.jobs.length === 0) {
      jobs.replaceChildren(h("p", { class: "muted", text: "No jobs." }));
      return;
    }
    jobs.replaceChildren(h("div", { class: "table-wrap" }, h("table", {},
      h("thead", {}, h("tr", {}, ...["Repository", "Reason", "State", "Attempts", "Enqueued", "Last error", "Actions"].map((t) => h("th", { scope: "col", text: t })))),
      h("tbody", {}, ...list.jobs.map(jobRow)))));
  } catch (err) {
    jobs.replaceChildren(h("p", { class: "form-error", text: err.message }));
  }
}

/** @param {any} job */
function jobRow(job) {
  /** @param {"retry" | "discard"} action */
  const act = (action) => h("button", {
    type: "button",
    text: action === "retry" ? "Retry" : "Discard",
    "aria-label": `${action === "retry" ? "Retry" : "Discard"} ${job.repo} job`,
    onclick: async () => {
      try {
        await api("POST", `/admin/jobs/${job.id}/${action}`);
        toast(`${job.repo}: job ${action === "retry" ? "sent back to the queue" : "discarded"}.`);
      } catch (err) {
        toast(`${job.repo}: ${err.message}`);
      }
      operator();
    },
  });
  const actions = [];
  if (job.state === "failed" || job.state === "dead") actions.push(act("retry"));
  if (job.state === "pending" || job.state === "failed") actions.push(act("discard"));
  return h("tr", { "data-job": job.id, "data-repo": job.repo },
    h("td", { text: job.repo }), h("td", { text: job.reason }),
    h("td", { text: job.state, "data-testid": "job-state" }),
    h("td", { text: `${job.attempts} / ${job.max_attempts}` }),
    h("td", { text: relative(job.enqueued_at), title: job.enqueued_at }),
    h("td", { text: job.last_error ?? "" }),
    h("td", {}, ...actions));
}

// ---- routing -------------------------------------------------------------------------

async function route() {
  const nav = /** @type {HTMLElement} */ (document.getElementById("nav"));
  if (!localStorage.getItem(TOKEN_KEY)) {
    nav.hidden = true;
    signIn();
    return;
  }
  if (!me) {
    try {
      me = await api("GET", "/user");
    } catch (err) {
      if (err.status === 401) { signOut(); return; }
      page("Stasis Mirror Sync", h("p", { class: "form-error", role: "alert", text: err.message }));
      return;
    }
  }
  nav.hidden = false;
  /** @type {HTMLElement} */ (document.getElementById("whoami")).textContent =
    `${me?.username}${me?.is_admin ? " (admin)" : ""}`;
  /** @type {HTMLElement} */ (document.getElementById("nav-operator")).hidden = !me?.is_admin;
  const path = location.hash.split("?")[0];
  if (path === "#/import") importForm();
  else if (path === "#/operator") await operator();
  else await mirrors();
  main().focus();
}

document.getElementById("sign-out")?.addEventListener("click", signOut);
window.addEventListener("hashchange", route);
route();
