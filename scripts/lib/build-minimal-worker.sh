#!/usr/bin/env bash
# Builds the cold-start bench's baseline, a minimal workers-rs Worker (crates/edge/bench/minimal),
# the way scripts/build builds ours: worker-build --release, then wasm-opt -Oz. It is a workspace of
# its own with its own target dir, so the first build compiles `worker` and its dependencies once
# (about 2–3 minutes on 2 cores); later runs skip while build/index_bg.wasm is newer than every source.
# Only `npm run bench` builds it, never `npm test`.
source "$(dirname "$0")/common.sh"
self=$(realpath "$0")
cd "$ROOT/crates/edge/bench/minimal"
wasm=build/index_bg.wasm
if [ "${FORCE_BUILD:-}" != 1 ] && [ -f "$wasm" ] &&
  [ -z "$(find Cargo.toml Cargo.lock src "$ROOT/rust-toolchain.toml" "$ROOT/scripts/lib/common.sh" "$self" -newer "$wasm" -print -quit)" ]; then
  step "the minimal Worker is up to date"
  exit 0
fi
step "worker-build --release (the minimal Worker, the cold-start baseline)"
CARGO_TARGET_DIR="$PWD/target" worker-build --release >&2
shrink "$wasm"
