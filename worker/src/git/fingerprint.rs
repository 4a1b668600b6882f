//! grokmirror's fingerprint of a repository's refs (`get_repo_fingerprint` in grokmirror
//! 2.0.12): the SHA-1 of `git show-ref`'s output, which lists every ref under `refs/`
//! (peeled tags not shown) as `<object id> <name>` lines in name order, each ending in
//! `\n`. No ref, no fingerprint. Kept equal to what an upstream's manifest publishes, so
//! a mirror whose fingerprint matches it holds exactly upstream's refs.

use std::collections::BTreeMap;

use git2::Oid;
use sha1::{Digest, Sha1};

/// The fingerprint of `refs` (name → object; a zero id, a symbolic ref, is left out).
/// A `BTreeMap` iterates in byte order of the names, as `git show-ref` prints them.
pub fn fingerprint(refs: &BTreeMap<String, Oid>) -> Option<String> {
    let mut hash = Sha1::new();
    let mut any = false;
    for (name, oid) in refs {
        if oid.is_zero() || !name.starts_with("refs/") {
            continue;
        }
        any = true;
        hash.update(format!("{oid} {name}\n").as_bytes());
    }
    any.then(|| hex::encode(hash.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What grok-manifest (grokmirror 2.0.12) published for a bare repository with these
    /// two refs.
    #[test]
    fn equals_what_grok_manifest_publishes() {
        let oid = Oid::from_str("5e91b2c9bcbf0177ad8b268e9f28574fcb3419c2").unwrap();
        let refs = BTreeMap::from([
            ("refs/tags/v1".to_owned(), oid),
            ("refs/heads/main".to_owned(), oid),
        ]);
        assert_eq!(
            fingerprint(&refs).as_deref(),
            Some("dd1f2883cc5013c4a9389e0b25ad997fe32d74f1")
        );
    }

    #[test]
    fn no_refs_no_fingerprint() {
        assert_eq!(fingerprint(&BTreeMap::new()), None);
    }
}
