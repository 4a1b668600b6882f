//! `stasisctl user` and `stasisctl token`: accounts and their API tokens.

use anyhow::bail;
use clap::Subcommand;
use sqlx::PgPool;
use stasis_shared::db::users;

use crate::out;
use crate::output::{self, table, time};

#[derive(Subcommand)]
pub enum UserCommand {
    /// Create a user; its API token is printed alone on the last line.
    Create {
        /// Login name: letters, digits, '-', '_' and '.'.
        name: String,
        /// Let the user run operator endpoints (/admin/...).
        #[arg(long)]
        admin: bool,
    },
    /// Every user, with whether a token is live and how many repositories they own.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Delete a user who owns no repositories (delete those first with `mirror delete`).
    Delete {
        /// Login name of the user.
        name: String,
    },
}

#[derive(Subcommand)]
pub enum TokenCommand {
    /// Give a user without a live token a new one, printed alone on the last line.
    Create {
        /// Login name of the user.
        name: String,
    },
    /// Replace a user's token: the old one stops working at once; the new one is
    /// printed alone on the last line.
    Rotate {
        /// Login name of the user.
        name: String,
    },
    /// Revoke a user's token.
    Revoke {
        /// Login name of the user.
        name: String,
    },
}

pub async fn user(pool: &PgPool, command: UserCommand) -> anyhow::Result<()> {
    match command {
        UserCommand::Create { name, admin } => create_user(pool, &name, admin).await,
        UserCommand::List { json } => {
            let all = users::list(pool).await?;
            if json {
                return output::json(&serde_json::json!({ "users": all }));
            }
            let rows = all.iter().map(|u| {
                vec![
                    u.username.clone(),
                    if u.is_admin { "yes" } else { "no" }.into(),
                    if u.has_token { "live" } else { "none" }.into(),
                    u.repositories.to_string(),
                    time(Some(u.created_at)),
                ]
            });
            let header = ["USER", "ADMIN", "TOKEN", "REPOSITORIES", "CREATED"];
            out!("{}", table(&header, rows));
            out!("{} users", all.len());
            Ok(())
        }
        UserCommand::Delete { name } => {
            let Some(found) = users::list(pool)
                .await?
                .into_iter()
                .find(|u| u.username == name)
            else {
                bail!("no user `{name}`");
            };
            // Deleting the row would cascade to the repositories' rows but leave their
            // bare directories and queued deliveries behind.
            if found.repositories > 0 {
                bail!(
                    "user `{name}` owns {} repositories; delete them first (stasisctl mirror delete OWNER/NAME)",
                    found.repositories
                );
            }
            if !users::delete(pool, &name).await? {
                bail!("no user `{name}`");
            }
            out!("user {name} deleted");
            Ok(())
        }
    }
}

pub async fn token(pool: &PgPool, command: TokenCommand) -> anyhow::Result<()> {
    match command {
        TokenCommand::Create { name } => {
            let live = users::list(pool)
                .await?
                .into_iter()
                .find(|u| u.username == name)
                .map(|u| u.has_token);
            match live {
                None => bail!("no user `{name}`"),
                Some(true) => bail!(
                    "user `{name}` already has a live token; `token rotate {name}` replaces it"
                ),
                Some(false) => new_token(pool, &name, "created").await,
            }
        }
        TokenCommand::Rotate { name } => new_token(pool, &name, "rotated").await,
        TokenCommand::Revoke { name } => {
            if !users::revoke_token(pool, &name).await? {
                bail!("no user `{name}`");
            }
            out!("token of {name} revoked");
            Ok(())
        }
    }
}

async fn new_token(pool: &PgPool, name: &str, done: &str) -> anyhow::Result<()> {
    let Some(token) = users::replace_token(pool, name).await? else {
        bail!("no user `{name}`");
    };
    out!("token of {name} {done}");
    out!("{token}");
    Ok(())
}

async fn create_user(pool: &PgPool, name: &str, admin: bool) -> anyhow::Result<()> {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        bail!("user name may contain only letters, digits, '-', '_' and '.'");
    }
    let (user, token) = match users::create(pool, name, admin).await {
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
            bail!("user `{name}` already exists")
        }
        other => other?,
    };
    out!(
        "created user {} ({}){}",
        user.username,
        user.id,
        if admin { ", admin" } else { "" }
    );
    out!("{token}");
    Ok(())
}
