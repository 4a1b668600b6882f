//! The keys sealing credentials at rest (`secrets.*`).

use serde::{Deserialize, Deserializer, Serialize};

/// `secrets.key` (`STASIS_SECRETS_KEY`): 32 bytes, hex or base64, sealing upstream
/// credentials, webhook secrets and deploy keys at rest. Required once any is stored.
/// `secrets.previous_keys` (`STASIS_SECRETS_PREVIOUS_KEYS`, comma- or space-separated;
/// from a file with `_FILE` like the key): keys that only open what they sealed, while
/// `stasisctl secrets rotate` re-seals it with `secrets.key`.
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SecretsConfig {
    pub key: Option<String>,
    #[serde(deserialize_with = "keys")]
    pub previous_keys: Vec<String>,
}

impl std::fmt::Debug for SecretsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown = self.key.as_ref().map(|_| "***");
        f.debug_struct("SecretsConfig")
            .field("key", &shown)
            .field("previous_keys", &vec!["***"; self.previous_keys.len()])
            .finish()
    }
}

/// A list, or one string of keys separated by commas or white space (an environment
/// variable, or a mounted file with one key per line).
fn keys<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
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
        .collect())
}
