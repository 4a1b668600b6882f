//! A smart-HTTP git server: a small axum server in front of the real `git http-backend`
//! CGI, with the two things a client's HTTP transport must handle that `git daemon` has
//! no equivalent of: redirects (to another host, for the SSRF checks) and Basic auth. It
//! records which connection each request came over, for the tests of connection reuse.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use axum::Router;
use base64::Engine;
use tokio::io::AsyncWriteExt;

use crate::background::Background;
use crate::lfs::LfsFiles;

/// How long after its data a chunked answer ends ([`GitHttpServer::answer_chunked`]).
const CHUNKED_END_AFTER: std::time::Duration = std::time::Duration::from_millis(20);

/// One request as it reached the server.
#[derive(Debug, Clone)]
pub struct Call {
    /// The client's end of the connection it came over: one connection, one `peer`.
    pub peer: SocketAddr,
    /// `"<METHOD> <path>[?<query>]"`, as [`GitHttpServer::requests`] lists it.
    pub line: String,
    /// The `Host` header.
    pub host: Option<String>,
    /// The `Authorization` header, whole.
    pub authorization: Option<String>,
}

/// Serves every bare repository under a root (`<root>/<name>` at `/<name>`) on a free port;
/// stopped on drop, with any `git http-backend` still running killed.
pub struct GitHttpServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    _server: Background,
}

struct Shared {
    root: PathBuf,
    /// `(/prefix, to_base)`, first match wins.
    redirects: Mutex<Vec<(String, String)>>,
    /// The whole `Authorization` header value a request must carry.
    auth: Mutex<Option<String>>,
    log: Mutex<Vec<String>>,
    calls: Mutex<Vec<Call>>,
    /// Answers of unknown length (chunked), once [`GitHttpServer::answer_chunked`].
    chunked: std::sync::atomic::AtomicBool,
    /// Git LFS, once [`GitHttpServer::serve_lfs`] turned it on.
    lfs: Mutex<Option<Arc<LfsFiles>>>,
    /// `http://ip:port`, where this server's own LFS hrefs point.
    origin: String,
}

impl GitHttpServer {
    pub fn start(root: &Path) -> Self {
        Self::start_on(root, IpAddr::V4(Ipv4Addr::LOCALHOST))
    }

    /// Listening on `ip` (a loopback address, or a "public" one made local by
    /// [`crate::netns`]), port chosen by the kernel. Accepts connections on return.
    pub fn start_on(root: &Path, ip: IpAddr) -> Self {
        let listener = std::net::TcpListener::bind((ip, 0)).expect("bind git http server");
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            root: root.to_owned(),
            redirects: Mutex::default(),
            auth: Mutex::default(),
            log: Mutex::default(),
            calls: Mutex::default(),
            chunked: Default::default(),
            lfs: Mutex::default(),
            origin: format!("http://{addr}"),
        });
        let app = Router::new().fallback(handle).with_state(shared.clone());
        let server = Background::spawn("git-http", move || async move {
            use axum::serve::ListenerExt;
            let listener = tokio::net::TcpListener::from_std(listener).expect("http listener");
            // a small write (a chunked answer's end) goes out at once, not after the
            // client's delayed ACK
            let listener = listener.tap_io(|tcp| {
                let _ = tcp.set_nodelay(true);
            });
            let app = app.into_make_service_with_connect_info::<SocketAddr>();
            let _ = axum::serve(listener, app).await;
        });
        Self {
            addr,
            shared,
            _server: server,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `http://<ip>:<port>/<name>`.
    pub fn url(&self, name: &str) -> String {
        format!("http://{}/{name}", self.addr)
    }

    /// Answers every request whose path starts with `/<from_prefix>` (a leading `/` in
    /// `from_prefix` is optional) with `302 Found` and `Location: <to_base><rest>`, where
    /// `rest` is the rest of the path and the query. `redirect("old", "http://10.0.0.1/new")`
    /// sends `/old/r.git/info/refs?service=git-upload-pack` to
    /// `http://10.0.0.1/new/r.git/info/refs?service=git-upload-pack`.
    pub fn redirect(&self, from_prefix: &str, to_base: &str) {
        let prefix = format!("/{}", from_prefix.trim_start_matches('/'));
        let rule = (prefix, to_base.to_owned());
        self.shared.redirects.lock().unwrap().push(rule);
    }

    /// From now on every request (all repositories) needs `Authorization: Basic` with
    /// `user:pass`; without it, or with other credentials, the answer is `401` with
    /// `WWW-Authenticate: Basic realm="stasis-test"`. Redirect rules are checked first.
    pub fn require_basic_auth(&self, user: &str, pass: &str) {
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
        *self.shared.auth.lock().unwrap() = Some(format!("Basic {token}"));
    }

    /// From now on every request (all repositories) needs this whole `Authorization`
    /// header value (e.g. the token an ssh `git-lfs-authenticate` hands out); otherwise
    /// as [`Self::require_basic_auth`].
    pub fn require_authorization(&self, value: &str) {
        *self.shared.auth.lock().unwrap() = Some(value.to_owned());
    }

    /// Serves Git LFS for every repository from `objects` (git-lfs's layout, e.g.
    /// [`crate::lfs::objects_dir`]): the batch API under `<repo>/info/lfs/` (behind the
    /// Basic auth of [`Self::require_basic_auth`], if set) and downloads at
    /// `/lfs-objects/<oid>`.
    pub fn serve_lfs(&self, objects: &Path) {
        *self.shared.lfs.lock().unwrap() = Some(Arc::new(LfsFiles::new(objects)));
    }

    /// The LFS objects this server serves; panics before `serve_lfs`, a test's mistake.
    fn lfs(&self) -> Arc<LfsFiles> {
        self.shared
            .lfs
            .lock()
            .unwrap()
            .clone()
            .expect("serve_lfs first")
    }

    /// Batch answers name download hrefs at `origin` (`http://host:port`) instead of here.
    pub fn lfs_hrefs_at(&self, origin: &str) {
        let lfs = self.lfs();
        *lfs.href_base.lock().unwrap() = Some(origin.to_owned());
    }

    /// The download of `oid` answers `bytes` instead of the object.
    pub fn lfs_tamper(&self, oid: &str, bytes: &[u8]) {
        let lfs = self.lfs();
        lfs.tampered
            .lock()
            .unwrap()
            .insert(oid.to_owned(), bytes.to_vec());
    }

    /// The download of `oid` answers the object again (after [`Self::lfs_tamper`]).
    pub fn lfs_heal(&self, oid: &str) {
        self.lfs().tampered.lock().unwrap().remove(oid);
    }

    /// Every request so far as `"<METHOD> <path>[?<query>]"`, in arrival order, e.g.
    /// `"GET /r.git/info/refs?service=git-upload-pack"`.
    pub fn requests(&self) -> Vec<String> {
        self.shared.log.lock().unwrap().clone()
    }

    /// Every request so far with the connection it came over, in arrival order.
    pub fn calls(&self) -> Vec<Call> {
        self.shared.calls.lock().unwrap().clone()
    }

    /// From now on git's answers have no `Content-Length` and go out chunked, as many
    /// servers send them: a client sees their end only in a final empty chunk, which
    /// comes 20 ms after the data (a server that finishes its answer after writing it).
    pub fn answer_chunked(&self) {
        use std::sync::atomic::Ordering;
        self.shared.chunked.store(true, Ordering::SeqCst);
    }
}

async fn handle(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let target = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let target = target.to_owned();
    let line = format!("{} {target}", req.method());
    shared.log.lock().unwrap().push(line.clone());
    if let Some(call) = call(&req, line) {
        shared.calls.lock().unwrap().push(call);
    }

    let location = shared
        .redirects
        .lock()
        .unwrap()
        .iter()
        .find(|(prefix, _)| target.starts_with(prefix.as_str()))
        .map(|(prefix, to)| format!("{to}{}", &target[prefix.len()..]));
    if let Some(location) = location {
        return Response::builder()
            .status(StatusCode::FOUND)
            .header(header::LOCATION, location)
            .body(Body::empty())
            .unwrap();
    }

    let lfs = shared.lfs.lock().unwrap().clone();
    if let Some(oid) = target.strip_prefix("/lfs-objects/") {
        let Some(lfs) = lfs else {
            return Response::builder()
                .status(StatusCode::NOT_FOUND)
                .body(Body::empty())
                .unwrap();
        };
        let token = req.headers().get(crate::lfs::DOWNLOAD_HEADER.0);
        return crate::lfs::download(&lfs, oid, token.map(|t| t.as_bytes()));
    }

    let expected = shared.auth.lock().unwrap().clone();
    let authorized = expected.as_ref().is_none_or(|e| {
        let given = req.headers().get(header::AUTHORIZATION);
        given.is_some_and(|g| g.as_bytes() == e.as_bytes())
    });
    if !authorized {
        return Response::builder()
            .status(StatusCode::UNAUTHORIZED)
            .header(header::WWW_AUTHENTICATE, "Basic realm=\"stasis-test\"")
            .body(Body::from("authentication required\n"))
            .unwrap();
    }

    if let Some(lfs) = lfs.filter(|_| target.ends_with("/info/lfs/objects/batch")) {
        let body = axum::body::to_bytes(req.into_body(), 1 << 20).await;
        return crate::lfs::batch(&lfs, &shared.origin, &body.unwrap_or_default());
    }

    let chunked = shared.chunked.load(std::sync::atomic::Ordering::SeqCst);
    match cgi(&shared.root, req, expected.is_some(), chunked).await {
        Ok(response) => response,
        Err(e) => Response::builder()
            .status(StatusCode::INTERNAL_SERVER_ERROR)
            .body(Body::from(format!("git http-backend: {e}\n")))
            .unwrap(),
    }
}

fn call(req: &Request, line: String) -> Option<Call> {
    let ConnectInfo(peer) = req.extensions().get::<ConnectInfo<SocketAddr>>()?;
    let header = |name: header::HeaderName| {
        let value = req.headers().get(name);
        value.and_then(|v| v.to_str().ok()).map(str::to_owned)
    };
    Some(Call {
        peer: *peer,
        line,
        host: header(header::HOST),
        authorization: header(header::AUTHORIZATION),
    })
}

/// Runs `git http-backend` for one request, as a web server runs a CGI program, and turns
/// its output (CGI headers, `Status:` among them, a blank line, the body) into a response.
/// The whole body is buffered both ways: test repositories are small.
async fn cgi(
    root: &Path,
    req: Request,
    authenticated: bool,
    chunked: bool,
) -> Result<Response, String> {
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX)
        .await
        .map_err(|e| format!("read request body: {e}"))?;
    let get = |name: header::HeaderName| {
        let value = parts.headers.get(name);
        value.and_then(|v| v.to_str().ok()).unwrap_or("").to_owned()
    };
    let mut cmd = tokio::process::Command::new("git");
    cmd.arg("http-backend")
        .env("GIT_PROJECT_ROOT", root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("REQUEST_METHOD", parts.method.as_str())
        .env("PATH_INFO", parts.uri.path())
        .env("QUERY_STRING", parts.uri.query().unwrap_or(""))
        .env("CONTENT_TYPE", get(header::CONTENT_TYPE))
        .env("CONTENT_LENGTH", body.len().to_string())
        .env("HTTP_CONTENT_ENCODING", get(header::CONTENT_ENCODING))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    // Protocol v2 is asked for in a header, which a CGI program reads from GIT_PROTOCOL.
    let protocol = get(header::HeaderName::from_static("git-protocol"));
    if !protocol.is_empty() {
        cmd.env("GIT_PROTOCOL", protocol);
    }
    if authenticated {
        cmd.env("REMOTE_USER", "stasis-test");
    }
    let mut child = cmd.spawn().map_err(|e| format!("spawn: {e}"))?;
    let mut stdin = child.stdin.take().expect("piped stdin");
    // Fed beside the read of stdout: a large body must not wait on a full pipe.
    let feed = tokio::spawn(async move {
        let _ = stdin.write_all(&body).await;
    });
    let out = child
        .wait_with_output()
        .await
        .map_err(|e| format!("wait: {e}"))?;
    let _ = feed.await;
    if out.stdout.is_empty() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(format!("{}, no output: {stderr}", out.status));
    }
    parse_cgi(&out.stdout, chunked)
}

fn parse_cgi(out: &[u8], chunked: bool) -> Result<Response, String> {
    let mut response = Response::builder().status(StatusCode::OK);
    let mut pos = 0;
    loop {
        let end = out[pos..]
            .iter()
            .position(|&b| b == b'\n')
            .ok_or("CGI output without the blank line after its headers")?;
        let line = &out[pos..pos + end];
        pos += end + 1;
        let line = String::from_utf8_lossy(line.strip_suffix(b"\r").unwrap_or(line));
        if line.is_empty() {
            break;
        }
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| format!("bad CGI header {line:?}"))?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("Status") {
            let code = value.split(' ').next().unwrap_or("");
            let code = code
                .parse::<u16>()
                .map_err(|_| format!("bad status {value:?}"))?;
            response = response.status(code);
        } else if !(chunked && name.eq_ignore_ascii_case("Content-Length")) {
            let value = HeaderValue::from_str(value).map_err(|e| e.to_string())?;
            response = response.header(name, value);
        }
    }
    let payload = axum::body::Bytes::copy_from_slice(&out[pos..]);
    let body = if chunked {
        use futures::StreamExt;
        // a stream's length is unknown to the server: it sends it chunked, and the
        // final empty chunk once the stream ends, a moment after the data
        let data = futures::stream::once(async { Ok::<_, std::convert::Infallible>(payload) });
        let end = futures::stream::once(tokio::time::sleep(CHUNKED_END_AFTER))
            .filter_map(|()| async { None });
        Body::from_stream(data.chain(end))
    } else {
        Body::from(payload)
    };
    response.body(body).map_err(|e| e.to_string())
}
