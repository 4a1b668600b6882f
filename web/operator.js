// @ts-check
// The operator's board (admin tokens): job counts, Redis deliveries per lane and the dead
// ones, workers alive, the scheduler (pause and resume), throughput and failures over
// the last hour or day, and the jobs (web/jobs.js). Each count of jobs filters the list
// by its state. It refreshes itself every few seconds while the switch is on (on by
// default), but not while the operator types, picks jobs or selects text: a refresh
// then would take the field or the selection away.

import { api, h, loading, main, page, refusals, relative, toast } from "./lib.js";
import { JOB_STATES, parseSearch, showJobs } from "./jobs.js";
import { activityChart } from "./charts.js";

const REFRESH_MS = 5000;

/** @type {number | undefined} */
let refresher;

/** The operator's page. @param {{ is_admin: boolean } | null} me */
export async function operator(me) {
  window.clearInterval(refresher);
  refresher = undefined;
  if (!me?.is_admin) {
    page("Operator", h("p", { class: "form-error", text: "This page needs an admin token." }));
    return;
  }
  const params = new URLSearchParams(location.hash.split("?")[1] ?? "");
  const filter = {
    state: params.get("state") ?? "",
    repo: params.get("repo") ?? "",
    job: params.get("job") ?? "",
    pageNo: Math.max(1, Number(params.get("page") ?? "1") || 1),
  };
  /** @param {Record<string, string | number>} change */
  const go = (change) => {
    const next = new URLSearchParams({ state: filter.state, repo: filter.repo, page: String(filter.pageNo), ...change });
    for (const [k, v] of [...next]) if (!v || (k === "page" && v === "1")) next.delete(k);
    const q = next.toString();
    location.hash = q ? `#/operator?${q}` : "#/operator";
  };
  const overview = h("section", { "aria-label": "Queue" }, loading());
  const jobs = h("section", { "aria-label": "Jobs" }, loading());
  const stateSelect = h("select", {
    id: "job-state",
    onchange: (/** @type {Event} */ e) => go({ state: /** @type {HTMLSelectElement} */ (e.target).value, page: 1 }),
  }, h("option", { value: "", text: "All" }),
  ...JOB_STATES.map((s) => h("option", { value: s, selected: s === filter.state, text: s })));
  const searchError = h("p", { id: "job-search-error", class: "field-error" });
  const search = h("input", {
    id: "job-search", name: "search", type: "text", autocomplete: "off", value: filter.job || filter.repo,
    placeholder: "owner/name or job id", "aria-describedby": "job-search-error",
  });
  const searchForm = h("form", { role: "search", "aria-label": "Find jobs" },
    h("label", { for: "job-search", text: "Repository or job id" }),
    h("div", { class: "sync" }, search, h("button", { type: "submit", text: "Find" })), searchError);
  searchForm.addEventListener("submit", (e) => {
    e.preventDefault();
    const found = parseSearch(/** @type {HTMLInputElement} */ (search).value);
    if (found.error) {
      searchError.textContent = found.error;
      search.setAttribute("aria-invalid", "true");
      return;
    }
    if (found.job) location.hash = `#/operator?job=${found.job}`;
    else go({ repo: found.repo ?? "", page: 1 });
  });
  const live = h("input", { id: "auto-refresh", type: "checkbox", checked: true, "aria-describedby": "refresh-note" });
  const note = h("span", { id: "refresh-note", class: "muted", "data-testid": "refresh-note" });
  const dead = h("section", { "aria-label": "Dead deliveries", "data-testid": "dead-deliveries" },
    h("h2", { text: "Dead deliveries" }), h("div", {}, loading()));
  const bottom = h("div", {});
  const load = async () => {
    await Promise.all([showOverview(overview, filter.state), showJobs(jobs, filter, go, load), showDead(dead, load)]);
    // dead deliveries are the first thing to see when there are any; none, at the end
    const some = dead.dataset.count !== "0";
    if (some && dead.previousElementSibling !== overview) overview.after(dead);
    if (!some && dead.parentElement !== bottom) bottom.append(dead);
  };
  const tick = () => {
    if (!jobs.isConnected) { window.clearInterval(refresher); return; }
    const why = busy(main());
    note.textContent = why ? `Paused while you ${why}.` : "";
    if (!why) load();
  };
  const switched = () => {
    window.clearInterval(refresher);
    note.textContent = "";
    refresher = /** @type {HTMLInputElement} */ (live).checked ? window.setInterval(tick, REFRESH_MS) : undefined;
  };
  live.addEventListener("change", switched);
  page("Operator",
    h("p", { class: "sync" }, h("label", { class: "inline" }, live, `Refresh every ${REFRESH_MS / 1000} s`), note),
    overview,
    activityChart(),
    h("h2", { text: "Jobs" }),
    h("div", { class: "toolbar" }, h("div", {}, h("label", { for: "job-state", text: "Job state" }), stateSelect), searchForm),
    jobs,
    bottom);
  bottom.append(dead);
  await load();
  switched();
}

/**
 * What the operator is in the middle of, which a refresh would undo: typing in a field,
 * a list open, jobs picked for an action, text selected; `""` when nothing.
 * @param {HTMLElement} root
 */
function busy(root) {
  const active = document.activeElement;
  if (active && root.contains(active) && active.id !== "auto-refresh"
      && (active.tagName === "TEXTAREA" || active.tagName === "SELECT"
        || (active.tagName === "INPUT" && /** @type {HTMLInputElement} */ (active).type !== "checkbox"))) return "type";
  if (root.querySelector('tbody input[type="checkbox"]:checked')) return "pick jobs";
  if (String(window.getSelection() ?? "").trim()) return "select text";
  return "";
}

/** @param {HTMLElement} section @param {string} current the state the jobs are filtered by */
async function showOverview(section, current) {
  try {
    const q = await api("GET", "/admin/queue");
    const estimated = new Set(q.jobs_estimated ?? []);
    const sched = q.scheduler;
    const toggle = h("button", { type: "button", text: sched.paused ? "Resume scheduler" : "Pause scheduler" });
    toggle.addEventListener("click", async () => {
      try {
        await api("POST", `/admin/scheduler/${sched.paused ? "resume" : "pause"}`);
        toast(sched.paused ? "Scheduler resumed." : "Scheduler paused: no scheduled syncs until resumed.");
      } catch (err) {
        toast(err.message);
      }
      showOverview(section, current);
    });
    const r = q.redis;
    const lanes = Object.entries(q.redis_lanes ?? {});
    section.replaceChildren(
      // each count a link to the jobs in that state; the one shown links back to all
      h("ul", { class: "stats", "aria-label": "Jobs per state" },
        ...JOB_STATES.map((s) => h("li", { "data-testid": `depth-${s}`, class: s === current ? "current" : undefined },
          h("a", { href: s === current ? "#/operator" : `#/operator?state=${s}`, "aria-current": s === current ? "true" : undefined },
            h("strong", { text: `${estimated.has(s) ? "~" : ""}${q.jobs[s] ?? 0}` }), s)))),
      h("p", { class: "muted", "data-testid": "redis-depth", text: `Redis deliveries: ${r.active} ready, ${r.scheduled} scheduled, ${r.inflight} in flight, ${r.dead} dead` }),
      h("div", { class: "table-wrap" }, h("table", { class: "stack", "aria-label": "Redis deliveries per lane" },
        h("thead", {}, h("tr", {}, ...["Lane", "Ready", "Scheduled", "In flight", "Dead"].map((t) => h("th", { scope: "col", text: t })))),
        h("tbody", {}, ...lanes.map(([lane, /** @type {any} */ d]) => h("tr", { "data-lane": lane },
          h("td", { text: lane, "data-label": "Lane" }), h("td", { text: String(d.active), "data-label": "Ready" }),
          h("td", { text: String(d.scheduled), "data-label": "Scheduled" }), h("td", { text: String(d.inflight), "data-label": "In flight" }),
          h("td", { text: String(d.dead), "data-label": "Dead" })))))),
      h("p", { class: "muted", text: `Oldest pending: ${q.oldest_pending_age_seconds == null ? "none" : `${Math.round(q.oldest_pending_age_seconds)}s`} · finished in the last minute: ${q.throughput.last_1m}, hour: ${q.throughput.last_1h}` }),
      h("p", { class: "sync", "data-testid": "scheduler" },
        h("span", { text: `Scheduler: ${sched.leader ? `led by ${sched.leader}` : "no leader"}, ${sched.enabled === false ? "scheduled syncs off in its config" : sched.paused ? "paused" : "running"}${sched.next_tick_at ? `, next tick ${relative(sched.next_tick_at)}` : ""}` }),
        toggle),
      h("p", { class: "muted", "data-testid": "api-refusals", text: refusals(q.api_refusals) }),
      h("h2", { text: `Workers alive (${q.workers.length})` }),
      h("div", { class: "table-wrap" }, h("table", { class: "stack" },
        h("thead", {}, h("tr", {}, ...["Worker", "Host", "In flight", "Last heartbeat"].map((t) => h("th", { scope: "col", text: t })))),
        h("tbody", {}, ...q.workers.map((/** @type {any} */ w) => h("tr", {},
          h("td", { text: w.name, "data-label": "Worker" }), h("td", { text: w.host ?? "-", "data-label": "Host" }),
          h("td", { text: `${w.jobs_in_flight} / ${w.concurrency}`, "data-label": "In flight" }),
          h("td", { text: relative(w.last_heartbeat_at), "data-label": "Last heartbeat" })))))));
  } catch (err) {
    section.replaceChildren(h("p", { class: "form-error", text: err.message }));
  }
}

/**
 * Deliveries apalis gave up on, with their job's state and a way to it, and the purge
 * of them all; `data-count` says how many there are.
 * @param {HTMLElement} section @param {() => void} reload
 */
async function showDead(section, reload) {
  const body = /** @type {HTMLElement} */ (section.lastElementChild);
  try {
    const { deliveries } = await api("GET", "/admin/queue/dead");
    section.dataset.count = String(deliveries.length);
    const purge = h("button", {
      type: "button", class: "danger", text: `Purge ${deliveries.length} dead deliver${deliveries.length === 1 ? "y" : "ies"}`,
      onclick: async () => {
        if (!window.confirm("Remove every dead delivery from Redis? Their jobs stay in Postgres, where Retry sends them back.")) return;
        try {
          const { removed } = await api("DELETE", "/admin/queue/dead");
          toast(`${removed} dead deliver${removed === 1 ? "y" : "ies"} removed.`);
        } catch (err) {
          toast(err.message);
        }
        reload();
      },
    });
    body.replaceChildren(deliveries.length === 0
      ? h("p", { class: "muted", text: "None: Redis holds no delivery it gave up on." })
      : h("div", {}, h("p", { class: "sync" }, purge), h("div", { class: "table-wrap" }, h("table", { class: "stack" },
        h("thead", {}, h("tr", {}, ...["Lane", "Delivery", "Job", "Job state"].map((t) => h("th", { scope: "col", text: t })))),
        h("tbody", {}, ...deliveries.map((/** @type {any} */ d) => h("tr", { "data-delivery": d.delivery_id },
          h("td", { text: d.lane, "data-label": "Lane" }),
          h("td", { text: d.delivery_id, "data-label": "Delivery" }),
          h("td", { "data-label": "Job" }, d.job_id ? h("a", { href: `#/operator?job=${d.job_id}`, text: d.job_id }) : "payload gone"),
          h("td", { text: d.job_state ?? "no such job", "data-label": "Job state" }))))))));
  } catch (err) {
    delete section.dataset.count;
    body.replaceChildren(h("p", { class: "form-error", text: err.message }));
  }
}
