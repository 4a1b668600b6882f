//! A kept connection serves only checks that would have opened it: the same host name
//! at the same approved addresses, the same policy, the same credentials.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

use stasis_shared::domain::ErrorKind;
use stasis_testkit::dns::RebindingDns;
use stasis_testkit::netns;
use stasis_worker::git::transport::NetworkPolicy;

use super::{check, ip, no_op, permissive, strict, up_to_date, upstream, Https, PUBLIC};

/// Two names on two loopback addresses at one port, one certificate for both (as a
/// forge's wildcard certificate would be): each name's checks go to its own address.
#[test]
fn names_at_other_addresses_never_share_a_connection() {
    let base = tempfile::tempdir().unwrap();
    let up = upstream(base.path());
    let a = Https::start(base.path(), ip("127.0.0.2"));
    let b = Https::start_at(
        base.path(),
        SocketAddr::new(ip("127.0.0.3"), a.front.port()),
    );
    let dns = RebindingDns::start_names(&[
        ("a.test", vec![ip("127.0.0.2")]),
        ("b.test", vec![ip("127.0.0.3")]),
    ]);
    let network = NetworkPolicy {
        dns_server: Some(dns.addr()),
        ..permissive()
    };
    let dir = tempfile::tempdir().unwrap();
    let mirror = up_to_date(dir.path(), &up, "m");

    for host in ["a.test", "b.test", "a.test", "b.test"] {
        no_op(&mirror, &a.front.url(host, "x.git"), &network);
    }

    for (server, host) in [(&a, "a.test"), (&b, "b.test")] {
        assert_eq!(server.front.accepted(), 1, "{host}: one connection");
        let calls = server.backend.calls();
        assert_eq!(calls.len(), 2, "{host}: {calls:?}");
        let expected = format!("{host}:{}", a.front.port());
        assert!(
            calls
                .iter()
                .all(|c| c.host.as_deref() == Some(expected.as_str())),
            "{host} received another name's requests: {calls:?}"
        );
    }
}

#[test]
fn a_connection_kept_under_a_permissive_policy_never_serves_a_strict_one() {
    let base = tempfile::tempdir().unwrap();
    let up = upstream(base.path());
    let https = Https::start(base.path(), ip("127.0.0.1"));
    let dir = tempfile::tempdir().unwrap();
    let mirror = up_to_date(dir.path(), &up, "m");
    let url = https.url("127.0.0.1");
    no_op(&mirror, &url, &permissive());

    let refused = check(&mirror, &url, &strict()).expect_err("loopback under the strict policy");

    assert_eq!(refused.kind, ErrorKind::BlockedUrl, "{refused:?}");
    assert_eq!(https.requests(), 1, "{:?}", https.backend.requests());
    assert_eq!(https.front.accepted(), 1);
}

#[test]
fn a_check_under_another_policy_gets_a_connection_of_its_own() {
    if !netns::enter_or_run(
        "isolation::a_check_under_another_policy_gets_a_connection_of_its_own",
        &[PUBLIC],
    ) {
        return;
    }
    let base = tempfile::tempdir().unwrap();
    let up = upstream(base.path());
    let https = Https::start(base.path(), ip(PUBLIC));
    let dir = tempfile::tempdir().unwrap();
    let mirror = up_to_date(dir.path(), &up, "m");
    let url = https.url(PUBLIC);
    // both allow 1.2.3.4; they differ in what else they would allow
    no_op(&mirror, &url, &permissive());
    no_op(&mirror, &url, &strict());

    assert_eq!(https.front.accepted(), 2, "TCP connections");
    let peers: BTreeSet<_> = https.backend.calls().iter().map(|c| c.peer).collect();
    assert_eq!(peers.len(), 2);
}

/// The upstream wants alice's credentials; bob's are refused and a mirror without any
/// is asked for them. No connection ever carries two of them.
#[test]
fn credentials_of_one_mirror_never_ride_a_connection_kept_for_another() {
    let base = tempfile::tempdir().unwrap();
    let up = upstream(base.path());
    let https = Https::start(base.path(), ip("127.0.0.1"));
    https.backend.require_basic_auth("alice", "alice-pw");
    let dir = tempfile::tempdir().unwrap();
    let mirror = up_to_date(dir.path(), &up, "m");
    let port = https.front.port();
    let alice = format!("https://alice:alice-pw@127.0.0.1:{port}/x.git");
    let bob = format!("https://bob:bob-pw@127.0.0.1:{port}/x.git");
    let nobody = https.url("127.0.0.1");

    for url in [&alice, &bob, &nobody, &alice, &bob, &nobody] {
        let checked = check(&mirror, url, &permissive());
        if url == &alice {
            assert!(checked.expect("alice's credentials").unchanged);
        } else {
            let refused = checked.expect_err("not alice's credentials");
            assert_eq!(refused.kind, ErrorKind::Auth, "{refused:?}");
        }
    }

    let mut carried: BTreeMap<SocketAddr, BTreeSet<Option<String>>> = BTreeMap::new();
    for call in https.backend.calls() {
        carried
            .entry(call.peer)
            .or_default()
            .insert(call.authorization);
    }
    assert_eq!(
        carried.len(),
        3,
        "a connection per credentials: {carried:?}"
    );
    for (peer, authorizations) in &carried {
        let given: Vec<_> = authorizations.iter().flatten().collect();
        assert!(given.len() <= 1, "{peer} carried {given:?}");
    }
    assert_eq!(https.front.accepted(), 3);
}
