// Sizes of the built Worker and widget (wasm + JS, gzip -9 as scripts/size measures them),
// recorded for the bench's table against their goals.
import { readFileSync } from "node:fs";
import { gzipSync } from "node:zlib";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { ROOT } from "../../tests/support/worker.mjs";
import { record } from "./bench-record.mjs";

/** The KB, gzip -9, of `files` (under `dir`) concatenated. */
export const gzipKB = (dir, ...files) =>
  gzipSync(Buffer.concat(files.map((f) => readFileSync(path.join(dir, f)))), { level: 9 }).length / 1024;

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const built = path.join(ROOT, "crates/edge/build");
  const worker = gzipKB(built, "index_bg.wasm", "index.js");
  const widget = gzipKB(built, "assets/ui/mirrorfarm_ui_bg.wasm", "assets/ui/mirrorfarm-status.js");
  console.log(`Worker wasm + JS: ${worker.toFixed(1)} KB gzip (goal ≤ 400 KB); widget wasm + JS: ${widget.toFixed(1)} KB gzip (goal ≤ 25 KB)`);
  record("Worker wasm + JS, gzip -9", worker, "KB", null, "≤ 400 KB", worker <= 400);
  record("widget wasm + JS, gzip -9", widget, "KB", null, "≤ 25 KB", widget <= 25);
}
