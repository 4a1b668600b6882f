//! Credentials at rest: upstream user info is sealed with AES-256-GCM under
//! `secrets.key` (`STASIS_SECRETS_KEY`) before it reaches Postgres, so a database dump
//! or a read-only SQL role does not hand out access to private upstreams.

use std::fmt;

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use crate::config::{ExposeSecret, SecretsConfig};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SecretError {
    #[error("secrets.key must be 32 bytes, as 64 hex digits or base64")]
    BadKey,
    #[error("stored credentials cannot be decrypted with this secrets.key")]
    Undecryptable,
}

const NONCE_LEN: usize = 12;

#[derive(Clone)]
pub struct Cipher(Aes256Gcm);

impl fmt::Debug for Cipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Cipher(***)")
    }
}

impl Cipher {
    /// `key`: 32 bytes as 64 hex digits or as base64 (`openssl rand -base64 32`).
    pub fn new(key: &str) -> Result<Self, SecretError> {
        let key = key.trim();
        let bytes = if key.len() == 64 {
            hex::decode(key).map_err(|_| SecretError::BadKey)?
        } else {
            STANDARD.decode(key).map_err(|_| SecretError::BadKey)?
        };
        if bytes.len() != 32 {
            return Err(SecretError::BadKey);
        }
        Ok(Self(Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&bytes))))
    }

    /// base64 of a fresh random nonce followed by the ciphertext and tag.
    pub fn seal(&self, plain: &str) -> String {
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let sealed = self
            .0
            .encrypt(&nonce, plain.as_bytes())
            .expect("AES-GCM encryption of a short string cannot fail");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        STANDARD.encode(out)
    }

    pub fn open(&self, sealed: &str) -> Result<String, SecretError> {
        let bytes = STANDARD
            .decode(sealed)
            .map_err(|_| SecretError::Undecryptable)?;
        if bytes.len() <= NONCE_LEN {
            return Err(SecretError::Undecryptable);
        }
        let (nonce, body) = bytes.split_at(NONCE_LEN);
        let plain = self
            .0
            .decrypt(Nonce::from_slice(nonce), body)
            .map_err(|_| SecretError::Undecryptable)?;
        String::from_utf8(plain).map_err(|_| SecretError::Undecryptable)
    }
}

/// The key is checked where a process opens its cipher (`load`, at start-up), so the
/// configuration needs nothing of this module.
impl SecretsConfig {
    pub fn cipher(&self) -> Result<Option<Cipher>, crate::config::ConfigError> {
        // an empty STASIS_SECRETS_KEY (compose's `${VAR:-}`) means no key
        self.key
            .as_ref()
            .map(ExposeSecret::expose_secret)
            .filter(|k| !k.trim().is_empty())
            .map(|k| {
                Cipher::new(k).map_err(|e| crate::config::ConfigError::Invalid {
                    key: "secrets.key",
                    msg: e.to_string(),
                })
            })
            .transpose()
    }
}

/// The cipher of this process, from `secrets.key`. Refuses to start a process that
/// would meet sealed credentials it cannot open.
pub async fn load(cfg: &SecretsConfig, pool: &sqlx::PgPool) -> crate::Result<Option<Cipher>> {
    let cipher = cfg.cipher()?;
    if cipher.is_none() && crate::db::repos::any_credentials(pool).await? {
        return Err(crate::config::ConfigError::Invalid {
            key: "secrets.key",
            msg: "mirrors have stored credentials, so STASIS_SECRETS_KEY or \
                  STASIS_SECRETS_KEY_FILE (the key they were sealed with) must be set"
                .into(),
        }
        .into());
    }
    Ok(cipher)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seals_and_opens_with_the_same_key_only() {
        let key = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
        let cipher = Cipher::new(key).unwrap();
        let sealed = cipher.seal("alice:s3cret");
        assert!(!sealed.contains("s3cret"));
        assert_ne!(sealed, cipher.seal("alice:s3cret"), "fresh nonce each time");
        assert_eq!(cipher.open(&sealed).unwrap(), "alice:s3cret");
        let other = Cipher::new(&STANDARD.encode([7u8; 32])).unwrap();
        assert_eq!(other.open(&sealed), Err(SecretError::Undecryptable));
        assert_eq!(Cipher::new("short").unwrap_err(), SecretError::BadKey);
        assert_eq!(
            cipher.open("bm90IHNlYWxlZA==").unwrap_err(),
            SecretError::Undecryptable
        );
    }
}
