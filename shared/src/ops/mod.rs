//! Running a process, not the domain: start-up ([`process`]), logs and the metrics
//! exporter ([`telemetry`]), every metric's description ([`instruments`]) and one warning
//! per backend outage ([`outage`]).

pub mod instruments;
pub mod outage;
pub mod process;
pub mod telemetry;
