use std::time::Duration;

use super::*;
use crate::domain::ErrorKind::{Auth, BlockedUrl, Network, NotFound, Timeout, TooLarge};

const HOUR: Duration = Duration::from_secs(3600);
const LIMITS: Limits = Limits {
    max_interval: Duration::from_secs(24 * 3600),
    hard_fail_after: 5,
    retry_base: Duration::from_secs(10),
    retry_max: Duration::from_secs(300),
};
/// The last of the job's attempts: a failure fails the job.
const LAST: Attempted = Attempted {
    number: 3,
    allowed: 3,
};

/// A mirror that has synced before.
fn standing(failures: i32, factor: f64) -> Standing {
    Standing {
        consecutive_failures: failures,
        interval_factor: factor,
        base_interval: HOUR,
        ever_synced: true,
    }
}

/// A mirror that never synced: a new import.
fn new_import() -> Standing {
    Standing {
        ever_synced: false,
        ..standing(0, 1.0)
    }
}

fn failure(kind: crate::domain::ErrorKind) -> Outcome {
    Outcome::Failure { kind }
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
    type Row = (
        &'static str,
        Standing,
        Outcome,
        S,
        i32,
        f64,
        NextSync,
        Option<Event>,
    );
    #[rustfmt::skip]
    let rows: &[Row] = &[
        ("changed success halves the factor", standing(0, 4.0), Outcome::Success { unchanged: false }, S::Success, 0, 2.0, hours(2.0), None),
        ("changed success never below 1", standing(0, 1.0), Outcome::Success { unchanged: false }, S::Success, 0, 1.0, hours(1.0), None),
        ("unchanged success grows by half", standing(0, 2.0), Outcome::Success { unchanged: true }, S::Success, 0, 3.0, hours(3.0), None),
        ("unchanged success capped at the max interval", standing(0, 20.0), Outcome::Success { unchanged: true }, S::Success, 0, 24.0, hours(24.0), None),
        ("success after failures recovers", standing(3, 1.0), Outcome::Success { unchanged: false }, S::Success, 0, 1.0, hours(1.0), Some(Recovered)),
        ("first failure notifies, next in one base interval", standing(0, 2.0), failure(Network), S::Failed, 1, 2.0, hours(1.0), Some(Failed)),
        ("second failure: silent, twice the base", standing(1, 2.0), failure(Timeout), S::Failed, 2, 2.0, hours(2.0), None),
        ("fourth failure: eight times the base", standing(3, 1.0), failure(Network), S::Failed, 4, 1.0, hours(8.0), None),
        ("the threshold crossed: hard failed, unscheduled", standing(4, 1.0), failure(Network), S::HardFailed, 5, 1.0, NextSync::Never, Some(HardFailed)),
        ("a retried hard-failed mirror failing again says so again", standing(7, 1.0), failure(Network), S::HardFailed, 8, 1.0, NextSync::Never, Some(HardFailed)),
        ("auth at import stops the schedule at once", new_import(), failure(Auth), S::HardFailed, 1, 1.0, NextSync::Never, Some(HardFailed)),
        ("not found at import stops the schedule at once", new_import(), failure(NotFound), S::HardFailed, 1, 1.0, NextSync::Never, Some(HardFailed)),
        ("not found after syncing before: a failure like any", standing(0, 1.0), failure(NotFound), S::Failed, 1, 1.0, hours(1.0), Some(Failed)),
        ("auth after syncing before: backoff grows", standing(2, 1.0), failure(Auth), S::Failed, 3, 1.0, hours(4.0), None),
        ("not found after syncing before: stopped at the threshold", standing(4, 1.0), failure(NotFound), S::HardFailed, 5, 1.0, NextSync::Never, Some(HardFailed)),
        ("a refused URL stops a mirror that synced before", standing(0, 1.0), failure(BlockedUrl), S::HardFailed, 1, 1.0, NextSync::Never, Some(HardFailed)),
        ("a repository over the size limit likewise", standing(0, 1.0), failure(TooLarge), S::HardFailed, 1, 1.0, NextSync::Never, Some(HardFailed)),
        ("an interruption keeps the mirror queued and its counters", standing(1, 3.0), Outcome::Interrupted, S::Queued, 1, 3.0, NextSync::Unchanged, None),
    ];
    for (name, before, outcome, status, failures, factor, next, event) in rows {
        let v = decide(*before, *outcome, LAST, LIMITS, 1.0);
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

/// Each row: how the attempt ended, which attempt of how many, then how the end is
/// decided and what the job becomes (its state, when due, whether the attempt counts).
#[test]
fn retry_or_fail_is_decided_by_the_attempt_and_the_kind_of_failure() {
    let first = Attempted {
        number: 1,
        allowed: 3,
    };
    let second = Attempted {
        number: 2,
        allowed: 3,
    };
    let secs = Duration::from_secs;
    #[rustfmt::skip]
    let rows = [
        ("a success ends the job", Outcome::Success { unchanged: true }, first, End::Success { unchanged: true }, JobState::Done, Duration::ZERO, true),
        ("a transient failure with attempts left is retried after the base delay", failure(Network), first, End::Retry { delay: secs(10) }, JobState::Pending, secs(10), true),
        ("the second retry waits twice as long", failure(Timeout), second, End::Retry { delay: secs(20) }, JobState::Pending, secs(20), true),
        ("the last attempt's failure fails the job", failure(Network), LAST, End::Failed { kind: Network }, JobState::Failed, Duration::ZERO, true),
        ("a permanent failure is not retried", failure(NotFound), first, End::Failed { kind: NotFound }, JobState::Failed, Duration::ZERO, true),
        ("a refused URL is not retried", failure(BlockedUrl), first, End::Failed { kind: BlockedUrl }, JobState::Failed, Duration::ZERO, true),
        ("an interruption is pending again at once and hands its attempt back", Outcome::Interrupted, LAST, End::Interrupted, JobState::Pending, Duration::ZERO, false),
    ];
    for (name, outcome, attempted, end, state, due_in, counts) in rows {
        let v = decide(standing(0, 1.0), outcome, attempted, LIMITS, 1.0);
        assert_eq!(
            (v.end, v.job, v.job_due_in, v.attempt_counts),
            (end, state, due_in, counts),
            "{name}"
        );
    }
}

#[test]
fn a_retry_keeps_the_mirror_queued_its_counters_and_its_schedule() {
    let v = decide(
        standing(2, 3.0),
        failure(Network),
        Attempted {
            number: 1,
            allowed: 3,
        },
        LIMITS,
        1.0,
    );
    assert!(matches!(v.end, End::Retry { .. }), "{v:?}");
    assert_eq!(
        (
            v.status,
            v.consecutive_failures,
            v.interval_factor,
            v.next_sync,
            v.event
        ),
        (SyncStatus::Queued, 2, 3.0, NextSync::Unchanged, None)
    );
}

#[test]
fn retry_delays_are_capped_at_the_maximum() {
    let v = decide(
        standing(0, 1.0),
        failure(Network),
        Attempted {
            number: 10,
            allowed: 20,
        },
        LIMITS,
        1.0,
    );
    assert_eq!(
        v.end,
        End::Retry {
            delay: LIMITS.retry_max
        }
    );
}

#[test]
fn failure_backoff_is_capped_and_never_below_the_base() {
    let v = decide(
        standing(20, 1.0),
        failure(Network),
        LAST,
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
        ..LIMITS
    };
    let v = decide(standing(3, 1.0), failure(Network), LAST, short_cap, 1.0);
    assert_eq!(v.next_sync, hours(1.0), "a cap below the base: the base");
    let v = decide(
        standing(0, 1.0),
        Outcome::Success { unchanged: true },
        LAST,
        short_cap,
        1.0,
    );
    assert_eq!(v.next_sync, hours(1.0));
}

#[test]
fn jitter_scales_the_next_sync_by_at_most_a_tenth() {
    let v = decide(
        standing(0, 2.0),
        Outcome::Success { unchanged: false },
        LAST,
        LIMITS,
        1.1,
    );
    assert_eq!(v.next_sync, hours(1.1));
    for _ in 0..1000 {
        let j = jitter();
        assert!((0.9..=1.1).contains(&j), "{j}");
    }
}
