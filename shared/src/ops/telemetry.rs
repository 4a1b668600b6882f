//! Logs and metrics set up once per process.

use std::time::Duration;

use metrics_exporter_prometheus::PrometheusBuilder;
use metrics_util::MetricKindMask;
use tracing_subscriber::EnvFilter;

use crate::config::Config;
use crate::error::{Error, Result};

/// What the queue library logs on its own, held back unless the filter names it: while
/// Redis is away its consumers end on every failed poll or heartbeat with a WARN from
/// the backend and an ERROR from the worker (the same error reaches our restart hook,
/// which logs the outage once), and each restart adds a WARN and INFOs. Its warnings
/// about dropped tasks and its errors stopping workers still show.
const QUIET_LIBRARIES: &[&str] = &[
    "apalis_core::backend=error",
    "apalis_core::worker=off",
    "apalis_core::worker::context=warn",
    "apalis_core::worker::lifecycle=warn",
    "apalis_core::monitor=error",
];

/// The filter: `RUST_LOG` when set and valid, else `log.level`, plus [`QUIET_LIBRARIES`]
/// unless it says what it wants of apalis itself.
pub fn filter(level: &str) -> Result<EnvFilter> {
    let from_env = std::env::var("RUST_LOG")
        .ok()
        .filter(|spec| !spec.trim().is_empty() && EnvFilter::try_new(spec).is_ok());
    filter_of(from_env.as_deref().unwrap_or(level))
}

fn filter_of(spec: &str) -> Result<EnvFilter> {
    let mut filter =
        EnvFilter::try_new(spec).map_err(|e| Error::Telemetry(format!("log.level: {e}")))?;
    if !spec.contains("apalis") {
        for directive in QUIET_LIBRARIES {
            filter = filter.add_directive(directive.parse().expect("a valid directive"));
        }
    }
    Ok(filter)
}

/// Bucket bounds of every `_seconds` histogram: past `sync.timeout`'s default of 10m
/// and `housekeeping.timeout`, up to the longest `lfs.timeout` default (30m), so a slow
/// sync lands in a bucket of its own instead of `+Inf`.
pub const BUCKETS: [f64; 17] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 600.0,
    1200.0, 1800.0,
];

/// How long a scheduler's gauge outlives its last update: three of the leader's samples.
pub const LEADER_GAUGES_TTL: Duration = Duration::from_secs(30);

/// The commit the binary was built from (`STASIS_REVISION` at build time, else `git
/// rev-parse`, else `unknown`).
pub const REVISION: &str = env!("STASIS_REVISION");

/// `stasis_build_info{version, revision} 1`.
pub fn build_info() {
    metrics::gauge!("stasis_build_info", "version" => env!("CARGO_PKG_VERSION"), "revision" => REVISION)
        .set(1.0);
}

/// Installs the tracing subscriber (`RUST_LOG` wins over `log.level`) and, when
/// `metrics.listen` is set, the Prometheus exporter serving `/metrics` there.
pub fn init(process: &'static str, cfg: &Config) -> Result<()> {
    let filter = filter(&cfg.log.level)?;
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let installed = if cfg.log.format == "json" {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
    installed.map_err(|e| Error::Telemetry(e.to_string()))?;

    if let Some(addr) = cfg.metrics.listen {
        let mut builder = PrometheusBuilder::new()
            .with_http_listener(addr)
            .set_buckets_for_metric(
                metrics_exporter_prometheus::Matcher::Suffix("_seconds".into()),
                &BUCKETS,
            )
            .map_err(|e| Error::Telemetry(e.to_string()))?;
        if process == "scheduler" {
            // the leader-only gauges vanish from a scheduler that stopped leading; the
            // gauges every scheduler exports are set on each pass of its loop
            builder = builder.idle_timeout(MetricKindMask::GAUGE, Some(LEADER_GAUGES_TTL));
        }
        builder
            .add_global_label("process", process)
            .install()
            .map_err(|e| Error::Telemetry(format!("metrics.listen {addr}: {e}")))?;
        build_info();
        match process {
            "worker" => crate::ops::instruments::describe_worker(),
            "scheduler" => crate::ops::instruments::describe_scheduler(),
            "api" => crate::ops::instruments::describe_api(),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_library_directives_parse_and_an_explicit_filter_keeps_its_word() {
        for directive in super::QUIET_LIBRARIES {
            directive
                .parse::<tracing_subscriber::filter::Directive>()
                .unwrap_or_else(|e| panic!("{directive}: {e}"));
        }
        let quiet = super::filter_of("info").unwrap().to_string();
        assert!(quiet.contains("apalis_core::worker=off"), "{quiet}");
        let explicit = super::filter_of("info,apalis_core=debug")
            .unwrap()
            .to_string();
        assert!(!explicit.contains("apalis_core::worker=off"), "{explicit}");
    }
}
