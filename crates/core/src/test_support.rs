//! Test support: a deterministic fake of the [`Crypto`] port and an executor for futures that
//! never wait (SQLite answers synchronously). Storage in tests is real: [`crate::store::sqlite`].

use std::cell::Cell;
use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use crate::store::{Crypto, CryptoError};

/// Runs a future whose I/O is all synchronous (it completes on its first poll).
pub fn block_on<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("synchronous futures never wait"),
    }
}

/// A [`Crypto`] fake: reversible "sealing" that never contains the plaintext, a stand-in hash,
/// and counting "random" bytes.
#[derive(Default)]
pub struct FakeCrypto {
    counter: Cell<u8>,
}

impl FakeCrypto {
    /// Where the "random" bytes are: a request run again after [`FakeCrypto::rewind`] draws the same.
    pub fn position(&self) -> u8 {
        self.counter.get()
    }

    /// Draws the "random" bytes again from `position`.
    pub fn rewind(&self, position: u8) {
        self.counter.set(position);
    }
}

fn hex(data: &[u8]) -> String {
    data.iter().map(|b| format!("{b:02x}")).collect()
}

impl Crypto for FakeCrypto {
    async fn seal(&self, plaintext: &str) -> Result<String, CryptoError> {
        Ok(format!("sealed:{}", hex(&plaintext.bytes().map(|b| b ^ 0x5a).collect::<Vec<_>>())))
    }
    async fn unseal(&self, sealed: &str) -> Result<String, CryptoError> {
        let hex = sealed.strip_prefix("sealed:").ok_or_else(|| CryptoError::Platform("not sealed".into()))?;
        let bytes: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).map(|b| b ^ 0x5a))
            .collect::<Result<_, _>>()
            .map_err(|e| CryptoError::Platform(e.to_string()))?;
        String::from_utf8(bytes).map_err(|e| CryptoError::Platform(e.to_string()))
    }
    async fn hmac_sha256_hex(&self, key: &[u8], data: &[u8]) -> Result<String, CryptoError> {
        Ok(format!("hmac:{}:{}", hex(key), hex(data)))
    }
    async fn sha256_hex(&self, data: &[u8]) -> Result<String, CryptoError> {
        #[cfg(not(target_arch = "wasm32"))]
        {
            use sha2::Digest;
            Ok(hex(&sha2::Sha256::digest(data)))
        }
        #[cfg(target_arch = "wasm32")]
        Ok(format!("hash:{}", hex(data)))
    }
    async fn pbkdf2_sha256(&self, password: &[u8], salt: &[u8], iterations: u32) -> Result<Vec<u8>, CryptoError> {
        // A stand-in key that depends on every input and never contains the password.
        let mut state: u64 = 0xcbf2_9ce4_8422_2325 ^ u64::from(iterations);
        let mut key = Vec::with_capacity(crate::admin::passwords::KEY_BYTES);
        for round in 0..crate::admin::passwords::KEY_BYTES {
            for b in salt.iter().chain(password).chain([&(round as u8)]) {
                state = (state ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
            }
            key.push((state >> 24) as u8);
        }
        Ok(key)
    }
    async fn ed25519_verify(&self, _key: &[u8], message: &[u8], signature: &[u8]) -> Result<bool, CryptoError> {
        Ok(signature == fake_signature(message).as_slice())
    }
    async fn ed25519_public_key(&self, seed: &[u8]) -> Result<Vec<u8>, CryptoError> {
        #[cfg(not(target_arch = "wasm32"))]
        {
            let pair = ring::signature::Ed25519KeyPair::from_seed_unchecked(seed)
                .map_err(|e| CryptoError::Platform(e.to_string()))?;
            Ok(ring::signature::KeyPair::public_key(&pair).as_ref().to_vec())
        }
        #[cfg(target_arch = "wasm32")]
        Ok(seed.iter().map(|b| b ^ 0xa5).collect())
    }
    async fn control_plane_key(&self) -> Result<Vec<u8>, CryptoError> {
        Ok(vec![7u8; 32])
    }
    async fn control_plane_sign(&self, message: &[u8]) -> Result<Vec<u8>, CryptoError> {
        Ok(fake_signature(message))
    }
    fn random_bytes(&self, len: usize) -> Result<Vec<u8>, CryptoError> {
        Ok((0..len)
            .map(|_| {
                self.counter.set(self.counter.get().wrapping_add(1));
                self.counter.get()
            })
            .collect())
    }
}

/// What [`FakeCrypto`] accepts as the signature of `message`: 64 bytes derived from it.
pub fn fake_signature(message: &[u8]) -> Vec<u8> {
    let mut state: u64 = 0x1234_5678;
    (0..64u8)
        .map(|i| {
            for b in message.iter().chain([&i]) {
                state = (state ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
            }
            (state >> 32) as u8
        })
        .collect()
}
