use std::net::{IpAddr, UdpSocket};
use std::time::Duration;

use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use stasis_testkit::dns::RebindingDns;

/// One query over UDP, as a stub resolver sends it.
fn ask(server: &RebindingDns, name: &str, kind: RecordType) -> Message {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut query = Message::query();
    query.metadata.recursion_desired = true;
    query.add_query(Query::query(Name::from_ascii(name).unwrap(), kind));
    socket
        .send_to(&query.to_vec().unwrap(), server.addr())
        .unwrap();
    let mut buf = [0u8; 4096];
    let n = socket.recv(&mut buf).expect("dns reply");
    let reply = Message::from_vec(&buf[..n]).unwrap();
    assert_eq!(reply.metadata.id, query.metadata.id);
    reply
}

fn ips(reply: &Message) -> Vec<IpAddr> {
    reply
        .answers
        .iter()
        .map(|r| {
            assert_eq!(r.ttl, 0, "never cached");
            match &r.data {
                RData::A(a) => IpAddr::V4(a.0),
                RData::AAAA(a) => IpAddr::V6(a.0),
                other => panic!("unexpected record {other:?}"),
            }
        })
        .collect()
}

#[test]
fn answers_in_order_then_repeats_the_last() {
    let answers = ["1.2.3.4", "127.0.0.1", "::1"].map(|a| a.parse().unwrap());
    let dns = RebindingDns::start("rebind.test", answers.to_vec());
    let a = |reply: Message| ips(&reply);
    assert_eq!(a(ask(&dns, "rebind.test.", RecordType::A)), [answers[0]]);
    // AAAA counts on its own: asking it between A queries does not shift them.
    assert_eq!(a(ask(&dns, "rebind.test.", RecordType::AAAA)), [answers[2]]);
    assert_eq!(a(ask(&dns, "REBIND.test.", RecordType::A)), [answers[1]]);
    assert_eq!(a(ask(&dns, "rebind.test.", RecordType::A)), [answers[1]]);
    assert_eq!(a(ask(&dns, "rebind.test.", RecordType::AAAA)), [answers[2]]);
    assert_eq!(
        (dns.queries(), dns.a_queries(), dns.aaaa_queries()),
        (5, 3, 2)
    );
}

#[test]
fn other_names_do_not_exist_and_other_types_are_empty() {
    let dns = RebindingDns::start("rebind.test", vec!["1.2.3.4".parse().unwrap()]);
    let other = ask(&dns, "other.test.", RecordType::A);
    assert_eq!(other.metadata.response_code, ResponseCode::NXDomain);
    assert!(other.answers.is_empty());
    let v6 = ask(&dns, "rebind.test.", RecordType::AAAA);
    assert_eq!(v6.metadata.response_code, ResponseCode::NoError);
    assert!(v6.answers.is_empty(), "no IPv6 answers were given");
    let txt = ask(&dns, "rebind.test.", RecordType::TXT);
    assert_eq!(txt.metadata.response_code, ResponseCode::NoError);
    assert!(txt.answers.is_empty());
    assert!(txt.metadata.authoritative);
    assert_eq!(dns.queries(), 2, "other.test is not counted");
    assert_eq!(dns.a_queries(), 0);
}
