// python-gitlab, the real client, against the Worker under workerd with a fresh local D1.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import path from "node:path";
import { startWorker, client, ROOT } from "../support/worker.mjs";

const VENV = path.join(ROOT, ".venv-e2e");
const PY = path.join(VENV, "bin/python");
const PYTHON_GITLAB = "python-gitlab==8.6.0";

/** Creates the test venv with python-gitlab once; later runs only check it. */
function ensureVenv() {
  const ready = existsSync(PY) && spawnSync(PY, ["-c", "import gitlab; assert gitlab.__version__ == '8.6.0'"]).status === 0;
  if (ready) return;
  execFileSync("python3", ["-m", "venv", VENV], { stdio: "inherit" });
  execFileSync(PY, ["-m", "pip", "install", "--quiet", "--disable-pip-version-check", PYTHON_GITLAB], { stdio: "inherit" });
}

let worker;
before(async () => {
  ensureVenv();
  worker = await startWorker();
  const call = client(worker.url);
  const token = worker.adminToken;
  assert.equal((await call("POST", "/rest/api/1.0/projects", { token, json: { key: "PY", name: "Python" } })).status, 201);
  assert.equal((await call("POST", "/rest/api/1.0/projects/PY/repos", { token, json: { name: "client" } })).status, 201);
});
after(() => worker?.stop());

test("python-gitlab manages remote mirrors, protected branches and a pull mirror through project.save()", () => {
  const run = spawnSync(PY, [path.join(ROOT, "tests/python/gitlab_client.py")], {
    env: { ...process.env, MF_URL: worker.url, MF_TOKEN: worker.adminToken, MF_PROJECT: "PY/client" },
    encoding: "utf8",
  });
  process.stdout.write(run.stdout);
  assert.equal(run.status, 0, `python-gitlab run failed:\n${run.stdout}\n${run.stderr}`);
  assert.match(run.stdout, /ok - delete\(\) removes the mirror/);
  assert.match(run.stdout, /ok - project.save\(\) switches it off again/);
  for (const secret of ["py-secret-9", "pull-secret-7"]) {
    assert.ok(!worker.logs().includes(secret), `${secret} never reaches the Worker's log`);
  }
});
