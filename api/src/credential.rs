//! The one reading of a request's `Authorization` header. The rate limiter and
//! authentication both use what this returns, so every spelling of a header that
//! authenticates as one token is also limited as that token: the scheme in any case,
//! any run of spaces or tabs around the token, the header repeated.

use std::fmt;

use axum::http::header::AUTHORIZATION;
use axum::http::HeaderMap;

/// Longer than any token this API issues (`stasis_` and 64 hex digits) by far; a
/// longer one is refused without a lookup.
const MAX_TOKEN_LEN: usize = 512;

/// What the `Authorization` header(s) of a request carry.
#[derive(PartialEq, Eq)]
pub enum Credential {
    /// No `Authorization` header.
    Absent,
    /// A bearer token, as the client's token store holds it (exact bytes, compared by
    /// its hash).
    Bearer(String),
    /// A header that is not one bearer token: another scheme, no token, characters a
    /// token cannot hold, or repeated headers naming different tokens.
    Malformed,
}

impl Credential {
    pub fn from_headers(headers: &HeaderMap) -> Self {
        let mut found: Option<&str> = None;
        for value in headers.get_all(AUTHORIZATION) {
            let Some(token) = value.to_str().ok().and_then(bearer_token) else {
                return Credential::Malformed;
            };
            match found {
                Some(earlier) if earlier != token => return Credential::Malformed,
                _ => found = Some(token),
            }
        }
        match found {
            Some(token) => Credential::Bearer(token.to_owned()),
            None => Credential::Absent,
        }
    }
}

// Never prints the token: a `Credential` may end up in a span or a debug log.
impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Credential::Absent => "Absent",
            Credential::Bearer(_) => "Bearer(<redacted>)",
            Credential::Malformed => "Malformed",
        })
    }
}

fn is_space(c: char) -> bool {
    c == ' ' || c == '\t'
}

/// `Bearer <token>` (RFC 6750 §2.1, the scheme case-insensitive as RFC 9110 §11.1 has
/// it), tolerating any spaces and tabs before, between and after.
fn bearer_token(value: &str) -> Option<&str> {
    let value = value.trim_matches(is_space);
    let (scheme, token) = value.split_once(is_space)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let token = token.trim_start_matches(is_space);
    is_b64token(token).then_some(token)
}

/// RFC 6750's `b64token`: `1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`.
fn is_b64token(token: &str) -> bool {
    let body = token.trim_end_matches('=');
    !body.is_empty()
        && token.len() <= MAX_TOKEN_LEN
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "stasis_0123abcd";

    fn parse(values: &[&str]) -> Credential {
        let mut headers = HeaderMap::new();
        for v in values {
            headers.append(AUTHORIZATION, v.parse().unwrap());
        }
        Credential::from_headers(&headers)
    }

    #[test]
    fn every_spelling_of_one_bearer_token_is_that_token() {
        let spellings: &[&[&str]] = &[
            &["Bearer stasis_0123abcd"],
            &["bearer stasis_0123abcd"],
            &["BEARER stasis_0123abcd"],
            &["Bearer     stasis_0123abcd"],
            &["Bearer\tstasis_0123abcd"],
            &["Bearer \t \t stasis_0123abcd"],
            &["Bearer stasis_0123abcd   "],
            &["Bearer stasis_0123abcd\t"],
            &["  Bearer stasis_0123abcd"],
            &["Bearer stasis_0123abcd", "bearer  stasis_0123abcd"],
            &["Bearer stasis_0123abcd", "Bearer stasis_0123abcd"],
        ];
        for headers in spellings {
            assert_eq!(
                parse(headers),
                Credential::Bearer(TOKEN.into()),
                "{headers:?}"
            );
        }
    }

    #[test]
    fn anything_else_is_malformed_or_absent() {
        assert_eq!(parse(&[]), Credential::Absent);
        for headers in [
            &["Bearer"][..],
            &["Bearer "],
            &["Bearer \t "],
            &["Basic dXNlcjpwYXNz"],
            &["stasis_0123abcd"],
            &["Bearerstasis_0123abcd"],
            &["Bearer stasis_0123 abcd"],
            &["Bearer stasis_0123abcd, Bearer other"],
            &["Bearer ="],
            &["Bearer stasis_0123abcd", "Bearer stasis_other"],
            &["Bearer stasis_0123abcd", "Basic dXNlcjpwYXNz"],
        ] {
            assert_eq!(parse(headers), Credential::Malformed, "{headers:?}");
        }
        let long = format!("Bearer {}", "a".repeat(MAX_TOKEN_LEN + 1));
        assert_eq!(parse(&[&long]), Credential::Malformed);
        let mut headers = HeaderMap::new();
        headers.insert(
            AUTHORIZATION,
            axum::http::HeaderValue::from_bytes(b"Bearer stasis_\xff").unwrap(),
        );
        assert_eq!(Credential::from_headers(&headers), Credential::Malformed);
    }

    #[test]
    fn padding_is_part_of_the_token() {
        assert_eq!(
            parse(&["Bearer YWJj=="]),
            Credential::Bearer("YWJj==".into())
        );
        assert_eq!(parse(&["Bearer YW=Jj"]), Credential::Malformed);
    }

    #[test]
    fn debug_output_never_shows_the_token() {
        let shown = format!("{:?}", parse(&["Bearer stasis_0123abcd"]));
        assert!(!shown.contains("0123abcd"), "{shown}");
    }
}
