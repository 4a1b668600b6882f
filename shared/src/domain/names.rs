//! Repository names as a git host allows them. The API (import, rename, the admin's
//! filters) and `stasisctl` check the same rules, since a name becomes a directory under
//! `storage.root`.

pub const MAX_NAME_LEN: usize = 100;

/// ASCII letters, digits, `.`, `-`, `_`; 1 to 100 characters; no leading dot or dash,
/// no `..`, no `.git` suffix (the bare directory adds it). The error says which rule.
pub fn check_repo_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err("name must be 1 to 100 characters");
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
    {
        return Err("name may contain only letters, digits, '.', '-' and '_'");
    }
    if name.starts_with(['.', '-']) || name.contains("..") || name.ends_with(".git") {
        return Err("name may not start with '.' or '-', contain '..' or end in '.git'");
    }
    Ok(())
}

/// A repository's full name that is not `owner/name`. Each caller words it for its
/// audience (an API error code, a command's message).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not owner/name")]
pub struct NotFullName(pub String);

/// `owner/name` split in two: both parts non-empty and exactly one `/`. Only the shape
/// is checked: a lookup by these names finds the repository or nothing.
pub fn split_repo(full: &str) -> Result<(String, String), NotFullName> {
    match full.split_once('/') {
        Some((owner, name)) if !owner.is_empty() && !name.is_empty() && !name.contains('/') => {
            Ok((owner.to_owned(), name.to_owned()))
        }
        _ => Err(NotFullName(full.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::{check_repo_name, split_repo, NotFullName};

    #[test]
    fn a_full_name_is_one_owner_and_one_name() {
        assert_eq!(
            split_repo("alice/my-repo"),
            Ok(("alice".to_owned(), "my-repo".to_owned()))
        );
        for bad in ["", "alice", "/x", "alice/", "a/b/c", "/"] {
            assert_eq!(split_repo(bad), Err(NotFullName(bad.to_owned())), "{bad:?}");
        }
    }

    #[test]
    fn names_that_could_leave_the_owner_s_directory_are_refused() {
        for bad in [
            "",
            "..",
            ".hidden",
            "-x",
            "a/b",
            "a..b",
            "x.git",
            "ä",
            &"n".repeat(101),
        ] {
            assert!(check_repo_name(bad).is_err(), "{bad:?} accepted");
        }
        for good in ["a", "my-repo", "v1.2_x", &"n".repeat(100)] {
            assert!(check_repo_name(good).is_ok(), "{good:?} refused");
        }
    }
}
