// What a person reads when looking for trouble in a fleet, against the real stack of
// scripts/e2e.sh: the Mirrors table sorted failing first and filtered by a status count,
// a job's attempts as "n / m", the operator's counts that filter, its refresh that waits
// while someone types, pending jobs' run times, dead deliveries at the top with their
// purge, and the API docs' deep links, search and enum values. No page anywhere shows
// "[object Object]", "undefined" or "NaN". It runs after live.test.mjs.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdirSync } from "node:fs";
import { DESKTOP, PHONE, required, launch, git, shot, readable, accessible } from "./kit.mjs";

const { BASE_URL, DEFER_URL, TOKEN, UPSTREAMS, STASIS_REDIS_URL, STASIS_QUEUE_NAMESPACE } = process.env;
/** The order of the table's `status` sort, as its rows read. */
const URGENCY = [/^Failed, not scheduled$/, /^Failed$/, /^(Syncing|Retrying)$/, /^(Queued|Waiting for the queue|Scheduled)$/, /^(Idle|Not synced yet)$/, /^Up to date$/];

let browser;
let page;

async function signIn() {
  await page.goto(BASE_URL);
  await page.evaluate((t) => localStorage.setItem("stasis.token", t), TOKEN);
  await page.goto(`${BASE_URL}/#/mirrors`);
  await page.waitForLoadState("networkidle");
  await page.reload();
  await page.getByRole("heading", { level: 1, name: /Mirrors/ }).waitFor();
}

/** `method path` on the API as the admin. */
async function call(method, path, base = BASE_URL) {
  const answer = await page.request.fetch(`${base}/api/v1${path}`, { method, headers: { authorization: `Bearer ${TOKEN}` } });
  return { status: answer.status(), body: await answer.json().catch(() => null) };
}

/**
 * The first line of the docs' item about `name` (a parameter or a field) in operation `op`.
 * @param {string} op @param {string} name
 */
async function field(op, name) {
  const lines = await page.locator(`details#${op} li`).evaluateAll((items, n) => items
    .filter((li) => li.firstElementChild?.tagName === "CODE" && li.firstElementChild.textContent === n)
    .map((li) => li.innerText.split("\n")[0]), name);
  assert.ok(lines.length >= 1, `no ${name} in ${op}`);
  return lines[0];
}

/** The state each row of the table reads, top to bottom. */
async function rowStates() {
  return page.getByTestId("fleet-table").locator("tbody tr").getByTestId("row-state").allInnerTexts();
}

/** Where a state's text stands in the `status` order. @param {string} text */
function urgency(text) {
  const i = URGENCY.findIndex((re) => re.test(text.trim()));
  assert.ok(i >= 0, `a state nobody expects: ${text}`);
  return i;
}

before(async () => {
  required(["BASE_URL", "DEFER_URL", "TOKEN", "UPSTREAMS", "STASIS_REDIS_URL", "STASIS_QUEUE_NAMESPACE"]);
  ({ browser, page } = await launch());
  await signIn();
  // a failing mirror whose name sorts last, and a healthy one whose name sorts first:
  // failing first is then not the name order
  const good = `${UPSTREAMS}/fleet-good`;
  mkdirSync(good, { recursive: true });
  git(good, "init", "-q", "-b", "main");
  git(good, "commit", "-q", "--allow-empty", "-m", "first");
  for (const [name, url] of [["aaa-healthy", good], ["zzz-failing", `file://${UPSTREAMS}/never-there`]]) {
    const answer = await page.request.post(`${BASE_URL}/api/v1/repos/import`, {
      headers: { authorization: `Bearer ${TOKEN}` }, data: { name, clone_url: url, mirror: true },
    });
    assert.equal(answer.status(), 202, await answer.text());
  }
  // both imports end before the tests read them
  for (const [name, state] of [["aaa-healthy", "success"], ["zzz-failing", "hard_failed"]]) {
    let status;
    for (let i = 0; i < 300; i++) {
      ({ body: status } = await call("GET", `/repos/ada/${name}/mirror/status`));
      if (status.sync_state === state) break;
      await page.waitForTimeout(200);
    }
    assert.equal(status.sync_state, state, `${name}: ${JSON.stringify(status)}`);
  }
});

/** Runs `body`; a failure leaves a screenshot. @param {string} name @param {() => Promise<void>} body */
async function shooting(name, body) {
  try {
    await body();
  } catch (e) {
    await shot(page, `failure-fleet-${name}`);
    throw e;
  }
}

after(async () => {
  await browser?.close();
});

test("the fleet table sorts failing first, by name on a click, and a status count filters it", () => shooting("table", async () => {
  const errors = [];
  page.on("pageerror", (e) => errors.push(e.message));
  await page.setViewportSize(DESKTOP);
  await page.goto(`${BASE_URL}/#/mirrors?view=table`);
  const failing = page.locator('tr[data-repo="ada/zzz-failing"]');
  await failing.getByTestId("row-state").getByText(/^Failed/).waitFor();
  await page.locator('tr[data-repo="ada/aaa-healthy"]').getByTestId("row-state").getByText("Up to date").waitFor();
  // failing first by default: the first row fails, and no row is more urgent than one above
  assert.equal(await page.getByLabel("Sort by").inputValue(), "status");
  assert.equal(await page.getByRole("group", { name: "Show mirrors as" }).getByRole("link", { name: "Table" }).getAttribute("aria-current"), "true");
  const states = await rowStates();
  assert.match(states[0], /^Failed/, `first row: ${states.join(", ")}`);
  const ranks = states.map(urgency);
  assert.deepEqual(ranks, [...ranks].sort((a, b) => a - b), `rows out of order: ${states.join(", ")}`);
  assert.match(await failing.getByTestId("row-error").innerText(), /not.found|no such file|does not exist/i);
  assert.equal(await page.getByRole("columnheader", { name: /Status/ }).getAttribute("aria-sort"), "ascending");
  await readable(page, "the fleet table");
  await shot(page, "fleet-table-status-sorted");
  await accessible(page, "the fleet table");

  // a click on a column sorts by it; a second click reverses it
  await page.getByRole("button", { name: "Mirror", exact: true }).click();
  await page.waitForURL(/sort=name/);
  await page.getByRole("columnheader", { name: /Mirror/ }).and(page.locator('[aria-sort="ascending"]')).waitFor();
  const names = await page.getByTestId("fleet-table").locator("tbody tr").evaluateAll((rows) => rows.map((r) => r.getAttribute("data-repo")));
  assert.deepEqual(names, [...names].sort(), "sorted by name");
  assert.equal(names[0], "ada/aaa-healthy");
  await page.getByRole("button", { name: /^Mirror/ }).click();
  await page.waitForURL(/sort=-name/);
  await page.getByRole("columnheader", { name: /Mirror/ }).and(page.locator('[aria-sort="descending"]')).waitFor();

  // a status count filters the table to that status, and says how many it holds
  const failedCount = page.getByTestId("counts").locator('[data-status="failed"]');
  await failedCount.waitFor();
  const n = Number(await failedCount.locator("strong").innerText());
  assert.ok(n >= 1, "at least the failing mirror");
  await failedCount.click();
  await page.waitForURL(/status=failed/);
  await page.getByTestId("counts").locator('[data-status="failed"][aria-current="true"]').waitFor();
  await page.locator('tr[data-repo="ada/aaa-healthy"]').waitFor({ state: "detached" });
  const filtered = await rowStates();
  assert.equal(filtered.length, n, `the count said ${n}: ${filtered.join(", ")}`);
  for (const s of filtered) assert.match(s, /^Failed/);
  await page.getByTestId("counts").locator('[data-status="success"]').click();
  await page.waitForURL(/status=success/);
  await failing.waitFor({ state: "detached" });
  for (const s of await rowStates()) assert.equal(s, "Up to date");
  // the view and the order stay in the address across filters
  assert.match(page.url(), /view=table/);
  assert.match(page.url(), /sort=-name/);

  // on a phone the rows are labelled cards, nothing past the edge
  await page.setViewportSize(PHONE);
  await page.goto(`${BASE_URL}/#/mirrors?view=table`);
  await failing.waitFor();
  const wide = await page.evaluate(() => [...document.querySelectorAll("main *")]
    .filter((el) => el.getBoundingClientRect().right > window.innerWidth + 1).map((el) => el.tagName));
  assert.deepEqual(wide, [], "table wider than a phone");
  assert.match(await failing.getByTestId("row-state").innerText(), /^Failed/);
  await accessible(page, "the fleet table on a phone");
  await page.setViewportSize(DESKTOP);
  assert.deepEqual(errors, [], "no script errors");
}));

test("the operator page: attempts as n / m, counts that filter, a refresh that waits, run times, dead deliveries first", () => shooting("operator", async () => {
  await page.setViewportSize(DESKTOP);
  // the failing mirror's job: its detail's Attempts cell reads "n / m"
  const { body: listed } = await call("GET", "/admin/jobs?repo=ada/zzz-failing&state=failed");
  assert.equal(listed.jobs.length, 1, JSON.stringify(listed));
  const job = listed.jobs[0];
  const { body: detail } = await call("GET", `/admin/jobs/${job.id}`);
  assert.equal(typeof detail.attempts, "number", "attempts is a count");
  assert.equal(detail.runs.length, detail.attempts, "one run per attempt");
  await page.goto(`${BASE_URL}/#/operator?job=${job.id}`);
  const cell = page.locator(`tr[data-job="${job.id}"]`).getByTestId("job-attempts");
  await cell.waitFor();
  assert.equal(await cell.innerText(), `${detail.attempts} / ${detail.max_attempts}`);
  assert.match(await cell.innerText(), /^[1-9]\d* \/ [1-9]\d*$/);
  await page.locator(`tr[data-job="${job.id}"]`).getByTestId("attempts").getByText(/failed/).first().waitFor();
  await readable(page, "a job's detail");

  // a job that waits: the deferring API turns a Sync now right after a sync into one
  const synced = await call("POST", "/repos/ada/aaa-healthy/sync?force=true");
  assert.equal(synced.status, 202, JSON.stringify(synced.body));
  for (let i = 0; i < 100; i++) {
    const { body } = await call("GET", "/repos/ada/aaa-healthy/mirror/status");
    if (body.sync_state === "success" && !body.job) break;
    await page.waitForTimeout(200);
  }
  const deferred = await call("POST", "/repos/ada/aaa-healthy/sync", DEFER_URL);
  assert.equal(deferred.status, 202, JSON.stringify(deferred.body));
  assert.ok(Date.parse(deferred.body.next_run_at) > Date.now() + 60_000, JSON.stringify(deferred.body));

  // the counts filter the jobs by their state
  await page.goto(`${BASE_URL}/#/operator`);
  const pendingTile = page.getByTestId("depth-pending").getByRole("link");
  await pendingTile.waitFor();
  await pendingTile.click();
  await page.waitForURL(/state=pending/);
  await page.getByTestId("depth-pending").locator('a[aria-current="true"]').waitFor();
  const pendingRow = page.locator('tr[data-repo="ada/aaa-healthy"]');
  await pendingRow.waitFor();
  for (const s of await page.locator("tbody").getByTestId("job-state").allInnerTexts()) assert.equal(s, "pending");
  assert.equal(await page.getByLabel("Job state").inputValue(), "pending");
  // a pending job says when it runs
  assert.match(await pendingRow.getByTestId("job-runs").innerText(), /^\d{1,2}:\d\d([\s\u202f]?[AP]M)? \(in (\d+ min|1 h)\)$/);
  await page.getByTestId("depth-failed").getByRole("link").click();
  await page.waitForURL(/state=failed/);
  await page.locator('tr[data-repo="ada/zzz-failing"]').waitFor();
  for (const s of await page.locator("tbody").getByTestId("job-state").allInnerTexts()) assert.equal(s, "failed");
  await readable(page, "the operator page filtered");

  // the refresh is on from the start, and holds off while the operator types
  assert.equal(await page.getByLabel(/Refresh every/).isChecked(), true);
  await page.getByLabel("Repository or job id").fill("ada/zz");
  await page.getByTestId("refresh-note").getByText("Paused while you type.").waitFor({ timeout: 12_000 });
  assert.equal(await page.getByLabel("Repository or job id").inputValue(), "ada/zz", "what was typed stays");
  await page.getByLabel("Repository or job id").blur();
  await page.waitForFunction(() => document.getElementById("refresh-note")?.textContent === "", null, { timeout: 12_000 });

  // the actions of a row never overlap, on a desktop or a phone
  for (const size of [DESKTOP, PHONE]) {
    await page.setViewportSize(size);
    const boxes = await page.locator("tbody .actions").first().locator("button, a").evaluateAll((els) =>
      els.map((el) => { const r = el.getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]; }));
    assert.ok(boxes.length >= 2, "a failed job has Retry, Discard and Detail");
    for (let i = 0; i < boxes.length; i++) {
      for (let j = i + 1; j < boxes.length; j++) {
        const [a, b] = [boxes[i], boxes[j]];
        const apart = a[2] <= b[0] || b[2] <= a[0] || a[3] <= b[1] || b[3] <= a[1];
        assert.ok(apart, `actions overlap at ${size.width}px: ${JSON.stringify(boxes)}`);
      }
    }
  }
  await page.setViewportSize(DESKTOP);

  // a dead delivery: its section comes right after the counts, with the purge
  execFileSync("redis-cli", ["-u", STASIS_REDIS_URL, "SADD", `${STASIS_QUEUE_NAMESPACE}:sync-priority:dead`, "e2e-gone"], { stdio: "ignore" });
  await page.goto(`${BASE_URL}/#/operator`);
  const dead = page.getByTestId("dead-deliveries");
  const purge = dead.getByRole("button", { name: "Purge 1 dead delivery" });
  await purge.waitFor();
  // once the page's data is in, the section stands before the jobs
  await page.waitForFunction(() => {
    const d = document.querySelector('[data-testid="dead-deliveries"]');
    const jobs = [...document.querySelectorAll("main h2")].find((h) => h.textContent === "Jobs");
    return Boolean(d && jobs && (d.compareDocumentPosition(jobs) & Node.DOCUMENT_POSITION_FOLLOWING));
  }, null, { timeout: 10_000 });
  assert.match(await dead.locator("tbody").innerText(), /payload gone/);
  await shot(page, "operator-dead-deliveries-first");
  await accessible(page, "the operator page with dead deliveries");
  page.once("dialog", (d) => d.accept());
  await purge.click();
  await page.getByText("1 dead delivery removed.").waitFor();
  await dead.getByText(/None/).waitFor();
  await readable(page, "the operator page");
}));

test("the API docs: inline code, a deep link scrolls to its operation, a search, every enum's values", () => shooting("docs", async () => {
  for (const size of [DESKTOP, PHONE]) {
    await page.setViewportSize(size);
    await page.goto(`${BASE_URL}/api/v1/docs#getJob`);
    const op = page.locator("details#getJob");
    await op.getByText("Responses", { exact: true }).waitFor();
    assert.equal(await op.getAttribute("open"), "", "the linked operation is open");
    // scrolled to: its top is on screen though it is far down the page
    const top = await op.evaluate((el) => el.getBoundingClientRect().top);
    // scrolled to within a pixel: layout is in fractions of one
    assert.ok(top > -1 && top < 100, `the linked operation is ${top}px from the top`);
    assert.ok(await page.evaluate(() => window.scrollY) > 0, "the page scrolled");
    // a link to another operation on the page scrolls there too
    await page.evaluate(() => { location.hash = "#listRepositories"; });
    await page.waitForFunction(() => { const r = document.getElementById("listRepositories")?.getBoundingClientRect(); return r && r.top > -1 && r.top < 100; });
    assert.equal(await page.locator("details#listRepositories").getAttribute("open"), "");
  }
  await page.setViewportSize(DESKTOP);
  // descriptions' `code` is code, no backtick left to read
  const list = page.locator("details#listRepositories");
  assert.ok(await list.locator("li code", { hasText: /^owner\/name$/ }).count() >= 1, "inline code rendered");
  assert.doesNotMatch(await page.locator("main").innerText(), /`/);
  // the listing's sort and status filter list their values
  assert.match(await field("listRepositories", "sort"), /one of "name", "-name", "status", "-status", "last_success", "-last_success", "next_sync", "-next_sync"/);
  assert.match(await field("listRepositories", "sync_status"), /\(query, .*one of "idle", "queued", "syncing", "success", "failed", "hard_failed"/);
  // every enum and its values, sync_state's among them
  const values = page.locator("#enum-SyncStatus + dd");
  assert.match(await values.innerText(), /idle, queued, syncing, success, failed, hard_failed/);
  await page.locator("details#getRepository > summary").click();
  assert.match(await field("getRepository", "sync_state"), /one of "idle", "queued", "syncing", "success", "failed", "hard_failed"/);
  // the search keeps the operations that hold every word typed
  await page.getByLabel("Search operations").fill("mirror/history");
  await page.getByText(/^1 of \d+ operations match$/).waitFor();
  assert.equal(await page.locator("details.op:visible").count(), 1);
  assert.match(await page.locator("details.op:visible > summary").innerText(), /\/mirror\/history/);
  await page.getByLabel("Search operations").fill("");
  assert.ok(await page.locator("details.op:visible").count() > 20, "every operation back");
  await readable(page, "the API docs");
  for (const scheme of ["light", "dark"]) {
    await page.emulateMedia({ colorScheme: scheme });
    for (const size of [DESKTOP, PHONE]) {
      await page.setViewportSize(size);
      await shot(page, `api-docs-search-${size.width}-${scheme}`);
      await accessible(page, `the API docs at ${size.width}px, ${scheme}`);
    }
  }
  await page.emulateMedia({ colorScheme: "light" });
}));
