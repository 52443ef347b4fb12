// Starts a real farm node (the debug `mirrorfarm-runner` cargo built) against a Worker, keeps its
// log, and stops it (SIGTERM, waiting for it to exit) and saves the log under test-output/.
import { spawn, execFileSync } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { ROOT, OUTPUT } from "./worker.mjs";

export const RUNNER = path.join(ROOT, "target/debug/mirrorfarm-runner");

/** Builds the node (a no-op when `cargo test` already did). */
export function buildNode() {
  execFileSync("cargo", ["build", "-q", "-p", "mirrorfarm-runner"], { cwd: ROOT, stdio: "inherit" });
}

/** A running node: `log()` and `stop()`; `args` are more flags for `run`, `env` more variables. */
export function startNode({ edgeUrl, token, dataDir, name, args = [], env = {} }) {
  const child = spawn(RUNNER, ["run", "--edge-url", edgeUrl, "--data-dir", dataDir, "--poll-ms", "200", ...args], {
    env: { ...process.env, MIRRORFARM_NODE_TOKEN: token, MIRRORFARM_LOG: "info", NO_COLOR: "1", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let log = "";
  child.stdout.on("data", (d) => (log += d));
  child.stderr.on("data", (d) => (log += d));
  return {
    child,
    log: () => log,
    async stop() {
      // A process killed by a signal has no exit code, only a signal code.
      if (child.exitCode === null && child.signalCode === null) {
        const exited = new Promise((r) => child.once("exit", r));
        child.kill("SIGTERM");
        await exited;
      }
      mkdirSync(OUTPUT, { recursive: true });
      writeFileSync(path.join(OUTPUT, `${name}.log`), log);
    },
  };
}
