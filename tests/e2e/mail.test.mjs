// Notification e-mail end to end: the Worker under workerd decides and queues, a real farm node
// delivers with lettre to a real SMTP server (aiosmtpd), once plain and once with STARTTLS, AUTH
// and a certificate this test makes. Mirrors fail and recover against real git over smart HTTP.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync, mkdirSync, readdirSync, readFileSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { startWorker, client, freePort, ROOT } from "../support/worker.mjs";
import { startGitServer } from "../support/git_http.mjs";
import { buildNode, startNode } from "../support/node.mjs";
import { git, gitEnv } from "../support/git.mjs";

const PY = path.join(ROOT, ".venv-e2e/bin/python");
const SINK = path.join(ROOT, "tests/python/smtp_sink.py");
const API = "/rest/mirrorfarm/1.0";
const MAIL = "/rest/api/1.0/admin/mail-server";
const SMTP_USER = "mailer";
const SMTP_PASSWORD = "smtp-Pa55-never-shown-7f3a9c";
const GIT_USER = "git-bot";
const GIT_PASS = "g1t-pa55";

let worker, call, admin, dir, runner, gitServer, repoId, nodeToken;
const responses = [];
const tokens = {};

/** A running aiosmtpd: `mails` (parsed JSON lines), `stop()`. */
async function startSink(port, extra = []) {
  const child = spawn(PY, [SINK, String(port), ...extra], { stdio: ["ignore", "pipe", "pipe"] });
  const sink = { child, port, mails: [], log: "" };
  let buffered = "";
  const listening = new Promise((resolve, reject) => {
    child.stdout.on("data", (d) => {
      buffered += d;
      let nl;
      while ((nl = buffered.indexOf("\n")) >= 0) {
        const line = JSON.parse(buffered.slice(0, nl));
        buffered = buffered.slice(nl + 1);
        if (line.listening) resolve();
        // Headers unfolded, so a long subject reads as one line.
        else sink.mails.push({ ...line, data: line.data.replace(/\r?\n[ \t]+/g, " ") });
      }
    });
    child.stderr.on("data", (d) => (sink.log += d));
    child.once("exit", (code) => reject(new Error(`smtp sink exited ${code}: ${sink.log}`)));
  });
  await listening;
  sink.stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((r) => child.once("exit", r));
    child.kill("SIGTERM");
    await exited;
  };
  return sink;
}

async function as(who, method, url, opts = {}) {
  const r = await call(method, url, { token: tokens[who] ?? who, ...opts });
  responses.push(r.text);
  return r;
}

async function waitUntil(pred, what, ms = 30_000) {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    const v = await pred();
    if (v) return v;
    await new Promise((r) => setTimeout(r, 150));
  }
  assert.fail(`${what}: timed out\nrunner log:\n${runner.log().slice(-3000)}`);
}

async function mirror(id) {
  return (await as(admin, "GET", `/api/v4/projects/${repoId}/remote_mirrors/${id}`)).body;
}

/** Points a push mirror somewhere and queues a sync; waits for its status to become `status`. */
async function syncTo(id, url, status) {
  const put = await as(admin, "PUT", `/api/v4/projects/${repoId}/remote_mirrors/${id}`, { json: { url, enabled: true } });
  assert.equal(put.status, 200, put.text);
  await waitUntil(async () => (await mirror(id)).update_status === status, `mirror ${id} → ${status}`);
}

async function makeUser(name, email, permission) {
  const r = await as(admin, "POST", `/rest/api/1.0/admin/users?name=${name}&displayName=${name}&emailAddress=${email}`);
  assert.equal(r.status, 204, r.text);
  const t = await as(admin, "PUT", `/rest/access-tokens/1.0/users/${name}`, { json: { name: "t" } });
  assert.equal(t.status, 200, t.text);
  tokens[name] = t.body.token;
  if (permission) {
    const g = await as(admin, "PUT", `/rest/api/1.0/projects/ML/repos/app/permissions/users?name=${name}&permission=${permission}`);
    assert.equal(g.status, 204, g.text);
  }
}

const deadUrl = async () => `http://127.0.0.1:${await freePort()}/nowhere.git`;
const subjects = (sink) => sink.mails.map((m) => /^Subject: (.*)$/m.exec(m.data)?.[1] ?? "");

let plain, tls, certDir;

before(async () => {
  buildNode();
  dir = mkdtempSync(path.join(tmpdir(), "mirrorfarm-mail-e2e-"));
  // The STARTTLS server's certificate: made here, trusted by the node through MIRRORFARM_MAIL_CA_FILE.
  certDir = path.join(dir, "tls");
  mkdirSync(certDir);
  // A CA of the test's own, and the server's certificate signed by it (TLS refuses a CA
  // certificate as a server's).
  const tlsFile = (name) => path.join(certDir, name);
  const openssl = (...args) => execFileSync("openssl", args, { stdio: "ignore" });
  openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=mirrorfarm test CA", "-keyout", tlsFile("ca.key"), "-out", tlsFile("ca.pem"));
  openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", tlsFile("key.pem"), "-out", tlsFile("server.csr"));
  writeFileSync(tlsFile("server.ext"), "basicConstraints=CA:FALSE\nsubjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n");
  openssl("x509", "-req", "-in", tlsFile("server.csr"), "-CA", tlsFile("ca.pem"), "-CAkey", tlsFile("ca.key"), "-CAcreateserial", "-days", "2", "-extfile", tlsFile("server.ext"), "-out", tlsFile("cert.pem"));
  // Real git: an upstream served over smart HTTP, and targets that do or do not exist.
  mkdirSync(path.join(dir, "served"));
  execFileSync("git", ["init", "-q", "-b", "main", path.join(dir, "work")], { env: gitEnv });
  git(path.join(dir, "work"), "commit", "-q", "--allow-empty", "-m", "first");
  execFileSync("git", ["init", "-q", "--bare", path.join(dir, "served", "upstream.git")], { env: gitEnv });
  execFileSync("git", ["init", "-q", "--bare", path.join(dir, "served", "target.git")], { env: gitEnv });
  git(path.join(dir, "work"), "push", "-q", path.join(dir, "served", "upstream.git"), "main");
  gitServer = await startGitServer({ root: path.join(dir, "served"), username: GIT_USER, password: GIT_PASS });

  plain = await startSink(await freePort());
  tls = await startSink(await freePort(), ["--tls", path.join(certDir, "cert.pem"), path.join(certDir, "key.pem"), "--auth", `${SMTP_USER}:${SMTP_PASSWORD}`]);
  worker = await startWorker({ allowedHosts: "127.0.0.1", retryBaseMs: 200, pollIntervalMs: 0 });
  call = client(worker.url);
  admin = worker.adminToken;
  assert.equal((await as(admin, "POST", "/rest/api/1.0/projects", { json: { key: "ML", name: "Mail" } })).status, 201);
  const repo = await as(admin, "POST", "/rest/api/1.0/projects/ML/repos", { json: { name: "app", upstreamUrl: gitServer.url("upstream.git") } });
  assert.equal(repo.status, 201, repo.text);
  repoId = repo.body.id;
  await makeUser("ops", "ops@example.com", "REPO_ADMIN");
  await makeUser("quiet", "quiet@example.com", "REPO_ADMIN");
  await makeUser("reader", "reader@example.com", "REPO_READ");
  await makeUser("boss", "boss@example.com");
  assert.equal((await as(admin, "PUT", "/rest/api/1.0/admin/permissions/users?name=boss&permission=ADMIN")).status, 204);
  // quiet opts out of mirror mail through their own settings.
  const s = await as("quiet", "POST", "/rest/api/1.0/users/quiet/settings", { json: { "mirrorfarm.notifications.mirrors": false } });
  assert.equal(s.status, 204, s.text);
  nodeToken = (await as(admin, "POST", `${API}/nodes`, { json: { name: "mail-node" } })).body.token;
  runner = startNode({ edgeUrl: worker.url, token: nodeToken, dataDir: path.join(dir, "node"), name: "mail-e2e-runner", args: ["--lease-seconds", "6", "--concurrency", "2"], env: { MIRRORFARM_MAIL_CA_FILE: path.join(certDir, "ca.pem") } });
});

after(async () => {
  await runner?.stop();
  await plain?.stop();
  await tls?.stop();
  await gitServer?.close();
  await worker?.stop();
  rmSync(dir, { recursive: true, force: true });
});

test("mail server settings: shapes, both key styles, who may, and bad values", async () => {
  assert.equal((await as(admin, "GET", MAIL)).status, 404);
  const bad = async (json, context) => {
    const r = await as(admin, "PUT", MAIL, { json });
    assert.equal(r.status, 400, r.text);
    assert.equal(r.body.errors[0].context, context, r.text);
  };
  await bad({ hostname: "127.0.0.1", port: 70000 }, "port");
  await bad({ hostname: "127.0.0.1", protocol: "IMAP" }, "protocol");
  await bad({ hostname: "127.0.0.1", senderAddress: "not an address" }, "senderAddress");
  await bad({ port: 25 }, "hostname");
  await bad({ hostname: "127.0.0.1", requireStartTls: true }, "requireStartTls");
  assert.equal((await as(admin, "GET", MAIL)).status, 404, "nothing half-written");
  // Terraform's hyphenated keys are read and sent back.
  const put = await as(admin, "PUT", MAIL, { json: { hostname: "127.0.0.1", port: plain.port, protocol: "SMTP", "sender-address": "mirrorfarm@example.com" } });
  assert.equal(put.status, 200, put.text);
  assert.equal(put.body["sender-address"], "mirrorfarm@example.com");
  assert.equal(put.body.senderAddress, "mirrorfarm@example.com");
  assert.equal(put.body.useStartTls, false);
  assert.equal(put.body["use-start-tls"], false);
  // Who may: ADMIN reads, SYS_ADMIN changes (Bitbucket answers 401 to a signed-in caller without it).
  assert.equal((await as("boss", "GET", MAIL)).status, 200);
  assert.equal((await as("boss", "PUT", MAIL, { json: { hostname: "evil.example" } })).status, 401);
  assert.equal((await as("ops", "GET", MAIL)).status, 401);
  assert.equal((await call("GET", MAIL)).status, 401);
  // The sender address alone: a bare JSON string.
  const sender = await as("boss", "PUT", `${MAIL}/sender-address`, { json: "alerts@example.com" });
  assert.equal(sender.status, 200, sender.text);
  assert.equal((await as(admin, "GET", `${MAIL}/sender-address`)).body, "alerts@example.com");
  assert.equal((await as("boss", "PUT", `${MAIL}/sender-address`, { json: "nope" })).status, 400);
  assert.equal((await as("boss", "DELETE", `${MAIL}/sender-address`)).status, 204);
  assert.equal((await as(admin, "GET", `${MAIL}/sender-address`)).status, 404);
  assert.equal((await as("boss", "PUT", `${MAIL}/sender-address`, { json: "mirrorfarm@example.com" })).status, 200);
  // Notification settings.
  assert.deepEqual((await as(admin, "GET", `${API}/admin/notifications`)).body, { failureThreshold: 3, throttleMinutes: 60 });
  assert.equal((await as(admin, "PUT", `${API}/admin/notifications`, { json: { failureThreshold: 0 } })).status, 400);
  assert.equal((await as("ops", "PUT", `${API}/admin/notifications`, { json: { failureThreshold: 2 } })).status, 401);
});

test("a mirror that fails 3 times mails its admins once; recovery once; opt-out and throttle hold", async () => {
  const created = await as(admin, "POST", `/api/v4/projects/${repoId}/remote_mirrors`, { json: { url: await deadUrl(), enabled: true } });
  assert.equal(created.status, 201, created.text);
  const id = created.body.id;
  await waitUntil(async () => (await mirror(id)).update_status === "failed", "the mirror fails");
  await waitUntil(() => plain.mails.length >= 1, "the failing mail arrives");
  await new Promise((r) => setTimeout(r, 1500));
  assert.equal(plain.mails.length, 1, `exactly one mail: ${subjects(plain)}`);
  const [failing] = plain.mails;
  // The repository's admins who did not opt out: ops (quiet opted out; reader is no admin; the
  // instance's admins are told only when a repository has no admins of its own).
  assert.deepEqual(failing.to, ["ops@example.com"]);
  assert.equal(failing.from, "mirrorfarm@example.com");
  assert.match(failing.data, /Subject: \[mirrorfarm\] push mirror to http:\/\/127\.0\.0\.1:\d+\/nowhere\.git of ML\/app is failing/);
  assert.match(failing.data, /multipart\/alternative/);
  assert.match(failing.data, /text\/html/);
  assert.ok(failing.data.includes(`/rest/mirrorfarm/1.0/repos/${repoId}/status`), "links to the repository's status");

  // Recovery: the same mirror pointed at a real target.
  await syncTo(id, gitServer.url("target.git"), "finished");
  await waitUntil(() => plain.mails.length >= 2, "the recovery mail arrives");
  assert.match(subjects(plain)[1], /has recovered/);
  assert.deepEqual(plain.mails[1].to, ["ops@example.com"]);

  // Flapping within the hour: failing and recovered again, but each cause was mailed already.
  await syncTo(id, await deadUrl(), "failed");
  await syncTo(id, gitServer.url("target.git"), "finished");
  await new Promise((r) => setTimeout(r, 1500));
  assert.equal(plain.mails.length, 2, `the throttle held: ${subjects(plain)}`);
});

test("a dead mail server loses nothing: the mail is sent once it is back", async () => {
  const port = plain.port;
  await plain.stop();
  const before = plain.mails.length;
  const created = await as(admin, "POST", `/api/v4/projects/${repoId}/remote_mirrors`, { json: { url: await deadUrl(), enabled: true } });
  const id = created.body.id;
  await waitUntil(async () => (await mirror(id)).update_status === "failed", "the second mirror fails");
  // The mail job is tried and fails while the server is down.
  const failedTry = await waitUntil(async () => {
    const jobs = (await as(admin, "GET", `${API}/admin/mail`)).body;
    return jobs.find((j) => j.outcome === "error");
  }, "a failed delivery is recorded");
  assert.match(failedTry.message, /127\.0\.0\.1/);
  assert.ok(["QUEUED", "LEASED"].includes(failedTry.state), `and it is tried again: ${JSON.stringify(failedTry)}`);
  plain = await startSink(port);
  await waitUntil(() => plain.mails.length >= 1, "the mail arrives once the server is back", 30_000);
  assert.match(subjects(plain)[0], /is failing/);
  assert.equal(before, 2);
  // The node reports the server's reply just after the server took the mail.
  await waitUntil(async () => {
    const jobs = (await as(admin, "GET", `${API}/admin/mail`)).body;
    return jobs.some((j) => j.state === "DONE" && j.attempt >= 2 && /^250/.test(j.message));
  }, "the delivery is recorded as done after more than one try, with the server's reply");
});

test("test mail over STARTTLS with AUTH; the password is never shown, logged or stored in the clear", async () => {
  const port = tls.port;
  const put = await as(admin, "PUT", MAIL, {
    json: { hostname: "127.0.0.1", port, protocol: "SMTP", useStartTls: true, requireStartTls: true, username: SMTP_USER, password: SMTP_PASSWORD },
  });
  assert.equal(put.status, 200, put.text);
  assert.equal(put.body.password, undefined);
  assert.equal(put.body.requireStartTls, true);
  const sent = await as(admin, "POST", `${API}/admin/mail-server/test`, { json: { to: "ops@example.com" } });
  assert.equal(sent.status, 200, sent.text);
  assert.equal(sent.body.sent, true, sent.text);
  assert.match(sent.body.response, /^250/);
  await waitUntil(() => tls.mails.length >= 1, "the test mail is read from the server's output");
  assert.equal(tls.mails.length, 1);
  assert.equal(tls.mails[0].tls, true, "delivered after STARTTLS");
  assert.equal(tls.mails[0].authenticated, true);
  assert.match(tls.mails[0].data, /Subject: \[mirrorfarm\] Test mail/);
  // A GET-edit-PUT without the password keeps it.
  const kept = await as(admin, "PUT", MAIL, { json: { ...(await as(admin, "GET", MAIL)).body } });
  assert.equal(kept.status, 200, kept.text);
  const again = await as(admin, "POST", `${API}/admin/mail-server/test`, { json: { to: "ops@example.com" } });
  assert.equal(again.body.sent, true, again.text);
  await waitUntil(() => tls.mails.length >= 2, "the second test mail is read from the server's output");
  // A wrong password: the server's refusal is the answer, tried once.
  assert.equal((await as(admin, "PUT", MAIL, { json: { ...put.body, password: "wrong-password-x" } })).status, 200);
  const refused = await as(admin, "POST", `${API}/admin/mail-server/test`, { json: { to: "ops@example.com" } });
  assert.equal(refused.status, 200, refused.text);
  assert.equal(refused.body.sent, false);
  assert.match(refused.body.response, /535|authentication/i);
  assert.equal(tls.mails.length, 2);
  // Without a mail server, the test is refused.
  assert.equal((await as(admin, "DELETE", MAIL)).status, 204);
  assert.equal((await as(admin, "POST", `${API}/admin/mail-server/test`, { json: {} })).status, 409);
  assert.equal((await as("boss", "POST", `${API}/admin/mail-server/test`, { json: {} })).status, 401);

  // The password appears in no response, no log line, and no state file in the clear.
  for (const text of responses) assert.ok(!text.includes(SMTP_PASSWORD), "a response carried the password");
  assert.ok(!worker.logs().includes(SMTP_PASSWORD), "the Worker logged the password");
  assert.ok(!runner.log().includes(SMTP_PASSWORD), "the node logged the password");
  const files = (d) => readdirSync(d).flatMap((f) => (statSync(path.join(d, f)).isDirectory() ? files(path.join(d, f)) : [path.join(d, f)]));
  const stateFiles = files(worker.stateDir);
  assert.ok(stateFiles.some((f) => f.endsWith(".sqlite")), "the local D1 is there to check");
  for (const f of stateFiles) assert.ok(!readFileSync(f).includes(SMTP_PASSWORD), `${f} holds the password in the clear`);
});
