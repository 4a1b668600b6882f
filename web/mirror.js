// @ts-check
// One mirror's page, as GitLab's and Gitea's mirror settings have it: its status (last
// success apart from last attempt, the job in flight with attempt n of m and its next
// retry, a sync deferred to its time), kept current by polling, its size, its full
// history with each run's error, and for its owner or an admin every setting the API can
// change, its webhook URL, and delete. Anyone else who may see it gets it read-only.

import { POLL_MS, SYNCED_FLASH_MS, api, failure, h, here, humanSize, loading, moment, page, poller, progressView, refs, setMoment, timeEl, toast } from "./lib.js";

/** @param {string} owner @param {string} name @param {{ username: string, is_admin: boolean } | null} me */
export async function mirrorPage(owner, name, me) {
  const base = `/repos/${encodeURIComponent(owner)}/${encodeURIComponent(name)}`;
  const route = here();
  // the old page must not stay on screen while this one loads
  page(`${owner}/${name}`, loading());
  let repo;
  try {
    repo = await api("GET", base);
  } catch (err) {
    if (here() !== route) return;
    page(`${owner}/${name}`, h("p", { class: "form-error", role: "alert", text: err.message }));
    return;
  }
  if (here() !== route) return;
  if (!repo.is_mirror) {
    page(repo.full_name, h("p", { class: "muted", text: "This repository is not a mirror." }));
    return;
  }
  // the API refuses every change from anyone but the owner or an admin: the page offers
  // none to them either
  const manage = Boolean(me?.is_admin) || me?.username === repo.owner;
  const status = h("section", { "aria-label": "Status" }, loading());
  const history = h("section", { "aria-label": "History" }, loading());
  const reloadHistory = () => showHistory(base, history);
  if (manage) {
    page(repo.full_name, status,
      h("h2", { text: "Settings" }), settingsForm(base, repo),
      ...(/^https?:/i.test(repo.mirror_url ?? "") || repo.credentials_configured ? [h("h2", { text: "Upstream credentials" }), credentials(base, repo)] : []),
      ...(isSsh(repo.mirror_url) || repo.deploy_key ? [h("h2", { text: "SSH access" }), sshAccess(base, repo)] : []),
      h("h2", { text: "Webhook" }), webhook(owner, name, repo),
      h("h2", { text: "History" }), history,
      h("h2", { text: "Delete" }), deletion(base, repo));
  } else {
    page(repo.full_name,
      h("p", { class: "muted", "data-testid": "read-only", text: `You can follow this mirror; only ${repo.owner} or an admin can sync it or change its settings.` }),
      status,
      h("h2", { text: "History" }), history);
  }
  liveStatus(base, status, { manage, admin: Boolean(me?.is_admin), onSettled: reloadHistory });
  await reloadHistory();
}

/**
 * What a mirror's status says in words: the badge, its colour, and the line about the
 * job in flight. A pending job is told apart by why it waits: a retry after a failed
 * attempt, a sync deferred to the end of the minimum interval, or room in the queue.
 * @param {any} s the status JSON
 * @returns {{ badge: string, tone: "" | "busy" | "ok" | "bad", at?: string, atKind?: string, line: string, inFlight: boolean, deferred: boolean }}
 */
export function describe(s) {
  const job = s.job;
  const then = (/** @type {boolean} */ f) => (f ? " Another sync runs after it: a sync was asked for while it ran." : "");
  if (job && job.state === "running") {
    return { badge: "Syncing", tone: "busy", line: `Running, attempt ${Math.max(job.attempts, 1)} of ${job.max_attempts}.${then(job.follow_up)}`, inFlight: true, deferred: false };
  }
  if (job && job.state === "pending") {
    if (job.attempts > 0) {
      return { badge: "Retrying", tone: "busy", at: job.run_at, atKind: "retry",
        line: `Attempt ${job.attempts} of ${job.max_attempts} failed; next attempt `, inFlight: true, deferred: false };
    }
    if (job.waiting_for_queue) {
      return { badge: "Waiting for the queue", tone: "busy", line: "Accepted: it waits for room in the queue and runs as soon as there is.", inFlight: true, deferred: false };
    }
    if (Date.parse(job.run_at) > Date.now() + 1000) {
      return { badge: "Scheduled", tone: "busy", at: job.run_at, atKind: "at",
        line: "Scheduled for ", inFlight: true, deferred: true };
    }
    return { badge: "Queued", tone: "busy", line: "Queued: waiting for a worker.", inFlight: true, deferred: false };
  }
  if (s.sync_state === "queued" || s.sync_state === "syncing") {
    return { badge: s.sync_state === "queued" ? "Queued" : "Syncing", tone: "busy", line: "", inFlight: true, deferred: false };
  }
  if (s.sync_state === "hard_failed") return { badge: "Failed, not scheduled", tone: "bad", line: "", inFlight: false, deferred: false };
  if (s.sync_state === "failed") return { badge: "Failed", tone: "bad", line: "", inFlight: false, deferred: false };
  if (s.sync_state === "success") return { badge: "Up to date", tone: "", line: "", inFlight: false, deferred: false };
  return { badge: s.last_synced_at ? "Idle" : "Not synced yet", tone: "", line: "", inFlight: false, deferred: false };
}

/**
 * What the API's answer to "Sync now" means, in words.
 * @param {any} a the SyncAccepted JSON
 */
export function acceptedText(a) {
  if (a.next_run_at && Date.parse(a.next_run_at) > Date.now() + 1000) {
    return `Scheduled for ${moment(a.next_run_at, "at")}: the last sync started less than the minimum interval ago.`;
  }
  if (a.follow_up) return "A sync is running now; another runs right after it, so the mirror ends at least as new as the upstream is now.";
  if (a.waiting_for_queue) return "Accepted: it waits for room in the queue and runs as soon as there is.";
  return "Sync queued.";
}

/**
 * The status section, kept true: it asks the status endpoint every second while a sync is
 * queued or running and every 15 s otherwise, not at all while the page is hidden.
 * @param {string} base @param {HTMLElement} section
 * @param {{ manage: boolean, admin: boolean, onSettled: () => void }} opts
 */
function liveStatus(base, section, { manage, admin, onSettled }) {
  const badge = h("span", { class: "badge", "data-testid": "sync-state" });
  const line = h("p", { class: "muted", "data-testid": "job-line" });
  const progress = progressView();
  const note = h("p", { role: "status", "data-testid": "sync-note" });
  const lastSync = h("dd", { "data-testid": "last-sync" });
  const lastAttempt = h("dd", { "data-testid": "last-attempt" });
  const nextSync = h("dd", { "data-testid": "next-sync" });
  const size = h("dd", { "data-testid": "size" });
  const storage = h("dd", { "data-testid": "storage" });
  const error = h("p", { class: "error-text", role: "alert", "data-testid": "sync-error", hidden: true });
  const sync = h("button", { type: "button", class: "primary", text: "Sync now" });
  const force = h("button", { type: "button", text: "Sync now (force)", hidden: true });
  let inFlight = false;
  let flashUntil = 0;
  let loaded = false;
  /** @type {any} */
  let last = null;

  /** @param {any} s */
  const render = (s) => {
    const d = describe(s);
    const finished = inFlight && !d.inFlight;
    inFlight = d.inFlight;
    if (finished && s.sync_state === "success") flashUntil = Date.now() + SYNCED_FLASH_MS;
    if (finished) { note.textContent = ""; onSettled(); }
    const flash = !d.inFlight && Date.now() < flashUntil;
    badge.className = `badge${flash ? " ok" : d.tone ? ` ${d.tone}` : ""}`;
    // a spinner says work is under way: not for a sync that waits for its time
    badge.replaceChildren(...(d.tone === "busy" && !d.deferred ? [h("span", { class: "spin", "aria-hidden": "true" })] : []),
      flash ? "Synced!" : d.badge);
    if (d.at) setMoment(line, d.at, d.atKind, d.line, ".");
    else { delete line.dataset.kind; line.removeAttribute("title"); line.textContent = d.line; }
    line.hidden = !d.line;
    progress.show(d.inFlight ? s.progress : null);
    setMoment(lastSync, s.last_synced_at, "ago");
    setMoment(lastAttempt, s.last_attempt_at, "ago",
      "", s.last_attempt_at && s.sync_status === "failed" && !d.inFlight ? " (failed)" : "");
    if (s.next_sync_at) setMoment(nextSync, s.next_sync_at, "next");
    else { delete nextSync.dataset.kind; nextSync.textContent = s.sync_state === "hard_failed" ? "not scheduled: Sync now or a new upstream URL resumes it" : "not scheduled"; }
    const known = typeof s.size_bytes === "number";
    size.textContent = known ? humanSize(s.size_bytes) : "not measured yet";
    size.title = known ? `${s.size_bytes} bytes` : "";
    storage.textContent = s.moving_to ? `${s.storage}, moving to ${s.moving_to}` : (s.storage ?? "");
    const message = (d.inFlight ? s.job?.last_error : null) || (s.sync_status === "failed" ? s.sync_error : "");
    const waiting = d.inFlight && s.waiting_for_storage
      ? `Waiting: ${s.waiting_for_storage}. The sync runs once one is back.` : "";
    const said = message || waiting || (s.sync_status === "failed" ? "The last sync failed." : "");
    error.replaceChildren(...(said ? failure(said) : []));
    error.hidden = !said;
    /** @type {HTMLButtonElement} */ (sync).disabled = d.inFlight;
    sync.setAttribute("aria-busy", String(d.inFlight && !d.deferred));
    force.hidden = !(admin && d.deferred);
  };

  const tick = async () => {
    try {
      last = await api("GET", `${base}/mirror/status`);
      if (!loaded) {
        loaded = true;
        section.replaceChildren(
          h("p", { class: "sync" }, badge), line, progress.el,
          h("dl", { class: "facts" },
            h("dt", { text: "Last successful sync" }), lastSync,
            h("dt", { text: "Last attempt" }), lastAttempt,
            h("dt", { text: "Next sync" }), nextSync,
            h("dt", { text: "Size" }), size,
            h("dt", { text: "Storage" }), storage),
          error,
          ...(manage ? [h("p", { class: "sync" }, sync, force), note] : []));
      }
      render(last);
    } catch (err) {
      if (!loaded) section.replaceChildren(h("p", { class: "form-error", text: err.message }));
      else note.textContent = `Could not refresh: ${err.message}`;
    }
  };
  const now = poller(tick, { alive: () => section.isConnected, inFlight: () => inFlight || Date.now() < flashUntil, busy: POLL_MS });

  /** @param {boolean} forced */
  const request = async (forced) => {
    /** @type {HTMLButtonElement} */ (sync).disabled = true;
    try {
      const accepted = await api("POST", `${base}/sync${forced ? "?force=true" : ""}`);
      note.textContent = acceptedText(accepted);
      // in flight from here on, whatever the next answer says: a sync that finishes
      // before it still ends in "Synced!"
      inFlight = true;
    } catch (err) {
      note.textContent = err.message;
      /** @type {HTMLButtonElement} */ (sync).disabled = false;
    }
    now();
  };
  sync.addEventListener("click", () => request(false));
  force.addEventListener("click", () => request(true));
  now();
}

/** The figures of a run that mean something: a failed or running one fetched nothing to count. @param {any} r */
function runFigures(r) {
  const counted = r.outcome === "success";
  const said = counted ? refs(r)
    : { text: r.refs_updated || r.refs_pruned ? `+${r.refs_updated ?? 0} -${r.refs_pruned ?? 0}` : "-", title: "" };
  const bytes = (counted && !r.unchanged) || r.bytes_received > 0 ? humanSize(r.bytes_received ?? 0) : "-";
  return { refs: said.text, refsTitle: said.title, bytes };
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
      h("tbody", {}, ...runs.map((/** @type {any} */ r) => {
        const { refs, refsTitle, bytes } = runFigures(r);
        return h("tr", { "data-outcome": r.outcome ?? "running" },
          timeEl("td", r.started_at, "ago", { "data-label": "Started" }),
          h("td", { text: r.outcome ?? "running", "data-label": "Outcome" }),
          r.error
            ? h("td", { "data-label": "Error", "data-testid": "run-error" }, ...failure(r.error, r.error_kind))
            : h("td", {}),
          h("td", { text: r.duration_ms == null ? "-" : `${r.duration_ms} ms`, "data-label": "Took" }),
          h("td", { text: refs, title: refsTitle || undefined, "data-label": "Refs", "data-testid": "run-refs" }),
          h("td", { text: bytes, "data-label": "Received" }),
          h("td", { text: lfsFigures(r), "data-label": "LFS", "data-testid": "run-lfs" }),
          h("td", { text: r.worker ?? "-", "data-label": "Worker" }));
      })))));
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

/** An http(s) upstream's user name and password or token, set, replaced or removed;
 * never shown back. @param {string} base @param {any} repo */
function credentials(base, repo) {
  const said = (/** @type {boolean} */ set) => set
    ? "Credentials are stored for this upstream (sealed, never shown)."
    : "No credentials stored: the upstream is fetched anonymously.";
  const state = h("p", { class: "muted", "data-testid": "credentials-state", text: said(Boolean(repo.credentials_configured)) });
  const user = h("input", { id: "cred-username", type: "text", autocomplete: "off", "aria-describedby": "cred-help" });
  const secret = h("input", { id: "cred-secret", type: "password", autocomplete: "new-password", "aria-describedby": "cred-help" });
  const error = h("p", { class: "form-error", role: "alert", "data-testid": "credentials-error" });
  /** @param {Record<string, string> | null} value */
  const save = async (value) => {
    error.textContent = "";
    try {
      Object.assign(repo, await api("PATCH", `${base}/mirror`, { credentials: value }));
      /** @type {HTMLInputElement} */ (secret).value = "";
      state.textContent = said(Boolean(repo.credentials_configured));
      toast(value ? "Credentials saved; the mirror syncs with them now." : "Credentials removed.");
    } catch (err) {
      error.textContent = err.message;
    }
  };
  const set = h("button", { type: "button", text: "Save credentials" });
  set.addEventListener("click", () => {
    const username = /** @type {HTMLInputElement} */ (user).value.trim();
    const token = /** @type {HTMLInputElement} */ (secret).value;
    if (!username || !token) {
      error.textContent = "A user name and a password or token are both needed.";
      return;
    }
    save({ username, token });
  });
  const remove = h("button", { type: "button", text: "Remove credentials" });
  remove.addEventListener("click", () => save(null));
  return h("div", {},
    state,
    h("p", { class: "muted", id: "cred-help", text: "For http(s) upstreams. With an access token, the user name is what the host expects (x-access-token on GitHub, oauth2 on GitLab, your user name on Gitea)." }),
    h("label", { for: "cred-username", text: "User name" }), user,
    h("label", { for: "cred-secret", text: "Password or access token" }), secret,
    error,
    h("p", { class: "sync" }, set, remove));
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

/** Whether an upstream URL is ssh: `ssh://…` or scp-like `user@host:path`. @param {string | null | undefined} url */
export function isSsh(url) {
  return /^ssh:\/\//i.test(url ?? "") || /^[^/:@\s]+@[^/:\s]+:(?!\/\/)/.test(url ?? "");
}

/**
 * The mirror's deploy key (public half, with a copy button; generated or rotated here)
 * and the upstream's host keys: detected, compared by their owner, then confirmed.
 * @param {string} base @param {any} repo
 */
function sshAccess(base, repo) {
  const keyLine = h("code", { class: "url", "data-testid": "deploy-key" });
  const keyPrint = h("p", { class: "muted", "data-testid": "deploy-key-fingerprint" });
  const copy = h("button", { type: "button", text: "Copy public key" });
  const rotate = h("button", { type: "button" });
  /** @param {any} key */
  const showKey = (key) => {
    keyLine.textContent = key ? key.public_key : "No deploy key yet.";
    keyPrint.textContent = key ? `Fingerprint ${key.fingerprint}. Add it upstream as a read-only deploy key.` : "";
    copy.hidden = !key;
    rotate.textContent = key ? "Rotate deploy key" : "Generate deploy key";
  };
  showKey(repo.deploy_key);
  copy.addEventListener("click", async () => {
    const text = keyLine.textContent ?? "";
    try {
      await navigator.clipboard.writeText(text);
      toast("Public key copied.");
    } catch {
      toast(text);
    }
  });
  rotate.addEventListener("click", async () => {
    /** @type {HTMLButtonElement} */ (rotate).disabled = true;
    try {
      repo.deploy_key = await api("POST", `${base}/mirror/deploy-key`);
      showKey(repo.deploy_key);
      toast("New deploy key: add it upstream and remove the old one.");
    } catch (err) {
      toast(err.message);
    } finally {
      /** @type {HTMLButtonElement} */ (rotate).disabled = false;
    }
  });

  const confirmed = h("ul", { "data-testid": "host-keys" });
  /** @param {any[]} keys */
  const showConfirmed = (keys) => confirmed.replaceChildren(...(keys.length
    ? keys.map((k) => h("li", {}, h("code", { text: `${k.key_type ?? "key"} ${k.fingerprint}` })))
    : [h("li", { class: "muted", text: "None confirmed: ssh syncs wait until you confirm the upstream's host keys." })]));
  showConfirmed(repo.ssh_host_keys ?? []);
  const detected = h("div", { "data-testid": "detected-host-keys" });
  const detect = h("button", { type: "button", text: "Detect host keys" });
  detect.addEventListener("click", async () => {
    /** @type {HTMLButtonElement} */ (detect).disabled = true;
    detected.replaceChildren(loading("Connecting to the upstream…"));
    try {
      const found = await api("POST", `${base}/mirror/host-keys/detect`);
      const accept = h("button", { type: "button", class: "primary", text: "Confirm these keys" });
      accept.addEventListener("click", async () => {
        try {
          const saved = await api("PUT", `${base}/mirror/host-keys`, { fingerprints: found.host_keys.map((/** @type {any} */ k) => k.fingerprint) });
          showConfirmed(saved.host_keys);
          detected.replaceChildren();
          toast("Host keys confirmed.");
        } catch (err) {
          toast(err.message);
        }
      });
      detected.replaceChildren(
        h("p", { class: "muted", text: `${found.host} offers these keys. Compare them with the fingerprints the upstream publishes before you confirm them.` }),
        h("ul", {}, ...found.host_keys.map((/** @type {any} */ k) => h("li", {}, h("code", { text: `${k.key_type ?? "key"} ${k.fingerprint}` })))),
        h("p", {}, accept));
    } catch (err) {
      detected.replaceChildren(h("p", { class: "form-error", role: "alert", text: err.message }));
    } finally {
      /** @type {HTMLButtonElement} */ (detect).disabled = false;
    }
  });
  return h("div", {},
    h("h3", { text: "Deploy key" }),
    h("p", {}, keyLine), keyPrint,
    h("p", { class: "sync" }, copy, rotate),
    h("h3", { text: "Host keys" }),
    confirmed,
    h("p", { class: "sync" }, detect),
    detected);
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
