// What a person reads on the mirror pages as syncs happen, against the real stack of
// scripts/e2e.sh: the page follows a sync to its end with no reload, a deferred sync
// says when it runs, a failing mirror reads once and plainly, a non-owner gets no
// owner controls, a slow API shows "Loading…" rather than a stale page, and an import
// behind a slow upstream shows its download moving.
// It runs after ui.test.mjs, whose journey starts from an empty fleet.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdirSync, renameSync, writeFileSync } from "node:fs";
import net from "node:net";
import { required, launch, git, shot, readable } from "./kit.mjs";

const { BASE_URL, DEFER_URL, TOKEN, OWNER_TOKEN, OTHER_TOKEN, UPSTREAMS } = process.env;
/** Text nobody should ever read on a page. */

let browser;
let page;

/** A fresh upstream with one commit. @param {string} name */
function upstream(name) {
  const dir = `${UPSTREAMS}/${name}`;
  mkdirSync(dir, { recursive: true });
  git(dir, "init", "-q", "-b", "main");
  git(dir, "commit", "-q", "--allow-empty", "-m", "first");
  return dir;
}

/** Signs in at `base` with `token` (local storage is per origin). */
async function signInAs(token, base = BASE_URL) {
  await page.goto(base);
  await page.evaluate((t) => localStorage.setItem("stasis.token", t), token);
  await page.goto(`${base}/#/mirrors`);
  // requests cut off by a reload are no test of the page: let them end first
  await page.waitForLoadState("networkidle");
  await page.reload();
  await page.getByRole("heading", { level: 1, name: /Mirrors/ }).waitFor();
}

async function importAs(token, name, url) {
  const answer = await page.request.post(`${BASE_URL}/api/v1/repos/import`, {
    headers: { authorization: `Bearer ${token}` },
    data: { name, clone_url: url, mirror: true },
  });
  assert.equal(answer.status(), 202, await answer.text());
}

/**
 * Holds every request matching `pattern` (a slow API) until the function returned is
 * called; from then on they pass at once.
 * @param {RegExp} pattern
 */
async function holdRequests(pattern) {
  let open;
  const gate = new Promise((resolve) => { open = resolve; });
  await page.route(pattern, async (route) => { await gate; await route.continue(); });
  return open;
}

/** Opens a mirror's page afresh and waits for its status. */
async function openMirror(full, base = BASE_URL) {
  await page.goto(`${base}/#/mirror/${full}`);
  // requests cut off by a reload are no test of the page: let them end first
  await page.waitForLoadState("networkidle");
  await page.reload();
  await page.getByRole("heading", { level: 1, name: full }).waitFor();
  await page.getByTestId("sync-state").waitFor();
}

before(async () => {
  required(["BASE_URL", "DEFER_URL", "TOKEN", "OWNER_TOKEN", "OTHER_TOKEN", "UPSTREAMS"]);
  ({ browser, page } = await launch());
});

after(async () => {
  await browser?.close();
});

/** Runs `body`, with a screenshot named `name` when it fails. */
async function shooting(name, body) {
  const errors = [];
  const onError = (e) => errors.push(e.message);
  page.on("pageerror", onError);
  try {
    await body();
    assert.deepEqual(errors, [], "no script errors on the page");
  } catch (e) {
    await shot(page, `failure-${name}`);
    throw e;
  } finally {
    page.off("pageerror", onError);
  }
}

test("after Sync now the mirror page follows the sync to its end with no reload", () => shooting("live", async () => {
  const dir = upstream("bo-live");
  await importAs(OTHER_TOKEN, "bo-live", dir);
  await signInAs(OTHER_TOKEN);
  await openMirror("bo/bo-live");
  const state = page.getByTestId("sync-state");
  // the import's own sync ends on its own, with nobody reloading
  await state.getByText("Up to date").waitFor();
  const syncNow = page.getByRole("button", { name: "Sync now", exact: true });
  assert.equal(await syncNow.isEnabled(), true);
  git(dir, "commit", "-q", "--allow-empty", "-m", "more");
  await syncNow.click();
  // the answer is said in words, and the button waits for the sync
  await page.getByTestId("sync-note").getByText(/Sync queued\.|running now/).waitFor();
  assert.equal(await syncNow.isDisabled(), true, "Sync now disabled while the sync is queued or running");
  await state.getByText("Synced!").waitFor();
  await state.getByText("Up to date").waitFor({ timeout: 10_000 });
  assert.equal(await syncNow.isEnabled(), true, "Sync now enabled again once the sync ended");
  assert.match(await page.getByTestId("last-sync").innerText(), /^(just now|\d+s ago)$/);
  // the history took the new run in too: the import's and this one
  await page.locator('section[aria-label="History"] tr[data-outcome="success"]').nth(1).waitFor();
  // a sync that finds nothing new is counted in the change's row, not a row of its own
  await syncNow.click();
  const newest = page.locator('section[aria-label="History"] tbody tr').first().getByTestId("run-refs");
  await newest.getByText(/^\+\d+ -\d+, then unchanged ×1, last \d/).waitFor();
  assert.match(await newest.getAttribute("title"), /^changed at \S+; the check after it found nothing new, the last at \S+$/);
  await state.getByText("Up to date").waitFor({ timeout: 10_000 });
  // relative times age while the page stays open
  await page.getByTestId("last-sync").getByText(/^\d+s ago$/).waitFor({ timeout: 15_000 });
  await readable(page, "a mirror's page after a sync");
  await shot(page, "live-mirror-synced");
}));

test("a sync deferred by the minimum interval says when it runs; an admin can force it", () => shooting("deferred", async () => {
  await signInAs(OTHER_TOKEN, DEFER_URL);
  await openMirror("bo/bo-live", DEFER_URL);
  await page.getByTestId("sync-state").getByText("Up to date").waitFor();
  await page.getByRole("button", { name: "Sync now", exact: true }).click();
  await page.getByTestId("sync-note").getByText(/^Scheduled for \d{1,2}:\d{2}( [AP]M)? \(in \d+ (s|min|h)\): the last sync started less than the minimum interval ago\.$/).waitFor();
  await page.getByTestId("sync-state").getByText("Scheduled").waitFor();
  assert.match(await page.getByTestId("job-line").innerText(), /^Scheduled for \d{1,2}:\d{2}( [AP]M)? \(in \d+ (s|min|h)\)\.$/);
  assert.equal(await page.getByRole("button", { name: "Sync now", exact: true }).isDisabled(), true);
  // an owner is no admin: no force
  assert.equal(await page.getByRole("button", { name: "Sync now (force)" }).isVisible(), false);
  await shot(page, "deferred-owner");
  // the deferred sync is the mirror's state, whoever opens it: a reload says it again
  await openMirror("bo/bo-live", DEFER_URL);
  await page.getByTestId("job-line").getByText(/^Scheduled for /).waitFor();

  await signInAs(TOKEN, DEFER_URL);
  await openMirror("bo/bo-live", DEFER_URL);
  const force = page.getByRole("button", { name: "Sync now (force)" });
  await force.waitFor();
  await force.click();
  await page.getByTestId("sync-state").getByText("Synced!").waitFor();
  assert.equal(await force.isVisible(), false, "nothing left to force");
  await readable(page, "a mirror's page after a forced sync");
}));

test("a non-owner sees a mirror read-only; its owner and an admin get the controls", () => shooting("read-only", async () => {
  // olga owns mirrors of her own, and bo's is public
  await signInAs(OWNER_TOKEN);
  await openMirror("bo/bo-live");
  await page.getByTestId("read-only").getByText("only bo or an admin can").waitFor();
  await page.locator('section[aria-label="History"] tr[data-outcome="success"]').first().waitFor();
  assert.equal(await page.getByRole("form", { name: "Mirror settings" }).count(), 0, "no settings form");
  assert.equal(await page.getByRole("button", { name: "Save settings" }).count(), 0);
  assert.equal(await page.getByLabel("New secret").count(), 0, "no webhook secret field");
  assert.equal(await page.getByTestId("webhook-url").count(), 0);
  assert.equal(await page.getByRole("button", { name: /Delete/ }).count(), 0, "no delete button");
  assert.equal(await page.getByRole("button", { name: /Sync now/ }).count(), 0, "no sync button");
  await readable(page, "a mirror's page for a non-owner");
  await shot(page, "read-only-1280");
  await page.emulateMedia({ colorScheme: "dark" });
  await shot(page, "read-only-1280-dark");
  await page.emulateMedia({ colorScheme: "light" });

  for (const token of [OTHER_TOKEN, TOKEN]) {
    await signInAs(token);
    await openMirror("bo/bo-live");
    await page.getByRole("button", { name: "Save settings" }).waitFor();
    await page.getByRole("button", { name: "Delete this mirror" }).waitFor();
    await page.getByLabel("New secret").waitFor();
    assert.equal(await page.getByTestId("read-only").count(), 0);
  }
}));

test("a failing mirror reads plainly: its error once with its kind, no figures it did not fetch", () => shooting("failing", async () => {
  const dir = upstream("bo-flaky");
  // file://: a bare path that has gone is no URL at all, a file:// one is a repository
  // not found
  await importAs(OTHER_TOKEN, "bo-flaky", `file://${dir}`);
  await signInAs(OTHER_TOKEN);
  await openMirror("bo/bo-flaky");
  await page.getByTestId("sync-state").getByText("Up to date").waitFor();
  // the upstream goes away: not found is permanent, but a mirror that synced before is
  // not stopped by one such answer: it fails and stays scheduled
  renameSync(dir, `${dir}-away`);
  await page.getByRole("button", { name: "Sync now", exact: true }).click();
  await page.getByTestId("sync-state").getByText("Failed", { exact: true }).waitFor();
  assert.match(await page.getByTestId("next-sync").innerText(), /^in \d+[smhd]$/);
  const failed = page.locator('section[aria-label="History"] tr[data-outcome="failed"]').first();
  await failed.waitFor();
  const error = await failed.getByTestId("run-error").innerText();
  const kind = (await failed.locator(".kind").innerText()).trim();
  assert.ok(kind.length > 0, "the error's kind is labelled");
  // the kind is the label, not repeated in brackets after the message
  assert.doesNotMatch(error, /\([a-z_]+\)/, `the kind once in "${error}"`);
  assert.match(error, new RegExp(`^${kind}\\s+\\S`));
  assert.equal(await failed.locator('td[data-label="Refs"]').innerText(), "-");
  assert.equal(await failed.locator('td[data-label="Received"]').innerText(), "-");
  // the successful run before it keeps its figures
  const ok = page.locator('section[aria-label="History"] tr[data-outcome="success"]').first();
  assert.match(await ok.locator('td[data-label="Received"]').innerText(), /^\d+(\.\d)? (B|kB|MB)$/);
  // the failed attempt beside the last success
  assert.match(await page.getByTestId("last-sync").innerText(), /^(just now|\d+s ago)$/);
  assert.match(await page.getByTestId("last-attempt").innerText(), /^(just now|\d+s ago) \(failed\)$/);
  await readable(page, "a failing mirror's page");
  await shot(page, "failing-mirror");
  await page.goto(`${BASE_URL}/#/mirrors`);
  const card = page.locator('article[data-repo="bo/bo-flaky"]');
  await card.getByTestId("sync-state").getByText("Failed", { exact: true }).waitFor();
  assert.match(await card.getByTestId("last-attempt").innerText(), /^(just now|\d+s ago), failed$/);
  assert.match(await card.getByTestId("sync-error").innerText(), /not.found|no such|does not exist/i);
  await readable(page, "the mirrors page with a failing mirror");
  // the counts per status: the failure counted, and a click filters by it
  const counts = page.getByTestId("counts");
  assert.match(await counts.locator('[data-status="failed"]').innerText(), /^1 Failed$/);
  assert.match(await counts.locator('[data-status="all"]').innerText(), /^2 All$/);
  await counts.locator('[data-status="failed"]').click();
  await page.locator('article[data-repo="bo/bo-live"]').waitFor({ state: "detached" });
  await card.waitFor();
  assert.match(page.url(), /status=failed/);
  assert.equal(await counts.locator('[aria-current="true"]').getAttribute("data-status"), "failed");
  renameSync(`${dir}-away`, dir);
}));

test("a job's detail reads its attempts as n / m, and nothing reads [object Object]", () => shooting("job", async () => {
  const answer = await page.request.get(`${BASE_URL}/api/v1/admin/jobs?repo=${encodeURIComponent("bo/bo-live")}`, {
    headers: { authorization: `Bearer ${TOKEN}` },
  });
  assert.equal(answer.status(), 200, await answer.text());
  const { jobs } = await answer.json();
  const done = jobs.find((j) => j.state === "done");
  assert.ok(done, "bo/bo-live has a finished job");
  await signInAs(TOKEN);
  await page.goto(`${BASE_URL}/#/operator?job=${done.id}`);
  const row = page.locator(`tr[data-job="${done.id}"]`);
  await row.getByTestId("attempts").waitFor();
  assert.match(await row.getByTestId("job-attempts").innerText(), /^\d+ \/ \d+$/);
  await readable(page, "a job's detail");
  await page.goto(`${BASE_URL}/#/operator`);
  await page.getByRole("heading", { name: /Workers alive/ }).waitFor();
  await page.locator("tr[data-job]").first().waitFor();
  for (const cell of await page.getByTestId("job-attempts").allInnerTexts()) assert.match(cell, /^\d+ \/ \d+$/);
  await readable(page, "the operator board");
}));

test("a slow API shows Loading…, not the page before nor bare headings", () => shooting("loading", async () => {
  await signInAs(OTHER_TOKEN);
  await page.locator('article[data-repo="bo/bo-live"]').waitFor();
  const release = await holdRequests(/\/api\/v1\/repos\/bo\/bo-live(\?|$)/);
  await page.goto(`${BASE_URL}/#/mirror/bo/bo-live`);
  await page.getByRole("heading", { level: 1, name: "bo/bo-live" }).waitFor();
  await page.getByTestId("loading").getByText("Loading…").waitFor();
  assert.equal(await page.locator("article.card").count(), 0, "the list before is gone");
  await shot(page, "loading-mirror");
  release();
  await page.getByTestId("sync-state").waitFor();

  const releaseList = await holdRequests(/\/api\/v1\/users\/bo\/repos/);
  await page.goto(`${BASE_URL}/#/mirrors`);
  await page.getByRole("heading", { level: 1, name: "Mirrors" }).waitFor();
  await page.getByTestId("loading").getByText("Loading…").waitFor();
  assert.equal(await page.getByRole("heading", { level: 1, name: "bo/bo-live" }).count(), 0, "the mirror page before is gone");
  await shot(page, "loading-mirrors");
  releaseList();
  await page.locator('article[data-repo="bo/bo-live"]').waitFor();
  assert.equal(await page.getByTestId("loading").count(), 0);
}));

test("the import form takes what the API takes: interval, ref patterns, private, description", () => shooting("import", async () => {
  const dir = upstream("bo-options");
  await signInAs(OTHER_TOKEN);
  await page.getByRole("link", { name: "Import", exact: true }).click();
  await page.getByLabel("Repository name").fill("bo-options");
  await page.getByLabel("Clone URL").fill(dir);
  await page.getByText("More options").click();
  await page.getByLabel("Sync interval").fill("1s");
  await page.getByRole("button", { name: "Import" }).click();
  // the API's refusal lands beside its field
  await page.getByTestId("sync_interval-error").filter({ hasText: /interval/i }).waitFor();
  assert.equal(await page.getByLabel("Sync interval").getAttribute("aria-invalid"), "true");
  await page.getByLabel("Sync interval").fill("2h");
  await page.getByLabel("Description").fill("options from the form");
  await page.getByLabel("Private (only you and admins see it)").check();
  await page.getByLabel("Refs to leave out (one pattern per line)").fill("refs/pull/*\nrefs/tags/nightly-*");
  await shot(page, "import-options");
  await page.getByRole("button", { name: "Import" }).click();
  await page.locator('article[data-repo="bo/bo-options"]').waitFor();
  const repo = await page.request.get(`${BASE_URL}/api/v1/repos/bo/bo-options`, {
    headers: { authorization: `Bearer ${OTHER_TOKEN}` },
  }).then((r) => r.json());
  assert.equal(repo.sync_interval_seconds, 7200);
  assert.equal(repo.private, true);
  assert.equal(repo.description, "options from the form");
  assert.deepEqual(repo.exclude_refs, ["refs/pull/*", "refs/tags/nightly-*"]);
}));

/** A port free on loopback now. */
async function freePort() {
  const server = net.createServer();
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = /** @type {net.AddressInfo} */ (server.address());
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/**
 * `git daemon` serving UPSTREAMS behind a loopback proxy that lets `bytesPerSec` through
 * from the daemon to the client: a slow upstream, as over a long link.
 * @param {number} bytesPerSec
 */
async function slowUpstream(bytesPerSec) {
  const daemonPort = await freePort();
  const daemon = spawn("git", ["daemon", "--export-all", "--reuseaddr", "--listen=127.0.0.1",
    `--port=${daemonPort}`, `--base-path=${UPSTREAMS}`, UPSTREAMS], { stdio: "ignore" });
  for (let i = 0; ; i++) {
    const up = await new Promise((resolve) => {
      const probe = net.connect(daemonPort, "127.0.0.1", () => { probe.destroy(); resolve(true); });
      probe.on("error", () => resolve(false));
    });
    if (up) break;
    assert.ok(i < 100, "git daemon listening");
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  const proxy = net.createServer((client) => {
    const upstream = net.connect(daemonPort, "127.0.0.1");
    client.pipe(upstream);
    // each chunk waits its share of the rate before the next is read
    upstream.on("data", (chunk) => {
      upstream.pause();
      client.write(chunk);
      setTimeout(() => upstream.resume(), (chunk.length * 1000) / bytesPerSec);
    });
    upstream.on("end", () => client.end());
    upstream.on("error", () => client.destroy());
    client.on("error", () => upstream.destroy());
    client.on("close", () => upstream.destroy());
  });
  await new Promise((resolve) => proxy.listen(0, "127.0.0.1", resolve));
  const { port } = /** @type {net.AddressInfo} */ (proxy.address());
  return {
    url: (/** @type {string} */ name) => `git://127.0.0.1:${port}/${name}`,
    close: () => { proxy.close(); daemon.kill(); },
  };
}

/** "1,234 of 5,678 objects, 2.1 MB" → [1234, 5678]. @param {string} text */
function objects(text) {
  const m = /^([\d,]+) of ([\d,]+) objects, \d+(\.\d)? (B|kB|MB)$/.exec(text);
  assert.ok(m, `progress reads "${text}"`);
  return [Number(m[1].replaceAll(",", "")), Number(m[2].replaceAll(",", ""))];
}

test("an import behind a slow upstream shows its download moving, on its page and its card", () => shooting("progress", async () => {
  const dir = upstream("bo-big");
  // 3 MB in 150 objects at 150 kB/s: about 20 s of download
  mkdirSync(`${dir}/data`);
  for (let i = 0; i < 150; i++) writeFileSync(`${dir}/data/${i}.bin`, randomBytes(20_000));
  git(dir, "add", "data");
  git(dir, "commit", "-q", "-m", "data");
  const slow = await slowUpstream(150_000);
  try {
    await importAs(OTHER_TOKEN, "bo-big", slow.url("bo-big"));
    await signInAs(OTHER_TOKEN);
    await openMirror("bo/bo-big");
    const words = page.getByTestId("sync-progress-text");
    await words.getByText(/^[\d,]+ of [\d,]+ objects, /).waitFor();
    const first = objects(await words.innerText());
    // the page polls once a second: the next reading differs
    await page.waitForFunction((was) => {
      const now = document.querySelector('[data-testid="sync-progress-text"]')?.textContent ?? "";
      return /objects, /.test(now) && !now.startsWith(`${was} of`);
    }, first[0].toLocaleString("en-US"));
    const second = objects(await words.innerText());
    assert.ok(first[1] > 150 && second[1] === first[1], `the total stays: ${first} then ${second}`);
    assert.ok(second[0] > first[0], `received objects grow: ${first} then ${second}`);
    const bar = page.getByTestId("sync-progress").locator("progress");
    assert.ok(Number(await bar.getAttribute("value")) > 0, "the bar has moved");
    await readable(page, "a mirror's page while it downloads");
    await shot(page, "progress-mirror");

    // its card on the Mirrors page shows the same while the download runs
    await page.goto(`${BASE_URL}/#/mirrors`);
    const card = page.locator('article[data-repo="bo/bo-big"]');
    const cardWords = card.getByTestId("sync-progress-text");
    await cardWords.getByText(/^[\d,]+ of [\d,]+ objects, /).waitFor();
    const onCard = objects(await cardWords.innerText());
    assert.ok(onCard[0] >= second[0] && onCard[1] === second[1], `${second} then on the card ${onCard}`);
    await shot(page, "progress-card");

    // once synced, no bar is left
    await card.getByTestId("sync-state").getByText(/Synced!|Up to date/).waitFor({ timeout: 60_000 });
    assert.equal(await card.getByTestId("sync-progress").isVisible(), false);
    await readable(page, "the mirrors page after the download");
  } finally {
    slow.close();
  }
}));
