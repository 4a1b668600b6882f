//! The network fixtures against real clients: the git CLI, std sockets and hickory-proto.

mod dns;
mod hostile;
mod http;
mod netns;

use std::path::Path;
use std::process::{Command, Output};

/// The git CLI as a client: no proxies, no credential helpers, no prompts.
pub fn git_client(dir: &Path, args: &[&str]) -> Output {
    Command::new("git")
        .current_dir(dir)
        .args(["-c", "credential.helper=", "-c", "protocol.version=2"])
        .args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .env_remove("http_proxy")
        .env_remove("https_proxy")
        .env_remove("HTTP_PROXY")
        .env_remove("HTTPS_PROXY")
        .env_remove("ALL_PROXY")
        .output()
        .expect("run git")
}

/// Like [`git_client`], and panics with its stderr unless it succeeded.
pub fn git_ok(dir: &Path, args: &[&str]) -> String {
    let out = git_client(dir, args);
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn fixtures_stop_on_drop() {
    use stasis_testkit::{dns, hostile, http};
    let hostile = hostile::HostileGitServer::start(hostile::Hostility::Silent);
    let held = std::net::TcpStream::connect(hostile.addr()).unwrap();
    let addr = hostile.addr();
    drop(hostile); // with a connection still open
    assert!(std::net::TcpStream::connect(addr).is_err());
    drop(held);

    let root = tempfile::tempdir().unwrap();
    let server = http::GitHttpServer::start(root.path());
    let addr = server.addr();
    drop(server);
    assert!(std::net::TcpStream::connect(addr).is_err());

    let dns = dns::RebindingDns::start("a.test", vec![]);
    let addr = dns.addr();
    drop(dns);
    std::net::UdpSocket::bind(addr).expect("the DNS port is free again");
}
