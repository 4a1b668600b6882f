//! Git LFS pointer files (<https://github.com/git-lfs/git-lfs/blob/main/docs/spec.md>):
//! `key value` lines sorted by key, `version` first, with at least `oid sha256:<64 hex>`
//! and `size <bytes>`. git-lfs never writes one of 1024 bytes or more, so larger blobs
//! are not looked at.

/// Blobs this large or larger are never pointers.
pub const MAX_POINTER_SIZE: usize = 1024;

const VERSION: &str = "version https://git-lfs.github.com/spec/v1";
/// What git-lfs before 1.0 wrote; it still reads them.
const VERSION_PRE_RELEASE: &str = "version https://hawser.github.com/spec/v1";

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pointer {
    /// Lowercase hex SHA-256 of the object's content.
    pub oid: String,
    pub size: u64,
}

impl Pointer {
    /// The pointer a blob is, if it is one. Anything else (a small text file that only
    /// looks alike, a malformed line) is not: a mirror must not fail on file contents.
    pub fn parse(blob: &[u8]) -> Option<Pointer> {
        if blob.len() >= MAX_POINTER_SIZE {
            return None;
        }
        let text = std::str::from_utf8(blob).ok()?;
        let mut lines = text.strip_suffix('\n')?.split('\n');
        let version = lines.next()?;
        if version != VERSION && version != VERSION_PRE_RELEASE {
            return None;
        }
        let (mut oid, mut size) = (None, None);
        for line in lines {
            let (key, value) = line.split_once(' ')?;
            match key {
                "oid" => oid = Some(value.strip_prefix("sha256:")?),
                "size" => size = Some(value),
                // extensions and later keys are allowed by the spec
                _ if !key.is_empty() => {}
                _ => return None,
            }
        }
        let oid = oid?;
        let is_hex = |c: char| c.is_ascii_digit() || ('a'..='f').contains(&c);
        if oid.len() != 64 || !oid.chars().all(is_hex) {
            return None;
        }
        let size = size?;
        if size.is_empty() || !size.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        Some(Pointer {
            oid: oid.to_owned(),
            size: size.parse().ok()?,
        })
    }

    /// Where git-lfs keeps the object in a bare repository: `lfs/objects/ab/cd/<oid>`.
    pub fn relative_path(&self) -> std::path::PathBuf {
        [
            "lfs",
            "objects",
            &self.oid[0..2],
            &self.oid[2..4],
            &self.oid,
        ]
        .iter()
        .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OID: &str = "4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393";

    #[test]
    fn a_pointer_git_lfs_writes_is_read() {
        let blob = format!("{VERSION}\noid sha256:{OID}\nsize 12345\n");
        let pointer = Pointer::parse(blob.as_bytes()).expect("a pointer");
        assert_eq!(pointer.oid, OID);
        assert_eq!(pointer.size, 12345);
        assert_eq!(
            pointer.relative_path(),
            std::path::PathBuf::from(format!("lfs/objects/4d/7a/{OID}"))
        );
    }

    #[test]
    fn extension_lines_are_allowed() {
        let blob = format!("{VERSION}\next-0-foo sha256:{OID}\noid sha256:{OID}\nsize 1\n");
        assert!(Pointer::parse(blob.as_bytes()).is_some());
    }

    #[test]
    fn look_alikes_are_not_pointers() {
        for blob in [
            format!("{VERSION}\noid sha256:{OID}\nsize 12\n").replace("size 12", "size -1"),
            format!("{VERSION}\noid sha256:{}\nsize 12\n", &OID[..63]),
            format!("{VERSION}\noid sha256:{}\nsize 12\n", OID.to_uppercase()),
            format!("{VERSION}\noid sha1:{OID}\nsize 12\n"),
            format!("{VERSION}\noid sha256:{OID}\n"),
            format!("{VERSION}\noid sha256:{OID}\nsize 12"),
            format!("version https://example.com/v1\noid sha256:{OID}\nsize 12\n"),
            format!("{VERSION}\noid sha256:{OID}\nsize 12\n\n"),
            format!("{VERSION}\noid sha256:../../{}\nsize 12\n", &OID[6..]),
            "hello\n".to_owned(),
        ] {
            assert_eq!(Pointer::parse(blob.as_bytes()), None, "{blob:?}");
        }
        let large = format!(
            "{VERSION}\noid sha256:{OID}\nsize 12\nx-pad {}\n",
            "a".repeat(1000)
        );
        assert_eq!(Pointer::parse(large.as_bytes()), None);
    }
}
