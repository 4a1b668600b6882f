//! `stasisctl` in a container: secrets from files (`STASIS_<KEY>_FILE`, what
//! `docker compose run`/`exec` and Kubernetes give it, with no entrypoint exporting
//! them) beside the service-link variables Kubernetes sets for every Service.

use stasis_shared::config::ExposeSecret;
use stasis_shared::db::repos;
use stasis_testkit::TestEnv;

/// The variables of the Services `stasis-api`, `stasis-redis` and `stasis-postgres`.
fn service_links() -> Vec<(String, String)> {
    let mut vars = Vec::new();
    for (service, port) in [("API", 8080), ("REDIS", 6379), ("POSTGRES", 5432)] {
        let x = format!("STASIS_{service}");
        let tcp = format!("{x}_PORT_{port}_TCP");
        let url = format!("tcp://10.96.0.12:{port}");
        vars.extend([
            (format!("{x}_SERVICE_HOST"), "10.96.0.12".into()),
            (format!("{x}_SERVICE_PORT"), port.to_string()),
            (format!("{x}_PORT"), url.clone()),
            (tcp.clone(), url),
            (format!("{tcp}_PROTO"), "tcp".into()),
            (format!("{tcp}_PORT"), port.to_string()),
            (format!("{tcp}_ADDR"), "10.96.0.12".into()),
        ]);
    }
    vars
}

async fn stasisctl(vars: &[(String, String)], args: &[&str]) -> (bool, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_stasisctl"))
        .args(args)
        .env_clear()
        .envs(vars.iter().cloned())
        .output()
        .await
        .expect("run stasisctl");
    let said = String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr);
    (out.status.success(), said.into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_from_files_beside_kubernetes_service_links() {
    let env = TestEnv::new().await;
    let (alice, _) = env.user("alice", false).await;
    let repo = env.mirror(&alice, "good", "http://127.0.0.1:9/x.git").await;
    let secret = |name: &str, value: &str| {
        let path = env.dir.path().join(name);
        std::fs::write(&path, format!("{value}\n")).unwrap();
        path.display().to_string()
    };
    let key = env
        .cfg
        .secrets
        .key
        .as_ref()
        .expect("test key")
        .expose_secret()
        .to_owned();
    let mut vars: Vec<(String, String)> = env
        .env_vars()
        .into_iter()
        .filter(|(k, _)| k != "STASIS_SECRETS_KEY" && k != "STASIS_DATABASE_URL")
        .chain(service_links())
        .collect();
    vars.push((
        "STASIS_DATABASE_URL_FILE".into(),
        secret("database_url", &env.cfg.database.url),
    ));
    let set_url = [
        "mirror",
        "set-url",
        "alice/good",
        "http://carol:hunter2@127.0.0.1:9/x.git",
    ];

    // the database URL from its file; without the key, credentials are refused
    let (ok, said) = stasisctl(&vars, &["migrate"]).await;
    assert!(ok, "{said}");
    let (ok, said) = stasisctl(&vars, &set_url).await;
    assert!(!ok && said.contains("no secrets.key"), "{said}");

    vars.push((
        "STASIS_SECRETS_KEY_FILE".into(),
        secret("secrets_key", &key),
    ));
    let (ok, said) = stasisctl(&vars, &set_url).await;
    assert!(ok, "{said}");
    let sealed = repos::find(&env.pool, repo)
        .await
        .unwrap()
        .unwrap()
        .mirror_credentials
        .expect("credentials sealed");
    let cipher = env.cfg.secrets.cipher().unwrap().unwrap();
    assert_eq!(cipher.open(&sealed).unwrap(), "carol:hunter2");

    // both ways at once: refused, naming the variables, not the key
    vars.push(("STASIS_SECRETS_KEY".into(), key.clone()));
    let (ok, said) = stasisctl(&vars, &["migrate"]).await;
    assert!(!ok, "{said}");
    assert!(said.contains("STASIS_SECRETS_KEY_FILE"), "{said}");
    assert!(!said.contains(&key), "{said}");
}
