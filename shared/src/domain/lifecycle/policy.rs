//! What the end of an attempt decides for its mirror and its job, as a pure function
//! of the mirror's standing before it and of the attempt: retry or fail, the status,
//! the next sync, hard failure and the notification. This is the one place a sync's end
//! is decided; [`super::attempt::finish`] writes the verdict.
//!
//! * A failure that may heal (not [`ErrorKind::is_permanent`]) with attempts left is
//!   retried: the job is pending again after `sync.retry_base_delay` doubling per
//!   attempt, up to `sync.retry_max_delay`. The retried attempt counts against
//!   `sync.max_attempts`; an interrupted one (the worker shut down) does not.
//! * The next sync after a success: the mirror's base interval (its own, the run-time
//!   override or the default) times a factor that unchanged syncs grow by half, up to
//!   `mirror.max_sync_interval`, and changed ones halve back to 1.
//! * After a failure: the base interval doubling per consecutive failure, up to the same
//!   cap ([`crate::domain::backoff::delay`]). Past `mirror.hard_fail_after` failures the mirror
//!   is `hard_failed` and unscheduled; at once for a URL the address policy refuses or a
//!   repository over `mirror.max_size`, and for auth and not-found answers to a mirror
//!   that never synced (an import of a wrong URL). A mirror that has synced before is
//!   not stopped by one not-found or auth answer (a repository made private for a
//!   while, a token being rotated, a host's outage page): those count like any failure.
//! * ±10 % jitter on either keeps mirrors imported together from firing in the same
//!   second forever.
//! * An event exists exactly when the status changes in a way owners want to hear of:
//!   the first failure after a success, every end that leaves the mirror `hard_failed`
//!   (a threshold crossed, or a manual retry that failed again), a success after
//!   failures.

use std::time::Duration;

use crate::domain::{ErrorKind, JobState, SyncStatus};

/// What the worker saw of its attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success {
        unchanged: bool,
    },
    Failure {
        kind: ErrorKind,
    },
    /// Stopped by its worker's shutdown: neither a success nor a failure of the mirror.
    Interrupted,
}

/// Which attempt of its job this was, for retry-or-fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attempted {
    /// 1 for the first.
    pub number: i32,
    /// The job's allowance (`sync.max_attempts`, more after an operator's retry).
    pub allowed: i32,
}

/// How the attempt ended, as decided.
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
    /// It has synced successfully at least once.
    pub ever_synced: bool,
}

/// `mirror.max_sync_interval`, `mirror.hard_fail_after`, `sync.retry_base_delay` and
/// `sync.retry_max_delay`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_interval: Duration,
    pub hard_fail_after: u32,
    pub retry_base: Duration,
    pub retry_max: Duration,
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
    pub end: End,
    pub status: SyncStatus,
    pub consecutive_failures: i32,
    pub interval_factor: f64,
    pub next_sync: NextSync,
    pub event: Option<Event>,
    /// The job's new state, and how long until it is due when pending.
    pub job: JobState,
    pub job_due_in: Duration,
    /// Whether the attempt counts against the job's allowance: every attempt does but
    /// an interrupted one, which the worker's shutdown cut short.
    pub attempt_counts: bool,
}

/// `jitter` is the factor applied to the next interval and to a retry's delay, in
/// `[0.9, 1.1]` (see [`jitter`]); tests pass 1.
pub fn decide(
    before: Standing,
    outcome: Outcome,
    attempted: Attempted,
    limits: Limits,
    jitter: f64,
) -> Verdict {
    let n = before.consecutive_failures.max(0);
    let base = before.base_interval;
    let max = limits.max_interval;
    let scaled = |d: Duration| d.mul_f64(jitter);
    let end = match outcome {
        Outcome::Success { unchanged } => End::Success { unchanged },
        Outcome::Interrupted => End::Interrupted,
        Outcome::Failure { kind }
            if !kind.is_permanent() && attempted.number < attempted.allowed =>
        {
            let delay = crate::domain::backoff::delay(
                limits.retry_base,
                limits.retry_max.max(limits.retry_base),
                attempted.number.max(0) as u32,
                false,
            );
            End::Retry {
                delay: scaled(delay),
            }
        }
        Outcome::Failure { kind } => End::Failed { kind },
    };
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
                end,
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
            let hard = kind.stops_schedule_at_once(before.ever_synced)
                || (n + 1) as u32 >= limits.hard_fail_after;
            let event = if hard {
                Some(Event::HardFailed)
            } else {
                (n == 0).then_some(Event::Failed)
            };
            Verdict {
                end,
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
                    let delay =
                        crate::domain::backoff::delay(base, max.max(base), n as u32 + 1, false);
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
            ..in_flight(end, before)
        },
        End::Interrupted => Verdict {
            attempt_counts: false,
            ..in_flight(end, before)
        },
    }
}

/// A job pending again: the mirror stays queued, its schedule and counters untouched.
fn in_flight(end: End, before: Standing) -> Verdict {
    Verdict {
        end,
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
pub(crate) fn jitter() -> f64 {
    0.9 + rand::random::<f64>() * 0.2
}

#[cfg(test)]
mod tests;
