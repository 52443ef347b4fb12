//! The core's [`Crypto`] port over the Workers runtime's WebCrypto: AES-256-GCM sealing with a
//! key from the `MIRRORFARM_SEAL_KEY` secret, SHA-256, and the platform's secure random source.
//! WebCrypto costs the wasm nothing in size, unlike bundling a Rust AEAD.

use js_sys::{Array, Object, Uint8Array};
use mirrorfarm_core::hex::{decode as unhex, encode as hex};
use mirrorfarm_core::store::{Crypto, CryptoError};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{AesGcmParams, CryptoKey, SubtleCrypto};

/// Sealed values look like `v1.<iv hex>.<ciphertext+tag hex>`.
const SEAL_VERSION: &str = "v1";

/// WebCrypto with the deployment's sealing key (64 hex digits), if configured.
pub(crate) struct WebCrypto {
    seal_key_hex: Option<String>,
}

fn platform(e: JsValue) -> CryptoError {
    CryptoError::Platform(e.as_string().unwrap_or_else(|| format!("{e:?}")))
}

fn crypto() -> Result<web_sys::Crypto, CryptoError> {
    let value = js_sys::Reflect::get(&js_sys::global(), &JsValue::from_str("crypto")).map_err(platform)?;
    Ok(value.unchecked_into())
}

fn subtle() -> Result<SubtleCrypto, CryptoError> {
    Ok(crypto()?.subtle())
}

impl WebCrypto {
    pub(crate) fn new(seal_key_hex: Option<String>) -> Self {
        Self { seal_key_hex }
    }

    async fn key(&self) -> Result<CryptoKey, CryptoError> {
        let raw = self
            .seal_key_hex
            .as_deref()
            .and_then(unhex)
            .filter(|k| k.len() == 32)
            .ok_or_else(|| CryptoError::Key("MIRRORFARM_SEAL_KEY must be 64 hex digits".into()))?;
        let usages = Array::of2(&JsValue::from_str("encrypt"), &JsValue::from_str("decrypt"));
        let promise = subtle()?
            .import_key_with_str("raw", &Uint8Array::from(raw.as_slice()), "AES-GCM", false, &usages)
            .map_err(platform)?;
        Ok(JsFuture::from(promise).await.map_err(platform)?.unchecked_into())
    }

    /// The control plane's Ed25519 signing key: its 32-byte seed is HMAC-SHA256 of a fixed label
    /// under the sealing key, so every isolate derives the same key and nothing more is stored
    /// or configured. Importable as PKCS#8 (a fixed 16-byte prefix, then the seed).
    async fn signing_key(&self) -> Result<CryptoKey, CryptoError> {
        let seal = self
            .seal_key_hex
            .as_deref()
            .and_then(unhex)
            .filter(|k| k.len() == 32)
            .ok_or_else(|| CryptoError::Key("MIRRORFARM_SEAL_KEY must be 64 hex digits".into()))?;
        let seed = unhex(&self.hmac_sha256_hex(&seal, b"mirrorfarm control plane ed25519 v1").await?)
            .ok_or_else(|| CryptoError::Platform("HMAC answered no hex".into()))?;
        Self::ed25519_key(&seed).await
    }

    /// An extractable Ed25519 signing key from its 32-byte seed, imported as PKCS#8 (a fixed
    /// 16-byte prefix, then the seed).
    async fn ed25519_key(seed: &[u8]) -> Result<CryptoKey, CryptoError> {
        let mut pkcs8 =
            vec![0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20];
        pkcs8.extend_from_slice(seed);
        let usages = Array::of1(&JsValue::from_str("sign"));
        let import = subtle()?
            .import_key_with_str("pkcs8", &Uint8Array::from(pkcs8.as_slice()), "Ed25519", true, &usages)
            .map_err(platform)?;
        Ok(JsFuture::from(import).await.map_err(platform)?.unchecked_into())
    }

    /// The public half (32 bytes) of an extractable Ed25519 private key: its JWK's `x`.
    async fn ed25519_public(key: &CryptoKey) -> Result<Vec<u8>, CryptoError> {
        let jwk = JsFuture::from(subtle()?.export_key("jwk", key).map_err(platform)?).await.map_err(platform)?;
        let x = js_sys::Reflect::get(&jwk, &"x".into()).map_err(platform)?.as_string();
        x.as_deref()
            .and_then(mirrorfarm_core::admin::license::base64url)
            .filter(|k| k.len() == 32)
            .ok_or_else(|| CryptoError::Platform("the signing key exported no public key".into()))
    }

    fn params(iv: &[u8]) -> Object {
        AesGcmParams::new("AES-GCM", &Uint8Array::from(iv)).into()
    }
}

impl Crypto for WebCrypto {
    async fn unseal(&self, sealed: &str) -> Result<String, CryptoError> {
        let bad = || CryptoError::Platform("malformed sealed value".into());
        let mut parts = sealed.split('.');
        let (Some(SEAL_VERSION), Some(iv), Some(ct), None) = (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad());
        };
        let (iv, ct) = (unhex(iv).ok_or_else(bad)?, unhex(ct).ok_or_else(bad)?);
        let key = self.key().await?;
        let promise = subtle()?.decrypt_with_object_and_u8_array(&Self::params(&iv), &key, &ct).map_err(platform)?;
        let plain = Uint8Array::new(&JsFuture::from(promise).await.map_err(platform)?).to_vec();
        String::from_utf8(plain).map_err(|_| bad())
    }

    async fn seal(&self, plaintext: &str) -> Result<String, CryptoError> {
        let key = self.key().await?;
        let iv = self.random_bytes(12)?;
        let promise = subtle()?
            .encrypt_with_object_and_u8_array(&Self::params(&iv), &key, plaintext.as_bytes())
            .map_err(platform)?;
        let sealed = Uint8Array::new(&JsFuture::from(promise).await.map_err(platform)?).to_vec();
        Ok(format!("{SEAL_VERSION}.{}.{}", hex(&iv), hex(&sealed)))
    }

    async fn hmac_sha256_hex(&self, key: &[u8], data: &[u8]) -> Result<String, CryptoError> {
        let algorithm = Object::new();
        js_sys::Reflect::set(&algorithm, &"name".into(), &"HMAC".into()).map_err(platform)?;
        js_sys::Reflect::set(&algorithm, &"hash".into(), &"SHA-256".into()).map_err(platform)?;
        let usages = Array::of1(&JsValue::from_str("sign"));
        let import = subtle()?
            .import_key_with_object("raw", &Uint8Array::from(key), &algorithm, false, &usages)
            .map_err(platform)?;
        let key: CryptoKey = JsFuture::from(import).await.map_err(platform)?.unchecked_into();
        let sign = subtle()?.sign_with_str_and_u8_array("HMAC", &key, data).map_err(platform)?;
        Ok(hex(&Uint8Array::new(&JsFuture::from(sign).await.map_err(platform)?).to_vec()))
    }

    async fn sha256_hex(&self, data: &[u8]) -> Result<String, CryptoError> {
        let promise = subtle()?.digest_with_str_and_u8_array("SHA-256", data).map_err(platform)?;
        Ok(hex(&Uint8Array::new(&JsFuture::from(promise).await.map_err(platform)?).to_vec()))
    }

    async fn pbkdf2_sha256(&self, password: &[u8], salt: &[u8], iterations: u32) -> Result<Vec<u8>, CryptoError> {
        let usages = Array::of1(&JsValue::from_str("deriveBits"));
        let import = subtle()?
            .import_key_with_str("raw", &Uint8Array::from(password), "PBKDF2", false, &usages)
            .map_err(platform)?;
        let key: CryptoKey = JsFuture::from(import).await.map_err(platform)?.unchecked_into();
        let params = Object::new();
        for (name, value) in [
            ("name", JsValue::from_str("PBKDF2")),
            ("hash", JsValue::from_str("SHA-256")),
            ("salt", Uint8Array::from(salt).into()),
            ("iterations", JsValue::from(iterations)),
        ] {
            js_sys::Reflect::set(&params, &name.into(), &value).map_err(platform)?;
        }
        let bits = mirrorfarm_core::admin::passwords::KEY_BYTES as u32 * 8;
        let derive = subtle()?.derive_bits_with_object(&params, &key, bits).map_err(platform)?;
        Ok(Uint8Array::new(&JsFuture::from(derive).await.map_err(platform)?).to_vec())
    }

    async fn ed25519_verify(&self, public_key: &[u8], message: &[u8], signature: &[u8]) -> Result<bool, CryptoError> {
        let usages = Array::of1(&JsValue::from_str("verify"));
        // A key the runtime will not import is no key: nothing verifies against it.
        let Ok(import) = subtle()?.import_key_with_str("raw", &Uint8Array::from(public_key), "Ed25519", false, &usages)
        else {
            return Ok(false);
        };
        let Ok(key) = JsFuture::from(import).await else { return Ok(false) };
        let key: CryptoKey = key.unchecked_into();
        let verify = subtle()?
            .verify_with_str_and_u8_array_and_u8_array("Ed25519", &key, signature, message)
            .map_err(platform)?;
        Ok(JsFuture::from(verify).await.map(|v| v.as_bool() == Some(true)).unwrap_or(false))
    }

    async fn ed25519_public_key(&self, seed: &[u8]) -> Result<Vec<u8>, CryptoError> {
        if seed.len() != 32 {
            return Err(CryptoError::Key("an Ed25519 seed is 32 bytes".into()));
        }
        Self::ed25519_public(&Self::ed25519_key(seed).await?).await
    }

    async fn control_plane_key(&self) -> Result<Vec<u8>, CryptoError> {
        // The private key's JWK carries its public half as `x` (base64url).
        Self::ed25519_public(&self.signing_key().await?).await
    }

    async fn control_plane_sign(&self, message: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let key = self.signing_key().await?;
        let sign = subtle()?.sign_with_str_and_u8_array("Ed25519", &key, message).map_err(platform)?;
        Ok(Uint8Array::new(&JsFuture::from(sign).await.map_err(platform)?).to_vec())
    }

    fn random_bytes(&self, len: usize) -> Result<Vec<u8>, CryptoError> {
        let mut bytes = vec![0u8; len];
        crypto()?.get_random_values_with_u8_array(&mut bytes).map_err(platform)?;
        Ok(bytes)
    }
}
