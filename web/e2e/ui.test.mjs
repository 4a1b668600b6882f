// The web UI in headless Chromium against a real stack started by scripts/e2e.sh: an
// API, a worker, Postgres, Redis and git upstreams on this machine.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { DESKTOP, PHONE, required, launch, git, shot, readable, accessible } from "./kit.mjs";

const { BASE_URL, TOKEN, OWNER_TOKEN, GOOD_UPSTREAM, MISSING_UPSTREAM } = process.env;

let browser;
let page;

before(async () => {
  required(["BASE_URL", "TOKEN", "OWNER_TOKEN", "GOOD_UPSTREAM", "MISSING_UPSTREAM"]);
  ({ browser, page } = await launch());
});

after(async () => {
  await browser?.close();
});

test("sign in, import, sync now, see a failure, retry it as an operator", async () => {
  try {
    await journey();
  } catch (e) {
    await shot(page, "failure");
    throw e;
  }
});

async function journey() {
  const errors = [];
  page.on("pageerror", (e) => errors.push(e.message));

  // sign-in refuses a bad token, accepts a good one
  await page.goto(BASE_URL);
  await page.getByLabel("API token").fill("stasis_not_a_token");
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByText("That token is not valid.").waitFor();
  await shot(page, "01-sign-in-refused");
  await accessible(page, "the sign-in page");
  await page.getByLabel("API token").fill(TOKEN);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("heading", { name: "Mirrors" }).waitFor();
  await page.getByText("No mirrors here yet").waitFor();

  // the import form shows the API's validation errors beside their fields
  await page.getByRole("link", { name: "Import", exact: true }).click();
  await page.getByRole("button", { name: "Import" }).click();
  await page.getByTestId("name-error").getByText("A name is required.").waitFor();
  await page.getByLabel("Repository name").fill("good");
  await page.getByLabel("Clone URL").fill("ftp://example.com/x.git");
  await page.getByRole("button", { name: "Import" }).click();
  await page.getByTestId("clone_url-error").filter({ hasText: /\S/ }).waitFor();
  assert.equal(await page.getByLabel("Clone URL").getAttribute("aria-invalid"), "true");
  await shot(page, "02-import-invalid-url");
  await page.getByLabel("Clone URL").fill(GOOD_UPSTREAM);
  await page.getByRole("button", { name: "Import" }).click();

  // the import syncs on its own; "Sync now" then spins, and turns to "Synced!"
  const good = page.locator('article[data-repo$="/good"]');
  const goodState = good.getByTestId("sync-state");
  await goodState.filter({ hasText: /Up to date|Synced!/ }).waitFor();
  git(GOOD_UPSTREAM, "commit", "-q", "--allow-empty", "-m", "more upstream work");
  await good.getByRole("button", { name: "Sync now" }).click();
  await goodState.filter({ hasText: /Queued|Syncing/ }).waitFor();
  assert.ok(await good.getByRole("button", { name: "Sync now" }).isDisabled(), "button disabled while syncing");
  await shot(page, "03-syncing");
  await goodState.getByText("Synced!").waitFor();
  assert.match(await goodState.evaluate((el) => el.className), /\bok\b/);
  await shot(page, "04-synced");
  await goodState.getByText("Up to date").waitFor({ timeout: 6_000 });
  assert.match(await good.getByTestId("last-sync").innerText(), /just now|\d+s ago/);
  // the mirror's size on disk, from its status, human-readable
  assert.match(await good.getByTestId("size").innerText(), /^\d+(\.\d)? (B|kB|MB)$/);
  assert.match(await good.getByTestId("size").getAttribute("title"), /^[1-9]\d* bytes$/);
  await good.getByText("Recent syncs").click();
  await good.locator("tbody tr").first().waitFor();
  assert.ok((await good.locator("tbody tr").count()) >= 2, "import and manual sync in history");

  // a mirror whose upstream does not exist fails with its error in red
  await page.getByRole("link", { name: "Import", exact: true }).click();
  await page.getByLabel("Repository name").fill("broken");
  await page.getByLabel("Clone URL").fill(`file://${MISSING_UPSTREAM}`);
  await page.getByRole("button", { name: "Import" }).click();
  const broken = page.locator('article[data-repo$="/broken"]');
  await broken.getByTestId("sync-state").getByText("Failed").waitFor();
  assert.ok(await broken.getByTestId("size").isHidden(), "no size before anything was stored");
  assert.match(await broken.getByTestId("sync-error").innerText(), /not.found|no such file|does not exist/i);
  await shot(page, "05-failed");
  await accessible(page, "the mirrors page");

  // not found is permanent: no more scheduled syncs until someone acts
  assert.match(await broken.getByTestId("sync-error").innerText(), /Scheduled syncs stopped/);

  // the filter narrows the list to those mirrors
  await page.getByLabel("Status").selectOption("hard_failed");
  await page.locator('article[data-repo$="/good"]').waitFor({ state: "detached" });
  await broken.waitFor();
  // the public status `failed` covers a mirror failed for good too; a filtered page is still
  // the Mirrors page in the nav
  await page.getByLabel("Status").selectOption("failed");
  await broken.waitFor();
  assert.equal(await page.getByRole("link", { name: "Mirrors", exact: true }).getAttribute("aria-current"), "page");
  // on a desktop screen the cards are wide enough for an upstream URL
  const cardWidth = await broken.evaluate((el) => el.getBoundingClientRect().width);
  assert.ok(cardWidth >= 380, `a card is ${cardWidth}px wide`);
  assert.match(await broken.getByTestId("sync-state").innerText(), /not scheduled/);

  // the operator page lists the failed job; once the upstream exists, Retry brings it home
  await page.getByRole("link", { name: "Operator" }).click();
  await page.getByRole("heading", { name: /Workers alive \(1\)/ }).waitFor();
  // abuse limits are visible on the operator page
  assert.match(await page.getByTestId("api-refusals").innerText(), /rate-limited \(read \d+, write \d+, import \d+\) · \d+ sync requests coalesced/);
  await page.getByLabel("Job state").selectOption("failed");
  const row = page.locator('tr[data-repo$="/broken"]');
  await row.getByTestId("job-state").getByText("failed").waitFor();
  await shot(page, "06-operator-failed-job");
  await accessible(page, "the operator page");
  // the board: Redis deliveries, paging, a job's attempts, the scheduler's switch
  assert.match(await page.getByTestId("redis-depth").innerText(), /Redis deliveries: \d+ ready, \d+ scheduled/);
  assert.match(await page.getByTestId("paging").innerText(), /Page 1 of 1 · 1 jobs/);
  await row.locator("summary").click();
  await row.getByTestId("attempts").getByText(/failed/).first().waitFor();
  await page.getByRole("button", { name: "Pause scheduler" }).click();
  await page.getByTestId("scheduler").getByText(/paused/).waitFor();
  await page.getByRole("button", { name: "Resume scheduler" }).click();
  await page.getByRole("button", { name: "Pause scheduler" }).waitFor();
  mkdirSync(MISSING_UPSTREAM, { recursive: true });
  git(MISSING_UPSTREAM, "init", "-q", "-b", "main");
  git(MISSING_UPSTREAM, "-c", "user.name=E2E", "-c", "user.email=e2e@example.com", "commit", "-q", "--allow-empty", "-m", "now it exists");
  await row.getByRole("button", { name: /Retry/ }).click();
  await page.getByText("job sent back to the queue").waitFor();
  // the list reloads after the action: the job has left the failed ones
  await row.waitFor({ state: "detached" });
  await page.getByLabel("Job state").selectOption("done");
  // the board refreshes itself until the retried job shows up done
  await page.getByLabel(/Refresh every/).check();
  await page.locator('tr[data-repo$="/broken"]').waitFor({ timeout: 60_000 });
  assert.equal(await page.locator('tr[data-repo$="/broken"]').getByTestId("job-state").innerText(), "done");
  assert.match(await page.getByTestId("done-kept").innerText(), /kept until its mirror's next run of its own.*history keeps every run/);
  await shot(page, "07-operator-retried");
  await page.getByRole("link", { name: "Mirrors", exact: true }).click();
  await page.locator('article[data-repo$="/broken"]').getByTestId("sync-state").getByText("Up to date").waitFor();

  // one mirror's page: status, history with its figures, settings, webhook
  await page.locator('article[data-repo$="/good"] h2 a').click();
  await page.getByRole("heading", { name: /\/good$/ }).waitFor();
  const facts = await page.locator("dl.facts").innerText();
  assert.match(facts, /Last successful sync\s+\S/);
  assert.match(facts, /Last attempt/);
  assert.match(facts, /Size\s+[\d.]+ (B|kB|MB)/);
  await page.locator('section[aria-label="History"] tr[data-outcome="success"]').first().waitFor();
  await page.getByLabel("Sync interval").fill("2h");
  await page.getByRole("button", { name: "Save settings" }).click();
  await page.getByText("Settings saved.").waitFor();
  await page.getByLabel("Sync interval").fill("1s");
  await page.getByRole("button", { name: "Save settings" }).click();
  await page.getByTestId("settings-error").getByText(/interval/i).waitFor();
  assert.match(await page.getByTestId("webhook-url").innerText(), /\/api\/v1\/hooks\/[^/]+\/good$/);
  await page.getByLabel("New secret").fill("a-long-enough-secret");
  await page.getByRole("button", { name: "Set or rotate secret" }).click();
  await page.getByTestId("webhook-state").getByText("A secret is set").waitFor();
  await shot(page, "08-mirror-page");
  await accessible(page, "a mirror's page");

  // usable on a phone: nothing wider than the screen, every field labelled
  await page.setViewportSize(PHONE);
  await page.goto(`${BASE_URL}/#/mirrors`);
  await page.locator("article.card").first().waitFor();
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 0, `page is ${overflow}px wider than a phone screen`);
  await shot(page, "09-phone");
  // the operator's tables become labelled cards: no element reaches past the screen
  await page.getByRole("link", { name: "Operator" }).click();
  await page.locator('tr[data-repo$="/broken"]').waitFor();
  const wide = await page.evaluate(() => [...document.querySelectorAll("main *")]
    .filter((el) => el.getBoundingClientRect().right > window.innerWidth + 1)
    .map((el) => `${el.tagName.toLowerCase()}.${el.className}`));
  assert.deepEqual(wide, [], "elements wider than a phone screen");
  await shot(page, "10-phone-operator");
  await accessible(page, "the operator page on a phone");
  await page.getByRole("link", { name: "Import", exact: true }).click();
  await page.getByRole("heading", { name: "Import a repository" }).waitFor();
  const unlabelled = await page.evaluate(() =>
    [...document.querySelectorAll("input, select")].filter((el) => el.labels?.length === 0).map((el) => el.id));
  assert.deepEqual(unlabelled, []);
  // the mirror page on a phone: every field labelled, nothing past the screen; delete
  // asks for the name first
  await page.goto(`${BASE_URL}/#/mirrors`);
  await page.locator('article[data-repo$="/good"] h2 a').click();
  await page.getByRole("button", { name: "Save settings" }).waitFor();
  const bare = await page.evaluate(() =>
    [...document.querySelectorAll("input, select, textarea")].filter((el) => el.labels?.length === 0).map((el) => el.id));
  assert.deepEqual(bare, []);
  const past = await page.evaluate(() => [...document.querySelectorAll("main *")]
    .filter((el) => el.getBoundingClientRect().right > window.innerWidth + 1).map((el) => el.tagName));
  assert.deepEqual(past, [], "mirror page elements wider than a phone screen");
  await shot(page, "11-phone-mirror-page");
  const remove = page.getByRole("button", { name: "Delete this mirror" });
  assert.equal(await remove.isDisabled(), true);
  const fullName = (await page.getByRole("heading", { level: 1 }).innerText()).trim();
  await page.getByLabel(/Type .* to confirm/).fill(fullName);
  await remove.click();
  await page.getByRole("heading", { name: "Mirrors" }).waitFor();
  await page.locator('article[data-repo$="/good"]').waitFor({ state: "detached" });

  await page.getByRole("button", { name: "Sign out" }).click();
  await page.getByLabel("API token").waitFor();
  // signed out: no navigation to pages that need a token, help without markup
  assert.equal(await page.locator("#nav").isVisible(), false, "nav hidden when signed out");
  assert.doesNotMatch(await page.locator("#token-help").innerText(), /`/);
  const icon = await page.request.get(`${BASE_URL}/favicon.ico`);
  assert.equal(icon.status(), 200);
  assert.deepEqual(errors, [], "no script errors on the page");
}

// ---- the admin's fleet view, the operator board's tools, the API docs ----------------

/** Signs in with `token` as the sign-in form would leave it. @param {string} token */
async function signInAs(token) {
  await page.goto(BASE_URL);
  await page.evaluate((t) => localStorage.setItem("stasis.token", t), token);
  // a fresh document: the app keeps who is signed in for the page's life
  await page.goto(`${BASE_URL}/#/mirrors`);
  // requests cut off by a reload are no test of the page: let them end first
  await page.waitForLoadState("networkidle");
  await page.reload();
  await page.getByRole("heading", { level: 1, name: /Mirrors/ }).waitFor();
}

/** `POST /api/v1/repos/import` as the holder of `token`. */
async function importAs(token, name, url) {
  const answer = await page.request.post(`${BASE_URL}/api/v1/repos/import`, {
    headers: { authorization: `Bearer ${token}` },
    data: { name, clone_url: url, mirror: true },
  });
  assert.equal(answer.status(), 202, await answer.text());
}

/** Every element of the page that reaches past the viewport's right edge. */
async function pastTheEdge() {
  return page.evaluate(() => [...document.querySelectorAll("body *")]
    .filter((el) => el.getBoundingClientRect().right > window.innerWidth + 1)
    .map((el) => `${el.tagName.toLowerCase()}${el.id ? `#${el.id}` : ""}.${el.className?.baseVal ?? el.className}`));
}

test("an admin filters the fleet, syncs many mirrors, and finds, discards and retries jobs", async () => {
  const errors = [];
  const onError = (e) => errors.push(e.message);
  page.on("pageerror", onError);
  try {
    await page.setViewportSize(DESKTOP);
    await importAs(OWNER_TOKEN, "olga-tools", GOOD_UPSTREAM);
    await importAs(OWNER_TOKEN, "olga-gone", `file://${MISSING_UPSTREAM}-never`);
    await signInAs(TOKEN);
    await page.getByRole("heading", { name: "Mirrors (all owners)" }).waitFor();
    await page.locator('article[data-repo="olga/olga-gone"]').getByTestId("sync-state").getByText("Failed").waitFor();

    // filters: by owner, by name, by upstream host; each keeps the others in the address
    await page.getByLabel("Owner").fill("olga");
    await page.getByRole("button", { name: "Filter" }).click();
    await page.locator('article[data-repo^="ada/"]').first().waitFor({ state: "detached" });
    await page.locator('article[data-repo="olga/olga-tools"]').waitFor();
    assert.equal(await page.locator("article.card").count(), 2);
    await page.getByLabel("Name contains").fill("TOOLS");
    await page.getByRole("button", { name: "Filter" }).click();
    await page.locator('article[data-repo="olga/olga-gone"]').waitFor({ state: "detached" });
    assert.match(page.url(), /owner=olga/);
    await page.getByTestId("paging").getByText(/^Page 1 of 1 · 1 mirror$/).waitFor();
    await page.getByLabel("Upstream host").fill("example.com");
    await page.getByRole("button", { name: "Filter" }).click();
    await page.getByText("No mirrors match these filters.").waitFor();
    await shot(page, "12-fleet-filtered-empty");
    await page.getByRole("link", { name: "Show all" }).click();
    await page.locator('article[data-repo="olga/olga-gone"]').waitFor();
    await page.getByLabel("Owner").fill("nobody-here");
    await page.getByRole("button", { name: "Filter" }).click();
    await page.getByText("There is no user named nobody-here.").waitFor();
    await page.goto(`${BASE_URL}/#/mirrors`);

    // bulk: the failed mirror shown is retried; then every mirror selected is synced
    await page.getByRole("button", { name: "Retry the 1 failed shown" }).click();
    await page.getByText("1 of 1 mirrors queued.").waitFor();
    await page.getByLabel("Select all shown").check();
    const count = await page.locator("article.card").count();
    await page.getByRole("button", { name: `Sync ${count} selected` }).click();
    await page.getByText(`${count} of ${count} mirrors queued.`).waitFor();
    await shot(page, "13-fleet-bulk-synced");
    await accessible(page, "the fleet view");

    // the operator board: charts from the API, lanes, dead deliveries
    await page.getByRole("link", { name: "Operator" }).click();
    const chart = page.getByTestId("activity").getByRole("img");
    await chart.waitFor();
    assert.match(await chart.getAttribute("aria-label"), /Attempts over the last hour: [1-9]\d* synced/);
    assert.match(await page.getByTestId("total-failed").innerText(), /Failed: [1-9]/);
    await page.getByRole("button", { name: "Last day" }).click();
    await page.getByRole("button", { name: "Last day", pressed: true }).waitFor();
    assert.match(await chart.getAttribute("aria-label"), /over the last day/);
    await page.locator('tr[data-lane="priority"]').waitFor();
    await page.getByTestId("dead-deliveries").getByText(/None/).waitFor();

    // search: a repository narrows the list; a bad query is refused before any request
    await page.getByLabel("Repository or job id").fill("olga/olga-gone");
    await page.getByRole("button", { name: "Find" }).click();
    const gone = page.locator('tr[data-repo="olga/olga-gone"]');
    // the unfiltered list held these rows too: wait for the others to leave
    await page.locator('tbody tr[data-repo]:not([data-repo="olga/olga-gone"])').first().waitFor({ state: "detached" });
    await gone.first().waitFor();
    await page.getByLabel("Repository or job id").fill("not a repository");
    await page.getByRole("button", { name: "Find" }).click();
    await page.getByText("Search for a repository as owner/name").waitFor();
    // ... and a job id opens that job with its attempts
    await gone.locator('[data-testid="job-state"]', { hasText: "failed" }).first().waitFor({ timeout: 60_000 });
    const failedRow = page.locator('tr[data-repo="olga/olga-gone"]', { has: page.getByTestId("job-state").getByText("failed", { exact: true }) }).first();
    const jobId = await failedRow.getAttribute("data-job");
    await page.getByLabel("Repository or job id").fill(jobId);
    await page.getByRole("button", { name: "Find" }).click();
    await page.getByRole("link", { name: "All jobs" }).waitFor();
    await page.locator(`tr[data-job="${jobId}"]`).getByTestId("attempts").waitFor();
    await shot(page, "14-operator-job-detail");

    // bulk on jobs: the selected failed job discarded (after a confirmation), then retried
    page.once("dialog", (d) => d.accept());
    await page.getByLabel("Select olga/olga-gone job").check();
    await page.getByRole("button", { name: "Discard 1 selected" }).click();
    await page.getByText("1 of 1 jobs discarded.").waitFor();
    await page.locator(`tr[data-job="${jobId}"]`).getByTestId("job-state").getByText("dead").waitFor();
    await page.getByLabel("Select olga/olga-gone job").check();
    await page.getByRole("button", { name: "Retry 1 selected" }).click();
    await page.getByText("1 of 1 jobs sent back to the queue.").waitFor();
    await shot(page, "15-operator-bulk");
    await accessible(page, "the operator board");

    // the API docs, served by the API: schemas expanded, examples shown
    await page.goto(`${BASE_URL}/api/v1/docs#importRepository`);
    const op = page.locator("details#importRepository");
    await op.getByText("Request body", { exact: true }).waitFor();
    assert.match(await op.innerText(), /clone_url\s+string\s+required/);
    await op.getByText("Example").first().click();
    assert.match(await op.locator("pre").first().innerText(), /"clone_url": "https:\/\/git\.kernel\.org/);
    await shot(page, "16-api-docs");
    assert.deepEqual(errors, [], "no script errors on the page");
  } catch (e) {
    await shot(page, "failure-admin-tools");
    throw e;
  } finally {
    page.off("pageerror", onError);
  }
});

test("every page for an owner and an admin at 1280 and 390 px: shown, nothing past the edge on a phone", async () => {
  await page.setViewportSize(DESKTOP);
  await signInAs(OWNER_TOKEN);
  // an owner's Mirrors page: only olga's, no fleet tools, no operator link
  await page.locator('article[data-repo="olga/olga-tools"]').waitFor();
  assert.equal(await page.locator('article[data-repo^="ada/"]').count(), 0);
  assert.equal(await page.getByLabel("Owner").count(), 0);
  assert.equal(await page.getByLabel("Select all shown").count(), 0);
  assert.equal(await page.getByRole("link", { name: "Operator" }).isVisible(), false);
  // an owner's own actions: sync now, and settings saved on the mirror's page
  const tools = page.locator('article[data-repo="olga/olga-tools"]');
  await tools.getByRole("button", { name: "Sync now" }).click();
  await tools.getByTestId("sync-state").filter({ hasText: /Synced!|Up to date/ }).waitFor();
  await tools.locator("h2 a").click();
  await page.getByLabel("Sync interval").fill("3h");
  // every field the API can change is on the form: the LFS switch too
  assert.equal(await page.getByLabel("Download Git LFS objects").isChecked(), true);
  await page.getByLabel("Download Git LFS objects").uncheck();
  await page.getByRole("button", { name: "Save settings" }).click();
  await page.getByText("Settings saved.").waitFor();
  const saved = await page.request.get(`${BASE_URL}/api/v1/repos/olga/olga-tools`, {
    headers: { authorization: `Bearer ${OWNER_TOKEN}` },
  }).then((r) => r.json());
  assert.equal(saved.lfs_enabled, false);
  assert.equal(saved.sync_interval_seconds, 3 * 3600);
  assert.match(await page.getByTestId("run-lfs").first().innerText(), /^-$|objects/);
  await page.goto(`${BASE_URL}/#/operator`);
  await page.getByText("This page needs an admin token.").waitFor();
  const jobId = await page.request.get(`${BASE_URL}/api/v1/admin/jobs?per_page=1`, {
    headers: { authorization: `Bearer ${TOKEN}` },
  }).then((r) => r.json()).then((j) => j.jobs[0].id);
  const pages = {
    owner: [
      ["mirrors", "#/mirrors", "Mirrors"],
      ["mirrors-filtered", "#/mirrors?status=failed&q=olga", "Mirrors"],
      ["mirrors-table", "#/mirrors?view=table", "Mirrors"],
      ["import", "#/import", "Import a repository"],
      ["mirror", "#/mirror/olga/olga-tools", "olga/olga-tools"],
      ["operator-refused", "#/operator", "Operator"],
    ],
    admin: [
      ["fleet", "#/mirrors", "Mirrors (all owners)"],
      ["fleet-table", "#/mirrors?view=table", "Mirrors (all owners)"],
      ["import", "#/import", "Import a repository"],
      ["mirror", "#/mirror/olga/olga-gone", "olga/olga-gone"],
      ["operator", "#/operator", "Operator"],
      ["job", `#/operator?job=${jobId}`, "Operator"],
      ["api-docs", "api/v1/docs", "Stasis Mirror Sync API"],
    ],
  };
  for (const [role, token] of [["owner", OWNER_TOKEN], ["admin", TOKEN]]) {
    await signInAs(token);
    for (const size of [DESKTOP, PHONE]) {
      await page.setViewportSize(size);
      for (const scheme of ["light", "dark"]) {
        await page.emulateMedia({ colorScheme: scheme });
        for (const [name, hash, heading] of pages[role]) {
          await page.goto(`${BASE_URL}/${hash}`);
          // requests cut off by a reload are no test of the page: let them end first
          await page.waitForLoadState("networkidle");
          await page.reload();
          await page.getByRole("heading", { level: 1, name: heading }).waitFor();
          // the page's data is in once its loading requests have settled
          await page.waitForLoadState("networkidle");
          await page.getByTestId("loading").first().waitFor({ state: "detached" });
          await shot(page, `${role}-${name}-${size.width}-${scheme}`);
          const garbage = (await page.locator("body").innerText()).split("\n")
            .filter((line) => /\[object Object\]|undefined|NaN/.test(line));
          assert.deepEqual(garbage, [], `${role} ${name}: text nobody should read`);
          if (size === PHONE) {
            assert.deepEqual(await pastTheEdge(), [], `${role} ${name}: elements wider than a ${size.width}px screen`);
          }
          await accessible(page, `${role} ${name} at ${size.width}px, ${scheme}`);
        }
      }
    }
  }
  await page.emulateMedia({ colorScheme: "light" });
  // signed out, and the API docs (no sign-in needed), at both widths
  await page.evaluate(() => localStorage.clear());
  for (const size of [DESKTOP, PHONE]) {
    await page.setViewportSize(size);
    await page.goto(BASE_URL);
    await page.getByLabel("API token").waitFor();
    await shot(page, `signed-out-${size.width}`);
    await page.goto(`${BASE_URL}/api/v1/docs`);
    await page.locator("details#syncMirror").waitFor();
    await page.locator("details#syncMirror > summary").click();
    await shot(page, `api-docs-${size.width}`);
    if (size === PHONE) assert.deepEqual(await pastTheEdge(), [], "API docs wider than a phone screen");
  }
});
