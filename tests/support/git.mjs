// Git for test fixtures: a fixed identity and no user or system configuration, so repositories
// come out the same on every machine.
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";

export const gitEnv = {
  ...process.env,
  GIT_CONFIG_NOSYSTEM: "1",
  GIT_CONFIG_GLOBAL: "/dev/null",
  GIT_AUTHOR_NAME: "t",
  GIT_AUTHOR_EMAIL: "t@example.com",
  GIT_COMMITTER_NAME: "t",
  GIT_COMMITTER_EMAIL: "t@example.com",
};

/** Runs git in `cwd`; returns its trimmed output. */
export const git = (cwd, ...args) => execFileSync("git", ["-C", cwd, ...args], { env: gitEnv }).toString().trim();

/** Every ref of a repository with its object, one per line. */
export const refs = (repo) => git(repo, "for-each-ref", "--format=%(refname) %(objectname)");

/** The content hash the README defines: SHA-256 of a repository's heads and tags as `git ls-remote`
 * lists them (peeled lines left out), sorted by ref name, one `<oid> <ref>` line each. */
export function contentHash(repoPath, env = gitEnv) {
  const lines = execFileSync("git", ["ls-remote", repoPath], { env })
    .toString()
    .split("\n")
    .filter(Boolean)
    .map((l) => l.split("\t"))
    .filter(([, ref]) => (ref.startsWith("refs/heads/") || ref.startsWith("refs/tags/")) && !ref.endsWith("^{}"))
    .sort(([, x], [, y]) => Buffer.compare(Buffer.from(x), Buffer.from(y)))
    .map(([oid, ref]) => `${oid} ${ref}\n`)
    .join("");
  return createHash("sha256").update(lines).digest("hex");
}
