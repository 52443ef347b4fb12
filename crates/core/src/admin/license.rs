//! Our license format: `<payload>.<signature>`, both base64url without padding. The payload is
//! JSON (`{licensee, maximumNumberOfUsers, expiryDate, creationDate, serverId}`, dates epoch ms,
//! `maximumNumberOfUsers` -1 for unlimited); the signature is Ed25519 over the payload's
//! base64url text, checked (through the platform's WebCrypto) against the public key the
//! deployment is configured with (`MIRRORFARM_LICENSE_PUBLIC_KEY`, 64 hex digits).

use serde::{Deserialize, Serialize};

use crate::store::{Crypto, CryptoError};
use crate::time::Timestamp;

/// Why a license was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LicenseError {
    /// Not `<payload>.<signature>` of base64url, or the payload is not the JSON expected.
    #[error("The license could not be decoded.")]
    Undecodable,
    /// The signature is not the license key's.
    #[error("The license is not signed by this server's license key.")]
    BadSignature,
    /// The deployment has no license public key, so no license can be checked.
    #[error("This server has no license key configured (MIRRORFARM_LICENSE_PUBLIC_KEY).")]
    NoKey,
    /// The license has already expired.
    #[error("The license expired on {0} (epoch ms).")]
    Expired(i64),
    /// The platform's crypto failed.
    #[error(transparent)]
    Crypto(#[from] CryptoError),
}

/// What a license grants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LicenseTerms {
    /// Who holds it.
    pub licensee: String,
    /// Most users; -1: unlimited.
    pub maximum_number_of_users: i64,
    /// When it ends, epoch ms.
    pub expiry_date: i64,
    /// When it was issued, epoch ms.
    pub creation_date: i64,
    /// The server it was issued for.
    #[serde(default)]
    pub server_id: String,
}

impl LicenseTerms {
    /// Whether `users` users are within the license (after `adding` more).
    pub fn allows_users(&self, users: i64) -> bool {
        self.maximum_number_of_users < 0 || users <= self.maximum_number_of_users
    }
}

/// Decodes a license and checks its signature against `public_key` (32 raw bytes) and its expiry.
pub async fn check<C: Crypto>(
    crypto: &C,
    public_key: Option<&[u8]>,
    text: &str,
    now: Timestamp,
) -> Result<LicenseTerms, LicenseError> {
    let terms = decode(text)?;
    let key = public_key.ok_or(LicenseError::NoKey)?;
    let (payload, signature) = text.trim().split_once('.').ok_or(LicenseError::Undecodable)?;
    let signature = base64url(signature).ok_or(LicenseError::Undecodable)?;
    if !crypto.ed25519_verify(key, payload.as_bytes(), &signature).await? {
        return Err(LicenseError::BadSignature);
    }
    if terms.expiry_date <= now.millis() {
        return Err(LicenseError::Expired(terms.expiry_date));
    }
    Ok(terms)
}

/// The terms of a license, without checking its signature (for one already installed).
pub fn decode(text: &str) -> Result<LicenseTerms, LicenseError> {
    let (payload, _) = text.trim().split_once('.').ok_or(LicenseError::Undecodable)?;
    let json = base64url(payload).ok_or(LicenseError::Undecodable)?;
    serde_json::from_slice(&json).map_err(|_| LicenseError::Undecodable)
}

/// Decodes base64url (no padding, or padding ignored).
pub fn base64url(text: &str) -> Option<Vec<u8>> {
    if text.contains(['+', '/']) {
        return None;
    }
    let standard: String = text
        .trim_end_matches('=')
        .chars()
        .map(|c| {
            if c == '-' {
                '+'
            } else if c == '_' {
                '/'
            } else {
                c
            }
        })
        .collect();
    crate::identity::decode_base64(&standard)
}

/// Bitbucket's license shape (`RestBitbucketLicense`).
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct LicenseDto {
    creation_date: i64,
    purchase_date: i64,
    expiry_date: i64,
    maintenance_expiry_date: i64,
    grace_period_end_date: i64,
    number_of_days_before_expiry: i64,
    number_of_days_before_maintenance_expiry: i64,
    number_of_days_before_grace_period_expiry: i64,
    maximum_number_of_users: i64,
    unlimited_number_of_users: bool,
    server_id: String,
    licensee: String,
    /// The license as it was posted.
    license: String,
    status: LicenseStatus,
}

/// How the instance stands against its license.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct LicenseStatus {
    server_id: String,
    current_number_of_users: i64,
}

const DAY_MS: i64 = 86_400_000;

impl LicenseDto {
    /// The installed license's answer, with the instance's user count.
    pub fn new(terms: &LicenseTerms, text: &str, users: i64, now: Timestamp) -> Self {
        let days = ((terms.expiry_date - now.millis()) / DAY_MS).max(0);
        Self {
            creation_date: terms.creation_date,
            purchase_date: terms.creation_date,
            expiry_date: terms.expiry_date,
            maintenance_expiry_date: terms.expiry_date,
            grace_period_end_date: terms.expiry_date,
            number_of_days_before_expiry: days,
            number_of_days_before_maintenance_expiry: days,
            number_of_days_before_grace_period_expiry: days,
            maximum_number_of_users: terms.maximum_number_of_users,
            unlimited_number_of_users: terms.maximum_number_of_users < 0,
            server_id: terms.server_id.clone(),
            licensee: terms.licensee.clone(),
            license: text.trim().to_owned(),
            status: LicenseStatus { server_id: terms.server_id.clone(), current_number_of_users: users },
        }
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
pub(crate) mod tests {
    use super::*;
    use crate::test_support::{FakeCrypto, block_on, fake_signature};

    fn b64url(bytes: &[u8]) -> String {
        const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let n = chunk.iter().enumerate().fold(0u32, |acc, (i, b)| acc | u32::from(*b) << (16 - 8 * i));
            for i in 0..=chunk.len() {
                out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
            }
        }
        out
    }

    /// A license signed as the fake crypto checks signatures.
    pub(crate) fn license(max_users: i64, expiry: i64) -> String {
        let payload = b64url(
            format!(
                r#"{{"licensee":"Acme","maximumNumberOfUsers":{max_users},"expiryDate":{expiry},"creationDate":1,"serverId":"S-1"}}"#
            )
            .as_bytes(),
        );
        let signature = b64url(&fake_signature(payload.as_bytes()));
        format!("{payload}.{signature}")
    }

    #[test]
    fn a_signed_license_is_accepted_and_others_refused() {
        let crypto = FakeCrypto::default();
        let key = [7u8; 32];
        let text = license(5, 10_000);
        let terms = block_on(check(&crypto, Some(&key), &text, Timestamp(5))).expect("valid");
        assert_eq!((terms.licensee.as_str(), terms.maximum_number_of_users), ("Acme", 5));
        assert!(terms.allows_users(5) && !terms.allows_users(6));
        let (payload, _) = text.split_once('.').expect("dot");
        let forged = format!("{payload}.{}", b64url(&[0u8; 64]));
        assert_eq!(block_on(check(&crypto, Some(&key), &forged, Timestamp(5))), Err(LicenseError::BadSignature));
        assert_eq!(block_on(check(&crypto, Some(&key), "garbage", Timestamp(5))), Err(LicenseError::Undecodable));
        assert_eq!(block_on(check(&crypto, None, &text, Timestamp(5))), Err(LicenseError::NoKey));
        assert_eq!(block_on(check(&crypto, Some(&key), &text, Timestamp(10_000))), Err(LicenseError::Expired(10_000)));
    }
}
