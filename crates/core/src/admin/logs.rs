//! Log levels set at runtime (`logs/rootLogger`, `logs/logger/{name}`), and what they mean for
//! the edge and the farm nodes.
//!
//! Loggers are named by dotted paths and inherit: `mirrorfarm.node.serve` takes the level of
//! `mirrorfarm.node` unless it has its own, and the root's when no prefix has one. The loggers
//! that exist (documented in the README):
//! - `mirrorfarm.edge.requests`: one INFO line per request; DEBUG adds its D1 round trips,
//!   time in D1 and the caller's kind;
//! - `mirrorfarm.edge.scheduled`: the cron's INFO summary lines; DEBUG adds its round trips;
//! - `mirrorfarm.node` and `mirrorfarm.node.<module>` (`daemon`, `push`, `fork`, `serve`, …):
//!   the farm nodes, which take the levels up at their next heartbeat.
//!
//! Internal errors are logged whatever the levels: ERROR is the most severe level there is.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A log level, least to most severe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(rename_all = "UPPERCASE")]
pub enum LogLevel {
    /// Everything.
    Trace,
    /// Detail for finding a problem.
    Debug,
    /// What happened (the default).
    Info,
    /// Something unexpected that was survived.
    Warn,
    /// Something failed.
    Error,
}

crate::wire_names!(LogLevel { Trace = "TRACE", Debug = "DEBUG", Info = "INFO", Warn = "WARN", Error = "ERROR" });

/// Why a logger name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoggerNameError {
    /// Not 1–200 of letters, digits, `.`, `_`, `-`, or with an empty segment.
    #[error("Logger names are 1 to 200 characters of letters, digits, '.', '_' and '-', without empty segments.")]
    Invalid,
}

/// Checks a logger name.
pub fn logger_name(name: &str) -> Result<&str, LoggerNameError> {
    let ok = !name.is_empty()
        && name.len() <= 200
        && name.split('.').all(|s| !s.is_empty())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok { Ok(name) } else { Err(LoggerNameError::Invalid) }
}

/// Most loggers kept (a runaway script cannot grow the setting without bound).
pub const MAX_LOGGERS: usize = 200;

/// The root level and the loggers set explicitly.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogLevels {
    /// The root logger's level.
    pub root: LogLevel,
    /// Logger name → level.
    #[serde(default)]
    pub loggers: BTreeMap<String, LogLevel>,
}

impl Default for LogLevels {
    fn default() -> Self {
        Self { root: LogLevel::Info, loggers: BTreeMap::new() }
    }
}

impl LogLevels {
    /// A logger's effective level: its own, its nearest ancestor's, or the root's.
    pub fn effective(&self, name: &str) -> LogLevel {
        let mut name = name;
        loop {
            if let Some(level) = self.loggers.get(name) {
                return *level;
            }
            match name.rfind('.') {
                Some(i) => name = &name[..i],
                None => return self.root,
            }
        }
    }

    /// Whether a line at `level` is logged by `logger`.
    pub fn enabled(&self, logger: &str, level: LogLevel) -> bool {
        level >= self.effective(logger)
    }

    /// The farm node's filter, in `tracing`'s directive syntax: the root's level for everything,
    /// and each `mirrorfarm.node[.<module>]` logger as the runner crate's module
    /// (`mirrorfarm_runner[::<module>]`).
    pub fn node_filter(&self) -> String {
        let directive = |l: LogLevel| l.as_str().to_ascii_lowercase();
        let mut parts = vec![directive(self.root)];
        for (name, level) in &self.loggers {
            let module = match name.strip_prefix("mirrorfarm.node") {
                Some("") => "mirrorfarm_runner".to_owned(),
                Some(rest) if rest.starts_with('.') => format!("mirrorfarm_runner{}", rest.replace('.', "::")),
                _ => continue,
            };
            parts.push(format!("{module}={}", directive(*level)));
        }
        parts.join(",")
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    #[test]
    fn loggers_inherit_from_their_nearest_ancestor() {
        let mut l = LogLevels::default();
        l.loggers.insert("mirrorfarm.node".into(), LogLevel::Debug);
        l.loggers.insert("mirrorfarm.node.serve".into(), LogLevel::Warn);
        assert_eq!(l.effective("mirrorfarm.node.daemon"), LogLevel::Debug);
        assert_eq!(l.effective("mirrorfarm.node.serve"), LogLevel::Warn);
        assert_eq!(l.effective("mirrorfarm.edge.requests"), LogLevel::Info);
        assert!(l.enabled("mirrorfarm.edge.requests", LogLevel::Info));
        assert!(!l.enabled("mirrorfarm.edge.requests", LogLevel::Debug));
        assert_eq!(l.node_filter(), "info,mirrorfarm_runner=debug,mirrorfarm_runner::serve=warn");
    }

    #[test]
    fn levels_and_names_are_checked() {
        assert_eq!(LogLevel::parse("debug"), Some(LogLevel::Debug));
        assert_eq!(LogLevel::parse("Warn"), Some(LogLevel::Warn));
        assert_eq!(LogLevel::parse("verbose"), None);
        assert!(logger_name("com.atlassian.bitbucket").is_ok());
        assert!(logger_name("a..b").is_err());
        assert!(logger_name("a/b").is_err());
    }
}
