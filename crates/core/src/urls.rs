//! Git remote URLs: parsing, credential scrubbing and the outbound-address policy.
//!
//! Mirror and upstream URLs come from users and are later fetched from or pushed to by farm nodes,
//! so they are (1) stripped of credentials before anything is shown or stored in the clear and
//! (2) refused when they point at loopback, private or link-local addresses (server-side request
//! forgery), unless an operator allow-lists the host.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The mask GitLab puts in place of a URL's user name and password.
pub const MASK: &str = "*****";

/// Why a URL was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    /// The text is not `scheme://host/path`.
    #[error("is not a valid URL")]
    Malformed,
    /// The scheme is not one git transports over.
    #[error("is blocked: Only allowed schemes are http, https, ssh, git")]
    Scheme,
    /// The host is missing or has characters no host name has.
    #[error("is blocked: Host cannot be resolved or is invalid")]
    Host,
    /// The port is not a number between 1 and 65535.
    #[error("is blocked: Port is invalid")]
    Port,
    /// The host is loopback, private, link-local or otherwise internal.
    #[error("is blocked: Requests to the local network are not allowed")]
    LocalNetwork,
}

/// A parsed `scheme://[user[:password]@]host[:port][/path]` URL.
#[derive(Clone, PartialEq, Eq)]
pub struct GitUrl {
    scheme: String,
    user: Option<String>,
    password: Option<String>,
    host: String,
    port: Option<u16>,
    rest: String,
}

/// Debug never prints credentials.
impl fmt::Debug for GitUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("GitUrl").field(&self.masked()).finish()
    }
}

impl GitUrl {
    /// Parses a URL with one of the schemes git transports over (`http`, `https`, `ssh`, `git`).
    pub fn parse(text: &str) -> Result<Self, UrlError> {
        if text.is_empty() || text.len() > 2048 || text.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(UrlError::Malformed);
        }
        let (scheme, after) = text.split_once("://").ok_or(UrlError::Malformed)?;
        let scheme = scheme.to_ascii_lowercase();
        if !matches!(scheme.as_str(), "http" | "https" | "ssh" | "git") {
            return Err(UrlError::Scheme);
        }
        let authority_end = after.find(['/', '?', '#']).unwrap_or(after.len());
        let (authority, rest) = after.split_at(authority_end);
        let (userinfo, hostport) = match authority.rfind('@') {
            Some(at) => (Some(&authority[..at]), &authority[at + 1..]),
            None => (None, authority),
        };
        let (user, password) = match userinfo {
            None => (None, None),
            Some(info) => match info.split_once(':') {
                Some((u, p)) => (Some(u.to_owned()), Some(p.to_owned())),
                None => (Some(info.to_owned()), None),
            },
        };
        let (host, port) = split_host_port(hostport)?;
        Ok(Self {
            scheme,
            user: user.filter(|u| !u.is_empty()),
            password: password.filter(|p| !p.is_empty()),
            host,
            port,
            rest: rest.to_owned(),
        })
    }

    /// The scheme, lower-cased.
    pub fn scheme(&self) -> &str {
        &self.scheme
    }

    /// The host, lower-cased; IPv6 literals keep their brackets.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port, if the URL names one.
    pub fn port(&self) -> Option<u16> {
        self.port
    }

    /// Whether the URL carries a user name or password.
    pub fn has_credentials(&self) -> bool {
        self.user.is_some() || self.password.is_some()
    }

    /// Whether the credentials are GitLab's mask (`*****`), as when a client sends back a URL it read.
    pub fn has_masked_credentials(&self) -> bool {
        self.user.as_deref() == Some(MASK) && self.password.as_deref().is_none_or(|p| p == MASK)
    }

    /// The `user[:password]` part, as written (still percent-encoded), if any.
    pub fn userinfo(&self) -> Option<String> {
        match (&self.user, &self.password) {
            (None, None) => None,
            (u, None) => Some(u.clone().unwrap_or_default()),
            (u, Some(p)) => Some(format!("{}:{p}", u.as_deref().unwrap_or_default())),
        }
    }

    /// The URL with no credentials at all.
    pub fn without_credentials(&self) -> String {
        self.render(None)
    }

    /// The URL as GitLab shows it: user name and password each replaced by `*****`.
    pub fn masked(&self) -> String {
        let info = match (&self.user, &self.password) {
            (None, None) => None,
            (_, None) => Some(MASK.to_owned()),
            (_, Some(_)) => Some(format!("{MASK}:{MASK}")),
        };
        self.render(info.as_deref())
    }

    /// The URL with the given `user[:password]` put in (for the node that needs it, never for display).
    pub fn with_userinfo(&self, userinfo: Option<&str>) -> String {
        self.render(userinfo)
    }

    fn render(&self, userinfo: Option<&str>) -> String {
        let mut out = format!("{}://", self.scheme);
        if let Some(info) = userinfo {
            out.push_str(info);
            out.push('@');
        }
        out.push_str(&self.host);
        if let Some(port) = self.port {
            out.push_str(&format!(":{port}"));
        }
        out.push_str(&self.rest);
        out
    }

    /// Checks the host against the outbound-address policy: loopback, private, link-local,
    /// unspecified and ambiguous numeric hosts are refused unless `allow` lists them.
    pub fn check_outbound(&self, allow: &HostAllowlist) -> Result<(), UrlError> {
        let bare = self.host.trim_start_matches('[').trim_end_matches(']');
        let ip = bare.parse::<IpAddr>().ok();
        if allow.permits(bare, ip) {
            return Ok(());
        }
        if bare == "localhost" || bare.ends_with(".localhost") {
            return Err(UrlError::LocalNetwork);
        }
        match ip {
            Some(ip) if is_internal(ip) => Err(UrlError::LocalNetwork),
            Some(_) => Ok(()),
            // Browsers and curl read `2130706433`, `0x7f.1` or `127.1` as IPv4; refuse such hosts
            // rather than guess what the transport will connect to.
            None if looks_numeric(bare) => Err(UrlError::LocalNetwork),
            None => Ok(()),
        }
    }
}

fn split_host_port(hostport: &str) -> Result<(String, Option<u16>), UrlError> {
    let (host, port) = if let Some(inner) = hostport.strip_prefix('[') {
        let close = inner.find(']').ok_or(UrlError::Host)?;
        let literal = &inner[..close];
        literal.parse::<Ipv6Addr>().map_err(|_| UrlError::Host)?;
        let after = &inner[close + 1..];
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or(UrlError::Host)?),
        };
        (format!("[{}]", literal.to_ascii_lowercase()), port)
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h.to_ascii_lowercase(), Some(p)),
            None => (hostport.to_ascii_lowercase(), None),
        }
    };
    let valid_name = |h: &str| {
        !h.is_empty() && h.len() <= 253 && h.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
    };
    if !host.starts_with('[') && !valid_name(&host) {
        return Err(UrlError::Host);
    }
    let port = match port {
        None | Some("") => None,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 && p.chars().all(|c| c.is_ascii_digit()) => Some(n),
            _ => return Err(UrlError::Port),
        },
    };
    Ok((host, port))
}

fn looks_numeric(host: &str) -> bool {
    let last = host.trim_end_matches('.').rsplit('.').next().unwrap_or_default();
    !last.is_empty()
        && (last.chars().all(|c| c.is_ascii_digit())
            || (last.starts_with("0x") && last[2..].chars().all(|c| c.is_ascii_hexdigit())))
}

fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_internal_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_internal_v4(v4);
            }
            let first = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || (first & 0xfe00) == 0xfc00 // unique local fc00::/7
                || (first & 0xffc0) == 0xfe80 // link-local fe80::/10
                || (first & 0xff00) == 0xff00 // multicast
        }
    }
}

fn is_internal_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // shared address space 100.64.0.0/10
}

/// Hosts and networks an operator allows mirrors to reach even though they are internal
/// (`MIRRORFARM_ALLOWED_HOSTS`: comma-separated host names, addresses and CIDRs).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostAllowlist {
    names: Vec<String>,
    networks: Vec<(IpAddr, u8)>,
}

/// Why an allowlist entry was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid allowed host entry {0:?}")]
pub struct AllowlistError(pub String);

impl HostAllowlist {
    /// Parses `host, 10.0.0.0/8, ::1, …`; empty entries are ignored.
    pub fn parse(text: &str) -> Result<Self, AllowlistError> {
        let mut list = Self::default();
        for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let bad = || AllowlistError(entry.to_owned());
            let entry_bare = entry.trim_start_matches('[').trim_end_matches(']');
            if let Some((addr, bits)) = entry_bare.split_once('/') {
                let ip: IpAddr = addr.parse().map_err(|_| bad())?;
                let bits: u8 = bits.parse().map_err(|_| bad())?;
                let max = if ip.is_ipv4() { 32 } else { 128 };
                if bits > max {
                    return Err(bad());
                }
                list.networks.push((ip, bits));
            } else if let Ok(ip) = entry_bare.parse::<IpAddr>() {
                list.networks.push((ip, if ip.is_ipv4() { 32 } else { 128 }));
            } else if entry.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')) {
                list.names.push(entry.to_ascii_lowercase());
            } else {
                return Err(bad());
            }
        }
        Ok(list)
    }

    fn permits(&self, host: &str, ip: Option<IpAddr>) -> bool {
        self.names.iter().any(|n| n == host)
            || ip.is_some_and(|ip| self.networks.iter().any(|&(net, bits)| in_network(ip, net, bits)))
    }
}

fn in_network(ip: IpAddr, net: IpAddr, bits: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(ip), IpAddr::V4(net)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(bits)).unwrap_or(0);
            u32::from(ip) & mask == u32::from(net) & mask
        }
        (IpAddr::V6(ip), IpAddr::V6(net)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(bits)).unwrap_or(0);
            u128::from(ip) & mask == u128::from(net) & mask
        }
        _ => false,
    }
}

/// A URL as it is kept at rest: the credential-free form for use, the masked form for display,
/// and the credentials sealed (AEAD) by the edge, never stored in the clear.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredUrl {
    /// Without credentials.
    pub plain: String,
    /// As shown to clients (`scheme://*****:*****@host/path`).
    pub masked: String,
    /// The sealed `user[:password]`, if the URL had credentials.
    pub sealed_userinfo: Option<String>,
}

/// Masks credentials in every `scheme://user:pass@` found in free text (git's stderr, error
/// messages), so that text can be stored, logged or returned.
pub fn scrub_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find("://") {
        let (head, tail) = rest.split_at(pos + 3);
        out.push_str(head);
        let end = tail
            .find(|c: char| c == '/' || c.is_whitespace() || matches!(c, '"' | '\'' | '<' | '>'))
            .unwrap_or(tail.len());
        let authority = &tail[..end];
        match authority.rfind('@') {
            Some(at) => {
                let masked = if authority[..at].contains(':') { "*****:*****" } else { MASK };
                out.push_str(masked);
                out.push_str(&authority[at..]);
            }
            None => out.push_str(authority),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    fn open() -> HostAllowlist {
        HostAllowlist::default()
    }

    #[test]
    fn masks_like_gitlab() {
        let url = GitUrl::parse("https://username:token@example.com/gitlab/example.git").expect("valid");
        assert_eq!(url.masked(), "https://*****:*****@example.com/gitlab/example.git");
        assert_eq!(url.without_credentials(), "https://example.com/gitlab/example.git");
        assert_eq!(url.userinfo().as_deref(), Some("username:token"));
        let user_only = GitUrl::parse("ssh://git@example.com:2222/x.git").expect("valid");
        assert_eq!(user_only.masked(), "ssh://*****@example.com:2222/x.git");
        let plain = GitUrl::parse("HTTPS://Example.COM/a").expect("valid");
        assert_eq!(plain.masked(), "https://example.com/a");
        assert!(!plain.has_credentials());
    }

    #[test]
    fn password_with_at_sign_and_debug_hides_it() {
        let url = GitUrl::parse("https://u:p@ss@example.com/r.git").expect("valid");
        assert_eq!(url.host(), "example.com");
        assert_eq!(url.userinfo().as_deref(), Some("u:p@ss"));
        assert!(!format!("{url:?}").contains("p@ss"));
    }

    #[test]
    fn recognises_sent_back_mask() {
        let url = GitUrl::parse("https://*****:*****@example.com/r.git").expect("valid");
        assert!(url.has_masked_credentials());
        assert!(!GitUrl::parse("https://a:*****@example.com/r").expect("valid").has_masked_credentials());
    }

    #[test]
    fn rejects_bad_shapes() {
        for (text, err) in [
            ("", UrlError::Malformed),
            ("example.com/repo.git", UrlError::Malformed),
            ("git@example.com:repo.git", UrlError::Malformed),
            ("file:///etc/passwd", UrlError::Scheme),
            ("ftp://example.com/x", UrlError::Scheme),
            ("https:///x", UrlError::Host),
            ("https://exa mple.com/x", UrlError::Malformed),
            ("https://example.com:99999/x", UrlError::Port),
            ("https://example.com:0/x", UrlError::Port),
            ("https://[::1/x", UrlError::Host),
        ] {
            assert_eq!(GitUrl::parse(text).err(), Some(err), "{text}");
        }
    }

    #[test]
    fn refuses_internal_addresses() {
        for text in [
            "http://127.0.0.1/x",
            "http://localhost/x",
            "http://api.localhost/x",
            "git://10.1.2.3/x",
            "https://172.16.0.1/x",
            "https://192.168.1.1/x",
            "https://169.254.169.254/latest/meta-data",
            "https://0.0.0.0/x",
            "https://100.64.0.1/x",
            "https://[::1]/x",
            "https://[fe80::1]/x",
            "https://[fd00::1]/x",
            "https://[::ffff:127.0.0.1]/x",
            "https://2130706433/x",
            "https://0x7f000001/x",
            "https://127.1/x",
        ] {
            let url = GitUrl::parse(text).expect(text);
            assert_eq!(url.check_outbound(&open()), Err(UrlError::LocalNetwork), "{text}");
        }
        for text in
            ["https://gitlab.com/x", "https://8.8.8.8/x", "https://[2001:db8::1]/x", "ssh://git@host1.example/x"]
        {
            assert_eq!(GitUrl::parse(text).expect(text).check_outbound(&open()), Ok(()), "{text}");
        }
    }

    #[test]
    fn allowlist_admits_hosts_and_networks() {
        let allow = HostAllowlist::parse(" localhost, 127.0.0.0/8 ,[::1],git.internal ").expect("valid");
        for text in [
            "git://127.0.0.1/x",
            "http://127.9.9.9:8080/x",
            "http://localhost/x",
            "https://[::1]/x",
            "https://git.internal/x",
        ] {
            assert_eq!(GitUrl::parse(text).expect(text).check_outbound(&allow), Ok(()), "{text}");
        }
        assert_eq!(
            GitUrl::parse("http://10.0.0.1/x").expect("valid").check_outbound(&allow),
            Err(UrlError::LocalNetwork)
        );
        assert!(HostAllowlist::parse("10.0.0.0/33").is_err());
        assert!(HostAllowlist::parse("bad host").is_err());
        assert_eq!(HostAllowlist::parse("").expect("empty is fine"), HostAllowlist::default());
    }

    #[test]
    fn scrubs_free_text() {
        assert_eq!(
            scrub_text("fatal: unable to access 'https://bob:s3cret@example.com/r.git/': 403"),
            "fatal: unable to access 'https://*****:*****@example.com/r.git/': 403"
        );
        assert_eq!(scrub_text("ssh://git@host/x and http://plain/y"), "ssh://*****@host/x and http://plain/y");
        assert_eq!(scrub_text("no urls here"), "no urls here");
    }
}
