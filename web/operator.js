// @ts-check
// The operator's page (admin tokens): queue depth, workers alive, jobs with retry and
// discard.

import { api, h, page, refusals, relative, toast } from "./lib.js";

const JOB_STATES = ["pending", "running", "done", "failed", "dead"];

/** The operator's page: queue, workers and jobs. @param {{ is_admin: boolean } | null} me */
export async function operator(me) {
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
      h("div", { class: "table-wrap" }, h("table", { class: "stack" },
        h("thead", {}, h("tr", {}, ...["Worker", "Host", "In flight", "Last heartbeat"].map((t) => h("th", { scope: "col", text: t })))),
        h("tbody", {}, ...q.workers.map((/** @type {any} */ w) => h("tr", {},
          h("td", { text: w.name, "data-label": "Worker" }), h("td", { text: w.host, "data-label": "Host" }),
          h("td", { text: `${w.jobs_in_flight} / ${w.concurrency}`, "data-label": "In flight" }),
          h("td", { text: relative(w.last_heartbeat_at), "data-label": "Last heartbeat" })))))));
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
    jobs.replaceChildren(h("div", { class: "table-wrap" }, h("table", { class: "stack" },
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
      operator({ is_admin: true });
    },
  });
  const actions = [];
  if (job.state === "failed" || job.state === "dead") actions.push(act("retry"));
  if (job.state === "pending" || job.state === "failed") actions.push(act("discard"));
  return h("tr", { "data-job": job.id, "data-repo": job.repo },
    h("td", { text: job.repo, "data-label": "Repository" }), h("td", { text: job.reason, "data-label": "Reason" }),
    h("td", { text: job.state, "data-testid": "job-state", "data-label": "State" }),
    h("td", { text: `${job.attempts} / ${job.max_attempts}`, "data-label": "Attempts" }),
    h("td", { text: relative(job.enqueued_at), title: job.enqueued_at, "data-label": "Enqueued" }),
    h("td", job.last_error ? { text: job.last_error, "data-label": "Last error" } : {}),
    h("td", {}, ...actions));
}
