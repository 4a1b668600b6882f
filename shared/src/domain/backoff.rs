//! The one backoff of the system: exponential from a base, capped, optionally with
//! jitter (backon's). Sync retries, notification deliveries and a failing mirror's next
//! scheduled sync (`lifecycle::policy`) use it.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};

/// The wait before attempt `attempt + 1` after `attempt` failed ones (`attempt` ≥ 1):
/// `base × 2^(attempt − 1)`, at most `max`. `jitter` adds up to one more such delay at
/// random, so failures that happened together are not retried together.
pub fn delay(base: Duration, max: Duration, attempt: u32, jitter: bool) -> Duration {
    let builder = ExponentialBuilder::default()
        .with_min_delay(base)
        .with_max_delay(max.max(base))
        .without_max_times();
    let builder = if jitter {
        builder.with_jitter()
    } else {
        builder
    };
    builder
        .build()
        .nth(attempt.saturating_sub(1) as usize)
        .unwrap_or(base)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_from_the_base_up_to_the_cap() {
        let s = Duration::from_secs;
        let got: Vec<_> = (1..=7).map(|n| delay(s(2), s(60), n, false)).collect();
        assert_eq!(got, [s(2), s(4), s(8), s(16), s(32), s(60), s(60)]);
        assert_eq!(
            delay(s(2), s(60), 0, false),
            s(2),
            "no failure yet: the base"
        );
        assert_eq!(delay(s(5), s(1), 3, false), s(5), "a cap below the base");
    }

    #[test]
    fn jitter_stays_within_one_more_delay() {
        let s = Duration::from_secs;
        for n in 1..=6 {
            let plain = delay(s(1), s(3600), n, false);
            let jittered = delay(s(1), s(3600), n, true);
            assert!(
                jittered >= plain && jittered <= plain * 2,
                "{n}: {jittered:?}"
            );
        }
    }
}
