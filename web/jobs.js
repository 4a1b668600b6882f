// @ts-check
// The operator's job list: filtered by state, searched by repository or job id, paged;
// each job's attempts on demand; retry and discard one by one, for the jobs selected,
// or for every failed job shown.

import { api, h, refs, relative, timeEl, toast } from "./lib.js";

export const JOB_STATES = ["pending", "running", "done", "failed", "dead"];
/** What becomes of done jobs, said where an operator looks for one. */
const DONE_KEPT = "A done job is kept until its mirror's next run of its own (a change or a failure); the mirror's history keeps every run.";
const PER_PAGE = 50;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * What the search box holds: a job id opens that job, `owner/name` filters by
 * repository; anything else is refused before any request.
 * @param {string} text
 * @returns {{ job?: string, repo?: string, error?: string }}
 */
export function parseSearch(text) {
  const t = text.trim();
  if (!t) return {};
  if (UUID.test(t)) return { job: t.toLowerCase() };
  if (/^[^/\s]+\/[^/\s]+$/.test(t)) return { repo: t };
  return { error: "Search for a repository as owner/name, or for a job by its id." };
}

/**
 * @param {HTMLElement} section
 * @param {{ state: string, repo: string, job: string, pageNo: number }} filter
 * @param {(change: Record<string, string | number>) => void} go to another page or filter
 * @param {() => void} reload this page, after an action changed it
 */
export async function showJobs(section, filter, go, reload) {
  const { state, repo, job, pageNo } = filter;
  try {
    let list;
    if (job) {
      const one = await api("GET", `/admin/jobs/${job}`);
      list = { jobs: [one], total: 1, total_exact: true };
    } else {
      const query = new URLSearchParams({ per_page: String(PER_PAGE), page: String(pageNo) });
      if (state) query.set("state", state);
      if (repo) query.set("repo", repo);
      list = await api("GET", `/admin/jobs?${query}`);
    }
    if (list.jobs.length === 0) {
      section.replaceChildren(h("p", { class: "muted", text: pageNo > 1 ? "No jobs on this page." : "No jobs match." }));
      return;
    }
    /** @type {Map<string, { job: any, box: HTMLInputElement }>} */
    const picks = new Map();
    const rows = list.jobs.map((/** @type {any} */ j) => {
      const box = /** @type {HTMLInputElement} */ (h("input", { type: "checkbox", "aria-label": `Select ${j.repo} job` }));
      picks.set(j.id, { job: j, box });
      return jobRow(j, box, reload, Boolean(job));
    });
    const pages = Math.max(1, Math.ceil(list.total / PER_PAGE));
    section.replaceChildren(
      bulkBar(list.jobs, picks, reload),
      h("div", { class: "table-wrap" }, h("table", { class: "stack" },
        h("thead", {}, h("tr", {}, ...["Select", "Repository", "Reason", "State", "Runs", "Attempts", "Enqueued", "Last error", "Actions"]
          .map((t) => h("th", { scope: "col", text: t })))),
        h("tbody", {}, ...rows))),
      ...(state === "done" && !job ? [h("p", { class: "muted", "data-testid": "done-kept", text: DONE_KEPT })] : []),
      job ? h("p", {}, h("a", { href: "#/operator", text: "All jobs" }))
        : h("p", { class: "sync", "data-testid": "paging" },
          h("button", { type: "button", text: "Previous", disabled: pageNo <= 1, onclick: () => go({ page: pageNo - 1 }) }),
          h("span", { text: `Page ${pageNo} of ${list.total_exact ? pages : `${pages}+`} · ${list.total_exact ? "" : "at least "}${list.total} jobs` }),
          h("button", { type: "button", text: "Next", disabled: pageNo >= pages && list.total_exact, onclick: () => go({ page: pageNo + 1 }) })));
  } catch (err) {
    section.replaceChildren(h("p", { class: "form-error", role: "alert", text: err.status === 404 ? `No job with that id. ${DONE_KEPT}` : err.message }));
  }
}

/**
 * Retry or discard many jobs: those selected, or every failed one shown.
 * @param {any[]} jobs @param {Map<string, { job: any, box: HTMLInputElement }>} picks
 * @param {() => void} reload
 */
function bulkBar(jobs, picks, reload) {
  const selected = () => [...picks.values()].filter((p) => p.box.checked).map((p) => p.job);
  /** @param {"retry" | "discard"} action @param {any[]} targets */
  const run = async (action, targets) => {
    let done = 0;
    const refused = [];
    for (const job of targets) {
      try { await api("POST", `/admin/jobs/${job.id}/${action}`); done += 1; } catch (err) { refused.push(`${job.repo}: ${err.message}`); }
    }
    toast(`${done} of ${targets.length} jobs ${action === "retry" ? "sent back to the queue" : "discarded"}.${refused.length ? ` ${refused.join("; ")}` : ""}`);
    reload();
  };
  const failed = jobs.filter((j) => j.state === "failed");
  const retryAll = h("button", { type: "button", text: `Retry the ${failed.length} failed jobs shown`, hidden: failed.length < 2,
    onclick: () => run("retry", failed) });
  const retrySel = h("button", { type: "button", text: "Retry selected", disabled: true, onclick: () => run("retry", selected()) });
  const discardSel = h("button", { type: "button", class: "danger", text: "Discard selected", disabled: true,
    onclick: () => {
      const targets = selected();
      if (window.confirm(`Discard ${targets.length} job${targets.length === 1 ? "" : "s"}? Their queued deliveries leave Redis.`)) run("discard", targets);
    } });
  const update = () => {
    const chosen = selected();
    // only the jobs an action applies to count: the API refuses the rest
    const retryable = chosen.filter((j) => j.state === "failed" || j.state === "dead").length;
    const discardable = chosen.filter((j) => j.state === "pending" || j.state === "failed").length;
    /** @type {HTMLButtonElement} */ (retrySel).disabled = retryable === 0;
    retrySel.textContent = retryable ? `Retry ${retryable} selected` : "Retry selected";
    /** @type {HTMLButtonElement} */ (discardSel).disabled = discardable === 0;
    discardSel.textContent = discardable ? `Discard ${discardable} selected` : "Discard selected";
  };
  for (const { box } of picks.values()) box.addEventListener("change", update);
  return h("p", { class: "sync", "data-testid": "job-bulk" }, retrySel, discardSel, retryAll);
}

/**
 * "2 / 5": the attempts a job has made of those it is allowed (`attempts` is the count
 * in the listing and in a job's detail alike; the detail's attempts are its `runs`).
 * @param {any} job
 */
export function attemptsOf(job) {
  return `${Number(job.attempts ?? 0)} / ${Number(job.max_attempts ?? 0)}`;
}

/** @param {any} job @param {HTMLInputElement} box @param {() => void} reload @param {boolean} open its attempts at once */
function jobRow(job, box, reload, open) {
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
  }, h("summary", { "data-testid": "job-attempts", text: attemptsOf(job) }));
  if (open) detail.setAttribute("open", "");
  const actions = [];
  if (job.state === "failed" || job.state === "dead") actions.push(act("retry"));
  if (job.state === "pending" || job.state === "failed") actions.push(act("discard"));
  return h("tr", { "data-job": job.id, "data-repo": job.repo },
    h("td", {}, box),
    h("td", { "data-label": "Repository" }, h("a", { href: `#/mirror/${job.repo}`, text: job.repo })),
    h("td", { text: job.reason, "data-label": "Reason" }),
    h("td", { text: job.state, "data-testid": "job-state", "data-label": "State" }),
    // when a pending job runs: at once, after a retry's backoff, or at a deferred time
    job.state === "pending" ? timeEl("td", job.run_at, "at", { "data-label": "Runs", "data-testid": "job-runs" })
      : job.state === "running" ? timeEl("td", job.started_at, "ago", { "data-label": "Runs", "data-testid": "job-runs" }, "since ")
        : h("td", { class: "muted", text: "-", "data-label": "Runs", "data-testid": "job-runs" }),
    h("td", { "data-label": "Attempts" }, detail),
    timeEl("td", job.enqueued_at, "ago", { "data-label": "Enqueued" }),
    h("td", job.last_error ? { text: job.last_error, "data-label": "Last error" } : {}),
    h("td", {}, h("div", { class: "actions" }, ...actions, h("a", { href: `#/operator?job=${job.id}`, text: "Detail", "aria-label": `Detail of the ${job.repo} job` }))));
}

/** Every attempt of the job, under its row. @param {string} id @param {HTMLElement} into */
async function attempts(id, into) {
  try {
    const { runs } = await api("GET", `/admin/jobs/${id}`);
    const list = h("ol", { class: "attempts", "data-testid": "attempts" },
      ...runs.map((/** @type {any} */ r) => h("li", {
        text: `${relative(r.started_at)} on ${r.worker ?? "a worker"}: ${r.outcome ?? "running"}${r.checks > 1 ? `, ${refs(r).text}` : ""}${r.duration_ms == null ? "" : `, ${r.duration_ms} ms`}${r.error ? ` — ${r.error}` : ""}`,
      })));
    into.querySelector("ol")?.remove();
    into.append(runs.length ? list : h("ol", { class: "attempts" }, h("li", { text: "No attempt recorded." })));
  } catch (err) {
    toast(err.message);
  }
}
