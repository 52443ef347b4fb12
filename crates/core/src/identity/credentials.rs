//! Credentials as sent in HTTP headers, and the token checks made on them.

/// Prefix of the tokens mirrorfarm issues, so they are recognisable in a leak scan.
pub const TOKEN_PREFIX: &str = "mfp_";

/// Length of the non-secret lookup key taken from the start of a token.
const LOOKUP_LEN: usize = 12;

/// Credentials presented by a caller.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    /// A token alone (`PRIVATE-TOKEN` or `Authorization: Bearer`).
    Token(String),
    /// `Authorization: Basic` with a user name and one of that user's tokens.
    UserToken {
        /// The user name.
        user: String,
        /// The token.
        token: String,
    },
}

/// Debug never prints the secret.
impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Token(_) => f.write_str("Credentials::Token(..)"),
            Self::UserToken { user, .. } => write!(f, "Credentials::UserToken({user}, ..)"),
        }
    }
}

/// Why the credential headers could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialsError {
    /// `Authorization` uses a scheme other than Basic or Bearer, or is empty.
    #[error("unsupported authorization scheme")]
    Scheme,
    /// The Basic credentials are not base64 of `user:token`.
    #[error("malformed basic credentials")]
    Basic,
}

impl Credentials {
    /// Reads the credentials from the `PRIVATE-TOKEN` and `Authorization` header values.
    /// `Ok(None)` means the caller is anonymous.
    pub fn from_headers(
        private_token: Option<&str>,
        authorization: Option<&str>,
    ) -> Result<Option<Self>, CredentialsError> {
        if let Some(token) = private_token.map(str::trim).filter(|t| !t.is_empty()) {
            return Ok(Some(Self::Token(token.to_owned())));
        }
        let Some(auth) = authorization.map(str::trim).filter(|a| !a.is_empty()) else {
            return Ok(None);
        };
        let (scheme, value) = auth.split_once(' ').ok_or(CredentialsError::Scheme)?;
        let value = value.trim();
        if scheme.eq_ignore_ascii_case("bearer") && !value.is_empty() {
            Ok(Some(Self::Token(value.to_owned())))
        } else if scheme.eq_ignore_ascii_case("basic") {
            let decoded = decode_base64(value).ok_or(CredentialsError::Basic)?;
            let text = String::from_utf8(decoded).map_err(|_| CredentialsError::Basic)?;
            let (user, token) = text.split_once(':').ok_or(CredentialsError::Basic)?;
            if user.is_empty() || token.is_empty() {
                return Err(CredentialsError::Basic);
            }
            Ok(Some(Self::UserToken { user: user.to_owned(), token: token.to_owned() }))
        } else {
            Err(CredentialsError::Scheme)
        }
    }

    /// The token presented.
    pub fn token(&self) -> &str {
        match self {
            Self::Token(t) | Self::UserToken { token: t, .. } => t,
        }
    }
}

/// The non-secret key a token is looked up by (its first characters); the full token is then
/// checked by comparing hashes in constant time.
pub fn token_lookup_key(token: &str) -> String {
    token.chars().take(LOOKUP_LEN).collect()
}

/// Compares two byte strings in time that depends only on their lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Standard base64 with padding (PEM bodies).
pub(crate) fn base64_encode(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Standard base64 (with or without padding); `None` if malformed.
pub(crate) fn decode_base64(text: &str) -> Option<Vec<u8>> {
    fn value(c: u8) -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    }
    let bytes = text.trim_end_matches('=').as_bytes();
    if bytes.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut acc = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            acc |= value(c)? << (18 - 6 * i);
        }
        let produced = chunk.len() - 1;
        out.extend_from_slice(&acc.to_be_bytes()[1..=produced]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    #[test]
    fn reads_each_header_form() {
        assert_eq!(Credentials::from_headers(Some(" abc "), None), Ok(Some(Credentials::Token("abc".into()))));
        assert_eq!(Credentials::from_headers(None, Some("Bearer xyz")), Ok(Some(Credentials::Token("xyz".into()))));
        // "alice:mfp_secret"
        assert_eq!(
            Credentials::from_headers(None, Some("Basic YWxpY2U6bWZwX3NlY3JldA==")),
            Ok(Some(Credentials::UserToken { user: "alice".into(), token: "mfp_secret".into() }))
        );
        assert_eq!(Credentials::from_headers(None, None), Ok(None));
        assert_eq!(Credentials::from_headers(Some(""), Some("")), Ok(None));
    }

    #[test]
    fn rejects_malformed_authorization() {
        assert_eq!(Credentials::from_headers(None, Some("Digest abc")), Err(CredentialsError::Scheme));
        assert_eq!(Credentials::from_headers(None, Some("Bearer")), Err(CredentialsError::Scheme));
        assert_eq!(Credentials::from_headers(None, Some("Basic !!!")), Err(CredentialsError::Basic));
        // base64 of "nocolon"
        assert_eq!(Credentials::from_headers(None, Some("Basic bm9jb2xvbg==")), Err(CredentialsError::Basic));
    }

    #[test]
    fn debug_hides_token() {
        let c = Credentials::UserToken { user: "alice".into(), token: "mfp_topsecret".into() };
        assert!(!format!("{c:?}").contains("topsecret"));
    }

    #[test]
    fn base64_round_trips_all_lengths() {
        for len in 0..8 {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 37 + 5) as u8).collect();
            assert_eq!(decode_base64(&base64_encode(&bytes)), Some(bytes));
        }
        assert_eq!(base64_encode(b"foob"), "Zm9vYg==");
        assert_eq!(decode_base64("").as_deref(), Some(&b""[..]));
        assert_eq!(decode_base64("Zg==").as_deref(), Some(&b"f"[..]));
        assert_eq!(decode_base64("Zm8").as_deref(), Some(&b"fo"[..]));
        assert_eq!(decode_base64("Zm9v").as_deref(), Some(&b"foo"[..]));
        assert_eq!(decode_base64("Zm9vYg==").as_deref(), Some(&b"foob"[..]));
        assert_eq!(decode_base64("Z"), None);
    }

    #[test]
    fn constant_time_eq_compares() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert_eq!(token_lookup_key("mfp_0123456789abcdef"), "mfp_01234567");
    }
}
