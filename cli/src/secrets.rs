//! `stasisctl secrets`: which keys the stored seals need, and re-sealing them all with
//! `secrets.key` so that a previous key can be retired. Rotation runs while the
//! services run: each row is re-sealed only if it still holds what was read, so a
//! credential changed meanwhile (sealed by the API with the current key) is left as it
//! is.

use anyhow::{anyhow, bail};
use clap::Subcommand;
use stasis_shared::secrets::{sealed_with, Cipher};
use uuid::Uuid;

use crate::{out, Services};

/// Every sealed column of the schema, with its table; all keyed by a uuid `id`.
const SEALED: &[(&str, &str)] = &[
    ("repositories", "mirror_credentials"),
    ("repositories", "webhook_secret"),
    ("repositories", "ssh_private_key"),
];

#[derive(Subcommand)]
pub enum SecretsCommand {
    /// Seals per key, and whether a previous key is still needed.
    Status,
    /// Re-seal everything sealed with a previous key (or before seals named their key)
    /// with `secrets.key`, in batches, while the services run.
    Rotate {
        /// Rows re-sealed per statement.
        #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(i64).range(1..=10_000))]
        batch: i64,
    },
}

pub async fn run(svc: &Services, command: SecretsCommand) -> anyhow::Result<()> {
    let cipher = svc
        .cfg
        .secrets
        .cipher()?
        .ok_or_else(|| anyhow!("no secrets.key is configured: nothing is sealed"))?;
    match command {
        SecretsCommand::Status => status(svc, &cipher).await,
        SecretsCommand::Rotate { batch } => rotate(svc, &cipher, batch).await,
    }
}

/// How many seals name each key (`None`: sealed before seals named their key).
async fn census(svc: &Services) -> anyhow::Result<Vec<(Option<String>, i64)>> {
    let mut counts: std::collections::BTreeMap<Option<String>, i64> = Default::default();
    for (table, column) in SEALED {
        let rows: Vec<(Option<String>, i64)> = sqlx::query_as(&format!(
            "SELECT CASE WHEN position(':' IN {column}) > 0
                         THEN split_part({column}, ':', 1) END, count(*)
             FROM {table} WHERE {column} IS NOT NULL GROUP BY 1"
        ))
        .fetch_all(&svc.pool)
        .await?;
        for (key, n) in rows {
            *counts.entry(key).or_default() += n;
        }
    }
    Ok(counts.into_iter().collect())
}

async fn status(svc: &Services, cipher: &Cipher) -> anyhow::Result<()> {
    let counts = census(svc).await?;
    let count_of = |id: &str| {
        counts
            .iter()
            .find(|(k, _)| k.as_deref() == Some(id))
            .map_or(0, |(_, n)| *n)
    };
    out!("{:<12} {:<10} {:>8}", "KEY", "ROLE", "SEALS");
    out!(
        "{:<12} {:<10} {:>8}",
        cipher.current_id(),
        "current",
        count_of(cipher.current_id())
    );
    for id in cipher.previous_ids() {
        out!("{:<12} {:<10} {:>8}", id, "previous", count_of(id));
    }
    let known: Vec<&str> = std::iter::once(cipher.current_id())
        .chain(cipher.previous_ids())
        .collect();
    for (key, n) in &counts {
        match key {
            None => out!("{:<12} {:<10} {:>8}", "(unnamed)", "older seals", n),
            Some(id) if !known.contains(&id.as_str()) => {
                out!("{:<12} {:<10} {:>8}", id, "MISSING", n)
            }
            Some(_) => {}
        }
    }
    let pending: i64 = counts
        .iter()
        .filter(|(k, _)| k.as_deref() != Some(cipher.current_id()))
        .map(|(_, n)| n)
        .sum();
    if pending > 0 {
        out!("{pending} seals are not made with secrets.key: run `stasisctl secrets rotate`");
    }
    for id in cipher.previous_ids() {
        if count_of(id) == 0 && !counts.iter().any(|(k, _)| k.is_none()) {
            out!("{id} seals nothing: it can be removed from secrets.previous_keys");
        }
    }
    if counts
        .iter()
        .any(|(k, _)| k.as_deref().is_some_and(|id| !known.contains(&id)))
    {
        bail!("some seals name a key that is not configured; they cannot be opened");
    }
    Ok(())
}

async fn rotate(svc: &Services, cipher: &Cipher, batch: i64) -> anyhow::Result<()> {
    let current = format!("{}:%", cipher.current_id());
    let (mut resealed, mut changed, mut failed) = (0u64, 0u64, 0u64);
    for (table, column) in SEALED {
        let mut after = Uuid::nil();
        loop {
            let rows: Vec<(Uuid, String)> = sqlx::query_as(&format!(
                "SELECT id, {column} FROM {table}
                 WHERE id > $1 AND {column} IS NOT NULL AND {column} NOT LIKE $2
                 ORDER BY id LIMIT $3"
            ))
            .bind(after)
            .bind(&current)
            .bind(batch)
            .fetch_all(&svc.pool)
            .await?;
            let Some((last, _)) = rows.last() else { break };
            after = *last;
            let (mut ids, mut old, mut new) = (Vec::new(), Vec::new(), Vec::new());
            for (id, sealed) in rows {
                match cipher.open(&sealed) {
                    Ok(plain) => {
                        new.push(cipher.seal(&plain));
                        ids.push(id);
                        old.push(sealed);
                    }
                    Err(e) => {
                        failed += 1;
                        let key = sealed_with(&sealed).unwrap_or("(unnamed)");
                        eprintln!("{table} {id}: {column} not re-sealed (key {key}): {e}");
                    }
                }
            }
            // only rows still holding what was read: a change made meanwhile stands
            let done = sqlx::query(&format!(
                "UPDATE {table} t SET {column} = n.new
                 FROM unnest($1::uuid[], $2::text[], $3::text[]) AS n(id, old, new)
                 WHERE t.id = n.id AND t.{column} = n.old"
            ))
            .bind(&ids)
            .bind(&old)
            .bind(&new)
            .execute(&svc.pool)
            .await?
            .rows_affected();
            resealed += done;
            changed += ids.len() as u64 - done;
        }
    }
    out!(
        "{resealed} seals re-sealed with key {}; {changed} changed meanwhile (already current)",
        cipher.current_id()
    );
    if failed > 0 {
        bail!("{failed} seals could not be opened with any configured key; they were left as they are");
    }
    Ok(())
}
