use rand::RngCore;
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use uuid::Uuid;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct User {
    pub id: Uuid,
    pub username: String,
    pub is_admin: bool,
}

/// Tokens are 32 random bytes, hex-encoded, with a prefix that makes leaked ones easy
/// to grep for; only their SHA-256 is stored.
pub fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("stasis_{}", hex::encode(bytes))
}

pub(crate) fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Creates a user and returns it with its one clear-text token.
pub async fn create(pool: &PgPool, username: &str, is_admin: bool) -> sqlx::Result<(User, String)> {
    let token = new_token();
    let user = sqlx::query_as::<_, User>(
        "INSERT INTO users (id, username, is_admin, token_hash) VALUES ($1, $2, $3, $4)
         RETURNING id, username, is_admin",
    )
    .bind(Uuid::new_v4())
    .bind(username)
    .bind(is_admin)
    .bind(hash_token(&token))
    .fetch_one(pool)
    .await?;
    Ok((user, token))
}

pub async fn find_by_token(pool: &PgPool, token: &str) -> sqlx::Result<Option<User>> {
    sqlx::query_as::<_, User>("SELECT id, username, is_admin FROM users WHERE token_hash = $1")
        .bind(hash_token(token))
        .fetch_optional(pool)
        .await
}

/// Revokes every token of the user; returns whether the user exists.
pub async fn revoke_token(pool: &PgPool, username: &str) -> sqlx::Result<bool> {
    let done = sqlx::query("UPDATE users SET token_hash = NULL WHERE username = $1")
        .bind(username)
        .execute(pool)
        .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn exists(pool: &PgPool, username: &str) -> sqlx::Result<bool> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM users WHERE username = $1)")
        .bind(username)
        .fetch_one(pool)
        .await
}

/// The user's own receiver of failure notifications (`None` removes it).
pub async fn set_notify_url(pool: &PgPool, id: Uuid, url: Option<&str>) -> sqlx::Result<()> {
    sqlx::query("UPDATE users SET notify_url = $2 WHERE id = $1")
        .bind(id)
        .bind(url)
        .execute(pool)
        .await?;
    Ok(())
}

pub async fn notify_url(pool: &PgPool, id: Uuid) -> sqlx::Result<Option<String>> {
    sqlx::query_scalar("SELECT notify_url FROM users WHERE id = $1")
        .bind(id)
        .fetch_one(pool)
        .await
}

/// A user as operators list them: whether a token is live, never the token.
#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow)]
pub struct Listed {
    pub id: Uuid,
    pub username: String,
    pub is_admin: bool,
    pub has_token: bool,
    pub repositories: i64,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

pub async fn list(pool: &PgPool) -> sqlx::Result<Vec<Listed>> {
    sqlx::query_as::<_, Listed>(
        "SELECT u.id, u.username, u.is_admin, u.token_hash IS NOT NULL AS has_token,
                (SELECT count(*) FROM repositories r WHERE r.owner_id = u.id) AS repositories,
                u.created_at
         FROM users u ORDER BY u.username",
    )
    .fetch_all(pool)
    .await
}

/// Replaces the user's token (the old one stops working at once) and returns the new
/// clear-text one; `None` when there is no such user.
pub async fn replace_token(pool: &PgPool, username: &str) -> sqlx::Result<Option<String>> {
    let token = new_token();
    let done = sqlx::query("UPDATE users SET token_hash = $2 WHERE username = $1")
        .bind(username)
        .bind(hash_token(&token))
        .execute(pool)
        .await?;
    Ok((done.rows_affected() == 1).then_some(token))
}

/// Deletes the user; their repositories' rows go with them (ON DELETE CASCADE), so
/// callers remove those first.
pub async fn delete(pool: &PgPool, username: &str) -> sqlx::Result<bool> {
    let done = sqlx::query("DELETE FROM users WHERE username = $1")
        .bind(username)
        .execute(pool)
        .await?;
    Ok(done.rows_affected() == 1)
}
