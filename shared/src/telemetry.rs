//! Logs and metrics set up once per process.

use metrics_exporter_prometheus::PrometheusBuilder;
use tracing_subscriber::EnvFilter;

use crate::config::Config;
use crate::error::{Error, Result};

/// Installs the tracing subscriber (`RUST_LOG` wins over `log.level`) and, when
/// `metrics.listen` is set, the Prometheus exporter serving `/metrics` there.
pub fn init(process: &'static str, cfg: &Config) -> Result<()> {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&cfg.log.level))
        .map_err(|e| Error::Telemetry(format!("log.level: {e}")))?;
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let installed = if cfg.log.format == "json" {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
    installed.map_err(|e| Error::Telemetry(e.to_string()))?;

    if let Some(addr) = cfg.metrics.listen {
        PrometheusBuilder::new()
            .with_http_listener(addr)
            .set_buckets_for_metric(
                metrics_exporter_prometheus::Matcher::Suffix("_seconds".into()),
                &[
                    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                    300.0,
                ],
            )
            .map_err(|e| Error::Telemetry(e.to_string()))?
            .add_global_label("process", process)
            .install()
            .map_err(|e| Error::Telemetry(format!("metrics.listen {addr}: {e}")))?;
        metrics::gauge!("stasis_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
        match process {
            "worker" => crate::instruments::describe_worker(),
            "scheduler" => crate::instruments::describe_scheduler(),
            "api" => crate::instruments::describe_api(),
            _ => {}
        }
    }
    Ok(())
}
