//! The host that is checked is the host that is connected to, for git:// and HTTP,
//! through DNS answers that change and through redirects.

use std::net::IpAddr;

use stasis_shared::domain::ErrorKind;
use stasis_testkit::dns::RebindingDns;
use stasis_testkit::git::{assert_mirrors, GitDaemon, Upstream};
use stasis_testkit::http::GitHttpServer;
use stasis_testkit::netns;
use stasis_worker::git::transport::NetworkPolicy;

use super::{fetch_once, strict, PUBLIC};

fn public() -> IpAddr {
    PUBLIC.parse().unwrap()
}

fn upstream(base: &std::path::Path) -> Upstream {
    let mut up = Upstream::create(base.join("x.git"));
    up.commit("first");
    up
}

#[test]
fn a_public_git_upstream_is_fetched_and_a_loopback_one_refused() {
    if !netns::enter_or_run(
        "policy::a_public_git_upstream_is_fetched_and_a_loopback_one_refused",
        &[PUBLIC],
    ) {
        return;
    }
    let base = tempfile::tempdir().unwrap();
    let up = upstream(base.path());
    let daemon = GitDaemon::start_on(base.path(), &["127.0.0.1", PUBLIC]);
    let dir = tempfile::tempdir().unwrap();

    let public_url = daemon.url_on(1, "x.git");
    fetch_once(&dir.path().join("m.git"), &public_url, &strict()).expect("public upstream");
    assert_mirrors(&dir.path().join("m.git"), &up);

    let refused = fetch_once(&dir.path().join("l.git"), &daemon.url("x.git"), &strict())
        .expect_err("loopback upstream");
    assert_eq!(refused.kind, ErrorKind::BlockedUrl, "{refused:?}");
}

#[test]
fn ambiguous_urls_reach_the_host_that_was_checked() {
    if !netns::enter_or_run(
        "policy::ambiguous_urls_reach_the_host_that_was_checked",
        &[PUBLIC],
    ) {
        return;
    }
    let base = tempfile::tempdir().unwrap();
    let _up = upstream(base.path());
    // the internal server the crafted URLs aim at
    let internal = GitDaemon::start(base.path());
    let http = GitHttpServer::start(base.path());
    let dir = tempfile::tempdir().unwrap();
    for (i, url) in [
        format!("git://{PUBLIC}#@127.0.0.1:{}/x.git", internal.port),
        format!("git://{PUBLIC}?@127.0.0.1:{}/x.git", internal.port),
        format!("http://{PUBLIC}#@127.0.0.1:{}/x.git", http.port()),
        format!("http://{PUBLIC}?@127.0.0.1:{}/x.git", http.port()),
        format!("http://{PUBLIC}\\@127.0.0.1:{}/x.git", http.port()),
    ]
    .iter()
    .enumerate()
    {
        let result = fetch_once(&dir.path().join(format!("m{i}.git")), url, &strict());
        assert!(result.is_err(), "{url}: nothing listens at {PUBLIC}");
    }
    assert!(http.requests().is_empty(), "{:?}", http.requests());
}

#[test]
fn a_name_that_rebinds_to_loopback_is_refused_where_it_connects() {
    if !netns::enter_or_run(
        "policy::a_name_that_rebinds_to_loopback_is_refused_where_it_connects",
        &[PUBLIC],
    ) {
        return;
    }
    let base = tempfile::tempdir().unwrap();
    let up = upstream(base.path());
    let daemon = GitDaemon::start_on(base.path(), &["127.0.0.1", PUBLIC]);
    let http = GitHttpServer::start_on(base.path(), public());
    let local_http = GitHttpServer::start(base.path());
    for (scheme, port, local) in [
        ("git", daemon.port, None),
        ("http", http.port(), Some(&local_http)),
    ] {
        let dns = RebindingDns::start(
            "upstream.test",
            vec![public(), "127.0.0.1".parse().unwrap()],
        );
        let network = NetworkPolicy {
            dns_server: Some(dns.addr()),
            ..strict()
        };
        let url = format!("{scheme}://upstream.test:{port}/x.git");
        let dir = tempfile::tempdir().unwrap();
        let mirror = dir.path().join("m.git");
        fetch_once(&mirror, &url, &network).expect("first answer: public");
        assert_mirrors(&mirror, &up);
        let url_local = match local {
            Some(server) => format!("{scheme}://upstream.test:{}/x.git", server.port()),
            None => url.clone(),
        };
        let refused = fetch_once(&dir.path().join("again.git"), &url_local, &network)
            .expect_err("second answer: loopback");
        assert_eq!(refused.kind, ErrorKind::BlockedUrl, "{scheme}: {refused:?}");
        if let Some(server) = local {
            assert!(server.requests().is_empty(), "{:?}", server.requests());
        }
    }
}

#[test]
fn redirects_are_followed_only_where_the_policy_allows() {
    if !netns::enter_or_run(
        "policy::redirects_are_followed_only_where_the_policy_allows",
        &[PUBLIC],
    ) {
        return;
    }
    let base = tempfile::tempdir().unwrap();
    let up = upstream(base.path());
    let front = GitHttpServer::start_on(base.path(), public());
    let same_host = GitHttpServer::start_on(base.path(), public());
    let internal = GitHttpServer::start(base.path());
    front.redirect(
        "/moved.git",
        &format!("http://{PUBLIC}:{}/x.git", same_host.port()),
    );
    front.redirect(
        "/inside.git",
        &format!("http://127.0.0.1:{}/x.git", internal.port()),
    );
    let dir = tempfile::tempdir().unwrap();

    let mirror = dir.path().join("moved.git");
    fetch_once(&mirror, &front.url("moved.git"), &strict())
        .expect("a same-host redirect passes the policy");
    assert_mirrors(&mirror, &up);
    assert!(
        same_host.requests().iter().any(|r| r.starts_with("POST")),
        "the download followed the listing: {:?}",
        same_host.requests()
    );

    let refused = fetch_once(
        &dir.path().join("inside.git"),
        &front.url("inside.git"),
        &strict(),
    )
    .expect_err("a redirect to loopback");
    assert_eq!(refused.kind, ErrorKind::BlockedUrl, "{refused:?}");
    assert!(internal.requests().is_empty(), "{:?}", internal.requests());
}

#[test]
fn credentials_are_sent_after_a_challenge_and_never_appear_in_errors() {
    let base = tempfile::tempdir().unwrap();
    let up = upstream(base.path());
    let http = GitHttpServer::start(base.path());
    http.require_basic_auth("alice", "s3cret-pw");
    let dir = tempfile::tempdir().unwrap();
    let network = super::permissive();
    let port = http.port();

    let good = format!("http://alice:s3cret-pw@127.0.0.1:{port}/x.git");
    fetch_once(&dir.path().join("ok.git"), &good, &network).expect("right credentials");
    assert_mirrors(&dir.path().join("ok.git"), &up);

    let bad = format!("http://alice:wrong-pw@127.0.0.1:{port}/x.git");
    let refused = fetch_once(&dir.path().join("bad.git"), &bad, &network).expect_err("wrong");
    assert_eq!(refused.kind, ErrorKind::Auth, "{refused:?}");
    assert!(!refused.message.contains("wrong-pw"), "{}", refused.message);
    let none = fetch_once(&dir.path().join("none.git"), &http.url("x.git"), &network)
        .expect_err("no credentials");
    assert_eq!(none.kind, ErrorKind::Auth, "{none:?}");
}

/// Every fetch's client shares one TLS context (built once per process); it must verify
/// certificates as reqwest's own would: a self-signed upstream is refused, every time.
#[test]
fn an_https_upstream_with_an_untrusted_certificate_is_refused() {
    use std::process::{Command, Stdio};

    let dir = tempfile::tempdir().unwrap();
    let (key, cert) = (dir.path().join("key.pem"), dir.path().join("cert.pem"));
    let made = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
        .args(["ec_paramgen_curve:prime256v1", "-nodes", "-days", "1"])
        .args([
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(made.success(), "openssl req");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut server = Command::new("openssl")
        .args(["s_server", "-quiet", "-www", "-accept"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("-cert")
        .arg(&cert)
        .arg("-key")
        .arg(&key)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let listening = (0..100).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(50));
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    assert!(listening, "openssl s_server did not start");

    let url = format!("https://127.0.0.1:{port}/x.git");
    for attempt in 0..2 {
        let mirror = dir.path().join(format!("m{attempt}.git"));
        let err = fetch_once(&mirror, &url, &super::permissive()).unwrap_err();
        assert!(
            err.message.contains("certificate verify failed"),
            "not a certificate error: {err:?}"
        );
    }
    let _ = server.kill();
    let _ = server.wait();
}
