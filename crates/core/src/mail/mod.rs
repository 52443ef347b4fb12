//! Notification e-mail (seed 002's mail server): how the instance reaches its SMTP server, and
//! what a farm node is handed to deliver.
//!
//! The edge never speaks SMTP: a mail is a `SEND_MAIL` job of the queue, leased by a farm node
//! (which sends it with `lettre`), retried with backoff while the server is unreachable, and its
//! outcome (the server's answer) stored with the job. Who is told what, and when, is decided in
//! [`notify`].

pub mod notify;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Why a mail-server value was refused; [`MailError::field`] names the field for the error's `context`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MailError {
    /// No host name, or one with characters a host name cannot have.
    #[error("hostname is required: the SMTP server's host name or address.")]
    Hostname,
    /// The port is not a number from 1 to 65535.
    #[error("port must be a number from 1 to 65535.")]
    Port,
    /// A protocol other than SMTP or SMTPS.
    #[error("protocol must be SMTP or SMTPS.")]
    Protocol,
    /// A flag that is not a boolean.
    #[error("{0} must be true or false.")]
    Flag(&'static str),
    /// STARTTLS asked of SMTPS (already TLS), or required without being used.
    #[error("requireStartTls needs useStartTls, and SMTPS (TLS from the start) takes neither.")]
    StartTls,
    /// A sender or recipient that is not an e-mail address.
    #[error("{0:?} is not an e-mail address.")]
    Address(String),
    /// A user name or password that is not text, or too long.
    #[error("{0} must be text of at most 255 characters.")]
    Text(&'static str),
}

impl MailError {
    /// The request field the error is about.
    pub fn field(&self) -> &'static str {
        match self {
            Self::Hostname => "hostname",
            Self::Port => "port",
            Self::Protocol => "protocol",
            Self::Flag(name) | Self::Text(name) => name,
            Self::StartTls => "requireStartTls",
            Self::Address(_) => "senderAddress",
        }
    }
}

/// How the connection to the SMTP server is secured from its start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(rename_all = "UPPERCASE")]
pub enum MailProtocol {
    /// Plain SMTP, upgraded with STARTTLS when `useStartTls`.
    Smtp,
    /// SMTP inside TLS from the first byte (usually port 465).
    Smtps,
}

crate::wire_names!(MailProtocol { Smtp = "SMTP", Smtps = "SMTPS" });

/// The mail server as stored: the password sealed like mirror credentials.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MailServer {
    /// Host name or address.
    pub hostname: String,
    /// TCP port.
    pub port: u16,
    /// SMTP or SMTPS.
    pub protocol: MailProtocol,
    /// Upgrade a plain connection with STARTTLS when the server offers it.
    pub use_start_tls: bool,
    /// Refuse to send unless the upgrade succeeds.
    pub require_start_tls: bool,
    /// Who to authenticate as, if anyone.
    pub username: Option<String>,
    /// The password, sealed; never returned, logged or put in an error.
    pub password_sealed: Option<String>,
}

/// What a `PUT …/mail-server` says about the password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswordChange {
    /// Not sent: keep the stored one (it is never read back, so a GET-edit-PUT keeps it).
    Keep,
    /// `null` or empty: no password.
    Clear,
    /// A new password, to be sealed.
    Set(String),
}

/// A `PUT …/mail-server` body, checked: the server (password not yet sealed) and the sender.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailServerUpdate {
    /// The server's settings (its `password_sealed` is the stored one, for the caller to replace).
    pub server: MailServer,
    /// What becomes of the password.
    pub password: PasswordChange,
    /// A sender address, when the body has one.
    pub sender: Option<String>,
}

/// Reads a field under its camelCase name or the hyphenated one Terraform's provider sends.
fn either<'a>(map: &'a serde_json::Map<String, Value>, camel: &str, hyphen: &str) -> Option<&'a Value> {
    map.get(camel).or_else(|| map.get(hyphen)).filter(|v| !v.is_null())
}

/// A boolean, also as the strings `"true"`/`"false"` some clients send.
fn flag(value: Option<&Value>, name: &'static str) -> Result<bool, MailError> {
    match value {
        None => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => Ok(true),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => Ok(false),
        Some(_) => Err(MailError::Flag(name)),
    }
}

/// Optional short text (user name, password).
fn text(value: Option<&Value>, name: &'static str) -> Result<Option<String>, MailError> {
    match value {
        None => Ok(None),
        Some(Value::String(s)) if s.len() <= 255 && !s.chars().any(char::is_control) => {
            Ok(Some(s.clone()).filter(|s| !s.is_empty()))
        }
        Some(_) => Err(MailError::Text(name)),
    }
}

impl MailServerUpdate {
    /// Checks a `PUT …/mail-server` body (camelCase or hyphenated keys, lenient booleans and
    /// numbers). `stored` is the server now configured, whose sealed password is kept unless the
    /// body says otherwise.
    pub fn from_json(map: &serde_json::Map<String, Value>, stored: Option<&MailServer>) -> Result<Self, MailError> {
        let hostname = match map.get("hostname") {
            Some(Value::String(h)) if is_host(h.trim()) => h.trim().to_owned(),
            _ => return Err(MailError::Hostname),
        };
        let protocol = match map.get("protocol") {
            None | Some(Value::Null) => MailProtocol::Smtp,
            Some(Value::String(p)) => MailProtocol::parse(p.trim()).ok_or(MailError::Protocol)?,
            Some(_) => return Err(MailError::Protocol),
        };
        let port = match map.get("port") {
            None | Some(Value::Null) => match protocol {
                MailProtocol::Smtp => 25,
                MailProtocol::Smtps => 465,
            },
            Some(Value::Number(n)) => n.as_u64().and_then(|n| u16::try_from(n).ok()).ok_or(MailError::Port)?,
            Some(Value::String(s)) => s.trim().parse::<u16>().map_err(|_| MailError::Port)?,
            Some(_) => return Err(MailError::Port),
        };
        if port == 0 {
            return Err(MailError::Port);
        }
        let use_start_tls = flag(either(map, "useStartTls", "use-start-tls"), "useStartTls")?;
        let require_start_tls = flag(either(map, "requireStartTls", "require-start-tls"), "requireStartTls")?;
        if (require_start_tls && !use_start_tls) || (protocol == MailProtocol::Smtps && use_start_tls) {
            return Err(MailError::StartTls);
        }
        let username = text(map.get("username").filter(|v| !v.is_null()), "username")?;
        let password = match map.get("password") {
            None => PasswordChange::Keep,
            Some(Value::Null) => PasswordChange::Clear,
            Some(v) => text(Some(v), "password")?.map_or(PasswordChange::Clear, PasswordChange::Set),
        };
        let sender = match either(map, "senderAddress", "sender-address") {
            None => None,
            Some(Value::String(s)) => Some(sender_address(s)?),
            Some(other) => return Err(MailError::Address(other.to_string())),
        };
        let server = MailServer {
            hostname,
            port,
            protocol,
            use_start_tls,
            require_start_tls,
            username,
            password_sealed: stored.and_then(|s| s.password_sealed.clone()),
        };
        Ok(Self { server, password, sender })
    }
}

/// Whether `text` can be a host name or address: letters, digits, `-`, `.`, `:` and brackets for
/// IPv6, 1 to 253 characters.
fn is_host(text: &str) -> bool {
    (1..=253).contains(&text.len())
        && text.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b':' | b'[' | b']'))
}

/// A sender (or recipient) address, trimmed: `local@domain`, one `@`, no spaces or angle brackets.
pub fn sender_address(text: &str) -> Result<String, MailError> {
    let address = text.trim();
    let bad = || MailError::Address(address.chars().take(100).collect());
    let (local, domain) = address.split_once('@').ok_or_else(bad)?;
    let fine = |part: &str| {
        !part.is_empty() && part.chars().all(|c| !c.is_whitespace() && !c.is_control() && !"<>()[],;:\"@".contains(c))
    };
    if address.len() > 254 || !fine(local) || !fine(domain) || !domain.contains('.') && domain != "localhost" {
        return Err(bad());
    }
    Ok(address.to_owned())
}

/// `GET …/admin/mail-server` (`RestMailConfiguration`): never the password. The keys are sent
/// both camelCase, as the REST documentation has them, and hyphenated, as Terraform's provider
/// reads them back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct MailServerDto {
    /// Host name or address.
    pub hostname: String,
    /// TCP port.
    pub port: u16,
    /// SMTP or SMTPS.
    pub protocol: MailProtocol,
    /// Upgrade with STARTTLS when offered.
    pub use_start_tls: bool,
    /// Refuse to send without STARTTLS.
    pub require_start_tls: bool,
    /// Who to authenticate as.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// The From address of the instance's mail.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sender_address: Option<String>,
    /// `useStartTls`, as Terraform's provider names it.
    #[serde(rename = "use-start-tls")]
    pub use_start_tls_hyphenated: bool,
    /// `requireStartTls`, likewise.
    #[serde(rename = "require-start-tls")]
    pub require_start_tls_hyphenated: bool,
    /// `senderAddress`, likewise.
    #[serde(rename = "sender-address", skip_serializing_if = "Option::is_none")]
    pub sender_address_hyphenated: Option<String>,
}

impl MailServerDto {
    /// The wire view of a stored server and sender.
    pub fn of(server: &MailServer, sender: Option<&str>) -> Self {
        Self {
            hostname: server.hostname.clone(),
            port: server.port,
            protocol: server.protocol,
            use_start_tls: server.use_start_tls,
            require_start_tls: server.require_start_tls,
            username: server.username.clone(),
            sender_address: sender.map(str::to_owned),
            use_start_tls_hyphenated: server.use_start_tls,
            require_start_tls_hyphenated: server.require_start_tls,
            sender_address_hyphenated: sender.map(str::to_owned),
        }
    }
}

/// The sender used when none is configured (Bitbucket's own default is `noreply@<host>`).
pub const DEFAULT_SENDER: &str = "mirrorfarm@localhost";

/// The mail server as a node gets it with a leased mail: the password unsealed.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct LeasedMailServer {
    /// Host name or address.
    pub hostname: String,
    /// TCP port.
    pub port: u16,
    /// SMTP or SMTPS.
    pub protocol: MailProtocol,
    /// Upgrade with STARTTLS when offered.
    pub use_start_tls: bool,
    /// Refuse to send without STARTTLS.
    pub require_start_tls: bool,
    /// Who to authenticate as.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// The password (only authenticated nodes ever receive it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
}

/// A mail a node is to deliver: the server, the envelope and both bodies.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct LeasedMail {
    /// Where to send it.
    pub server: LeasedMailServer,
    /// The From address.
    pub from: String,
    /// The recipients' addresses.
    pub to: Vec<String>,
    /// The subject line.
    pub subject: String,
    /// The plain-text body.
    pub text: String,
    /// The HTML body (the same content).
    pub html: String,
}

/// Debug shows neither the password nor the addresses.
impl std::fmt::Debug for LeasedMail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeasedMail")
            .field("host", &self.server.hostname)
            .field("port", &self.server.port)
            .field("recipients", &self.to.len())
            .field("subject", &self.subject)
            .finish_non_exhaustive()
    }
}

/// The answer of `POST /rest/mirrorfarm/latest/admin/mail-server/test`: what the SMTP server said.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct MailTestResult {
    /// Whether the server accepted the mail.
    pub sent: bool,
    /// To whom.
    pub recipient: String,
    /// The SMTP server's reply (or why it could not be reached), as the node reported it.
    pub response: String,
    /// The job that carried it.
    pub job_id: i64,
}

/// Escapes text for HTML bodies.
pub fn html_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    fn object(v: Value) -> serde_json::Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => panic!("not an object"),
        }
    }

    #[test]
    fn reads_both_key_styles_and_keeps_the_password_unless_told() {
        let stored = MailServer {
            hostname: "old".into(),
            port: 25,
            protocol: MailProtocol::Smtp,
            use_start_tls: false,
            require_start_tls: false,
            username: None,
            password_sealed: Some("sealed".into()),
        };
        let body = object(serde_json::json!({"hostname": "smtp.example.com", "port": "587", "protocol": "smtp",
            "use-start-tls": true, "require-start-tls": "true", "sender-address": " a@example.com "}));
        let update = MailServerUpdate::from_json(&body, Some(&stored)).expect("valid");
        assert_eq!(update.server.port, 587);
        assert!(update.server.use_start_tls && update.server.require_start_tls);
        assert_eq!(update.password, PasswordChange::Keep);
        assert_eq!(update.server.password_sealed.as_deref(), Some("sealed"));
        assert_eq!(update.sender.as_deref(), Some("a@example.com"));
        let cleared = MailServerUpdate::from_json(
            &object(serde_json::json!({"hostname": "h", "password": null, "protocol": "SMTPS"})),
            Some(&stored),
        )
        .expect("valid");
        assert_eq!((cleared.password, cleared.server.port), (PasswordChange::Clear, 465));
    }

    #[test]
    fn refuses_bad_values_naming_the_field() {
        let bad = |v: Value| MailServerUpdate::from_json(&object(v), None).expect_err("refused").field();
        assert_eq!(bad(serde_json::json!({"port": 25})), "hostname");
        assert_eq!(bad(serde_json::json!({"hostname": "h", "port": 70000})), "port");
        assert_eq!(bad(serde_json::json!({"hostname": "h", "port": 0})), "port");
        assert_eq!(bad(serde_json::json!({"hostname": "h", "protocol": "IMAP"})), "protocol");
        assert_eq!(bad(serde_json::json!({"hostname": "h", "requireStartTls": true})), "requireStartTls");
        assert_eq!(bad(serde_json::json!({"hostname": "h", "useStartTls": "yes"})), "useStartTls");
        assert_eq!(bad(serde_json::json!({"hostname": "h", "senderAddress": "not an address"})), "senderAddress");
        assert_eq!(bad(serde_json::json!({"hostname": "bad host"})), "hostname");
    }

    #[test]
    fn addresses() {
        assert!(sender_address("ops@example.com").is_ok());
        assert!(sender_address("root@localhost").is_ok());
        for bad in ["", "a", "a@", "@b.c", "a b@c.d", "<a@b.c>", "a@b@c.d", "a@nodot"] {
            assert!(sender_address(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_wire_view_has_no_password_and_both_key_styles() {
        let server = MailServer {
            hostname: "h".into(),
            port: 25,
            protocol: MailProtocol::Smtp,
            use_start_tls: true,
            require_start_tls: false,
            username: Some("u".into()),
            password_sealed: Some("sealed".into()),
        };
        let text = serde_json::to_string(&MailServerDto::of(&server, Some("a@b.c"))).expect("json");
        assert!(!text.contains("password") && !text.contains("sealed"), "{text}");
        for key in ["useStartTls", "use-start-tls", "senderAddress", "sender-address", "requireStartTls"] {
            assert!(text.contains(&format!("\"{key}\"")), "{key}: {text}");
        }
        assert_eq!(html_escape("<a href=\"x\">&'"), "&lt;a href=&quot;x&quot;&gt;&amp;&#39;");
    }
}
