//! Name resolution for upstream hosts: the system's resolver, or the DNS server
//! `mirror.dns_server` names. Every answer is checked by the caller before it connects.

use std::net::SocketAddr;

use hickory_resolver::config::{NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::xfer::Protocol;
use hickory_resolver::Resolver;

pub(super) async fn lookup(
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
