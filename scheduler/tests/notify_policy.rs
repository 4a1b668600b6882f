//! Owners' notification receivers are held to the upstream address policy where the
//! client resolves their name, not only when the URL is checked: a name that answers a
//! loopback address when the POST goes out reaches nothing.

use std::sync::Arc;

use stasis_shared::git::url::resolve::PolicyResolver;
use stasis_testkit::dns::RebindingDns;

/// A receiver on loopback that counts the requests it gets.
async fn receiver() -> (u16, Arc<std::sync::atomic::AtomicUsize>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let hits = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = hits.clone();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let mut buf = [0u8; 4096];
            let _ = conn.read(&mut buf).await;
            let _ = conn
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                .await;
        }
    });
    (port, hits)
}

fn client(allow_local_network: bool, dns: &RebindingDns) -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .dns_resolver(Arc::new(PolicyResolver {
            allow_local_network,
            dns_server: Some(dns.addr()),
        }))
        .build()
        .unwrap()
}

#[tokio::test]
async fn a_name_resolving_to_loopback_is_refused_where_the_client_connects() {
    let (port, hits) = receiver().await;
    let dns = RebindingDns::start("hook.test", vec!["127.0.0.1".parse().unwrap()]);
    let url = format!("http://hook.test:{port}/notify");

    let refused = client(false, &dns).post(&url).send().await;
    let error = format!("{:?}", refused.expect_err("loopback refused"));
    assert!(error.contains("loopback"), "{error}");
    assert_eq!(
        hits.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "nothing reached"
    );

    let allowed = client(true, &dns).post(&url).send().await.expect("allowed");
    assert!(allowed.status().is_success());
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert!(
        dns.queries() >= 2,
        "each client asked the configured server"
    );
}
