//! Redirects between kept connections: each hop is vetted under the fetch's own
//! session, its name resolved and checked, before a connection to it is used.

use std::net::SocketAddr;

use stasis_shared::domain::ErrorKind;
use stasis_testkit::dns::RebindingDns;
use stasis_testkit::netns;
use stasis_worker::git::transport::NetworkPolicy;

use super::{check, ip, no_op, permissive, strict, up_to_date, upstream, Https, PUBLIC};

#[test]
fn a_redirect_to_another_host_goes_over_a_connection_of_that_host() {
    let base = tempfile::tempdir().unwrap();
    let up = upstream(base.path());
    let forge = Https::start(base.path(), ip("127.0.0.2"));
    let cdn = Https::start_at(
        base.path(),
        SocketAddr::new(ip("127.0.0.3"), forge.front.port()),
    );
    let dns = RebindingDns::start_names(&[
        ("forge.test", vec![ip("127.0.0.2")]),
        ("cdn.test", vec![ip("127.0.0.3")]),
    ]);
    forge.backend.redirect("/moved.git", &cdn.url("cdn.test"));
    let network = NetworkPolicy {
        dns_server: Some(dns.addr()),
        ..permissive()
    };
    let dir = tempfile::tempdir().unwrap();
    let mirror = up_to_date(dir.path(), &up, "m");
    let moved = forge.front.url("forge.test", "moved.git");

    no_op(&mirror, &moved, &network);
    no_op(&mirror, &moved, &network);

    assert_eq!((forge.requests(), cdn.requests()), (2, 2));
    assert_eq!((forge.front.accepted(), cdn.front.accepted()), (1, 1));
    let calls = cdn.backend.calls();
    let expected = format!("cdn.test:{}", forge.front.port());
    assert!(
        calls
            .iter()
            .all(|c| c.host.as_deref() == Some(expected.as_str())),
        "{calls:?}"
    );
}

#[test]
fn a_redirect_to_a_name_that_resolves_to_loopback_is_refused() {
    if !netns::enter_or_run(
        "redirects::a_redirect_to_a_name_that_resolves_to_loopback_is_refused",
        &[PUBLIC],
    ) {
        return;
    }
    let base = tempfile::tempdir().unwrap();
    let up = upstream(base.path());
    let forge = Https::start(base.path(), ip(PUBLIC));
    let inside = Https::start_at(
        base.path(),
        SocketAddr::new(ip("127.0.0.1"), forge.front.port()),
    );
    let dns = RebindingDns::start_names(&[
        ("forge.test", vec![ip(PUBLIC)]),
        ("cdn.test", vec![ip("127.0.0.1")]),
    ]);
    forge
        .backend
        .redirect("/moved.git", &inside.url("cdn.test"));
    let network = NetworkPolicy {
        dns_server: Some(dns.addr()),
        ..strict()
    };
    let dir = tempfile::tempdir().unwrap();
    let mirror = up_to_date(dir.path(), &up, "m");
    no_op(&mirror, &forge.url("forge.test"), &network);

    let refused = check(
        &mirror,
        &forge.front.url("forge.test", "moved.git"),
        &network,
    )
    .expect_err("a redirect to loopback");

    assert_eq!(refused.kind, ErrorKind::BlockedUrl, "{refused:?}");
    assert_eq!(inside.front.accepted(), 0);
    assert_eq!(
        forge.front.accepted(),
        1,
        "the redirect came over the kept connection"
    );
}

#[test]
fn an_https_upstream_redirecting_to_http_is_refused() {
    let base = tempfile::tempdir().unwrap();
    let up = upstream(base.path());
    let https = Https::start(base.path(), ip("127.0.0.1"));
    let plain = format!("http://127.0.0.1:{}/x.git", https.backend.port());
    https.backend.redirect("/down.git", &plain);
    let dir = tempfile::tempdir().unwrap();
    let mirror = up_to_date(dir.path(), &up, "m");

    let refused = check(
        &mirror,
        &https.front.url("127.0.0.1", "down.git"),
        &permissive(),
    )
    .expect_err("https to http");

    assert_eq!(refused.kind, ErrorKind::BlockedUrl, "{refused:?}");
    assert_eq!(
        https.backend.requests().len(),
        1,
        "only the redirecting request"
    );
}
