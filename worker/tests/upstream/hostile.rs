//! What a hostile upstream can make a fetch do: it ends, closes its connection, holds
//! bounded memory, and says why.

use std::sync::Arc;
use std::time::{Duration, Instant};

use stasis_shared::domain::ErrorKind;
use stasis_testkit::git::Upstream;
use stasis_testkit::hostile::{HostileGitServer, Hostility};
use stasis_worker::git::fetch::{StopFlag, StopReason};
use stasis_worker::git::transport::NetworkPolicy;

use super::{fetch, fetch_once, permissive};

const CLOSED: Duration = Duration::from_secs(5);

#[test]
fn an_endless_advertisement_is_cut_at_its_size_limit() {
    let server = HostileGitServer::start(Hostility::EndlessAdvertisement);
    let dir = tempfile::tempdir().unwrap();
    let network = NetworkPolicy {
        max_advertisement_size: 1 << 20,
        ..permissive()
    };
    let err = fetch_once(&dir.path().join("m.git"), &server.url("x.git"), &network)
        .expect_err("endless advertisement");
    assert_eq!(err.kind, ErrorKind::TooLarge, "{err:?}");
    assert!(
        err.message.contains("max_advertisement_size"),
        "{}",
        err.message
    );
    assert!(server.wait_peer_closed(CLOSED), "the connection is closed");
    // what the kernel buffers beyond the limit, not what the server could send
    assert!(
        server.bytes_sent() < 8 << 20,
        "{} bytes",
        server.bytes_sent()
    );
}

#[test]
fn an_advertisement_of_too_many_refs_is_cut_at_the_ref_limit() {
    let server = HostileGitServer::start(Hostility::EndlessAdvertisement);
    let dir = tempfile::tempdir().unwrap();
    let network = NetworkPolicy {
        max_advertised_refs: 1000,
        ..permissive()
    };
    let err = fetch_once(&dir.path().join("m.git"), &server.url("x.git"), &network)
        .expect_err("too many refs");
    assert_eq!(err.kind, ErrorKind::TooLarge, "{err:?}");
    assert!(
        err.message.contains("max_advertised_refs"),
        "{}",
        err.message
    );
    assert!(server.wait_peer_closed(CLOSED));
}

#[test]
fn a_stop_ends_the_transfer_and_closes_the_connection() {
    let server = HostileGitServer::start(Hostility::EndlessAdvertisement);
    let dir = tempfile::tempdir().unwrap();
    let network = NetworkPolicy {
        max_advertisement_size: u64::MAX,
        max_advertised_refs: u32::MAX,
        ..permissive()
    };
    let stop = Arc::new(StopFlag::default());
    let started = Instant::now();
    let url = server.url("x.git");
    let err = std::thread::scope(|s| {
        s.spawn(|| {
            // stop once the transfer is under way
            while server.bytes_sent() < 1 << 20 {
                std::thread::sleep(Duration::from_millis(5));
            }
            stop.stop(StopReason::Cancelled);
        });
        fetch(
            &dir.path().join("m.git"),
            &url,
            &network,
            Duration::from_secs(60),
            &stop,
        )
        .expect_err("stopped")
    });
    assert!(err.message.contains("cancelled"), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert!(server.wait_peer_closed(CLOSED));
}

#[test]
fn a_silent_upstream_times_out_at_the_deadline_and_is_let_go() {
    let server = HostileGitServer::start(Hostility::Silent);
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let err = fetch(
        &dir.path().join("m.git"),
        &server.url("x.git"),
        &permissive(),
        Duration::from_secs(1),
        &Arc::new(StopFlag::default()),
    )
    .expect_err("silent");
    assert_eq!(err.kind, ErrorKind::Timeout, "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert!(server.wait_peer_closed(CLOSED));
}

#[test]
fn garbage_and_junk_packs_fail_the_sync_without_writing_refs() {
    for kind in [Hostility::GarbageAfterAdvertisement, Hostility::JunkPack] {
        let server = HostileGitServer::start(kind);
        let dir = tempfile::tempdir().unwrap();
        let mirror = dir.path().join("m.git");
        let network = NetworkPolicy {
            max_transfer: 4 << 20,
            ..permissive()
        };
        let err = fetch_once(&mirror, &server.url("x.git"), &network).expect_err("hostile");
        // the upstream answered, wrongly: not a network failure
        assert_eq!(err.kind, ErrorKind::GitProtocol, "{kind:?}: {err:?}");
        // a failed import leaves nothing behind, no refs and no directory
        assert!(!mirror.exists(), "{kind:?}: nothing written");
        assert!(server.wait_peer_closed(CLOSED), "{kind:?}");
    }
}

#[test]
fn a_mirror_cannot_grow_past_its_size_limit() {
    let base = tempfile::tempdir().unwrap();
    let mut up = Upstream::create(base.path().join("x.git"));
    up.add_blob("big.bin", 3 << 20);
    let daemon = stasis_testkit::git::GitDaemon::start(base.path());
    let dir = tempfile::tempdir().unwrap();
    let mirror = dir.path().join("m.git");
    let network = NetworkPolicy {
        max_transfer: 1 << 20,
        ..permissive()
    };
    let err = fetch_once(&mirror, &daemon.url("x.git"), &network).expect_err("too large");
    assert_eq!(err.kind, ErrorKind::TooLarge, "{err:?}");
    assert!(err.message.contains("max_size"), "{}", err.message);
    assert!(!mirror.exists(), "a failed import leaves nothing behind");
    // within the limit it syncs
    fetch_once(&mirror, &daemon.url("x.git"), &permissive()).expect("default limit");
    stasis_testkit::git::assert_mirrors(&mirror, &up);
    // a mirror already past a lowered limit fails before it connects
    let over = fetch_once(&mirror, &daemon.url("x.git"), &network).expect_err("over the limit");
    assert_eq!(over.kind, ErrorKind::TooLarge, "{over:?}");
    assert!(
        over.message.contains("the mirror takes"),
        "{}",
        over.message
    );
}
