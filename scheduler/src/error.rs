//! The scheduler fails only where its backends do (a Postgres or Redis call, or a shared
//! adapter over them), which the shared error already names with the backend it counts;
//! a scheduler pass logs it, records it ([`stasis_shared::Error::record`]) and runs
//! again at its next tick. The worker keeps an error of its own: it also fails on a
//! corrupt job record or a panicked attempt, and apalis redelivers on any of them.

pub type SchedulerError = stasis_shared::Error;
