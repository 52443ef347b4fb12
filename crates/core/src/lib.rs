//! # mirrorfarm-core
//!
//! Keeping git repositories mirrored means hundreds of small decisions — is this URL safe to
//! reach, may this caller change that mirror, which refs move and how, what status does a mirror
//! show after a failure. This crate makes all of them, once, without doing any I/O: it takes
//! inputs and the current time and returns decisions (a response, a new state, a plan). The
//! Cloudflare Worker, the browser widget and the farm-node runner are thin shells around it.
//!
//! - [`api`]: the REST service (GitLab remote mirrors, Bitbucket projects/repos/users/tokens),
//!   over the ports in [`store`].
//! - [`mirrors`], [`registry`], [`identity`], [`queue`]: the domain and its rules.
//! - [`status`]: a repository's mirroring status at a glance (the widget's wire type).
//! - [`sync`]: planning which refs a push mirror moves, and how.
//! - [`urls`], [`filters`], [`paging`], [`time`]: the small exact rules the APIs share.

/// `as_str` and `parse` for an enum of wire and storage names. Names are read in any case:
/// clients differ (Bitbucket's own documents mix `INCREMENTAL` and `incremental`).
macro_rules! wire_names {
    ($ty:ident { $($variant:ident = $name:literal),* $(,)? }) => {
        impl $ty {
            /// The storage and wire name.
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $name),* }
            }
            /// Reads a name (in any case).
            pub fn parse(text: &str) -> Option<Self> {
                $(if text.eq_ignore_ascii_case($name) { return Some(Self::$variant); })*
                None
            }
        }
    };
}
pub(crate) use wire_names;

pub mod admin;
pub mod api;
pub mod audit;
pub mod farm;
pub mod filters;
pub mod forks;
pub mod hex;
pub mod hooks;
pub mod identity;
pub mod mail;
pub mod mesh;
pub mod migration;
pub mod mirrors;
pub mod nodes;
pub mod paging;
pub mod queue;
pub mod registry;
pub mod ssh;
pub mod status;
pub mod store;
pub mod sync;
pub mod text;
pub mod time;
pub mod urls;
pub mod webhooks;

#[cfg(test)]
pub mod test_support;

#[cfg(all(test, target_arch = "wasm32"))]
wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);
