//! Git LFS on the test kit's smart-HTTP server ([`GitHttpServer::serve_lfs`]): the batch
//! API (`POST …/info/lfs/objects/batch`, download operation, basic transfer) answering
//! with an href per object, and those hrefs serving the real objects from a git-lfs
//! object directory on disk (`<dir>/ab/cd/<oid>`, as `git lfs` stores them in an
//! upstream's `.git/lfs/objects`). A test can point the hrefs at another server, or
//! make one object's download answer other bytes, to check what a client refuses.
//!
//! Also: commits with real LFS pointers made by `git lfs` itself ([`commit_lfs_file`]),
//! and a checkout of a mirror by `git lfs` ([`clone_with_lfs`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use axum::body::Body;
use axum::http::{header, StatusCode};
use axum::response::Response;
use serde_json::{json, Value};

use crate::git::{git, Upstream};

/// The header every download href asks for: a download without it is refused, so a
/// client that drops the batch answer's headers fails.
pub const DOWNLOAD_HEADER: (&str, &str) = ("x-stasis-lfs-token", "from-the-batch-answer");

/// Where download hrefs point: this server, unless a test names another origin.
pub(crate) struct LfsFiles {
    pub(crate) objects: PathBuf,
    pub(crate) href_base: Mutex<Option<String>>,
    /// oid → the bytes served instead of the object's.
    pub(crate) tampered: Mutex<HashMap<String, Vec<u8>>>,
}

impl LfsFiles {
    pub(crate) fn new(objects: &Path) -> Self {
        Self {
            objects: objects.to_owned(),
            href_base: Mutex::default(),
            tampered: Mutex::default(),
        }
    }

    fn object_path(&self, oid: &str) -> Option<PathBuf> {
        let valid = oid.len() == 64 && oid.bytes().all(|b| b.is_ascii_hexdigit());
        valid.then(|| self.objects.join(&oid[0..2]).join(&oid[2..4]).join(oid))
    }
}

/// `POST <repo>/info/lfs/objects/batch`, answered for `own_origin` (`http://ip:port`).
pub(crate) fn batch(files: &LfsFiles, own_origin: &str, body: &[u8]) -> Response {
    let Ok(request) = serde_json::from_slice::<Value>(body) else {
        return json_response(StatusCode::BAD_REQUEST, json!({"message": "bad JSON"}));
    };
    if request["operation"] != "download" {
        return json_response(
            StatusCode::UNPROCESSABLE_ENTITY,
            json!({"message": "download only"}),
        );
    }
    let base = files
        .href_base
        .lock()
        .unwrap()
        .clone()
        .unwrap_or_else(|| own_origin.to_owned());
    let empty = Vec::new();
    let objects: Vec<Value> = request["objects"]
        .as_array()
        .unwrap_or(&empty)
        .iter()
        .map(|o| {
            let oid = o["oid"].as_str().unwrap_or_default();
            let size = o["size"].as_u64().unwrap_or_default();
            match files.object_path(oid).filter(|p| p.is_file()) {
                Some(_) => json!({
                    "oid": oid, "size": size, "authenticated": true,
                    "actions": {"download": {
                        "href": format!("{base}/lfs-objects/{oid}"),
                        "header": {DOWNLOAD_HEADER.0: DOWNLOAD_HEADER.1},
                        "expires_in": 3600,
                    }},
                }),
                None => json!({
                    "oid": oid, "size": size,
                    "error": {"code": 404, "message": "Object does not exist"},
                }),
            }
        })
        .collect();
    json_response(
        StatusCode::OK,
        json!({"transfer": "basic", "objects": objects, "hash_algo": "sha256"}),
    )
}

/// `GET /lfs-objects/<oid>`: the object's bytes (or the tampered ones).
pub(crate) fn download(files: &LfsFiles, oid: &str, token: Option<&[u8]>) -> Response {
    if token != Some(DOWNLOAD_HEADER.1.as_bytes()) {
        return status(StatusCode::UNAUTHORIZED);
    }
    if let Some(bytes) = files.tampered.lock().unwrap().get(oid) {
        return Response::new(Body::from(bytes.clone()));
    }
    match files.object_path(oid).map(std::fs::read) {
        Some(Ok(bytes)) => Response::new(Body::from(bytes)),
        _ => status(StatusCode::NOT_FOUND),
    }
}

fn json_response(code: StatusCode, value: Value) -> Response {
    Response::builder()
        .status(code)
        .header(header::CONTENT_TYPE, "application/vnd.git-lfs+json")
        .body(Body::from(value.to_string()))
        .unwrap()
}

fn status(code: StatusCode) -> Response {
    Response::builder()
        .status(code)
        .body(Body::empty())
        .unwrap()
}

/// git's LFS filter, configured for one command (no global `git lfs install` needed).
const FILTER: [&str; 6] = [
    "-c",
    "filter.lfs.clean=git-lfs clean -- %f",
    "-c",
    "filter.lfs.process=git-lfs filter-process",
    "-c",
    "filter.lfs.required=true",
];

/// A file `name` (tracked by LFS through `.gitattributes`) with `content`, committed in
/// `up` by `git lfs`'s clean filter, which stores the object in `up`'s
/// `.git/lfs/objects`. Returns the pointer's oid.
pub fn commit_lfs_file(up: &Upstream, name: &str, content: &[u8]) -> String {
    let attributes = up.path.join(".gitattributes");
    let line = format!("{name} filter=lfs diff=lfs merge=lfs -text\n");
    let mut current = std::fs::read_to_string(&attributes).unwrap_or_default();
    if !current.contains(&line) {
        current.push_str(&line);
        std::fs::write(&attributes, current).unwrap();
    }
    std::fs::write(up.path.join(name), content).unwrap();
    let mut args = FILTER.to_vec();
    args.extend(["add", ".gitattributes", name]);
    git(&up.path, &args);
    git(&up.path, &["commit", "-q", "-m", name]);
    let pointer = git(&up.path, &["cat-file", "-p", &format!("HEAD:{name}")]);
    pointer
        .lines()
        .find_map(|l| l.strip_prefix("oid sha256:"))
        .unwrap_or_else(|| panic!("{name} is not an LFS pointer: {pointer}"))
        .to_owned()
}

/// Where `git lfs` keeps an upstream's objects: what [`GitHttpServer::serve_lfs`] serves.
///
/// [`GitHttpServer::serve_lfs`]: crate::http::GitHttpServer::serve_lfs
pub fn objects_dir(up: &Upstream) -> PathBuf {
    up.path.join(".git").join("lfs").join("objects")
}

/// Clones the bare `mirror` with `file://` into `dest` with git's LFS filter on: git-lfs
/// reads a `file://` remote's objects from its `lfs/objects` directly (its standalone
/// file transfer), so the checkout has real content only if the mirror holds the objects.
/// Returns whether `git clone` succeeded, and its stderr.
pub fn clone_with_lfs(mirror: &Path, dest: &Path) -> (bool, String) {
    let out = Command::new("git")
        .args(FILTER)
        .args([
            "-c",
            "filter.lfs.smudge=git-lfs smudge -- %f",
            "clone",
            "-q",
        ])
        .arg(format!("file://{}", mirror.display()))
        .arg(dest)
        .env("GIT_TERMINAL_PROMPT", "0")
        .output()
        .expect("run git clone");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
