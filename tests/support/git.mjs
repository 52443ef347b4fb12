// Git for test fixtures: a fixed identity and no user or system configuration, so repositories
// come out the same on every machine.
import { execFileSync } from "node:child_process";

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
