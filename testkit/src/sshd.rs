//! OpenSSH's `sshd` serving git on loopback: host keys it generates (`ssh-keygen`), an
//! `authorized_keys` the test writes, and `git-shell` as the only thing a session may
//! run besides `git-lfs-authenticate`, as forges' ssh endpoints behave. Needs Debian's
//! `openssh-server` (scripts/test.sh installs it).
//!
//! `git-lfs-authenticate` is a small script: it logs the command it was run as and
//! prints the answer a test set ([`Sshd::answer_lfs_authenticate`]), or fails as a
//! server without LFS does.

use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::git::free_port;

const SSHD: &str = "/usr/sbin/sshd";

/// The host key types sshd is given, in the order `ssh-keygen -t` names them.
pub const HOST_KEY_TYPES: [&str; 3] = ["ed25519", "ecdsa", "rsa"];

pub struct Sshd {
    child: Option<Child>,
    dir: TempDir,
    pub port: u16,
    /// The account sessions log in as: the one the tests run as.
    pub user: String,
    key_types: Vec<&'static str>,
    generation: u32,
}

fn run(cmd: &mut Command, what: &str) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl Sshd {
    /// sshd on a free port of 127.0.0.1 with a fresh host key of each of `key_types`
    /// (`ed25519`, `ecdsa`, `rsa`) and an empty `authorized_keys`.
    pub fn start(key_types: &[&'static str]) -> Self {
        assert!(
            Path::new(SSHD).exists(),
            "{SSHD} is missing: install Debian's openssh-server (scripts/test.sh does)"
        );
        let user = run(Command::new("id").arg("-un"), "id -un")
            .trim()
            .to_owned();
        // sshd running as root wants its privilege separation directory
        if user == "root" {
            std::fs::create_dir_all("/run/sshd").expect("create /run/sshd");
        }
        let dir = TempDir::new().expect("sshd dir");
        std::fs::write(dir.path().join("authorized_keys"), "").unwrap();
        let mut sshd = Self {
            child: None,
            dir,
            port: free_port(),
            user,
            key_types: key_types.to_vec(),
            generation: 0,
        };
        sshd.new_host_keys();
        sshd.spawn();
        sshd
    }

    fn host_key(&self, kind: &str) -> PathBuf {
        self.dir
            .path()
            .join(format!("host_{kind}_{}", self.generation))
    }

    fn new_host_keys(&mut self) {
        self.generation += 1;
        for kind in self.key_types.clone() {
            let file = self.host_key(kind);
            run(
                Command::new("ssh-keygen")
                    .args(["-q", "-t", kind, "-N", "", "-C", "", "-f"])
                    .arg(&file),
                "ssh-keygen",
            );
        }
    }

    fn spawn(&mut self) {
        let dir = self.dir.path();
        let dispatch = dir.join("dispatch.sh");
        std::fs::write(&dispatch, dispatcher(dir)).unwrap();
        std::fs::set_permissions(&dispatch, std::fs::Permissions::from_mode(0o755)).unwrap();
        let host_keys: String = self
            .key_types
            .iter()
            .map(|k| format!("HostKey {}\n", self.host_key(k).display()))
            .collect();
        let config = format!(
            "Port {port}\nListenAddress 127.0.0.1\n{host_keys}\
             PidFile {dir}/sshd.pid\nAuthorizedKeysFile {dir}/authorized_keys\n\
             StrictModes no\nUsePAM no\nPasswordAuthentication no\n\
             KbdInteractiveAuthentication no\nPubkeyAuthentication yes\n\
             PermitRootLogin prohibit-password\nAllowUsers {user}\n\
             DisableForwarding yes\nPermitTTY no\n\
             ForceCommand {dispatch}\n\
             LogLevel VERBOSE\n",
            port = self.port,
            dir = dir.display(),
            dispatch = dispatch.display(),
            user = self.user,
        );
        let config_file = dir.join("sshd_config");
        std::fs::write(&config_file, config).unwrap();
        let child = Command::new(SSHD)
            .arg("-D")
            .arg("-E")
            .arg(dir.join("sshd.log"))
            .arg("-f")
            .arg(&config_file)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start sshd");
        self.child = Some(child);
        self.wait_ready();
    }

    /// Until sshd greets a connection with its version line.
    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(mut tcp) = TcpStream::connect(("127.0.0.1", self.port)) {
                use std::io::Read;
                let _ = tcp.set_read_timeout(Some(Duration::from_secs(2)));
                let mut banner = [0u8; 4];
                if tcp.read_exact(&mut banner).is_ok() && &banner == b"SSH-" {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "sshd did not start on port {}: {}",
                self.port,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Restarts sshd on the same port with new host keys: what a client sees when the
    /// upstream's keys change, or when something else answers in its place.
    pub fn change_host_keys(&mut self) {
        self.stop();
        self.new_host_keys();
        self.spawn();
    }

    /// Lets `public_key` (an `authorized_keys` line) log in, in place of any other.
    pub fn authorize(&self, public_key: &str) {
        std::fs::write(
            self.dir.path().join("authorized_keys"),
            format!("{}\n", public_key.trim()),
        )
        .unwrap();
    }

    /// Lets no key log in.
    pub fn revoke_all(&self) {
        std::fs::write(self.dir.path().join("authorized_keys"), "").unwrap();
    }

    /// The SHA-256 fingerprints of the current host keys as `ssh-keygen -lf` prints
    /// them, in [`HOST_KEY_TYPES`] order of `key_types`.
    pub fn fingerprints(&self) -> Vec<String> {
        self.key_types
            .iter()
            .map(|kind| {
                let mut public = self.host_key(kind).into_os_string();
                public.push(".pub");
                let line = run(
                    Command::new("ssh-keygen")
                        .args(["-E", "sha256", "-lf"])
                        .arg(&public),
                    "ssh-keygen -lf",
                );
                line.split_whitespace()
                    .nth(1)
                    .expect("a fingerprint")
                    .to_owned()
            })
            .collect()
    }

    /// The ssh URL of the repository at `path` (absolute), as `user@127.0.0.1`.
    pub fn url(&self, path: &Path) -> String {
        format!(
            "ssh://{}@127.0.0.1:{}{}",
            self.user,
            self.port,
            path.display()
        )
    }

    /// From now on `git-lfs-authenticate` prints `answer` (git-lfs's JSON:
    /// `{"href", "header", "expires_in"}`) and exits 0, whatever it is asked.
    pub fn answer_lfs_authenticate(&self, answer: &str) {
        std::fs::write(self.dir.path().join("lfs-authenticate.json"), answer).unwrap();
    }

    /// Every `git-lfs-authenticate …` command a session ran, in order.
    pub fn lfs_authenticate_calls(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.path().join("lfs-authenticate.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// What sshd logged, for a failing assertion's message.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
    }
}

/// The session's one command: `git-lfs-authenticate` answered from the test's file,
/// anything else handed to `git-shell`, which runs git's fetch commands only.
fn dispatcher(dir: &Path) -> String {
    let dir = dir.display();
    format!(
        "#!/bin/sh\n\
         case \"$SSH_ORIGINAL_COMMAND\" in\n\
         'git-lfs-authenticate '*)\n\
         \tprintf '%s\\n' \"$SSH_ORIGINAL_COMMAND\" >> '{dir}/lfs-authenticate.log'\n\
         \tif [ -f '{dir}/lfs-authenticate.json' ]; then exec cat '{dir}/lfs-authenticate.json'; fi\n\
         \techo 'git-lfs-authenticate: this server has no LFS' >&2\n\
         \texit 1 ;;\n\
         *) exec git-shell -c \"$SSH_ORIGINAL_COMMAND\" ;;\n\
         esac\n"
    )
}

impl Drop for Sshd {
    fn drop(&mut self) {
        self.stop();
    }
}
