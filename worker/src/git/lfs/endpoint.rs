//! Where a mirror's LFS API is, derived from its clone URL exactly as git-lfs derives it
//! (`lfsapi/endpoint_finder.go`): one trailing `/` dropped, then `/info/lfs` after a path
//! ending in `.git`, `.git/info/lfs` after any other. For ssh and git:// remotes git-lfs
//! talks HTTPS to the same host and path; for ssh it first asks the upstream with
//! `git-lfs-authenticate` ([`super::ssh`]), and this is its fallback.

use reqwest::header::HeaderMap;
use url::Url;

use super::LfsError;

/// The batch API's base URL, without credentials, and the credentials the clone URL
/// carried (user, password), which go only to this URL's host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub url: Url,
    pub credentials: Option<(String, String)>,
    /// Headers every batch request carries: what `git-lfs-authenticate` answered for an
    /// ssh upstream (its `Authorization`), marked sensitive so no debug output shows them.
    pub header: HeaderMap,
}

impl Endpoint {
    pub fn from_clone_url(raw: &str) -> Result<Endpoint, LfsError> {
        let mut url = Url::parse(raw).map_err(|_| LfsError::NoEndpoint)?;
        let credentials = (!url.username().is_empty()).then(|| {
            let decode = |s: &str| {
                percent_encoding::percent_decode_str(s)
                    .decode_utf8_lossy()
                    .into_owned()
            };
            (decode(url.username()), decode(url.password().unwrap_or("")))
        });
        match url.scheme() {
            "http" | "https" => {}
            "ssh" | "git" => {
                let host = url.host_str().ok_or(LfsError::NoEndpoint)?.to_owned();
                let path = url.path().to_owned();
                url = Url::parse(&format!("https://{host}{path}"))
                    .map_err(|_| LfsError::NoEndpoint)?;
                return Ok(Endpoint {
                    url: with_lfs_path(url),
                    credentials: None,
                    header: HeaderMap::new(),
                });
            }
            _ => return Err(LfsError::NoEndpoint),
        }
        let _ = url.set_username("");
        let _ = url.set_password(None);
        url.set_query(None);
        url.set_fragment(None);
        Ok(Endpoint {
            url: with_lfs_path(url),
            credentials,
            header: HeaderMap::new(),
        })
    }

    /// `<endpoint>/objects/batch`.
    pub fn batch_url(&self) -> Url {
        let mut url = self.url.clone();
        let path = format!("{}/objects/batch", url.path());
        url.set_path(&path);
        url
    }
}

/// `url` with git-lfs's `/info/lfs` (after `.git`) or `.git/info/lfs` appended.
pub(super) fn with_lfs_path(mut url: Url) -> Url {
    let path = url.path();
    let path = path.strip_suffix('/').unwrap_or(path);
    let path = if path.ends_with(".git") {
        format!("{path}/info/lfs")
    } else {
        format!("{path}.git/info/lfs")
    };
    url.set_path(&path);
    url
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(raw: &str) -> String {
        Endpoint::from_clone_url(raw).unwrap().url.to_string()
    }

    #[test]
    fn derived_as_git_lfs_derives_it() {
        assert_eq!(
            endpoint("https://example.com/group/repo"),
            "https://example.com/group/repo.git/info/lfs"
        );
        assert_eq!(
            endpoint("https://example.com/group/repo.git"),
            "https://example.com/group/repo.git/info/lfs"
        );
        assert_eq!(
            endpoint("https://example.com/group/repo/"),
            "https://example.com/group/repo.git/info/lfs"
        );
        assert_eq!(
            endpoint("http://127.0.0.1:8080/r.git/"),
            "http://127.0.0.1:8080/r.git/info/lfs"
        );
        assert_eq!(
            endpoint("ssh://git@example.com/group/repo.git"),
            "https://example.com/group/repo.git/info/lfs"
        );
        assert_eq!(
            endpoint("git://example.com/repo"),
            "https://example.com/repo.git/info/lfs"
        );
        assert_eq!(
            Endpoint::from_clone_url("https://example.com/r.git")
                .unwrap()
                .batch_url()
                .as_str(),
            "https://example.com/r.git/info/lfs/objects/batch"
        );
    }

    #[test]
    fn credentials_are_split_off() {
        let e = Endpoint::from_clone_url("https://ci%40x:s3cr%2Ft@example.com/r.git").unwrap();
        assert_eq!(e.url.as_str(), "https://example.com/r.git/info/lfs");
        assert_eq!(e.credentials, Some(("ci@x".into(), "s3cr/t".into())));
    }

    #[test]
    fn local_paths_have_no_lfs_api() {
        assert!(Endpoint::from_clone_url("file:///srv/r.git").is_err());
        assert!(Endpoint::from_clone_url("/srv/r.git").is_err());
    }
}
