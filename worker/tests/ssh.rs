//! Syncing over ssh against a real OpenSSH sshd running git-shell on loopback: the
//! mirror's deploy key logs in, a key the upstream no longer accepts fails as `auth`,
//! a host key other than the confirmed ones fails as `host_key_mismatch` before
//! anything is fetched, and the private key shows up nowhere but in its seal.

use std::path::Path;
use std::time::Duration;

use stasis_shared::db::ssh_keys;
use stasis_shared::domain::{ErrorKind, JobState, SyncReason};
use stasis_shared::git::url::UpstreamUrl;
use stasis_shared::ssh::host_keys::host_port;
use stasis_shared::ssh::{DeployKey, HostKey};
use stasis_testkit::git::{assert_mirrors, refs, Upstream};
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
