//! Where mirrors live: named storages (`storage.*`), each a filesystem that its own
//! workers mount (`worker.storages`). `storage.root` alone is the one storage `default`,
//! so an installation that never named a storage keeps its layout and its Redis lanes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::ConfigError;

/// The storage `storage.root` stands for.
pub const DEFAULT_STORAGE: &str = "default";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    /// The root of the single storage `default`, used while `storages` is empty.
    pub root: PathBuf,
    /// Named storages. In the environment:
    /// `STASIS_STORAGE_STORAGES=a=/srv/a,b=/srv/b;weight=2;read_only`.
    #[serde(deserialize_with = "storage_map")]
    pub storages: BTreeMap<String, NamedStorage>,
    /// A storage with less free space than this (as its workers last reported) takes no
    /// new mirrors; its mirrors keep syncing.
    pub min_free_bytes: u64,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            root: PathBuf::from("./data/mirrors"),
            storages: BTreeMap::new(),
            min_free_bytes: 10 * 1024 * 1024 * 1024,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamedStorage {
    pub root: PathBuf,
    /// Share of new mirrors, against the other storages' weights; 0 places none.
    #[serde(default = "one")]
    pub weight: u32,
    /// Being drained: no new mirrors, its mirrors keep syncing until moved off.
    #[serde(default)]
    pub read_only: bool,
}

fn one() -> u32 {
    1
}

/// One storage as every process sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Storage<'a> {
    pub name: &'a str,
    pub root: &'a Path,
    pub weight: u32,
    pub read_only: bool,
}

impl StorageConfig {
    /// Every configured storage, by name.
    pub fn all(&self) -> Vec<Storage<'_>> {
        if self.storages.is_empty() {
            return vec![Storage {
                name: DEFAULT_STORAGE,
                root: &self.root,
                weight: 1,
                read_only: false,
            }];
        }
        self.storages
            .iter()
            .map(|(name, s)| Storage {
                name,
                root: &s.root,
                weight: s.weight,
                read_only: s.read_only,
            })
            .collect()
    }

    pub fn get(&self, name: &str) -> Option<Storage<'_>> {
        self.all().into_iter().find(|s| s.name == name)
    }

    /// The root of storage `name`, if it is configured.
    pub fn root_of(&self, name: &str) -> Option<&Path> {
        self.get(name).map(|s| s.root)
    }

    pub fn names(&self) -> Vec<String> {
        self.all().iter().map(|s| s.name.to_owned()).collect()
    }

    pub(super) fn validate(&self, served: &[String]) -> Result<(), ConfigError> {
        let invalid = |key, msg: String| Err(ConfigError::Invalid { key, msg });
        for name in self.storages.keys() {
            if !valid_name(name) {
                return invalid(
                    "storage.storages",
                    format!(
                        "`{name}`: a storage's name is 1 to 32 lowercase letters, digits or `-`"
                    ),
                );
            }
        }
        for name in served {
            if self.get(name).is_none() {
                return invalid(
                    "worker.storages",
                    format!(
                        "`{name}` is not a configured storage (configured: {})",
                        self.names().join(", ")
                    ),
                );
            }
        }
        Ok(())
    }
}

/// A storage name as it appears in a queue name, a metric label and a directory.
pub fn valid_name(name: &str) -> bool {
    (1..=32).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
}

/// A map from YAML, or `name=root[;weight=N][;read_only],…` from an environment
/// variable.
fn storage_map<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, NamedStorage>, D::Error> {
    super::env::map_or_entries(d, parse_entry)
}

fn parse_entry(entry: &str) -> Result<(String, NamedStorage), String> {
    let mut parts = entry.split(';').map(str::trim);
    let first = parts.next().unwrap_or_default();
    let Some((name, root)) = first.split_once('=') else {
        return Err(format!("`{entry}` is not name=root[;weight=N][;read_only]"));
    };
    let mut storage = NamedStorage {
        root: PathBuf::from(root.trim()),
        weight: 1,
        read_only: false,
    };
    for option in parts {
        match option.split_once('=') {
            None if option == "read_only" => storage.read_only = true,
            Some(("weight", n)) => {
                storage.weight = n
                    .trim()
                    .parse()
                    .map_err(|_| format!("`{entry}`: weight `{n}` is not a whole number"))?
            }
            _ => return Err(format!("`{entry}`: unknown option `{option}`")),
        }
    }
    Ok((name.trim().to_owned(), storage))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_alone_is_the_default_storage() {
        let cfg = StorageConfig::default();
        let all = cfg.all();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].name, DEFAULT_STORAGE);
        assert_eq!(all[0].root, Path::new("./data/mirrors"));
        assert_eq!(cfg.root_of("default"), Some(Path::new("./data/mirrors")));
        assert_eq!(cfg.root_of("a"), None);
    }

    #[test]
    fn entries_from_the_environment() {
        let (name, s) = parse_entry("b=/srv/b;weight=2;read_only").unwrap();
        assert_eq!(name, "b");
        assert_eq!(s.root, PathBuf::from("/srv/b"));
        assert_eq!((s.weight, s.read_only), (2, true));
        let (_, s) = parse_entry("a=/srv/a").unwrap();
        assert_eq!((s.weight, s.read_only), (1, false));
        assert!(parse_entry("a").unwrap_err().contains("name=root"));
        assert!(parse_entry("a=/x;weight=two")
            .unwrap_err()
            .contains("weight"));
        assert!(parse_entry("a=/x;fast").unwrap_err().contains("fast"));
    }

    #[test]
    fn names_are_checked() {
        for good in ["a", "disk-2", "eu1"] {
            assert!(valid_name(good), "{good}");
        }
        for bad in ["", "A", "a b", "a:b", "-a", "a/b", &"x".repeat(33)] {
            assert!(!valid_name(bad), "{bad}");
        }
        let mut cfg = StorageConfig::default();
        cfg.storages.insert(
            "a".into(),
            NamedStorage {
                root: "/a".into(),
                weight: 1,
                read_only: false,
            },
        );
        assert!(cfg.validate(&["a".into()]).is_ok());
        let err = cfg.validate(&["b".into()]).unwrap_err().to_string();
        assert!(err.contains("`b` is not a configured storage"), "{err}");
        cfg.storages.insert("Bad".into(), cfg.storages["a"].clone());
        assert!(cfg.validate(&[]).is_err());
    }
}
