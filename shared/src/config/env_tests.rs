//! The environment as Kubernetes and Docker set it: service-link variables beside the
//! configuration, secrets in files, and `Debug` without them.

// figment's Jail API fixes the closure's error type.
#![allow(clippy::result_large_err)]

use figment::Jail;

use super::{Config, ConfigError, ExposeSecret, SecretString};

fn exposed(secret: &Option<SecretString>) -> Option<&str> {
    secret.as_ref().map(ExposeSecret::expose_secret)
}

fn load_in(jail: &Jail) -> Result<Config, ConfigError> {
    let path = jail.directory().join("stasis.yaml");
    Config::from_figment(Config::figment(path.is_file().then_some(path.as_path()))?)
}

/// What each of the Services `stasis-api` (8080), `stasis-redis` (6379) and
/// `stasis-postgres` (5432, with a named port) puts into every pod of its namespace.
fn service_links(jail: &mut Jail) {
    for (service, port) in [("API", 8080), ("REDIS", 6379), ("POSTGRES", 5432)] {
        let x = format!("STASIS_{service}");
        let tcp = format!("{x}_PORT_{port}_TCP");
        jail.set_env(format!("{x}_SERVICE_HOST"), "10.96.0.12");
        jail.set_env(format!("{x}_SERVICE_PORT"), port);
        jail.set_env(format!("{x}_PORT"), format!("tcp://10.96.0.12:{port}"));
        jail.set_env(&tcp, format!("tcp://10.96.0.12:{port}"));
        jail.set_env(format!("{tcp}_PROTO"), "tcp");
        jail.set_env(format!("{tcp}_PORT"), port);
        jail.set_env(format!("{tcp}_ADDR"), "10.96.0.12");
    }
    jail.set_env("STASIS_POSTGRES_SERVICE_PORT_PG_WIRE", 5432);
    jail.set_env("STASIS_REDIS_PORT_6379_UDP", "udp://10.96.0.12:6379");
}

#[test]
fn kubernetes_service_links_are_not_configuration() {
    Jail::expect_with(|jail| {
        service_links(jail);
        // real keys of the same sections still count
        jail.set_env("STASIS_API_LISTEN", "0.0.0.0:9090");
        jail.set_env("STASIS_REDIS_URL", "redis://redis:6379");
        // the scripts' and tests' own variables, of no section
        jail.set_env("STASIS_LOCAL_SERVICES", "1");
        jail.set_env("STASIS_TEST_REDIS_URL", "redis://127.0.0.1:1");
        let cfg = load_in(jail).expect("service links ignored");
        assert_eq!(cfg.api.listen.to_string(), "0.0.0.0:9090");
        assert_eq!(cfg.redis.url, "redis://redis:6379");
        Ok(())
    });
}

#[test]
fn a_misspelt_key_of_a_section_names_the_variable() {
    Jail::expect_with(|jail| {
        service_links(jail);
        jail.set_env("STASIS_MIRROR_SYNC_INTERVALL", "1h");
        let err = load_in(jail).unwrap_err().to_string();
        assert!(err.contains("STASIS_MIRROR_SYNC_INTERVALL"), "{err}");
        assert!(err.contains("sync_interval,"), "{err}");
        Ok(())
    });
    Jail::expect_with(|jail| {
        // in `api`, whose Service's variables are ignored, but no service-link shape
        jail.set_env("STASIS_API_LISTEN_ADDR", "0.0.0.0:1");
        let err = load_in(jail).unwrap_err().to_string();
        assert!(err.contains("STASIS_API_LISTEN_ADDR"), "{err}");
        Ok(())
    });
}

#[test]
fn service_link_shapes() {
    use super::env::service_link;
    for name in [
        "STASIS_API_SERVICE_HOST",
        "STASIS_API_SERVICE_PORT",
        "STASIS_API_SERVICE_PORT_HTTP",
        "STASIS_API_PORT",
        "STASIS_API_PORT_8080_TCP",
        "STASIS_API_PORT_8080_SCTP_PROTO",
        "STASIS_API_PORT_8080_TCP_PORT",
        "STASIS_API_PORT_8080_TCP_ADDR",
        "STASIS_PORT",
    ] {
        assert!(service_link(name), "{name}");
    }
    for name in [
        "STASIS_API_LISTEN",
        "STASIS_API_PORT_HTTP",
        "STASIS_API_PORT_80_HTTP",
        "STASIS_API_PORT_X_TCP",
        "STASIS_API_PORT_8080_TCP_HOST",
        "STASIS_API_SERVICE",
        "SERVICE_HOST",
    ] {
        assert!(!service_link(name), "{name}");
    }
}

#[test]
fn secrets_from_files_lose_their_line_break() {
    Jail::expect_with(|jail| {
        service_links(jail);
        for key in super::SECRET_KEYS {
            let var = format!("STASIS_{}_FILE", key.replace('.', "_").to_uppercase());
            let file = jail.directory().join(key);
            std::fs::write(&file, format!("from-file-{key}\n")).map_err(|e| e.to_string())?;
            jail.set_env(var, file.display());
        }
        // \r\n as a Windows editor leaves it; a URL as a real deployment has it
        let db = jail.directory().join("db-url");
        std::fs::write(&db, "postgres://stasis:pw@db/stasis\r\n").map_err(|e| e.to_string())?;
        jail.set_env("STASIS_DATABASE_URL_FILE", db.display());
        let cfg = load_in(jail).expect("secrets from files");
        assert_eq!(cfg.database.url, "postgres://stasis:pw@db/stasis");
        assert_eq!(cfg.redis.url, "from-file-redis.url");
        assert_eq!(exposed(&cfg.secrets.key), Some("from-file-secrets.key"));
        assert_eq!(exposed(&cfg.notify.secret), Some("from-file-notify.secret"));
        Ok(())
    });
}

#[test]
fn a_secret_file_wins_over_the_yaml_file() {
    Jail::expect_with(|jail| {
        jail.create_file("stasis.yaml", "secrets:\n  key: from-yaml\n")?;
        jail.create_file("key", "from-file\n")?;
        jail.set_env(
            "STASIS_SECRETS_KEY_FILE",
            jail.directory().join("key").display(),
        );
        let cfg = load_in(jail).expect("valid config");
        assert_eq!(exposed(&cfg.secrets.key), Some("from-file"));
        // an empty variable beside the file is as good as unset
        jail.set_env("STASIS_SECRETS_KEY", "");
        let cfg = load_in(jail).expect("valid config");
        assert_eq!(exposed(&cfg.secrets.key), Some("from-file"));
        Ok(())
    });
}

#[test]
fn secret_file_mistakes_name_the_variable_not_the_secret() {
    Jail::expect_with(|jail| {
        jail.create_file("key", "hunter2-in-file\n")?;
        jail.set_env(
            "STASIS_SECRETS_KEY_FILE",
            jail.directory().join("key").display(),
        );
        jail.set_env("STASIS_SECRETS_KEY", "hunter2-in-env");
        let err = load_in(jail).unwrap_err().to_string();
        assert!(err.contains("STASIS_SECRETS_KEY_FILE"), "{err}");
        assert!(err.contains("STASIS_SECRETS_KEY is set as well"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
        Ok(())
    });
    Jail::expect_with(|jail| {
        let missing = jail.directory().join("no-such-secret");
        jail.set_env("STASIS_DATABASE_URL_FILE", missing.display());
        let err = load_in(jail).unwrap_err().to_string();
        assert!(err.contains("STASIS_DATABASE_URL_FILE"), "{err}");
        assert!(err.contains("no-such-secret"), "{err}");
        Ok(())
    });
    Jail::expect_with(|jail| {
        // a directory where the file should be: unreadable as a file
        let dir = jail.directory().to_path_buf();
        jail.set_env("STASIS_REDIS_URL_FILE", dir.display());
        let err = load_in(jail).unwrap_err().to_string();
        assert!(err.contains("STASIS_REDIS_URL_FILE: cannot read"), "{err}");
        Ok(())
    });
    Jail::expect_with(|jail| {
        jail.create_file("empty", "\n")?;
        jail.set_env(
            "STASIS_NOTIFY_SECRET_FILE",
            jail.directory().join("empty").display(),
        );
        let err = load_in(jail).unwrap_err().to_string();
        assert!(
            err.contains("STASIS_NOTIFY_SECRET_FILE") && err.contains("empty"),
            "{err}"
        );
        Ok(())
    });
    Jail::expect_with(|jail| {
        jail.create_file("listen", "0.0.0.0:1\n")?;
        jail.set_env(
            "STASIS_API_LISTEN_FILE",
            jail.directory().join("listen").display(),
        );
        let err = load_in(jail).unwrap_err().to_string();
        assert!(
            err.contains("STASIS_API_LISTEN_FILE: only secrets"),
            "{err}"
        );
        Ok(())
    });
}

#[test]
fn debug_shows_no_secret() {
    Jail::expect_with(|jail| {
        jail.set_env(
            "STASIS_DATABASE_URL",
            "postgres://stasis:pg-hunter2@db:5432/stasis?password=pg-hunter3&sslmode=require",
        );
        jail.set_env("STASIS_REDIS_URL", "redis://:redis-hunter2@redis:6379/0");
        jail.set_env("STASIS_SECRETS_KEY", "ab".repeat(32));
        jail.set_env("STASIS_NOTIFY_SECRET", "hmac-hunter2");
        jail.set_env(
            "STASIS_NOTIFY_URLS",
            "https://hook:hook-hunter2@example.com/x",
        );
        let cfg = load_in(jail).expect("valid config");
        let shown = format!("{cfg:?} {:?} {:#?}", cfg.database, cfg);
        for secret in ["hunter2", "hunter3", &"ab".repeat(32)] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        // the rest is still there to debug with
        for visible in [
            "postgres://db:5432/stasis",
            "redis://redis:6379/0",
            "max_connections",
            // the secrets' own types (secrecy) say a value is set without showing it
            "SecretsConfig { key: Some(SecretBox<str>([REDACTED]))",
            "secret: Some(SecretBox<str>([REDACTED]))",
        ] {
            assert!(shown.contains(visible), "{visible} not in {shown}");
        }
        Ok(())
    });
}

#[test]
fn a_misspelt_section_is_ignored_and_listed_for_a_warning() {
    Jail::expect_with(|jail| {
        service_links(jail);
        jail.set_env("STASIS_DATABSE_URL", "postgres://elsewhere/stasis");
        jail.set_env("STASIS_TEST_DATABASE_URL", "postgres://127.0.0.1/test");
        jail.set_env("STASIS_CONFIG", "/nonexistent.yaml");
        jail.set_env("STASIS_MIRROR_ENABLED", "false");
        let cfg = load_in(jail).expect("valid config");
        assert_eq!(cfg.database.url, Config::default().database.url);
        assert!(!cfg.mirror.enabled);
        let unread = super::unread_variables();
        assert!(
            unread.contains(&"STASIS_DATABSE_URL".to_owned()),
            "{unread:?}"
        );
        // the ones read, the service links and the tools' are not worth a warning
        let listed = |prefix: &str| unread.iter().any(|v| v.starts_with(prefix));
        for quiet in [
            "STASIS_MIRROR",
            "STASIS_API",
            "STASIS_POSTGRES",
            "STASIS_TEST_",
            "STASIS_CONFIG",
        ] {
            assert!(!listed(quiet), "{quiet} in {unread:?}");
        }
        Ok(())
    });
}
