// @ts-check
// What every page of the web UI shares: the API client, building elements (server data
// only ever through textContent), times, the toast and the page frame.

export const TOKEN_KEY = "stasis.token";
export const POLL_MS = 1000;
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
  if (!iso) return "never";
  const secs = Math.round((now - Date.parse(iso)) / 1000);
  const abs = Math.abs(secs);
  const [n, unit] =
    abs < 60 ? [abs, "s"] : abs < 3600 ? [Math.floor(abs / 60), "m"]
      : abs < 86400 ? [Math.floor(abs / 3600), "h"] : [Math.floor(abs / 86400), "d"];
  if (abs < 5) return "just now";
  return secs >= 0 ? `${n}${unit} ago` : `in ${n}${unit}`;
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
