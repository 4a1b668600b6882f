//! The latency proxy delays what it forwards by at least its round trip, and forwards
//! every byte in order.

use std::time::{Duration, Instant};

use stasis_testkit::latency::LatencyProxy;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[tokio::test]
async fn each_round_trip_through_the_proxy_takes_at_least_its_rtt() {
    let echo = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = echo.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut s, _) = echo.accept().await.unwrap();
        let mut buf = [0u8; 4096];
        loop {
            let n = s.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            s.write_all(&buf[..n]).await.unwrap();
        }
    });
    let rtt = Duration::from_millis(60);
    let proxy = LatencyProxy::start(vec![target], rtt).await.unwrap();
    let started = Instant::now();
    let mut client = TcpStream::connect(proxy.addr).await.unwrap();
    let payload: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let mut back = vec![0u8; payload.len()];
    let (mut r, mut w) = client.split();
    let send = async {
        w.write_all(&payload).await.unwrap();
    };
    let receive = async {
        r.read_exact(&mut back).await.unwrap();
    };
    tokio::join!(send, receive);
    // the handshake's round trip, then the bytes' own
    assert!(started.elapsed() >= rtt * 2, "{:?}", started.elapsed());
    assert_eq!(back, payload);
    let second = Instant::now();
    w.write_all(b"ping").await.unwrap();
    let mut four = [0u8; 4];
    r.read_exact(&mut four).await.unwrap();
    assert!(second.elapsed() >= rtt, "{:?}", second.elapsed());
    assert_eq!(&four, b"ping");
    assert_eq!(proxy.connections(), 1);
}

#[tokio::test]
async fn a_burst_of_connects_waits_in_the_proxy_not_in_the_targets_accept_queue() {
    use stasis_testkit::latency::ACCEPT_QUEUE;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    let server = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = server.local_addr().unwrap();
    // connections the target holds and has not answered yet, and the most at once
    let unanswered = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let (held, peak) = (unanswered.clone(), most.clone());
    tokio::spawn(async move {
        while let Ok((mut s, _)) = server.accept().await {
            let now = held.fetch_add(1, Ordering::SeqCst) + 1;
            peak.fetch_max(now, Ordering::SeqCst);
            let held = held.clone();
            tokio::spawn(async move {
                let mut one = [0u8; 1];
                s.read_exact(&mut one).await.unwrap();
                tokio::time::sleep(Duration::from_millis(20)).await;
                held.fetch_sub(1, Ordering::SeqCst);
                s.write_all(&one).await.unwrap();
            });
        }
    });
    let proxy = LatencyProxy::start(vec![target], Duration::from_millis(10))
        .await
        .unwrap();
    let clients = (0..5 * ACCEPT_QUEUE as u8).map(|i| {
        let addr = proxy.addr;
        tokio::spawn(async move {
            let mut c = TcpStream::connect(addr).await.unwrap();
            c.write_all(&[i]).await.unwrap();
            let mut one = [0u8; 1];
            c.read_exact(&mut one).await.unwrap();
            one[0] == i
        })
    });
    for client in clients.collect::<Vec<_>>() {
        assert!(client.await.unwrap(), "a reply reached the wrong client");
    }
    let most = most.load(Ordering::SeqCst);
    assert!(
        (1..=ACCEPT_QUEUE).contains(&most),
        "{most} connections unanswered at once"
    );
}
