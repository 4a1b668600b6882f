// @ts-check
// The Mirrors page as a table: one row per mirror with its state, last success, next
// sync and error, sortable by the columns the listing API sorts by, so a failing mirror
// is found at a glance among hundreds. The rows come from the listing alone (no status
// request per row); web/mirrors.js asks the listing again while the page is open.

import { failure, h, setMoment } from "./lib.js";
import { describe } from "./mirror.js";

/** The listing's `sort` values behind each sortable column, ascending first. */
export const SORTS = [
  ["status", "Status, failing first"],
  ["-status", "Status, up to date first"],
  ["last_success", "Last success, oldest first"],
  ["-last_success", "Last success, newest first"],
  ["next_sync", "Next sync, soonest first"],
  ["-next_sync", "Next sync, latest first"],
  ["name", "Name, A to Z"],
  ["-name", "Name, Z to A"],
];

/** @param {string} state */
function stateClass(state) {
  if (state === "failed" || state === "hard_failed") return "badge bad";
  if (state === "syncing" || state === "queued") return "badge busy";
  if (state === "success") return "badge ok";
  return "badge";
}

/**
 * The table, and `update(repos)` to show a later listing in it (rows in the listing's
 * order; an admin's selection kept across updates).
 * @param {string} sort the listing's `sort` now
 * @param {(sort: string) => void} sortBy to the same page sorted otherwise
 * @param {Map<string, HTMLInputElement> | null} picks an admin's selection boxes by
 * `owner/name`, filled here; `null` for an owner (no bulk actions)
 * @param {() => void} picked called when a selection box changes
 */
export function fleetTable(sort, sortBy, picks, picked) {
  const key = sort.replace(/^-/, "");
  /** @param {string} column @param {string} label */
  const header = (column, label) => {
    const current = key === column;
    const descending = current && sort.startsWith("-");
    const next = current && !descending ? `-${column}` : column;
    return h("th", { scope: "col", "aria-sort": current ? (descending ? "descending" : "ascending") : undefined },
      h("button", {
        type: "button", class: "sort", "data-sort": column,
        title: current ? `Sorted ${descending ? "descending" : "ascending"}; click to reverse` : `Sort by ${label.toLowerCase()}`,
        onclick: () => sortBy(next),
      }, label, current ? (descending ? " ▼" : " ▲") : ""));
  };
  const body = h("tbody", {});
  const table = h("table", { class: "stack fleet", "aria-label": "Mirrors", "data-testid": "fleet-table" },
    h("thead", {}, h("tr", {},
      picks ? h("th", { scope: "col", text: "Select" }) : null,
      header("name", "Mirror"), header("status", "Status"), header("last_success", "Last success"),
      header("next_sync", "Next sync"), h("th", { scope: "col", text: "Error" }))),
    body);
  /** @param {any[]} repos */
  const update = (repos) => {
    const checked = new Set([...(picks ?? new Map())].filter(([, box]) => box.checked).map(([name]) => name));
    picks?.clear();
    body.replaceChildren(...repos.map((repo) => row(repo, picks, checked, picked)));
  };
  return { element: h("div", { class: "table-wrap" }, table), update };
}

/**
 * @param {any} repo @param {Map<string, HTMLInputElement> | null} picks
 * @param {Set<string>} checked @param {() => void} picked
 */
function row(repo, picks, checked, picked) {
  const state = repo.sync_state ?? repo.sync_status ?? "idle";
  let pick = null;
  if (picks) {
    pick = /** @type {HTMLInputElement} */ (h("input", { type: "checkbox", "aria-label": `Select ${repo.full_name}`, checked: checked.has(repo.full_name) }));
    pick.addEventListener("change", picked);
    picks.set(repo.full_name, pick);
  }
  const last = h("td", { "data-label": "Last success", "data-testid": "last-success" });
  setMoment(last, repo.last_synced_at, "ago");
  const next = h("td", { "data-label": "Next sync", "data-testid": "next-sync" });
  if (repo.next_sync_at) setMoment(next, repo.next_sync_at, "next");
  else next.textContent = repo.mirror_enabled === false ? "paused" : "not scheduled";
  const href = `#/mirror/${encodeURIComponent(repo.owner)}/${encodeURIComponent(repo.name)}`;
  return h("tr", { "data-repo": repo.full_name, "data-state": state },
    picks ? h("td", {}, pick) : null,
    h("td", { "data-label": "Mirror" }, h("a", { href, text: repo.full_name })),
    h("td", { "data-label": "Status" }, h("span", { class: stateClass(state), "data-testid": "row-state", text: describe(repo).badge })),
    last, next,
    repo.sync_error ? h("td", { "data-label": "Error", "data-testid": "row-error" }, ...failure(repo.sync_error)) : h("td", { class: "muted", "data-label": "Error", text: "-" }));
}
