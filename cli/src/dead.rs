//! `stasisctl queue purge-dead`: empties the dead sets, where apalis-redis leaves the
//! deliveries it gave up on. Each job's record stays in Postgres (`jobs retry` sends a
//! failed or dead one back), so nothing of worth leaves with them.

use clap::Subcommand;
use stasis_shared::queue;

use crate::{out, Services};

#[derive(Subcommand)]
pub enum QueueCommand {
    /// Remove every delivery from the Redis dead sets (see them first with the API's
    /// GET /api/v1/admin/queue/dead); prints how many went.
    PurgeDead,
}

pub async fn run(svc: &Services, command: QueueCommand) -> anyhow::Result<()> {
    match command {
        QueueCommand::PurgeDead => {
            let redis = svc.redis().await?;
            let removed =
                queue::purge_dead(&redis, &svc.cfg.queue, &queue::Lanes::of(&svc.cfg)).await?;
            out!("{removed} dead deliveries removed");
        }
    }
    Ok(())
}
