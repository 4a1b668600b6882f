//! Selective sync: which of upstream's refs a mirror keeps, as git-style patterns with
//! at most one `*` (which, as in refspecs, also matches `/`).

/// Empty `include` selects every ref; an `exclude` match always wins.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RefSelection {
    pub include: Vec<String>,
    pub exclude: Vec<String>,
}

impl RefSelection {
    pub fn is_everything(&self) -> bool {
        self.include.is_empty() && self.exclude.is_empty()
    }

    pub fn selects(&self, name: &str) -> bool {
        (self.include.is_empty() || self.include.iter().any(|p| matches(p, name)))
            && !self.exclude.iter().any(|p| matches(p, name))
    }
}

fn matches(pattern: &str, name: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == name,
        Some((prefix, suffix)) => {
            name.len() >= prefix.len() + suffix.len()
                && name.starts_with(prefix)
                && name.ends_with(suffix)
        }
    }
}

/// Why a pattern is refused, or `None` when it is a usable ref pattern.
pub fn invalid_pattern(pattern: &str) -> Option<&'static str> {
    if !pattern.starts_with("refs/") {
        return Some("must start with refs/");
    }
    if pattern.len() > 255 {
        return Some("is longer than 255 characters");
    }
    if pattern.matches('*').count() > 1 {
        return Some("may contain one * at most");
    }
    if pattern.ends_with('/') || pattern.contains("//") || pattern.contains("..") {
        return Some("is not a ref name");
    }
    if pattern
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || "~^:?[\\".contains(c))
    {
        return Some("contains a character refs cannot have");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn include_then_exclude_with_one_star() {
        let sel = RefSelection {
            include: vec!["refs/heads/release/*".into(), "refs/tags/*".into()],
            exclude: vec!["refs/tags/*-rc".into(), "refs/heads/release/old".into()],
        };
        assert!(sel.selects("refs/heads/release/1.0"));
        assert!(sel.selects("refs/heads/release/team/2.0"), "* spans /");
        assert!(sel.selects("refs/tags/v1.0"));
        assert!(!sel.selects("refs/tags/v2-rc"));
        assert!(!sel.selects("refs/heads/main"));
        assert!(!sel.selects("refs/heads/release/old"));
        assert!(!sel.selects("refs/pull/1/head"));
        let no_pulls = RefSelection {
            include: vec![],
            exclude: vec!["refs/pull/*".into()],
        };
        assert!(no_pulls.selects("refs/heads/main") && !no_pulls.selects("refs/pull/7/merge"));
        assert!(RefSelection::default().selects("refs/anything"));
    }

    #[test]
    fn patterns_are_checked() {
        for good in ["refs/heads/*", "refs/tags/v*", "refs/heads/main"] {
            assert_eq!(invalid_pattern(good), None, "{good}");
        }
        for bad in [
            "heads/*",
            "refs/*/*",
            "refs/heads/",
            "refs/a..b",
            "refs/x y",
            "refs/a:b",
        ] {
            assert!(invalid_pattern(bad).is_some(), "{bad}");
        }
    }
}
