// @ts-check
// One mirror's page, as GitLab's and Gitea's mirror settings have it: its status (last
// success apart from last attempt, the job in flight with attempt n of m and its next
// retry), its size, its full history with each run's error, every setting the API can
// change, its webhook URL, and delete.

import { api, h, humanSize, page, relative, toast } from "./lib.js";

/** @param {string} owner @param {string} name */
export async function mirrorPage(owner, name) {
  const base = `/repos/${encodeURIComponent(owner)}/${encodeURIComponent(name)}`;
  let repo;
  try {
    repo = await api("GET", base);
  } catch (err) {
    page(`${owner}/${name}`, h("p", { class: "form-error", role: "alert", text: err.message }));
    return;
  }
  if (!repo.is_mirror) {
    page(repo.full_name, h("p", { class: "muted", text: "This repository is not a mirror." }));
    return;
  }
  const status = h("section", { "aria-label": "Status" });
  const history = h("section", { "aria-label": "History" });
  page(repo.full_name, status,
    h("h2", { text: "Settings" }), settingsForm(base, repo),
    h("h2", { text: "Webhook" }), webhook(owner, name, repo),
    h("h2", { text: "History" }), history,
    h("h2", { text: "Delete" }), deletion(base, repo));
  await Promise.all([showStatus(base, status), showHistory(base, history)]);
}

/** @param {string} base @param {HTMLElement} section */
async function showStatus(base, section) {
  try {
    const s = await api("GET", `${base}/mirror/status`);
    const job = s.job;
    /** @type {[string, string, string?][]} */
    const rows = [
      ["State", s.sync_state === "hard_failed" ? "failed, not scheduled" : s.sync_state],
      ["Last successful sync", relative(s.last_synced_at), s.last_synced_at ?? ""],
      ["Last attempt", relative(s.last_attempt_at), s.last_attempt_at ?? ""],
      ["Next sync", s.next_sync_at ? relative(s.next_sync_at) : "not scheduled", s.next_sync_at ?? ""],
      ["Size", typeof s.size_bytes === "number" ? humanSize(s.size_bytes) : "not measured yet"],
    ];
    if (job) {
      rows.push(["Current job", job.attempts > 0 && job.state === "pending"
        ? `retrying: attempt ${job.attempts} of ${job.max_attempts} failed, next ${relative(job.run_at)}`
        : `${job.state}, attempt ${Math.max(job.attempts, 1)} of ${job.max_attempts}`]);
    }
    const sync = h("button", { type: "button", class: "primary", text: "Sync now" });
    sync.addEventListener("click", async () => {
      try {
        await api("POST", `${base}/sync`);
        toast("Sync requested.");
        showStatus(base, section);
      } catch (err) {
        toast(err.message);
      }
    });
    const error = job?.last_error || s.sync_error;
    section.replaceChildren(
      h("dl", { class: "facts" }, ...rows.flatMap(([k, v, title]) => [h("dt", { text: k }), h("dd", { text: v, title })])),
      ...(error ? [h("p", { class: "error-text", role: "alert", "data-testid": "sync-error", text: error })] : []),
      h("p", {}, sync));
  } catch (err) {
    section.replaceChildren(h("p", { class: "form-error", text: err.message }));
  }
}

/** @param {string} base @param {HTMLElement} section */
async function showHistory(base, section) {
  try {
    const { runs } = await api("GET", `${base}/mirror/history?limit=100`);
    if (runs.length === 0) {
      section.replaceChildren(h("p", { class: "muted", text: "No syncs yet." }));
      return;
    }
    const head = ["Started", "Outcome", "Error", "Took", "Refs", "Received", "LFS", "Worker"];
    section.replaceChildren(h("div", { class: "table-wrap" }, h("table", { class: "stack" },
      h("thead", {}, h("tr", {}, ...head.map((t) => h("th", { scope: "col", text: t })))),
      h("tbody", {}, ...runs.map((/** @type {any} */ r) => h("tr", { "data-outcome": r.outcome ?? "running" },
        h("td", { text: relative(r.started_at), title: r.started_at, "data-label": "Started" }),
        h("td", { text: r.outcome ?? "running", "data-label": "Outcome" }),
        h("td", r.error ? { text: `${r.error}${r.error_kind ? ` (${r.error_kind})` : ""}`, "data-label": "Error" } : {}),
        h("td", { text: r.duration_ms == null ? "-" : `${r.duration_ms} ms`, "data-label": "Took" }),
        h("td", { text: r.unchanged ? "unchanged" : `+${r.refs_updated} -${r.refs_pruned}`, "data-label": "Refs" }),
        h("td", { text: humanSize(r.bytes_received), "data-label": "Received" }),
        h("td", { text: lfsFigures(r), "data-label": "LFS", "data-testid": "run-lfs" }),
        h("td", { text: r.worker, "data-label": "Worker" })))))));
  } catch (err) {
    section.replaceChildren(h("p", { class: "form-error", text: err.message }));
  }
}

/** A run's Git LFS downloads, and why some are missing when they are. @param {any} r */
function lfsFigures(r) {
  const got = r.lfs_objects ? `${r.lfs_objects} objects, ${humanSize(r.lfs_bytes ?? 0)}` : "-";
  return r.lfs_error ? `${got}; ${r.lfs_error}` : got;
}

/** Every setting `PATCH …/mirror` takes; only what changed is sent. @param {string} base @param {any} repo */
function settingsForm(base, repo) {
  const patterns = (/** @type {string[] | undefined} */ list) => (list ?? []).join("\n");
  /** @param {string} id @param {string} label @param {HTMLElement} input @param {string} [help] */
  const field = (id, label, input, help) => [
    h("label", { for: id, text: label }),
    help ? h("p", { class: "muted", id: `${id}-help`, text: help }) : null,
    input,
  ];
  const interval = h("input", { id: "interval", type: "text", value: duration(repo.sync_interval_seconds), placeholder: "default", "aria-describedby": "interval-help" });
  const enabled = h("input", { id: "enabled", type: "checkbox", checked: repo.mirror_enabled });
  const lfs = h("input", { id: "lfs", type: "checkbox", checked: repo.lfs_enabled !== false });
  const url = h("input", { id: "mirror-url", type: "text", inputmode: "url", value: "", placeholder: repo.mirror_url ?? "", "aria-describedby": "mirror-url-help" });
  const include = h("textarea", { id: "include-refs", rows: "3", "aria-describedby": "include-refs-help" });
  include.textContent = patterns(repo.include_refs);
  const exclude = h("textarea", { id: "exclude-refs", rows: "3" });
  exclude.textContent = patterns(repo.exclude_refs);
  const error = h("p", { class: "form-error", role: "alert", "data-testid": "settings-error" });
  const form = h("form", { novalidate: true, "aria-label": "Mirror settings" },
    ...field("interval", "Sync interval", interval, "Like 30m or 2h; empty for the default."),
    h("label", { class: "inline" }, enabled, "Scheduled syncs on"),
    h("label", { class: "inline" }, lfs, "Download Git LFS objects"),
    ...field("mirror-url", "New upstream URL", url, "Credentials in it replace the stored ones, which are never shown. Empty: keep the current one."),
    ...field("include-refs", "Refs to keep (one pattern per line)", include, "e.g. refs/heads/release/*; empty keeps every ref."),
    ...field("exclude-refs", "Refs to leave out (one pattern per line)", exclude),
    error,
    h("p", {}, h("button", { type: "submit", class: "primary", text: "Save settings" })));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    error.textContent = "";
    const lines = (/** @type {HTMLElement} */ el) => /** @type {HTMLTextAreaElement} */ (el).value
      .split("\n").map((l) => l.trim()).filter(Boolean);
    /** @type {Record<string, unknown>} */
    const body = {};
    const every = /** @type {HTMLInputElement} */ (interval).value.trim();
    if (every !== duration(repo.sync_interval_seconds)) body.sync_interval = every || null;
    const on = /** @type {HTMLInputElement} */ (enabled).checked;
    if (on !== repo.mirror_enabled) body.enabled = on;
    const withLfs = /** @type {HTMLInputElement} */ (lfs).checked;
    if (withLfs !== (repo.lfs_enabled !== false)) body.lfs = withLfs;
    const upstream = /** @type {HTMLInputElement} */ (url).value.trim();
    if (upstream) body.mirror_url = upstream;
    if (lines(include).join("\n") !== patterns(repo.include_refs)) body.include_refs = lines(include);
    if (lines(exclude).join("\n") !== patterns(repo.exclude_refs)) body.exclude_refs = lines(exclude);
    if (Object.keys(body).length === 0) { toast("Nothing changed."); return; }
    try {
      Object.assign(repo, await api("PATCH", `${base}/mirror`, body));
      /** @type {HTMLInputElement} */ (url).value = "";
      /** @type {HTMLInputElement} */ (url).placeholder = repo.mirror_url ?? "";
      toast("Settings saved.");
    } catch (err) {
      error.textContent = err.message;
    }
  });
  return form;
}

/** `7200` → `2h`, as the interval field takes it; `""` for none. @param {number | null | undefined} secs */
function duration(secs) {
  if (!secs) return "";
  if (secs % 3600 === 0) return `${secs / 3600}h`;
  if (secs % 60 === 0) return `${secs / 60}m`;
  return `${secs}s`;
}

/** The URL forges post to, with a copy button, and the secret set or rotated. @param {string} owner @param {string} name @param {any} repo */
function webhook(owner, name, repo) {
  const hookUrl = `${location.origin}/api/v1/hooks/${encodeURIComponent(owner)}/${encodeURIComponent(name)}`;
  const state = h("p", { class: "muted", "data-testid": "webhook-state", text: repo.webhook_configured ? "A secret is set: pushes sync the mirror." : "No secret set: the hook is off." });
  const copy = h("button", { type: "button", text: "Copy URL" });
  copy.addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText(hookUrl);
      toast("Webhook URL copied.");
    } catch {
      toast(hookUrl);
    }
  });
  const secret = h("input", { id: "webhook-secret", type: "password", autocomplete: "new-password", "aria-describedby": "webhook-secret-help" });
  /** @param {string | null} value */
  const save = async (value) => {
    try {
      const updated = await api("PATCH", `/repos/${encodeURIComponent(owner)}/${encodeURIComponent(name)}/mirror`, { webhook_secret: value });
      /** @type {HTMLInputElement} */ (secret).value = "";
      state.textContent = updated.webhook_configured ? "A secret is set: pushes sync the mirror." : "No secret set: the hook is off.";
      toast(value ? "Webhook secret saved." : "Webhook secret removed.");
    } catch (err) {
      toast(err.message);
    }
  };
  const set = h("button", { type: "button", text: "Set or rotate secret" });
  set.addEventListener("click", () => save(/** @type {HTMLInputElement} */ (secret).value));
  const remove = h("button", { type: "button", text: "Remove secret" });
  remove.addEventListener("click", () => save(null));
  return h("div", {},
    h("p", {}, h("code", { class: "url", "data-testid": "webhook-url", text: hookUrl }), " ", copy),
    state,
    h("label", { for: "webhook-secret", text: "New secret" }),
    h("p", { class: "muted", id: "webhook-secret-help", text: "8 to 256 characters, kept sealed and never shown again." }),
    secret,
    h("p", { class: "sync" }, set, remove));
}

/** Delete with a confirmation: the name must be typed. @param {string} base @param {any} repo */
function deletion(base, repo) {
  const confirm = h("input", { id: "confirm-delete", type: "text", autocomplete: "off" });
  const button = h("button", { type: "button", class: "danger", text: "Delete this mirror", disabled: true });
  confirm.addEventListener("input", () => {
    /** @type {HTMLButtonElement} */ (button).disabled = /** @type {HTMLInputElement} */ (confirm).value !== repo.full_name;
  });
  button.addEventListener("click", async () => {
    try {
      await api("DELETE", base);
      toast(`${repo.full_name} deleted.`);
      location.hash = "#/mirrors";
    } catch (err) {
      toast(err.message);
    }
  });
  return h("div", {},
    h("p", { class: "muted", text: "Removes the mirror on disk, its jobs and its history." }),
    h("label", { for: "confirm-delete", text: `Type ${repo.full_name} to confirm` }),
    confirm, h("p", {}, button));
}
