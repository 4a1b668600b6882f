//! A mirror's ssh access through the API: deploy keys shown by their public half only,
//! uploads checked, host keys detected (as `ssh-keygen -lf` prints them) under the
//! upstream address policy and confirmed; the private key never leaves its seal.

use std::process::Command;

use reqwest::StatusCode;
use serde_json::{json, Value};
use stasis_testkit::sshd::Sshd;
use stasis_testkit::TestEnv;

use crate::common::{Api, Users};

const DEPLOY_KEY: &str = "/api/v1/repos/alice/tools/mirror/deploy-key";
const HOST_KEYS: &str = "/api/v1/repos/alice/tools/mirror/host-keys";

/// alice's mirror `tools` of an ssh upstream served by `sshd`, made behind the API.
async fn ssh_mirror(env: &TestEnv, users: &Users, sshd: &Sshd) {
    env.mirror(&users.owner, "tools", &sshd.url(&env.dir.path().join("up")))
        .await;
}

fn ssh_keygen(dir: &std::path::Path, name: &str, passphrase: &str) -> (String, String) {
    let file = dir.join(name);
    let made = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", passphrase, "-C", "", "-f"])
        .arg(&file)
        .status()
        .unwrap();
    assert!(made.success());
    let out = Command::new("ssh-keygen")
        .args(["-E", "sha256", "-lf"])
        .arg(&file)
        .output()
        .unwrap();
    let fingerprint = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_owned();
    (std::fs::read_to_string(&file).unwrap(), fingerprint)
}

/// What of a private key would show if it leaked, whatever wraps it.
fn body_lines(private: &str) -> Vec<String> {
    private
        .lines()
        .filter(|l| !l.starts_with("-----") && l.len() > 20)
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deploy_keys_show_their_public_half_only() {
    let env = TestEnv::new().await;
    let api = Api::start(&env).await;
    let users = Users::create(&env).await;
    let sshd = Sshd::start(&["ed25519"]);
    ssh_mirror(&env, &users, &sshd).await;

    let (status, none) = api.call("GET", DEPLOY_KEY, Some(&users.alice), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{none}");
    let (status, refused) = api
        .call("POST", DEPLOY_KEY, Some(&users.mallory), None)
        .await;
    assert_eq!(
        (status, refused["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("forbidden"))
    );

    let (status, made) = api.call("POST", DEPLOY_KEY, Some(&users.alice), None).await;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    let public = made["public_key"].as_str().unwrap();
    assert!(public.starts_with("ssh-ed25519 AAAA"), "{public}");
    assert!(public.ends_with(" stasis-mirror-alice/tools"), "{public}");
    // the fingerprint is the one ssh-keygen computes from the public key
    let file = env.dir.path().join("shown.pub");
    std::fs::write(&file, format!("{public}\n")).unwrap();
    let out = Command::new("ssh-keygen")
        .args(["-E", "sha256", "-lf"])
        .arg(&file)
        .output()
        .unwrap();
    let expected = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_owned();
    assert_eq!(made["fingerprint"], expected.as_str());

    let (_, repo) = api
        .call("GET", "/api/v1/repos/alice/tools", Some(&users.alice), None)
        .await;
    assert_eq!(repo["deploy_key"]["public_key"], public);
    let (_, shown) = api.call("GET", DEPLOY_KEY, Some(&users.alice), None).await;
    assert_eq!(shown["fingerprint"], made["fingerprint"]);

    // rotating replaces it
    let (status, rotated) = api.call("POST", DEPLOY_KEY, Some(&users.alice), None).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_ne!(rotated["fingerprint"], made["fingerprint"]);

    // the private half: sealed in Postgres, and in no answer or dump (the API writes
    // nothing of it to Redis; worker/tests/ssh.rs searches Redis after real syncs)
    let sealed: String =
        sqlx::query_scalar("SELECT ssh_private_key FROM repositories WHERE name = 'tools'")
            .fetch_one(&env.pool)
            .await
            .unwrap();
    let cipher = env.cfg.secrets.cipher().unwrap().unwrap();
    let private = cipher.open(&sealed).unwrap();
    assert!(private.starts_with("-----BEGIN OPENSSH PRIVATE KEY-----"));
    let secret = body_lines(&private);
    assert!(!secret.is_empty());
    let dump = Command::new("pg_dump")
        .arg(&env.cfg.database.url)
        .output()
        .expect("run pg_dump");
    assert!(
        dump.status.success(),
        "{}",
        String::from_utf8_lossy(&dump.stderr)
    );
    let dump = String::from_utf8_lossy(&dump.stdout).into_owned();
    assert!(dump.contains(&sealed), "the dump holds the seal");
    let (_, repo) = api
        .call("GET", "/api/v1/repos/alice/tools", Some(&users.alice), None)
        .await;
    let (_, status) = api
        .call(
            "GET",
            "/api/v1/repos/alice/tools/mirror/status",
            Some(&users.alice),
            None,
        )
        .await;
    let answers = [rotated.to_string(), repo.to_string(), status.to_string()];
    for text in answers.iter().chain([&dump]) {
        assert!(!text.contains("OPENSSH PRIVATE KEY"));
        for line in &secret {
            assert!(!text.contains(line.as_str()), "private key leaked");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_uploaded_key_is_checked_before_it_is_sealed() {
    let env = TestEnv::new().await;
    let api = Api::start(&env).await;
    let users = Users::create(&env).await;
    let sshd = Sshd::start(&["ed25519"]);
    ssh_mirror(&env, &users, &sshd).await;
    let upload = |key: &str| json!({ "private_key": key });

    let (own, fingerprint) = ssh_keygen(env.dir.path(), "own", "");
    let (status, shown) = api
        .call("PUT", DEPLOY_KEY, Some(&users.alice), Some(upload(&own)))
        .await;
    assert_eq!(status, StatusCode::OK, "{shown}");
    assert_eq!(shown["fingerprint"], fingerprint.as_str());
    assert!(!shown.to_string().contains(&body_lines(&own)[0]));

    let (locked, _) = ssh_keygen(env.dir.path(), "locked", "a passphrase");
    for (key, words) in [
        (locked.as_str(), "passphrase"),
        ("not a key", "not an OpenSSH private key"),
    ] {
        let (status, refused) = api
            .call("PUT", DEPLOY_KEY, Some(&users.alice), Some(upload(key)))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}");
        assert_eq!(refused["code"], "invalid_ssh_key");
        assert!(
            refused["error"].as_str().unwrap().contains(words),
            "{refused}"
        );
    }
    // the refused uploads left the key as it was
    let (_, kept) = api.call("GET", DEPLOY_KEY, Some(&users.alice), None).await;
    assert_eq!(kept["fingerprint"], fingerprint.as_str());
    let (status, _) = api
        .call("DELETE", DEPLOY_KEY, Some(&users.alice), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = api.call("GET", DEPLOY_KEY, Some(&users.alice), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn detect_lists_the_host_keys_sshd_has_and_the_owner_confirms_them() {
    let env = TestEnv::new().await;
    let api = Api::start(&env).await;
    let users = Users::create(&env).await;
    let sshd = Sshd::start(&["ed25519", "ecdsa", "rsa"]);
    ssh_mirror(&env, &users, &sshd).await;

    let (status, detected) = api
        .call(
            "POST",
            &format!("{HOST_KEYS}/detect"),
            Some(&users.alice),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{detected}");
    assert_eq!(detected["host"], format!("127.0.0.1:{}", sshd.port));
    let keys = detected["host_keys"].as_array().unwrap();
    let mut seen: Vec<&str> = keys
        .iter()
        .map(|k| k["fingerprint"].as_str().unwrap())
        .collect();
    let mut expected = sshd.fingerprints();
    seen.sort();
    expected.sort();
    assert_eq!(seen, expected);
    let mut types: Vec<&str> = keys
        .iter()
        .map(|k| k["key_type"].as_str().unwrap())
        .collect();
    types.sort();
    assert_eq!(types, ["ecdsa-sha2-nistp256", "ssh-ed25519", "ssh-rsa"]);

    let body = json!({ "fingerprints": seen });
    let (status, confirmed) = api
        .call("PUT", HOST_KEYS, Some(&users.alice), Some(body))
        .await;
    assert_eq!(status, StatusCode::OK, "{confirmed}");
    assert_eq!(confirmed["host_keys"].as_array().unwrap().len(), 3);
    let (_, repo) = api
        .call("GET", "/api/v1/repos/alice/tools", Some(&users.alice), None)
        .await;
    assert_eq!(repo["ssh_host_keys"], confirmed["host_keys"]);

    let bad = json!({ "fingerprints": ["SHA256:short"] });
    let (status, refused) = api
        .call("PUT", HOST_KEYS, Some(&users.alice), Some(bad))
        .await;
    assert_eq!(
        (status, refused["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_host_keys"))
    );
    let (status, refused) = api
        .call(
            "POST",
            &format!("{HOST_KEYS}/detect"),
            Some(&users.mallory),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{refused}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn detect_obeys_the_upstream_address_policy() {
    let env = TestEnv::new().await;
    let api = Api::start_with(&env, |c| c.mirror.allow_local_network = false).await;
    let users = Users::create(&env).await;
    let sshd = Sshd::start(&["ed25519"]);
    ssh_mirror(&env, &users, &sshd).await;
    let logged = sshd.log().len();
    let (status, refused): (StatusCode, Value) = api
        .call(
            "POST",
            &format!("{HOST_KEYS}/detect"),
            Some(&users.alice),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}");
    assert_eq!(refused["code"], "blocked_url");
    assert!(
        !sshd.log()[logged..].contains("Connection from"),
        "sshd was reached"
    );

    // and an upstream that is not ssh has no host keys to detect
    env.mirror(&users.owner, "web", "https://example.com/x.git")
        .await;
    let (status, refused) = api
        .call(
            "POST",
            "/api/v1/repos/alice/web/mirror/host-keys/detect",
            Some(&users.alice),
            None,
        )
        .await;
    assert_eq!(
        (status, refused["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("not_ssh"))
    );
}
