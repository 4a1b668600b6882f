//! git:// servers that misbehave on purpose, for the limits of a client's transport: an
//! advertisement that never ends, garbage where the negotiation should be, a corrupt pack,
//! and a server that never says anything. Each counts the bytes it sent and sees when the
//! client hangs up, so a test can prove a client stopped reading and closed its socket
//! rather than only that it returned an error.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, TcpStream};

use crate::background::Background;

/// The capabilities of the first advertised ref, as `git-upload-pack` v0 sends them.
pub const CAPABILITIES: &str = "multi_ack side-band-64k ofs-delta";

/// What a [`HostileGitServer`] does with each connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hostility {
    /// After the client's request pkt-line, a valid-looking ref advertisement that never
    /// ends (`<40-hex> refs/heads/bN`, the first with [`CAPABILITIES`]), as fast as the
    /// client reads it.
    EndlessAdvertisement,
    /// A small valid advertisement (`HEAD` and `refs/heads/main`) and its flush; after
    /// the client's wants and their flush, pseudo-random bytes that never end.
    GarbageAfterAdvertisement,
    /// A valid advertisement of `refs/heads/main` alone (capabilities `ofs-delta`, no
    /// side band); after the wants and `done`, `NAK` and a pack whose header is valid and
    /// whose one object is not zlib data. Then the server closes its side.
    JunkPack,
    /// Accepts and never sends a byte (it reads and discards what the client sends).
    Silent,
}

/// The object id every hostile advertisement names for `main`/`HEAD`.
pub const ADVERTISED_OID: &str = "1111111111111111111111111111111111111111";

/// A [`Hostility`] on 127.0.0.1 (or another local address) and a free port; stopped on drop.
pub struct HostileGitServer {
    addr: SocketAddr,
    stats: Arc<Stats>,
    _server: Background,
}

#[derive(Default)]
struct Stats {
    bytes_sent: AtomicU64,
    conns: Mutex<Conns>,
    changed: Condvar,
}

#[derive(Default, Clone, Copy)]
struct Conns {
    accepted: usize,
    closed: usize,
}

impl HostileGitServer {
    pub fn start(kind: Hostility) -> Self {
        Self::start_on(kind, IpAddr::V4(Ipv4Addr::LOCALHOST))
    }

    /// Listening on `ip`, e.g. a "public" address made local by [`crate::netns`].
    pub fn start_on(kind: Hostility, ip: IpAddr) -> Self {
        let listener = std::net::TcpListener::bind((ip, 0)).expect("bind hostile server");
        // A small send buffer (accepted sockets inherit it), so what the kernel holds for a
        // client that stopped reading adds little to `bytes_sent`.
        let _ = socket2::SockRef::from(&listener).set_send_buffer_size(16 * 1024);
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let stats = Arc::new(Stats::default());
        let s = stats.clone();
        let server = Background::spawn("hostile-git", move || async move {
            let listener = TcpListener::from_std(listener).expect("hostile listener");
            while let Ok((stream, _)) = listener.accept().await {
                s.conns.lock().unwrap().accepted += 1;
                let s = s.clone();
                tokio::spawn(async move {
                    serve(kind, stream, &s).await;
                    s.conns.lock().unwrap().closed += 1;
                    s.changed.notify_all();
                });
            }
        });
        Self {
            addr,
            stats,
            _server: server,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `git://<ip>:<port>/<name>`; every name gets the same treatment.
    pub fn url(&self, name: &str) -> String {
        format!("git://{}/{name}", self.addr)
    }

    /// Bytes the kernel accepted from the server over all connections. A client that stops
    /// reading leaves this growing no further than its own receive buffer and the server's
    /// 32 KiB send buffer allow (a few MiB at most on loopback).
    pub fn bytes_sent(&self) -> u64 {
        self.stats.bytes_sent.load(Ordering::SeqCst)
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.stats.conns.lock().unwrap().accepted
    }

    /// Whether at least one client connected and every client that did has closed its
    /// connection (the server read EOF or a reset, or a write failed).
    pub fn peer_closed(&self) -> bool {
        all_closed(&self.stats.conns.lock().unwrap())
    }

    /// Waits up to `timeout` for [`Self::peer_closed`]; returns whether it became true.
    pub fn wait_peer_closed(&self, timeout: Duration) -> bool {
        let conns = self.stats.conns.lock().unwrap();
        let (conns, _) = self
            .stats
            .changed
            .wait_timeout_while(conns, timeout, |c| !all_closed(c))
            .unwrap();
        all_closed(&conns)
    }
}

fn all_closed(c: &Conns) -> bool {
    c.accepted > 0 && c.closed == c.accepted
}

/// Plays `kind` on one connection, then reads until the client hangs up.
async fn serve(kind: Hostility, stream: TcpStream, stats: &Stats) {
    let (mut rd, wr) = stream.into_split();
    let mut out = Counted { wr, stats };
    let played = match kind {
        Hostility::Silent => Ok(()),
        Hostility::EndlessAdvertisement => endless_advertisement(&mut rd, &mut out).await,
        Hostility::GarbageAfterAdvertisement => garbage(&mut rd, &mut out).await,
        Hostility::JunkPack => junk_pack(&mut rd, &mut out).await,
    };
    match played {
        // The client sent something that is not a pkt-line: it is still there.
        Err(e) if e.kind() == io::ErrorKind::InvalidData => {}
        Err(_) => return, // a failed write, or EOF or a reset on a read: the client is gone
        Ok(()) => {}
    }
    let mut buf = [0u8; 4096];
    while let Ok(n) = rd.read(&mut buf).await {
        if n == 0 {
            break;
        }
    }
}

async fn endless_advertisement(
    rd: &mut impl AsyncReadUnpin,
    out: &mut Counted<'_>,
) -> io::Result<()> {
    read_pkt(rd).await?; // git-upload-pack /<name>\0host=...\0
    let mut next: u64 = 0;
    loop {
        let mut chunk = Vec::with_capacity(64 * 1024);
        for _ in 0..1000 {
            let line = if next == 0 {
                format!("{:040x} refs/heads/b0\0{CAPABILITIES}\n", 1)
            } else {
                format!("{:040x} refs/heads/b{next}\n", next + 1)
            };
            chunk.extend_from_slice(&pkt(line.as_bytes()));
            next += 1;
        }
        out.write(&chunk).await?;
    }
}

async fn garbage(rd: &mut impl AsyncReadUnpin, out: &mut Counted<'_>) -> io::Result<()> {
    read_pkt(rd).await?;
    let mut adv = pkt(format!("{ADVERTISED_OID} HEAD\0{CAPABILITIES}\n").as_bytes());
    adv.extend(pkt(format!("{ADVERTISED_OID} refs/heads/main\n").as_bytes()));
    adv.extend(b"0000");
    out.write(&adv).await?;
    while read_pkt(rd).await?.is_some() {} // the wants, up to their flush
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut chunk = vec![0u8; 16 * 1024];
    loop {
        for b in chunk.iter_mut() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
        out.write(&chunk).await?;
    }
}

async fn junk_pack(rd: &mut impl AsyncReadUnpin, out: &mut Counted<'_>) -> io::Result<()> {
    read_pkt(rd).await?;
    let mut adv = pkt(format!("{ADVERTISED_OID} refs/heads/main\0ofs-delta\n").as_bytes());
    adv.extend(b"0000");
    out.write(&adv).await?;
    while read_pkt(rd).await?.is_some() {} // wants
    while read_pkt(rd).await?.is_none_or(|l| l != b"done\n") {} // haves, flushes, done
    let mut reply = pkt(b"NAK\n");
    reply.extend(b"PACK");
    reply.extend(2u32.to_be_bytes()); // version
    reply.extend(1u32.to_be_bytes()); // one object
    reply.extend([0x3c, 0x0a]); // a blob of 172 bytes...
    reply.extend([0xde, 0xad, 0xbe, 0xef].repeat(8)); // ...that is not zlib data
    reply.extend([0u8; 20]); // and a checksum that matches nothing
    out.write(&reply).await?;
    out.wr.shutdown().await
}

trait AsyncReadUnpin: AsyncRead + Unpin {}
impl<T: AsyncRead + Unpin> AsyncReadUnpin for T {}

/// One pkt-line's payload, `None` for a flush (`0000`); delim and response-end packets
/// (`0001`, `0002`) read as empty payloads.
async fn read_pkt(rd: &mut impl AsyncReadUnpin) -> io::Result<Option<Vec<u8>>> {
    let mut len = [0u8; 4];
    rd.read_exact(&mut len).await?;
    let len = std::str::from_utf8(&len)
        .ok()
        .and_then(|s| usize::from_str_radix(s, 16).ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "bad pkt-line length"))?;
    if len == 0 {
        return Ok(None);
    }
    let mut payload = vec![0u8; len.saturating_sub(4)];
    rd.read_exact(&mut payload).await?;
    Ok(Some(payload))
}

/// `payload` framed as a pkt-line.
pub fn pkt(payload: &[u8]) -> Vec<u8> {
    let mut line = format!("{:04x}", payload.len() + 4).into_bytes();
    line.extend_from_slice(payload);
    line
}

struct Counted<'a> {
    wr: OwnedWriteHalf,
    stats: &'a Stats,
}

impl Counted<'_> {
    async fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        // Whole-chunk writes would count bytes still queued when the client hung up.
        for part in bytes.chunks(4096) {
            self.wr.write_all(part).await?;
            let sent = part.len() as u64;
            self.stats.bytes_sent.fetch_add(sent, Ordering::SeqCst);
        }
        Ok(())
    }
}
