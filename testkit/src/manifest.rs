//! An upstream's grokmirror manifest served over HTTP on loopback: gzipped JSON keyed by
//! repository path, each entry with the fingerprint grok-manifest (grokmirror 2.0.12)
//! computes (SHA-1 of `git show-ref`), `modified`, `head` and `reference`. Answers
//! `304 Not Modified` to an `If-Modified-Since` equal to its `Last-Modified`, and logs
//! every request.

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::response::Response;
use axum::Router;
use serde_json::json;
use sha1::{Digest, Sha1};

use crate::background::Background;

pub struct ManifestServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    _server: Background,
}

#[derive(Default)]
struct Shared {
    /// The gzipped manifest and its `Last-Modified`; `None`: 404.
    published: Mutex<Option<(Vec<u8>, String)>>,
    versions: Mutex<i64>,
    log: Mutex<Vec<Served>>,
}

/// One request: the `If-Modified-Since` it sent and the status it got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Served {
    pub if_modified_since: Option<String>,
    pub status: u16,
}

/// grokmirror's fingerprint of the repository at `git_dir`, from `git show-ref` itself.
pub fn grok_fingerprint(git_dir: &Path) -> Option<String> {
    let out = Command::new("git")
        .arg("--git-dir")
        .arg(git_dir)
        .arg("show-ref")
        .output()
        .expect("run git show-ref");
    let text = String::from_utf8_lossy(&out.stdout);
    // grokmirror strips the output and adds back the final newline
    let text = text.trim();
    (!text.is_empty()).then(|| hex::encode(Sha1::digest(format!("{text}\n").as_bytes())))
}

impl ManifestServer {
    pub fn start() -> Self {
        let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared::default());
        let app = Router::new().fallback(serve).with_state(shared.clone());
        let server = Background::spawn("manifest-http", move || async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
            let _ = axum::serve(listener, app).await;
        });
        Self {
            addr,
            shared,
            _server: server,
        }
    }

    /// `http://127.0.0.1:<port>/manifest.js.gz`.
    pub fn url(&self) -> String {
        format!("http://{}/manifest.js.gz", self.addr)
    }

    /// Publishes a manifest of `repos` (path key such as `/r.git`, git directory), as
    /// grok-manifest writes it, with a `Last-Modified` later than any before.
    pub fn publish(&self, repos: &[(&str, &Path)]) {
        let mut entries = serde_json::Map::new();
        for (key, git_dir) in repos {
            entries.insert(
                (*key).to_owned(),
                json!({
                    "modified": chrono::Utc::now().timestamp(),
                    "fingerprint": grok_fingerprint(git_dir),
                    "head": "ref: refs/heads/main",
                    "reference": null,
                }),
            );
        }
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(serde_json::Value::Object(entries).to_string().as_bytes())
            .unwrap();
        self.publish_gz(gz.finish().unwrap());
    }

    /// Publishes `body` (a gzipped manifest, e.g. one `grok-manifest` wrote) as the new
    /// version.
    pub fn publish_gz(&self, body: Vec<u8>) {
        let mut versions = self.shared.versions.lock().unwrap();
        *versions += 1;
        // HTTP dates count seconds: each version a second later than the one before
        let at = chrono::Utc::now() + chrono::Duration::seconds(*versions);
        let last_modified = at.format("%a, %d %b %Y %H:%M:%S GMT").to_string();
        *self.shared.published.lock().unwrap() = Some((body, last_modified));
    }

    /// From now on the manifest answers 404.
    pub fn remove(&self) {
        *self.shared.published.lock().unwrap() = None;
    }

    pub fn requests(&self) -> Vec<Served> {
        self.shared.log.lock().unwrap().clone()
    }
}

async fn serve(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let since = req
        .headers()
        .get(header::IF_MODIFIED_SINCE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let published = shared.published.lock().unwrap().clone();
    let response = match published {
        None => Response::builder()
            .status(StatusCode::NOT_FOUND)
            .body(Body::empty()),
        Some((_, modified)) if since.as_deref() == Some(modified.as_str()) => Response::builder()
            .status(StatusCode::NOT_MODIFIED)
            .header(header::LAST_MODIFIED, modified)
            .body(Body::empty()),
        Some((body, modified)) => Response::builder()
            .header(header::LAST_MODIFIED, modified)
            .header(header::CONTENT_TYPE, "application/gzip")
            .body(Body::from(body)),
    }
    .unwrap();
    shared.log.lock().unwrap().push(Served {
        if_modified_since: since,
        status: response.status().as_u16(),
    });
    response
}
