// A private upstream's access on the mirror page, against the real stack of
// scripts/e2e.sh: the owner of an ssh mirror generates its deploy key and reads the
// public key and its fingerprint; the owner of an https mirror stores credentials and
// reads that they are stored, never what they are; anyone else sees neither section.
// It runs after live.test.mjs.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { required, launch, shot, accessible } from "./kit.mjs";

const { BASE_URL, OWNER_TOKEN, OTHER_TOKEN } = process.env;
const STORED = "Credentials are stored for this upstream (sealed, never shown).";
const SECRET = "e2e-s3cret-token";

let browser;
let page;

/** A port nothing listens on: the imports' syncs fail, their pages stay. */
async function closedPort() {
  const server = net.createServer();
  await new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve(undefined)));
  const { port } = /** @type {net.AddressInfo} */ (server.address());
  await new Promise((resolve) => server.close(() => resolve(undefined)));
  return port;
}

/** Signs in with `token` (local storage is per origin). */
async function signInAs(token) {
  await page.goto(BASE_URL);
  await page.evaluate((t) => localStorage.setItem("stasis.token", t), token);
  await page.goto(`${BASE_URL}/#/mirrors`);
  // requests cut off by a reload are no test of the page: let them end first
  await page.waitForLoadState("networkidle");
  await page.reload();
  await page.getByRole("heading", { level: 1, name: /Mirrors/ }).waitFor();
}

/** Opens a mirror's page afresh and waits for its status. */
async function openMirror(full) {
  await page.goto(`${BASE_URL}/#/mirror/${full}`);
  await page.waitForLoadState("networkidle");
  await page.reload();
  await page.getByRole("heading", { level: 1, name: full }).waitFor();
  await page.getByTestId("sync-state").waitFor();
}

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

before(async () => {
  required(["BASE_URL", "OWNER_TOKEN", "OTHER_TOKEN"]);
  ({ browser, page } = await launch());
  // olga's public mirrors of an ssh and an http upstream
  const port = await closedPort();
  for (const [name, url] of [
    ["olga-ssh", `ssh://git@127.0.0.1:${port}/olga/tools.git`],
    ["olga-http", `http://127.0.0.1:${port}/olga/site.git`],
  ]) {
    const answer = await page.request.post(`${BASE_URL}/api/v1/repos/import`, {
      headers: { authorization: `Bearer ${OWNER_TOKEN}` },
      data: { name, clone_url: url, mirror: true },
    });
    assert.equal(answer.status(), 202, await answer.text());
  }
});

after(async () => {
  await browser?.close();
});

test("the owner of an ssh mirror generates its deploy key and reads it with its fingerprint", () => shooting("deploy-key", async () => {
  await signInAs(OWNER_TOKEN);
  await openMirror("olga/olga-ssh");
  await page.getByRole("heading", { level: 2, name: "SSH access" }).waitFor();
  assert.equal(await page.getByRole("heading", { name: "Upstream credentials" }).count(), 0, "no credentials for an ssh upstream");
  const key = page.getByTestId("deploy-key");
  assert.equal(await key.innerText(), "No deploy key yet.");

  await page.getByRole("button", { name: "Generate deploy key" }).click();
  await page.getByRole("button", { name: "Rotate deploy key" }).waitFor();
  const publicKey = await key.innerText();
  assert.ok(publicKey.startsWith("ssh-ed25519 "), publicKey);
  assert.ok(publicKey.endsWith(" stasis-mirror-olga/olga-ssh"), publicKey);
  const said = await page.getByTestId("deploy-key-fingerprint").innerText();
  const shown = /^Fingerprint (SHA256:[A-Za-z0-9+/]{43})\. Add it upstream as a read-only deploy key\.$/.exec(said);
  assert.ok(shown, said);
  // the fingerprint is the one ssh-keygen computes from the key the page shows
  const dir = mkdtempSync(join(tmpdir(), "stasis-e2e-key-"));
  writeFileSync(join(dir, "shown.pub"), `${publicKey}\n`);
  const listed = execFileSync("ssh-keygen", ["-E", "sha256", "-lf", join(dir, "shown.pub")], { encoding: "utf8" });
  assert.equal(listed.split(/\s+/)[1], shown[1]);
  await page.getByRole("button", { name: "Copy public key" }).waitFor();
  await accessible(page, "an ssh mirror's page with its deploy key");
  await shot(page, "ssh-access-1280");
}));

test("the owner of an https mirror saves credentials: the page says they are stored, never shows them", () => shooting("credentials", async () => {
  await signInAs(OWNER_TOKEN);
  await openMirror("olga/olga-http");
  await page.getByRole("heading", { level: 2, name: "Upstream credentials" }).waitFor();
  assert.equal(await page.getByRole("heading", { name: "SSH access" }).count(), 0, "no ssh access for an http upstream");
  const state = page.getByTestId("credentials-state");
  assert.equal(await state.innerText(), "No credentials stored: the upstream is fetched anonymously.");

  await page.getByLabel("User name").fill("ci");
  const secret = page.getByLabel("Password or access token");
  await secret.fill(SECRET);
  await page.getByRole("button", { name: "Save credentials" }).click();
  await state.getByText(STORED, { exact: true }).waitFor();
  assert.equal(await state.innerText(), STORED);
  assert.equal(await secret.inputValue(), "", "the password field is emptied");
  assert.equal(await page.getByTestId("credentials-error").innerText(), "");
  assert.ok(!(await page.locator("body").innerText()).includes(SECRET), "the secret is not on the page");
  await accessible(page, "an http mirror's page with stored credentials");
  await shot(page, "credentials-1280");

  // a fresh page says the same, from what the API answers
  await openMirror("olga/olga-http");
  assert.equal(await page.getByTestId("credentials-state").innerText(), STORED);
  assert.equal(await page.getByLabel("Password or access token").inputValue(), "");
}));

test("someone other than the owner sees neither the ssh access nor the credentials", () => shooting("access-read-only", async () => {
  await signInAs(OTHER_TOKEN);
  for (const full of ["olga/olga-ssh", "olga/olga-http"]) {
    await openMirror(full);
    await page.getByTestId("read-only").getByText("only olga or an admin can").waitFor();
    for (const heading of ["SSH access", "Upstream credentials"]) {
      assert.equal(await page.getByRole("heading", { name: heading }).count(), 0, `${heading} on ${full}`);
    }
    for (const button of ["Generate deploy key", "Rotate deploy key", "Copy public key", "Detect host keys", "Save credentials", "Remove credentials"]) {
      assert.equal(await page.getByRole("button", { name: button }).count(), 0, `${button} on ${full}`);
    }
    assert.equal(await page.getByTestId("deploy-key").count(), 0);
    assert.equal(await page.getByTestId("credentials-state").count(), 0);
    assert.equal(await page.getByLabel("Password or access token").count(), 0);
  }
  await accessible(page, "an ssh mirror's page for someone other than its owner");
}));
