//! Tenants. Provisioning runs as the owner; a tenant reads its own row under RLS.

use sqlx::PgConnection;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::Result;

#[derive(Debug, Clone)]
pub struct Tenant {
    pub id: Uuid,
    pub slug: String,
    pub name: String,
    pub created_at: OffsetDateTime,
}

pub async fn create(conn: &mut PgConnection, id: Uuid, slug: &str, name: &str) -> Result<Tenant> {
    let t = sqlx::query_as!(
        Tenant,
        "INSERT INTO tenants (id, slug, name) VALUES ($1, $2, $3) RETURNING id, slug, name, created_at",
        id,
        slug,
        name
    )
    .fetch_one(conn)
    .await?;
    Ok(t)
}

pub async fn by_slug(conn: &mut PgConnection, slug: &str) -> Result<Option<Tenant>> {
    Ok(sqlx::query_as!(Tenant, "SELECT id, slug, name, created_at FROM tenants WHERE slug = $1", slug)
        .fetch_optional(conn)
        .await?)
}

pub async fn by_id(conn: &mut PgConnection, id: Uuid) -> Result<Tenant> {
    Ok(sqlx::query_as!(Tenant, "SELECT id, slug, name, created_at FROM tenants WHERE id = $1", id)
        .fetch_one(conn)
        .await?)
}
