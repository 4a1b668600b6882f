//! A tiny authoritative DNS server for DNS-rebinding tests: names whose address changes
//! from one query to the next (TTL 0), so a test can prove a client resolved a host once
//! and connected to the address it checked, not to whatever a second lookup returns.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA};
use hickory_proto::rr::{RData, Record, RecordType};
use tokio::net::UdpSocket;

use crate::background::Background;

/// Answers `name` (or several names) on UDP 127.0.0.1 (or another address) and a free
/// port; stopped on drop.
///
/// The `i`th `A` query for a name gets the `i`th IPv4 address of its list (the last one
/// repeats), the `i`th `AAAA` query the `i`th IPv6 one (an empty `NOERROR` answer if the
/// list has none); other types get an empty `NOERROR`, other names `NXDOMAIN`. `A` and
/// `AAAA` count separately, so a resolver asking both at once still sees the order.
pub struct RebindingDns {
    addr: SocketAddr,
    zones: Arc<Vec<Zone>>,
    _server: Background,
}

struct Zone {
    /// Lowercase, no trailing dot.
    name: String,
    v4: Vec<Ipv4Addr>,
    v6: Vec<Ipv6Addr>,
    counts: Mutex<Counts>,
}

#[derive(Default, Clone, Copy)]
struct Counts {
    all: usize,
    a: usize,
    aaaa: usize,
}

impl RebindingDns {
    pub fn start(name: &str, answers: Vec<IpAddr>) -> Self {
        Self::start_on(name, answers, IpAddr::V4(Ipv4Addr::LOCALHOST))
    }

    /// Listening on `ip` instead of 127.0.0.1.
    pub fn start_on(name: &str, answers: Vec<IpAddr>, ip: IpAddr) -> Self {
        Self::serve(&[(name, answers)], ip)
    }

    /// Answering each of `names` with its own list, as [`Self::start`] answers its one.
    pub fn start_names(names: &[(&str, Vec<IpAddr>)]) -> Self {
        Self::serve(names, IpAddr::V4(Ipv4Addr::LOCALHOST))
    }

    fn serve(names: &[(&str, Vec<IpAddr>)], ip: IpAddr) -> Self {
        let socket = std::net::UdpSocket::bind((ip, 0)).expect("bind dns server");
        socket.set_nonblocking(true).unwrap();
        let addr = socket.local_addr().unwrap();
        let zones: Arc<Vec<Zone>> = Arc::new(
            names
                .iter()
                .map(|(name, answers)| Zone {
                    name: normalize(name),
                    v4: answers.iter().filter_map(v4).collect(),
                    v6: answers.iter().filter_map(v6).collect(),
                    counts: Mutex::default(),
                })
                .collect(),
        );
        let z = zones.clone();
        let server = Background::spawn("rebinding-dns", move || async move {
            let socket = UdpSocket::from_std(socket).expect("dns socket");
            let mut buf = vec![0u8; 4096];
            while let Ok((n, from)) = socket.recv_from(&mut buf).await {
                if let Some(reply) = answer(&z, &buf[..n]) {
                    let _ = socket.send_to(&reply, from).await;
                }
            }
        });
        Self {
            addr,
            zones,
            _server: server,
        }
    }

    /// Where to send queries (the resolver's name server).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Queries for the (first) name so far, of any type.
    pub fn queries(&self) -> usize {
        self.counts().all
    }

    /// `A` queries for the (first) name so far: the index of the next IPv4 answer.
    pub fn a_queries(&self) -> usize {
        self.counts().a
    }

    /// `AAAA` queries for the (first) name so far.
    pub fn aaaa_queries(&self) -> usize {
        self.counts().aaaa
    }

    fn counts(&self) -> Counts {
        *self.zones[0].counts.lock().unwrap()
    }
}

/// The reply to one query packet; `None` for one that does not parse.
fn answer(zones: &[Zone], packet: &[u8]) -> Option<Vec<u8>> {
    let query = Message::from_vec(packet).ok()?;
    let mut reply = Message::response(query.metadata.id, query.metadata.op_code);
    reply.metadata.authoritative = true;
    reply.metadata.recursion_desired = query.metadata.recursion_desired;
    let Some(q) = query.queries.first() else {
        reply.metadata.response_code = ResponseCode::FormErr;
        return reply.to_vec().ok();
    };
    reply.add_query(q.clone());
    let asked = normalize(&q.name().to_ascii());
    let Some(zone) = zones.iter().find(|z| z.name == asked) else {
        reply.metadata.response_code = ResponseCode::NXDomain;
        return reply.to_vec().ok();
    };
    if let Some(data) = zone.next(q.query_type()) {
        reply.add_answer(Record::from_rdata(q.name().clone(), 0, data));
    }
    reply.to_vec().ok()
}

impl Zone {
    /// The next answer to a query of type `kind` for this name, counting the query.
    fn next(&self, kind: RecordType) -> Option<RData> {
        let mut counts = self.counts.lock().unwrap();
        counts.all += 1;
        match kind {
            RecordType::A => {
                counts.a += 1;
                nth(&self.v4, counts.a - 1).map(|ip| RData::A(A(ip)))
            }
            RecordType::AAAA => {
                counts.aaaa += 1;
                nth(&self.v6, counts.aaaa - 1).map(|ip| RData::AAAA(AAAA(ip)))
            }
            _ => None,
        }
    }
}

/// The `i`th item, the last one past the end, `None` for an empty list.
fn nth<T: Copy>(items: &[T], i: usize) -> Option<T> {
    items.get(i).or(items.last()).copied()
}

fn normalize(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

fn v4(ip: &IpAddr) -> Option<Ipv4Addr> {
    match ip {
        IpAddr::V4(ip) => Some(*ip),
        IpAddr::V6(_) => None,
    }
}

fn v6(ip: &IpAddr) -> Option<Ipv6Addr> {
    match ip {
        IpAddr::V6(ip) => Some(*ip),
        IpAddr::V4(_) => None,
    }
}
