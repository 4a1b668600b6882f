//! Moving mirrors between storages, as the API and `stasisctl` both ask for it: one
//! mirror, or a bounded batch off a storage being drained. A move is begun here (the
//! mirror's jobs go to the target storage from now on) and done by a worker of the
//! target storage as a sync (see the worker's `sync::moving`).

use sqlx::PgPool;
use uuid::Uuid;

use crate::db::storages::{self, NotMoved};
use crate::domain::SyncReason;
use crate::jobs::Jobs;
use crate::placement::{self, Unplaced};
use crate::{Config, Result};

/// The most mirrors one drain request moves: each is a full clone on the target.
pub const MAX_DRAIN: i64 = 1000;

/// A move begun: its id, and the sync that does it (an already pending one of the
/// mirror's, if any).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Begun {
    pub move_id: i64,
    pub job_id: Uuid,
}

/// Why a move cannot be asked for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("storage `{0}` is not configured")]
    Unknown(String),
    #[error("storage `{0}` is read-only")]
    ReadOnly(String),
    #[error("a storage cannot be drained into itself")]
    Itself,
    #[error("no storage takes mirrors now: {0}")]
    NoTarget(String),
    /// Every storage that could take them is the one being drained.
    #[error("no storage but `{0}` takes mirrors: mark it read_only, or name the target")]
    OnlySource(String),
}

/// A storage mirrors may be moved to: configured, and not read-only.
pub fn check_target(cfg: &Config, name: &str) -> std::result::Result<(), Refused> {
    match cfg.storage.get(name) {
        None => Err(Refused::Unknown(name.to_owned())),
        Some(s) if s.read_only => Err(Refused::ReadOnly(name.to_owned())),
        Some(_) => Ok(()),
    }
}

/// Begins moving one mirror to `to` (checked with [`check_target`]) and requests the
/// sync that does it. `None`: no such repository.
pub async fn begin(
    pool: &PgPool,
    jobs: &Jobs,
    repo_id: Uuid,
    to: &str,
) -> Result<Option<std::result::Result<Begun, NotMoved>>> {
    let Some(started) = storages::begin_move(pool, repo_id, to).await? else {
        return Ok(None);
    };
    let move_id = match started {
        Ok(id) => id,
        Err(not) => return Ok(Some(Err(not))),
    };
    let Some(requested) = jobs.request(repo_id, SyncReason::Move).await? else {
        return Ok(None);
    };
    Ok(Some(Ok(Begun {
        move_id,
        job_id: requested.job_id,
    })))
}

/// What a drain request did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct Drained {
    /// Moves begun by this request.
    pub moving: usize,
    /// Mirrors still on the storage and not moving, after this request.
    pub remaining: i64,
}

/// Begins moving up to `limit` of `from`'s mirrors (of `owner`, if given), oldest
/// first, to `to` or, when `None`, each to a storage drawn as for a new mirror.
pub async fn drain(
    cfg: &Config,
    pool: &PgPool,
    jobs: &Jobs,
    from: &str,
    to: Option<&str>,
    owner: Option<&str>,
    limit: i64,
) -> Result<std::result::Result<Drained, Refused>> {
    if cfg.storage.get(from).is_none() {
        return Ok(Err(Refused::Unknown(from.to_owned())));
    }
    if let Some(to) = to {
        if to == from {
            return Ok(Err(Refused::Itself));
        }
        if let Err(refused) = check_target(cfg, to) {
            return Ok(Err(refused));
        }
    } else if cfg
        .storage
        .all()
        .iter()
        .all(|s| s.name == from || s.read_only)
    {
        return Ok(Err(Refused::OnlySource(from.to_owned())));
    }
    let mut moving = 0;
    for id in storages::movable(pool, from, owner, limit.clamp(1, MAX_DRAIN)).await? {
        let target = match to {
            Some(to) => to.to_owned(),
            None => match drawn_target(cfg, pool, from).await? {
                Ok(target) => target,
                Err(refused) if moving == 0 => return Ok(Err(refused)),
                Err(_) => break,
            },
        };
        if let Some(Ok(_)) = begin(pool, jobs, id, &target).await? {
            moving += 1;
        }
    }
    let remaining = storages::staying(pool, from, owner).await?;
    tracing::info!(storage = from, moving, remaining, "storage drain requested");
    Ok(Ok(Drained { moving, remaining }))
}

/// A storage drawn as for a new mirror, other than `from`.
async fn drawn_target(
    cfg: &Config,
    pool: &PgPool,
    from: &str,
) -> Result<std::result::Result<String, Refused>> {
    // a few draws: `from` itself may be drawn while it is not yet read-only
    for _ in 0..8 {
        match placement::place(cfg, pool, None).await? {
            Ok(to) if to != from => return Ok(Ok(to)),
            Ok(_) => continue,
            Err(Unplaced::NoneAccepting(why)) => return Ok(Err(Refused::NoTarget(why))),
            Err(e) => return Ok(Err(Refused::NoTarget(e.to_string()))),
        }
    }
    Ok(Err(Refused::OnlySource(from.to_owned())))
}
