// `npm run deploy`: the Worker, its D1 schema, secrets, Durable Object migrations and R2 bucket on
// a Cloudflare account, in the order they depend on each other. Credentials come from wrangler
// (`CLOUDFLARE_API_TOKEN`, or `wrangler login`). With `--dry-run` nothing reaches the network: the
// deploy configuration is written, `wrangler deploy --dry-run --outdir` bundles the Worker, and
// every other step is printed as it would run. `npm test` runs the dry run.
//
// Settings (environment):
//   MIRRORFARM_D1_DATABASE_ID     the D1 database's id (made with `wrangler d1 create` when absent)
//   MIRRORFARM_KV_NAMESPACE_ID    the KV namespace's id (made with `wrangler kv namespace create` when absent)
//   MIRRORFARM_R2_BUCKET          the blobs bucket (default mirrorfarm-blobs; created if missing)
//   MIRRORFARM_SEAL_KEY           64 hex digits sealing stored credentials; generated into
//                                 .mirrorfarm/deploy-seal-key (mode 600) when absent. Losing it
//                                 loses every stored mirror credential: keep it.
//   MIRRORFARM_WORKER_NAME        the Worker's name (default mirrorfarm)
//   Worker variables passed through when set: MIRRORFARM_ALLOWED_HOSTS, MIRRORFARM_CORS_ORIGINS,
//   MIRRORFARM_POLL_INTERVAL_MS, MIRRORFARM_RETRY_BASE_MS, MIRRORFARM_STALE_AFTER_MS,
//   MIRRORFARM_SYNC_WAIT_MS, MIRRORFARM_LICENSE_PUBLIC_KEY.
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { bootstrapAdmin } from "./bootstrap.mjs";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const WRANGLER = path.join(ROOT, "node_modules/.bin/wrangler");
const CONFIG = path.join(ROOT, "build/wrangler.deploy.toml");
const DRY_OUT = path.join(ROOT, "build/deploy-dry-run");
const PLACEHOLDER_D1 = "00000000-0000-0000-0000-000000000000";
const PLACEHOLDER_KV = "00000000000000000000000000000000";
const VARS = [
  "MIRRORFARM_ALLOWED_HOSTS",
  "MIRRORFARM_CORS_ORIGINS",
  "MIRRORFARM_POLL_INTERVAL_MS",
  "MIRRORFARM_RETRY_BASE_MS",
  "MIRRORFARM_STALE_AFTER_MS",
  "MIRRORFARM_SYNC_WAIT_MS",
  "MIRRORFARM_LICENSE_PUBLIC_KEY",
];

const dryRun = process.argv.includes("--dry-run");
const env = { ...process.env, WRANGLER_SEND_METRICS: "false", NO_COLOR: "1" };
const step = (text) => console.log(`\n==> ${text}`);

/** Runs wrangler (or, in a dry run, prints the command); returns its output. */
function wrangler(args, { input, always = false } = {}) {
  const shown = `wrangler ${args.join(" ")}`;
  if (dryRun && !always) {
    console.log(`   (dry run) ${shown}`);
    return "";
  }
  console.log(`   ${shown}`);
  const out = execFileSync(WRANGLER, args, { cwd: ROOT, env, input, stdio: ["pipe", "pipe", "inherit"] }).toString();
  process.stdout.write(out.replace(/^/gm, "   | "));
  return out;
}

/** An id from wrangler's output (`database_id = "…"`, `id = "…"`). */
function idFrom(output, key) {
  const m = new RegExp(`${key}\\s*=\\s*"([^"]+)"`).exec(output) ?? new RegExp(`"${key}"\\s*:\\s*"([^"]+)"`).exec(output);
  if (!m) throw new Error(`no ${key} in wrangler's answer:\n${output}`);
  return m[1];
}

/** The deploy configuration: wrangler.toml with the account's resource ids and settings. */
function deployConfig({ d1Id, kvId, bucket, name }) {
  let toml = readFileSync(path.join(ROOT, "wrangler.toml"), "utf8");
  const replace = (from, to, what) => {
    if (!toml.includes(from)) throw new Error(`wrangler.toml no longer has ${what} (${from})`);
    toml = toml.replace(from, to);
  };
  replace(`database_id = "${PLACEHOLDER_D1}"`, `database_id = "${d1Id}"`, "the D1 placeholder id");
  replace(`id = "${PLACEHOLDER_KV}"`, `id = "${kvId}"`, "the KV placeholder id");
  replace(`bucket_name = "mirrorfarm-blobs"`, `bucket_name = "${bucket}"`, "the R2 bucket");
  replace(`name = "mirrorfarm"`, `name = "${name}"`, "the Worker's name");
  // Relative paths in the config are read from its own directory (build/).
  replace(`main = "crates/edge/build/index.js"`, `main = "../crates/edge/build/index.js"`, "main");
  replace(`directory = "crates/edge/build/assets"`, `directory = "../crates/edge/build/assets"`, "the assets directory");
  replace(`migrations_dir = "migrations"`, `migrations_dir = "../migrations"`, "the migrations directory");
  const vars = VARS.filter((v) => process.env[v] !== undefined).map((v) => `${v} = ${JSON.stringify(process.env[v])}`);
  if (vars.length) toml = toml.replace(/\[vars\]\n(?:#.*\n)*MIRRORFARM_ALLOWED_HOSTS = ""\n/, `[vars]\n${vars.join("\n")}\n`);
  mkdirSync(path.dirname(CONFIG), { recursive: true });
  writeFileSync(CONFIG, `# Written by scripts/lib/deploy.mjs from wrangler.toml; do not edit.\n${toml}`);
  return CONFIG;
}

/** The sealing key: the environment's, or one generated once and kept (mode 600). */
function sealKey() {
  if (process.env.MIRRORFARM_SEAL_KEY) return process.env.MIRRORFARM_SEAL_KEY;
  const file = path.join(ROOT, ".mirrorfarm/deploy-seal-key");
  if (!existsSync(file)) {
    mkdirSync(path.dirname(file), { recursive: true });
    writeFileSync(file, randomBytes(32).toString("hex") + "\n", { mode: 0o600 });
    console.log(`   a new sealing key was written to ${path.relative(ROOT, file)}: back it up`);
  }
  return readFileSync(file, "utf8").trim();
}

const name = process.env.MIRRORFARM_WORKER_NAME || "mirrorfarm";
const bucket = process.env.MIRRORFARM_R2_BUCKET || "mirrorfarm-blobs";

step("D1 database and KV namespace");
let d1Id = process.env.MIRRORFARM_D1_DATABASE_ID;
if (!d1Id) d1Id = dryRun ? (wrangler(["d1", "create", name]), PLACEHOLDER_D1) : idFrom(wrangler(["d1", "create", name]), "database_id");
let kvId = process.env.MIRRORFARM_KV_NAMESPACE_ID;
if (!kvId) kvId = dryRun ? (wrangler(["kv", "namespace", "create", `${name}-cache`]), PLACEHOLDER_KV) : idFrom(wrangler(["kv", "namespace", "create", `${name}-cache`]), "id");
console.log(`   D1 ${d1Id}, KV ${kvId} (set MIRRORFARM_D1_DATABASE_ID and MIRRORFARM_KV_NAMESPACE_ID to reuse them)`);

step("deploy configuration");
const config = deployConfig({ d1Id, kvId, bucket, name });
console.log(`   ${path.relative(ROOT, config)}`);

step(`R2 bucket ${bucket}`);
if (dryRun) wrangler(["r2", "bucket", "create", bucket]);
else {
  try {
    wrangler(["r2", "bucket", "create", bucket]);
  } catch (e) {
    // Made by an earlier deploy: fine. Anything else stops here.
    if (!String(e.stderr ?? e.message).includes("already exists")) throw e;
    console.log("   (it exists)");
  }
}

step("D1 schema (migrations/, each applied once)");
wrangler(["d1", "migrations", "apply", "DB", "--remote", "--config", config], { input: "y\n" });

step("secrets");
// A dry run generates nothing: a key made then would be mistaken for the deployed one later.
const key = dryRun && !process.env.MIRRORFARM_SEAL_KEY ? null : sealKey();
if (key === null) console.log("   (dry run) the key would come from MIRRORFARM_SEAL_KEY or be generated into .mirrorfarm/deploy-seal-key");
else if (!/^[0-9a-fA-F]{64}$/.test(key)) throw new Error("MIRRORFARM_SEAL_KEY must be 64 hex digits");
// The key goes to wrangler on standard input, never on a command line or in a log.
wrangler(["secret", "put", "MIRRORFARM_SEAL_KEY", "--config", config], { input: key ?? "" });

step("the Worker, its assets and Durable Object migrations (Signals, RateLimits)");
if (dryRun) {
  wrangler(["deploy", "--dry-run", "--outdir", DRY_OUT, "--config", config], { always: true });
  console.log(`\ndry run done: the bundle is in ${path.relative(ROOT, DRY_OUT)}; nothing was sent`);
} else {
  wrangler(["deploy", "--config", config]);
  step("the first administrator");
  const token = bootstrapAdmin({ remote: true, config });
  console.log(token ? `   admin token (shown once): ${token}` : "   users exist already: none made");
  console.log("\ndeployed. Register farm nodes with `mirrorfarm-runner register` (see `mirrorfarm-runner --help`).");
}
