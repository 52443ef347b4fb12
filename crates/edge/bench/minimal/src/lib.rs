//! The smallest Worker workers-rs makes: it answers every request with `ok`.
//!
//! It exists as the baseline of the cold-start bench (`scripts/lib/bench-coldstart.mjs`): a new
//! workerd isolate's first answer from mirrorfarm's Worker is measured against this one's, built
//! with the same crate versions and the same size-first profile.

use worker::{Context, Env, Request, Response, Result, event};

#[event(fetch)]
async fn fetch(_req: Request, _env: Env, _ctx: Context) -> Result<Response> {
    Response::ok("ok")
}
