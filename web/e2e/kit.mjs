// What every browser suite needs: Chromium with the page's size and patience, git for
// upstreams, screenshots, and the two checks every page passes (no text that reads like
// a bug, no serious or critical axe violation).

import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdirSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { chromium } from "playwright-core";

export const DESKTOP = { width: 1280, height: 800 };
export const PHONE = { width: 390, height: 844 };
export const SHOTS = process.env.SCREENSHOTS ?? "screenshots";
export const WAIT = 30_000;
/** What a person should never read on a page. */
export const GARBAGE = /\[object Object\]|undefined|NaN/;
const AXE = readFileSync(createRequire(import.meta.url).resolve("axe-core/axe.min.js"), "utf8");

/** Fails unless every variable `scripts/e2e.sh` sets for a suite is there. @param {string[]} names */
export function required(names) {
  for (const v of names) assert.ok(process.env[v], `${v} is set by scripts/e2e.sh`);
}

/** Headless Chromium and one desktop-sized page. */
export async function launch() {
  mkdirSync(SHOTS, { recursive: true });
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"],
  });
  const page = await browser.newPage({ viewport: DESKTOP });
  page.setDefaultTimeout(WAIT);
  return { browser, page };
}

/** git in `dir`, as a test user. @param {string} dir @param {string[]} args */
export function git(dir, ...args) {
  execFileSync("git", ["-C", dir, "-c", "user.name=E2E", "-c", "user.email=e2e@example.com", ...args], { stdio: "ignore" });
}

/** @param {import("playwright-core").Page} page @param {string} name */
export async function shot(page, name) {
  await page.screenshot({ path: `${SHOTS}/${name}.png`, fullPage: true });
}

/** No line of the page's text reads like a bug. @param {import("playwright-core").Page} page @param {string} where */
export async function readable(page, where) {
  const lines = (await page.locator("body").innerText()).split("\n").filter((l) => GARBAGE.test(l));
  assert.deepEqual(lines, [], `${where}: text nobody should read`);
}

/** axe-core on the page as it is: no serious or critical violation. @param {import("playwright-core").Page} page @param {string} where */
export async function accessible(page, where) {
  // evaluated by the browser's debugger protocol, which the page's CSP does not govern
  await page.evaluate(AXE);
  const violations = await page.evaluate(async () => {
    // @ts-ignore: injected above
    const result = await window.axe.run(document, { resultTypes: ["violations"] });
    return result.violations
      .filter((v) => v.impact === "serious" || v.impact === "critical")
      .map((v) => `${v.id}: ${v.nodes.map((n) => n.target.join(" ")).join(", ")}`);
  });
  assert.deepEqual(violations, [], `accessibility violations on ${where}`);
}
