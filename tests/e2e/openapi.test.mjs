// The OpenAPI document of everything served: it is served, it names every route's access, and
// schemathesis (the real tool, from the set-up's venv) finds no 5xx and no response that breaks
// the document, over a bounded number of generated requests per operation.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync } from "node:fs";
import path from "node:path";
import { startWorker, client, ROOT, OUTPUT } from "../support/worker.mjs";

const ST = path.join(ROOT, ".venv-e2e/bin/st");
let worker, call, doc;

before(async () => {
  // No farm node runs here: requests that wait for one (enabling fork sync) give up at once.
  worker = await startWorker({ syncWaitMs: 200 });
  call = client(worker.url);
  const token = worker.adminToken;
  // Something for the generated requests to find besides 404s.
  assert.equal((await call("POST", "/rest/api/1.0/projects", { token, json: { key: "API", name: "Api" } })).status, 201);
  const repo = await call("POST", "/rest/api/1.0/projects/API/repos", { token, json: { name: "r" } });
  assert.equal(repo.status, 201);
  await call("POST", `/api/v4/projects/${repo.body.id}/remote_mirrors`, { token, json: { url: "https://example.com/x.git" } });
});
after(() => worker?.stop());

test("the document is served under 1.0 and latest and lists every operation's access", async () => {
  const r = await call("GET", "/rest/mirrorfarm/1.0/openapi.json");
  assert.equal(r.status, 200);
  doc = r.body;
  assert.equal(doc.openapi, "3.1.0");
  assert.equal((await call("GET", "/rest/mirrorfarm/latest/openapi.json")).status, 200);
  const ops = Object.values(doc.paths).flatMap((item) => Object.values(item));
  assert.ok(ops.length >= 49, `${ops.length} operations`);
  for (const op of ops) assert.match(op["x-mirrorfarm-access"], /^[A-Z_]+$/, op.operationId);
});

test("schemathesis: no 5xx, and every response conforms to the document", { timeout: 600_000 }, () => {
  assert.ok(existsSync(ST), "scripts/setup installs schemathesis into .venv-e2e");
  mkdirSync(OUTPUT, { recursive: true });
  const examples = process.env.SCHEMATHESIS_EXAMPLES ?? "8";
  const run = spawnSync(
    ST,
    [
      "run", `${worker.url}/rest/mirrorfarm/1.0/openapi.json`,
      "--url", worker.url,
      "--header", `PRIVATE-TOKEN: ${worker.adminToken}`,
      "--checks", "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
      "--max-examples", examples,
      "--phases", "examples,coverage,fuzzing",
      "--seed", "20261201",
      // One worker: hypothesis describes lambdas with `ast.parse`, which this machine's CPython
      // 3.11.7 cannot run from two threads at once (gh-106905: "AST constructor recursion depth
      // mismatch", seen here with two workers).
      "--workers", "1",
      "--request-timeout", "10",
      "--generation-with-security-parameters", "false",
      "--no-color",
      "--report", "junit",
      "--report-dir", path.join(OUTPUT, "schemathesis"),
    ],
    { cwd: ROOT, encoding: "utf8", env: { ...process.env, SCHEMATHESIS_HOOKS: "" }, maxBuffer: 64 * 1024 * 1024 },
  );
  const out = `${run.stdout}\n${run.stderr}`;
  console.log(out.split("\n").filter((l) => /passed|failed|errored|operations|test cases|Summary/i.test(l)).slice(-12).join("\n"));
  assert.equal(run.status, 0, out.slice(-20000));
  assert.ok(!out.includes(worker.adminToken), "the token is not echoed");
  // How many cases ran: `npm run bench` asks for at least 10,000 (SCHEMATHESIS_MIN_CASES).
  const cases = Number(/(\d+) generated/.exec(out)?.[1] ?? NaN);
  console.log(`schemathesis: ${cases} test cases at --max-examples ${examples}`);
  assert.ok(cases > 0, `no case count in the output:\n${out.slice(-3000)}`);
  if (process.env.SCHEMATHESIS_MIN_CASES) assert.ok(cases >= Number(process.env.SCHEMATHESIS_MIN_CASES), `${cases} cases`);
});
