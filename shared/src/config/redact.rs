//! `Debug` of the sections holding service URLs, which may carry a password (in the
//! user info, or `?password=` for Postgres): printed from their serde form, so every
//! key shows, a new one included, with the URL cut to scheme, host, port and path.

use std::fmt;

use serde::Serialize;

use super::{DatabaseConfig, RedisConfig};

/// `url` without user info, query or fragment; `***` when it does not parse, since
/// then nobody knows where a password would be.
pub(super) fn service_url(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut url) => {
            let _ = url.set_username("");
            let _ = url.set_password(None);
            url.set_query(None);
            url.set_fragment(None);
            url.to_string()
        }
        Err(_) => "***".into(),
    }
}

fn debug_with_url<T: Serialize>(
    f: &mut fmt::Formatter<'_>,
    name: &str,
    section: &T,
    url: &str,
) -> fmt::Result {
    let mut value = serde_json::to_value(section).map_err(|_| fmt::Error)?;
    if let Some(fields) = value.as_object_mut() {
        fields.insert("url".into(), service_url(url).into());
    }
    write!(f, "{name} {value}")
}

impl fmt::Debug for DatabaseConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        debug_with_url(f, "DatabaseConfig", self, &self.url)
    }
}

impl fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        debug_with_url(f, "RedisConfig", self, &self.url)
    }
}
