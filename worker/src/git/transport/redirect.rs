//! Redirects of smart HTTP requests, followed by the transport rather than by the HTTP
//! client: a pooled client outlives the fetch whose session its redirect policy would
//! consult, so each hop is vetted here against the current fetch's session by
//! [`allowed_redirect`] (the rules every upstream request obeys: at most 5 hops, never
//! https to http, no credentials or fragment in the target, an address literal the
//! policy allows) and then sent through a client checked out for the hop's own origin,
//! which resolves and checks its name again. Method and body change as reqwest's
//! redirect handling changes them; credentials go only to the origin they were given
//! for.

use std::io;

use reqwest::{Method, StatusCode};
use url::Url;

use super::session::Session;
use super::vetted::allowed_redirect;

/// One request of a redirect chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Hop {
    pub url: Url,
    pub method: Method,
    /// The request's payload; `None` once a redirect turned it into a GET.
    pub body: Option<Vec<u8>>,
}

/// The request that follows `hop`'s answer (`status`, `location`), if that answer is a
/// redirect to follow; `previous` gains `hop`'s URL. An error (recorded in `session`)
/// when the target is not allowed.
pub(super) fn next(
    session: &Session,
    previous: &mut Vec<Url>,
    hop: &Hop,
    status: StatusCode,
    location: Option<&[u8]>,
) -> io::Result<Option<Hop>> {
    let (method, body) = match status {
        // RFC 9110 §15.4.2–3: a POST may become a GET
        StatusCode::MOVED_PERMANENTLY | StatusCode::FOUND if hop.method == Method::POST => {
            (Method::GET, None)
        }
        StatusCode::MOVED_PERMANENTLY
        | StatusCode::FOUND
        | StatusCode::TEMPORARY_REDIRECT
        | StatusCode::PERMANENT_REDIRECT => (hop.method.clone(), hop.body.clone()),
        StatusCode::SEE_OTHER if hop.method == Method::HEAD => (Method::HEAD, None),
        StatusCode::SEE_OTHER => (Method::GET, None),
        _ => return Ok(None),
    };
    // without a usable Location the answer stands, and the caller refuses a 3xx
    let Some(url) = location
        .and_then(|l| std::str::from_utf8(l).ok())
        .and_then(|l| hop.url.join(l).ok())
    else {
        return Ok(None);
    };
    previous.push(hop.url.clone());
    allowed_redirect(session, previous, &url)?;
    Ok(Some(Hop { url, method, body }))
}

/// Whether a request to `url` may carry the credentials given with `origin`: only on
/// `origin`'s own host and port, whichever redirects led there.
pub(super) fn carries_credentials(origin: &Url, url: &Url) -> bool {
    url.host_str() == origin.host_str()
        && url.port_or_known_default() == origin.port_or_known_default()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use super::super::session::NetworkPolicy;
    use super::*;
    use stasis_shared::domain::ErrorKind;

    fn session() -> Arc<Session> {
        let policy = NetworkPolicy::from_config(&stasis_shared::Config::default());
        let deadline = Instant::now() + Duration::from_secs(60);
        Session::new(policy, deadline, Default::default())
    }

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    fn post() -> Hop {
        Hop {
            url: url("https://forge.example/r.git/git-upload-pack"),
            method: Method::POST,
            body: Some(b"0000".to_vec()),
        }
    }

    fn follow(hop: &Hop, status: u16, location: &str) -> io::Result<Option<Hop>> {
        let status = StatusCode::from_u16(status).unwrap();
        next(
            &session(),
            &mut Vec::new(),
            hop,
            status,
            Some(location.as_bytes()),
        )
    }

    #[test]
    fn method_and_body_change_as_the_status_says() {
        let hop = post();
        for (status, method, body) in [
            (301, Method::GET, None),
            (302, Method::GET, None),
            (303, Method::GET, None),
            (307, Method::POST, hop.body.clone()),
            (308, Method::POST, hop.body.clone()),
        ] {
            let next = follow(&hop, status, "/moved/git-upload-pack")
                .unwrap()
                .unwrap();
            assert_eq!(next.url, url("https://forge.example/moved/git-upload-pack"));
            assert_eq!((next.method, next.body), (method, body), "{status}");
        }
        for status in [200, 300, 304, 401] {
            assert!(follow(&hop, status, "/x").unwrap().is_none(), "{status}");
        }
        let nowhere = next(&session(), &mut Vec::new(), &hop, StatusCode::FOUND, None);
        assert!(nowhere.unwrap().is_none());
    }

    #[test]
    fn a_target_the_rules_refuse_is_an_error_recorded_as_blocked() {
        for target in [
            "http://forge.example/r.git",
            "https://user:pw@forge.example/r.git",
            "https://forge.example/r.git#frag",
            "https://127.0.0.1/r.git",
            "ftp://forge.example/r.git",
        ] {
            let session = session();
            let refused = next(
                &session,
                &mut Vec::new(),
                &post(),
                StatusCode::TEMPORARY_REDIRECT,
                Some(target.as_bytes()),
            );
            assert!(refused.is_err(), "{target}");
            assert_eq!(session.failure().unwrap().kind, ErrorKind::BlockedUrl);
        }
    }

    #[test]
    fn five_redirects_are_followed_and_a_sixth_is_refused() {
        let session = session();
        let mut previous = Vec::new();
        let mut hop = post();
        for i in 0..5 {
            let location = format!("/hop{i}");
            hop = next(
                &session,
                &mut previous,
                &hop,
                StatusCode::TEMPORARY_REDIRECT,
                Some(location.as_bytes()),
            )
            .unwrap()
            .unwrap();
        }
        let sixth = next(
            &session,
            &mut previous,
            &hop,
            StatusCode::TEMPORARY_REDIRECT,
            Some(b"/hop5"),
        );
        assert!(sixth.is_err());
    }

    #[test]
    fn credentials_go_to_their_origin_only() {
        let origin = url("https://forge.example/r.git");
        assert!(carries_credentials(
            &origin,
            &url("https://forge.example:443/moved.git")
        ));
        assert!(!carries_credentials(
            &origin,
            &url("https://cdn.example/r.git")
        ));
        assert!(!carries_credentials(
            &origin,
            &url("https://forge.example:8443/r.git")
        ));
        assert!(!carries_credentials(
            &origin,
            &url("http://forge.example/r.git")
        ));
    }
}
