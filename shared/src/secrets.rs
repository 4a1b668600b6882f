//! Credentials at rest: upstream user info, webhook secrets and deploy keys are sealed
//! with AES-256-GCM under `secrets.key` (`STASIS_SECRETS_KEY`) before they reach
//! Postgres, so a database dump or a read-only SQL role does not hand out access to
//! private upstreams.
//!
//! Keys rotate: a seal names the key that made it (`<key id>:<base64>`, the id derived
//! from the key itself), new seals use `secrets.key`, and seals made with a key listed
//! in `secrets.previous_keys` still open, until `stasisctl secrets rotate` has re-sealed
//! them and the old key can be retired. Seals from before key ids (bare base64) open
//! with whichever configured key made them.

use std::fmt;

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use sha2::{Digest, Sha256};

use crate::config::{ExposeSecret, SecretsConfig};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SecretError {
    #[error("secrets.key must be 32 bytes, as 64 hex digits or base64")]
    BadKey,
    #[error("stored credentials cannot be decrypted with this secrets.key")]
    Undecryptable,
    #[error(
        "stored credentials were sealed with key {0}, which is neither secrets.key nor one \
         of secrets.previous_keys"
    )]
    UnknownKey(String),
}

const NONCE_LEN: usize = 12;

/// One key and its id.
#[derive(Clone)]
struct SealingKey {
    id: String,
    aead: Aes256Gcm,
}

impl SealingKey {
    /// `key`: 32 bytes as 64 hex digits or as base64 (`openssl rand -base64 32`).
    fn new(key: &str) -> Result<Self, SecretError> {
        let key = key.trim();
        let bytes = if key.len() == 64 {
            hex::decode(key).map_err(|_| SecretError::BadKey)?
        } else {
            STANDARD.decode(key).map_err(|_| SecretError::BadKey)?
        };
        if bytes.len() != 32 {
            return Err(SecretError::BadKey);
        }
        Ok(Self {
            id: key_id(&bytes),
            aead: Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&bytes)),
        })
    }

    fn open(&self, bytes: &[u8]) -> Result<String, SecretError> {
        if bytes.len() <= NONCE_LEN {
            return Err(SecretError::Undecryptable);
        }
        let (nonce, body) = bytes.split_at(NONCE_LEN);
        let plain = self
            .aead
            .decrypt(Nonce::from_slice(nonce), body)
            .map_err(|_| SecretError::Undecryptable)?;
        String::from_utf8(plain).map_err(|_| SecretError::Undecryptable)
    }
}

/// A key's public name: `k` and 8 hex digits of a SHA-256 over a label and the key. It
/// tells keys apart in seals and in `stasisctl secrets status`, and reveals nothing of
/// the key (the label keeps it from being a bare hash of the key).
fn key_id(key: &[u8]) -> String {
    let digest = Sha256::new()
        .chain_update(b"stasis secrets key id\0")
        .chain_update(key)
        .finalize();
    format!("k{}", hex::encode(&digest[..4]))
}

/// Seals with the current key; opens what the current or a previous key sealed.
#[derive(Clone)]
pub struct Cipher {
    current: SealingKey,
    previous: Vec<SealingKey>,
}

impl fmt::Debug for Cipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cipher")
            .field("current", &self.current.id)
            .field(
                "previous",
                &self.previous.iter().map(|k| &k.id).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Cipher {
    /// `key`: 32 bytes as 64 hex digits or as base64 (`openssl rand -base64 32`).
    pub fn new(key: &str) -> Result<Self, SecretError> {
        Self::with_previous(key, &[])
    }

    /// Seals with `key`; also opens what one of `previous` sealed.
    pub fn with_previous(key: &str, previous: &[String]) -> Result<Self, SecretError> {
        let current = SealingKey::new(key)?;
        let previous = previous
            .iter()
            .map(|k| SealingKey::new(k))
            .filter(|k| k.as_ref().map_or(true, |k| k.id != current.id))
            .collect::<Result<_, _>>()?;
        Ok(Self { current, previous })
    }

    /// The id of the key new seals are made with.
    pub fn current_id(&self) -> &str {
        &self.current.id
    }

    /// The ids of the keys that only open.
    pub fn previous_ids(&self) -> impl Iterator<Item = &str> {
        self.previous.iter().map(|k| k.id.as_str())
    }

    /// `<key id>:` then base64 of a fresh random nonce followed by the ciphertext and tag.
    pub fn seal(&self, plain: &str) -> String {
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let sealed = self
            .current
            .aead
            .encrypt(&nonce, plain.as_bytes())
            .expect("AES-GCM encryption of a short string cannot fail");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        format!("{}:{}", self.current.id, STANDARD.encode(out))
    }

    pub fn open(&self, sealed: &str) -> Result<String, SecretError> {
        let keys = || std::iter::once(&self.current).chain(&self.previous);
        match sealed.split_once(':') {
            Some((id, body)) => {
                let key = keys()
                    .find(|k| k.id == id)
                    .ok_or_else(|| SecretError::UnknownKey(id.to_owned()))?;
                let bytes = STANDARD
                    .decode(body)
                    .map_err(|_| SecretError::Undecryptable)?;
                key.open(&bytes)
            }
            // sealed before seals named their key: the tag tells which key made it
            None => {
                let bytes = STANDARD
                    .decode(sealed)
                    .map_err(|_| SecretError::Undecryptable)?;
                keys()
                    .find_map(|k| k.open(&bytes).ok())
                    .ok_or(SecretError::Undecryptable)
            }
        }
    }

    /// Whether `sealed` is already sealed with the current key.
    pub fn is_current(&self, sealed: &str) -> bool {
        sealed
            .split_once(':')
            .is_some_and(|(id, _)| id == self.current.id)
    }
}

/// The id of the key a seal names; `None` for a seal from before key ids.
pub fn sealed_with(sealed: &str) -> Option<&str> {
    sealed.split_once(':').map(|(id, _)| id)
}

/// The key is checked where a process opens its cipher (`load`, at start-up), so the
/// configuration needs nothing of this module.
impl SecretsConfig {
    pub fn cipher(&self) -> Result<Option<Cipher>, crate::config::ConfigError> {
        // an empty STASIS_SECRETS_KEY (compose's `${VAR:-}`) means no key
        let key = self.key.as_ref().map(ExposeSecret::expose_secret);
        let Some(key) = key.filter(|k| !k.trim().is_empty()) else {
            if !self.previous_keys.is_empty() {
                return Err(crate::config::ConfigError::Invalid {
                    key: "secrets.previous_keys",
                    msg: "previous keys only open seals: secrets.key must be set too".into(),
                });
            }
            return Ok(None);
        };
        let invalid = |key, e: SecretError| crate::config::ConfigError::Invalid {
            key,
            msg: e.to_string(),
        };
        Cipher::new(key).map_err(|e| invalid("secrets.key", e))?;
        let previous: Vec<String> = self
            .previous_keys
            .iter()
            .map(|k| k.expose_secret().to_owned())
            .collect();
        Cipher::with_previous(key, &previous)
            .map(Some)
            .map_err(|e| invalid("secrets.previous_keys", e))
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
        assert_eq!(
            other.open(&sealed),
            Err(SecretError::UnknownKey(cipher.current_id().to_owned()))
        );
        // the other key, under this key's name, still opens nothing
        let (_, body) = sealed.split_once(':').unwrap();
        let posing = format!("{}:{body}", other.current_id());
        assert_eq!(other.open(&posing), Err(SecretError::Undecryptable));
        // nor does this key open a seal altered by one bit
        let mut bytes = STANDARD.decode(body).unwrap();
        bytes[NONCE_LEN] ^= 1;
        let altered = format!("{}:{}", cipher.current_id(), STANDARD.encode(bytes));
        assert_eq!(cipher.open(&altered), Err(SecretError::Undecryptable));
        assert_eq!(Cipher::new("short").unwrap_err(), SecretError::BadKey);
        assert_eq!(
            cipher.open("bm90IHNlYWxlZA==").unwrap_err(),
            SecretError::Undecryptable
        );
    }

    const OLD: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
    const NEW: &str = "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100";

    #[test]
    fn a_seal_names_its_key_and_opens_while_that_key_is_current_or_previous() {
        let old = Cipher::new(OLD).unwrap();
        let sealed = old.seal("alice:s3cret");
        assert_eq!(sealed_with(&sealed), Some(old.current_id()));
        assert!(
            !old.current_id().contains(&OLD[..8]),
            "the id is not the key"
        );

        let rotated = Cipher::with_previous(NEW, &[OLD.to_owned()]).unwrap();
        assert_eq!(rotated.open(&sealed).unwrap(), "alice:s3cret");
        assert!(!rotated.is_current(&sealed));
        let resealed = rotated.seal("alice:s3cret");
        assert!(rotated.is_current(&resealed));
        assert_ne!(sealed_with(&resealed), sealed_with(&sealed));

        // once the old key is retired, its seals name a key that is not there
        let retired = Cipher::new(NEW).unwrap();
        assert_eq!(retired.open(&resealed).unwrap(), "alice:s3cret");
        assert_eq!(
            retired.open(&sealed),
            Err(SecretError::UnknownKey(old.current_id().to_owned()))
        );
    }

    #[test]
    fn a_seal_from_before_key_ids_opens_with_whichever_key_made_it() {
        let old = Cipher::new(OLD).unwrap();
        let sealed = old.seal("bob:hunter2");
        let bare = sealed.split_once(':').unwrap().1;
        assert_eq!(sealed_with(bare), None);
        let rotated = Cipher::with_previous(NEW, &[OLD.to_owned()]).unwrap();
        assert_eq!(rotated.open(bare).unwrap(), "bob:hunter2");
        assert!(!rotated.is_current(bare));
        assert_eq!(
            Cipher::new(NEW).unwrap().open(bare),
            Err(SecretError::Undecryptable)
        );
    }

    #[test]
    fn previous_keys_come_from_a_list_or_from_text_and_are_checked() {
        let cfg = SecretsConfig {
            key: Some(NEW.into()),
            previous_keys: vec![OLD.into(), NEW.into()],
        };
        let cipher = cfg.cipher().unwrap().unwrap();
        // the current key among the previous ones is not listed twice
        assert_eq!(cipher.previous_ids().count(), 1);
        let bad = SecretsConfig {
            key: Some(NEW.into()),
            previous_keys: vec!["short".into()],
        };
        let err = bad.cipher().unwrap_err().to_string();
        assert!(
            err.contains("secrets.previous_keys") && !err.contains(NEW),
            "{err}"
        );
        let without_key = SecretsConfig {
            key: None,
            previous_keys: vec![OLD.into()],
        };
        assert!(without_key.cipher().is_err());
        let text: SecretsConfig = serde_json::from_value(serde_json::json!({
            "key": NEW, "previous_keys": format!("{OLD},\n {NEW}\n")
        }))
        .unwrap();
        let listed: Vec<&str> = text
            .previous_keys
            .iter()
            .map(|k| k.expose_secret())
            .collect();
        assert_eq!(listed, vec![OLD, NEW]);
        assert!(!format!("{text:?}").contains(&OLD[..16]));
    }
}
