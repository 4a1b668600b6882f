//! Repository names as a git host allows them. The API (import, rename) and `stasisctl`
//! check the same rule, since a name becomes a directory under `storage.root`.

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

#[cfg(test)]
mod tests {
    use super::check_repo_name;

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
