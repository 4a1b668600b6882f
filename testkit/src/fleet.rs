//! An upstream for a whole fleet: one server answers the ref listings of any number of
//! repositories from memory, over smart HTTP, and serves real packs (`git upload-pack`)
//! to the ones that changed. Every repository is a linear history over the same commits:
//! repository `i` is at generation `g`, its `main` at the chain's commit `g`, so a change
//! moves it one commit on, and the pack it then serves is that commit's few objects.
//!
//! The server keeps what a fleet benchmark reads off the upstream side: how many listings
//! it answered, the longest gap between two listings of each repository, when each
//! repository changed and when the pack carrying that change was served.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use tokio::io::AsyncWriteExt;

use crate::git::{git, Upstream};

const NEVER: u64 = u64::MAX;

/// One change of one repository, or the serving of the pack that carries it: the
/// repository, its generation then, and milliseconds since the upstream started.
#[derive(Debug, Clone, Copy)]
pub struct Event {
    pub repo: usize,
    pub generation: u8,
    pub at_ms: u64,
}

pub struct Fleet {
    /// The repository holding the chain, which `git upload-pack` serves from.
    dir: PathBuf,
    chain: Vec<String>,
    /// The listing of a repository at each generation, answered as is.
    listings: Vec<Bytes>,
    epoch: Instant,
    generation: Vec<AtomicU8>,
    listed: AtomicU64,
    packs: AtomicU64,
    last_listed_ms: Vec<AtomicU64>,
    longest_gap_ms: Vec<AtomicU64>,
    window_from_ms: AtomicU64,
    changes: Mutex<Vec<Event>>,
    served: Mutex<Vec<Event>>,
}

/// What a window of the upstream's life saw of the fleet's schedule.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    /// Repositories whose longest gap between listings (or since the last listing, to
    /// the window's end) passed the limit.
    pub overdue: usize,
    /// The longest such gap of any repository, in milliseconds.
    pub longest_gap_ms: u64,
}

impl Fleet {
    pub fn len(&self) -> usize {
        self.generation.len()
    }

    pub fn is_empty(&self) -> bool {
        self.generation.is_empty()
    }

    /// Milliseconds since the upstream started: the clock of every [`Event`].
    pub fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Listings answered so far.
    pub fn listed(&self) -> u64 {
        self.listed.load(Ordering::Relaxed)
    }

    /// Packs served so far.
    pub fn packs(&self) -> u64 {
        self.packs.load(Ordering::Relaxed)
    }

    /// The commit a repository's `main` is at now.
    pub fn head(&self, repo: usize) -> &str {
        &self.chain[usize::from(self.generation[repo].load(Ordering::Relaxed))]
    }

    /// The commit of a generation.
    pub fn commit(&self, generation: u8) -> &str {
        &self.chain[usize::from(generation)]
    }

    /// The generation a commit of the chain is.
    pub fn generation_of(&self, id: &str) -> Option<u8> {
        self.chain.iter().position(|c| c == id).map(|g| g as u8)
    }

    /// Moves a repository one commit on; false when it is at the chain's end.
    pub fn change(&self, repo: usize) -> bool {
        let last = (self.chain.len() - 1) as u8;
        let moved = self.generation[repo].fetch_update(Ordering::AcqRel, Ordering::Acquire, |g| {
            (g < last).then_some(g + 1)
        });
        let Ok(before) = moved else {
            return false;
        };
        let event = Event {
            repo,
            generation: before + 1,
            at_ms: self.now_ms(),
        };
        self.changes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(event);
        true
    }

    /// Starts a window: gaps between listings count from here.
    pub fn open_window(&self) {
        for gap in &self.longest_gap_ms {
            gap.store(0, Ordering::Relaxed);
        }
        self.window_from_ms.store(self.now_ms(), Ordering::Relaxed);
    }

    /// The window's schedule up to now: a repository is overdue when more than
    /// `limit_ms` passed between two of its listings, or since its last one.
    pub fn schedule(&self, limit_ms: u64) -> Schedule {
        let now = self.now_ms();
        let from = self.window_from_ms.load(Ordering::Relaxed);
        let mut overdue = 0;
        let mut longest = 0;
        for (last, gap) in self.last_listed_ms.iter().zip(&self.longest_gap_ms) {
            let last = last.load(Ordering::Relaxed);
            let since = now - if last == NEVER { from } else { last.max(from) };
            let worst = gap.load(Ordering::Relaxed).max(since);
            longest = longest.max(worst);
            if worst > limit_ms || last == NEVER {
                overdue += 1;
            }
        }
        Schedule {
            overdue,
            longest_gap_ms: longest,
        }
    }

    /// Every change made from `from_ms` to `until_ms`, with the time from the change to
    /// the pack that carried it (it or a later generation of the same repository);
    /// `None` for a change no pack has carried yet.
    pub fn lags(&self, from_ms: u64, until_ms: u64) -> Vec<(Event, Option<u64>)> {
        let served = self
            .served
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let mut by_repo: std::collections::HashMap<usize, Vec<Event>> = Default::default();
        for event in served {
            by_repo.entry(event.repo).or_default().push(event);
        }
        let changes = self
            .changes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        changes
            .into_iter()
            .filter(|c| (from_ms..until_ms).contains(&c.at_ms))
            .map(|c| {
                let carried = by_repo.get(&c.repo).and_then(|served| {
                    served
                        .iter()
                        .filter(|s| s.generation >= c.generation && s.at_ms >= c.at_ms)
                        .map(|s| s.at_ms - c.at_ms)
                        .min()
                });
                (c, carried)
            })
            .collect()
    }

    fn listed_now(&self, repo: usize) {
        let now = self.now_ms();
        self.listed.fetch_add(1, Ordering::Relaxed);
        let before = self.last_listed_ms[repo].swap(now, Ordering::Relaxed);
        let from = self.window_from_ms.load(Ordering::Relaxed);
        if now >= from {
            let since = now
                - if before == NEVER {
                    from
                } else {
                    before.max(from)
                };
            self.longest_gap_ms[repo].fetch_max(since, Ordering::Relaxed);
        }
    }

    async fn upload_pack(&self, repo: usize, request: Bytes) -> Result<Bytes, String> {
        let mut child = tokio::process::Command::new("git")
            // any commit of the chain may be wanted: the listing is ours, not the chain's
            .args(["-c", "uploadpack.allowAnySHA1InWant=true"])
            .args(["upload-pack", "--stateless-rpc"])
            .arg(&self.dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("git upload-pack: {e}"))?;
        let mut stdin = child.stdin.take().ok_or("upload-pack stdin")?;
        let body = request.clone();
        // written beside the read, so a large request cannot fill both pipes
        let writer = tokio::spawn(async move {
            let _ = stdin.write_all(&body).await;
        });
        let out = child
            .wait_with_output()
            .await
            .map_err(|e| format!("git upload-pack: {e}"))?;
        let _ = writer.await;
        if !out.status.success() {
            return Err(format!("git upload-pack exited with {}", out.status));
        }
        if let Some(generation) = self.wanted(&request) {
            self.packs.fetch_add(1, Ordering::Relaxed);
            self.served
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(Event {
                    repo,
                    generation,
                    at_ms: self.now_ms(),
                });
        }
        Ok(out.stdout.into())
    }

    /// The highest generation a finished negotiation (one that says `done`) wanted.
    fn wanted(&self, request: &[u8]) -> Option<u8> {
        let text = String::from_utf8_lossy(request);
        if !text.contains("done\n") {
            return None;
        }
        text.split("want ")
            .skip(1)
            .filter_map(|rest| rest.get(..40))
            .filter_map(|id| self.chain.iter().position(|c| c == id))
            .max()
            .map(|g| g as u8)
    }
}

/// The server, on a runtime of its own thread (so the benchmark's process is the
/// upstream's, and nothing else it runs competes with it); stops when dropped.
pub struct FleetUpstream {
    pub addr: SocketAddr,
    pub fleet: Arc<Fleet>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FleetUpstream {
    /// `repos` repositories over a chain of `generations` commits after the first,
    /// built in `dir`.
    pub fn start(dir: &Path, repos: usize, generations: u8) -> Self {
        let mut upstream = Upstream::create(dir.to_owned());
        let mut chain = vec![git(dir, &["rev-parse", "HEAD"]).trim().to_owned()];
        for g in 1..=generations {
            chain.push(upstream.commit(&format!("generation {g}")));
        }
        git(dir, &["reset", "-q", "--hard", &chain[0]]);
        let caps = capabilities(&dir.join(".git"));
        let listings = chain.iter().map(|id| listing(id, &caps)).collect();
        let fleet = Arc::new(Fleet {
            dir: dir.join(".git"),
            chain,
            listings,
            epoch: Instant::now(),
            generation: (0..repos).map(|_| AtomicU8::new(0)).collect(),
            listed: AtomicU64::new(0),
            packs: AtomicU64::new(0),
            last_listed_ms: (0..repos).map(|_| AtomicU64::new(NEVER)).collect(),
            longest_gap_ms: (0..repos).map(|_| AtomicU64::new(0)).collect(),
            window_from_ms: AtomicU64::new(0),
            changes: Mutex::default(),
            served: Mutex::default(),
        });
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let served = fleet.clone();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("fleet upstream runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("bind the fleet upstream");
                let _ = ready_tx.send(listener.local_addr().expect("fleet upstream address"));
                let app = axum::Router::new().fallback(handle).with_state(served);
                let _ = axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        let _ = stop_rx.await;
                    })
                    .await;
            });
        });
        let addr = ready_rx.recv().expect("fleet upstream started");
        Self {
            addr,
            fleet,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    /// Repository `repo`'s URL.
    pub fn url(&self, repo: usize) -> String {
        format!("http://{}/r/{repo}.git", self.addr)
    }
}

impl Drop for FleetUpstream {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// `/r/<n>.git/info/refs?service=git-upload-pack` and `/r/<n>.git/git-upload-pack`.
async fn handle(State(fleet): State<Arc<Fleet>>, req: Request) -> Response {
    let path = req.uri().path().to_owned();
    let Some((repo, action)) = path
        .strip_prefix("/r/")
        .and_then(|p| p.split_once(".git/"))
        .and_then(|(n, action)| Some((n.parse::<usize>().ok()?, action.to_owned())))
        .filter(|(n, _)| *n < fleet.len())
    else {
        return StatusCode::NOT_FOUND.into_response();
    };
    match (req.method().clone(), action.as_str()) {
        (Method::GET, "info/refs") if req.uri().query() == Some("service=git-upload-pack") => {
            fleet.listed_now(repo);
            let generation = usize::from(fleet.generation[repo].load(Ordering::Acquire));
            (
                [
                    (
                        header::CONTENT_TYPE,
                        "application/x-git-upload-pack-advertisement",
                    ),
                    (header::CACHE_CONTROL, "no-cache"),
                ],
                Body::from(fleet.listings[generation].clone()),
            )
                .into_response()
        }
        (Method::POST, "git-upload-pack") => {
            let request = match axum::body::to_bytes(req.into_body(), 1 << 20).await {
                Ok(body) => body,
                Err(_) => return StatusCode::PAYLOAD_TOO_LARGE.into_response(),
            };
            match fleet.upload_pack(repo, request).await {
                Ok(pack) => (
                    [(header::CONTENT_TYPE, "application/x-git-upload-pack-result")],
                    pack,
                )
                    .into_response(),
                Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e).into_response(),
            }
        }
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

/// The capabilities real `git upload-pack` advertises for this repository.
fn capabilities(repo: &Path) -> String {
    let out = std::process::Command::new("git")
        .args(["upload-pack", "--stateless-rpc", "--advertise-refs"])
        .arg(repo)
        .output()
        .expect("run git upload-pack");
    let text = String::from_utf8_lossy(&out.stdout);
    let first = text.split('\n').next().unwrap_or_default();
    first
        .split_once('\0')
        .map(|(_, caps)| caps.to_owned())
        .expect("upload-pack advertises capabilities")
}

fn pkt(line: &str) -> String {
    format!("{:04x}{line}", line.len() + 4)
}

fn listing(id: &str, caps: &str) -> Bytes {
    let mut text = pkt("# service=git-upload-pack\n");
    text.push_str("0000");
    text.push_str(&pkt(&format!("{id} HEAD\0{caps}\n")));
    text.push_str(&pkt(&format!("{id} refs/heads/main\n")));
    text.push_str("0000");
    Bytes::from(text)
}
