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

impl EpochWatch {
    /// Whether Redis lost data since the previous look. The first look of a watch
    /// cannot tell a restart (it has no `run_id` to compare), only a missing marker.
    pub async fn look(
        &mut self,
        conn: &ConnectionManager,
        namespace: &str,
    ) -> redis::RedisResult<Option<Lost>> {
        let (marker, info): (Option<i64>, String) = redis::pipe()
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

    /// Records the epoch deliveries are pushed in from now on; its presence is what the
    /// next look checks.
    pub async fn mark(
        &self,
        conn: &ConnectionManager,
        namespace: &str,
        epoch: i64,
    ) -> redis::RedisResult<()> {
        redis::cmd("SET")
            .arg(marker_key(namespace))
            .arg(epoch)
            .query_async(&mut conn.clone())
            .await
    }
}
