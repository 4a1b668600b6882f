//! https:// upstreams: TLS in front of a loopback HTTP server (a
//! [`crate::http::GitHttpServer`]) with a certificate from a [`TestCa`] this process
//! trusts, counting what connection reuse saves a client: TCP connections accepted, TLS
//! handshakes completed, connections open now.
//!
//! Each client connection gets a connection of its own to the server behind, so the
//! `peer` of that server's [`crate::http::Call`]s tells the client's connections apart.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};

use crate::background::Background;
use crate::tls::{Issued, TestCa};

/// Makes `ca` the CA this process's TLS clients trust: `SSL_CERT_FILE` names it, and
/// OpenSSL (the worker's TLS, through native-tls) reads that variable when the process
/// builds its first TLS context, which it then keeps. So call it before anything in the
/// process opens a TLS connection, keep `ca` for as long as the process makes TLS
/// connections, and issue every test certificate from it.
pub fn trust(ca: &TestCa) {
    std::env::set_var("SSL_CERT_FILE", &ca.cert);
}

#[derive(Default)]
struct Counts {
    accepted: AtomicUsize,
    handshakes: AtomicUsize,
    open: AtomicUsize,
}

/// Accepts TLS on an address of its own and passes each connection's plaintext to
/// `backend`; stopped on drop.
pub struct TlsFront {
    addr: SocketAddr,
    counts: Arc<Counts>,
    _server: Background,
}

impl TlsFront {
    /// Listening on `ip`, port chosen by the kernel, serving `cert`.
    pub fn start(ip: IpAddr, backend: SocketAddr, cert: &Issued) -> Self {
        Self::start_at(SocketAddr::new(ip, 0), backend, cert)
    }

    /// Listening on `addr` (another address at the port of another front: one port,
    /// two hosts).
    pub fn start_at(addr: SocketAddr, backend: SocketAddr, cert: &Issued) -> Self {
        let pem = |path: &std::path::Path| std::fs::read(path).expect("read PEM");
        let identity = native_tls::Identity::from_pkcs8(&pem(&cert.cert), &pem(&cert.key))
            .expect("certificate and PKCS#8 key");
        let acceptor = native_tls::TlsAcceptor::new(identity).expect("TLS acceptor");
        let acceptor = tokio_native_tls::TlsAcceptor::from(acceptor);
        let listener = std::net::TcpListener::bind(addr).expect("bind TLS front");
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let counts = Arc::new(Counts::default());
        let c = counts.clone();
        let server = Background::spawn("tls-front", move || async move {
            let listener = TcpListener::from_std(listener).expect("TLS listener");
            while let Ok((tcp, _)) = listener.accept().await {
                // small writes (a chunked answer's end) go out at once, not after the
                // peer's delayed ACK
                let _ = tcp.set_nodelay(true);
                c.accepted.fetch_add(1, Ordering::SeqCst);
                c.open.fetch_add(1, Ordering::SeqCst);
                let (c, acceptor) = (c.clone(), acceptor.clone());
                tokio::spawn(async move {
                    if let Ok(mut tls) = acceptor.accept(tcp).await {
                        c.handshakes.fetch_add(1, Ordering::SeqCst);
                        if let Ok(mut plain) = TcpStream::connect(backend).await {
                            let _ = plain.set_nodelay(true);
                            let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
                        }
                    }
                    c.open.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        Self {
            addr,
            counts,
            _server: server,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `https://<host>:<port>/<name>`: `host` a name its certificate holds.
    pub fn url(&self, host: &str, name: &str) -> String {
        format!("https://{host}:{}/{name}", self.port())
    }

    /// TCP connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.counts.accepted.load(Ordering::SeqCst)
    }

    /// TLS handshakes completed so far.
    pub fn handshakes(&self) -> usize {
        self.counts.handshakes.load(Ordering::SeqCst)
    }

    /// Connections open now: one the client closed counts out once both directions
    /// of its copy have ended.
    pub fn open(&self) -> usize {
        self.counts.open.load(Ordering::SeqCst)
    }
}
