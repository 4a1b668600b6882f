use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use stasis_testkit::hostile::{pkt, HostileGitServer, Hostility, ADVERTISED_OID, CAPABILITIES};

use crate::git_client;

const CLOSE: Duration = Duration::from_secs(10);

/// Connects and sends the request a git:// client opens with.
fn connect(server: &HostileGitServer) -> TcpStream {
    let mut s = TcpStream::connect(server.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(&pkt(b"git-upload-pack /r.git\0host=example\0"))
        .unwrap();
    s
}

/// Reads pkt-lines up to a flush, as text.
fn read_until_flush(s: &mut TcpStream) -> Vec<String> {
    let mut lines = Vec::new();
    loop {
        let mut len = [0u8; 4];
        s.read_exact(&mut len).unwrap();
        let len = usize::from_str_radix(std::str::from_utf8(&len).unwrap(), 16).unwrap();
        if len == 0 {
            return lines;
        }
        let mut payload = vec![0u8; len - 4];
        s.read_exact(&mut payload).unwrap();
        lines.push(String::from_utf8(payload).unwrap());
    }
}

#[test]
fn endless_advertisement_never_flushes() {
    let server = HostileGitServer::start(Hostility::EndlessAdvertisement);
    let mut s = connect(&server);
    let mut read = 0;
    let mut i = 0u64;
    while read < 4 << 20 {
        let mut len = [0u8; 4];
        s.read_exact(&mut len).unwrap();
        let len = usize::from_str_radix(std::str::from_utf8(&len).unwrap(), 16).unwrap();
        assert_ne!(len, 0, "a flush after {i} refs");
        let mut line = vec![0u8; len - 4];
        s.read_exact(&mut line).unwrap();
        let line = String::from_utf8(line).unwrap();
        let (oid, rest) = line.split_once(' ').unwrap();
        assert_eq!(oid.len(), 40);
        assert!(oid.bytes().all(|b| b.is_ascii_hexdigit()));
        let caps = if i == 0 {
            format!("\0{CAPABILITIES}")
        } else {
            String::new()
        };
        assert_eq!(rest, format!("refs/heads/b{i}{caps}\n"));
        read += len;
        i += 1;
    }
    assert!(server.bytes_sent() >= read as u64);
    assert!(!server.peer_closed());
    drop(s);
    assert!(server.wait_peer_closed(CLOSE), "hang-up not seen");
    assert_eq!(server.connections(), 1);
}

#[test]
fn garbage_follows_the_wants() {
    let server = HostileGitServer::start(Hostility::GarbageAfterAdvertisement);
    let mut s = connect(&server);
    let refs = read_until_flush(&mut s);
    assert_eq!(
        refs,
        [
            format!("{ADVERTISED_OID} HEAD\0{CAPABILITIES}\n"),
            format!("{ADVERTISED_OID} refs/heads/main\n")
        ]
    );
    let sent_before_wants = server.bytes_sent();
    s.write_all(&pkt(format!("want {ADVERTISED_OID}\n").as_bytes()))
        .unwrap();
    s.write_all(b"0000").unwrap();
    let mut garbage = vec![0u8; 1 << 20];
    s.read_exact(&mut garbage).unwrap();
    assert!(
        !garbage[..4].iter().all(u8::is_ascii_hexdigit),
        "not a pkt-line"
    );
    assert!(server.bytes_sent() >= sent_before_wants + (1 << 20));
    drop(s);
    assert!(server.wait_peer_closed(CLOSE));
}

#[test]
fn junk_pack_after_nak() {
    let server = HostileGitServer::start(Hostility::JunkPack);
    let mut s = connect(&server);
    let refs = read_until_flush(&mut s);
    assert_eq!(
        refs,
        [format!("{ADVERTISED_OID} refs/heads/main\0ofs-delta\n")]
    );
    s.write_all(&pkt(format!("want {ADVERTISED_OID}\n").as_bytes()))
        .unwrap();
    s.write_all(b"0000").unwrap();
    s.write_all(&pkt(b"done\n")).unwrap();
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).unwrap(); // the server closes its side after the pack
    assert!(
        rest.starts_with(b"0008NAK\nPACK\0\0\0\x02\0\0\0\x01"),
        "{rest:?}"
    );
    drop(s);
    assert!(server.wait_peer_closed(CLOSE));
}

#[test]
fn git_lists_the_refs_then_rejects_the_pack() {
    let server = HostileGitServer::start(Hostility::JunkPack);
    let dir = tempfile::tempdir().unwrap();
    let listed = crate::git_ok(dir.path(), &["ls-remote", &server.url("r.git")]);
    assert_eq!(listed, format!("{ADVERTISED_OID}\trefs/heads/main\n"));
    let clone = git_client(dir.path(), &["clone", "-q", &server.url("r.git"), "c"]);
    assert!(!clone.status.success(), "a corrupt pack was accepted");
    assert!(server.wait_peer_closed(CLOSE));
    assert_eq!(server.connections(), 2);
}

#[test]
fn silent_sends_nothing_and_sees_the_hang_up() {
    let server = HostileGitServer::start(Hostility::Silent);
    let mut s = connect(&server);
    s.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut buf = [0u8; 1];
    let err = s
        .read(&mut buf)
        .expect_err("the silent server sent something");
    assert!(matches!(
        err.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    ));
    assert_eq!(server.bytes_sent(), 0);
    assert!(!server.peer_closed());
    drop(s);
    assert!(server.wait_peer_closed(CLOSE));
}
