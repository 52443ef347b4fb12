// Creates the first administrator when the local D1 has no users, and prints its token once.
// The token is stored only as the Worker stores tokens (see crates/core/src/identity/credentials.rs):
// lookup key = its first 12 characters, hash = SHA-256 hex of the whole token. The end-to-end
// tests authenticate with the token made here, so any drift from the core's rule fails them.
import { createHash, randomBytes } from "node:crypto";
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import path from "node:path";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const WRANGLER = path.join(ROOT, "node_modules/.bin/wrangler");
const LOOKUP_LEN = 12;

/**
 * Runs SQL against the local D1 (optionally under `persistTo`), or with `remote` against the
 * deployed one named by the wrangler `config` file, and returns the result rows.
 */
export function d1(sql, { persistTo, remote = false, config } = {}) {
  const args = ["d1", "execute", "DB", remote ? "--remote" : "--local", "--json", "--command", sql];
  if (persistTo) args.push("--persist-to", persistTo);
  if (config) args.push("--config", config);
  const out = execFileSync(WRANGLER, args, {
    cwd: ROOT,
    env: { ...process.env, WRANGLER_SEND_METRICS: "false", NO_COLOR: "1" },
    stdio: ["ignore", "pipe", "pipe"],
  }).toString();
  return JSON.parse(out)[0].results;
}

/** Applies the migrations to the local D1. */
export function migrate({ persistTo } = {}) {
  const args = ["d1", "migrations", "apply", "DB", "--local"];
  if (persistTo) args.push("--persist-to", persistTo);
  execFileSync(WRANGLER, args, {
    cwd: ROOT,
    env: { ...process.env, WRANGLER_SEND_METRICS: "false", CI: "1" },
    stdio: ["ignore", "pipe", "inherit"],
  });
}

/**
 * Creates user `admin` (SYS_ADMIN) with `token` (or a new random one) if there are no users.
 * Returns the token if it created the admin, else null.
 */
export function bootstrapAdmin({ persistTo, token, remote, config } = {}) {
  const [{ n }] = d1("SELECT COUNT(*) AS n FROM users", { persistTo, remote, config });
  if (n > 0) return null;
  const secret = token ?? `mfp_${randomBytes(20).toString("hex")}`;
  if (secret.length < 20 || !/^[\x21-\x7e]+$/.test(secret)) {
    throw new Error("MIRRORFARM_BOOTSTRAP_TOKEN must be at least 20 printable characters without spaces");
  }
  d1(adminInsert(secret, Date.now()), { persistTo, remote, config });
  return secret;
}

/** SQL creating user `admin` (SYS_ADMIN) with the access token `secret`, made at `now`. */
export function adminInsert(secret, now) {
  return (
    `INSERT INTO users (name, slug, display_name, role, created_at) VALUES ('admin', 'admin', 'Administrator', 'SYS_ADMIN', ${now});` +
    adminTokenInsert(secret, "bootstrap", null, now)
  );
}

/**
 * SQL adding an access token of user `admin`, stored as the Worker stores tokens: a lookup prefix
 * and the SHA-256 of the whole secret. `permissions` is a JSON list, or null for full rights.
 */
function adminTokenInsert(secret, name, permissions, now) {
  const hash = createHash("sha256").update(secret).digest("hex");
  const lookup = secret.slice(0, LOOKUP_LEN).replaceAll("'", "''");
  const id = String(randomBytes(5).readUIntBE(0, 5)).padStart(12, "0");
  const perms = permissions === null ? "NULL" : `'${JSON.stringify(permissions)}'`;
  return (
    `INSERT INTO access_tokens (id, user_id, name, lookup, hash, permissions, created_at) ` +
    `SELECT '${id}', id, '${name}', '${lookup}', '${hash}', ${perms}, ${now} FROM users WHERE name = 'admin';`
  );
}

/** The token `tokenFile` holds; if none, `make()` creates one, which is kept there (mode 600). */
function rememberedToken(tokenFile, make) {
  if (existsSync(tokenFile)) return readFileSync(tokenFile, "utf8").trim();
  const token = make();
  mkdirSync(path.dirname(tokenFile), { recursive: true });
  writeFileSync(tokenFile, token + "\n", { mode: 0o600 });
  return token;
}

/**
 * Registers a farm node for this machine if `tokenFile` does not hold one yet, storing only its
 * hash in D1 (as the Worker does for nodes) and its token in `tokenFile` (mode 600). Returns the token.
 */
export function bootstrapNode({ persistTo, tokenFile }) {
  return rememberedToken(tokenFile, () => {
    const token = `mfn_${randomBytes(20).toString("hex")}`;
    const hash = createHash("sha256").update(token).digest("hex");
    const name = `local-${randomBytes(3).toString("hex")}`;
    d1(
      `INSERT INTO farm_nodes (name, lookup, hash, created_at) VALUES ('${name}', '${token.slice(0, LOOKUP_LEN)}', '${hash}', ${Date.now()})`,
      { persistTo },
    );
    return token;
  });
}

/**
 * Makes a STATUS_READ token for the administrator (it reads mirroring status and nothing else:
 * safe to put in a page's address) if `tokenFile` does not hold one yet, and returns it.
 */
export function bootstrapStatusToken({ persistTo, tokenFile }) {
  return rememberedToken(tokenFile, () => {
    const token = `mfp_${randomBytes(20).toString("hex")}`;
    d1(adminTokenInsert(token, "status widget", ["STATUS_READ"], Date.now()), { persistTo });
    return token;
  });
}

/** The id of the first repository, if any (for the demo page's address). */
export function firstRepositoryId({ persistTo } = {}) {
  return d1("SELECT MIN(id) AS id FROM repositories", { persistTo })[0]?.id ?? null;
}

// From scripts/start, before `wrangler dev` starts (never beside it: it holds the SQLite file).
// MIRRORFARM_STATE_DIR: the local D1 (default .wrangler/state); MIRRORFARM_DATA_DIR: where the
// node's and the widget's tokens are kept (default .mirrorfarm).
if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const persistTo = process.env.MIRRORFARM_STATE_DIR || undefined;
  const dataDir = path.resolve(ROOT, process.env.MIRRORFARM_DATA_DIR || ".mirrorfarm");
  if (process.argv[2] === "status-token") {
    process.stdout.write(bootstrapStatusToken({ persistTo, tokenFile: path.join(dataDir, "status.token") }));
  } else if (process.argv[2] === "first-repo") {
    process.stdout.write(String(firstRepositoryId({ persistTo }) ?? ""));
  } else if (process.argv[2] === "node") {
    process.stdout.write(bootstrapNode({ persistTo, tokenFile: path.join(dataDir, "node.token") }));
  } else {
    const created = bootstrapAdmin({ persistTo, token: process.env.MIRRORFARM_BOOTSTRAP_TOKEN || undefined });
    if (created) process.stdout.write(created);
  }
}
