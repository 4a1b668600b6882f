//! Failure notifications (`notify.*`).

use std::time::Duration;

use secrecy::SecretString;
use serde::{Deserialize, Serialize};

/// Failure notifications: signed JSON events POSTed with retries.
#[derive(Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NotifyConfig {
    /// Receivers of every mirror's events: a list, or comma-separated in
    /// `STASIS_NOTIFY_URLS`.
    #[serde(deserialize_with = "list_or_csv")]
    pub urls: Vec<String>,
    /// Key of the `X-Stasis-Signature` HMAC-SHA256 over the body; unset: unsigned.
    /// `Debug` shows `[REDACTED]` (secrecy).
    #[serde(serialize_with = "super::expose::option")]
    pub secret: Option<SecretString>,
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Deliveries tried per event and receiver before giving up.
    pub max_attempts: u32,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        Self {
            urls: Vec::new(),
            secret: None,
            timeout: Duration::from_secs(10),
            max_attempts: 8,
        }
    }
}

impl std::fmt::Debug for NotifyConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NotifyConfig")
            .field(
                "urls",
                &self
                    .urls
                    .iter()
                    .map(|u| crate::git::url::redact_url(u))
                    .collect::<Vec<_>>(),
            )
            .field("secret", &self.secret)
            .field("timeout", &self.timeout)
            .field("max_attempts", &self.max_attempts)
            .finish()
    }
}

pub(super) fn list_or_csv<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum ListOrCsv {
        List(Vec<String>),
        Csv(String),
    }
    Ok(match ListOrCsv::deserialize(d)? {
        ListOrCsv::List(urls) => urls,
        ListOrCsv::Csv(text) => text
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(str::to_owned)
            .collect(),
    })
}
