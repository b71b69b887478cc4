//! The service catalog: categories and versioned items.
//!
//! An item version's spec is stored as `jsonb`, which keeps an object's keys sorted (shorter
//! first), not as written; but a form's `properties` are in the order its fields are asked and
//! shown. So writing a version records that order next to the spec ([`with_form_order`]) and
//! reading one puts it back and drops the record ([`restore_form_order`]): readers see the form
//! as it was written. (Versions written before this record existed read in `jsonb` key order.)

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
                icon = CASE WHEN $4 THEN $5 ELSE icon END, position = COALESCE($6, position), updated_at = archer_now()
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
    /// The version's definition: description, audience, form schema, approval chain… (the
    /// form's `properties` in the order they were written).
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
    let spec = with_form_order(spec);
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
    .map(in_written_order)
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
    .map(in_written_order)
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
    .await?
    .into_iter()
    .map(in_written_order)
    .collect())
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
            let spec = with_form_order(spec);
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
                current_version = $4, updated_at = archer_now()
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
    let done =
        sqlx::query!("UPDATE catalog_items SET active = false, updated_at = archer_now() WHERE id = $1 AND active", id)
            .execute(conn)
            .await?;
    if done.rows_affected() == 0 {
        return Err(StoreError::NotFound);
    }
    Ok(())
}

/// Where a stored version's spec records the order of its form's properties: for each object of
/// `form_schema` that has `properties`, its JSON pointer (`""` for the form itself) and the keys
/// in the order written. Never part of a spec anyone else sees; a spec given to write that has
/// one gets it replaced.
const FORM_ORDER: &str = "_form_property_order";

/// `spec` as it is stored: with the order of every `properties` object of its `form_schema`
/// (the form's, and those of its subschemas: `oneOf` branches, `items`, `then`…) recorded under
/// [`FORM_ORDER`], which `jsonb` would lose.
pub fn with_form_order(spec: &serde_json::Value) -> serde_json::Value {
    let mut stored = spec.clone();
    let Some(obj) = stored.as_object_mut() else { return stored };
    obj.remove(FORM_ORDER);
    let mut order = serde_json::Map::new();
    if let Some(form) = obj.get("form_schema") {
        record_order(form, String::new(), &mut order);
    }
    if !order.is_empty() {
        obj.insert(FORM_ORDER.to_owned(), serde_json::Value::Object(order));
    }
    stored
}

/// Records the key order of every `properties` object under `node` (at JSON pointer `at`).
fn record_order(node: &serde_json::Value, at: String, order: &mut serde_json::Map<String, serde_json::Value>) {
    let escape = |k: &str| k.replace('~', "~0").replace('/', "~1");
    match node {
        serde_json::Value::Object(o) => {
            if let Some(props) = o.get("properties").and_then(serde_json::Value::as_object)
                && props.len() > 1
            {
                order.insert(at.clone(), props.keys().cloned().collect());
            }
            for (k, v) in o {
                record_order(v, format!("{at}/{}", escape(k)), order);
            }
        }
        serde_json::Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                record_order(v, format!("{at}/{i}"), order);
            }
        }
        _ => {}
    }
}

/// Puts the `properties` of `spec`'s form back in the order [`with_form_order`] recorded, and
/// removes the record. Keys the record does not name keep their place after those it does.
pub fn restore_form_order(spec: &mut serde_json::Value) {
    let Some(obj) = spec.as_object_mut() else { return };
    let Some(serde_json::Value::Object(order)) = obj.remove(FORM_ORDER) else { return };
    let Some(form) = obj.get_mut("form_schema") else { return };
    for (at, keys) in order {
        let Some(props) = form.pointer_mut(&at).and_then(|n| n.get_mut("properties")).and_then(|p| p.as_object_mut())
        else {
            continue;
        };
        let mut rest = std::mem::take(props);
        for key in keys.as_array().into_iter().flatten().filter_map(serde_json::Value::as_str) {
            if let Some(v) = rest.remove(key) {
                props.insert(key.to_owned(), v);
            }
        }
        props.extend(rest);
    }
}

/// An item as read: its form in the order written.
fn in_written_order(mut item: Item) -> Item {
    restore_form_order(&mut item.spec);
    item
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    /// What `jsonb` does to key order: shorter keys first, then bytewise.
    fn as_jsonb(v: &serde_json::Value) -> serde_json::Value {
        match v {
            serde_json::Value::Object(o) => {
                let mut keys: Vec<&String> = o.keys().collect();
                keys.sort_by(|a, b| a.len().cmp(&b.len()).then(a.cmp(b)));
                serde_json::Value::Object(keys.into_iter().map(|k| (k.clone(), as_jsonb(&o[k]))).collect())
            }
            serde_json::Value::Array(a) => serde_json::Value::Array(a.iter().map(as_jsonb).collect()),
            other => other.clone(),
        }
    }

    fn keys(v: &serde_json::Value) -> Vec<&str> {
        v.as_object().unwrap().keys().map(String::as_str).collect()
    }

    #[test]
    fn a_form_reads_in_the_order_it_was_written_after_jsonb() {
        let spec = json!({
            "description": "d",
            "form_schema": {"type": "object", "properties": {
                "device_type": {"type": "string"},
                "os": {"type": "string"},
                "needed_by": {"type": "string"},
                "employment": {"oneOf": [{"properties": {"type": {"const": "c"}, "end_date": {}, "agency": {}}}]},
                "a/b~c": {}
            }}
        });
        let mut stored = as_jsonb(&with_form_order(&spec));
        assert_eq!(keys(&stored["form_schema"]["properties"])[0], "os", "jsonb reorders");
        restore_form_order(&mut stored);
        assert_eq!(stored, spec);
        assert_eq!(
            keys(&stored["form_schema"]["properties"]),
            ["device_type", "os", "needed_by", "employment", "a/b~c"]
        );
        let branch = &stored["form_schema"]["properties"]["employment"]["oneOf"][0]["properties"];
        assert_eq!(keys(branch), ["type", "end_date", "agency"]);
        assert!(stored.get(FORM_ORDER).is_none());

        // no form, or nothing to order: nothing recorded; a stray record is replaced
        assert_eq!(
            with_form_order(&json!({"form_schema": {"type": "object"}})),
            json!({"form_schema": {"type": "object"}})
        );
        let stray = json!({"form_schema": {"properties": {"b": {}, "aa": {}}}, FORM_ORDER: {"": ["aa", "b"]}});
        let mut stored = as_jsonb(&with_form_order(&stray));
        restore_form_order(&mut stored);
        assert_eq!(keys(&stored["form_schema"]["properties"]), ["b", "aa"]);
        // a version written before the record existed reads as stored
        let mut old = as_jsonb(&spec);
        restore_form_order(&mut old);
        assert_eq!(old, as_jsonb(&spec));
    }
}
