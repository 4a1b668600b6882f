//! A pooled client: it can reach one host name only, at the addresses a check approved
//! for it, and it counts whether each request opened a connection or reused one.

use std::cell::Cell;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::redirect::Policy;

use super::super::vetted::client_builder;
use super::key::Origin;
use super::Reuse;

tokio::task_local! {
    /// Set when the request being sent on this task had a connection opened for it.
    static OPENED: Cell<bool>;
}

/// A client whose every connection goes to `addrs` (approved for `origin`'s host) and
/// nowhere else: any other name fails to resolve. It follows no redirect itself: a
/// redirect is the fetch's to vet under its own session, and this client outlives the
/// fetch.
pub(super) fn pinned(
    origin: &Origin,
    addrs: &[SocketAddr],
    reuse: &Reuse,
) -> reqwest::Result<reqwest::Client> {
    client_builder()
        .redirect(Policy::none())
        .dns_resolver(Arc::new(Pinned {
            host: origin.host.clone(),
            addrs: addrs.to_vec(),
        }))
        .pool_idle_timeout(reuse.idle_timeout)
        .pool_max_idle_per_host(reuse.max_idle_per_host)
        .connector_layer(CountOpened)
        .build()
}

/// Sends `request` (to an origin of `scheme`) and counts the connection it went over.
pub(super) async fn send(
    scheme: &'static str,
    request: reqwest::RequestBuilder,
) -> reqwest::Result<reqwest::Response> {
    OPENED
        .scope(Cell::new(false), async move {
            let response = request.send().await?;
            let outcome = if OPENED.with(Cell::get) {
                "opened"
            } else {
                "reused"
            };
            metrics::counter!("stasis_upstream_connections_total", "scheme" => scheme, "outcome" => outcome)
                .increment(1);
            Ok(response)
        })
        .await
}

struct Pinned {
    host: String,
    addrs: Vec<SocketAddr>,
}

impl Resolve for Pinned {
    fn resolve(&self, name: Name) -> Resolving {
        let answer: Result<Addrs, _> = if name.as_str() == self.host {
            Ok(Box::new(self.addrs.clone().into_iter()))
        } else {
            Err(format!("this connection pool serves `{}` only", self.host).into())
        };
        Box::pin(std::future::ready(answer))
    }
}

/// Marks the request whose connection it opens. A connection hyper finishes in the
/// background (a kept one came free first) marks nothing: that request reused one.
#[derive(Clone, Copy)]
struct CountOpened;

impl<S> tower_layer::Layer<S> for CountOpened {
    type Service = Counting<S>;

    fn layer(&self, inner: S) -> Counting<S> {
        Counting(inner)
    }
}

#[derive(Clone)]
struct Counting<S>(S);

impl<S, R> tower_service::Service<R> for Counting<S>
where
    S: tower_service::Service<R>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, target: R) -> Self::Future {
        let connecting = self.0.call(target);
        Box::pin(async move {
            let connection = connecting.await?;
            let _ = OPENED.try_with(|opened| opened.set(true));
            Ok(connection)
        })
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use super::*;

    #[tokio::test]
    async fn a_pinned_client_resolves_its_own_name_to_its_addresses_and_nothing_else() {
        let addrs: Vec<SocketAddr> = vec!["192.0.2.1:443".parse().unwrap()];
        let pinned = Pinned {
            host: "forge.example".into(),
            addrs: addrs.clone(),
        };
        let own = pinned
            .resolve(Name::from_str("forge.example").unwrap())
            .await;
        assert_eq!(own.unwrap().collect::<Vec<_>>(), addrs);
        for other in ["other.example", "forge.example.evil", "localhost"] {
            let refused = pinned.resolve(Name::from_str(other).unwrap()).await;
            assert!(refused.is_err(), "{other}");
        }
    }
}
