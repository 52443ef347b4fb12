// Runs a wasm32-wasip1 program (a bench built by cargo) in Node's V8 — the engine workerd uses.
// Usage: node scripts/lib/run-wasi.mjs <file.wasm> [args…]
import { readFileSync } from "node:fs";
import { WASI } from "node:wasi";

const [file, ...args] = process.argv.slice(2);
if (!file) {
  console.error("usage: run-wasi.mjs <file.wasm> [args…]");
  process.exit(2);
}
const wasi = new WASI({ version: "preview1", args: [file, ...args], env: {}, returnOnExit: true });
const module = await WebAssembly.compile(readFileSync(file));
const instance = await WebAssembly.instantiate(module, wasi.getImportObject());
process.exitCode = wasi.start(instance);
