use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};

use stasis_testkit::hostile::{pkt, HostileGitServer, Hostility};
use stasis_testkit::netns::{enter_or_run, is_child};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[test]
fn public_addresses_are_local_inside() {
    if !enter_or_run(
        "netns::public_addresses_are_local_inside",
        &["1.2.3.4", "5.6.7.8"],
    ) {
        return;
    }
    for ip in ["1.2.3.4", "5.6.7.8", "127.0.0.1"] {
        let listener = TcpListener::bind((ip, 0)).unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut server, peer) = listener.accept().unwrap();
        assert_eq!(peer.ip().to_string(), ip, "the source is the local address");
        client.write_all(b"x").unwrap();
        let mut got = [0u8; 1];
        server.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"x");
    }
    // A namespace of its own (enter_or_run checked it is not the parent's): nothing but
    // lo, and the host's loopback services (Redis on 6379, Postgres on 5432) out of reach.
    assert!(is_child());
    let links = std::process::Command::new("ip")
        .args(["-o", "link"])
        .output()
        .unwrap();
    let links = String::from_utf8(links.stdout).unwrap();
    assert_eq!(links.lines().count(), 1, "{links}");
    assert!(links.contains(": lo:"));
    for port in [6379, 5432] {
        assert!(
            TcpStream::connect(("127.0.0.1", port)).is_err(),
            "port {port}"
        );
    }
}

#[tokio::test]
async fn async_bodies_run_inside_too() {
    if !enter_or_run("netns::async_bodies_run_inside_too", &["1.2.3.4"]) {
        return;
    }
    let ip = "1.2.3.4".parse().unwrap();
    let server = HostileGitServer::start_on(Hostility::EndlessAdvertisement, ip);
    assert_eq!(
        server.url("r.git"),
        format!("git://1.2.3.4:{}/r.git", server.port())
    );
    let mut s = tokio::net::TcpStream::connect(server.addr()).await.unwrap();
    s.write_all(&pkt(b"git-upload-pack /r.git\0"))
        .await
        .unwrap();
    let mut first = [0u8; 4 + 41 + 13];
    s.read_exact(&mut first).await.unwrap();
    assert!(first.ends_with(b"refs/heads/b0"), "{first:?}");
    drop(s);
    assert!(server.wait_peer_closed(std::time::Duration::from_secs(10)));
}

#[test]
fn http_server_on_a_public_address() {
    if !enter_or_run("netns::http_server_on_a_public_address", &["1.2.3.4"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let up = stasis_testkit::git::Upstream::create(dir.path().join("up"));
    let root = dir.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    stasis_testkit::git::git(&root, &["clone", "-q", "--bare", &up.url(), "r.git"]);
    let server = stasis_testkit::http::GitHttpServer::start_on(&root, "1.2.3.4".parse().unwrap());
    assert!(server.url("r.git").starts_with("http://1.2.3.4:"));
    let listed = crate::git_ok(dir.path(), &["ls-remote", &server.url("r.git")]);
    assert!(listed.contains(&up.refs()["refs/heads/main"]));
}

#[test]
#[should_panic(expected = "in a new network namespace")]
fn a_name_that_runs_no_test_fails() {
    // The child runs nothing and exits 0: that must not count as the body passing.
    if !enter_or_run("netns::no_such_test", &[]) {
        unreachable!("the parent panics first");
    }
}
