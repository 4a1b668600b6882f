//! Serializing the configuration's secrets. secrecy's `SecretString` has no `Serialize`
//! on purpose; the configuration is serialized only to give figment the defaults
//! and to list the known keys ([`super::env`]), where every secret is unset, so showing
//! the value there costs nothing. Logs and errors use `Debug`, which never shows it.

use secrecy::{ExposeSecret, SecretString};
use serde::{Serialize, Serializer};

pub(super) fn option<S: Serializer>(
    secret: &Option<SecretString>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    secret
        .as_ref()
        .map(ExposeSecret::expose_secret)
        .serialize(serializer)
}

pub(super) fn list<S: Serializer>(
    secrets: &[SecretString],
    serializer: S,
) -> Result<S::Ok, S::Error> {
    secrets
        .iter()
        .map(ExposeSecret::expose_secret)
        .collect::<Vec<_>>()
        .serialize(serializer)
}
