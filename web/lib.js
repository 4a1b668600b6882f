// @ts-check
// What every page of the web UI shares: the API client, building elements (server data
// only ever through textContent), times, the toast and the page frame.

export const TOKEN_KEY = "stasis.token";
export const POLL_MS = 1000;
/** How often an idle page asks again: often enough that a sync started elsewhere shows. */
export const IDLE_POLL_MS = 15000;
export const SYNCED_FLASH_MS = 3000;


export class ApiError extends Error {
  /** @param {number} status @param {string} code @param {string} message */
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/**
 * What the API process answering refused or held back since it started (abuse limits).
 * @param {any} r
 */
export function refusals(r) {
  if (!r) return "";
  const limited = r.rate_limited_read + r.rate_limited_write + r.rate_limited_import;
  return `This API process since start: ${limited} rate-limited (read ${r.rate_limited_read}, write ${r.rate_limited_write}, import ${r.rate_limited_import}) · ${r.coalesced_syncs} sync requests coalesced · ${r.timeouts} timed out · ${r.overloaded} shed`;
}

/**
 * @param {string} method
 * @param {string} path under /api/v1
 * @param {unknown} [body]
 * @returns {Promise<any>}
 */
export async function api(method, path, body) {
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
export function h(tag, attrs = {}, ...children) {
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
  if (!iso || Number.isNaN(Date.parse(iso))) return "never";
  const secs = Math.round((now - Date.parse(iso)) / 1000);
  const abs = Math.abs(secs);
  const [n, unit] =
    abs < 60 ? [abs, "s"] : abs < 3600 ? [Math.floor(abs / 60), "m"]
      : abs < 86400 ? [Math.floor(abs / 3600), "h"] : [Math.floor(abs / 86400), "d"];
  if (abs < 5) return secs >= 0 ? "just now" : "in a few seconds";
  return secs >= 0 ? `${n}${unit} ago` : `in ${n}${unit}`;
}

/** "14:05", the local time of day of `iso`. @param {string} iso */
export function clock(iso) {
  return new Date(iso).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

/** "14:05" today, "3 Dec, 14:05" another day of this year, "3 Dec 2025, 14:05" before. @param {string} iso */
export function dateTime(iso, now = Date.now()) {
  const at = new Date(iso);
  const today = new Date(now);
  if (at.toDateString() === today.toDateString()) return clock(iso);
  const year = at.getFullYear() === today.getFullYear() ? undefined : "numeric";
  return `${at.toLocaleDateString([], { day: "numeric", month: "short", year })}, ${clock(iso)}`;
}

/**
 * What a run's refs column says: "+2 -0" for a success that moved refs, "unchanged" for
 * one that fetched nothing, and for a run that stands for the unchanged checks after it
 * too, how many and when ("unchanged ×24 since 3 Dec, 14:05"; "+2 -0, then unchanged ×23,
 * last 4 Dec, 13:05"), its title the first and last check exactly. "-" for a run that
 * did not succeed.
 * @param {{ outcome?: string | null, unchanged?: boolean, refs_updated?: number, refs_pruned?: number, checks?: number, started_at: string, last_checked_at?: string }} r
 */
export function refs(r, now = Date.now()) {
  const checks = r.checks ?? 1;
  if (r.unchanged) {
    if (checks <= 1) return { text: "unchanged", title: "" };
    return {
      text: `unchanged ×${checks} since ${dateTime(r.started_at, now)}`,
      title: `${checks} checks in a row found nothing new: the first at ${r.started_at}, the last at ${r.last_checked_at}`,
    };
  }
  if (r.outcome !== "success") return { text: "-", title: "" };
  const moved = `+${r.refs_updated ?? 0} -${r.refs_pruned ?? 0}`;
  if (checks <= 1) return { text: moved, title: "" };
  return {
    text: `${moved}, then unchanged ×${checks - 1}, last ${dateTime(r.last_checked_at ?? r.started_at, now)}`,
    title: `changed at ${r.started_at}; ${checks === 2 ? "the check" : `the ${checks - 1} checks`} after it found nothing new, the last at ${r.last_checked_at}`,
  };
}

/** "40 s", "3 min", "2 h": how long until `iso`, for "in …". @param {string} iso */
function until(iso, now = Date.now()) {
  const secs = Math.max(0, Math.round((Date.parse(iso) - now) / 1000));
  if (secs < 60) return `${secs} s`;
  if (secs < 3600) return `${Math.round(secs / 60)} min`;
  return `${Math.round(secs / 3600)} h`;
}

/**
 * How a moment reads, by what it is: `ago` ("5m ago", "never"), `next` (a scheduled
 * sync: "in 3m", "due now" once past), `retry` (a job's next retry: "in 20s",
 * "retrying…" once past, never a stale "just now"), `at` ("14:05 (in 40 s)").
 * @param {string | null | undefined} iso @param {string} kind
 */
export function moment(iso, kind = "ago", now = Date.now()) {
  if (!iso || Number.isNaN(Date.parse(iso))) return kind === "ago" ? "never" : "not scheduled";
  const due = Date.parse(iso) - now <= 0;
  if (kind === "next") return due ? "due now" : relative(iso, now);
  if (kind === "retry") return due ? "retrying…" : relative(iso, now);
  if (kind === "at") return due ? `${clock(iso)} (starting…)` : `${clock(iso)} (in ${until(iso, now)})`;
  return relative(iso, now);
}

/**
 * An element whose text is a moment that stays true: the page's ticker rewrites it each
 * second (`prefix` and `suffix` around it), and its title holds the exact time.
 * @param {string} tag @param {string | null | undefined} iso @param {string} [kind]
 * @param {Record<string, any>} [attrs] @param {string} [prefix] @param {string} [suffix]
 */
export function timeEl(tag, iso, kind = "ago", attrs = {}, prefix = "", suffix = "") {
  const el = h(tag, { ...attrs, title: iso ?? undefined });
  setMoment(el, iso, kind, prefix, suffix);
  return el;
}

/** Points `el` at another moment. @param {HTMLElement} el @param {string | null | undefined} iso @param {string} [kind] @param {string} [prefix] @param {string} [suffix] */
export function setMoment(el, iso, kind = "ago", prefix = "", suffix = "") {
  el.dataset.at = iso ?? "";
  el.dataset.kind = kind;
  el.dataset.prefix = prefix;
  el.dataset.suffix = suffix;
  if (iso) el.title = iso; else el.removeAttribute("title");
  el.textContent = `${prefix}${moment(iso, kind)}${suffix}`;
}

// one ticker for the whole page: relative times age while the page is open
setInterval(() => {
  if (document.hidden) return;
  const now = Date.now();
  for (const el of /** @type {NodeListOf<HTMLElement>} */ (document.querySelectorAll("[data-kind]"))) {
    const text = `${el.dataset.prefix ?? ""}${moment(el.dataset.at, el.dataset.kind, now)}${el.dataset.suffix ?? ""}`;
    if (el.textContent !== text) el.textContent = text;
  }
}, 1000);

/**
 * Calls `tick` again and again while `alive()`: every `busy` ms while `inFlight()` says
 * something is queued or running, every `idle` ms otherwise, and not at all while the
 * page is hidden (a visible page again asks at once). Returns `now()`, which asks
 * at once and starts the cadence over.
 * @param {() => Promise<void>} tick @param {{ alive: () => boolean, inFlight: () => boolean, busy?: number, idle?: number }} opts
 */
export function poller(tick, { alive, inFlight, busy = POLL_MS, idle = IDLE_POLL_MS }) {
  /** @type {number | undefined} */
  let timer;
  let running = false;
  const schedule = () => {
    window.clearTimeout(timer);
    if (!alive()) { document.removeEventListener("visibilitychange", onVisible); return; }
    if (document.hidden) return;
    timer = window.setTimeout(run, inFlight() ? busy : idle);
  };
  const run = async () => {
    if (!alive()) { schedule(); return; }
    if (running) return;
    running = true;
    try { await tick(); } finally { running = false; }
    schedule();
  };
  const onVisible = () => { if (!document.hidden) run(); else window.clearTimeout(timer); };
  document.addEventListener("visibilitychange", onVisible);
  schedule();
  return () => { window.clearTimeout(timer); run(); };
}

/**
 * A failure as people read it: the message once, and its kind (`not_found`, `network`…)
 * as a label beside it, whether the kind came apart (`kind`) or at the message's end.
 * @param {string} message @param {string | null | undefined} [kind]
 * @returns {(Node | string)[]}
 */
export function failure(message, kind) {
  let text = String(message ?? "").trim();
  let label = kind ?? "";
  const tail = text.match(/\s*\(([a-z_]+)\)$/);
  if (tail && (!label || tail[1] === label)) {
    label = tail[1];
    text = text.slice(0, tail.index).trim();
  }
  return label ? [h("span", { class: "badge bad kind", text: label.replace(/_/g, " ") }), " ", text] : [text];
}

/** What a section shows while its data is on the way. @param {string} [what] */
export function loading(what = "Loading…") {
  return h("p", { class: "muted loading", role: "status", "data-testid": "loading", text: what });
}

/** The route the page is on now, to tell whether an answer still belongs to it. */
export function here() {
  return location.hash;
}

/**
 * A byte count as people read it, in powers of 1000: "512 B", "8.3 MB", "1.2 GB".
 * @param {number} bytes
 */
export function humanSize(bytes) {
  const units = ["B", "kB", "MB", "GB", "TB", "PB"];
  let n = bytes;
  let i = 0;
  while (n >= 1000 && i < units.length - 1) { n /= 1000; i++; }
  if (i === 0) return `${n} B`;
  return `${n < 10 ? n.toFixed(1) : Math.round(n)} ${units[i]}`;
}

/** @param {string} message */
export function toast(message) {
  const el = /** @type {HTMLElement} */ (document.getElementById("toast"));
  el.textContent = message;
  setTimeout(() => { if (el.textContent === message) el.textContent = ""; }, 4000);
}

export function main() {
  return /** @type {HTMLElement} */ (document.getElementById("main"));
}

/** @param {string} title @param {...HTMLElement} content */
export function page(title, ...content) {
  document.title = `${title} · Stasis Mirror Sync`;
  main().replaceChildren(h("h1", { text: title }), ...content);
  for (const a of document.querySelectorAll("nav a")) {
    // `#/mirrors?status=failed` is still the Mirrors page
    if (a.getAttribute("href") === location.hash.split("?")[0]) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
}

const count = new Intl.NumberFormat("en-US");

/**
 * A running sync's download in words, from the status's `progress`: "1,234 of 5,678
 * objects, 12 MB" while the pack arrives, then the deltas resolved.
 * @param {any} p
 */
export function progressText(p) {
  const size = humanSize(p.received_bytes);
  if (p.phase === "resolving_deltas") {
    return `Resolving deltas: ${count.format(p.indexed_deltas)} of ${count.format(p.total_deltas)} (${count.format(p.total_objects)} objects, ${size})`;
  }
  if (p.phase === "done") return `${count.format(p.total_objects)} objects, ${size} received; writing refs`;
  if (!p.total_objects) return `${size} received`;
  return `${count.format(p.received_objects)} of ${count.format(p.total_objects)} objects, ${size}`;
}

/**
 * A progress bar with its words, shown while a sync reports its download.
 * @returns {{ el: HTMLElement, show: (p: any) => void }} `show(null)` hides it
 */
export function progressView() {
  const bar = /** @type {HTMLProgressElement} */ (h("progress", { max: "1", value: "0", "aria-label": "Download" }));
  const words = h("span", { "data-testid": "sync-progress-text" });
  const el = h("div", { class: "progress", "data-testid": "sync-progress", hidden: true }, bar, words);
  /** @param {any} p */
  const show = (p) => {
    el.hidden = !p;
    if (!p) return;
    const [done, of] = p.phase === "resolving_deltas" ? [p.indexed_deltas, p.total_deltas]
      : p.phase === "done" ? [1, 1] : [p.received_objects, p.total_objects];
    // an unknown total leaves the bar indeterminate rather than empty
    if (of > 0) bar.value = Math.min(done / of, 1); else bar.removeAttribute("value");
    words.textContent = progressText(p);
  };
  return { el, show };
}
