// atlassian-python-api, the real client, calls the administration APIs (users, banner, license,
// labels) of the Worker under workerd with a fresh local D1.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { generateKeyPairSync, sign } from "node:crypto";
import path from "node:path";
import { startWorker, client, ROOT } from "../support/worker.mjs";

const PY = path.join(ROOT, ".venv-e2e/bin/python");
const keys = generateKeyPairSync("ed25519");

let worker, call;
before(async () => {
  const ready = spawnSync(PY, ["-c", "import atlassian"]).status === 0;
  assert.ok(ready, "atlassian-python-api is installed by scripts/setup");
  worker = await startWorker({ licensePublicKey: keys.publicKey.export({ format: "der", type: "spki" }).subarray(-32).toString("hex") });
  call = client(worker.url);
  const token = worker.adminToken;
  assert.equal((await call("POST", "/rest/api/1.0/projects", { token, json: { key: "PYB", name: "Python admin" } })).status, 201);
  assert.equal((await call("POST", "/rest/api/1.0/projects/PYB/repos", { token, json: { name: "labelled" } })).status, 201);
  for (const name of ["pyuser", "other"]) assert.equal((await call("POST", `/rest/api/1.0/admin/users?name=${name}`, { token })).status, 204);
  const payload = Buffer.from(JSON.stringify({ licensee: "Python Co", maximumNumberOfUsers: 50, expiryDate: Date.now() + 864e5, creationDate: Date.now(), serverId: "PY" })).toString("base64url");
  const license = `${payload}.${sign(null, Buffer.from(payload), keys.privateKey).toString("base64url")}`;
  assert.equal((await call("POST", "/rest/api/1.0/admin/license", { token, json: { license } })).status, 200);
});
after(() => worker?.stop());

test("atlassian-python-api's get_users, get_users_info, banner, license and label calls work unchanged", () => {
  const run = spawnSync(PY, [path.join(ROOT, "tests/python/bitbucket_admin.py")], {
    env: { ...process.env, MF_URL: worker.url, MF_USER: "admin", MF_TOKEN: worker.adminToken, MF_PROJECT: "PYB", MF_SLUG: "labelled" },
    encoding: "utf8",
  });
  process.stdout.write(run.stdout);
  assert.equal(run.status, 0, `atlassian-python-api run failed:\n${run.stdout}\n${run.stderr}`);
  assert.match(run.stdout, /ok - set_repo_label\(\) then get_repo_labels\(\)/);
});
