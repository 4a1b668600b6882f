//! The printed table: each figure beside the baseline measured in the same run.

pub struct Row {
    pub bench: String,
    pub figure: String,
    pub value: f64,
    pub unit: &'static str,
    /// The baseline's name and value in the same unit, when there is one.
    pub baseline: Option<(String, f64)>,
    /// What the ratio should reach, stated as in the issue.
    pub target: Option<String>,
}

impl Row {
    pub fn new(bench: &str, figure: &str, value: f64, unit: &'static str) -> Self {
        Self {
            bench: bench.into(),
            figure: figure.into(),
            value,
            unit,
            baseline: None,
            target: None,
        }
    }

    pub fn against(mut self, name: &str, value: f64) -> Self {
        self.baseline = Some((name.into(), value));
        self
    }

    pub fn target(mut self, target: &str) -> Self {
        self.target = Some(target.into());
        self
    }
}

pub fn print(rows: &[Row]) {
    println!(
        "\n| benchmark | figure | value | baseline | ratio | target |\n|---|---|---|---|---|---|"
    );
    for r in rows {
        let (baseline, ratio) = match &r.baseline {
            Some((name, v)) => (
                format!("{name}: {} {}", fmt(*v), r.unit),
                format!("{:.2}×", r.value / v),
            ),
            None => ("".into(), "".into()),
        };
        println!(
            "| {} | {} | {} {} | {} | {} | {} |",
            r.bench,
            r.figure,
            fmt(r.value),
            r.unit,
            baseline,
            ratio,
            r.target.as_deref().unwrap_or("")
        );
    }
}

fn fmt(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

/// The `q` quantile (0–1) of unsorted samples.
pub fn quantile(samples: &mut [f64], q: f64) -> f64 {
    if samples.is_empty() {
        return f64::NAN;
    }
    samples.sort_by(|a, b| a.total_cmp(b));
    let i = ((samples.len() - 1) as f64 * q).round() as usize;
    samples[i]
}
