//! Noticing that Redis lost data. Two signs: the marker key the scheduler leader keeps
//! is gone (a restart without persistence, a flush, a failover to an empty replica), or
//! the server's `run_id` changed since the last look (a restart, which with `appendonly`
//! can still drop the last second of writes).

use redis::aio::ConnectionManager;

/// Why the last look says Redis lost data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lost {
    /// The marker key is missing.
    MarkerGone,
    /// The server restarted.
    Restarted,
}

impl Lost {
    pub fn as_str(self) -> &'static str {
        match self {
            Lost::MarkerGone => "marker_gone",
            Lost::Restarted => "restarted",
        }
    }
}

/// One observer's view of the Redis server across looks.
#[derive(Debug, Default)]
pub struct EpochWatch {
    run_id: Option<String>,
}

fn marker_key(namespace: &str) -> String {
    format!("{namespace}:epoch")
}

/// Whether the marker is in Redis: `false` means Redis lost its data since an epoch was
/// last marked (or none ever was).
pub async fn marked(conn: &ConnectionManager, namespace: &str) -> redis::RedisResult<bool> {
    // asked on a "Sync now": the first command after a Redis restart must not fail it
    super::once_more(|| {
        let mut conn = conn.clone();
        let key = marker_key(namespace);
        async move { redis::cmd("EXISTS").arg(key).query_async(&mut conn).await }
    })
    .await
}

/// Puts the marker in place: Redis holds every delivery of the current epoch from now
/// on. `only_if_missing` is for the first delivery into a Redis nobody marked yet (a
/// new deployment); that the marker was gone because data was lost, a new `run_id`
/// still tells the leader.
pub async fn mark(
    conn: &ConnectionManager,
    namespace: &str,
    only_if_missing: bool,
) -> redis::RedisResult<()> {
    let mut set = redis::cmd("SET");
    set.arg(marker_key(namespace)).arg(1);
    if only_if_missing {
        set.arg("NX");
    }
    let _: Option<String> = set.query_async(&mut conn.clone()).await?;
    Ok(())
}

impl EpochWatch {
    /// Whether Redis lost data since the previous look. The first look of a watch
    /// cannot tell a restart (it has no `run_id` to compare), only a missing marker.
    pub async fn look(
        &mut self,
        conn: &ConnectionManager,
        namespace: &str,
    ) -> redis::RedisResult<Option<Lost>> {
        let (marker, info): (Option<String>, String) = redis::pipe()
            .get(marker_key(namespace))
            .cmd("INFO")
            .arg("server")
            .query_async(&mut conn.clone())
            .await?;
        let run_id = info
            .lines()
            .find_map(|line| line.strip_prefix("run_id:"))
            .map(|id| id.trim().to_owned());
        let restarted = matches!((&self.run_id, &run_id), (Some(seen), Some(now)) if seen != now);
        self.run_id = run_id;
        Ok(if marker.is_none() {
            Some(Lost::MarkerGone)
        } else if restarted {
            Some(Lost::Restarted)
        } else {
            None
        })
    }
}
