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

/// The most recent log output kept in memory for support zips (bytes).
const RECENT_BYTES: usize = 256 * 1024;

/// The tail of the log, as written to stderr.
static RECENT: Mutex<std::collections::VecDeque<u8>> = Mutex::new(std::collections::VecDeque::new());

/// The log's most recent lines (at most [`RECENT_BYTES`]), for support zips.
pub(crate) fn recent() -> String {
    let kept = RECENT.lock().unwrap_or_else(|p| p.into_inner());
    let bytes: Vec<u8> = kept.iter().copied().collect();
    // Start at a line boundary: the oldest line may have been cut.
    let start = bytes.iter().position(|b| *b == b'\n').map_or(0, |i| i + 1).min(bytes.len());
    String::from_utf8_lossy(if kept.len() < RECENT_BYTES { &bytes } else { &bytes[start..] }).into_owned()
}

/// Writes log output to stderr and keeps its tail in memory.
struct Tee;

impl io::Write for Tee {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        io::Write::write_all(&mut io::stderr(), buf)?;
        let mut kept = RECENT.lock().unwrap_or_else(|p| p.into_inner());
        kept.extend(buf);
        let excess = kept.len().saturating_sub(RECENT_BYTES);
        kept.drain(..excess);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        io::Write::flush(&mut io::stderr())
    }
}

/// Starts logging to stderr with `MIRRORFARM_LOG`, or `default_filter`.
pub(crate) fn init(default_filter: &str) {
    let filter = EnvFilter::try_from_env("MIRRORFARM_LOG").unwrap_or_else(|_| EnvFilter::new(default_filter));
    let (filter, handle) = reload::Layer::new(filter);
    tracing_subscriber::registry().with(filter).with(tracing_subscriber::fmt::layer().with_writer(|| Tee)).init();
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
