//! What the end of an attempt decides for its mirror and its job, as a pure function
//! of the mirror's standing before it: the status, the next sync, hard failure and the
//! notification. [`super::attempt::finish`] writes the verdict.
//!
//! * The next sync after a success: the mirror's base interval (its own, the run-time
//!   override or the default) times a factor that unchanged syncs grow by half, up to
//!   `mirror.max_sync_interval`, and changed ones halve back to 1.
//! * After a failure: the base interval doubling per consecutive failure, up to the same
//!   cap ([`crate::backoff::delay`]). Past `mirror.hard_fail_after` failures (or at once
//!   for auth and not-found) the mirror is `hard_failed` and unscheduled.
//! * ±10 % jitter on either keeps mirrors imported together from firing in the same
//!   second forever.
//! * An event exists exactly when the status changes in a way owners want to hear of:
//!   the first failure after a success, every end that leaves the mirror `hard_failed`
//!   (a threshold crossed, or a manual retry that failed again), a success after
//!   failures.

use std::time::Duration;

use crate::domain::{ErrorKind, JobState, SyncStatus};

/// How the worker's attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    Success {
        unchanged: bool,
    },
    /// Failed, with attempts left: the job is pending again after `delay`.
    Retry {
        delay: Duration,
    },
    Failed {
        kind: ErrorKind,
    },
    /// Stopped by its worker's shutdown: neither a success nor a failure of the mirror.
    Interrupted,
}

/// The mirror as its previous syncs left it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Standing {
    pub consecutive_failures: i32,
    pub interval_factor: f64,
    /// Its own interval, else the run-time override, else `mirror.sync_interval`.
    pub base_interval: Duration,
}

/// `mirror.max_sync_interval` and `mirror.hard_fail_after`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_interval: Duration,
    pub hard_fail_after: u32,
}

/// When the mirror is next due.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum NextSync {
    /// As it was: a retry or an interruption is no sync of the schedule.
    Unchanged,
    /// Not scheduled any more (`hard_failed`).
    Never,
    After(Duration),
}

/// What owners are told of (`notifications.event`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    Failed,
    HardFailed,
    Recovered,
}

impl Event {
    pub fn as_str(self) -> &'static str {
        match self {
            Event::Failed => "failed",
            Event::HardFailed => "hard_failed",
            Event::Recovered => "recovered",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Verdict {
    pub status: SyncStatus,
    pub consecutive_failures: i32,
    pub interval_factor: f64,
    pub next_sync: NextSync,
    pub event: Option<Event>,
    /// The job's new state, and how long until it is due when pending.
    pub job: JobState,
    pub job_due_in: Duration,
    /// A retry or an interruption hands its attempt back: it does not count against
    /// `sync.max_attempts`.
    pub attempt_counts: bool,
}

/// `jitter` is the factor applied to the next interval, in `[0.9, 1.1]` (see
/// [`jitter`]); tests pass 1.
pub fn decide(before: Standing, end: End, limits: Limits, jitter: f64) -> Verdict {
    let n = before.consecutive_failures.max(0);
    let base = before.base_interval;
    let max = limits.max_interval;
    let scaled = |d: Duration| d.mul_f64(jitter);
    match end {
        End::Success { unchanged } => {
            let ceiling = (max.as_secs_f64() / base.as_secs_f64().max(1e-9)).max(1.0);
            let factor = if unchanged {
                (before.interval_factor * 1.5).min(ceiling)
            } else {
                (before.interval_factor / 2.0).max(1.0)
            };
            let interval = base.mul_f64(factor).min(max).max(base);
            Verdict {
                status: SyncStatus::Success,
                consecutive_failures: 0,
                interval_factor: factor,
                next_sync: NextSync::After(scaled(interval)),
                event: (n > 0).then_some(Event::Recovered),
                job: JobState::Done,
                job_due_in: Duration::ZERO,
                attempt_counts: true,
            }
        }
        End::Failed { kind } => {
            let hard = kind.stops_schedule() || (n + 1) as u32 >= limits.hard_fail_after;
            let event = if hard {
                Some(Event::HardFailed)
            } else {
                (n == 0).then_some(Event::Failed)
            };
            Verdict {
                status: if hard {
                    SyncStatus::HardFailed
                } else {
                    SyncStatus::Failed
                },
                consecutive_failures: n + 1,
                interval_factor: before.interval_factor,
                next_sync: if hard {
                    NextSync::Never
                } else {
                    // n earlier failures: the (n + 1)-th doubling of the base, n = 0
                    // being the base itself
                    let delay = crate::backoff::delay(base, max.max(base), n as u32 + 1, false);
                    NextSync::After(scaled(delay))
                },
                event,
                job: JobState::Failed,
                job_due_in: Duration::ZERO,
                attempt_counts: true,
            }
        }
        End::Retry { delay } => Verdict {
            job_due_in: delay,
            ..in_flight(before)
        },
        End::Interrupted => Verdict {
            attempt_counts: false,
            ..in_flight(before)
        },
    }
}

/// A job pending again: the mirror stays queued, its schedule and counters untouched.
fn in_flight(before: Standing) -> Verdict {
    Verdict {
        status: SyncStatus::Queued,
        consecutive_failures: before.consecutive_failures,
        interval_factor: before.interval_factor,
        next_sync: NextSync::Unchanged,
        event: None,
        job: JobState::Pending,
        job_due_in: Duration::ZERO,
        attempt_counts: true,
    }
}

/// A factor in `[0.9, 1.1]`.
pub fn jitter() -> f64 {
    0.9 + rand::random::<f64>() * 0.2
}

#[cfg(test)]
mod tests;
