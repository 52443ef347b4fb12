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
        Ok(format!("hash:{}", hex(data)))
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
