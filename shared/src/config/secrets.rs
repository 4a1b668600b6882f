//! The key sealing upstream credentials at rest (`secrets.*`).

use serde::{Deserialize, Serialize};

/// `secrets.key` (`STASIS_SECRETS_KEY`): 32 bytes, hex or base64, sealing upstream
/// credentials at rest. Required once any mirror URL carries credentials.
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SecretsConfig {
    pub key: Option<String>,
}

impl std::fmt::Debug for SecretsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown = self.key.as_ref().map(|_| "***");
        f.debug_struct("SecretsConfig")
            .field("key", &shown)
            .finish()
    }
}
