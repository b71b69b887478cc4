//! The service catalog: categories and versioned items.

use sqlx::PgConnection;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::{Result, StoreError};

#[derive(Debug, Clone)]
pub struct Category {
    pub id: Uuid,
    pub name: String,
    pub description: String,
    pub icon: Option<String>,
    pub position: i32,
}

pub async fn create_category(
    conn: &mut PgConnection,
    tenant_id: Uuid,
    id: Uuid,
    name: &str,
    description: &str,
    icon: Option<&str>,
    position: i32,
) -> Result<Category> {
    Ok(sqlx::query_as!(
        Category,
        "INSERT INTO catalog_categories (id, tenant_id, name, description, icon, position) VALUES ($1, $2, $3, $4, $5, $6)
         RETURNING id, name, description, icon, position",
        id,
        tenant_id,
        name,
        description,
        icon,
        position
    )
    .fetch_one(conn)
    .await?)
}

pub async fn categories(conn: &mut PgConnection) -> Result<Vec<Category>> {
    Ok(sqlx::query_as!(
        Category,
        "SELECT id, name, description, icon, position FROM catalog_categories ORDER BY position, lower(name)"
    )
    .fetch_all(conn)
    .await?)
}

pub async fn category(conn: &mut PgConnection, id: Uuid) -> Result<Category> {
    sqlx::query_as!(Category, "SELECT id, name, description, icon, position FROM catalog_categories WHERE id = $1", id)
        .fetch_optional(conn)
        .await?
        .ok_or(StoreError::NotFound)
}

pub async fn update_category(
    conn: &mut PgConnection,
    id: Uuid,
    name: Option<&str>,
    description: Option<&str>,
    icon: Option<Option<&str>>,
    position: Option<i32>,
) -> Result<Category> {
    sqlx::query_as!(
        Category,
        "UPDATE catalog_categories SET name = COALESCE($2, name), description = COALESCE($3, description),
                icon = CASE WHEN $4 THEN $5 ELSE icon END, position = COALESCE($6, position), updated_at = now()
          WHERE id = $1
          RETURNING id, name, description, icon, position",
        id,
        name,
        description,
        icon.is_some(),
        icon.flatten(),
        position
    )
    .fetch_optional(conn)
    .await?
    .ok_or(StoreError::NotFound)
}

/// Deletes an empty category (items keep it otherwise: the foreign key refuses).
pub async fn delete_category(conn: &mut PgConnection, id: Uuid) -> Result<()> {
    let done = sqlx::query!("DELETE FROM catalog_categories WHERE id = $1", id).execute(conn).await?;
    if done.rows_affected() == 0 {
        return Err(StoreError::NotFound);
    }
    Ok(())
}

#[derive(Debug, Clone)]
pub struct Item {
    pub id: Uuid,
    pub category_id: Uuid,
    pub name: String,
    pub active: bool,
    pub version: i32,
    /// The version's definition: description, audience, form schema, approval chain…
    pub spec: serde_json::Value,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

pub async fn create_item(
    conn: &mut PgConnection,
    tenant_id: Uuid,
    id: Uuid,
    category_id: Uuid,
    name: &str,
    spec: &serde_json::Value,
    by: Option<Uuid>,
) -> Result<Item> {
    sqlx::query!(
        "INSERT INTO catalog_items (id, tenant_id, category_id, name) VALUES ($1, $2, $3, $4)",
        id,
        tenant_id,
        category_id,
        name
    )
    .execute(&mut *conn)
    .await?;
    sqlx::query!(
        "INSERT INTO catalog_item_versions (id, tenant_id, item_id, version, spec, created_by) VALUES ($1, $2, $3, 1, $4, $5)",
        Uuid::now_v7(),
        tenant_id,
        id,
        spec,
        by
    )
    .execute(&mut *conn)
    .await?;
    item(conn, id).await
}

pub async fn item(conn: &mut PgConnection, id: Uuid) -> Result<Item> {
    sqlx::query_as!(
        Item,
        r#"SELECT i.id, i.category_id, i.name, i.active, i.current_version AS version, v.spec, i.created_at, i.updated_at
             FROM catalog_items i JOIN catalog_item_versions v ON v.item_id = i.id AND v.version = i.current_version
            WHERE i.id = $1"#,
        id
    )
    .fetch_optional(conn)
    .await?
    .ok_or(StoreError::NotFound)
}

/// One version of an item (what a request was submitted against).
pub async fn item_version(conn: &mut PgConnection, id: Uuid, version: i32) -> Result<Item> {
    sqlx::query_as!(
        Item,
        r#"SELECT i.id, i.category_id, i.name, i.active, v.version, v.spec, i.created_at, i.updated_at
             FROM catalog_items i JOIN catalog_item_versions v ON v.item_id = i.id AND v.version = $2
            WHERE i.id = $1"#,
        id,
        version
    )
    .fetch_optional(conn)
    .await?
    .ok_or(StoreError::NotFound)
}

/// Active items, by category and name.
pub async fn items(conn: &mut PgConnection) -> Result<Vec<Item>> {
    Ok(sqlx::query_as!(
        Item,
        r#"SELECT i.id, i.category_id, i.name, i.active, i.current_version AS version, v.spec, i.created_at, i.updated_at
             FROM catalog_items i JOIN catalog_item_versions v ON v.item_id = i.id AND v.version = i.current_version
            WHERE i.active
            ORDER BY lower(i.name)"#
    )
    .fetch_all(conn)
    .await?)
}

/// Renames, moves or writes a new version of an item.
#[allow(clippy::too_many_arguments)]
pub async fn update_item(
    conn: &mut PgConnection,
    tenant_id: Uuid,
    id: Uuid,
    name: Option<&str>,
    category_id: Option<Uuid>,
    spec: Option<&serde_json::Value>,
    by: Option<Uuid>,
) -> Result<Item> {
    let current = item(conn, id).await?;
    if !current.active {
        return Err(StoreError::NotFound);
    }
    let version = match spec {
        Some(spec) => {
            let v = current.version + 1;
            sqlx::query!(
                "INSERT INTO catalog_item_versions (id, tenant_id, item_id, version, spec, created_by)
                 VALUES ($1, $2, $3, $4, $5, $6)",
                Uuid::now_v7(),
                tenant_id,
                id,
                v,
                spec,
                by
            )
            .execute(&mut *conn)
            .await?;
            v
        }
        None => current.version,
    };
    sqlx::query!(
        "UPDATE catalog_items SET name = COALESCE($2, name), category_id = COALESCE($3, category_id),
                current_version = $4, updated_at = now()
          WHERE id = $1",
        id,
        name,
        category_id,
        version
    )
    .execute(&mut *conn)
    .await?;
    item(conn, id).await
}

pub async fn deactivate_item(conn: &mut PgConnection, id: Uuid) -> Result<()> {
    let done = sqlx::query!("UPDATE catalog_items SET active = false, updated_at = now() WHERE id = $1 AND active", id)
        .execute(conn)
        .await?;
    if done.rows_affected() == 0 {
        return Err(StoreError::NotFound);
    }
    Ok(())
}
