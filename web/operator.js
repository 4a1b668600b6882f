// @ts-check
// The operator's board (admin tokens): job counts and Redis deliveries, workers alive,
// the scheduler (pause and resume), and the jobs: filtered, paged, each one's attempts
// on demand, retry and discard one by one or for every failed job shown. It refreshes
// itself every few seconds while the switch is on.

import { api, h, page, refusals, relative, toast } from "./lib.js";

const JOB_STATES = ["pending", "running", "done", "failed", "dead"];
const PER_PAGE = 50;
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
  const state = params.get("state") ?? "";
  const pageNo = Math.max(1, Number(params.get("page") ?? "1") || 1);
  /** @param {Record<string, string | number>} change */
  const go = (change) => {
    const next = new URLSearchParams({ ...(state ? { state } : {}), page: String(pageNo), ...change });
    if (next.get("page") === "1") next.delete("page");
    if (!next.get("state")) next.delete("state");
    const q = next.toString();
    location.hash = q ? `#/operator?${q}` : "#/operator";
  };
  const overview = h("section", { "aria-label": "Queue" });
  const jobs = h("section", { "aria-label": "Jobs" });
  const filter = h("select", {
    id: "job-state",
    onchange: (/** @type {Event} */ e) => go({ state: /** @type {HTMLSelectElement} */ (e.target).value, page: 1 }),
  }, h("option", { value: "", text: "All" }),
  ...JOB_STATES.map((s) => h("option", { value: s, selected: s === state, text: s })));
  const live = h("input", { id: "auto-refresh", type: "checkbox" });
  const load = async () => {
    await Promise.all([showOverview(overview), showJobs(jobs, state, pageNo, go, load)]);
  };
  live.addEventListener("change", () => {
    window.clearInterval(refresher);
    refresher = /** @type {HTMLInputElement} */ (live).checked
      ? window.setInterval(() => { if (jobs.isConnected) load(); else window.clearInterval(refresher); }, REFRESH_MS)
      : undefined;
  });
  page("Operator",
    h("label", { class: "inline" }, live, `Refresh every ${REFRESH_MS / 1000} s`),
    overview,
    h("h2", { text: "Jobs" }),
    h("div", { class: "toolbar" }, h("div", {}, h("label", { for: "job-state", text: "Job state" }), filter)),
    jobs);
  await load();
}

/** @param {HTMLElement} section */
async function showOverview(section) {
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
      showOverview(section);
    });
    const r = q.redis;
    section.replaceChildren(
      h("ul", { class: "stats", "aria-label": "Jobs per state" },
        ...JOB_STATES.map((s) => h("li", { "data-testid": `depth-${s}` },
          h("strong", { text: `${estimated.has(s) ? "~" : ""}${q.jobs[s] ?? 0}` }), s))),
      h("p", { class: "muted", "data-testid": "redis-depth", text: `Redis deliveries: ${r.active} ready, ${r.scheduled} scheduled, ${r.inflight} in flight, ${r.dead} dead` }),
      h("p", { class: "muted", text: `Oldest pending: ${q.oldest_pending_age_seconds == null ? "none" : `${Math.round(q.oldest_pending_age_seconds)}s`} · finished in the last minute: ${q.throughput.last_1m}, hour: ${q.throughput.last_1h}` }),
      h("p", { class: "sync", "data-testid": "scheduler" },
        h("span", { text: `Scheduler: ${sched.leader ? `led by ${sched.leader}` : "no leader"}, ${sched.enabled === false ? "scheduled syncs off in its config" : sched.paused ? "paused" : "running"}${sched.next_tick_at ? `, next tick ${relative(sched.next_tick_at)}` : ""}` }),
        toggle),
      h("p", { class: "muted", "data-testid": "api-refusals", text: refusals(q.api_refusals) }),
      h("h2", { text: `Workers alive (${q.workers.length})` }),
      h("div", { class: "table-wrap" }, h("table", { class: "stack" },
        h("thead", {}, h("tr", {}, ...["Worker", "Host", "In flight", "Last heartbeat"].map((t) => h("th", { scope: "col", text: t })))),
        h("tbody", {}, ...q.workers.map((/** @type {any} */ w) => h("tr", {},
          h("td", { text: w.name, "data-label": "Worker" }), h("td", { text: w.host, "data-label": "Host" }),
          h("td", { text: `${w.jobs_in_flight} / ${w.concurrency}`, "data-label": "In flight" }),
          h("td", { text: relative(w.last_heartbeat_at), "data-label": "Last heartbeat" })))))));
  } catch (err) {
    section.replaceChildren(h("p", { class: "form-error", text: err.message }));
  }
}

/**
 * @param {HTMLElement} section @param {string} state @param {number} pageNo
 * @param {(change: Record<string, string | number>) => void} go to another page or filter
 * @param {() => void} reload this page, after an action changed it
 */
async function showJobs(section, state, pageNo, go, reload) {
  try {
    const query = new URLSearchParams({ per_page: String(PER_PAGE), page: String(pageNo) });
    if (state) query.set("state", state);
    const list = await api("GET", `/admin/jobs?${query}`);
    if (list.jobs.length === 0) {
      section.replaceChildren(h("p", { class: "muted", text: pageNo > 1 ? "No jobs on this page." : "No jobs." }));
      return;
    }
    const failed = list.jobs.filter((/** @type {any} */ j) => j.state === "failed");
    const retryAll = h("button", { type: "button", text: `Retry the ${failed.length} failed jobs shown`, hidden: failed.length < 2 });
    retryAll.addEventListener("click", async () => {
      let done = 0;
      for (const job of failed) {
        try { await api("POST", `/admin/jobs/${job.id}/retry`); done += 1; } catch { /* counted below */ }
      }
      toast(`${done} of ${failed.length} jobs sent back to the queue.`);
      reload();
    });
    const pages = Math.max(1, Math.ceil(list.total / PER_PAGE));
    const prev = h("button", { type: "button", text: "Previous", disabled: pageNo <= 1 });
    prev.addEventListener("click", () => go({ page: pageNo - 1 }));
    const next = h("button", { type: "button", text: "Next", disabled: pageNo >= pages && list.total_exact });
    next.addEventListener("click", () => go({ page: pageNo + 1 }));
    section.replaceChildren(
      h("p", { class: "sync" }, retryAll),
      h("div", { class: "table-wrap" }, h("table", { class: "stack" },
        h("thead", {}, h("tr", {}, ...["Repository", "Reason", "State", "Attempts", "Enqueued", "Last error", "Actions"].map((t) => h("th", { scope: "col", text: t })))),
        h("tbody", {}, ...list.jobs.map((/** @type {any} */ j) => jobRow(j, reload))))),
      h("p", { class: "sync", "data-testid": "paging" }, prev,
        h("span", { text: `Page ${pageNo} of ${list.total_exact ? pages : `${pages}+`} · ${list.total_exact ? "" : "at least "}${list.total} jobs` }),
        next));
  } catch (err) {
    section.replaceChildren(h("p", { class: "form-error", text: err.message }));
  }
}

/** @param {any} job @param {() => void} reload */
function jobRow(job, reload) {
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
      reload();
    },
  });
  const detail = h("details", {
    ontoggle: () => { if (/** @type {HTMLDetailsElement} */ (detail).open) attempts(job.id, detail); },
  }, h("summary", { text: `${job.attempts} / ${job.max_attempts}` }));
  const actions = [];
  if (job.state === "failed" || job.state === "dead") actions.push(act("retry"));
  if (job.state === "pending" || job.state === "failed") actions.push(act("discard"));
  return h("tr", { "data-job": job.id, "data-repo": job.repo },
    h("td", { "data-label": "Repository" }, h("a", { href: `#/mirror/${job.repo}`, text: job.repo })),
    h("td", { text: job.reason, "data-label": "Reason" }),
    h("td", { text: job.state, "data-testid": "job-state", "data-label": "State" }),
    h("td", { "data-label": "Attempts" }, detail),
    h("td", { text: relative(job.enqueued_at), title: job.enqueued_at, "data-label": "Enqueued" }),
    h("td", job.last_error ? { text: job.last_error, "data-label": "Last error" } : {}),
    h("td", {}, ...actions));
}

/** Every attempt of the job, under its row. @param {string} id @param {HTMLElement} into */
async function attempts(id, into) {
  try {
    const { attempts: runs } = await api("GET", `/admin/jobs/${id}`);
    const list = h("ol", { class: "attempts", "data-testid": "attempts" },
      ...runs.map((/** @type {any} */ r) => h("li", {
        text: `${relative(r.started_at)} on ${r.worker}: ${r.outcome ?? "running"}${r.duration_ms == null ? "" : `, ${r.duration_ms} ms`}${r.error ? ` — ${r.error}` : ""}`,
      })));
    into.querySelector("ol")?.remove();
    into.append(runs.length ? list : h("ol", { class: "attempts" }, h("li", { text: "No attempt recorded." })));
  } catch (err) {
    toast(err.message);
  }
}
