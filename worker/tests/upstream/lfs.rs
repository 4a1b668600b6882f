//! Git LFS downloads obey the upstream policy: an href the batch API names (which may be
//! any host) and any redirect of it are vetted like the clone URL, so a "public"
//! upstream cannot make the worker fetch from an internal address.

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use stasis_testkit::git::Upstream;
use stasis_testkit::http::GitHttpServer;
use stasis_testkit::lfs::{commit_lfs_file, objects_dir};
use stasis_testkit::netns;
use stasis_worker::git::fetch::{FetchReport, StopFlag};
use stasis_worker::git::lfs::{mirror_lfs, LfsError, LfsLimits, LfsReport, LfsRequest};
use stasis_worker::git::ssh_auth::SshAccess;
use stasis_worker::git::transport::NetworkPolicy;

use super::{fetch_once, permissive, strict, PUBLIC};

fn lfs(mirror: &Path, url: &str, fetched: &FetchReport, network: &NetworkPolicy) -> LfsReport {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(mirror_lfs(&LfsRequest {
        path: mirror,
        url,
        old_tips: &fetched.old_tips,
        new_tips: &fetched.new_tips,
        created: fetched.initialized,
        remembered: &[],
        network,
        ssh: &SshAccess::default(),
        limits: LfsLimits {
            max_object_size: 1 << 20,
            max_mirror_size: 1 << 30,
            concurrency: 2,
        },
        deadline: Instant::now() + Duration::from_secs(30),
        stop: &Arc::new(StopFlag::default()),
    }))
}

struct Setup {
    _base: tempfile::TempDir,
    dir: tempfile::TempDir,
    oid: String,
    public: GitHttpServer,
    internal: GitHttpServer,
}

/// An LFS upstream at the public address, and the same objects served on loopback.
fn setup() -> Setup {
    let base = tempfile::tempdir().unwrap();
    let up = Upstream::create(base.path().join("x.git"));
    let oid = commit_lfs_file(&up, "a.bin", &[7u8; 3000]);
    let public = GitHttpServer::start_on(base.path(), PUBLIC.parse::<IpAddr>().unwrap());
    public.serve_lfs(&objects_dir(&up));
    let internal = GitHttpServer::start(base.path());
    internal.serve_lfs(&objects_dir(&up));
    Setup {
        _base: base,
        dir: tempfile::tempdir().unwrap(),
        oid,
        public,
        internal,
    }
}

fn stored(mirror: &Path, oid: &str) -> bool {
    let path = mirror.join("lfs/objects").join(&oid[0..2]).join(&oid[2..4]);
    path.join(oid).is_file()
}

#[test]
fn an_href_naming_an_internal_address_is_refused() {
    if !netns::enter_or_run(
        "lfs::an_href_naming_an_internal_address_is_refused",
        &[PUBLIC],
    ) {
        return;
    }
    let s = setup();
    s.public
        .lfs_hrefs_at(&format!("http://{}", s.internal.addr()));
    let mirror = s.dir.path().join("m.git");
    let url = s.public.url("x.git");
    let fetched = fetch_once(&mirror, &url, &strict()).expect("public upstream");

    let refused = lfs(&mirror, &url, &fetched, &strict());
    assert_eq!(refused.objects, 0);
    assert!(
        matches!(&refused.errors[..], [LfsError::Blocked(why)] if why.contains("127.0.0.1")),
        "{refused:?}"
    );
    assert!(
        s.internal.requests().is_empty(),
        "{:?}",
        s.internal.requests()
    );
    assert!(!stored(&mirror, &s.oid));
    // what later syncs try again: the refused object, with why
    assert!(
        matches!(&refused.missing[..], [(p, why)] if p.oid == s.oid && why.contains("refused")),
        "{refused:?}"
    );

    // the same answer where local networks are allowed: the refusal was the policy's
    let allowed = lfs(&mirror, &url, &fetched, &permissive());
    assert_eq!(
        (allowed.objects, allowed.errors.len()),
        (1, 0),
        "{allowed:?}"
    );
    assert!(stored(&mirror, &s.oid));
    assert!(allowed.missing.is_empty(), "{allowed:?}");
}

#[test]
fn a_download_redirected_to_an_internal_address_is_refused() {
    if !netns::enter_or_run(
        "lfs::a_download_redirected_to_an_internal_address_is_refused",
        &[PUBLIC],
    ) {
        return;
    }
    let s = setup();
    let internal = format!("http://{}/lfs-objects", s.internal.addr());
    s.public.redirect("/lfs-objects", &internal);
    let mirror = s.dir.path().join("m.git");
    let url = s.public.url("x.git");
    let fetched = fetch_once(&mirror, &url, &strict()).expect("public upstream");

    let refused = lfs(&mirror, &url, &fetched, &strict());
    assert_eq!(refused.objects, 0);
    assert!(
        matches!(&refused.errors[..], [LfsError::Download { why, .. }] if why.contains("loopback")),
        "{refused:?}"
    );
    assert!(
        s.internal.requests().is_empty(),
        "{:?}",
        s.internal.requests()
    );
    assert!(!stored(&mirror, &s.oid));
}
