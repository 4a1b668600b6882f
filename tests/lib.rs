//! Helpers for tests that run the stack's binaries side by side.

use std::collections::BTreeSet;

/// One sample of the Prometheus text format.
#[derive(Debug, Clone)]
pub struct Sample {
    pub name: String,
    /// The label set as exposed, e.g. `{outcome="success",process="worker"}`.
    pub labels: String,
    pub value: f64,
}

/// Parses the Prometheus text exposition format (comments skipped).
pub fn parse_exposition(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (name, labels) = match series.find('{') {
                Some(i) => (&series[..i], &series[i..]),
                None => (series, ""),
            };
            Some(Sample {
                name: name.to_owned(),
                labels: labels.to_owned(),
                value: value.parse().ok()?,
            })
        })
        .collect()
}

/// Every `stasis_*` metric name a PromQL-bearing text (dashboard JSON, alert rules) uses.
pub fn queried_metrics(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("stasis_") {
        let before = rest[..at].chars().next_back();
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        // `stasis_` inside a longer identifier (a uid, a title) is not a metric
        if !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            names.insert(tail[..end].to_owned());
        }
        rest = &tail[end..];
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_samples_and_finds_queried_names() {
        let samples = parse_exposition(
            "# HELP x y\nstasis_a_total{process=\"worker\",outcome=\"ok\"} 3\nstasis_b 0.5\n",
        );
        assert_eq!(samples.len(), 2);
        assert_eq!(samples[0].name, "stasis_a_total");
        assert_eq!(samples[0].value, 3.0);
        assert_eq!(samples[1].labels, "");
        let names =
            queried_metrics("sum(rate(stasis_a_total[5m])) / max(stasis_b{x=\"y\"}) my_stasis_uid");
        assert_eq!(
            names.into_iter().collect::<Vec<_>>(),
            ["stasis_a_total", "stasis_b"]
        );
    }
}
