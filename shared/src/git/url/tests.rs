use super::UrlError::{
    Backslash, BadHost, BadPath, BadPort, BadUserinfo, Empty, Fragment, Local, Malformed, NoHost,
    NumericHost, OptionLike, PrivateAddress, Query, TooLong, TrailingDot, Whitespace, ZoneId,
};
use super::*;

/// Every form the canonical parser meets: accepted ones with their canonical form,
/// refused ones with the reason.
fn forms() -> Vec<(&'static str, Result<&'static str, UrlError>)> {
    vec![
        // accepted, canonicalized
        (
            "https://github.com/rust-lang/rust.git",
            Ok("https://github.com/rust-lang/rust.git"),
        ),
        (
            "HTTPS://GitHub.COM/a/b.git",
            Ok("https://github.com/a/b.git"),
        ),
        (
            "https://github.com:443/a.git",
            Ok("https://github.com/a.git"),
        ),
        ("http://example.com:80/a", Ok("http://example.com/a")),
        ("http://example.com:8080/a", Ok("http://example.com:8080/a")),
        ("http://example.com", Ok("http://example.com/")),
        (
            "git://example.com:9418/x.git",
            Ok("git://example.com/x.git"),
        ),
        ("git://Example.COM/x.git", Ok("git://example.com/x.git")),
        (
            "ssh://git@example.com:22/a/b.git",
            Ok("ssh://git@example.com/a/b.git"),
        ),
        (
            "ssh://git@Example.com:2222/a.git",
            Ok("ssh://git@example.com:2222/a.git"),
        ),
        (
            "git@GitHub.com:rust-lang/rust.git",
            Ok("git@github.com:rust-lang/rust.git"),
        ),
        ("example.com:repo.git", Ok("example.com:repo.git")),
        (
            "https://alice:s3cr%40t@example.com/a.git",
            Ok("https://alice:s3cr%40t@example.com/a.git"),
        ),
        (
            "https://ghp_TOKEN@example.com/a.git",
            Ok("https://ghp_TOKEN@example.com/a.git"),
        ),
        ("http://1.2.3.4/x.git", Ok("http://1.2.3.4/x.git")),
        ("git://1.2.3.4:9419/x", Ok("git://1.2.3.4:9419/x")),
        ("http://0.0.0.0/x", Ok("http://0.0.0.0/x")),
        ("http://[::1]:8080/x", Ok("http://[::1]:8080/x")),
        ("http://[2001:DB8::1]/x", Ok("http://[2001:db8::1]/x")),
        ("git://[::1]/x", Ok("git://[::1]/x")),
        ("http://[::127.0.0.1]/", Ok("http://[::7f00:1]/")),
        (
            "http://[::ffff:127.0.0.1]/x",
            Ok("http://[::ffff:7f00:1]/x"),
        ),
        ("http://[64:ff9b::7f00:1]/", Ok("http://[64:ff9b::7f00:1]/")),
        ("http://[2002:7f00:1::]/", Ok("http://[2002:7f00:1::]/")),
        (
            "http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/",
            Ok("http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/"),
        ),
        (
            "https://example.com/a/./b/../c.git",
            Ok("https://example.com/a/c.git"),
        ),
        (
            "https://example.com/%7Euser/x",
            Ok("https://example.com/%7Euser/x"),
        ),
        (
            "https://xn--bcher-kva.example/x",
            Ok("https://xn--bcher-kva.example/x"),
        ),
        ("  https://example.com/x  ", Ok("https://example.com/x")),
        ("/srv/git/x", Ok("/srv/git/x")),
        ("./rel/x", Ok("./rel/x")),
        ("file:///srv/git/x", Ok("file:///srv/git/x")),
        ("file://localhost/srv/git/x", Ok("file:///srv/git/x")),
        // the SSRF forms: the url crate and libgit2 disagree on the host
        ("http://1.2.3.4#@127.0.0.1:9/x.git", Err(Fragment)),
        ("http://1.2.3.4?@127.0.0.1:9/x.git", Err(Query)),
        ("http://1.2.3.4\\@127.0.0.1:9/x.git", Err(Backslash)),
        ("git://1.2.3.4#@127.0.0.1:9/x.git", Err(Fragment)),
        ("git://1.2.3.4?@127.0.0.1:9/x.git", Err(Query)),
        ("https://example.com/x.git#main", Err(Fragment)),
        ("https://example.com/x?ref=1", Err(Query)),
        ("http://a@b@127.0.0.1/", Err(BadUserinfo)),
        ("http://a:b@c@127.0.0.1/", Err(BadUserinfo)),
        // whitespace and control characters
        ("", Err(Empty)),
        ("   ", Err(Empty)),
        ("https://exa mple.com/", Err(Whitespace)),
        ("https://tok@exa mple.com/", Err(Whitespace)),
        ("https://example.com/\tx", Err(Whitespace)),
        ("https://exam\nple.com/", Err(Whitespace)),
        ("https://example.com/a\u{0}b", Err(Whitespace)),
        ("https://example.com/a\u{a0}b", Err(Whitespace)),
        // hosts
        ("http://user:SECRET@[::zz]/x", Err(BadHost)),
        ("http://[fe80::1%25eth0]/", Err(ZoneId)),
        ("http://[fe80::1%eth0]/", Err(ZoneId)),
        ("http://[::1/", Err(BadHost)),
        ("http://[::1]x/", Err(BadHost)),
        ("http://2130706433/", Err(NumericHost)),
        ("http://0177.0.0.1/", Err(NumericHost)),
        ("http://0x7f.1/", Err(NumericHost)),
        ("http://0x7f000001/", Err(NumericHost)),
        ("http://127.1/", Err(NumericHost)),
        ("http://127.0.0.01/", Err(NumericHost)),
        ("http://0/", Err(NumericHost)),
        ("http://1.2.3.4.5/", Err(NumericHost)),
        ("http://256.1.1.1/", Err(NumericHost)),
        ("git://2130706433/x", Err(NumericHost)),
        ("git@0x7f.1:x.git", Err(NumericHost)),
        ("http://127%2e0.0.1/", Err(BadHost)),
        ("http://127\u{3002}0.0.1/", Err(BadHost)),
        ("http://\u{ff11}\u{ff12}\u{ff17}.0.0.1/", Err(BadHost)),
        ("http://ex\u{e4}mple.com/", Err(BadHost)),
        ("https://example..com/", Err(BadHost)),
        ("https://.example.com/", Err(BadHost)),
        ("http://a-.example.com/", Err(BadHost)),
        ("git@exa_mple.com:x", Err(BadHost)),
        ("git@[::1]:x", Err(BadHost)),
        ("file://host/etc", Err(BadHost)),
        ("http://example.com./x", Err(TrailingDot)),
        ("git@example.com.:x", Err(TrailingDot)),
        ("http:///x", Err(NoHost)),
        // option-like hosts, users and paths
        ("http://-oProxyCommand=x/", Err(OptionLike)),
        ("ssh://-oProxyCommand=x/y", Err(OptionLike)),
        ("ssh://-oProxyCommand=x@host/y", Err(OptionLike)),
        ("-oProxyCommand=x:y", Err(OptionLike)),
        ("git@host:-oProxyCommand=x", Err(OptionLike)),
        ("-x@host:y", Err(OptionLike)),
        // user info
        ("https://user:pa:ss@example.com/", Err(BadUserinfo)),
        ("https://us;er@example.com/", Err(BadUserinfo)),
        ("https://:pw@example.com/", Err(BadUserinfo)),
        ("https://@example.com/", Err(BadUserinfo)),
        ("https://us%zzer@example.com/", Err(BadUserinfo)),
        ("https://user:p=w@example.com/", Err(BadUserinfo)),
        ("git://user@example.com/x", Err(BadUserinfo)),
        ("git@@example.com:x", Err(BadUserinfo)),
        ("us$er@example.com:x", Err(BadUserinfo)),
        // ports
        ("http://example.com:0/", Err(BadPort)),
        ("http://[::1]:0/", Err(BadPort)),
        ("http://example.com:65536/", Err(BadPort)),
        ("http://example.com:+80/", Err(BadPort)),
        ("http://example.com:/", Err(BadPort)),
        ("http://example.com:000080/", Err(BadPort)),
        ("http://example.com:8a/", Err(BadPort)),
        ("http://example.com:80:80/", Err(BadPort)),
        // paths and schemes
        ("https://example.com/a<b", Err(BadPath)),
        ("https://example.com/%zz", Err(BadPath)),
        ("git@example.com:a;b", Err(BadPath)),
        ("git@example.com:", Err(BadPath)),
        ("git@example.com:x@y", Err(BadPath)),
        ("http:/example.com/x", Err(Malformed)),
        ("foo", Err(Malformed)),
        ("ftp://example.com/x", Err(UrlError::Scheme("ftp".into()))),
        ("HTTP+SSH://x/y", Err(UrlError::Scheme("http+ssh".into()))),
    ]
}

#[test]
fn every_form_parses_to_its_canonical_form_or_is_refused() {
    let forms = forms();
    assert!(forms.len() >= 60);
    for (raw, expected) in &forms {
        let got = UpstreamUrl::parse(raw);
        assert_eq!(
            got.as_ref().map(UpstreamUrl::as_str),
            expected.as_ref().map(|s| *s),
            "{raw:?}"
        );
        if let Err(e) = got {
            let msg = e.to_string();
            assert!(
                raw.len() < 4 || !msg.contains(raw.trim()),
                "{msg} repeats {raw}"
            );
            assert!(!msg.contains("SECRET") && !msg.contains("tok@"), "{msg}");
        }
    }
}

#[test]
fn canonical_forms_are_fixed_points_and_the_url_crate_reads_the_same_host() {
    for canon in forms().iter().filter_map(|(_, e)| e.as_ref().ok()) {
        let url = UpstreamUrl::parse(canon).unwrap();
        assert_eq!(url.as_str(), *canon, "not idempotent");
        assert_eq!(UpstreamUrl::parse(url.as_str()).unwrap(), url);
        if !url.is_scp_like() && canon.contains("://") {
            let other = url::Url::parse(canon).unwrap();
            let ours = url.host().map(|h| h.to_string());
            assert_eq!(other.host_str(), ours.as_deref(), "{canon}");
            assert_eq!(other.port_or_known_default().or(url.port()), url.port());
        }
    }
}

#[test]
fn too_long_is_refused_before_parsing() {
    let long = format!("https://example.com/{}", "a".repeat(MAX_URL_LEN));
    assert_eq!(UpstreamUrl::parse(&long), Err(TooLong));
    let edge = format!("https://example.com/{}", "a".repeat(MAX_URL_LEN - 20));
    assert_eq!(
        UpstreamUrl::parse(&edge).unwrap().as_str().len(),
        MAX_URL_LEN
    );
}

#[test]
fn typed_parts() {
    let url = UpstreamUrl::parse("HTTPS://bob:pw@Example.com/a.git").unwrap();
    assert_eq!(url.scheme(), Scheme::Https);
    assert_eq!(url.host(), Some(&url::Host::Domain("example.com".into())));
    assert_eq!((url.port(), url.path()), (Some(443), "/a.git"));
    assert_eq!((url.username(), url.password()), ("bob", Some("pw")));
    assert_eq!(
        format!("{url:?}"),
        "UpstreamUrl(\"https://bob:***@example.com/a.git\")"
    );
    let scp = UpstreamUrl::parse("git@10.0.0.1:a.git").unwrap();
    assert_eq!(scp.scheme(), Scheme::Ssh);
    assert_eq!(scp.host(), Some(&url::Host::Ipv4([10, 0, 0, 1].into())));
    assert_eq!((scp.port(), scp.path()), (Some(22), "a.git"));
    let git = UpstreamUrl::parse("git://[::1]:9000/x").unwrap();
    assert_eq!((git.scheme(), git.port()), (Scheme::Git, Some(9000)));
    let local = UpstreamUrl::parse("file:///srv/x").unwrap();
    assert_eq!(
        (local.scheme(), local.host(), local.port()),
        (Scheme::Local, None, None)
    );
}

#[test]
fn upstream_host_names_the_host_a_cap_applies_to() {
    for (url, host) in [
        ("https://user:pw@GitHub.com/a/b.git", "github.com"),
        ("git://127.0.0.2:9418/x", "127.0.0.2"),
        ("ssh://git@gitlab.com:22/a/b", "gitlab.com"),
        ("git@codeberg.org:a/b.git", "codeberg.org"),
        ("http://[::1]:80/x", "[::1]"),
        ("file:///srv/git/a", "local"),
        ("/srv/git/a", "local"),
    ] {
        assert_eq!(upstream_host(url), host, "{url}");
    }
}

#[test]
fn redacts_passwords_and_token_usernames() {
    assert_eq!(
        redact_url("https://alice:s3cr%40t@example.com/a.git"),
        "https://alice:***@example.com/a.git"
    );
    assert_eq!(
        redact_url("https://ghp_TOKEN@example.com/a.git"),
        "https://***@example.com/a.git"
    );
    assert_eq!(
        redact_url("ssh://git@example.com/a.git"),
        "ssh://git@example.com/a.git"
    );
    let msg = "failed to fetch https://alice:s3cr@t@example.com: 401 (s3cr@t)";
    assert!(!redact_text(msg, "https://alice:s3cr%40t@example.com/a.git").contains("s3cr@t"));
}

#[test]
fn credentials_split_off_the_canonical_url_and_back() {
    for (raw, clean, secret) in [
        (
            "https://alice:s3cr%40t@example.com/a.git",
            "https://example.com/a.git",
            Some("alice:s3cr%40t"),
        ),
        (
            "HTTPS://ghp_TOKEN@Example.com:443/a.git",
            "https://example.com/a.git",
            Some("ghp_TOKEN"),
        ),
        (
            "ssh://git@example.com/a.git",
            "ssh://git@example.com/a.git",
            None,
        ),
        (
            "ssh://git:pw@example.com/a.git",
            "ssh://example.com/a.git",
            Some("git:pw"),
        ),
        ("git@Example.com:a.git", "git@example.com:a.git", None),
        (
            "https://example.com/a.git",
            "https://example.com/a.git",
            None,
        ),
    ] {
        let (stored, sealed) = split_credentials(raw);
        assert_eq!(
            (stored.as_str(), sealed.as_deref()),
            (clean, secret),
            "{raw}"
        );
        if let Some(userinfo) = sealed {
            let back = with_credentials(&stored, &userinfo);
            assert_eq!(back, UpstreamUrl::parse(raw).unwrap().as_str());
        }
    }
}

#[tokio::test]
async fn refuses_internal_targets_unless_allowed() {
    for (url, host) in [
        ("https://127.0.0.1/x.git", "127.0.0.1"),
        ("http://[::1]/x.git", "[::1]"),
        ("git://10.1.2.3/x.git", "10.1.2.3"),
        ("https://169.254.169.254/latest", "169.254.169.254"),
        ("https://192.168.0.1/x", "192.168.0.1"),
        ("http://localhost:8080/x.git", "localhost"),
        ("git@127.0.0.1:x.git", "127.0.0.1"),
        ("http://[fd00::1]/x", "[fd00::1]"),
        ("http://[::ffff:127.0.0.1]/x", "[::ffff:7f00:1]"),
        ("http://[::127.0.0.1]/", "[::7f00:1]"),
        ("http://[64:ff9b::7f00:1]/", "[64:ff9b::7f00:1]"),
        ("http://[2002:7f00:1::]/", "[2002:7f00:1::]"),
        ("https://bob:pw@127.0.0.1/x", "127.0.0.1"),
    ] {
        assert_eq!(
            check_upstream(url, false, None).await,
            Err(PrivateAddress(host.into())),
            "{url}"
        );
        assert!(check_upstream(url, true, None).await.is_ok(), "{url}");
    }
    assert_eq!(check_upstream("file:///etc", false, None).await, Err(Local));
    assert_eq!(check_upstream("/srv/git/x", false, None).await, Err(Local));
    assert!(check_upstream("/srv/git/x", true, None).await.is_ok());
    assert!(check_upstream("file:///srv/git/x", true, None)
        .await
        .is_ok());
    assert!(matches!(
        check_upstream("ftp://example.com/x", true, None).await,
        Err(UrlError::Scheme(_))
    ));
    assert_eq!(check_upstream("  ", true, None).await, Err(Empty));
    assert_eq!(
        check_upstream("http://1.2.3.4#@127.0.0.1:9/x.git", true, None).await,
        Err(Fragment)
    );
    let ok = check_upstream("HTTPS://8.8.8.8:443/x.git", false, None).await;
    assert_eq!(ok.unwrap().as_str(), "https://8.8.8.8/x.git");
}

#[test]
fn credentials_given_as_fields_reach_the_fetch_as_given() {
    for (user, secret) in [
        ("alice", "plain"),
        ("x-access-token", "ghp_a:b@c/d?e#f%g h"),
        ("ünïcode user", "pässwörd"),
        ("oauth2", "glpat-~._-"),
    ] {
        let info = userinfo(user, secret);
        let url = with_credentials("https://example.com/a.git", &info);
        assert_eq!(
            http_credentials(&url),
            Some((user.to_owned(), secret.to_owned())),
            "{url}"
        );
        // and nothing of the secret is shown
        assert!(!redact_url(&url).contains(secret), "{url}");
    }
}
