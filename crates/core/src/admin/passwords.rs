//! Passwords: stored as PBKDF2-SHA256 with a per-user salt, checked in constant time.
//!
//! The derivation itself is the platform's ([`Crypto::pbkdf2_sha256`], WebCrypto on the edge);
//! the stored form, the rules a new password must meet and the comparison are here.

use crate::hex;
use crate::identity::constant_time_eq;
use crate::store::{Crypto, CryptoError};

/// PBKDF2 iterations for new passwords: the most the Workers runtime allows.
pub const PBKDF2_ITERATIONS: u32 = 100_000;

/// Salt length, bytes.
const SALT_BYTES: usize = 16;

/// Derived key length, bytes.
pub const KEY_BYTES: usize = 32;

/// Why a new password was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordError {
    /// Shorter than 8 or longer than 1024 characters.
    #[error("Passwords must be 8 to 1024 characters long.")]
    Length,
    /// The confirmation differs.
    #[error("The password and its confirmation do not match.")]
    Confirmation,
}

/// Checks a new password's length.
pub fn validate(password: &str) -> Result<&str, PasswordError> {
    if (8..=1024).contains(&password.chars().count()) { Ok(password) } else { Err(PasswordError::Length) }
}

/// Derives the stored form `pbkdf2-sha256$<iterations>$<salt hex>$<key hex>` of a new password.
pub async fn hash<C: Crypto>(crypto: &C, password: &str) -> Result<String, CryptoError> {
    let salt = crypto.random_bytes(SALT_BYTES)?;
    let key = crypto.pbkdf2_sha256(password.as_bytes(), &salt, PBKDF2_ITERATIONS).await?;
    Ok(format!("pbkdf2-sha256${PBKDF2_ITERATIONS}${}${}", hex::encode(&salt), hex::encode(&key)))
}

/// Whether `password` is the one `stored` was derived from. A stored form that does not read
/// matches nothing.
pub async fn verify<C: Crypto>(crypto: &C, password: &str, stored: &str) -> Result<bool, CryptoError> {
    let mut parts = stored.split('$');
    let (Some("pbkdf2-sha256"), Some(iterations), Some(salt), Some(key), None) =
        (parts.next(), parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Ok(false);
    };
    let (Ok(iterations), Some(salt), Some(key)) = (iterations.parse::<u32>(), hex::decode(salt), hex::decode(key))
    else {
        return Ok(false);
    };
    let derived = crypto.pbkdf2_sha256(password.as_bytes(), &salt, iterations).await?;
    Ok(constant_time_eq(&derived, &key))
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::test_support::{FakeCrypto, block_on};

    #[test]
    fn a_hash_verifies_its_password_only() {
        let crypto = FakeCrypto::default();
        let stored = block_on(hash(&crypto, "correct horse")).expect("hash");
        assert!(stored.starts_with("pbkdf2-sha256$100000$"));
        assert!(!stored.contains("correct horse"));
        assert!(block_on(verify(&crypto, "correct horse", &stored)).expect("verify"));
        assert!(!block_on(verify(&crypto, "wrong horse", &stored)).expect("verify"));
        assert!(!block_on(verify(&crypto, "correct horse", "md5$abc")).expect("verify"));
        // A new hash of the same password has a new salt.
        assert_ne!(block_on(hash(&crypto, "correct horse")).expect("hash"), stored);
    }

    #[test]
    fn new_passwords_are_checked() {
        assert_eq!(validate("short"), Err(PasswordError::Length));
        assert_eq!(validate("long enough"), Ok("long enough"));
    }
}
