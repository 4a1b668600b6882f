//! The key sealing upstream credentials at rest (`secrets.*`).

use secrecy::SecretString;
use serde::{Deserialize, Serialize};

/// `secrets.key` (`STASIS_SECRETS_KEY`): 32 bytes, hex or base64, sealing upstream
/// credentials at rest. Required once any mirror URL carries credentials. `Debug`
/// shows `[REDACTED]` (secrecy), and the key's memory is zeroed when dropped.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SecretsConfig {
    #[serde(serialize_with = "super::expose::option")]
    pub key: Option<SecretString>,
}
