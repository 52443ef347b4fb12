//! The node's logging: `MIRRORFARM_LOG` (a `tracing` filter) at start, then whatever levels an
//! administrator sets at the edge (`logs/rootLogger`, `logs/logger/mirrorfarm.node[.<module>]`),
//! which each heartbeat answers as a filter. The edge's filter replaces the starting one once it
//! differs from the edge's default, so a node started with `MIRRORFARM_LOG=debug` keeps it until
//! an administrator sets levels.

use std::io;
use std::sync::{Mutex, OnceLock};

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Registry, reload};

/// The filter in force, swappable at runtime.
static FILTER: OnceLock<reload::Handle<EnvFilter, Registry>> = OnceLock::new();

/// The last filter the edge answered (the edge's default until it answers another).
static EDGE_FILTER: Mutex<Option<String>> = Mutex::new(None);

/// Starts logging to stderr with `MIRRORFARM_LOG`, or `default_filter`.
pub(crate) fn init(default_filter: &str) {
    let filter = EnvFilter::try_from_env("MIRRORFARM_LOG").unwrap_or_else(|_| EnvFilter::new(default_filter));
    let (filter, handle) = reload::Layer::new(filter);
    tracing_subscriber::registry().with(filter).with(tracing_subscriber::fmt::layer().with_writer(io::stderr)).init();
    // Set once, here: `init` runs once per process.
    let _ = FILTER.set(handle);
}

/// Applies the filter a heartbeat answered, if it changed (the edge's default never replaces
/// the starting filter).
pub(crate) fn apply_edge_filter(filter: &str) {
    let mut last = EDGE_FILTER.lock().unwrap_or_else(|p| p.into_inner());
    let default = mirrorfarm_core::admin::LogLevels::default().node_filter();
    let previous = last.clone().unwrap_or(default);
    if previous == filter {
        return;
    }
    *last = Some(filter.to_owned());
    match (FILTER.get(), EnvFilter::try_new(filter)) {
        (Some(handle), Ok(new)) => {
            if handle.reload(new).is_ok() {
                tracing::info!(filter, "log levels changed at the edge");
            }
        }
        (_, Err(e)) => tracing::warn!(filter, error = %e, "the edge's log filter does not read"),
        (None, _) => {}
    }
}
