//! The keys sealing credentials at rest (`secrets.*`).

use secrecy::SecretString;
use serde::{Deserialize, Deserializer, Serialize};

/// `secrets.key` (`STASIS_SECRETS_KEY`): 32 bytes, hex or base64, sealing upstream
/// credentials, webhook secrets and deploy keys at rest. Required once any is stored.
/// `secrets.previous_keys` (`STASIS_SECRETS_PREVIOUS_KEYS`, comma- or space-separated;
/// from a file with `_FILE` like the key): keys that only open what they sealed, while
/// `stasisctl secrets rotate` re-seals it with `secrets.key`. `Debug` shows `[REDACTED]`
/// (secrecy), and the keys' memory is zeroed when dropped.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SecretsConfig {
    #[serde(serialize_with = "super::expose::option")]
    pub key: Option<SecretString>,
    #[serde(serialize_with = "super::expose::list", deserialize_with = "keys")]
    pub previous_keys: Vec<SecretString>,
}

/// A list, or one string of keys separated by commas or white space (an environment
/// variable, or a mounted file with one key per line).
fn keys<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<SecretString>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum ListOrText {
        List(Vec<String>),
        Text(String),
    }
    let listed = match ListOrText::deserialize(d)? {
        ListOrText::List(keys) => keys,
        ListOrText::Text(text) => text
            .split(|c: char| c == ',' || c.is_whitespace())
            .map(str::to_owned)
            .collect(),
    };
    Ok(listed
        .into_iter()
        .map(|k| k.trim().to_owned())
        .filter(|k| !k.is_empty())
        .map(SecretString::from)
        .collect())
}
