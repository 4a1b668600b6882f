//! Name resolution for upstream hosts: the system's resolver, or the DNS server
//! `mirror.dns_server` names. Every answer is checked by the caller before it connects.

use std::net::SocketAddr;

use hickory_resolver::config::{NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::xfer::Protocol;
use hickory_resolver::Resolver;

pub async fn lookup(
    server: Option<SocketAddr>,
    host: String,
    port: u16,
) -> Result<Vec<SocketAddr>, String> {
    let unresolved = || format!("host `{host}` could not be resolved");
    let Some(server) = server else {
        return tokio::net::lookup_host((host.as_str(), port))
            .await
            .map(|addrs| addrs.collect())
            .map_err(|_| unresolved());
    };
    let mut config = ResolverConfig::new();
    config.add_name_server(NameServerConfig::new(server, Protocol::Udp));
    let mut opts = ResolverOpts::default();
    // each fetch asks anew: a cached answer would hide what the connection would reach
    opts.cache_size = 0;
    opts.attempts = 2;
    let resolver = Resolver::builder_with_config(config, TokioConnectionProvider::default())
        .with_options(opts)
        .build();
    resolver
        .lookup_ip(format!("{host}."))
        .await
        .map(|ips| ips.iter().map(|ip| SocketAddr::new(ip, port)).collect())
        .map_err(|_| unresolved())
}

/// A resolver for reqwest clients that reach owner-chosen URLs outside a fetch (failure
/// notifications): every address of a name is checked before the client may connect.
#[derive(Debug, Clone)]
pub struct PolicyResolver {
    pub allow_local_network: bool,
    pub dns_server: Option<SocketAddr>,
}

impl reqwest::dns::Resolve for PolicyResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.clone();
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let addrs = lookup(policy.dns_server, host.clone(), 0).await?;
            if addrs.is_empty() {
                return Err(format!("host `{host}` could not be resolved").into());
            }
            if !policy.allow_local_network && addrs.iter().any(|a| super::is_internal(a.ip())) {
                return Err(format!(
                    "host `{host}` resolves to a loopback, private or link-local address"
                )
                .into());
            }
            let addrs: reqwest::dns::Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}
