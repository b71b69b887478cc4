//! Secrets at rest: connection secrets are encrypted with XChaCha20-Poly1305 under a 32-byte
//! key from the configuration (`secrets_key` / `ARCHER_SECRETS_KEY`, base64), with a random
//! 24-byte nonce per encryption (large enough that random nonces never collide in practice).
//! The AEAD tag makes a tampered ciphertext, or one read with another key, fail to decrypt
//! rather than yield garbage. Plaintexts travel as [`SecretString`], which never prints.

use base64::Engine as _;
use chacha20poly1305::aead::{Aead, Generate, KeyInit};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
pub use secrecy::{ExposeSecret, SecretString};

/// Length of the key, in bytes.
pub const KEY_BYTES: usize = 32;
/// Length of a nonce, in bytes.
pub const NONCE_BYTES: usize = 24;

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The configured key is not base64 of 32 bytes.
    #[error("the secrets key must be 32 bytes, base64-encoded: {0}")]
    BadKey(String),
    /// The stored secret does not decrypt under this key (another key, or altered data).
    #[error("a stored secret could not be decrypted (wrong key, or altered)")]
    Decrypt,
    /// The operating system's random source failed.
    #[error("no random nonce could be drawn: {0}")]
    Random(String),
}

/// The key secrets are encrypted with. Its `Debug` never shows the key.
#[derive(Clone)]
pub struct Cipher {
    aead: XChaCha20Poly1305,
}

impl std::fmt::Debug for Cipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Cipher(XChaCha20-Poly1305, key redacted)")
    }
}

impl Cipher {
    /// A cipher from the configured key: base64 (standard alphabet, padded or not) of 32 bytes.
    pub fn from_base64(key: &str) -> Result<Self, SecretError> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(key.trim())
            .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(key.trim()))
            .map_err(|e| SecretError::BadKey(e.to_string()))?;
        Self::from_bytes(&bytes)
    }

    /// A cipher from 32 raw key bytes.
    pub fn from_bytes(key: &[u8]) -> Result<Self, SecretError> {
        if key.len() != KEY_BYTES {
            return Err(SecretError::BadKey(format!("{} bytes given", key.len())));
        }
        let aead = XChaCha20Poly1305::new_from_slice(key).map_err(|e| SecretError::BadKey(e.to_string()))?;
        Ok(Cipher { aead })
    }

    /// A fixed, publicly known key for `archer dev` only (a local stack with throwaway data):
    /// anything encrypted with it is as good as plain text. Never use it for a real deployment.
    pub fn dev() -> Self {
        let key = Key::from(*b"archer-dev-only-not-a-secret-key");
        Cipher { aead: XChaCha20Poly1305::new(&key) }
    }

    /// Encrypts `secret` under a fresh random nonce: `(ciphertext with its tag, nonce)`.
    pub fn encrypt(&self, secret: &SecretString) -> Result<(Vec<u8>, Vec<u8>), SecretError> {
        let nonce = XNonce::try_generate().map_err(|e| SecretError::Random(e.to_string()))?;
        let ciphertext =
            self.aead.encrypt(&nonce, secret.expose_secret().as_bytes()).map_err(|_| SecretError::Decrypt)?;
        Ok((ciphertext, nonce.to_vec()))
    }

    /// Decrypts what [`Cipher::encrypt`] returned.
    pub fn decrypt(&self, ciphertext: &[u8], nonce: &[u8]) -> Result<SecretString, SecretError> {
        let nonce = XNonce::try_from(nonce).map_err(|_| SecretError::Decrypt)?;
        let plain = self.aead.decrypt(&nonce, ciphertext).map_err(|_| SecretError::Decrypt)?;
        let text = String::from_utf8(plain).map_err(|_| SecretError::Decrypt)?;
        Ok(SecretString::from(text))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn key(byte: u8) -> String {
        base64::engine::general_purpose::STANDARD.encode([byte; KEY_BYTES])
    }

    #[test]
    fn a_secret_round_trips_and_each_encryption_differs() {
        let cipher = Cipher::from_base64(&key(7)).unwrap();
        let secret = SecretString::from("s3cr3t-token");
        let (ct1, n1) = cipher.encrypt(&secret).unwrap();
        let (ct2, n2) = cipher.encrypt(&secret).unwrap();
        assert_ne!(n1, n2, "a fresh nonce each time");
        assert_ne!(ct1, ct2);
        assert_eq!(n1.len(), NONCE_BYTES);
        assert!(!ct1.windows(6).any(|w| w == b"s3cr3t"), "the plaintext is not in the ciphertext");
        assert_eq!(cipher.decrypt(&ct1, &n1).unwrap().expose_secret(), "s3cr3t-token");
        assert_eq!(cipher.decrypt(&ct2, &n2).unwrap().expose_secret(), "s3cr3t-token");
    }

    #[test]
    fn another_key_cannot_decrypt() {
        let (ct, nonce) = Cipher::from_base64(&key(1)).unwrap().encrypt(&SecretString::from("x")).unwrap();
        let other = Cipher::from_base64(&key(2)).unwrap();
        assert!(matches!(other.decrypt(&ct, &nonce), Err(SecretError::Decrypt)));
        assert!(matches!(Cipher::dev().decrypt(&ct, &nonce), Err(SecretError::Decrypt)));
    }

    #[test]
    fn a_tampered_ciphertext_or_nonce_fails() {
        let cipher = Cipher::dev();
        let (mut ct, mut nonce) = cipher.encrypt(&SecretString::from("password")).unwrap();
        ct[0] ^= 1;
        assert!(matches!(cipher.decrypt(&ct, &nonce), Err(SecretError::Decrypt)));
        ct[0] ^= 1;
        nonce[3] ^= 1;
        assert!(matches!(cipher.decrypt(&ct, &nonce), Err(SecretError::Decrypt)));
        assert!(matches!(cipher.decrypt(&ct, &nonce[..10]), Err(SecretError::Decrypt)));
    }

    #[test]
    fn bad_keys_are_refused_and_debug_shows_no_key() {
        assert!(matches!(Cipher::from_base64("not base64!"), Err(SecretError::BadKey(_))));
        let short = base64::engine::general_purpose::STANDARD.encode([1u8; 16]);
        assert!(matches!(Cipher::from_base64(&short), Err(SecretError::BadKey(_))));
        let shown = format!("{:?}", Cipher::from_base64(&key(65)).unwrap());
        assert!(!shown.contains("QUFB") && shown.contains("redacted"), "{shown}");
    }
}
