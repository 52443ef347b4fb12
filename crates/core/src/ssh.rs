//! SSH: users' public keys (Bitbucket's `/rest/ssh/1.0/keys`, GitLab's `/api/v4/user/keys`), the
//! read-only git commands a farm node's SSH server runs, the keys of SSH-key push mirrors, and
//! their known hosts.
//!
//! Everything here reads and writes OpenSSH's text formats without doing any I/O: the SHA-256 a
//! fingerprint needs comes from the caller (the [`crate::store::Crypto`] port on the edge), and the
//! node's SSH server only asks this module whether a command may run.

use serde::Serialize;

use crate::identity::{base64_encode, decode_base64};
use crate::time::Timestamp;

/// Why an SSH key, a known-hosts line or a command was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SshError {
    /// The text is not `<type> <base64> [comment]`.
    #[error("An SSH public key is its type, its base64 body and an optional comment (as in id_ed25519.pub).")]
    Malformed,
    /// The key type is not one of ed25519, RSA or ECDSA.
    #[error("Key type {0:?} is not accepted: use ssh-ed25519, ssh-rsa or ecdsa-sha2-nistp256/384/521.")]
    UnsupportedType(String),
    /// The body does not decode, or names another type than the text does.
    #[error("The key's body is not a valid {0} key.")]
    BadBody(String),
    /// An RSA key shorter than [`MIN_RSA_BITS`].
    #[error("RSA keys must be at least {MIN_RSA_BITS} bits long.")]
    TooShort,
    /// A known-hosts line that does not read (1-based line number).
    #[error("ssh_known_hosts line {0} is not \"<host> <key type> <base64 key>\".")]
    KnownHostsLine(usize),
    /// More known hosts than [`MAX_KNOWN_HOSTS`].
    #[error("At most {MAX_KNOWN_HOSTS} ssh_known_hosts lines are kept.")]
    TooManyKnownHosts,
    /// A command other than `git-upload-pack` (a shell, another program).
    #[error("This farm node serves read-only git over SSH: only git-upload-pack (clone, fetch) is allowed, not {0:?}.")]
    CommandNotAllowed(String),
    /// A push (`git-receive-pack`).
    #[error("This is a read-only mirror: push to the upstream.")]
    ReadOnly,
    /// The repository path is not `<project>/<repo>.git`.
    #[error("The repository path must be '<project>/<repo>.git'.")]
    BadPath,
}

/// RSA keys shorter than this are refused.
pub const MIN_RSA_BITS: u32 = 2048;

/// Most known-hosts lines a mirror keeps.
pub const MAX_KNOWN_HOSTS: usize = 32;

/// Most characters of a key's text (an RSA 16384-bit key is about 2,800).
pub const MAX_KEY_TEXT: usize = 8192;

/// The key algorithms accepted, by their OpenSSH names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyAlgorithm {
    /// `ssh-ed25519`.
    Ed25519,
    /// `ssh-rsa`.
    Rsa,
    /// `ecdsa-sha2-nistp256`.
    EcdsaP256,
    /// `ecdsa-sha2-nistp384`.
    EcdsaP384,
    /// `ecdsa-sha2-nistp521`.
    EcdsaP521,
}

crate::wire_names!(KeyAlgorithm {
    Ed25519 = "ssh-ed25519",
    Rsa = "ssh-rsa",
    EcdsaP256 = "ecdsa-sha2-nistp256",
    EcdsaP384 = "ecdsa-sha2-nistp384",
    EcdsaP521 = "ecdsa-sha2-nistp521",
});

impl KeyAlgorithm {
    /// Bitbucket's `algorithmType`.
    pub fn bitbucket_name(self) -> &'static str {
        match self {
            Self::Ed25519 => "ED25519",
            Self::Rsa => "RSA",
            Self::EcdsaP256 | Self::EcdsaP384 | Self::EcdsaP521 => "ECDSA",
        }
    }
}

/// An OpenSSH public key, checked: its type, its body (the wire blob) and its comment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    /// The algorithm.
    pub algorithm: KeyAlgorithm,
    /// The key blob (what the base64 text encodes, and what the fingerprint hashes).
    pub blob: Vec<u8>,
    /// Its size in bits (RSA: the modulus; ed25519 256; ECDSA the curve's).
    pub bits: u32,
    /// The comment after the body, if any.
    pub comment: Option<String>,
}

/// Reads one length-prefixed string of the SSH wire format from `input`, advancing it.
fn wire_string<'a>(input: &mut &'a [u8]) -> Option<&'a [u8]> {
    let (len, rest) = input.split_first_chunk::<4>()?;
    let len = usize::try_from(u32::from_be_bytes(*len)).ok()?;
    if rest.len() < len {
        return None;
    }
    let (value, rest) = rest.split_at(len);
    *input = rest;
    Some(value)
}

/// Appends one length-prefixed string in the SSH wire format.
fn put_wire_string(out: &mut Vec<u8>, value: &[u8]) {
    out.extend_from_slice(&u32::try_from(value.len()).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(value);
}

impl PublicKey {
    /// Parses `<type> <base64> [comment]` (one line of an `authorized_keys` or `.pub` file,
    /// without options) and checks that the body is a key of that type.
    pub fn parse(text: &str) -> Result<Self, SshError> {
        let text = text.trim();
        if text.is_empty() || text.len() > MAX_KEY_TEXT || text.contains(['\n', '\r']) {
            return Err(SshError::Malformed);
        }
        let mut parts = text.splitn(3, [' ', '\t']);
        let (Some(kind), Some(body)) = (parts.next(), parts.next()) else { return Err(SshError::Malformed) };
        let comment = parts.next().map(str::trim).filter(|c| !c.is_empty()).map(str::to_owned);
        let algorithm = KeyAlgorithm::parse(kind)
            .filter(|a| a.as_str() == kind)
            .ok_or_else(|| SshError::UnsupportedType(kind.chars().take(64).collect()))?;
        let bad = || SshError::BadBody(algorithm.as_str().to_owned());
        let blob = decode_base64(body.trim()).ok_or_else(bad)?;
        let mut rest = blob.as_slice();
        if wire_string(&mut rest) != Some(algorithm.as_str().as_bytes()) {
            return Err(bad());
        }
        let bits = match algorithm {
            KeyAlgorithm::Ed25519 => {
                wire_string(&mut rest).filter(|k| k.len() == 32).ok_or_else(bad)?;
                256
            }
            KeyAlgorithm::Rsa => {
                let exponent = wire_string(&mut rest).ok_or_else(bad)?;
                let modulus = wire_string(&mut rest).ok_or_else(bad)?;
                if exponent.is_empty() || exponent.iter().all(|b| *b == 0) {
                    return Err(bad());
                }
                let significant: &[u8] = &modulus[modulus.iter().take_while(|b| **b == 0).count()..];
                let first = significant.first().ok_or_else(bad)?;
                let bits = u32::try_from(significant.len() * 8).map_err(|_| bad())? - first.leading_zeros();
                if bits < MIN_RSA_BITS {
                    return Err(SshError::TooShort);
                }
                bits
            }
            KeyAlgorithm::EcdsaP256 | KeyAlgorithm::EcdsaP384 | KeyAlgorithm::EcdsaP521 => {
                let (curve, point_len, bits) = match algorithm {
                    KeyAlgorithm::EcdsaP256 => ("nistp256", 65, 256),
                    KeyAlgorithm::EcdsaP384 => ("nistp384", 97, 384),
                    _ => ("nistp521", 133, 521),
                };
                if wire_string(&mut rest) != Some(curve.as_bytes()) {
                    return Err(bad());
                }
                let point = wire_string(&mut rest).ok_or_else(bad)?;
                if point.len() != point_len || point.first() != Some(&4) {
                    return Err(bad());
                }
                bits
            }
        };
        if !rest.is_empty() {
            return Err(bad());
        }
        Ok(Self { algorithm, blob, bits, comment })
    }

    /// The key as OpenSSH writes it: `<type> <base64>`, and the comment if it has one.
    pub fn to_openssh(&self) -> String {
        let mut text = format!("{} {}", self.algorithm.as_str(), base64_encode(&self.blob));
        if let Some(comment) = &self.comment {
            text.push(' ');
            text.push_str(comment);
        }
        text
    }

    /// `<type> <base64>` without the comment: what identifies the key.
    pub fn without_comment(&self) -> String {
        format!("{} {}", self.algorithm.as_str(), base64_encode(&self.blob))
    }

    /// The Ed25519 key with this 32-byte public half.
    pub fn ed25519(public: &[u8; 32], comment: Option<&str>) -> Self {
        let mut blob = Vec::with_capacity(51);
        put_wire_string(&mut blob, KeyAlgorithm::Ed25519.as_str().as_bytes());
        put_wire_string(&mut blob, public);
        Self { algorithm: KeyAlgorithm::Ed25519, blob, bits: 256, comment: comment.map(str::to_owned) }
    }
}

/// The SHA-256 fingerprint as `ssh-keygen -l` prints it, `SHA256:<base64 without padding>`,
/// of a key blob whose SHA-256 is `digest`.
pub fn fingerprint_sha256(digest: &[u8]) -> String {
    format!("SHA256:{}", base64_encode(digest).trim_end_matches('='))
}

/// One line of a mirror's known hosts: the hosts it names and their key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownHost {
    /// The host patterns (`host`, `[host]:port`, hashed `|1|…`), comma-separated as given.
    pub hosts: String,
    /// The host's key.
    pub key: PublicKey,
}

impl KnownHost {
    /// The line as `known_hosts` holds it (no comment).
    pub fn to_line(&self) -> String {
        format!("{} {}", self.hosts, self.key.without_comment())
    }
}

/// Reads `known_hosts` text: one `<hosts> <type> <base64> [comment]` per line; blank lines and
/// `#` comments are skipped; markers (`@cert-authority`, `@revoked`) are refused.
pub fn parse_known_hosts(text: &str) -> Result<Vec<KnownHost>, SshError> {
    let mut hosts = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = || SshError::KnownHostsLine(i + 1);
        let (patterns, key) = line.split_once([' ', '\t']).ok_or_else(bad)?;
        let valid_patterns = !patterns.starts_with('@')
            && patterns.split(',').all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_graphic()));
        if !valid_patterns {
            return Err(bad());
        }
        let key = PublicKey::parse(key).map_err(|_| bad())?;
        hosts.push(KnownHost { hosts: patterns.to_owned(), key });
        if hosts.len() > MAX_KNOWN_HOSTS {
            return Err(SshError::TooManyKnownHosts);
        }
    }
    Ok(hosts)
}

/// The `known_hosts` name of `host` at `port` (`host`, or `[host]:port` off port 22), as
/// OpenSSH looks it up.
pub fn known_hosts_name(host: &str, port: Option<u16>) -> String {
    match port {
        Some(p) if p != 22 => format!("[{host}]:{p}"),
        _ => host.to_owned(),
    }
}

/// The repository a command asks for, if it is `git-upload-pack '<project>/<repo>.git'` (or
/// `git upload-pack`, with or without a leading `/` or `/scm/`, quotes, and `.git`): its
/// project key and slug. Pushes, shells and every other program are refused.
pub fn upload_pack_target(command: &str) -> Result<(String, String), SshError> {
    let command = command.trim();
    let (program, rest) = command.split_once([' ', '\t']).unwrap_or((command, ""));
    let (program, rest) = match (program, rest.trim_start().split_once([' ', '\t'])) {
        ("git", Some((sub, rest))) => (format!("git-{sub}"), rest),
        ("git", None) => (format!("git-{}", rest.trim()), ""),
        _ => (program.to_owned(), rest),
    };
    match program.as_str() {
        "git-upload-pack" => {}
        "git-receive-pack" | "git-upload-archive" => return Err(SshError::ReadOnly),
        other => return Err(SshError::CommandNotAllowed(other.chars().take(64).collect())),
    }
    let arg = rest.trim();
    let arg = match (arg.strip_prefix('\''), arg.strip_prefix('"')) {
        (Some(a), _) => a.strip_suffix('\'').ok_or(SshError::BadPath)?,
        (_, Some(a)) => a.strip_suffix('"').ok_or(SshError::BadPath)?,
        _ => arg,
    };
    let path = arg.trim_start_matches('/');
    let path = path.strip_prefix("scm/").unwrap_or(path).trim_end_matches('/');
    let path = path.strip_suffix(".git").unwrap_or(path);
    let (key, slug) = path.split_once('/').ok_or(SshError::BadPath)?;
    let key_ok = !key.is_empty() && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    let slug_ok = slug.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && slug.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.~".contains(&b));
    if !key_ok || !slug_ok {
        return Err(SshError::BadPath);
    }
    Ok((key.to_owned(), slug.to_owned()))
}

/// What a failed SSH connection's output means for a mirror, if it was its target's host key:
/// a `last_error` naming the fingerprint the target offered when OpenSSH printed it. Other
/// failures are `None` (their own message stands).
pub fn host_key_failure(ssh_output: &str) -> Option<String> {
    let offered = ssh_output
        .split_whitespace()
        .find(|w| w.starts_with("SHA256:"))
        .map(|w| w.trim_end_matches(['.', ',']).to_owned());
    if ssh_output.contains("REMOTE HOST IDENTIFICATION HAS CHANGED") {
        return Some(format!(
            "The target's SSH host key has changed: it offered {}, which is not among this mirror's known hosts. \
             Nothing was pushed. If the change is expected, set ssh_known_hosts to the new key (or send it empty \
             to learn the key on the next push).",
            offered.as_deref().unwrap_or("a key")
        ));
    }
    if ssh_output.contains("Host key verification failed") {
        return Some(format!(
            "The target's SSH host key{} is not among this mirror's known hosts (ssh_known_hosts). Nothing was pushed.",
            offered.map(|f| format!(" {f}")).unwrap_or_default()
        ));
    }
    None
}

/// A user's SSH key as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshKey {
    /// Id.
    pub id: i64,
    /// Whose it is.
    pub user_id: i64,
    /// Its label (Bitbucket) or title (GitLab).
    pub label: String,
    /// The key's text, `<type> <base64> [comment]`.
    pub text: String,
    /// The algorithm.
    pub algorithm: KeyAlgorithm,
    /// Its size in bits.
    pub bits: u32,
    /// `SHA256:…`, unique: one key belongs to one user.
    pub fingerprint: String,
    /// When it was added.
    pub created_at: Timestamp,
    /// When it stops working, if ever.
    pub expires_at: Option<Timestamp>,
}

/// Bitbucket's `RestSshKey`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct SshKeyDto {
    /// Id.
    pub id: i64,
    /// The public key's text.
    pub text: String,
    /// Its label.
    pub label: String,
    /// `ED25519`, `RSA` or `ECDSA`.
    pub algorithm_type: String,
    /// Its size in bits.
    pub bit_length: u32,
    /// `SHA256:…`, as `ssh-keygen -l` prints it.
    pub fingerprint: String,
    /// When it was added (epoch ms).
    pub created_date: i64,
    /// When it expires (epoch ms), if it does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expiry_date: Option<i64>,
}

impl From<&SshKey> for SshKeyDto {
    fn from(k: &SshKey) -> Self {
        Self {
            id: k.id,
            text: k.text.clone(),
            label: k.label.clone(),
            algorithm_type: k.algorithm.bitbucket_name().to_owned(),
            bit_length: k.bits,
            fingerprint: k.fingerprint.clone(),
            created_date: k.created_at.millis(),
            expiry_date: k.expires_at.map(Timestamp::millis),
        }
    }
}

/// GitLab's SSH key entity (`/api/v4/user/keys`).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct GitLabKeyDto {
    /// Id.
    pub id: i64,
    /// Its title.
    pub title: String,
    /// The public key's text.
    pub key: String,
    /// When it was added.
    pub created_at: Timestamp,
    /// When it expires, if it does.
    pub expires_at: Option<Timestamp>,
    /// What it may do: always `auth` (it authenticates git over SSH).
    pub usage_type: &'static str,
    /// `SHA256:…`.
    pub fingerprint_sha256: String,
}

impl From<&SshKey> for GitLabKeyDto {
    fn from(k: &SshKey) -> Self {
        Self {
            id: k.id,
            title: k.label.clone(),
            key: k.text.clone(),
            created_at: k.created_at,
            expires_at: k.expires_at,
            usage_type: "auth",
            fingerprint_sha256: k.fingerprint.clone(),
        }
    }
}

/// A mirror's host key as GitLab lists it in `host_keys`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct HostKeyDto {
    /// `SHA256:…`.
    pub fingerprint_sha256: String,
}

/// `GET …/remote_mirrors/:mirror_id/public_key`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct MirrorPublicKey {
    /// `ssh-ed25519 AAAA…`: add it to the target's authorized keys or deploy keys.
    pub public_key: String,
}

/// `POST /rest/ssh/1.0/keys`: Bitbucket's new key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema), schemars(rename_all = "camelCase"))]
pub struct SshKeyParams {
    /// The public key, `<type> <base64> [comment]` (required).
    pub text: Option<String>,
    /// A label (default: the key's comment).
    pub label: Option<String>,
    /// Days until it expires (1–3650), if it should.
    pub expiry_days: Option<u64>,
}

impl crate::api::FromFields for SshKeyParams {
    fn from_fields(fields: &crate::api::Fields) -> Result<Self, crate::api::FieldError> {
        Ok(Self {
            text: fields.string("text")?,
            label: fields.string("label")?,
            expiry_days: fields.unsigned("expiryDays")?,
        })
    }
}

/// `POST /api/v4/user/keys`: GitLab's new key (JSON or form).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct GitLabKeyParams {
    /// A title (required).
    pub title: Option<String>,
    /// The public key, `<type> <base64> [comment]` (required).
    pub key: Option<String>,
    /// When it expires (ISO 8601 date or time), if it should.
    pub expires_at: Option<String>,
}

impl crate::api::FromFields for GitLabKeyParams {
    fn from_fields(fields: &crate::api::Fields) -> Result<Self, crate::api::FieldError> {
        Ok(Self {
            title: fields.string("title")?,
            key: fields.string("key")?,
            expires_at: fields.string("expires_at")?,
        })
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    // Made by `ssh-keygen -t ed25519 -C me@host` (public halves only).
    const ED25519: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKqP3Cr632C2dNhhgKVcon4ldUSAeKiku2yP9O9/bDtY me@host";

    #[test]
    fn reads_an_ed25519_key_and_writes_it_back() {
        let key = PublicKey::parse(ED25519).expect("parses");
        assert_eq!((key.algorithm, key.bits, key.comment.as_deref()), (KeyAlgorithm::Ed25519, 256, Some("me@host")));
        assert_eq!(key.to_openssh(), ED25519);
        assert_eq!(key.blob.len(), 51);
        let mut public = [0u8; 32];
        public.copy_from_slice(&key.blob[19..]);
        assert_eq!(PublicKey::ed25519(&public, Some("me@host")), key);
    }

    #[test]
    fn refuses_keys_whose_body_is_another_type_or_broken() {
        let body = ED25519.split(' ').nth(1).expect("body");
        assert_eq!(PublicKey::parse(&format!("ssh-rsa {body}")), Err(SshError::BadBody("ssh-rsa".into())));
        assert_eq!(PublicKey::parse("ssh-dss AAAA"), Err(SshError::UnsupportedType("ssh-dss".into())));
        assert_eq!(PublicKey::parse("ssh-ed25519"), Err(SshError::Malformed));
        assert_eq!(PublicKey::parse("ssh-ed25519 !!!"), Err(SshError::BadBody("ssh-ed25519".into())));
        assert_eq!(
            PublicKey::parse("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKqP3Cr632C2dNhhgKVcon4ldUSAeKiku2yP9O9"),
            Err(SshError::BadBody("ssh-ed25519".into()))
        );
        assert!(PublicKey::parse(&format!("{ED25519}\nssh-ed25519 x")).is_err());
    }

    #[test]
    fn reads_rsa_and_ecdsa_sizes() {
        let mut rsa = Vec::new();
        put_wire_string(&mut rsa, b"ssh-rsa");
        put_wire_string(&mut rsa, &[1, 0, 1]);
        let mut modulus = vec![0u8, 0xc0];
        modulus.extend([0x11; 255]);
        put_wire_string(&mut rsa, &modulus);
        let key = PublicKey::parse(&format!("ssh-rsa {}", base64_encode(&rsa))).expect("rsa");
        assert_eq!((key.algorithm.bitbucket_name(), key.bits), ("RSA", 2048));
        let mut short = Vec::new();
        put_wire_string(&mut short, b"ssh-rsa");
        put_wire_string(&mut short, &[3]);
        put_wire_string(&mut short, &[0x80; 128]);
        assert_eq!(PublicKey::parse(&format!("ssh-rsa {}", base64_encode(&short))), Err(SshError::TooShort));
        let mut ec = Vec::new();
        put_wire_string(&mut ec, b"ecdsa-sha2-nistp256");
        put_wire_string(&mut ec, b"nistp256");
        let mut point = vec![4u8];
        point.extend([9u8; 64]);
        put_wire_string(&mut ec, &point);
        let key = PublicKey::parse(&format!("ecdsa-sha2-nistp256 {} x", base64_encode(&ec))).expect("ecdsa");
        assert_eq!((key.algorithm.bitbucket_name(), key.bits), ("ECDSA", 256));
    }

    #[test]
    fn fingerprints_as_ssh_keygen_prints_them() {
        // SHA-256 of the empty string, as `ssh-keygen -l` would encode such a digest.
        let digest =
            crate::hex::decode("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855").expect("hex");
        assert_eq!(fingerprint_sha256(&digest), "SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU");
    }

    #[test]
    fn reads_known_hosts() {
        let body = ED25519.split(' ').nth(1).expect("body");
        let text = format!("# comment\n\n[127.0.0.1]:2222,example.com ssh-ed25519 {body} host\n");
        let hosts = parse_known_hosts(&text).expect("reads");
        assert_eq!(hosts.len(), 1);
        assert_eq!(hosts[0].to_line(), format!("[127.0.0.1]:2222,example.com ssh-ed25519 {body}"));
        assert_eq!(parse_known_hosts(&format!("@revoked * ssh-ed25519 {body}")), Err(SshError::KnownHostsLine(1)));
        assert_eq!(parse_known_hosts("host ssh-ed25519"), Err(SshError::KnownHostsLine(1)));
        assert_eq!(known_hosts_name("h", Some(2222)), "[h]:2222");
        assert_eq!(known_hosts_name("h", Some(22)), "h");
    }

    #[test]
    fn a_changed_host_key_is_named_by_its_fingerprint() {
        let printed = "@@@@ WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED! @@@@\nThe fingerprint for the ED25519 key sent \
                       by the remote host is\nSHA256:abcDEF123.\nHost key verification failed.";
        let message = host_key_failure(printed).expect("a host key failure");
        assert!(message.contains("SHA256:abcDEF123,"), "{message}");
        assert!(host_key_failure("No ED25519 host key is known for h.\nHost key verification failed.").is_some());
        assert_eq!(host_key_failure("Permission denied (publickey)."), None);
    }

    #[test]
    fn only_upload_pack_of_one_repository_runs() {
        let ok = |c: &str| upload_pack_target(c).map(|(k, s)| format!("{k}/{s}"));
        assert_eq!(ok("git-upload-pack 'prj/repo.git'"), Ok("prj/repo".into()));
        assert_eq!(ok("git-upload-pack '/PRJ/my-repo.v2.git'"), Ok("PRJ/my-repo.v2".into()));
        assert_eq!(ok("git upload-pack '/scm/prj/repo.git/'"), Ok("prj/repo".into()));
        assert_eq!(ok("git-upload-pack \"prj/repo\""), Ok("prj/repo".into()));
        assert_eq!(ok("git-receive-pack 'prj/repo.git'"), Err(SshError::ReadOnly));
        assert_eq!(ok("git receive-pack 'prj/repo.git'"), Err(SshError::ReadOnly));
        assert_eq!(ok("sh -c id"), Err(SshError::CommandNotAllowed("sh".into())));
        for bad in [
            "git-upload-pack '../x.git'",
            "git-upload-pack 'a/b/c.git'",
            "git-upload-pack 'prj/.x.git'",
            "git-upload-pack 'prj/r.git",
        ] {
            assert_eq!(ok(bad), Err(SshError::BadPath), "{bad}");
        }
    }
}
