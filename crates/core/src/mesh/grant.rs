//! What the edge signs for nodes with the control plane's Ed25519 key, and how a node reads it.
//!
//! A **fetch grant** lets one node fetch a repository's copy from another node's clone server
//! without asking the edge: the target of a Mesh move shows it as `Authorization: Bearer
//! <grant>`, and the source checks the signature with the control plane's public key (which each
//! heartbeat answers), the expiry, and that it names this node and this repository. A
//! **clone-access answer** is signed too, so a node serves a clone only on the edge's word.
//!
//! The edge signs and nodes verify; this module only builds and reads the signed bytes.

use serde::{Deserialize, Serialize};

use crate::hex;

/// Prefix of a fetch grant: `mfg1.<payload hex>.<signature hex>`.
pub const GRANT_PREFIX: &str = "mfg1.";

/// How long a fetch grant is good for (ms): longer than a move's lease, so a renewed move can
/// still fetch, short enough that a leaked grant soon lapses.
pub const GRANT_TTL_MS: i64 = 60 * 60_000;

/// What a fetch grant allows.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct FetchGrant {
    /// The repository whose copy may be fetched.
    pub repository_id: i64,
    /// The node whose clone server honours it.
    pub source_node_id: i64,
    /// The node that fetches.
    pub target_node_id: i64,
    /// Until when (epoch ms).
    pub expires: i64,
}

/// Why a grant was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GrantError {
    /// It is not a grant's shape.
    #[error("malformed grant")]
    Malformed,
    /// Its signature is not the control plane's.
    #[error("the grant's signature is not the control plane's")]
    BadSignature,
    /// It has expired.
    #[error("the grant has expired")]
    Expired,
    /// It is for another node or repository.
    #[error("the grant is for another node or repository")]
    NotForThis,
}

impl FetchGrant {
    /// The bytes the edge signs.
    pub fn signed_bytes(&self) -> Vec<u8> {
        let mut out = b"mirrorfarm fetch grant v1\n".to_vec();
        out.extend_from_slice(self.payload().as_bytes());
        out
    }

    fn payload(&self) -> String {
        format!("{}.{}.{}.{}", self.repository_id, self.source_node_id, self.target_node_id, self.expires)
    }

    /// The grant as sent: its payload and the edge's signature of [`Self::signed_bytes`].
    pub fn encode(&self, signature: &[u8]) -> String {
        format!("{GRANT_PREFIX}{}.{}", hex::encode(self.payload().as_bytes()), hex::encode(signature))
    }

    /// Reads a grant: what it claims and the signature to check against [`Self::signed_bytes`].
    pub fn decode(text: &str) -> Result<(Self, Vec<u8>), GrantError> {
        let rest = text.strip_prefix(GRANT_PREFIX).ok_or(GrantError::Malformed)?;
        let (payload, signature) = rest.split_once('.').ok_or(GrantError::Malformed)?;
        let payload = hex::decode(payload).and_then(|p| String::from_utf8(p).ok()).ok_or(GrantError::Malformed)?;
        let signature = hex::decode(signature).filter(|s| s.len() == 64).ok_or(GrantError::Malformed)?;
        let numbers: Vec<i64> =
            payload.split('.').map(str::parse).collect::<Result<_, _>>().map_err(|_| GrantError::Malformed)?;
        match numbers.as_slice() {
            [repository_id, source_node_id, target_node_id, expires] => Ok((
                Self {
                    repository_id: *repository_id,
                    source_node_id: *source_node_id,
                    target_node_id: *target_node_id,
                    expires: *expires,
                },
                signature,
            )),
            _ => Err(GrantError::Malformed),
        }
    }

    /// Whether a grant whose signature checked out lets `node` serve `repository_id` at `now`.
    pub fn allows(&self, node: i64, repository_id: i64, now: i64) -> Result<(), GrantError> {
        if now > self.expires {
            return Err(GrantError::Expired);
        }
        if self.source_node_id != node || self.repository_id != repository_id {
            return Err(GrantError::NotForThis);
        }
        Ok(())
    }
}

/// The bytes the edge signs in a clone-access answer: that `node` may serve repository
/// `repository_id` (at `project/slug`) to the caller whose credentials hash to `caller`.
pub fn clone_access_bytes(node: i64, repository_id: i64, project_key: &str, slug: &str, caller: &str) -> Vec<u8> {
    format!(
        "mirrorfarm clone access v1\n{node}\n{repository_id}\n{}/{}\n{caller}",
        project_key.to_ascii_lowercase(),
        slug.to_ascii_lowercase()
    )
    .into_bytes()
}

/// The control plane's public key (32 raw bytes) as PEM (SubjectPublicKeyInfo, as OpenSSL
/// writes Ed25519 keys).
pub fn public_key_pem(raw: &[u8]) -> String {
    // SEQUENCE { SEQUENCE { OID 1.3.101.112 } BIT STRING (32 bytes) }
    let mut der = vec![0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00];
    der.extend_from_slice(raw);
    format!("-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n", crate::identity::base64_encode(&der))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_grant_round_trips_and_is_checked() {
        let grant = FetchGrant { repository_id: 7, source_node_id: 1, target_node_id: 2, expires: 1_000 };
        let text = grant.encode(&[9u8; 64]);
        let (read, signature) = FetchGrant::decode(&text).expect("decodes");
        assert_eq!(read, grant);
        assert_eq!(signature, vec![9u8; 64]);
        assert_eq!(read.allows(1, 7, 999), Ok(()));
        assert_eq!(read.allows(1, 7, 1_001), Err(GrantError::Expired));
        assert_eq!(read.allows(2, 7, 999), Err(GrantError::NotForThis));
        assert_eq!(read.allows(1, 8, 999), Err(GrantError::NotForThis));
        assert_eq!(FetchGrant::decode("mfg1.zz.00"), Err(GrantError::Malformed));
        assert_eq!(FetchGrant::decode(&text.replace("mfg1.", "mfg2.")), Err(GrantError::Malformed));
        // A payload changed after signing signs different bytes.
        let forged = FetchGrant { repository_id: 8, ..grant.clone() };
        assert_ne!(forged.signed_bytes(), grant.signed_bytes());
    }

    #[test]
    fn the_public_key_pem_is_openssl_s_spki() {
        // OpenSSL's PEM of the all-zero Ed25519 public key.
        let pem = public_key_pem(&[0u8; 32]);
        assert_eq!(
            pem,
            "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n-----END PUBLIC KEY-----\n"
        );
    }
}
