//! Git LFS of an ssh upstream, found as git-lfs finds it: `git-lfs-authenticate <path>
//! download` over an ssh session to a real OpenSSH sshd (the mirror's deploy key, its
//! confirmed host keys) answers the batch API's URL and the `Authorization` the test
//! kit's LFS server requires; the objects then download as for any upstream. A host
//! key other than the confirmed ones stops it before the key is offered or anything is
//! asked of the LFS server, and an href the address policy refuses is refused.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use stasis_shared::db::ssh_keys;
use stasis_shared::domain::{JobState, SyncReason};
use stasis_shared::git::url::UpstreamUrl;
use stasis_shared::ssh::host_keys::host_port;
use stasis_shared::ssh::{DeployKey, HostKey};
use stasis_testkit::git::{assert_mirrors, git, refs, Upstream};
use stasis_testkit::http::GitHttpServer;
use stasis_testkit::lfs::{clone_with_lfs, commit_lfs_file, objects_dir};
use stasis_testkit::sshd::Sshd;
use stasis_testkit::TestEnv;
use stasis_worker::git::fetch::StopFlag;
use stasis_worker::git::lfs::{mirror_lfs, LfsError, LfsLimits, LfsReport, LfsRequest};
use stasis_worker::git::ssh_auth::{DeployKeyPair, SshAccess};
use stasis_worker::git::transport::NetworkPolicy;

const WAIT: Duration = Duration::from_secs(60);
/// What `git-lfs-authenticate` hands out and the LFS server requires.
const AUTHORIZATION: &str = "RemoteAuth lfs-token-from-ssh";

/// An upstream served over ssh by sshd (accepting `key`) and over http by the test kit's
/// server, whose batch API requires [`AUTHORIZATION`] and which `git-lfs-authenticate`
/// names.
struct Site {
    sshd: Sshd,
    up: Upstream,
    server: GitHttpServer,
    key: DeployKey,
    oid: String,
    content: Vec<u8>,
}

fn site(root: &Path) -> Site {
    let sshd = Sshd::start(&["ed25519"]);
    let up = Upstream::create(root.join("r.git"));
    let content: Vec<u8> = (0..40_000u32).map(|i| (i * 7919 % 251) as u8).collect();
    let oid = commit_lfs_file(&up, "big.bin", &content);
    let server = GitHttpServer::start(root);
    server.serve_lfs(&objects_dir(&up));
    server.require_authorization(AUTHORIZATION);
    let answer = json!({
        "href": format!("{}/info/lfs", server.url("r.git")),
        "header": {"Authorization": AUTHORIZATION},
        "expires_in": 3600,
    });
    sshd.answer_lfs_authenticate(&answer.to_string());
    let key = DeployKey::generate("stasis-mirror-alice/r").unwrap();
    sshd.authorize(&key.public_openssh);
    Site {
        sshd,
        up,
        server,
        key,
        oid,
        content,
    }
}

fn object_path(mirror: &Path, oid: &str) -> std::path::PathBuf {
    mirror
        .join("lfs/objects")
        .join(&oid[0..2])
        .join(&oid[2..4])
        .join(oid)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_ssh_mirror_gets_its_lfs_objects_through_git_lfs_authenticate() {
    let env = TestEnv::new().await;
    let s = site(&env.dir.path().join("upstreams"));
    let (alice, _) = env.user("alice", false).await;
    let url = s.sshd.url(&s.up.path);
    let repo = env.mirror(&alice, "r", &url).await;
    let cipher = env.cfg.secrets.cipher().unwrap().unwrap();
    let sealed = cipher.seal(&s.key.private_openssh);
    ssh_keys::set_deploy_key(&env.pool, repo, Some((&sealed, &s.key.public_openssh)))
        .await
        .unwrap();
    let confirmed: Vec<HostKey> = s
        .sshd
        .fingerprints()
        .into_iter()
        .map(|fingerprint| HostKey {
            key_type: None,
            fingerprint,
        })
        .collect();
    let upstream = UpstreamUrl::parse(&url).unwrap();
    ssh_keys::set_host_keys(&env.pool, repo, &confirmed, &host_port(&upstream))
        .await
        .unwrap();

    let worker = env.spawn_worker();
    let job = env.enqueue(repo, SyncReason::Import).await;
    let finished = env.finished(job, WAIT).await;
    worker.stop().await;
    assert_eq!(finished.state, JobState::Done, "{}", s.sshd.log());
    let (objects, bytes, error): (Option<i32>, Option<i64>, Option<String>) =
        sqlx::query_as("SELECT lfs_objects, lfs_bytes, lfs_error FROM sync_runs WHERE job_id = $1")
            .bind(job)
            .fetch_one(&env.pool)
            .await
            .unwrap();
    assert_eq!(error, None);
    assert_eq!(objects, Some(1));
    assert_eq!(bytes, Some(s.content.len() as i64));

    // git-lfs's command, for the URL's path, run once over the deploy key's session
    assert_eq!(
        s.sshd.lfs_authenticate_calls(),
        vec![format!(
            "git-lfs-authenticate {} download",
            s.up.path.display()
        )]
    );
    let log = s.sshd.log();
    assert!(
        log.matches("Accepted publickey").count() >= 2,
        "the fetch and the LFS step logged in: {log}"
    );
    // the batch request went to the href named over ssh (with its Authorization: the
    // server answers 401 without it), then the object's download
    let requests = s.server.requests();
    assert_eq!(
        requests,
        vec![
            "POST /r.git/info/lfs/objects/batch".to_owned(),
            format!("GET /lfs-objects/{}", s.oid),
        ]
    );

    let mirror = env.mirror_path("alice", "r");
    assert_mirrors(&mirror, &s.up);
    assert_eq!(
        std::fs::read(object_path(&mirror, &s.oid)).unwrap(),
        s.content
    );
    let checkout = env.dir.path().join("checkout");
    let (cloned, stderr) = clone_with_lfs(&mirror, &checkout);
    assert!(cloned, "git lfs clone of the mirror: {stderr}");
    assert_eq!(std::fs::read(checkout.join("big.bin")).unwrap(), s.content);
}

/// The LFS step alone, for a mirror that already has the upstream's commits (a plain
/// `git clone --mirror`), with `access` for its ssh session.
fn lfs_step(s: &Site, mirror: &Path, access: &SshAccess) -> LfsReport {
    let tips: Vec<git2::Oid> = refs(mirror)
        .values()
        .map(|oid| git2::Oid::from_str(oid).unwrap())
        .collect();
    let mut network = NetworkPolicy::from_config(&stasis_shared::Config::default());
    network.allow_local_network = true;
    let url = s.sshd.url(&s.up.path);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(mirror_lfs(&LfsRequest {
        path: mirror,
        url: &url,
        old_tips: &[],
        new_tips: &tips,
        created: false,
        remembered: &[],
        network: &network,
        ssh: access,
        limits: LfsLimits {
            max_object_size: 1 << 20,
            max_mirror_size: 1 << 30,
            concurrency: 2,
        },
        deadline: Instant::now() + Duration::from_secs(30),
        stop: &Arc::new(StopFlag::default()),
    }))
}

fn access(s: &Site, host_keys: Vec<String>) -> SshAccess {
    SshAccess {
        key: Some(DeployKeyPair {
            public: s.key.public_openssh.clone(),
            private: s.key.private_openssh.clone(),
            fingerprint: s.key.fingerprint.clone(),
        }),
        host_keys,
    }
}

fn mirror_of(s: &Site, dir: &Path) -> std::path::PathBuf {
    let mirror = dir.join("mirror.git");
    git(
        dir,
        &[
            "clone",
            "-q",
            "--mirror",
            &s.up.path.display().to_string(),
            "mirror.git",
        ],
    );
    mirror
}

#[test]
fn a_host_key_other_than_the_confirmed_ones_stops_it_before_any_download() {
    let dir = tempfile::tempdir().unwrap();
    let s = site(&dir.path().join("upstreams"));
    let mirror = mirror_of(&s, dir.path());
    let shown = s.sshd.fingerprints()[0].clone();
    let other = Sshd::start(&["ed25519"]).fingerprints()[0].clone();
    assert_ne!(shown, other);

    let report = lfs_step(&s, &mirror, &access(&s, vec![other.clone()]));
    assert_eq!(report.objects, 0);
    assert_eq!(report.errors.len(), 1, "{:?}", report.errors);
    assert_eq!(report.errors[0].kind(), "host_key_mismatch");
    let LfsError::HostKeyMismatch(why) = &report.errors[0] else {
        unreachable!()
    };
    assert!(why.contains(&shown) && why.contains(&other), "{why}");
    assert_eq!(report.missing.len(), 1, "remembered for a later sync");
    assert!(!object_path(&mirror, &s.oid).exists());
    assert!(s.sshd.lfs_authenticate_calls().is_empty());
    let log = s.sshd.log();
    assert!(log.contains("Connection from"), "sshd was reached: {log}");
    assert!(
        !log.contains("Accepted publickey") && !log.contains("Postponed publickey"),
        "the deploy key was not offered: {log}"
    );
    assert!(
        s.server.requests().is_empty(),
        "nothing asked of the LFS server"
    );

    // the confirmed key: the same step downloads the object
    let report = lfs_step(&s, &mirror, &access(&s, vec![shown]));
    assert_eq!(report.errors, vec![], "{:?}", report.errors);
    assert_eq!(report.objects, 1);
    assert_eq!(
        std::fs::read(object_path(&mirror, &s.oid)).unwrap(),
        s.content
    );
}

#[test]
fn an_href_the_address_policy_refuses_is_not_asked() {
    let dir = tempfile::tempdir().unwrap();
    let s = site(&dir.path().join("upstreams"));
    let mirror = mirror_of(&s, dir.path());
    let confirmed = s.sshd.fingerprints();
    for href in [
        // credentials in the URL, as the policy refuses in any upstream URL
        s.server
            .url("r.git/info/lfs")
            .replace("http://", "http://u:p@"),
        // not http(s)
        format!("file://{}", s.up.path.display()),
    ] {
        s.sshd.answer_lfs_authenticate(
            &json!({"href": href, "header": {"Authorization": AUTHORIZATION}}).to_string(),
        );
        let report = lfs_step(&s, &mirror, &access(&s, confirmed.clone()));
        assert_eq!(report.errors.len(), 1, "{href}: {:?}", report.errors);
        assert_eq!(report.errors[0].kind(), "blocked_url", "{href}");
        assert_eq!(report.objects, 0);
    }
    assert_eq!(s.sshd.lfs_authenticate_calls().len(), 2);
    assert!(s.server.requests().is_empty(), "nothing asked of any href");
    assert!(!object_path(&mirror, &s.oid).exists());
}
