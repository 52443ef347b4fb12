// Rewrites wasm-bindgen's JS glue for a wasm whose imports, exports and import modules wasm-opt
// renamed to short names (`--minify-imports-and-exports-and-modules`, which prints the mapping as
// JSON). wasm-bindgen names imports like `__wbg_then_e3f7f2d365708be8`: their hashes do not
// compress, and each appears in both files. The widget's size target is gzip bytes over both.
//
// Usage: node rename-wasm-glue.mjs MAPPING.json RENAMED.wasm GLUE.js   (GLUE.js is rewritten in place)
// Fails, changing nothing, if any name is not found exactly where the glue is expected to hold it.
import { readFileSync, writeFileSync } from "node:fs";

const [mappingFile, wasmFile, glueFile] = process.argv.slice(2);
const mapping = JSON.parse(readFileSync(mappingFile, "utf8"));
let glue = readFileSync(glueFile, "utf8");
const escape = (s) => s.replace(/[$.*+?^()[\]{}|\\/]/g, "\\$&");
const fail = (why) => {
  console.error(`rename-wasm-glue: ${why}`);
  process.exit(1);
};

// The glue's `return { "<module>": importN, ... }` tells which object holds each module's imports.
const objects = new Map();
for (const [, module, object] of glue.matchAll(/^\s+"([^"]+)": (import\d+),$/gm)) objects.set(module, object);
const entries = [];
for (const [module, name, short] of mapping.imports) {
  const object = objects.get(module) ?? fail(`no import object for module ${module}`);
  if (object === "import0") {
    // wasm-bindgen's own imports are methods of `import0`: rename the key.
    const key = new RegExp(`^(\\s+)${escape(name)}(: function\\()`, "m");
    if (!key.test(glue)) fail(`import ${name} not found in the glue`);
    glue = glue.replace(key, (_, indent, rest) => indent + short + rest);
    entries.push(`...import0`);
  } else {
    // A snippet module's export, imported as a namespace: pick it out under its short name.
    entries.push(`${JSON.stringify(short)}: ${object}.${name}`);
  }
}
const ret = /return \{\n\s+__proto__: null,\n(\s+"[^"]+": import\d+,\n)+\s+\};/;
if (!ret.test(glue)) fail("the import object's return statement has an unexpected shape");
const wasmModule = importedModule();
glue = glue.replace(ret, `return { ${JSON.stringify(wasmModule)}: { ${[...new Set(entries)].join(", ")} } };`);

for (const [name, short] of mapping.exports) {
  const use = new RegExp(`\\bwasm\\.${escape(name)}(?![\\w$])`, "g");
  glue = glue.replace(use, () => `wasm.${short}`);
}
const left = glue.match(/\bwasm\.(__wbindgen_\w+|__wbg_\w+|wasm_bindgen__\w+)/);
if (left) fail(`export ${left[1]} is still used under its long name`);
writeFileSync(glueFile, glue);

/** The one module the renamed wasm imports everything from (wasm-opt chose its name). */
function importedModule() {
  const names = new Set(WebAssembly.Module.imports(new WebAssembly.Module(readFileSync(wasmFile))).map((i) => i.module));
  if (names.size !== 1) fail(`expected one import module, found ${[...names].join(", ")}`);
  return [...names][0];
}
