//! A PgBouncer of a test's own in front of a Postgres server, as platform teams put one
//! in front of a shared database. Debian's `pgbouncer` (scripts/test.sh installs it).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use tempfile::TempDir;

use crate::git::{free_port, wait_for_port};
use crate::services::{chown_postgres, is_root};

/// `pgbouncer` on a free port of 127.0.0.1, pooling every database of the Postgres on
/// `server_port` with trust authentication as `postgres`.
pub struct PgBouncer {
    pub port: u16,
    dir: TempDir,
    child: Child,
}

impl PgBouncer {
    /// `pool_mode = transaction`: a server connection serves a client for one
    /// transaction (or one statement outside a transaction), then any other client.
    pub fn transaction_mode(server_port: u16) -> Self {
        Self::start(server_port, "transaction", true)
    }

    /// `pool_mode = session`: a server connection is a client's until it disconnects.
    pub fn session_mode(server_port: u16) -> Self {
        Self::start(server_port, "session", true)
    }

    /// Session mode with PgBouncer's default `ignore_startup_parameters` (none): it
    /// refuses the `extra_float_digits` sqlx sends at connection.
    pub fn session_mode_refusing_startup_parameters(server_port: u16) -> Self {
        Self::start(server_port, "session", false)
    }

    fn start(server_port: u16, mode: &str, ignore_extra_float_digits: bool) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("stasis-pgbouncer-")
            .tempdir_in(std::env::temp_dir())
            .expect("pgbouncer dir");
        let port = free_port();
        let users = dir.path().join("users.txt");
        std::fs::write(&users, "\"postgres\" \"\"\n").expect("write users.txt");
        let ini = dir.path().join("pgbouncer.ini");
        // In transaction mode a small server pool: clients outnumber server connections,
        // as in production, so consecutive transactions of one client land on different
        // servers. In session mode every client holds a server connection: room for all
        // of a test's processes.
        // `extra_float_digits`: a startup parameter sqlx sends that PgBouncer does not
        // track (the documented setting for such clients).
        std::fs::write(
            &ini,
            format!(
                "[databases]\n\
                 * = host=127.0.0.1 port={server_port}\n\
                 [pgbouncer]\n\
                 listen_addr = 127.0.0.1\n\
                 listen_port = {port}\n\
                 unix_socket_dir =\n\
                 auth_type = trust\n\
                 auth_file = {users}\n\
                 pool_mode = {mode}\n\
                 default_pool_size = {pool}\n\
                 max_client_conn = 200\n\
                 {ignore}",
                users = users.display(),
                pool = if mode == "transaction" { 4 } else { 60 },
                ignore = if ignore_extra_float_digits {
                    "ignore_startup_parameters = extra_float_digits\n"
                } else {
                    ""
                },
            ),
        )
        .expect("write pgbouncer.ini");
        // PgBouncer refuses to run as root
        let mut command = if is_root() {
            chown_postgres(dir.path());
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(program());
            c
        } else {
            Command::new(program())
        };
        let log = std::fs::File::create(dir.path().join("pgbouncer.log")).expect("log file");
        let child = command
            .arg(&ini)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log"))
            .stderr(log)
            .spawn()
            .expect("start pgbouncer (Debian's pgbouncer package: scripts/test.sh installs it)");
        wait_for_port(port, "pgbouncer");
        Self { port, dir, child }
    }

    /// A URL to `database` through the pooler, as `postgres`.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// What PgBouncer logged so far (its refusals name the client's offence).
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("pgbouncer.log")).unwrap_or_default()
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        // as root the child is `runuser`, which passes SIGTERM on to pgbouncer
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

/// Debian installs it in /usr/sbin, off a normal user's `PATH`.
fn program() -> PathBuf {
    let sbin = Path::new("/usr/sbin/pgbouncer");
    if sbin.exists() {
        sbin.to_owned()
    } else {
        PathBuf::from("pgbouncer")
    }
}
