//! Syncing over ssh against a real OpenSSH sshd running git-shell on loopback: the
//! mirror's deploy key logs in, a key the upstream no longer accepts fails as `auth`,
//! a host key other than the confirmed ones fails as `host_key_mismatch` before
//! anything is fetched, and the private key shows up nowhere but in its seal (the real
//! `stasis-worker` binary's debug log and `/metrics`, Redis, `pg_dump`, the mirror).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::json;

use stasis_shared::db::ssh_keys;
use stasis_shared::domain::{ErrorKind, JobState, SyncReason};
use stasis_shared::git::url::UpstreamUrl;
use stasis_shared::ssh::host_keys::host_port;
use stasis_shared::ssh::{DeployKey, HostKey};
use stasis_testkit::git::{assert_mirrors, free_port, refs, wait_for_port, Upstream};
use stasis_testkit::http::GitHttpServer;
use stasis_testkit::lfs::{commit_lfs_file, objects_dir};
use stasis_testkit::sshd::Sshd;
use stasis_testkit::TestEnv;
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(60);

/// alice's mirror `tools` of an upstream served by sshd, with a deploy key sshd
/// accepts and sshd's host keys confirmed.
struct Site {
    env: TestEnv,
    sshd: Sshd,
    up: Upstream,
    repo: Uuid,
    key: DeployKey,
}

async fn site(key_types: &[&'static str]) -> Site {
    let env = TestEnv::new().await;
    let sshd = Sshd::start(key_types);
    let up = Upstream::create(env.dir.path().join("up"));
    let (alice, _) = env.user("alice", false).await;
    let url = sshd.url(&up.path);
    let repo = env.mirror(&alice, "tools", &url).await;
    let key = DeployKey::generate("stasis-mirror-alice/tools").unwrap();
    let cipher = env.cfg.secrets.cipher().unwrap().unwrap();
    let sealed = cipher.seal(&key.private_openssh);
    ssh_keys::set_deploy_key(&env.pool, repo, Some((&sealed, &key.public_openssh)))
        .await
        .unwrap();
    sshd.authorize(&key.public_openssh);
    let site = Site {
        env,
        sshd,
        up,
        repo,
        key,
    };
    site.confirm(&site.sshd.fingerprints()).await;
    site
}

impl Site {
    async fn confirm(&self, fingerprints: &[String]) {
        let keys: Vec<HostKey> = fingerprints
            .iter()
            .map(|f| HostKey {
                key_type: None,
                fingerprint: f.clone(),
            })
            .collect();
        let url = UpstreamUrl::parse(&self.sshd.url(&self.up.path)).unwrap();
        ssh_keys::set_host_keys(&self.env.pool, self.repo, &keys, &host_port(&url))
            .await
            .unwrap();
    }

    fn mirror(&self) -> std::path::PathBuf {
        self.env.mirror_path("alice", "tools")
    }

    /// One manual sync, run to its end; the job and its first run's error.
    async fn sync(&self) -> (JobState, Option<ErrorKind>, String) {
        let job = self.env.enqueue(self.repo, SyncReason::Manual).await;
        let finished = self.env.finished(job, WAIT).await;
        let runs = self.env.runs(job).await;
        let last = runs.last().expect("a run");
        (
            finished.state,
            last.error_kind,
            last.error.clone().unwrap_or_default(),
        )
    }

    /// The private key's body: what would show if it leaked, whatever wraps it.
    fn secret_lines(&self) -> Vec<String> {
        self.key
            .private_openssh
            .lines()
            .filter(|l| !l.starts_with("-----") && l.len() > 20)
            .map(str::to_owned)
            .collect()
    }
}

fn files_under(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files_under(&path, out);
        } else {
            out.push(path);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_mirror_with_a_deploy_key_syncs_over_ssh() {
    let site = site(&["ed25519"]).await;
    let worker = site.env.spawn_worker();
    let (state, kind, error) = site.sync().await;
    assert_eq!(
        state,
        JobState::Done,
        "{kind:?} {error} {}",
        site.sshd.log()
    );
    assert_mirrors(&site.mirror(), &site.up);

    // the private key is nowhere in the mirror's directory
    let mut files = Vec::new();
    files_under(&site.mirror(), &mut files);
    assert!(!files.is_empty());
    let secret = site.secret_lines();
    assert!(!secret.is_empty());
    for file in files {
        let bytes = std::fs::read(&file).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        for line in &secret {
            assert!(!text.contains(line.as_str()), "in {}", file.display());
        }
        assert!(
            !text.contains("OPENSSH PRIVATE KEY"),
            "in {}",
            file.display()
        );
    }
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_deploy_key_removed_upstream_fails_as_auth_with_a_readable_error() {
    let mut site = site(&["ed25519"]).await;
    let worker = site.env.spawn_worker();
    assert_eq!(site.sync().await.0, JobState::Done);
    let before = refs(&site.mirror());
    site.sshd.revoke_all();
    site.up.commit("after the key was removed");

    let (state, kind, error) = site.sync().await;
    assert_eq!(state, JobState::Failed);
    assert_eq!(kind, Some(ErrorKind::Auth), "{error}");
    assert!(
        error.contains("refused the deploy key") && error.contains(&site.key.fingerprint),
        "{error}"
    );
    assert_eq!(refs(&site.mirror()), before);
    for line in site.secret_lines() {
        assert!(!error.contains(&line));
    }
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_changed_host_key_fails_as_host_key_mismatch_and_fetches_nothing() {
    let mut site = site(&["ed25519"]).await;
    let worker = site.env.spawn_worker();
    assert_eq!(site.sync().await.0, JobState::Done);
    let before = refs(&site.mirror());
    let confirmed = site.sshd.fingerprints();
    site.up.commit("behind a new host key");
    site.sshd.change_host_keys();
    let shown = site.sshd.fingerprints();
    assert_ne!(confirmed, shown);

    let logged = site.sshd.log().len();
    let (state, kind, error) = site.sync().await;
    assert_eq!(state, JobState::Failed);
    assert_eq!(kind, Some(ErrorKind::HostKeyMismatch), "{error}");
    assert!(
        error.contains(&confirmed[0]) && error.contains(&shown[0]),
        "both fingerprints named: {error}"
    );
    assert_eq!(refs(&site.mirror()), before, "nothing fetched");
    let since = site.sshd.log()[logged..].to_owned();
    assert!(
        since.contains("Connection from"),
        "the sync reached sshd: {since}"
    );
    assert!(
        !since.contains("Accepted publickey") && !since.contains("Postponed publickey"),
        "the key was not offered to it: {since}"
    );
    let repo = site.env.repo(site.repo).await;
    assert_eq!(
        repo.sync_status.as_str(),
        "hard_failed",
        "waits for its owner"
    );

    // the owner confirms the new key: the mirror syncs again
    site.confirm(&shown).await;
    assert_eq!(site.sync().await.0, JobState::Done);
    assert_mirrors(&site.mirror(), &site.up);
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_ssh_mirror_without_confirmed_host_keys_does_not_sync() {
    let site = site(&["ed25519"]).await;
    site.confirm(&[]).await;
    let worker = site.env.spawn_worker();
    let (state, kind, error) = site.sync().await;
    assert_eq!(state, JobState::Failed);
    assert_eq!(kind, Some(ErrorKind::HostKeyMismatch), "{error}");
    let shown = &site.sshd.fingerprints()[0];
    assert!(
        error.contains("not confirmed") && error.contains(shown.as_str()),
        "{error}"
    );
    assert!(!site.mirror().exists(), "no import was written");
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_address_policy_refuses_an_ssh_sync_to_a_blocked_host() {
    let mut site = site(&["ed25519"]).await;
    site.env.cfg.mirror.allow_local_network = false;
    let worker = site.env.spawn_worker();
    let logged = site.sshd.log().len();
    let (state, kind, error) = site.sync().await;
    assert_eq!(state, JobState::Failed);
    assert_eq!(kind, Some(ErrorKind::BlockedUrl), "{error}");
    let since = site.sshd.log()[logged..].to_owned();
    assert!(
        !since.contains("Connection from"),
        "sshd was reached: {since}"
    );
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_private_key_is_nowhere_but_in_its_seal() {
    let mut site = site(&["ed25519"]).await;
    // LFS over ssh too: the key logs in twice a sync, and the token it fetches is a
    // secret as well
    let lfs_content = vec![42u8; 10_000];
    commit_lfs_file(&site.up, "big.bin", &lfs_content);
    let server = GitHttpServer::start(site.env.dir.path());
    server.serve_lfs(&objects_dir(&site.up));
    let token = format!("RemoteAuth {}", Uuid::new_v4().simple());
    server.require_authorization(&token);
    site.sshd.answer_lfs_authenticate(
        &json!({
            "href": format!("{}/info/lfs", server.url("up")),
            "header": {"Authorization": token},
        })
        .to_string(),
    );

    let metrics_port = free_port();
    let log_file = site.env.dir.path().join("worker.log");
    let log = std::fs::File::create(&log_file).unwrap();
    let mut worker = Command::new(env!("CARGO_BIN_EXE_stasis-worker"))
        .envs(site.env.env_vars())
        .env("STASIS_METRICS_LISTEN", format!("127.0.0.1:{metrics_port}"))
        .env("RUST_LOG", "debug")
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("start stasis-worker");
    wait_for_port(metrics_port, "the worker's /metrics");

    // a sync that logs in (git and LFS), then one the upstream refuses the key for
    let (state, kind, error) = site.sync().await;
    assert_eq!(state, JobState::Done, "{kind:?} {error}");
    let (lfs_objects, lfs_error): (Option<i32>, Option<String>) =
        sqlx::query_as("SELECT lfs_objects, lfs_error FROM sync_runs WHERE repo_id = $1")
            .bind(site.repo)
            .fetch_one(&site.env.pool)
            .await
            .unwrap();
    assert_eq!(
        lfs_objects,
        Some(1),
        "the LFS object came over ssh: {lfs_error:?}"
    );
    site.sshd.revoke_all();
    site.up.commit("after the key was removed");
    let (state, kind, _) = site.sync().await;
    assert_eq!((state, kind), (JobState::Failed, Some(ErrorKind::Auth)));

    let metrics = reqwest::get(format!("http://127.0.0.1:{metrics_port}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("stasis_lfs_objects_total"),
        "the worker's metrics: {metrics}"
    );
    let pid = worker.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    assert!(worker.wait().unwrap().success());
    let logged = std::fs::read_to_string(&log_file).unwrap();
    assert!(logged.contains("DEBUG"), "RUST_LOG=debug took effect");
    let refused = logged
        .lines()
        .find(|l| l.contains("refused the deploy key"))
        .unwrap_or_else(|| panic!("the refusal is logged: {logged}"));
    assert!(refused.contains(&site.key.fingerprint), "{refused}");

    let (keys, stored) = site.env.redis_text().await;
    assert!(keys > 0, "the namespace has keys");
    let sealed: String =
        sqlx::query_scalar("SELECT ssh_private_key FROM repositories WHERE id = $1")
            .bind(site.repo)
            .fetch_one(&site.env.pool)
            .await
            .unwrap();
    let dump = Command::new("pg_dump")
        .arg(&site.env.cfg.database.url)
        .output()
        .expect("run pg_dump");
    assert!(
        dump.status.success(),
        "{}",
        String::from_utf8_lossy(&dump.stderr)
    );
    let dump = String::from_utf8_lossy(&dump.stdout).into_owned();
    assert!(dump.contains(&sealed), "the dump holds the seal");
    let mut files = Vec::new();
    files_under(&site.mirror(), &mut files);
    assert!(
        files
            .iter()
            .any(|f| f.starts_with(site.mirror().join("lfs/objects"))),
        "the mirror holds the LFS object: {files:?}"
    );
    let mut places = vec![
        ("the worker's log".to_owned(), logged),
        ("/metrics".to_owned(), metrics),
        ("Redis".to_owned(), stored),
        ("pg_dump".to_owned(), dump),
    ];
    for file in files {
        let bytes = std::fs::read(&file).unwrap();
        places.push((
            file.display().to_string(),
            String::from_utf8_lossy(&bytes).into(),
        ));
    }

    let lines = site.secret_lines();
    assert!(lines.len() >= 3, "the key's base64 lines: {}", lines.len());
    let body: String = lines.concat();
    for (place, text) in &places {
        assert!(!text.contains("PRIVATE KEY"), "a private key in {place}");
        assert!(!text.contains(&body), "the key's body in {place}");
        for line in &lines {
            assert!(
                !text.contains(line.as_str()),
                "a line of the key in {place}"
            );
        }
        assert!(!text.contains(&token), "the LFS token in {place}");
    }
}
