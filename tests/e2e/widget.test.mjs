// The status widget end to end: the Worker (workerd, local D1) serves the widget and its demo
// page; headless Chromium (the system's, driven by playwright-core) loads them, on the Worker's
// origin and embedded in a page on another origin, with a STATUS_READ token. Mirror states are
// made through the real APIs (a registered node leases and reports), and screenshots are saved
// under test-output/.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { mkdirSync } from "node:fs";
import path from "node:path";
import { chromium } from "playwright-core";
import { startWorker, client, OUTPUT } from "../support/worker.mjs";

const API = "/rest/mirrorfarm/1.0";
const CHROMIUM = process.env.CHROMIUM_PATH || "/usr/bin/chromium";

let worker, call, admin, browser, repoId, statusToken, node, mirrors;
let embedder, embedderUrl, stranger, strangerUrl;

/** A page on another origin that embeds the widget from the Worker (whose address is known later). */
function embeddingPage() {
  return createServer((req, res) => {
    const workerUrl = worker.url;
    const q = new URL(req.url, "http://x").searchParams;
    res.writeHead(200, { "Content-Type": "text/html; charset=utf-8" });
    res.end(`<!doctype html><html lang="en"><head><title>Docs</title>
      <script type="module" src="${workerUrl}/ui/mirrorfarm-status.js"></script></head>
      <body style="--mf-ok: rgb(0, 90, 0)"><h1>Our docs</h1>
      <mirrorfarm-status api="${workerUrl}" repo="${q.get("repo")}" token="${q.get("token")}"></mirrorfarm-status></body></html>`);
  });
}

async function listen(server) {
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  return `http://127.0.0.1:${server.address().port}`;
}

const asNode = (method, p, json) => call(method, p, { headers: { Authorization: `Bearer ${node}` }, json });

/** Leases the next job as the node and reports `outcome` for it. */
async function work(outcome, message = "") {
  const job = await asNode("POST", `${API}/jobs/lease`, { leaseSeconds: 60 });
  assert.equal(job.status, 200, job.text);
  const r = await asNode("POST", `${API}/jobs/${job.body.id}/result`, { leaseId: job.body.leaseId, outcome, message });
  assert.equal(r.status, 200, r.text);
  return job.body;
}

before(async () => {
  embedder = embeddingPage();
  embedderUrl = await listen(embedder);
  stranger = embeddingPage();
  strangerUrl = await listen(stranger);
  worker = await startWorker({ retryBaseMs: 0, corsOrigins: embedderUrl });
  call = client(worker.url);
  admin = worker.adminToken;
  assert.equal((await call("POST", "/rest/api/1.0/projects", { token: admin, json: { key: "WEB", name: "Web" } })).status, 201);
  repoId = (await call("POST", "/rest/api/1.0/projects/WEB/repos", { token: admin, json: { name: "site" } })).body.id;
  const base = `/api/v4/projects/${repoId}/remote_mirrors`;
  mirrors = [];
  for (const url of ["https://bot:w1dget-s3cret@gitlab.example/web/site.git", "https://github.example/web/site.git"]) {
    const m = await call("POST", base, { token: admin, json: { url, enabled: true } });
    assert.equal(m.status, 201, m.text);
    mirrors.push(m.body);
  }
  node = (await call("POST", `${API}/nodes`, { token: admin, json: { name: "edge-node-1" } })).body.token;
  // The first mirror syncs; the second fails three times with an error naming its credentials.
  await work("pushed");
  for (let i = 0; i < 3; i++) {
    await work("error", "fatal: unable to access 'https://bot:w1dget-s3cret@github.example/web/site.git/': The requested URL returned error: 403");
  }
  const t = await call("PUT", "/rest/access-tokens/latest/users/admin", {
    token: admin,
    json: { name: "status page", permissions: ["STATUS_READ"] },
  });
  assert.equal(t.status, 200, t.text);
  statusToken = t.body.token;
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox"] });
  mkdirSync(OUTPUT, { recursive: true });
});

after(async () => {
  await browser?.close();
  embedder?.close();
  stranger?.close();
  await worker?.stop();
});

const demo = (token, extra = "") => `${worker.url}/ui/demo.html?repo=${repoId}&token=${encodeURIComponent(token)}${extra}`;

test("the demo page renders the repository's status, accessibly, and stays current", async () => {
  const direct = await fetch(demo(statusToken), { redirect: "manual" });
  assert.equal(direct.status, 200, "the demo page is served at its own address");
  const page = await browser.newPage({ viewport: { width: 900, height: 720 } });
  const statusCodes = [];
  page.on("response", (r) => r.url().includes("/status") && statusCodes.push(r.status()));
  await page.goto(demo(statusToken, "&refresh=5"));
  const widget = page.locator("mirrorfarm-status");
  const verdict = widget.locator(".mf-verdict");
  await verdict.filter({ hasText: "1 of 2 mirrors failing" }).waitFor({ timeout: 15000 });
  assert.equal(await verdict.getAttribute("role"), "status");
  assert.equal(await widget.locator("section.mf").getAttribute("data-state"), "failing");
  const text = await widget.locator("section.mf").innerText();
  assert.match(text, /WEB\/site/);
  assert.match(text, /https:\/\/\*\*\*\*\*:\*\*\*\*\*@gitlab\.example\/web\/site\.git/);
  assert.match(text, /in sync/);
  assert.match(text, /failed/);
  assert.match(text, /edge-node-1/);
  assert.match(text, /Last success: just now/);
  assert.doesNotMatch(await page.content(), /w1dget-s3cret/);
  assert.doesNotMatch(text, /w1dget-s3cret/);
  // Exact time on hover.
  assert.match(await widget.locator(".mf-times time").first().getAttribute("title"), /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC$/);
  // The error opens from the keyboard, scrubbed.
  const summary = widget.locator("details.mf-error summary");
  await summary.focus();
  await page.keyboard.press("Enter");
  const pre = widget.locator("details.mf-error pre");
  await pre.waitFor({ state: "visible" });
  assert.match(await pre.innerText(), /unable to access 'https:\/\/\*\*\*\*\*:\*\*\*\*\*@github\.example/);
  await page.screenshot({ path: path.join(OUTPUT, "widget.png"), fullPage: true });
  await page.emulateMedia({ colorScheme: "dark" });
  await page.screenshot({ path: path.join(OUTPUT, "widget-dark.png"), fullPage: true });

  // The failed mirror is fixed: the widget shows it within a refresh, the error still open state kept.
  assert.equal((await call("POST", `/api/v4/projects/${repoId}/remote_mirrors/${mirrors[1].id}/sync`, { token: admin })).status, 204);
  await work("pushed");
  await verdict.filter({ hasText: "All 2 mirrors in sync" }).waitFor({ timeout: 20000 });
  assert.ok(statusCodes.includes(304) || statusCodes.length >= 2, `refreshes happened: ${statusCodes}`);
  assert.equal(statusCodes[0], 200);

  // Leaving the DOM stops polling.
  await page.evaluate(() => document.querySelector("mirrorfarm-status").remove());
  const seen = statusCodes.length;
  await page.waitForTimeout(7000);
  assert.equal(statusCodes.length, seen, "no request after the element left the page");
  await page.close();
});

test("refreshes use ETags: unchanged status answers 304", async () => {
  const page = await browser.newPage();
  const answers = [];
  page.on("response", (r) => r.url().includes("/status") && answers.push({ status: r.status(), etag: r.headers().etag }));
  await page.goto(demo(statusToken, "&refresh=5"));
  await page.locator("mirrorfarm-status .mf-verdict").filter({ hasText: "in sync" }).waitFor({ timeout: 15000 });
  // The status does change now and then while nothing happens to the repository: it shows when
  // the node was last seen, which the edge writes at most every 20 s. So a refresh may find it
  // changed; within four refreshes (20 s) at least one must find it unchanged.
  const deadline = Date.now() + 21000;
  while (!answers.slice(1).some((a) => a.status === 304) && Date.now() < deadline) await page.waitForTimeout(250);
  const seen = answers.map((a) => `${a.status} ${a.etag}`).join(", ");
  assert.equal(answers[0]?.status, 200, seen);
  assert.ok(answers.slice(1).some((a) => a.status === 304), `no refresh answered 304: ${seen}`);
  // Each refresh is a 304 exactly when the status (its ETag) is the one the widget already has.
  for (let i = 1; i < answers.length; i++) {
    assert.equal(answers[i].status, answers[i].etag === answers[i - 1].etag ? 304 : 200, seen);
  }
  await page.close();
});

test("a wrong token shows the unauthorized state, not a blank", async () => {
  const page = await browser.newPage();
  await page.goto(demo("mfp_not_a_real_token_000000"));
  const verdict = page.locator("mirrorfarm-status .mf-verdict");
  await verdict.filter({ hasText: "Not authorized" }).waitFor({ timeout: 15000 });
  assert.equal(await verdict.getAttribute("role"), "alert");
  await page.close();
});

test("embedded on an allowed origin it works; on any other origin the browser refuses and the widget says so", async () => {
  const page = await browser.newPage();
  await page.goto(`${embedderUrl}/?repo=${repoId}&token=${statusToken}`);
  const verdict = page.locator("mirrorfarm-status .mf-verdict");
  await verdict.filter({ hasText: "in sync" }).waitFor({ timeout: 15000 });
  // The host page's custom property reaches into the widget.
  const colour = await page.locator("mirrorfarm-status .mf-verdict").evaluate((el) => getComputedStyle(el).color);
  assert.equal(colour, "rgb(0, 90, 0)");
  await page.goto(`${strangerUrl}/?repo=${repoId}&token=${statusToken}`);
  await verdict.filter({ hasText: "Couldn’t load mirror status" }).waitFor({ timeout: 15000 });
  assert.match(await verdict.innerText(), /Retrying in \d+ s/);
  await page.close();
});

test("the widget shows the announcement banner while its audience includes the caller", async () => {
  const banner = "Maintenance tonight <22:00 UTC>";
  assert.equal((await call("PUT", "/rest/api/1.0/admin/banner", { token: admin, json: { message: banner, enabled: true, audience: "AUTHENTICATED" } })).status, 204);
  const page = await browser.newPage();
  await page.goto(demo(statusToken));
  const shown = page.locator("mirrorfarm-status .mf-banner");
  await shown.waitFor({ timeout: 15000 });
  // Shown as text, never as markup.
  assert.equal(await shown.innerText(), banner);
  assert.equal(await shown.getAttribute("role"), "note");
  await page.screenshot({ path: path.join(OUTPUT, "widget-banner.png"), fullPage: true });
  // Disabled: gone at the next load.
  assert.equal((await call("PUT", "/rest/api/1.0/admin/banner", { token: admin, json: { message: banner, enabled: false, audience: "ALL" } })).status, 204);
  await page.reload();
  await page.locator("mirrorfarm-status .mf-verdict").waitFor({ timeout: 15000 });
  assert.equal(await page.locator("mirrorfarm-status .mf-banner").count(), 0);
  await page.close();
  assert.equal((await call("DELETE", "/rest/api/1.0/admin/banner", { token: admin })).status, 204);
});
