//! Saved views: a user's named ticket lists (the query string of `GET /tickets`).

use sqlx::PgConnection;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::Result;

#[derive(Debug, Clone)]
pub struct SavedView {
    pub id: Uuid,
    pub name: String,
    pub query: String,
    pub created_at: OffsetDateTime,
}

/// `user`'s views, by name.
pub async fn of_user(conn: &mut PgConnection, user: Uuid) -> Result<Vec<SavedView>> {
    Ok(sqlx::query_as!(
        SavedView,
        "SELECT id, name, query, created_at FROM saved_views WHERE user_id = $1 ORDER BY lower(name), id",
        user
    )
    .fetch_all(conn)
    .await?)
}

pub async fn create(
    conn: &mut PgConnection,
    tenant_id: Uuid,
    user: Uuid,
    name: &str,
    query: &str,
) -> Result<SavedView> {
    Ok(sqlx::query_as!(
        SavedView,
        "INSERT INTO saved_views (id, tenant_id, user_id, name, query) VALUES ($1, $2, $3, $4, $5)
         RETURNING id, name, query, created_at",
        Uuid::now_v7(),
        tenant_id,
        user,
        name,
        query
    )
    .fetch_one(conn)
    .await?)
}

/// Deletes `user`'s view `id`; whether there was one.
pub async fn delete(conn: &mut PgConnection, user: Uuid, id: Uuid) -> Result<bool> {
    let done = sqlx::query!("DELETE FROM saved_views WHERE id = $1 AND user_id = $2", id, user).execute(conn).await?;
    Ok(done.rows_affected() == 1)
}
