//! Checks of mirrors on one https:// upstream share one connection: one TCP connection
//! and one TLS handshake for any number of no-op checks, unless reuse is off.

use std::collections::BTreeSet;

use stasis_testkit::netns;
use stasis_worker::git::transport::{configure_reuse, Reuse};

use super::{ip, no_op, permissive, up_to_date, upstream, Https};

#[test]
fn no_op_checks_of_two_mirrors_on_one_upstream_share_one_connection() {
    let base = tempfile::tempdir().unwrap();
    let up = upstream(base.path());
    let https = Https::start(base.path(), ip("127.0.0.1"));
    let dir = tempfile::tempdir().unwrap();
    let (m1, m2) = (
        up_to_date(dir.path(), &up, "m1"),
        up_to_date(dir.path(), &up, "m2"),
    );
    let url = https.url("127.0.0.1");

    no_op(&m1, &url, &permissive());
    no_op(&m2, &url, &permissive());

    assert_eq!(https.front.accepted(), 1, "TCP connections");
    assert_eq!(https.front.handshakes(), 1, "TLS handshakes");
    let calls = https.backend.calls();
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert_eq!(
        calls[0].peer, calls[1].peer,
        "both listings over one connection"
    );
}

#[test]
fn a_chunked_answer_leaves_its_connection_for_the_next_check() {
    let base = tempfile::tempdir().unwrap();
    let up = upstream(base.path());
    let https = Https::start(base.path(), ip("127.0.0.1"));
    https.backend.answer_chunked();
    let dir = tempfile::tempdir().unwrap();
    let (m1, m2) = (
        up_to_date(dir.path(), &up, "m1"),
        up_to_date(dir.path(), &up, "m2"),
    );
    let url = https.url("127.0.0.1");

    for mirror in [&m1, &m2, &m1] {
        no_op(mirror, &url, &permissive());
    }

    assert_eq!(https.front.accepted(), 1, "TCP connections");
    assert_eq!(https.front.handshakes(), 1, "TLS handshakes");
}

/// In a process of its own: the setting is the process's.
#[test]
fn with_reuse_off_every_check_opens_its_own_connection() {
    if !netns::enter_or_run(
        "sharing::with_reuse_off_every_check_opens_its_own_connection",
        &[],
    ) {
        return;
    }
    configure_reuse(Reuse {
        enabled: false,
        ..Reuse::default()
    });
    let base = tempfile::tempdir().unwrap();
    let up = upstream(base.path());
    let https = Https::start(base.path(), ip("127.0.0.1"));
    let dir = tempfile::tempdir().unwrap();
    let (m1, m2) = (
        up_to_date(dir.path(), &up, "m1"),
        up_to_date(dir.path(), &up, "m2"),
    );
    let url = https.url("127.0.0.1");

    no_op(&m1, &url, &permissive());
    no_op(&m2, &url, &permissive());

    assert_eq!(https.front.accepted(), 2, "TCP connections");
    assert_eq!(https.front.handshakes(), 2, "TLS handshakes");
    let peers: BTreeSet<_> = https.backend.calls().iter().map(|c| c.peer).collect();
    assert_eq!(peers.len(), 2, "one connection per check");
}
