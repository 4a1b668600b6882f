//! Upstream manifests (grokmirror's `manifest.js.gz`: repository path → fingerprint of
//! its refs, modified time, HEAD): read once per tick per configured host with a
//! conditional GET, so that the due mirrors of that host whose refs' fingerprint equals
//! the manifest's are moved on without a job, and only the others are enqueued. A
//! manifest that cannot be read (unreachable, an error status, not a manifest) vouches
//! for nothing: its host's mirrors are synced as without one, and each mirror is listed
//! by its own sync at least every `mirror.manifest_max_skip` whatever a manifest says.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{IF_MODIFIED_SINCE, LAST_MODIFIED};
use reqwest::StatusCode;
use serde::Deserialize;
use sqlx::PgPool;
use stasis_shared::domain::lifecycle::manifest;
use stasis_shared::git::url::resolve::PolicyResolver;
use stasis_shared::git::url::{check_upstream, upstream_host};
use stasis_shared::Config;
use tracing::{debug, warn};
use uuid::Uuid;

use crate::error::SchedulerError;

/// Bounds on what a manifest's host can make the scheduler hold: kernel.org's is a few
/// MiB gzipped for some 100,000 repositories.
const MAX_COMPRESSED: u64 = 64 << 20;
const MAX_JSON: u64 = 512 << 20;
const TIMEOUT: Duration = Duration::from_secs(30);

/// The manifests of the configured hosts, as last read.
pub struct Manifests {
    /// Why there is none, when the vetted client could not be built: then no manifest is
    /// read (a default client would skip the address policy) and every mirror is synced.
    client: Result<reqwest::Client, String>,
    allow_local_network: bool,
    dns_server: Option<std::net::SocketAddr>,
    hosts: BTreeMap<String, Manifest>,
}

struct Manifest {
    url: String,
    /// The last answer's `Last-Modified`, sent back as `If-Modified-Since`.
    last_modified: Option<String>,
    /// Path → fingerprint; `None` while the manifest cannot be read.
    fingerprints: Option<Arc<HashMap<String, String>>>,
}

#[derive(Deserialize)]
struct Entry {
    #[serde(default)]
    fingerprint: Option<String>,
}

/// One round's outcome, for the tick's report.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ManifestRound {
    /// Manifest requests made (one per configured host).
    pub requests: u32,
    /// Due mirrors moved on without a job.
    pub skipped: u64,
}

impl Manifests {
    pub fn new(cfg: &Config) -> Self {
        let resolver = PolicyResolver {
            allow_local_network: cfg.mirror.allow_local_network,
            dns_server: cfg.mirror.dns_server,
        };
        let client = reqwest::Client::builder()
            .timeout(TIMEOUT)
            // a redirect would reach a URL nobody vetted: the manifest is read where
            // the operator said, or not at all
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .dns_resolver(Arc::new(resolver))
            .user_agent(concat!("stasis-mirror-sync/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("no HTTP client for manifests: {e}"));
        let hosts = cfg
            .mirror
            .manifests
            .iter()
            .map(|(host, url)| {
                let manifest = Manifest {
                    url: url.clone(),
                    last_modified: None,
                    fingerprints: None,
                };
                (host.to_ascii_lowercase(), manifest)
            })
            .collect();
        Self {
            client,
            allow_local_network: cfg.mirror.allow_local_network,
            dns_server: cfg.mirror.dns_server,
            hosts,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty()
    }

    /// Reads every manifest (conditionally), then moves on the due mirrors they find
    /// unchanged. The caller enqueues what is still due.
    pub async fn round(
        &mut self,
        cfg: &Config,
        pool: &PgPool,
    ) -> Result<ManifestRound, SchedulerError> {
        let mut round = ManifestRound::default();
        if self.hosts.is_empty() {
            return Ok(round);
        }
        let (client, allow, dns) = (&self.client, self.allow_local_network, self.dns_server);
        for (host, manifest) in &mut self.hosts {
            round.requests += 1;
            manifest.refresh(client, allow, dns, host).await;
        }
        let candidates = manifest::candidates(pool, cfg.mirror.manifest_max_skip).await?;
        let unchanged: Vec<Uuid> = candidates
            .iter()
            .filter(|c| self.vouches_for(&c.mirror_url, &c.refs_fingerprint))
            .map(|c| c.id)
            .collect();
        if !unchanged.is_empty() {
            round.skipped = manifest::postpone(pool, &unchanged, cfg.mirror.sync_interval).await?;
        }
        metrics::counter!("stasis_manifest_skipped_total").increment(round.skipped);
        Ok(round)
    }

    /// The manifest of `mirror_url`'s host lists its path with this fingerprint.
    fn vouches_for(&self, mirror_url: &str, fingerprint: &str) -> bool {
        let Some(fingerprints) = self
            .hosts
            .get(&upstream_host(mirror_url))
            .and_then(|m| m.fingerprints.as_ref())
        else {
            return false;
        };
        let Ok(url) = url::Url::parse(mirror_url) else {
            return false;
        };
        let path = url.path().trim_end_matches('/');
        // grokmirror keys repositories by their path under its toplevel, `.git` and all;
        // a clone URL may leave the suffix out
        let listed = fingerprints
            .get(path)
            .or_else(|| fingerprints.get(&format!("{path}.git")))
            .or_else(|| path.strip_suffix(".git").and_then(|p| fingerprints.get(p)));
        listed.is_some_and(|f| f == fingerprint)
    }
}

impl Manifest {
    /// One conditional GET: a new manifest replaces the old, `304` keeps it, and any
    /// failure forgets it until a later read succeeds.
    async fn refresh(
        &mut self,
        client: &Result<reqwest::Client, String>,
        allow_local_network: bool,
        dns_server: Option<std::net::SocketAddr>,
        host: &str,
    ) {
        let result = match self.fetch(client, allow_local_network, dns_server).await {
            Ok(Fetched::NotModified) if self.fingerprints.is_some() => "not_modified",
            Ok(Fetched::NotModified) => {
                // nothing cached to keep: ask unconditionally next time
                self.last_modified = None;
                "failed"
            }
            Ok(Fetched::New(fingerprints, last_modified)) => {
                debug!(%host, repositories = fingerprints.len(), "manifest read");
                self.fingerprints = Some(Arc::new(fingerprints));
                self.last_modified = last_modified;
                "fetched"
            }
            Err(why) => {
                warn!(%host, error = %why, "manifest unusable; its mirrors are synced without it");
                self.fingerprints = None;
                self.last_modified = None;
                "failed"
            }
        };
        metrics::counter!("stasis_manifest_requests_total", "result" => result).increment(1);
    }

    async fn fetch(
        &self,
        client: &Result<reqwest::Client, String>,
        allow_local_network: bool,
        dns_server: Option<std::net::SocketAddr>,
    ) -> Result<Fetched, String> {
        // the address policy of upstreams: an address literal is checked here, a name
        // where the client resolves it
        check_upstream(&self.url, allow_local_network, dns_server)
            .await
            .map_err(|e| e.to_string())?;
        let mut request = client.as_ref().map_err(Clone::clone)?.get(&self.url);
        if let (Some(since), true) = (&self.last_modified, self.fingerprints.is_some()) {
            request = request.header(IF_MODIFIED_SINCE, since);
        }
        let mut response = request
            .send()
            .await
            .map_err(|e| e.without_url().to_string())?;
        match response.status() {
            StatusCode::OK => {}
            StatusCode::NOT_MODIFIED => return Ok(Fetched::NotModified),
            status => return Err(format!("HTTP {}", status.as_u16())),
        }
        let last_modified = response
            .headers()
            .get(LAST_MODIFIED)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| e.without_url().to_string())?
        {
            if (body.len() + chunk.len()) as u64 > MAX_COMPRESSED {
                return Err(format!("manifest larger than {MAX_COMPRESSED} bytes"));
            }
            body.extend_from_slice(&chunk);
        }
        let fingerprints = tokio::task::spawn_blocking(move || parse(&body))
            .await
            .map_err(|e| e.to_string())??;
        Ok(Fetched::New(fingerprints, last_modified))
    }
}

enum Fetched {
    NotModified,
    New(HashMap<String, String>, Option<String>),
}

/// A manifest's body, gzipped (as grokmirror writes it) or plain JSON.
fn parse(body: &[u8]) -> Result<HashMap<String, String>, String> {
    let entries: HashMap<String, Entry> = if body.starts_with(&[0x1f, 0x8b]) {
        let json = flate2::read::GzDecoder::new(body).take(MAX_JSON);
        serde_json::from_reader(json).map_err(|e| format!("not a manifest: {e}"))?
    } else {
        serde_json::from_slice(body).map_err(|e| format!("not a manifest: {e}"))?
    };
    Ok(entries
        .into_iter()
        .filter_map(|(path, entry)| Some((path, entry.fingerprint?)))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_grok_manifest_is_read_gzipped_or_plain() {
        let json = br#"{"/a/r1.git": {"modified": 1796016276, "fingerprint": "dd1f2883cc5013c4a9389e0b25ad997fe32d74f1", "head": "ref: refs/heads/master", "reference": null}, "/empty.git": {"modified": 1, "fingerprint": null}}"#;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        std::io::Write::write_all(&mut gz, json).unwrap();
        for body in [gz.finish().unwrap(), json.to_vec()] {
            let read = parse(&body).expect("a manifest");
            assert_eq!(read.len(), 1);
            assert_eq!(
                read["/a/r1.git"],
                "dd1f2883cc5013c4a9389e0b25ad997fe32d74f1"
            );
        }
        assert!(parse(b"<html>").is_err());
        assert!(parse(&[0x1f, 0x8b, 0, 0]).is_err());
    }
}
