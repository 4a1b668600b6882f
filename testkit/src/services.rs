//! Redis and PostgreSQL servers of a test's own, on free ports, that the test may stop,
//! kill and restart without disturbing the shared services or any other test.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use tempfile::TempDir;

use crate::git::{free_port, wait_for_port};
use crate::tls::Issued;

/// A `redis-server` of this test's own.
pub struct PrivateRedis {
    pub port: u16,
    appendonly: bool,
    tls: Option<RedisTls>,
    dir: TempDir,
    child: Option<Child>,
}

impl PrivateRedis {
    /// Without persistence: a restart comes back empty.
    pub fn start() -> Self {
        Self::launch(false)
    }

    /// With `appendonly yes` (fsync every second): a crash keeps all but the last
    /// second of writes.
    pub fn start_persistent() -> Self {
        Self::launch(true)
    }

    /// TLS only (`--port 0 --tls-port`), serving `server`'s certificate; with
    /// `check_clients`, only clients with a certificate signed by `ca` get in.
    pub fn start_tls(server: &Issued, ca: &Path, check_clients: bool) -> Self {
        let mut redis = Self {
            port: free_port(),
            appendonly: false,
            tls: Some(RedisTls {
                server: server.clone(),
                ca: ca.to_owned(),
                check_clients,
            }),
            dir: TempDir::new().expect("redis dir"),
            child: None,
        };
        redis.spawn();
        redis
    }

    fn launch(appendonly: bool) -> Self {
        let mut redis = Self {
            port: free_port(),
            appendonly,
            tls: None,
            dir: TempDir::new().expect("redis dir"),
            child: None,
        };
        redis.spawn();
        redis
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn spawn(&mut self) {
        let mut command = Command::new("redis-server");
        command.args(["--bind", "127.0.0.1", "--save", ""]);
        match &self.tls {
            None => command.args(["--port", &self.port.to_string()]),
            Some(tls) => command
                .args(["--port", "0", "--tls-port", &self.port.to_string()])
                .arg("--tls-cert-file")
                .arg(&tls.server.cert)
                .arg("--tls-key-file")
                .arg(&tls.server.key)
                .arg("--tls-ca-cert-file")
                .arg(&tls.ca)
                .args([
                    "--tls-auth-clients",
                    if tls.check_clients { "yes" } else { "no" },
                ]),
        };
        let child = command
            .args(["--appendonly", if self.appendonly { "yes" } else { "no" }])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .spawn()
            .expect("start redis-server");
        self.child = Some(child);
        wait_for_port(self.port, "redis-server");
    }

    /// SIGKILL, as a crash or an OOM kill would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().ok();
            child.wait().ok();
        }
    }

    /// Starts it again on the same port (and, when persistent, from its own files).
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// Starts it again after [`Self::kill`].
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "redis-server is still running");
        self.spawn();
    }

    /// SIGSTOP: the server hangs with its connections open, as a paused VM or a stuck
    /// failover does (the kernel still accepts connections and acknowledges data).
    pub fn freeze(&self) {
        signal("STOP", &[self.pid()]);
    }

    /// SIGCONT after [`Self::freeze`].
    pub fn thaw(&self) {
        signal("CONT", &[self.pid()]);
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().expect("redis-server is running").id()
    }
}

struct RedisTls {
    server: Issued,
    ca: PathBuf,
    check_clients: bool,
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A PostgreSQL cluster of this test's own (`initdb` + `pg_ctl`), trust authentication
/// on 127.0.0.1. PostgreSQL refuses to run as root: as root it runs as `postgres`.
pub struct PrivatePostgres {
    pub port: u16,
    bin: PathBuf,
    data: PathBuf,
    _dir: TempDir,
}

impl PrivatePostgres {
    pub fn start() -> Self {
        let pg = Self::init();
        pg.start_server();
        pg
    }

    /// With `ssl = on`, serving `server`'s certificate (clients may still connect
    /// without TLS: what they accept is theirs to say, with `sslmode`).
    pub fn start_tls(server: &Issued) -> Self {
        Self::launch_tls(server, None)
    }

    /// [`Self::start_tls`], and TCP clients get in only over TLS with a certificate
    /// signed by `client_ca` naming the user they log in as (`cert` authentication).
    pub fn start_tls_checking_clients(server: &Issued, client_ca: &Path) -> Self {
        Self::launch_tls(server, Some(client_ca))
    }

    fn launch_tls(server: &Issued, client_ca: Option<&Path>) -> Self {
        let pg = Self::init();
        let cert = pg.data.join("server.crt");
        let key = pg.data.join("server.key");
        std::fs::copy(&server.cert, &cert).expect("copy server.crt");
        std::fs::copy(&server.key, &key).expect("copy server.key");
        // PostgreSQL refuses a key others may read
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600))
            .expect("chmod server.key");
        // the default ssl_cert_file/ssl_key_file: server.crt/server.key in the data dir
        let mut settings = String::from("\nssl = on\n");
        if let Some(ca) = client_ca {
            std::fs::copy(ca, pg.data.join("root.crt")).expect("copy root.crt");
            settings.push_str("ssl_ca_file = 'root.crt'\n");
            std::fs::write(
                pg.data.join("pg_hba.conf"),
                "local all all trust\n\
                 hostssl all all 127.0.0.1/32 cert\n\
                 hostssl all all ::1/128 cert\n",
            )
            .expect("write pg_hba.conf");
        }
        if is_root() {
            chown_postgres(&pg.data);
        }
        let mut conf = std::fs::OpenOptions::new()
            .append(true)
            .open(pg.data.join("postgresql.conf"))
            .expect("open postgresql.conf");
        std::io::Write::write_all(&mut conf, settings.as_bytes()).expect("write postgresql.conf");
        pg.start_server();
        pg
    }

    fn init() -> Self {
        let bin = server_bin();
        let dir = tempfile::Builder::new()
            .prefix("stasis-pg-")
            .tempdir_in(std::env::temp_dir())
            .expect("postgres dir");
        let data = dir.path().join("data");
        if is_root() {
            chown_postgres(dir.path());
        }
        let pg = Self {
            port: free_port(),
            bin,
            data,
            _dir: dir,
        };
        let data = pg.data.to_string_lossy().into_owned();
        pg.run(
            "initdb",
            &["-D", &data, "-U", "postgres", "--auth=trust", "-E", "UTF8"],
        );
        pg
    }

    /// The admin URL: its database only creates and drops the per-test databases.
    pub fn admin_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn run(&self, tool: &str, args: &[&str]) {
        let mut command = if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(self.bin.join(tool));
            c
        } else {
            Command::new(self.bin.join(tool))
        };
        let out = command
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("run {tool}: {e}"));
        assert!(
            out.status.success(),
            "{tool} {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn start_server(&self) {
        let data = self.data.to_string_lossy().into_owned();
        let log = self.data.join("../log").to_string_lossy().into_owned();
        let options = format!(
            "-c port={} -c listen_addresses=127.0.0.1 -c unix_socket_directories={} \
             -c fsync=off -c max_connections=200",
            self.port,
            self.data.parent().unwrap_or(Path::new("/tmp")).display()
        );
        self.run(
            "pg_ctl",
            &["-D", &data, "-l", &log, "-o", &options, "-w", "start"],
        );
        wait_for_port(self.port, "postgres");
    }

    /// Stops it as a restart does (`-m fast`: sessions are terminated, 57P01).
    pub fn stop(&self) {
        let data = self.data.to_string_lossy().into_owned();
        self.run("pg_ctl", &["-D", &data, "-m", "fast", "-w", "stop"]);
    }

    pub fn start_again(&self) {
        self.start_server();
    }

    /// SIGSTOP to the postmaster and every process of it (its backends, WAL writer,
    /// checkpointer...): the server hangs with its connections open, as a paused VM
    /// does. Only this cluster's processes: found by its `postmaster.pid`.
    pub fn freeze(&self) {
        let pids = self.processes();
        signal("STOP", &pids);
    }

    /// SIGCONT to the processes [`Self::freeze`] stopped (and any others of it).
    pub fn thaw(&self) {
        let pids = self.processes();
        signal("CONT", &pids);
    }

    /// The postmaster's pid and its children's, read from `/proc`.
    fn processes(&self) -> Vec<u32> {
        let file = std::fs::read_to_string(self.data.join("postmaster.pid"))
            .expect("postmaster.pid of a running cluster");
        let postmaster: u32 = file
            .lines()
            .next()
            .and_then(|l| l.trim().parse().ok())
            .expect("postmaster pid");
        let mut pids = vec![postmaster];
        for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            // `pid (comm) state ppid ...`: comm may hold spaces, so read after its `)`
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok());
            if ppid == Some(postmaster) {
                pids.push(pid);
            }
        }
        pids
    }
}

/// Sends `SIG<name>` to each of `pids`.
fn signal(name: &str, pids: &[u32]) {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .args(pids.iter().map(u32::to_string))
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{name} {pids:?} failed");
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let data = self.data.to_string_lossy().into_owned();
        let _ = Command::new(if is_root() { "runuser" } else { "true" })
            .args(if is_root() {
                vec!["-u", "postgres", "--"]
            } else {
                vec![]
            })
            .arg(self.bin.join("pg_ctl"))
            .args(["-D", &data, "-m", "immediate", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// The newest installed server's `bin` directory (Debian keeps `initdb` off `PATH`).
fn server_bin() -> PathBuf {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|dirs| dirs.flatten().map(|d| d.path().join("bin")).collect())
        .unwrap_or_default();
    versions.retain(|bin| bin.join("initdb").exists());
    versions.sort_by_key(|bin| {
        bin.parent()
            .and_then(|v| v.file_name()?.to_str()?.parse::<u32>().ok())
            .unwrap_or(0)
    });
    versions.pop().unwrap_or_else(|| {
        let initdb = Command::new("sh")
            .args(["-c", "command -v initdb"])
            .output()
            .expect("look for initdb");
        let path = String::from_utf8_lossy(&initdb.stdout).trim().to_owned();
        assert!(
            !path.is_empty(),
            "PostgreSQL server binaries (initdb) are not installed"
        );
        PathBuf::from(path)
            .parent()
            .expect("initdb's directory")
            .to_owned()
    })
}

pub(crate) fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| out.stdout.trim_ascii() == b"0")
}

pub(crate) fn chown_postgres(dir: &Path) {
    let status = Command::new("chown")
        .args(["-R", "postgres"])
        .arg(dir)
        .status()
        .expect("chown");
    assert!(status.success(), "chown postgres {}", dir.display());
}
