//! The project's own binaries run as child processes, as operators run them.

use std::path::PathBuf;
use std::process::{Child, Command};

use crate::TestEnv;

/// A workspace binary beside the running test executable (`target/<profile>/`).
/// `cargo test --workspace` builds every package's binaries before it runs any test.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("test executable lives in target/<profile>/deps");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: run the tests with `cargo test --workspace` (or `cargo build --bins` first)",
        path.display()
    );
    path
}

/// A running `stasis-*` process with the environment's config; killed when dropped.
pub struct Proc {
    pub child: Child,
    pub log: PathBuf,
}

impl Proc {
    /// Starts `name` with `env`'s configuration plus `extra` `STASIS_*` overrides; its
    /// stderr goes to `<env dir>/<log>`.
    pub fn spawn(env: &TestEnv, name: &str, log: &str, extra: &[(&str, String)]) -> Self {
        let log = env.dir.path().join(log);
        let file = std::fs::File::create(&log).expect("create process log");
        let child = Command::new(binary(name))
            .envs(env.env_vars())
            .envs(extra.iter().map(|(k, v)| (*k, v.as_str())))
            .env("RUST_LOG", "info")
            // logs go to stdout, panics to stderr: the log file gets both
            .stdout(file.try_clone().expect("clone process log"))
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("start {name}: {e}"));
        Self { child, log }
    }

    /// [`Self::spawn`] as user `uid` (group `uid`), from a copy of the binary in the
    /// test's directory (the build's own may sit where only root may enter), with `home`
    /// as its `HOME`. Opens the test's directory to other users for that.
    pub fn spawn_as(
        env: &TestEnv,
        name: &str,
        log: &str,
        extra: &[(&str, String)],
        uid: u32,
        home: &std::path::Path,
    ) -> Self {
        use std::os::unix::fs::PermissionsExt;
        use std::os::unix::process::CommandExt;
        let dir = env.dir.path();
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))
            .expect("open the test directory");
        let bin_dir = dir.join("bin");
        std::fs::create_dir_all(&bin_dir).expect("bin directory");
        let copy = bin_dir.join(name);
        if !copy.exists() {
            // a link where the filesystem allows it: the debug binary is large
            if std::fs::hard_link(binary(name), &copy).is_err() {
                std::fs::copy(binary(name), &copy).expect("copy the binary");
            }
            std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755))
                .expect("binary mode");
        }
        let log = dir.join(log);
        let file = std::fs::File::create(&log).expect("create process log");
        let child = Command::new(&copy)
            .envs(env.env_vars())
            .envs(extra.iter().map(|(k, v)| (*k, v.as_str())))
            .env("RUST_LOG", "info")
            .env("HOME", home)
            .uid(uid)
            .gid(uid)
            .stdout(file.try_clone().expect("clone process log"))
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("start {name} as {uid}: {e}"));
        Self { child, log }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Panics, with the log, if the process has exited.
    pub fn assert_running(&mut self, what: &str) {
        if let Some(status) = self.child.try_wait().expect("poll child") {
            panic!("{what} exited with {status}:\n{}", self.log_text());
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
