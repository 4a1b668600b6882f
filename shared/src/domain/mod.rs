//! The domain: what a mirror and its sync jobs are, whatever stores them. This file
//! holds the vocabulary shared by every process (statuses, job reasons and states, the
//! job payload, the closed set of failure kinds); beside it, the rules:
//! [`lifecycle`] (every transition of a job and of a mirror's status, and the policy that
//! decides how an attempt ends), [`names`] (what a repository may be called) and
//! [`backoff`] (the one backoff of the system).

pub mod backoff;
pub mod lifecycle;
pub mod names;

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

macro_rules! text_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($variant),+ }

        // Stored as `text` (with a CHECK constraint): a value outside the enum is a
        // decode error, never a silent default.
        impl sqlx::Type<sqlx::Postgres> for $name {
            fn type_info() -> sqlx::postgres::PgTypeInfo {
                <&str as sqlx::Type<sqlx::Postgres>>::type_info()
            }
            fn compatible(ty: &sqlx::postgres::PgTypeInfo) -> bool {
                <&str as sqlx::Type<sqlx::Postgres>>::compatible(ty)
            }
        }

        impl sqlx::Encode<'_, sqlx::Postgres> for $name {
            fn encode_by_ref(
                &self,
                buf: &mut sqlx::postgres::PgArgumentBuffer,
            ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
                <&str as sqlx::Encode<sqlx::Postgres>>::encode(self.as_str(), buf)
            }
        }

        impl sqlx::Decode<'_, sqlx::Postgres> for $name {
            fn decode(
                value: sqlx::postgres::PgValueRef<'_>,
            ) -> Result<Self, sqlx::error::BoxDynError> {
                let text = <&str as sqlx::Decode<sqlx::Postgres>>::decode(value)?;
                Ok(text.parse()?)
            }
        }

        impl sqlx::postgres::PgHasArrayType for $name {
            fn array_type_info() -> sqlx::postgres::PgTypeInfo {
                <&str as sqlx::postgres::PgHasArrayType>::array_type_info()
            }
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = UnknownValue;
            fn from_str(s: &str) -> Result<Self, UnknownValue> {
                match s {
                    $($text => Ok($name::$variant),)+
                    other => Err(UnknownValue { kind: stringify!($name), value: other.to_owned() }),
                }
            }
        }
    };
}

#[derive(Debug, thiserror::Error)]
#[error("unknown {kind} `{value}`")]
pub struct UnknownValue {
    pub kind: &'static str,
    pub value: String,
}

text_enum! {
    /// A mirror's sync state (`repositories.sync_status`, the API's `sync_state`): the
    /// four `sync_status` values, plus `queued` for a sync waiting for a worker and
    /// `hard_failed` for a mirror whose scheduled syncs stopped after a permanent error.
    SyncStatus {
        Idle => "idle",
        Queued => "queued",
        Syncing => "syncing",
        Success => "success",
        Failed => "failed",
        HardFailed => "hard_failed",
    }
}

text_enum! {
    /// The API's public `sync_status`: the four values of the Stasis contract
    /// (docs/contract.md), which clients rely on; the full state, [`SyncStatus`], is
    /// `sync_state`.
    PublicStatus {
        Idle => "idle",
        Syncing => "syncing",
        Success => "success",
        Failed => "failed",
    }
}

impl SyncStatus {
    /// The public status this state shows as: a queued mirror is syncing (its sync was
    /// asked for), a hard-failed one failed.
    pub fn public(self) -> PublicStatus {
        match self {
            SyncStatus::Idle => PublicStatus::Idle,
            SyncStatus::Queued | SyncStatus::Syncing => PublicStatus::Syncing,
            SyncStatus::Success => PublicStatus::Success,
            SyncStatus::Failed | SyncStatus::HardFailed => PublicStatus::Failed,
        }
    }
}

impl PublicStatus {
    /// Every status shown as this one.
    pub fn covers(self) -> Vec<SyncStatus> {
        SyncStatus::ALL
            .iter()
            .copied()
            .filter(|s| s.public() == self)
            .collect()
    }
}

text_enum! {
    /// Why a sync was requested; `move` is a sync that moves its mirror to another
    /// storage.
    SyncReason {
        Import => "import",
        Manual => "manual",
        Scheduled => "scheduled",
        Webhook => "webhook",
        Move => "move",
    }
}

/// Which queue a job waits in. Syncs someone is waiting for (an import, "Sync now", a
/// push webhook) go ahead of the scheduled backlog, however long that is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Lane {
    Priority,
    Scheduled,
}

impl Lane {
    pub const ALL: [Lane; 2] = [Lane::Priority, Lane::Scheduled];

    /// As operators read it.
    pub fn name(self) -> &'static str {
        match self {
            Lane::Priority => "priority",
            Lane::Scheduled => "scheduled",
        }
    }

    /// Appended to the queue name.
    pub fn suffix(self) -> &'static str {
        match self {
            Lane::Priority => "sync-priority",
            Lane::Scheduled => "sync",
        }
    }
}

impl SyncReason {
    pub fn lane(self) -> Lane {
        match self {
            // a bulk move is background work, like the schedule: it must not stand in
            // front of anyone's "Sync now"
            SyncReason::Scheduled | SyncReason::Move => Lane::Scheduled,
            SyncReason::Import | SyncReason::Manual | SyncReason::Webhook => Lane::Priority,
        }
    }
}

text_enum! {
    /// Lifecycle of a job as recorded in Postgres (the source of truth; Redis only
    /// carries the deliveries).
    JobState {
        Pending => "pending",
        Running => "running",
        Done => "done",
        Failed => "failed",
        Dead => "dead",
    }
}

text_enum! {
    /// Outcome of one attempt (`sync_runs.outcome`); `interrupted`: stopped by its
    /// worker's shutdown, its job pending again.
    RunOutcome {
        Success => "success",
        Retrying => "retrying",
        Failed => "failed",
        Abandoned => "abandoned",
        LostLock => "lost_lock",
        Interrupted => "interrupted",
    }
}

text_enum! {
    /// Closed set of failure kinds: safe as a metric label, and the retry policy's input.
    ErrorKind {
        Auth => "auth",
        NotFound => "not_found",
        Network => "network",
        Timeout => "timeout",
        BlockedUrl => "blocked_url",
        GitProtocol => "git_protocol",
        Disk => "disk",
        TooLarge => "too_large",
        HostKeyMismatch => "host_key_mismatch",
        Internal => "internal",
    }
}

impl ErrorKind {
    /// Failures that stop scheduled syncs at once, without waiting for
    /// `mirror.hard_fail_after`: a URL the address policy refuses and a repository over
    /// the size limit stay so; an upstream that refuses us or is gone stops a mirror
    /// that never synced (a wrong URL at import), while one that has synced before may
    /// be passing through a private spell, a token's rotation or an outage page. An ssh
    /// host key that is not one the owner confirmed waits for the owner: the upstream
    /// may be an impostor, and only they can tell a changed key from one.
    pub fn stops_schedule_at_once(self, ever_synced: bool) -> bool {
        match self {
            ErrorKind::BlockedUrl | ErrorKind::TooLarge | ErrorKind::HostKeyMismatch => true,
            ErrorKind::Auth | ErrorKind::NotFound => !ever_synced,
            _ => false,
        }
    }

    /// Permanent failures cannot heal by retrying the same request.
    pub fn is_permanent(self) -> bool {
        matches!(
            self,
            ErrorKind::Auth
                | ErrorKind::NotFound
                | ErrorKind::BlockedUrl
                | ErrorKind::TooLarge
                | ErrorKind::HostKeyMismatch
        )
    }
}

/// The queued job. It carries ids only: the URL, and any credentials in it, stay in
/// Postgres and are read by the worker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncMirror {
    pub job_id: Uuid,
    pub repo_id: Uuid,
    pub reason: SyncReason,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_round_trip() {
        for s in SyncStatus::ALL {
            assert_eq!(s.as_str().parse::<SyncStatus>().unwrap(), *s);
        }
        assert!("bogus".parse::<JobState>().is_err());
        let job = SyncMirror {
            job_id: Uuid::nil(),
            repo_id: Uuid::nil(),
            reason: SyncReason::Scheduled,
        };
        let json = serde_json::to_string(&job).unwrap();
        assert!(json.contains("\"scheduled\""));
        assert!(ErrorKind::NotFound.is_permanent() && !ErrorKind::Network.is_permanent());
    }
}
