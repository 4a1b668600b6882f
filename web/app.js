// @ts-check
// Stasis Mirror Sync web UI: plain ES modules, no build step, no network but the API.
// Every piece of server data reaches the page through textContent, never as markup.

import {
  POLL_MS, SYNCED_FLASH_MS, TOKEN_KEY, api, h, humanSize, main, page, relative, toast,
} from "./lib.js";
import { operator } from "./operator.js";
import { mirrorPage } from "./mirror.js";

/** @typedef {{ username: string, is_admin: boolean }} Me */
/** @type {Me | null} */
let me = null;

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
  h("p", { id: "token-help", class: "muted" }, "Create one with ", h("code", { text: "stasisctl user create NAME" }),
    ". It is kept in this browser only."),
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

// the seed's four (`failed` includes `hard_failed`, `syncing` includes `queued`), then
// the two states only this service has
const STATUSES = ["idle", "syncing", "success", "failed", "queued", "hard_failed"];

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
    // an admin sees the fleet: every owner's mirrors
    const listing = me?.is_admin ? "/repos" : `/users/${encodeURIComponent(me?.username ?? "")}/repos`;
    const result = await api("GET", `${listing}?${query}`);
    if (result.repos.length === 0 && status) {
      list.replaceWith(h("p", { class: "muted" }, `No mirrors with status ${status}. `,
        h("a", { href: "#/mirrors", text: "Show all" }), "."));
    } else if (result.repos.length === 0) {
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
  // the size is known once a sync has stored it; until then neither term nor value shows
  const sizeTerm = h("dt", { text: "Size", hidden: true });
  const size = h("dd", { "data-testid": "size", hidden: true });
  const upstream = h("dd", { class: "url", text: repo.mirror_url ?? "", title: repo.mirror_url ?? "" });
  const error = h("p", { class: "error-text", role: "alert", "data-testid": "sync-error", hidden: true });
  const history = h("div", { class: "table-wrap" });
  const details = h("details", {
    ontoggle: () => { if (/** @type {HTMLDetailsElement} */ (details).open) loadHistory(); },
  }, h("summary", { text: "Recent syncs" }), history);
  const card = h("article", { class: "card", "aria-label": repo.full_name, "data-repo": repo.full_name },
    h("h2", {}, h("a", { href: `#/mirror/${encodeURIComponent(repo.owner)}/${encodeURIComponent(repo.name)}`, text: repo.full_name })),
    h("dl", {}, h("dt", { text: "Upstream" }), upstream, h("dt", { text: "Last sync" }), last,
      h("dt", { text: "Next sync" }), next, sizeTerm, size),
    h("div", { class: "sync" }, button, badge),
    error, details);
  /** @type {number | undefined} */
  let poller;
  let flashing = false;

  /** @param {"idle" | "syncing" | "success" | "failed"} view @param {any} status */
  function show(view, status) {
    last.textContent = relative(status.last_synced_at);
    last.title = status.last_synced_at ?? "";
    if (!status.last_synced_at && status.last_attempt_at) {
      last.textContent += ` (last attempt ${relative(status.last_attempt_at)})`;
    }
    next.textContent = status.next_sync_at ? relative(status.next_sync_at) : "not scheduled";
    const known = typeof status.size_bytes === "number";
    sizeTerm.hidden = !known;
    size.hidden = !known;
    size.textContent = known ? humanSize(status.size_bytes) : "";
    size.title = known ? `${status.size_bytes} bytes` : "";
    const syncing = view === "syncing";
    /** @type {HTMLButtonElement} */ (button).disabled = syncing;
    button.setAttribute("aria-busy", String(syncing));
    badge.className = "badge";
    badge.replaceChildren();
    error.hidden = true;
    const job = status.job;
    const retrying = syncing && job?.state === "pending" && job.attempts > 0;
    if (retrying) {
      badge.classList.add("busy");
      badge.append(`Retrying (attempt ${job.attempts} of ${job.max_attempts} failed)`);
      error.textContent = `${job.last_error || "The last attempt failed."} Next retry ${relative(job.run_at)}.`;
      error.hidden = false;
    } else if (syncing) {
      badge.classList.add("busy");
      badge.append(h("span", { class: "spin", "aria-hidden": "true" }),
        status.sync_state === "queued" ? "Queued" : "Syncing");
    } else if (view === "success") {
      badge.classList.add("ok");
      badge.append("Synced!");
    } else if (view === "failed") {
      badge.classList.add("bad");
      badge.append(status.sync_state === "hard_failed" ? "Failed, not scheduled" : "Failed");
      error.textContent = status.sync_error || "The last sync failed.";
      if (status.sync_state === "hard_failed") {
        error.textContent += " Scheduled syncs stopped: Sync now or a new upstream URL resumes them.";
      }
      error.hidden = false;
    } else {
      badge.append(status.sync_state === "success" ? "Up to date" : status.sync_state);
    }
  }

  /** @param {any} status */
  function settle(status) {
    if (status.sync_state === "queued" || status.sync_state === "syncing") {
      show("syncing", status);
      if (poller === undefined) poller = window.setInterval(poll, POLL_MS);
      return;
    }
    if (poller !== undefined) {
      window.clearInterval(poller);
      poller = undefined;
      if (status.sync_state === "success") {
        flashing = true;
        show("success", status);
        setTimeout(() => { flashing = false; show("idle", status); }, SYNCED_FLASH_MS);
        if (/** @type {HTMLDetailsElement} */ (details).open) loadHistory();
        return;
      }
      if (/** @type {HTMLDetailsElement} */ (details).open) loadHistory();
    }
    const failed = status.sync_state === "failed" || status.sync_state === "hard_failed";
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
        : h("table", { class: "stack" },
          h("thead", {}, h("tr", {}, ...["Started", "Outcome", "Took", "Refs"].map((t) => h("th", { scope: "col", text: t })))),
          h("tbody", {}, ...runs.map((/** @type {any} */ r) => h("tr", {},
            h("td", { text: relative(r.started_at), title: r.started_at, "data-label": "Started" }),
            h("td", { text: r.error ? `${r.outcome}: ${r.error}` : (r.outcome ?? "running"), "data-label": "Outcome" }),
            h("td", { text: r.duration_ms == null ? "-" : `${r.duration_ms} ms`, "data-label": "Took" }),
            h("td", { text: r.unchanged ? "unchanged" : `+${r.refs_updated} -${r.refs_pruned}`, "data-label": "Refs" }))))));
    } catch (err) {
      history.replaceChildren(h("p", { class: "form-error", text: err.message }));
    }
  }

  button.addEventListener("click", async () => {
    /** @type {HTMLButtonElement} */ (button).disabled = true;
    try {
      const accepted = await api("POST", `${base}/sync`);
      settle({ ...(await api("GET", `${base}/mirror/status`)), sync_state: accepted.sync_state === "syncing" ? "syncing" : "queued" });
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
  const one = path.match(/^#\/mirror\/([^/]+)\/([^/]+)$/);
  if (one) await mirrorPage(decodeURIComponent(one[1]), decodeURIComponent(one[2]));
  else if (path === "#/import") importForm();
  else if (path === "#/operator") await operator(me);
  else await mirrors();
  main().focus();
}

document.getElementById("sign-out")?.addEventListener("click", signOut);
window.addEventListener("hashchange", route);
route();
