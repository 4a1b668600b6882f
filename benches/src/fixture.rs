//! Upstreams the benchmarks fetch from: a medium repository built here (history,
//! branches, annotated tags, a few MB of content) served on loopback by `git daemon`
//! and by `git http-backend` (over http, or https).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use stasis_testkit::git::{free_port, git, wait_for_port, Upstream};
use stasis_testkit::tls::Issued;

pub struct Medium {
    pub upstream: Upstream,
}

impl Medium {
    /// `commits` commits over a handful of files, a branch and a tag every tenth, and
    /// `blob_bytes` of incompressible data.
    pub fn create(path: PathBuf, commits: u32, blob_bytes: usize) -> Self {
        let mut upstream = Upstream::create(path);
        upstream.add_blob("assets.bin", blob_bytes);
        for i in 0..commits {
            let file = upstream.path.join(format!("src{}.txt", i % 7));
            let mut text = std::fs::read_to_string(&file).unwrap_or_default();
            text.push_str(&format!("line {i}: {}\n", "lorem ipsum ".repeat(8)));
            std::fs::write(&file, text).unwrap();
            git(&upstream.path, &["add", "-A"]);
            git(
                &upstream.path,
                &["commit", "-q", "-m", &format!("change {i}")],
            );
            if i % 10 == 9 {
                git(&upstream.path, &["branch", &format!("topic-{i}")]);
                git(
                    &upstream.path,
                    &["tag", "-a", &format!("v0.{i}"), "-m", "release"],
                );
            }
        }
        Self { upstream }
    }

    /// `n` new commits on main, as an upstream's day of work.
    pub fn advance(&mut self, n: u32) {
        for i in 0..n {
            self.upstream.commit(&format!("new work {i}"));
        }
    }

    pub fn size_bytes(&self) -> u64 {
        dir_size(&self.upstream.path.join(".git"))
    }
}

fn dir_size(path: &Path) -> u64 {
    std::fs::read_dir(path)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| match e.file_type() {
                    Ok(t) if t.is_dir() => dir_size(&e.path()),
                    _ => e.metadata().map_or(0, |m| m.len()),
                })
                .sum()
        })
        .unwrap_or(0)
}

/// Smart HTTP on 127.0.0.1: `git http-backend` behind `fixtures/http_backend.py`.
pub struct HttpBackend {
    child: Child,
    pub port: u16,
}

impl HttpBackend {
    pub fn start(base: &Path) -> Self {
        Self::launch(base, None)
    }

    /// Serving https:// with `cert` (and its key) instead.
    pub fn start_tls(base: &Path, cert: &Issued) -> Self {
        Self::launch(base, Some(cert))
    }

    fn launch(base: &Path, cert: Option<&Issued>) -> Self {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/http_backend.py");
        let port = free_port();
        let mut command = Command::new("python3");
        command.arg(script).arg(port.to_string()).arg(base);
        if let Some(cert) = cert {
            command.arg(&cert.cert).arg(&cert.key);
        }
        let child = command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the git http-backend server (python3)");
        wait_for_port(port, "git http-backend");
        Self { child, port }
    }

    pub fn url(&self, name: &str) -> String {
        format!("http://127.0.0.1:{}/{name}", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for HttpBackend {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `cp -a`: mirrors that start identical without fetching each one.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to.parent().unwrap()).unwrap();
    let ok = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap()
        .success();
    assert!(ok, "cp -a {} {}", from.display(), to.display());
}
