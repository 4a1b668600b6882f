//! Failure notifications end to end: a real worker fails a mirror and later syncs it, the
//! scheduler leader delivers signed events to a loopback receiver (retrying one that
//! answered 500), and the owner sees them in the mirror's history.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode as AxumStatus};
use axum::routing::post;
use axum::Router;
use hmac::{Hmac, Mac};
use reqwest::StatusCode;
use serde_json::{json, Value};
use sha2::Sha256;
use stasis_testkit::git::Upstream;
use stasis_testkit::{eventually, TestEnv};

mod common;

use common::{Api, Users};

const SECRET: &str = "notify-secret-42";
const WAIT: Duration = Duration::from_secs(60);

#[derive(Debug, Clone)]
struct Received {
    receiver: String,
    event: String,
    signature: String,
    body: Value,
    raw: Vec<u8>,
}

#[derive(Default)]
struct Inbox {
    received: Mutex<Vec<Received>>,
    refused_once: Mutex<bool>,
}

async fn receive(
    State(inbox): State<Arc<Inbox>>,
    Path(receiver): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> AxumStatus {
    // the global receiver fails its first delivery: it must be retried
    if receiver == "global" {
        let mut refused = inbox.refused_once.lock().unwrap();
        if !*refused {
            *refused = true;
            return AxumStatus::INTERNAL_SERVER_ERROR;
        }
    }
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    inbox.received.lock().unwrap().push(Received {
        receiver,
        event: header("x-stasis-event"),
        signature: header("x-stasis-signature"),
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        raw: body.to_vec(),
    });
    AxumStatus::OK
}

fn events(inbox: &Inbox, receiver: &str) -> Vec<Received> {
    let received = inbox.received.lock().unwrap();
    received
        .iter()
        .filter(|r| r.receiver == receiver)
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn owners_and_operators_hear_about_failures_and_recoveries() {
    let inbox = Arc::new(Inbox::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let receiver = format!("http://{}", listener.local_addr().unwrap());
    let app = Router::new()
        .route("/{receiver}", post(receive))
        .with_state(inbox.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let mut env = TestEnv::new().await;
    env.cfg.notify.urls = vec![format!("{receiver}/global")];
    env.cfg.notify.secret = Some(SECRET.into());
    let api = Api::start(&env).await;
    let worker = env.spawn_worker();
    let scheduler = env.spawn_scheduler();
    let Users { alice, .. } = Users::create(&env).await;

    // the owner's own receiver
    let (status, err) = api
        .call(
            "PUT",
            "/api/v1/user/notify",
            Some(&alice),
            Some(json!({ "url": "ftp://x" })),
        )
        .await;
    assert_eq!(
        (status, err["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_url"))
    );
    let mine = format!("{receiver}/alice");
    let (status, me) = api
        .call(
            "PUT",
            "/api/v1/user/notify",
            Some(&alice),
            Some(json!({ "url": mine })),
        )
        .await;
    assert_eq!(
        (status, me["notify_url"].as_str()),
        (StatusCode::OK, Some(mine.as_str()))
    );

    // an upstream that does not exist yet: the import fails for good at once
    let later = env.dir.path().join("later");
    let (status, body) = api
        .call(
            "POST",
            "/api/v1/repos/import",
            Some(&alice),
            Some(json!({ "name": "m", "clone_url": format!("file://{}", later.display()), "mirror": true })),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    eventually(
        "both receivers to hear of the hard failure",
        WAIT,
        || async {
            (!events(&inbox, "alice").is_empty() && !events(&inbox, "global").is_empty())
                .then_some(())
        },
    )
    .await;
    for who in ["alice", "global"] {
        let got = events(&inbox, who);
        assert_eq!(got.len(), 1, "{who}: {got:?}");
        let event = &got[0];
        assert_eq!(event.event, "hard_failed");
        assert_eq!(event.body["event"], "hard_failed");
        assert_eq!(event.body["repository"], "alice/m");
        assert_eq!(event.body["sync_status"], "hard_failed");
        assert_eq!(event.body["error_kind"], "not_found");
        let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
        mac.update(&event.raw);
        let want = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
        assert_eq!(event.signature, want, "{who}: signature over the body");
    }

    // the upstream appears and "Sync now" brings the mirror back: a recovery event
    Upstream::create(later);
    let (status, _) = api
        .call("POST", "/api/v1/repos/alice/m/sync", Some(&alice), None)
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    eventually("the recovery to be announced", WAIT, || async {
        (events(&inbox, "alice").len() == 2 && events(&inbox, "global").len() == 2).then_some(())
    })
    .await;
    assert_eq!(events(&inbox, "alice")[1].body["event"], "recovered");
    assert_eq!(events(&inbox, "global")[1].body["sync_status"], "success");

    // the owner sees what was sent, including the retried delivery; others see none of it
    // a receiver has the event before the scheduler records its answer
    let history = eventually("the deliveries to be recorded", WAIT, || async {
        let (_, history) = api
            .call(
                "GET",
                "/api/v1/repos/alice/m/mirror/history",
                Some(&alice),
                None,
            )
            .await;
        let recorded = history["notifications"]
            .as_array()
            .is_some_and(|sent| sent.iter().filter(|n| !n["delivered_at"].is_null()).count() == 4);
        recorded.then_some(history)
    })
    .await;
    let sent = history["notifications"]
        .as_array()
        .expect("notifications for the owner");
    assert_eq!(sent.len(), 4, "{history}");
    assert!(
        sent.iter().all(|n| !n["delivered_at"].is_null()),
        "{history}"
    );
    let retried = sent
        .iter()
        .find(|n| n["event"] == "hard_failed" && n["url"].as_str().unwrap().ends_with("/global"))
        .unwrap();
    assert_eq!(retried["attempts"], 2, "{history}");
    let (_, public) = api
        .call("GET", "/api/v1/repos/alice/m/mirror/history", None, None)
        .await;
    assert!(public.get("notifications").is_none(), "{public}");

    scheduler.stop().await;
    worker.stop().await;
}
