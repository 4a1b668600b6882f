//! A loopback TCP proxy that adds latency, as a network path between two hosts does
//! (this kernel has no `netem`): a connection to the target is made one round trip
//! after the client's (a TCP handshake), and every byte is delivered one way's delay
//! after it was read, in order, without limiting the rate.
//!
//! Connects wait in the proxy, as in a production server's deep accept queue, rather
//! than in the target's: `git daemon` listens with a backlog of 5, so a burst of a few
//! dozen connects would lose SYNs there (each a 1 s retransmit), which measures that
//! backlog and not the client. At most [`ACCEPT_QUEUE`] connections per target are
//! unanswered at once; the rest wait their turn here.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Connections a target has been handed and not yet answered: under `git daemon`'s
/// accept queue (5, so 6 held), so it never drops one.
pub const ACCEPT_QUEUE: usize = 4;

pub struct LatencyProxy {
    pub addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl LatencyProxy {
    /// Forwards to `targets` in turn (a server listening on several addresses spreads
    /// the connects over its accept queues), `rtt` added to each round trip.
    pub async fn start(targets: Vec<SocketAddr>, rtt: Duration) -> std::io::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let connections = Arc::new(AtomicUsize::new(0));
        let count = connections.clone();
        let queues: Vec<Arc<Semaphore>> = targets
            .iter()
            .map(|_| Arc::new(Semaphore::new(ACCEPT_QUEUE)))
            .collect();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let n = count.fetch_add(1, Ordering::Relaxed);
                let target = targets[n % targets.len()];
                let queue = queues[n % targets.len()].clone();
                tokio::spawn(async move {
                    // the handshake's round trip, before the first byte can pass
                    tokio::time::sleep(rtt).await;
                    let Ok(turn) = queue.acquire_owned().await else {
                        return;
                    };
                    if let Ok(server) = TcpStream::connect(target).await {
                        let _ = client.set_nodelay(true);
                        let _ = server.set_nodelay(true);
                        let (cr, cw) = client.into_split();
                        let (sr, sw) = server.into_split();
                        tokio::join!(
                            delayed(cr, sw, rtt / 2, None),
                            delayed(sr, cw, rtt / 2, Some(turn))
                        );
                    }
                });
            }
        });
        Ok(Self {
            addr,
            connections,
            task,
        })
    }

    pub fn url(&self, name: &str) -> String {
        format!("git://{}/{name}", self.addr)
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::Relaxed)
    }
}

impl Drop for LatencyProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Copies `from` to `to`, each chunk written `delay` after it was read: a reader that
/// never waits for the writer, so the delay adds to latency and not to throughput.
/// `turn` (the target's side) is given back once the target has answered or hung up.
async fn delayed(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    delay: Duration,
    mut turn: Option<OwnedSemaphorePermit>,
) {
    let (tx, mut rx) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let read = async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let read = from.read(&mut buf).await;
            turn.take();
            match read {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if tx
                        .send((Instant::now() + delay, buf[..n].to_vec()))
                        .is_err()
                    {
                        break;
                    }
                }
            }
        }
    };
    let write = async move {
        while let Some((due, bytes)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            if to.write_all(&bytes).await.is_err() {
                return;
            }
        }
        // the end of the stream arrives as late as its last byte
        let _ = to.shutdown().await;
    };
    tokio::join!(read, write);
}
