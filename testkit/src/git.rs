//! Upstream repositories built with the git CLI, and `git daemon` serving them on
//! loopback.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        // a mirror a worker wrote as another user is still the test's to read
        .args(["-c", "safe.directory=*", "-C"])
        .arg(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "Test")
        .env("GIT_AUTHOR_EMAIL", "test@example.com")
        .env("GIT_COMMITTER_NAME", "Test")
        .env("GIT_COMMITTER_EMAIL", "test@example.com")
        .output()
        .expect("run git");
    assert!(
        out.status.success(),
        "git {args:?} in {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Every ref of a repository with the object it points at.
pub fn refs(dir: &Path) -> BTreeMap<String, String> {
    git(dir, &["for-each-ref", "--format=%(refname) %(objectname)"])
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(r, o)| (r.to_owned(), o.to_owned()))
        .collect()
}

/// A non-bare repository used as an upstream (commits are made in place).
pub struct Upstream {
    pub path: PathBuf,
    counter: u32,
}

impl Upstream {
    pub fn create(path: PathBuf) -> Self {
        std::fs::create_dir_all(&path).expect("upstream dir");
        git(&path, &["init", "-q", "-b", "main"]);
        let mut up = Self { path, counter: 0 };
        up.commit("initial");
        up
    }

    pub fn url(&self) -> String {
        format!("file://{}", self.path.display())
    }

    pub fn commit(&mut self, msg: &str) -> String {
        self.counter += 1;
        std::fs::write(
            self.path.join("file.txt"),
            format!("{msg} {}\n", self.counter),
        )
        .unwrap();
        git(&self.path, &["add", "file.txt"]);
        git(&self.path, &["commit", "-q", "-m", msg]);
        git(&self.path, &["rev-parse", "HEAD"]).trim().to_owned()
    }

    /// Adds `bytes` of incompressible data in one commit, to make fetches measurably slow
    /// through a throttled proxy.
    pub fn add_blob(&mut self, name: &str, bytes: usize) {
        let data = noise(bytes, bytes as u64 ^ u64::from(self.counter));
        std::fs::write(self.path.join(name), data).unwrap();
        git(&self.path, &["add", name]);
        git(&self.path, &["commit", "-q", "-m", name]);
    }

    /// Adds `count` files of `bytes` incompressible bytes each under `dir`, in one commit:
    /// a pack of many objects, whose download is counted object by object.
    pub fn add_blobs(&mut self, dir: &str, count: usize, bytes: usize) {
        std::fs::create_dir_all(self.path.join(dir)).unwrap();
        for i in 0..count {
            let data = noise(bytes, (i as u64) << 32 ^ u64::from(self.counter));
            std::fs::write(self.path.join(dir).join(format!("{i}.bin")), data).unwrap();
        }
        git(&self.path, &["add", dir]);
        git(&self.path, &["commit", "-q", "-m", dir]);
    }

    pub fn refs(&self) -> BTreeMap<String, String> {
        refs(&self.path)
    }
}

/// Incompressible bytes from a xorshift generator, different for each starting value.
fn noise(bytes: usize, start: u64) -> Vec<u8> {
    let mut data = vec![0u8; bytes];
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15 ^ start;
    for b in data.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    data
}

/// Mirror refs as a client would compare them: a bare mirror has no `refs/remotes`.
pub fn assert_mirrors(mirror: &Path, upstream: &Upstream) {
    assert_eq!(
        refs(mirror),
        upstream.refs(),
        "mirror refs differ from upstream"
    );
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Blocks until something accepts connections on 127.0.0.1:`port`, or panics after 10 s.
pub fn wait_for_port(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "{what} did not start on port {port}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `git daemon` exporting every repository under `base`, on 127.0.0.1 or on several
/// loopback addresses with one port.
pub struct GitDaemon {
    child: Child,
    pub port: u16,
    hosts: Vec<String>,
}

impl GitDaemon {
    pub fn start(base: &Path) -> Self {
        Self::start_on(base, &["127.0.0.1"])
    }

    /// Listening on each of `hosts` (loopback addresses, the first 127.0.0.1). git daemon
    /// listens with an accept queue of 5 per socket: a client that opens 8 connections at
    /// once overflows one, and each connection the kernel drops waits 1 s for its SYN to
    /// be sent again. Spread over several addresses, the bursts fit.
    pub fn start_on(base: &Path, hosts: &[&str]) -> Self {
        Self::start_with(base, hosts, &[])
    }

    /// As [`GitDaemon::start_on`], with more of `git daemon`'s options (a benchmark lifts
    /// its limit of 32 connections at once with `--max-connections=0`).
    pub fn start_with(base: &Path, hosts: &[&str], options: &[&str]) -> Self {
        assert_eq!(
            hosts.first(),
            Some(&"127.0.0.1"),
            "readiness is checked there"
        );
        let port = free_port();
        let child = Command::new(daemon_program())
            .args(["--reuseaddr", "--export-all"])
            .args(options)
            .args(hosts.iter().map(|h| format!("--listen={h}")))
            .arg(format!("--port={port}"))
            .arg(format!("--base-path={}", base.display()))
            .arg(base)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start git daemon");
        wait_for_port(port, "git daemon");
        Self {
            child,
            port,
            hosts: hosts.iter().map(|h| h.to_string()).collect(),
        }
    }

    pub fn url(&self, name: &str) -> String {
        self.url_on(0, name)
    }

    /// The daemon's process id: the upload-pack processes it forks inherit what is set
    /// on it (a benchmark pins it to a CPU of its own).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The URL of `name` at the `i`th address it listens on, round robin.
    pub fn url_on(&self, i: usize, name: &str) -> String {
        let host = &self.hosts[i % self.hosts.len()];
        format!("git://{host}:{}/{name}", self.port)
    }
}

/// `git-daemon` itself: `git daemon` runs it as a child of its own, which killing `git`
/// leaves running, serving nothing, after every test.
fn daemon_program() -> PathBuf {
    let out = Command::new("git")
        .arg("--exec-path")
        .output()
        .expect("run git --exec-path");
    assert!(out.status.success(), "git --exec-path failed");
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()).join("git-daemon")
}

impl Drop for GitDaemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
