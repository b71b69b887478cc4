//! Teams and their members.

use sqlx::PgConnection;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::{Result, StoreError};

#[derive(Debug, Clone)]
pub struct Team {
    pub id: Uuid,
    pub name: String,
    pub description: String,
    pub members: Vec<Uuid>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

pub async fn create(conn: &mut PgConnection, tenant_id: Uuid, id: Uuid, name: &str, description: &str) -> Result<Team> {
    sqlx::query!(
        "INSERT INTO teams (id, tenant_id, name, description) VALUES ($1, $2, $3, $4)",
        id,
        tenant_id,
        name,
        description
    )
    .execute(&mut *conn)
    .await?;
    get(conn, id).await
}

pub async fn get(conn: &mut PgConnection, id: Uuid) -> Result<Team> {
    sqlx::query_as!(
        Team,
        r#"SELECT t.id, t.name, t.description,
                  array(SELECT m.user_id FROM team_members m WHERE m.team_id = t.id ORDER BY m.user_id) AS "members!",
                  t.created_at, t.updated_at
             FROM teams t WHERE t.id = $1"#,
        id
    )
    .fetch_optional(conn)
    .await?
    .ok_or(StoreError::NotFound)
}

pub async fn list(conn: &mut PgConnection) -> Result<Vec<Team>> {
    Ok(sqlx::query_as!(
        Team,
        r#"SELECT t.id, t.name, t.description,
                  array(SELECT m.user_id FROM team_members m WHERE m.team_id = t.id ORDER BY m.user_id) AS "members!",
                  t.created_at, t.updated_at
             FROM teams t ORDER BY lower(t.name)"#
    )
    .fetch_all(conn)
    .await?)
}

pub async fn update(conn: &mut PgConnection, id: Uuid, name: Option<&str>, description: Option<&str>) -> Result<Team> {
    let done = sqlx::query!(
        "UPDATE teams SET name = COALESCE($2, name), description = COALESCE($3, description), updated_at = archer_now()
          WHERE id = $1",
        id,
        name,
        description
    )
    .execute(&mut *conn)
    .await?;
    if done.rows_affected() == 0 {
        return Err(StoreError::NotFound);
    }
    get(conn, id).await
}

/// Deletes a team; fails on the foreign key while tickets still name it.
pub async fn delete(conn: &mut PgConnection, id: Uuid) -> Result<()> {
    let done = sqlx::query!("DELETE FROM teams WHERE id = $1", id).execute(conn).await?;
    if done.rows_affected() == 0 {
        return Err(StoreError::NotFound);
    }
    Ok(())
}

pub async fn add_member(conn: &mut PgConnection, tenant_id: Uuid, team_id: Uuid, user_id: Uuid) -> Result<()> {
    sqlx::query!(
        "INSERT INTO team_members (tenant_id, team_id, user_id) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        tenant_id,
        team_id,
        user_id
    )
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn remove_member(conn: &mut PgConnection, team_id: Uuid, user_id: Uuid) -> Result<()> {
    let done = sqlx::query!("DELETE FROM team_members WHERE team_id = $1 AND user_id = $2", team_id, user_id)
        .execute(conn)
        .await?;
    if done.rows_affected() == 0 {
        return Err(StoreError::NotFound);
    }
    Ok(())
}

/// The teams a user belongs to.
pub async fn of_user(conn: &mut PgConnection, user_id: Uuid) -> Result<Vec<Uuid>> {
    Ok(sqlx::query_scalar!("SELECT team_id FROM team_members WHERE user_id = $1 ORDER BY team_id", user_id)
        .fetch_all(conn)
        .await?)
}
