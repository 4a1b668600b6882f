use std::time::Duration;

use super::*;
use crate::domain::ErrorKind::{Auth, Network, NotFound, Timeout};

const HOUR: Duration = Duration::from_secs(3600);
const LIMITS: Limits = Limits {
    max_interval: Duration::from_secs(24 * 3600),
    hard_fail_after: 5,
};

fn standing(failures: i32, factor: f64) -> Standing {
    Standing {
        consecutive_failures: failures,
        interval_factor: factor,
        base_interval: HOUR,
    }
}

fn hours(h: f64) -> NextSync {
    NextSync::After(HOUR.mul_f64(h))
}

/// Each row: the mirror before, how the attempt ended, then the status, failures,
/// factor, next sync and event the end must leave.
#[test]
fn the_end_of_an_attempt_decides_as_the_table_says() {
    use Event::*;
    use SyncStatus as S;
    let retry = End::Retry {
        delay: Duration::from_secs(30),
    };
    type Row = (
        &'static str,
        Standing,
        End,
        S,
        i32,
        f64,
        NextSync,
        Option<Event>,
    );
    #[rustfmt::skip]
    let rows: &[Row] = &[
        ("changed success halves the factor", standing(0, 4.0), End::Success { unchanged: false }, S::Success, 0, 2.0, hours(2.0), None),
        ("changed success never below 1", standing(0, 1.0), End::Success { unchanged: false }, S::Success, 0, 1.0, hours(1.0), None),
        ("unchanged success grows by half", standing(0, 2.0), End::Success { unchanged: true }, S::Success, 0, 3.0, hours(3.0), None),
        ("unchanged success capped at the max interval", standing(0, 20.0), End::Success { unchanged: true }, S::Success, 0, 24.0, hours(24.0), None),
        ("success after failures recovers", standing(3, 1.0), End::Success { unchanged: false }, S::Success, 0, 1.0, hours(1.0), Some(Recovered)),
        ("first failure notifies, next in one base interval", standing(0, 2.0), End::Failed { kind: Network }, S::Failed, 1, 2.0, hours(1.0), Some(Failed)),
        ("second failure: silent, twice the base", standing(1, 2.0), End::Failed { kind: Timeout }, S::Failed, 2, 2.0, hours(2.0), None),
        ("fourth failure: eight times the base", standing(3, 1.0), End::Failed { kind: Network }, S::Failed, 4, 1.0, hours(8.0), None),
        ("the threshold crossed: hard failed, unscheduled", standing(4, 1.0), End::Failed { kind: Network }, S::HardFailed, 5, 1.0, NextSync::Never, Some(HardFailed)),
        ("a retried hard-failed mirror failing again says so again", standing(7, 1.0), End::Failed { kind: Network }, S::HardFailed, 8, 1.0, NextSync::Never, Some(HardFailed)),
        ("auth stops the schedule at once", standing(0, 1.0), End::Failed { kind: Auth }, S::HardFailed, 1, 1.0, NextSync::Never, Some(HardFailed)),
        ("not found stops the schedule at once", standing(2, 1.0), End::Failed { kind: NotFound }, S::HardFailed, 3, 1.0, NextSync::Never, Some(HardFailed)),
        ("a retry keeps the mirror queued and its counters", standing(2, 3.0), retry, S::Queued, 2, 3.0, NextSync::Unchanged, None),
        ("an interruption likewise", standing(1, 3.0), End::Interrupted, S::Queued, 1, 3.0, NextSync::Unchanged, None),
    ];
    for (name, before, end, status, failures, factor, next, event) in rows {
        let v = decide(*before, *end, LIMITS, 1.0);
        assert_eq!(
            (
                v.status,
                v.consecutive_failures,
                v.interval_factor,
                v.next_sync,
                v.event
            ),
            (*status, *failures, *factor, *next, *event),
            "{name}"
        );
    }
}

#[test]
fn the_job_ends_done_failed_or_pending_again() {
    let before = standing(0, 1.0);
    let delay = Duration::from_secs(40);
    #[rustfmt::skip]
    let rows = [
        (End::Success { unchanged: true }, JobState::Done, Duration::ZERO, true),
        (End::Failed { kind: Network }, JobState::Failed, Duration::ZERO, true),
        (End::Retry { delay }, JobState::Pending, delay, true),
        (End::Interrupted, JobState::Pending, Duration::ZERO, false),
    ];
    for (end, state, due_in, counts) in rows {
        let v = decide(before, end, LIMITS, 1.0);
        assert_eq!(
            (v.job, v.job_due_in, v.attempt_counts),
            (state, due_in, counts),
            "{end:?}"
        );
    }
}

#[test]
fn failure_backoff_is_capped_and_never_below_the_base() {
    let v = decide(
        standing(20, 1.0),
        End::Failed { kind: Network },
        Limits {
            hard_fail_after: 100,
            ..LIMITS
        },
        1.0,
    );
    assert_eq!(v.next_sync, hours(24.0), "capped at max_sync_interval");
    let short_cap = Limits {
        max_interval: Duration::from_secs(60),
        hard_fail_after: 100,
    };
    let v = decide(
        standing(3, 1.0),
        End::Failed { kind: Network },
        short_cap,
        1.0,
    );
    assert_eq!(v.next_sync, hours(1.0), "a cap below the base: the base");
    let v = decide(
        standing(0, 1.0),
        End::Success { unchanged: true },
        short_cap,
        1.0,
    );
    assert_eq!(v.next_sync, hours(1.0));
}

#[test]
fn jitter_scales_the_next_sync_by_at_most_a_tenth() {
    let v = decide(
        standing(0, 2.0),
        End::Success { unchanged: false },
        LIMITS,
        1.1,
    );
    assert_eq!(v.next_sync, hours(1.1));
    for _ in 0..1000 {
        let j = jitter();
        assert!((0.9..=1.1).contains(&j), "{j}");
    }
}
