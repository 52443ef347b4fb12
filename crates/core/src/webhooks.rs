//! Push webhooks from upstream hosts: which host sent one, how it is authenticated, and whether
//! it is a push. The HMAC itself is computed by the platform ([`crate::store::Crypto`]); the
//! comparison is constant-time ([`crate::identity::constant_time_eq`]).

/// How a delivery proves it knows the repository's webhook secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Proof {
    /// HMAC-SHA256 of the body with the secret, hex (GitHub, Gitea, Bitbucket).
    HmacSha256(String),
    /// The secret itself (GitLab's `X-Gitlab-Token`).
    Token(String),
}

/// What a delivery is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// Refs changed upstream: sync.
    Push,
    /// A test delivery: answer, do nothing.
    Ping,
    /// Anything else: ignored.
    Other,
}

/// The answer to making a webhook secret: where to send deliveries and the secret, shown once.
#[derive(Debug, Clone, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct WebhookSecret {
    /// Where the upstream host sends deliveries.
    pub url: String,
    /// The secret to sign them with.
    pub secret: String,
    /// The content type to send.
    pub content_type: String,
    /// The events that matter.
    pub events: Vec<String>,
}

/// The answer to a delivery: who sent it and, for a push, how many jobs now wait (a ping
/// answers without `queued`).
#[derive(Debug, Clone, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct WebhookAnswer {
    /// `github`, `gitea`, `gitlab` or `bitbucket`.
    pub host: String,
    /// Jobs now waiting, for a push; absent for a ping.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queued: Option<u64>,
}

/// A delivery's sender, proof and event, read from its headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// `github`, `gitea`, `gitlab` or `bitbucket`.
    pub host: &'static str,
    /// The proof sent.
    pub proof: Proof,
    /// The event.
    pub event: Event,
}

/// Why a delivery was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    /// No signature or token header a supported host sends.
    #[error("the delivery carries no signature or token")]
    Unsigned,
}

/// Reads a delivery from its headers (`header` looks one up, case-insensitively).
pub fn read_delivery(header: impl Fn(&str) -> Option<String>) -> Result<Delivery, WebhookError> {
    let hex_after = |v: String| v.strip_prefix("sha256=").map(str::to_owned).unwrap_or(v).to_ascii_lowercase();
    let event = |name: Option<String>, push: &[&str], ping: &[&str]| match name {
        Some(e) if push.contains(&e.as_str()) => Event::Push,
        Some(e) if ping.contains(&e.as_str()) => Event::Ping,
        _ => Event::Other,
    };
    if let Some(token) = header("x-gitlab-token") {
        let e = event(header("x-gitlab-event"), &["Push Hook", "Tag Push Hook", "System Hook"], &[]);
        return Ok(Delivery { host: "gitlab", proof: Proof::Token(token), event: e });
    }
    if let Some(sig) = header("x-gitea-signature") {
        let e = event(header("x-gitea-event"), &["push", "create", "delete"], &[]);
        return Ok(Delivery { host: "gitea", proof: Proof::HmacSha256(hex_after(sig)), event: e });
    }
    if let Some(sig) = header("x-hub-signature-256") {
        let e = event(header("x-github-event"), &["push", "create", "delete"], &["ping"]);
        return Ok(Delivery { host: "github", proof: Proof::HmacSha256(hex_after(sig)), event: e });
    }
    if let Some(sig) = header("x-hub-signature") {
        let e = event(header("x-event-key"), &["repo:refs_changed", "repo:push"], &["diagnostics:ping"]);
        return Ok(Delivery { host: "bitbucket", proof: Proof::HmacSha256(hex_after(sig)), event: e });
    }
    Err(WebhookError::Unsigned)
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let owned: Vec<(String, String)> = pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        move |name: &str| owned.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.clone())
    }

    #[test]
    fn recognises_each_host() {
        let gh = read_delivery(headers(&[("X-Hub-Signature-256", "sha256=ABCD"), ("X-GitHub-Event", "push")]))
            .expect("github");
        assert_eq!(gh, Delivery { host: "github", proof: Proof::HmacSha256("abcd".into()), event: Event::Push });
        let gh_ping =
            read_delivery(headers(&[("X-Hub-Signature-256", "sha256=ab"), ("X-GitHub-Event", "ping")])).expect("ping");
        assert_eq!(gh_ping.event, Event::Ping);
        let gitea = read_delivery(headers(&[
            ("X-Gitea-Signature", "ab12"),
            ("X-Hub-Signature-256", "sha256=ab12"),
            ("X-Gitea-Event", "push"),
        ]))
        .expect("gitea");
        assert_eq!((gitea.host, gitea.event), ("gitea", Event::Push));
        let gl = read_delivery(headers(&[("X-Gitlab-Token", "s3cret"), ("X-Gitlab-Event", "Tag Push Hook")]))
            .expect("gitlab");
        assert_eq!(gl.proof, Proof::Token("s3cret".into()));
        let bb = read_delivery(headers(&[("X-Hub-Signature", "sha256=ff"), ("X-Event-Key", "repo:refs_changed")]))
            .expect("bitbucket");
        assert_eq!((bb.host, bb.event), ("bitbucket", Event::Push));
        let other =
            read_delivery(headers(&[("X-Gitlab-Token", "t"), ("X-Gitlab-Event", "Issue Hook")])).expect("gitlab");
        assert_eq!(other.event, Event::Other);
        assert_eq!(read_delivery(headers(&[("X-GitHub-Event", "push")])), Err(WebhookError::Unsigned));
    }
}
