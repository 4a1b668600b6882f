//! A name that answers differently between checks: the kept connection to the old
//! address is never used again, and closed.

use std::net::SocketAddr;

use stasis_shared::domain::ErrorKind;
use stasis_testkit::dns::RebindingDns;
use stasis_testkit::netns;
use stasis_worker::git::transport::NetworkPolicy;

use super::{
    check, eventually, ip, no_op, strict, up_to_date, upstream, Https, PUBLIC, PUBLIC_TOO,
};

#[test]
fn a_name_rebound_to_loopback_is_refused_rather_than_served_over_its_kept_connection() {
    if !netns::enter_or_run(
        "rebinding::a_name_rebound_to_loopback_is_refused_rather_than_served_over_its_kept_connection",
        &[PUBLIC],
    ) {
        return;
    }
    let base = tempfile::tempdir().unwrap();
    let up = upstream(base.path());
    let https = Https::start(base.path(), ip(PUBLIC));
    let dns = RebindingDns::start("upstream.test", vec![ip(PUBLIC), ip("127.0.0.1")]);
    let network = NetworkPolicy {
        dns_server: Some(dns.addr()),
        ..strict()
    };
    let dir = tempfile::tempdir().unwrap();
    let mirror = up_to_date(dir.path(), &up, "m");
    let url = https.url("upstream.test");
    no_op(&mirror, &url, &network);
    assert_eq!(https.front.open(), 1, "kept after the first check");

    let refused = check(&mirror, &url, &network).expect_err("second answer: loopback");

    assert_eq!(refused.kind, ErrorKind::BlockedUrl, "{refused:?}");
    assert_eq!(https.requests(), 1, "{:?}", https.backend.requests());
    assert_eq!(https.front.accepted(), 1);
    eventually("the kept connection to be closed", || {
        https.front.open() == 0
    });
}

#[test]
fn a_name_moved_to_another_address_is_checked_there_and_its_old_connection_closed() {
    if !netns::enter_or_run(
        "rebinding::a_name_moved_to_another_address_is_checked_there_and_its_old_connection_closed",
        &[PUBLIC, PUBLIC_TOO],
    ) {
        return;
    }
    let base = tempfile::tempdir().unwrap();
    let up = upstream(base.path());
    let old = Https::start(base.path(), ip(PUBLIC));
    let new = Https::start_at(
        base.path(),
        SocketAddr::new(ip(PUBLIC_TOO), old.front.port()),
    );
    let dns = RebindingDns::start("upstream.test", vec![ip(PUBLIC), ip(PUBLIC_TOO)]);
    let network = NetworkPolicy {
        dns_server: Some(dns.addr()),
        ..strict()
    };
    let dir = tempfile::tempdir().unwrap();
    let mirror = up_to_date(dir.path(), &up, "m");
    let url = old.url("upstream.test");

    no_op(&mirror, &url, &network);
    no_op(&mirror, &url, &network);

    assert_eq!((old.requests(), new.requests()), (1, 1));
    assert_eq!((old.front.accepted(), new.front.accepted()), (1, 1));
    eventually("the connection to the old address to be closed", || {
        old.front.open() == 0
    });
    assert_eq!(new.front.open(), 1, "the new one is kept");
}
