// @ts-check
// The Mirrors page: a mirror owner's own mirrors, or for an admin the whole fleet,
// filtered by status, owner, upstream host and name, sorted (failing first unless asked
// otherwise), paged, with a sync of the mirrors selected or of every failed one shown.
// As cards, each the mirror's sync button, or as a table (web/fleet.js) for a fleet.

import { POLL_MS, SYNCED_FLASH_MS, api, failure, h, humanSize, loading, page, poller, progressView, refs, setMoment, timeEl, toast } from "./lib.js";
import { acceptedText, describe } from "./mirror.js";
import { SORTS, fleetTable } from "./fleet.js";

// the four public status values (`failed` includes `hard_failed`, `syncing` includes
// `queued`), then the two states only the full `sync_state` has
const STATUSES = ["idle", "syncing", "success", "failed", "queued", "hard_failed"];
const PER_PAGE = 30;
const FILTERS = ["status", "owner", "host", "q"];
/** What the address keeps besides the filters: the order and the view. */
const KEPT = [...FILTERS, "sort", "view"];
/** Failing mirrors first unless the address asks otherwise. */
const DEFAULT_SORT = "status";

/** @param {{ username: string, is_admin: boolean } | null} me */
export async function mirrors(me) {
  const params = new URLSearchParams(location.hash.split("?")[1] ?? "");
  const get = (/** @type {string} */ k) => (params.get(k) ?? "").trim();
  const pageNo = Math.max(1, Number(params.get("page") ?? "1") || 1);
  const admin = Boolean(me?.is_admin);
  const sort = SORTS.some(([v]) => v === get("sort")) ? get("sort") : DEFAULT_SORT;
  const table = get("view") === "table";
  /** @param {Record<string, string | number>} change */
  const go = (change) => {
    const next = new URLSearchParams();
    for (const k of KEPT) if (get(k)) next.set(k, get(k));
    for (const [k, v] of Object.entries(change)) next.set(k, String(v));
    for (const [k, v] of [...next]) {
      if (!v || (k === "page" && v === "1") || (k === "sort" && v === DEFAULT_SORT) || (k === "view" && v === "cards")) next.delete(k);
    }
    const q = next.toString();
    location.hash = q ? `#/mirrors?${q}` : "#/mirrors";
  };
  const status = h("select", { id: "status-filter", name: "status" }, h("option", { value: "", text: "All" }),
    ...STATUSES.map((s) => h("option", { value: s, selected: s === get("status"), text: s })));
  /** @param {string} id @param {string} label @param {string} placeholder */
  const text = (id, label, placeholder) => h("div", {}, h("label", { for: `filter-${id}`, text: label }),
    h("input", { id: `filter-${id}`, name: id, type: "text", value: get(id), placeholder, autocomplete: "off" }));
  const filters = h("form", { class: "toolbar", role: "search", "aria-label": "Filter mirrors" },
    h("div", {}, h("label", { for: "status-filter", text: "Status" }), status),
    admin ? text("owner", "Owner", "any owner") : null,
    text("host", "Upstream host", "e.g. github.com"),
    text("q", "Name contains", "owner/name"),
    h("div", {}, h("label", { for: "sort-by", text: "Sort by" }),
      h("select", { id: "sort-by", name: "sort", onchange: (/** @type {Event} */ e) => go({ sort: /** @type {HTMLSelectElement} */ (e.target).value, page: 1 }) },
        ...SORTS.map(([v, label]) => h("option", { value: v, selected: v === sort, text: label })))),
    h("div", {}, h("button", { type: "submit", text: "Filter" })));
  filters.addEventListener("submit", (e) => {
    e.preventDefault();
    const data = new FormData(/** @type {HTMLFormElement} */ (filters));
    /** @type {Record<string, string>} */
    const change = { page: "1" };
    for (const k of FILTERS) change[k] = String(data.get(k) ?? "").trim();
    go(change);
  });
  // a status picked applies at once, as before the other filters existed
  status.addEventListener("change", () => /** @type {HTMLFormElement} */ (filters).requestSubmit());
  const list = table ? h("div", {}, loading()) : h("ul", { class: "cards", "aria-label": "Mirrors" }, h("li", {}, loading()));
  /** @param {string} view @param {string} label */
  const viewLink = (view, label) => h("a", {
    href: "#", "aria-current": (view === "table") === table ? "true" : undefined, "data-view": view,
    onclick: (/** @type {Event} */ e) => { e.preventDefault(); go({ view }); },
  }, label);
  // not a `nav`: page() takes `aria-current` off links in navs outside the current route
  const views = h("div", { class: "counts views", role: "group", "aria-label": "Show mirrors as" }, viewLink("cards", "Cards"), viewLink("table", "Table"));
  const bulk = h("div", { class: "sync bulk", "data-testid": "bulk" });
  const paging = h("p", { class: "sync", "data-testid": "paging" });
  const counts = h("nav", { class: "counts", "aria-label": "Mirror counts", "data-testid": "counts" });
  page(admin ? "Mirrors (all owners)" : "Mirrors", filters, views, counts, bulk, list, paging);

  const query = new URLSearchParams({ mirror: "true", per_page: String(PER_PAGE), page: String(pageNo), sort });
  if (get("status")) query.set("sync_status", get("status"));
  if (get("host")) query.set("host", get("host"));
  if (get("q")) query.set("q", get("q"));
  const owner = admin ? get("owner") : me?.username ?? "";
  const listing = owner ? `/users/${encodeURIComponent(owner)}/repos` : "/repos";
  let result;
  try {
    result = await api("GET", `${listing}?${query}`);
  } catch (err) {
    const message = err.status === 404 && owner ? `There is no user named ${owner}.` : err.message;
    list.replaceWith(h("p", { class: "form-error", role: "alert", text: message }));
    return;
  }
  statusCounts(counts, listing, query, get("status"), go);
  const filtered = FILTERS.some((k) => get(k));
  if (result.repos.length === 0) {
    list.replaceWith(filtered || pageNo > 1
      ? h("p", { class: "muted" }, "No mirrors match these filters. ", h("a", { href: "#/mirrors", text: "Show all" }), ".")
      : h("p", { class: "muted" }, "No mirrors here yet. ", h("a", { href: "#/import", text: "Import one" }), "."));
    return;
  }
  /** @type {Map<string, HTMLInputElement>} */
  const picks = new Map();
  if (table) {
    showTable(list, result, { admin, sort, picks, bulk, listing, query, counts, status: get("status"), go, reload: () => mirrors(me) });
    paged(paging, pageNo, result.total, go);
    return;
  }
  /** @type {Map<string, (repo: any) => void>} */
  const cards = new Map();
  list.replaceChildren();
  for (const repo of result.repos) {
    const pick = admin ? /** @type {HTMLInputElement} */ (h("input", { type: "checkbox", "aria-label": `Select ${repo.full_name}` })) : null;
    if (pick) picks.set(repo.full_name, pick);
    const { card, seen } = mirrorCard(repo, pick);
    cards.set(repo.full_name, seen);
    list.append(h("li", {}, card));
  }
  // one listing request every 15 s tells each card whether its mirror moved (a scheduled
  // sync, one started elsewhere); only a card whose mirror moved asks for its status.
  // The counts are asked again with it.
  poller(async () => {
    try {
      const fresh = await api("GET", `${listing}?${query}`);
      for (const repo of fresh.repos) cards.get(repo.full_name)?.(repo);
      await statusCounts(counts, listing, query, get("status"), go);
    } catch {
      // the next round tries again; the cards keep what they last knew
    }
  }, { alive: () => list.isConnected, inFlight: () => false });
  paged(paging, pageNo, result.total, go);
  if (admin) bulkActions(bulk, result.repos, picks, () => mirrors(me));
}

/**
 * "Previous", "Page 2 of 5 · 130 mirrors", "Next".
 * @param {HTMLElement} paging @param {number} pageNo @param {number} total
 * @param {(change: Record<string, string | number>) => void} go
 */
function paged(paging, pageNo, total, go) {
  const pages = Math.max(1, Math.ceil(total / PER_PAGE));
  paging.append(
    h("button", { type: "button", text: "Previous", disabled: pageNo <= 1, onclick: () => go({ page: pageNo - 1 }) }),
    h("span", { text: `Page ${pageNo} of ${pages} · ${total} mirror${total === 1 ? "" : "s"}` }),
    h("button", { type: "button", text: "Next", disabled: pageNo >= pages, onclick: () => go({ page: pageNo + 1 }) }));
}

/**
 * The fleet as a table, asked again every few seconds while a mirror shown is queued or
 * syncing (every 15 s otherwise), its rows and counts replaced in place.
 * @param {HTMLElement} list the placeholder @param {any} result the first listing
 * @param {{ admin: boolean, sort: string, picks: Map<string, HTMLInputElement>, bulk: HTMLElement, listing: string,
 *   query: URLSearchParams, counts: HTMLElement, status: string,
 *   go: (change: Record<string, string | number>) => void, reload: () => void }} o
 */
function showTable(list, result, o) {
  let repos = result.repos;
  let refreshPicks = () => {};
  const { element, update } = fleetTable(o.sort, (sort) => o.go({ sort, page: 1 }), o.admin ? o.picks : null, () => refreshPicks());
  update(repos);
  list.replaceWith(element);
  if (o.admin) refreshPicks = bulkActions(o.bulk, repos, o.picks, o.reload);
  poller(async () => {
    try {
      const fresh = await api("GET", `${o.listing}?${o.query}`);
      repos = fresh.repos;
      update(repos);
      refreshPicks();
      await statusCounts(o.counts, o.listing, o.query, o.status, o.go);
    } catch {
      // the next round tries again; the rows keep what they last showed
    }
  }, {
    alive: () => element.isConnected,
    inFlight: () => repos.some((/** @type {any} */ r) => r.sync_state === "queued" || r.sync_state === "syncing"),
    busy: 3000,
  });
}

/** The public statuses counted above the list, failures first. */
const COUNTED = [["failed", "Failed"], ["syncing", "Syncing"], ["success", "Up to date"], ["idle", "Idle"]];

/**
 * How many mirrors each status has under the other filters, each a link that filters
 * the list by it (one small count request per status).
 * @param {HTMLElement} into @param {string} listing @param {URLSearchParams} query
 * @param {string} current @param {(change: Record<string, string | number>) => void} go
 */
async function statusCounts(into, listing, query, current, go) {
  const ask = async (/** @type {string} */ status) => {
    const q = new URLSearchParams(query);
    q.set("per_page", "1");
    q.delete("page");
    q.delete("sort");
    if (status) q.set("sync_status", status); else q.delete("sync_status");
    return (await api("GET", `${listing}?${q}`)).total;
  };
  try {
    // one after another: five small reads, not a burst beside the listing
    const totals = [];
    for (const status of ["", ...COUNTED.map(([s]) => s)]) totals.push(await ask(status));
    const [all, ...each] = totals;
    /** @param {string} status @param {string} label @param {number} n */
    const chip = (status, label, n) => h("a", {
      href: "#", class: `count${status === "failed" && n > 0 ? " bad" : ""}`,
      "aria-current": current === status ? "true" : undefined, "data-status": status || "all",
      onclick: (/** @type {Event} */ e) => { e.preventDefault(); go({ status, page: 1 }); },
    }, h("strong", { text: String(n) }), ` ${label}`);
    into.replaceChildren(chip("", "All", all), ...COUNTED.map(([status, label], i) => chip(status, label, each[i])));
  } catch {
    // the list says what went wrong; the counts stay away
    into.replaceChildren();
  }
}

/**
 * An admin's actions on many mirrors: sync those selected, or retry every failed one on
 * this page, through one bulk request each.
 * @param {HTMLElement} bar @param {any[]} repos @param {Map<string, HTMLInputElement>} picks
 * @param {() => void} reload
 * @returns {() => void} to call when the selection boxes change
 */
function bulkActions(bar, repos, picks, reload) {
  const all = /** @type {HTMLInputElement} */ (h("input", { id: "select-all", type: "checkbox" }));
  const selected = () => [...picks].filter(([, box]) => box.checked).map(([name]) => name);
  const syncSelected = h("button", { type: "button", class: "primary", text: "Sync selected", disabled: true });
  const failed = repos.filter((r) => r.sync_status === "failed").map((r) => r.full_name);
  const retryFailed = h("button", { type: "button", text: `Retry the ${failed.length} failed shown`, hidden: failed.length === 0 });
  const refresh = () => {
    const n = selected().length;
    /** @type {HTMLButtonElement} */ (syncSelected).disabled = n === 0;
    syncSelected.textContent = n ? `Sync ${n} selected` : "Sync selected";
    all.checked = n === picks.size;
    all.indeterminate = n > 0 && n < picks.size;
  };
  all.addEventListener("change", () => { for (const box of picks.values()) box.checked = all.checked; refresh(); });
  for (const box of picks.values()) box.addEventListener("change", refresh);
  /** @param {string[]} names */
  const syncMany = async (names) => {
    try {
      const done = await api("POST", "/admin/mirrors/sync", { repos: names });
      const refused = done.results.filter((/** @type {any} */ r) => r.error)
        .map((/** @type {any} */ r) => `${r.repo}: ${r.error.error}`);
      toast(`${done.accepted} of ${names.length} mirrors queued.${refused.length ? ` Refused: ${refused.join("; ")}` : ""}`);
    } catch (err) {
      toast(err.message);
    }
    reload();
  };
  syncSelected.addEventListener("click", () => syncMany(selected()));
  retryFailed.addEventListener("click", () => syncMany(failed));
  bar.append(h("label", { class: "inline", for: "select-all" }, all, "Select all shown"), syncSelected, retryFailed);
  return refresh;
}

/**
 * The mirror's sync button with its status: idle shows the last sync and
 * "Sync now"; queued or syncing spins and disables the button while it polls; success
 * shows "Synced!" in green for three seconds; failure shows the error in red.
 * @param {any} repo @param {HTMLInputElement | null} pick an admin's selection box
 * @returns {{ card: HTMLElement, seen: (repo: any) => void }} `seen` takes the mirror as a
 * later listing has it
 */
function mirrorCard(repo, pick) {
  const base = `/repos/${encodeURIComponent(repo.owner)}/${encodeURIComponent(repo.name)}`;
  const badge = h("span", { class: "badge", "data-testid": "sync-state" }, "Loading…");
  const button = h("button", { type: "button", class: "primary", text: "Sync now" });
  const last = h("dd", { "data-testid": "last-sync" });
  // a failed attempt after the last success: when it was, beside that success
  const attemptTerm = h("dt", { text: "Last attempt", hidden: true });
  const attempt = h("dd", { "data-testid": "last-attempt", hidden: true });
  const next = h("dd", { "data-testid": "next-sync" });
  // the size is known once a sync has stored it; until then neither term nor value shows
  const sizeTerm = h("dt", { text: "Size", hidden: true });
  const size = h("dd", { "data-testid": "size", hidden: true });
  const upstream = h("dd", { class: "url", text: repo.mirror_url ?? "", title: repo.mirror_url ?? "" });
  const note = h("p", { class: "muted", role: "status", "data-testid": "sync-note" });
  const progress = progressView();
  const error = h("p", { class: "error-text", role: "alert", "data-testid": "sync-error", hidden: true });
  const history = h("div", { class: "table-wrap" });
  const details = h("details", {
    ontoggle: () => { if (/** @type {HTMLDetailsElement} */ (details).open) loadHistory(); },
  }, h("summary", { text: "Recent syncs" }), history);
  const card = h("article", { class: "card", "aria-label": repo.full_name, "data-repo": repo.full_name },
    h("h2", { class: pick ? "picked" : undefined }, pick, h("a", { href: `#/mirror/${encodeURIComponent(repo.owner)}/${encodeURIComponent(repo.name)}`, text: repo.full_name })),
    h("dl", {}, h("dt", { text: "Upstream" }), upstream, h("dt", { text: "Last sync" }), last,
      attemptTerm, attempt, h("dt", { text: "Next sync" }), next, sizeTerm, size),
    h("div", { class: "sync" }, button, badge),
    progress.el, note, error, details);
  /** @type {number | undefined} */
  let poller;
  let flashing = false;
  /** what the card last showed, to tell from a later listing whether the mirror moved */
  let known = { state: repo.sync_state, synced: repo.last_synced_at ?? null };
  let deferredTicks = 0;

  /** @param {"idle" | "syncing" | "success" | "failed"} view @param {any} status */
  function show(view, status) {
    const d = describe(status);
    known = { state: status.sync_state, synced: status.last_synced_at ?? null };
    setMoment(last, status.last_synced_at, "ago");
    const attemptFailed = status.sync_status === "failed" && !d.inFlight && Boolean(status.last_attempt_at)
      && (!status.last_synced_at || Date.parse(status.last_attempt_at) > Date.parse(status.last_synced_at));
    attemptTerm.hidden = !attemptFailed;
    attempt.hidden = !attemptFailed;
    if (attemptFailed) setMoment(attempt, status.last_attempt_at, "ago", "", ", failed");
    if (status.next_sync_at) setMoment(next, status.next_sync_at, "next");
    else { delete next.dataset.kind; next.textContent = "not scheduled"; }
    const sized = typeof status.size_bytes === "number";
    sizeTerm.hidden = !sized;
    size.hidden = !sized;
    size.textContent = sized ? humanSize(status.size_bytes) : "";
    size.title = sized ? `${status.size_bytes} bytes` : "";
    const syncing = view === "syncing";
    progress.show(syncing ? status.progress : null);
    /** @type {HTMLButtonElement} */ (button).disabled = syncing;
    button.setAttribute("aria-busy", String(syncing && !d.deferred));
    badge.className = "badge";
    badge.replaceChildren();
    error.hidden = true;
    if (!syncing) note.textContent = "";
    const job = status.job;
    if (syncing && d.badge === "Retrying") {
      badge.classList.add("busy");
      badge.append(`Retrying (attempt ${job.attempts} of ${job.max_attempts} failed)`);
      error.replaceChildren(...failure(job.last_error || "The last attempt failed."), " Next attempt ", timeEl("span", job.run_at, "retry"), ".");
      error.hidden = false;
    } else if (syncing && d.deferred) {
      badge.classList.add("busy");
      badge.append("Scheduled for ", timeEl("span", job.run_at, "at"));
    } else if (syncing) {
      badge.classList.add("busy");
      badge.append(h("span", { class: "spin", "aria-hidden": "true" }), d.badge);
    } else if (view === "success") {
      badge.classList.add("ok");
      badge.append("Synced!");
    } else if (view === "failed") {
      badge.classList.add("bad");
      badge.append(d.badge);
      error.replaceChildren(...failure(status.sync_error || "The last sync failed."));
      if (status.sync_state === "hard_failed") {
        error.append(h("br"), "Scheduled syncs stopped: Sync now or a new upstream URL resumes them.");
      }
      error.hidden = false;
    } else {
      badge.append(d.badge);
    }
  }

  /** @param {any} status */
  function settle(status) {
    if (describe(status).inFlight) {
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
    // a hidden page asks nothing; a sync deferred for a while is asked about less often
    if (poller !== undefined && document.hidden) return;
    if (poller !== undefined && badge.textContent?.startsWith("Scheduled") && ++deferredTicks % 5 !== 0) return;
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
            timeEl("td", r.started_at, "ago", { "data-label": "Started" }),
            h("td", { text: r.error ? `${r.outcome}: ${r.error}` : (r.outcome ?? "running"), "data-label": "Outcome" }),
            h("td", { text: r.duration_ms == null ? "-" : `${r.duration_ms} ms`, "data-label": "Took" }),
            h("td", { text: refs(r).text, title: refs(r).title, "data-label": "Refs" }))))));
    } catch (err) {
      history.replaceChildren(h("p", { class: "form-error", text: err.message }));
    }
  }

  button.addEventListener("click", async () => {
    /** @type {HTMLButtonElement} */ (button).disabled = true;
    try {
      const accepted = await api("POST", `${base}/sync`);
      const status = await api("GET", `${base}/mirror/status`);
      // in flight from the answer on: a sync that ends before this status still flashes
      settle({ ...status, sync_state: describe(status).inFlight ? status.sync_state : accepted.sync_state === "syncing" ? "syncing" : "queued" });
      note.textContent = acceptedText(accepted);
    } catch (err) {
      /** @type {HTMLButtonElement} */ (button).disabled = false;
      toast(`${repo.full_name}: ${err.message}`);
    }
  });
  poll();
  /** @param {any} fresh */
  const seen = (fresh) => {
    if (poller !== undefined) return;
    if (fresh.sync_state !== known.state || (fresh.last_synced_at ?? null) !== known.synced) poll();
  };
  return { card, seen };
}
