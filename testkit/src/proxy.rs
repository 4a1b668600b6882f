//! A loopback TCP proxy that slows the upstream-to-client direction to a fixed rate and
//! records how many connections were open at once: a real network path whose fetches
//! take long enough to interrupt, and a witness for "never two fetches of one repo".

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

#[derive(Default)]
struct Counters {
    open: AtomicUsize,
    max_open: AtomicUsize,
    total: AtomicUsize,
}

pub struct ThrottledProxy {
    pub addr: std::net::SocketAddr,
    pub port: u16,
    counters: Arc<Counters>,
    task: JoinHandle<()>,
}

impl ThrottledProxy {
    pub async fn start(target_port: u16, bytes_per_sec: usize) -> Self {
        Self::start_at([127, 0, 0, 1], target_port, bytes_per_sec).await
    }

    /// Listens on another loopback address (127.0.0.0/8): a second upstream host.
    pub async fn start_at(ip: [u8; 4], target_port: u16, bytes_per_sec: usize) -> Self {
        let listener = TcpListener::bind((std::net::Ipv4Addr::from(ip), 0))
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let counters = Arc::new(Counters::default());
        let c = counters.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let c = c.clone();
                tokio::spawn(async move {
                    let now = c.open.fetch_add(1, Ordering::SeqCst) + 1;
                    c.max_open.fetch_max(now, Ordering::SeqCst);
                    c.total.fetch_add(1, Ordering::SeqCst);
                    if let Ok(server) = TcpStream::connect(("127.0.0.1", target_port)).await {
                        pipe(client, server, bytes_per_sec).await;
                    }
                    c.open.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        Self {
            addr,
            port: addr.port(),
            counters,
            task,
        }
    }

    pub fn url(&self, name: &str) -> String {
        format!("git://{}/{name}", self.addr)
    }

    pub fn max_concurrent(&self) -> usize {
        self.counters.max_open.load(Ordering::SeqCst)
    }

    /// Connections open now: one a client has closed is counted out once the proxy's
    /// copy in both directions has ended.
    pub fn open(&self) -> usize {
        self.counters.open.load(Ordering::SeqCst)
    }

    pub fn connections(&self) -> usize {
        self.counters.total.load(Ordering::SeqCst)
    }
}

impl Drop for ThrottledProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn pipe(client: TcpStream, server: TcpStream, bytes_per_sec: usize) {
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let up = async {
        let _ = tokio::io::copy(&mut cr, &mut sw).await;
        let _ = sw.shutdown().await;
    };
    let chunk = (bytes_per_sec / 20).max(1);
    let down = async {
        let mut buf = vec![0u8; chunk];
        loop {
            match sr.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if cw.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
        let _ = cw.shutdown().await;
    };
    tokio::join!(up, down);
}
