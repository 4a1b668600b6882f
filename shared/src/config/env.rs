//! Which `STASIS_*` environment variables are configuration, and the secrets read from
//! files (`STASIS_<SECTION>_<KEY>_FILE`).
//!
//! A variable is read when its section is one of [`super::Config`]'s; any other
//! `STASIS_*` name belongs to someone else (the scripts, the tests, an orchestrator) and
//! is left alone. Kubernetes gives every pod variables for each Service in its
//! namespace, so Services named `stasis-api` or `stasis-redis` produce
//! `STASIS_API_SERVICE_HOST` or `STASIS_REDIS_PORT_6379_TCP_ADDR`, whose section is a
//! real one: a name in a service-link shape that is not a key of its section is
//! ignored too. Any other unknown key of a known section stops the process with the
//! variable's name, since it is most likely a misspelt setting.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;

use super::{Config, ConfigError};

pub(super) const PREFIX: &str = "STASIS_";

/// The keys holding credentials: each may also come from a file named by
/// `STASIS_<SECTION>_<KEY>_FILE` (Docker and Kubernetes secrets), and none is shown by
/// `Debug`.
pub const SECRET_KEYS: &[&str] = &[
    "database.url",
    "redis.url",
    "secrets.key",
    "secrets.previous_keys",
    "notify.secret",
];

/// What one `STASIS_*` variable is to the configuration.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Var {
    /// `section.key`, read from the value.
    Key(String),
    /// `section.key` of a secret, read from the file the value names.
    File(String),
    /// Not configuration.
    Ignored,
}

/// The configuration's sections and their keys, from the defaults' serde form, so
/// a new key needs nothing here.
pub(super) struct Keys(BTreeMap<String, BTreeSet<String>>);

impl Keys {
    pub(super) fn of_config() -> Self {
        let value = serde_json::to_value(Config::default()).unwrap_or_default();
        let sections = value
            .as_object()
            .into_iter()
            .flatten()
            .map(|(section, keys)| {
                let keys = keys.as_object().into_iter().flatten();
                (section.clone(), keys.map(|(k, _)| k.clone()).collect())
            })
            .collect();
        Self(sections)
    }

    /// Classifies `name` (the whole variable name, any case).
    pub(super) fn classify(&self, name: &str) -> Result<Var, ConfigError> {
        let upper = name.to_ascii_uppercase();
        let Some(rest) = upper.strip_prefix(PREFIX) else {
            return Ok(Var::Ignored);
        };
        let rest = rest.to_ascii_lowercase();
        let (section, key) = rest.split_once('_').unwrap_or((rest.as_str(), ""));
        let Some(keys) = self.0.get(section) else {
            return Ok(Var::Ignored);
        };
        if keys.contains(key) {
            return Ok(Var::Key(format!("{section}.{key}")));
        }
        if let Some(secret) = key.strip_suffix("_file") {
            let path = format!("{section}.{secret}");
            if SECRET_KEYS.contains(&path.as_str()) {
                return Ok(Var::File(path));
            }
            if keys.contains(secret) {
                return Err(env_error(
                    name,
                    format!(
                        "only secrets can be read from a file ({}); set {} itself",
                        SECRET_KEYS.join(", "),
                        &name[..name.len() - "_FILE".len()]
                    ),
                ));
            }
        }
        if service_link(&upper) {
            return Ok(Var::Ignored);
        }
        let known = keys.iter().map(String::as_str).collect::<Vec<_>>();
        Err(env_error(
            name,
            format!(
                "`{key}` is not a key of `{section}` (keys: {})",
                known.join(", ")
            ),
        ))
    }
}

/// The `STASIS_*` variables of the scripts and tests, not of the processes.
const TOOLS: &[&str] = &[
    "CONFIG",
    "LOCAL_SERVICES",
    "PG_ADMIN_URL",
    "TEST_",
    "TESTKIT_",
];

/// This process's `STASIS_*` variables that are ignored although they look meant for
/// it: no section, no service-link shape, not the tools'. A misspelt section
/// (`STASIS_DATABSE_URL`) cannot stop the process, since Kubernetes would too, so it
/// is worth a warning at start.
pub(crate) fn unread_variables() -> Vec<String> {
    let keys = Keys::of_config();
    let mut unread: Vec<String> = std::env::vars_os()
        .filter_map(|(name, _)| name.into_string().ok())
        .filter(|name| {
            let upper = name.to_ascii_uppercase();
            let Some(rest) = upper.strip_prefix(PREFIX) else {
                return false;
            };
            matches!(keys.classify(name), Ok(Var::Ignored))
                && !service_link(&upper)
                && !TOOLS.iter().any(|tool| rest.starts_with(tool))
        })
        .collect();
    unread.sort();
    unread
}

fn env_error(var: &str, msg: String) -> ConfigError {
    ConfigError::Env {
        var: var.to_owned(),
        msg,
    }
}

/// Whether `name` has the shape of a Kubernetes service-link variable of some Service
/// `<X>`: `<X>_SERVICE_HOST`, `<X>_SERVICE_PORT`, `<X>_SERVICE_PORT_<PORT NAME>`,
/// `<X>_PORT`, `<X>_PORT_<n>_<TCP|UDP|SCTP>` and that followed by `_PROTO`, `_PORT` or
/// `_ADDR`.
pub(super) fn service_link(name: &str) -> bool {
    let parts: Vec<&str> = name.split('_').collect();
    let n = parts.len();
    let protocol = |p: &str| matches!(p, "TCP" | "UDP" | "SCTP");
    let number = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    let ends = |tail: &[&str]| n > tail.len() && parts[n - tail.len()..] == *tail;
    // `<X>_SERVICE_PORT_<PORT NAME>`: the port's name may hold underscores itself
    let named_port = (1..n.saturating_sub(1))
        .any(|i| parts[i] == "SERVICE" && parts[i + 1] == "PORT" && !parts[0].is_empty());
    ends(&["SERVICE", "HOST"])
        || named_port
        || ends(&["PORT"])
        || (n > 3 && parts[n - 3] == "PORT" && number(parts[n - 2]) && protocol(parts[n - 1]))
        || (n > 4
            && parts[n - 4] == "PORT"
            && number(parts[n - 3])
            && protocol(parts[n - 2])
            && matches!(parts[n - 1], "PROTO" | "PORT" | "ADDR"))
}

/// The configuration variables of an environment: the names to read as values, and
/// the secrets read from files, as (`section.key`, content).
#[derive(Default)]
pub(super) struct Scan {
    pub(super) read: BTreeSet<String>,
    pub(super) files: Vec<(String, String)>,
}

impl Scan {
    pub(super) fn of(
        vars: impl IntoIterator<Item = (OsString, OsString)>,
    ) -> Result<Self, ConfigError> {
        let keys = Keys::of_config();
        let mut scan = Scan::default();
        let mut from_value = BTreeMap::new();
        let mut from_file = BTreeMap::new();
        for (name, value) in vars {
            // figment reads only variables whose names and values are UTF-8, too
            let Some(name) = name.to_str() else { continue };
            match keys.classify(name)? {
                Var::Ignored => {}
                Var::Key(key) => {
                    scan.read.insert(name[PREFIX.len()..].to_ascii_lowercase());
                    // empty counts as unset beside a file (compose's `${VAR:-}`)
                    if !value.is_empty() {
                        from_value.insert(key, name.to_owned());
                    }
                }
                Var::File(key) => {
                    from_file.insert(key, (name.to_owned(), value));
                }
            }
        }
        for (key, (name, path)) in from_file {
            if let Some(other) = from_value.get(&key) {
                return Err(env_error(
                    &name,
                    format!("{other} is set as well: set one of them, not both"),
                ));
            }
            scan.files.push((key, read_secret(&name, &path)?));
        }
        Ok(scan)
    }
}

/// The secret in the file `path`, less its trailing line break (what `echo` and
/// most editors leave). Errors name the variable and the file, never the content.
fn read_secret(var: &str, path: &OsString) -> Result<String, ConfigError> {
    let shown = std::path::Path::new(path).display().to_string();
    let bytes = std::fs::read(path)
        .map_err(|e| env_error(var, format!("cannot read the file {shown}: {e}")))?;
    let text = String::from_utf8(bytes)
        .map_err(|_| env_error(var, format!("the file {shown} is not UTF-8 text")))?;
    let secret = text.trim_end_matches(['\n', '\r']);
    if secret.is_empty() {
        return Err(env_error(var, format!("the file {shown} is empty")));
    }
    Ok(secret.to_owned())
}

/// A map from YAML, or from an environment variable as `entry,entry,…`, each entry read
/// by `parse` into its key and value (figment's inline `{key=value}` maps cannot hold
/// keys with dots, nor values with `/`).
pub(super) fn map_or_entries<'de, D, V>(
    d: D,
    parse: fn(&str) -> Result<(String, V), String>,
) -> Result<std::collections::BTreeMap<String, V>, D::Error>
where
    D: serde::Deserializer<'de>,
    V: serde::Deserialize<'de>,
{
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum Form<V> {
        Map(std::collections::BTreeMap<String, V>),
        Text(String),
    }
    match <Form<V> as serde::Deserialize>::deserialize(d)? {
        Form::Map(map) => Ok(map),
        Form::Text(text) => text
            .split(',')
            .map(str::trim)
            .filter(|entry| !entry.is_empty())
            .map(|entry| parse(entry).map_err(serde::de::Error::custom))
            .collect(),
    }
}
