use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;

use stasis_testkit::git::{git, refs, Upstream};
use stasis_testkit::http::GitHttpServer;

use crate::{git_client, git_ok};

/// A bare `r.git` under `<dir>/root`, cloned from an upstream with two commits.
fn bare_repo(dir: &Path) -> (Upstream, std::path::PathBuf) {
    let mut up = Upstream::create(dir.join("up"));
    up.commit("second");
    let root = dir.join("root");
    std::fs::create_dir_all(&root).unwrap();
    git(&root, &["clone", "-q", "--bare", &up.url(), "r.git"]);
    (up, root)
}

/// One raw HTTP/1.1 GET; the status line and headers, lowercased.
fn head_of(addr: SocketAddr, target: &str, auth: Option<&str>) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    let auth = auth.map_or(String::new(), |a| format!("Authorization: {a}\r\n"));
    write!(
        s,
        "GET {target} HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    s.read_to_string(&mut response).unwrap();
    let head = response.split("\r\n\r\n").next().unwrap();
    head.to_ascii_lowercase()
}

#[test]
fn git_clones_and_lists_through_http_backend() {
    let dir = tempfile::tempdir().unwrap();
    let (up, root) = bare_repo(dir.path());
    let server = GitHttpServer::start(&root);
    let listed = git_ok(dir.path(), &["ls-remote", &server.url("r.git")]);
    let main = &up.refs()["refs/heads/main"];
    assert!(
        listed.contains(&format!("{main}\trefs/heads/main")),
        "{listed}"
    );
    // Protocol v0, as libgit2 speaks it (no Git-Protocol header).
    let v0 = [
        "-c",
        "protocol.version=0",
        "ls-remote",
        &server.url("r.git"),
    ];
    assert_eq!(git_ok(dir.path(), &v0), listed);
    git_ok(
        dir.path(),
        &["clone", "-q", "--bare", &server.url("r.git"), "c.git"],
    );
    assert_eq!(refs(&dir.path().join("c.git")), refs(&root.join("r.git")));
    let requests = server.requests();
    let adv = "GET /r.git/info/refs?service=git-upload-pack";
    assert!(requests.iter().any(|r| r == adv), "{requests:?}");
    assert!(requests.iter().any(|r| r == "POST /r.git/git-upload-pack"));
    let missing = head_of(
        server.addr(),
        "/nope.git/info/refs?service=git-upload-pack",
        None,
    );
    assert!(missing.starts_with("http/1.1 404"), "{missing}");
}

#[test]
fn redirects_answer_302_with_the_rest_of_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let (_up, root) = bare_repo(dir.path());
    let target = GitHttpServer::start(&root);
    let front = GitHttpServer::start(&root);
    front.redirect("/old", &format!("http://{}", target.addr()));
    let target_path = "/old/r.git/info/refs?service=git-upload-pack";
    let head = head_of(front.addr(), target_path, None);
    assert!(head.starts_with("http/1.1 302"), "{head}");
    let location = format!(
        "location: http://{}/r.git/info/refs?service=git-upload-pack",
        target.addr()
    );
    assert!(head.lines().any(|l| l == location), "{head}");
    // git follows a redirect of the first request (http.followRedirects=initial).
    let url = format!("http://{}/old/r.git", front.addr());
    git_ok(dir.path(), &["ls-remote", &url]);
    assert_eq!(front.requests().len(), 2, "{:?}", front.requests());
    assert!(target
        .requests()
        .iter()
        .any(|r| r.starts_with("GET /r.git/info/refs")));
}

#[test]
fn basic_auth_answers_401_until_the_credentials_are_right() {
    let dir = tempfile::tempdir().unwrap();
    let (_up, root) = bare_repo(dir.path());
    let server = GitHttpServer::start(&root);
    server.require_basic_auth("alice", "s3cret");
    let path = "/r.git/info/refs?service=git-upload-pack";
    let head = head_of(server.addr(), path, None);
    assert!(head.starts_with("http/1.1 401"), "{head}");
    assert!(head.contains("www-authenticate: basic realm=\"stasis-test\""));
    let wrong = head_of(server.addr(), path, Some("Basic YWxpY2U6d3Jvbmc="));
    assert!(wrong.starts_with("http/1.1 401"), "{wrong}");
    let right = head_of(server.addr(), path, Some("Basic YWxpY2U6czNjcmV0"));
    assert!(right.starts_with("http/1.1 200"), "{right}");

    let anonymous = git_client(dir.path(), &["ls-remote", &server.url("r.git")]);
    assert!(!anonymous.status.success());
    let url = format!("http://alice:s3cret@{}/r.git", server.addr());
    let listed = git_ok(dir.path(), &["ls-remote", &url]);
    assert!(listed.contains("refs/heads/main"));
}
