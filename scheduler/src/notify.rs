//! Delivers the notification outbox: each event POSTed as JSON to its receiver, signed
//! with `notify.secret` (`X-Stasis-Signature: sha256=<hex HMAC-SHA256 of the body>`),
//! retried with exponential backoff up to `notify.max_attempts`. Owners' receivers are
//! checked against the same address policy as upstreams at every attempt (operators'
//! `notify.urls` are trusted), and redirects are not followed.

use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use sqlx::PgPool;
use stasis_shared::config::ExposeSecret;
use stasis_shared::db::notifications::{self, Due};
use stasis_shared::domain::backoff;
use stasis_shared::git::url::resolve::PolicyResolver;
use stasis_shared::git::url::{check_upstream, redact_text};
use stasis_shared::Config;

use crate::error::SchedulerError;

/// Deliveries are retried after 2 s, 4 s, 8 s, … at most an hour apart.
const RETRY_BASE: Duration = Duration::from_secs(2);
const RETRY_MAX: Duration = Duration::from_secs(3600);

/// Deliveries per pass; the next pass, a second later, takes the rest.
const BATCH: i64 = 20;

/// The HTTP clients deliveries go out with: operators' receivers may be internal;
/// owners' connect only to addresses the upstream policy allows, checked where the
/// client resolves the name (a DNS answer that changes after the check cannot move it).
pub struct Clients {
    operator: reqwest::Client,
    owner: reqwest::Client,
}

pub fn client(cfg: &Config) -> Clients {
    let builder = || {
        reqwest::Client::builder()
            .timeout(cfg.notify.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .user_agent(concat!("stasis-mirror-sync/", env!("CARGO_PKG_VERSION")))
    };
    let policy = PolicyResolver {
        allow_local_network: cfg.mirror.allow_local_network,
        dns_server: cfg.mirror.dns_server,
    };
    Clients {
        operator: builder().build().unwrap_or_default(),
        owner: builder()
            .dns_resolver(Arc::new(policy))
            .build()
            .unwrap_or_default(),
    }
}

/// One pass over the due deliveries; returns how many were delivered.
pub async fn deliver_due(
    cfg: &Config,
    pool: &PgPool,
    http: &Clients,
) -> Result<u64, SchedulerError> {
    // leased past the HTTP timeout, so a pass that dies leaves them due again soon
    let lease = cfg.notify.timeout + Duration::from_secs(30);
    let due = notifications::take_due(pool, BATCH, lease).await?;
    let sent = futures::future::join_all(due.iter().map(|d| send(cfg, http, d))).await;
    let mut delivered = 0;
    for (d, result) in due.iter().zip(sent) {
        let outcome = match result {
            Ok(()) => {
                notifications::delivered(pool, d.id).await?;
                delivered += 1;
                "delivered"
            }
            Err(error) => {
                let retry = (d.attempts < cfg.notify.max_attempts as i32)
                    .then(|| backoff::delay(RETRY_BASE, RETRY_MAX, d.attempts as u32, false));
                notifications::failed(pool, d.id, &error, retry).await?;
                if retry.is_some() {
                    "retry"
                } else {
                    "given_up"
                }
            }
        };
        metrics::counter!("stasis_notifications_total", "event" => event_label(&d.event), "result" => outcome)
            .increment(1);
    }
    Ok(delivered)
}

fn event_label(event: &str) -> &'static str {
    match event {
        "failed" => "failed",
        "hard_failed" => "hard_failed",
        _ => "recovered",
    }
}

async fn send(cfg: &Config, clients: &Clients, d: &Due) -> Result<(), String> {
    // operators' receivers (notify.urls) may live on internal networks; owners' may not
    let http = if cfg.notify.urls.contains(&d.url) {
        &clients.operator
    } else {
        check_upstream(
            &d.url,
            cfg.mirror.allow_local_network,
            cfg.mirror.dns_server,
        )
        .await
        .map_err(|e| e.to_string())?;
        &clients.owner
    };
    let mut req = http
        .post(&d.url)
        .header("content-type", "application/json")
        .header("x-stasis-event", &d.event)
        .body(d.body.clone());
    if let Some(secret) = cfg
        .notify
        .secret
        .as_ref()
        .map(ExposeSecret::expose_secret)
        .filter(|s| !s.is_empty())
    {
        req = req.header(
            "x-stasis-signature",
            format!("sha256={}", sign(secret, d.body.as_bytes())),
        );
    }
    match req.send().await {
        Ok(resp) if resp.status().is_success() => Ok(()),
        Ok(resp) => Err(format!("receiver answered {}", resp.status())),
        Err(e) => Err(redact_text(&e.to_string(), &d.url)),
    }
}

pub fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}
