# Shared by the scripts: paths, pinned tool versions, logging.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$ROOT/node_modules/.bin:$PATH"
export WRANGLER_SEND_METRICS=false
# worker-build must use the wasm-bindgen we install, never download one.
export WASM_BINDGEN_BIN=wasm-bindgen
WASM_BINDGEN_VERSION=0.2.130
WORKER_BUILD_VERSION=0.8.7
# Each step says when it began (and how long the script has run), so a log shows where the time goes.
step() { printf '\033[1m==> %s\033[0m  [%s, +%ss]\n' "$*" "$(date +%T)" "$SECONDS" >&2; }
# Shrinks a wasm file in place with wasm-opt -Oz (from the npm binaryen package: worker-build's own
# download is not reachable here), stripping debug info and producers.
shrink() { # wasm file, extra wasm-opt flags...
  local wasm=$1; shift
  wasm-opt -Oz --enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext \
    --enable-reference-types --enable-mutable-globals --enable-exception-handling \
    --strip-debug --strip-producers "$@" "$wasm" -o "$wasm.opt"
  mv "$wasm.opt" "$wasm"
}
