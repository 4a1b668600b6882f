//! Which storage a new mirror goes to. By weight, at random, among the storages that
//! take new mirrors now: not read-only, a weight above zero, a live worker (one that
//! reported within the liveness window) and free space above `storage.min_free_bytes`
//! as that worker saw it. A random draw rather than "the emptiest": imports arrive
//! concurrently, and every one of them would pick the same emptiest storage.
//!
//! With a single storage there is nothing to choose: every mirror goes there, worker or
//! not (its mirrors wait for one, as they always have).

use rand::Rng;
use serde::Serialize;
use sqlx::PgPool;

use crate::config::{Config, Storage};
use crate::db::storages::{self, StorageState};

/// A storage's fitness for new mirrors, as `GET /admin/storages` shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Fitness {
    #[serde(flatten)]
    pub state: StorageState,
    pub weight: u32,
    pub read_only: bool,
    /// New mirrors may be placed here.
    pub accepting: bool,
    /// Why not, in words, when it is not accepting.
    pub reason: Option<String>,
}

/// Why no storage could be chosen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unplaced {
    #[error("storage `{0}` is not configured")]
    Unknown(String),
    #[error("storage `{0}` is read-only (being drained)")]
    ReadOnly(String),
    #[error("no storage takes new mirrors now: {0}")]
    NoneAccepting(String),
}

/// Every configured storage with its state and whether it takes new mirrors.
pub async fn fitness(cfg: &Config, pool: &PgPool) -> sqlx::Result<Vec<Fitness>> {
    let names = cfg.storage.names();
    let states = storages::states(pool, &names, cfg.queue.liveness_window()).await?;
    Ok(states
        .into_iter()
        .filter_map(|state| {
            let storage = cfg.storage.get(&state.name)?;
            let reason = refusal(cfg, &storage, state.live_workers, state.free_bytes);
            Some(Fitness {
                weight: storage.weight,
                read_only: storage.read_only,
                accepting: reason.is_none(),
                reason,
                state,
            })
        })
        .collect())
}

/// Why a configured storage takes no new mirrors now, given its live workers and their
/// newest free-space report; `None` when it takes them.
fn refusal(
    cfg: &Config,
    storage: &Storage<'_>,
    live_workers: i64,
    free_bytes: Option<i64>,
) -> Option<String> {
    if storage.read_only {
        Some("read-only (being drained)".to_owned())
    } else if storage.weight == 0 {
        Some("weight 0".to_owned())
    } else if live_workers == 0 {
        Some("no live worker".to_owned())
    } else if free_bytes.unwrap_or(0) < cfg.storage.min_free_bytes as i64 {
        Some(format!(
            "{} bytes free, below storage.min_free_bytes ({})",
            free_bytes.unwrap_or(0),
            cfg.storage.min_free_bytes
        ))
    } else {
        None
    }
}

/// The storage a new mirror goes to: `requested` (an admin's choice) if given, else one
/// drawn by weight among those accepting.
pub async fn place(
    cfg: &Config,
    pool: &PgPool,
    requested: Option<&str>,
) -> crate::Result<Result<String, Unplaced>> {
    if let Some(name) = requested {
        return Ok(match cfg.storage.get(name) {
            None => Err(Unplaced::Unknown(name.to_owned())),
            Some(s) if s.read_only => Err(Unplaced::ReadOnly(name.to_owned())),
            Some(s) => Ok(s.name.to_owned()),
        });
    }
    if let [only] = cfg.storage.all().as_slice() {
        return Ok(Ok(only.name.to_owned()));
    }
    let live = storages::liveness(pool, &cfg.storage.names(), cfg.queue.liveness_window()).await?;
    let mut accepting: Vec<(&str, u32)> = Vec::new();
    let mut refused = Vec::new();
    for (name, live_workers, free_bytes) in &live {
        let Some(storage) = cfg.storage.get(name) else {
            continue;
        };
        match refusal(cfg, &storage, *live_workers, *free_bytes) {
            None => accepting.push((name.as_str(), storage.weight)),
            Some(why) => refused.push(format!("{name}: {why}")),
        }
    }
    if accepting.is_empty() {
        return Ok(Err(Unplaced::NoneAccepting(refused.join("; "))));
    }
    Ok(Ok(draw(&accepting, &mut rand::rng()).to_owned()))
}

/// One name drawn with probability proportional to its weight (every weight > 0).
fn draw<'a>(weighted: &[(&'a str, u32)], rng: &mut impl Rng) -> &'a str {
    let total: u64 = weighted.iter().map(|(_, w)| u64::from(*w)).sum();
    let mut ticket = rng.random_range(0..total);
    for (name, weight) in weighted {
        if ticket < u64::from(*weight) {
            return name;
        }
        ticket -= u64::from(*weight);
    }
    weighted[weighted.len() - 1].0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_follow_the_weights() {
        let mut rng = rand::rng();
        let weighted = [("a", 1), ("b", 3)];
        let n = 40_000;
        let b = (0..n).filter(|_| draw(&weighted, &mut rng) == "b").count();
        // 30,000 expected; 5 standard deviations (87 each) either side
        assert!((29_565..=30_435).contains(&b), "{b}");
        assert_eq!(draw(&[("only", 5)], &mut rng), "only");
    }
}
