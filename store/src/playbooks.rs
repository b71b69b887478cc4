//! Playbooks: versioned YAML documents, their runs on tickets and each run's steps.
//!
//! Versions go `draft` → `published` (immutable) → `retired`, with at most one draft and one
//! published version per playbook (partial unique indexes; every lifecycle write locks the
//! playbook's row first, so concurrent saves and publishes serialise). A run pins its version:
//! [`start_run`] puts the version's source into the workflow's input, so publishing v2 never
//! changes a v1 run in flight.
//!
//! Runs are started here, in the caller's transaction, through `outbox::start`; the workflow's
//! signals (a watched ticket changed, retry, cancel) through `outbox::signal`. The ticket write
//! path ([`crate::changes`]) calls [`fire_ticket_triggers`] and [`notify_watchers`]; the ticket
//! workflow's `sla.record` activity calls [`fire_sla_trigger`] when it records a warning or breach.
//!
//! **Changes made by a playbook run never fire `ticket_created` / `ticket_changed` triggers**
//! (no loops): a run's activities write with an [`AuditContext`] whose `request_id` starts
//! with [`RUN_REQUEST_PREFIX`] ([`run_audit_context`]), and the trigger lookup reads that from
//! the transaction (`archer.request_id`) in the same query.

use std::collections::BTreeMap;

use serde_json::{Value, json};
use sqlx::PgConnection;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

use archer_orchestrator::TenantSlug;
use archer_orchestrator::playbook::{self, Playbook, Trigger};
use archer_orchestrator::sla::engine::Fact;
use archer_orchestrator::workflows::activities::TicketRef;
use archer_orchestrator::workflows::playbook::{self as pwf, CancelRun, RetryRun, RunInput, TicketChanged};
use archer_orchestrator::workflows::playbook_activities::{RecordRun, RunRef};
use archer_orchestrator::workflows::ticket as ticket_wf;

use crate::changes::{self, ServiceError};
use crate::tickets::{self, TicketRow};
use crate::{AuditContext, Result, StoreError, catalog, outbox};

/// The `request_id` prefix of every transaction a playbook run's activities write in: changes
/// made under it fire no ticket triggers.
pub const RUN_REQUEST_PREFIX: &str = "playbook:";

/// Largest step output stored (serialised JSON); a larger one is replaced by a note.
pub const MAX_OUTPUT_BYTES: usize = 8 * 1024;

/// The audit context of a run's activity: `actor_id` (if the run acts for someone) and a
/// `request_id` of `playbook:<workflow id>`, which marks its changes as made by a playbook.
pub fn run_audit_context(workflow_id: &str, actor_id: Option<Uuid>) -> AuditContext {
    AuditContext { actor_id, request_id: Some(format!("{RUN_REQUEST_PREFIX}{workflow_id}")), ip: None }
}

#[derive(Debug, thiserror::Error)]
pub enum PlaybookError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A lifecycle rule refused the request (publishing a version that is not the draft,
    /// retrying a run that has not failed): answered 409.
    #[error("{0}")]
    State(String),
}

impl From<sqlx::Error> for PlaybookError {
    fn from(e: sqlx::Error) -> Self {
        PlaybookError::Store(e.into())
    }
}

// ---- playbooks and versions ----------------------------------------------------------------

/// A playbook with the numbers of its current versions.
#[derive(Debug, Clone)]
pub struct PlaybookRow {
    pub id: Uuid,
    pub name: String,
    pub created_at: OffsetDateTime,
    pub created_by: Option<Uuid>,
    pub published_version: Option<i32>,
    pub draft_version: Option<i32>,
    pub latest_version: Option<i32>,
}

/// One version of a playbook, with its document.
#[derive(Debug, Clone)]
pub struct VersionRow {
    pub id: Uuid,
    pub playbook_id: Uuid,
    /// The playbook's name.
    pub name: String,
    pub version: i32,
    /// `draft`, `published` or `retired`.
    pub status: String,
    pub source: String,
    /// As [`triggers_json`] wrote them.
    pub triggers: Value,
    pub created_at: OffsetDateTime,
    pub created_by: Option<Uuid>,
    pub published_at: Option<OffsetDateTime>,
    pub published_by: Option<Uuid>,
    pub retired_at: Option<OffsetDateTime>,
}

#[derive(Debug, Clone)]
pub struct PlaybookDetail {
    pub playbook: PlaybookRow,
    /// Newest first.
    pub versions: Vec<VersionRow>,
}

/// The stored form of a document's triggers, which the trigger lookup reads:
/// `[{"kind": "ticket_created", "condition": "..."}, {"kind": "catalog_fulfilment", "item": "x"}]`.
pub fn triggers_json(playbook: &Playbook) -> Value {
    let list: Vec<Value> = playbook
        .triggers
        .iter()
        .map(|t| match &t.value {
            Trigger::CatalogFulfilment { item } => json!({"kind": "catalog_fulfilment", "item": item}),
            Trigger::TicketCreated { condition } => json!({"kind": "ticket_created", "condition": condition}),
            Trigger::TicketChanged { condition } => json!({"kind": "ticket_changed", "condition": condition}),
            Trigger::SlaWarning => json!({"kind": "sla_warning"}),
            Trigger::SlaBreach => json!({"kind": "sla_breach"}),
            Trigger::Manual => json!({"kind": "manual"}),
        })
        .collect();
    Value::Array(list)
}

/// Locks the playbook `id` for a lifecycle change.
async fn lock_playbook(conn: &mut PgConnection, id: Uuid) -> Result<()> {
    sqlx::query_scalar!("SELECT id FROM playbooks WHERE id = $1 FOR UPDATE", id)
        .fetch_optional(conn)
        .await?
        .ok_or(StoreError::NotFound)?;
    Ok(())
}

/// Saves `source` (already validated; `name` is its document's name) as the playbook's draft:
/// creates the playbook if it is new, replaces the draft's source if there is one, otherwise
/// creates the next version as the draft.
#[tracing::instrument(skip_all, fields(name))]
pub async fn save_draft(
    conn: &mut PgConnection,
    tenant_id: Uuid,
    name: &str,
    source: &str,
    triggers: &Value,
    actor: Option<Uuid>,
) -> Result<VersionRow> {
    sqlx::query!(
        "INSERT INTO playbooks (id, tenant_id, name, created_by) VALUES ($1, $2, $3, $4)
         ON CONFLICT (tenant_id, name) DO NOTHING",
        Uuid::now_v7(),
        tenant_id,
        name,
        actor
    )
    .execute(&mut *conn)
    .await?;
    let playbook_id =
        sqlx::query_scalar!("SELECT id FROM playbooks WHERE name = $1 FOR UPDATE", name).fetch_one(&mut *conn).await?;
    let replaced = sqlx::query_scalar!(
        "UPDATE playbook_versions SET source = $2, triggers = $3, created_by = $4, created_at = archer_now()
          WHERE playbook_id = $1 AND status = 'draft'
          RETURNING id",
        playbook_id,
        source,
        triggers,
        actor
    )
    .fetch_optional(&mut *conn)
    .await?;
    let id = match replaced {
        Some(id) => id,
        None => {
            sqlx::query_scalar!(
            "INSERT INTO playbook_versions (id, tenant_id, playbook_id, version, status, source, triggers, created_by)
                 SELECT $1, $2, $3, COALESCE(max(version), 0) + 1, 'draft', $4, $5, $6
                   FROM playbook_versions WHERE playbook_id = $3
                 RETURNING id",
            Uuid::now_v7(),
            tenant_id,
            playbook_id,
            source,
            triggers,
            actor
        )
            .fetch_one(&mut *conn)
            .await?
        }
    };
    version_by_id(conn, id).await
}

/// Publishes the draft `version`: the previously published version (if any) is retired.
#[tracing::instrument(skip_all, fields(%playbook_id, version))]
pub async fn publish(
    conn: &mut PgConnection,
    playbook_id: Uuid,
    version: i32,
    actor: Option<Uuid>,
) -> Result<VersionRow, PlaybookError> {
    lock_playbook(conn, playbook_id).await?;
    let v = version_row(conn, playbook_id, version).await?;
    if v.status != "draft" {
        return Err(PlaybookError::State(format!(
            "version {version} is {}; only the draft can be published",
            v.status
        )));
    }
    sqlx::query!(
        "UPDATE playbook_versions SET status = 'retired', retired_at = archer_now()
          WHERE playbook_id = $1 AND status = 'published'",
        playbook_id
    )
    .execute(&mut *conn)
    .await?;
    sqlx::query!(
        "UPDATE playbook_versions SET status = 'published', published_at = archer_now(), published_by = $2 WHERE id = $1",
        v.id,
        actor
    )
    .execute(&mut *conn)
    .await?;
    Ok(version_by_id(conn, v.id).await?)
}

/// Retires the published `version`: no new run starts from it (runs in flight go on).
#[tracing::instrument(skip_all, fields(%playbook_id, version))]
pub async fn retire(conn: &mut PgConnection, playbook_id: Uuid, version: i32) -> Result<VersionRow, PlaybookError> {
    lock_playbook(conn, playbook_id).await?;
    let v = version_row(conn, playbook_id, version).await?;
    if v.status != "published" {
        return Err(PlaybookError::State(format!(
            "version {version} is {}; only the published version can be retired",
            v.status
        )));
    }
    sqlx::query!("UPDATE playbook_versions SET status = 'retired', retired_at = archer_now() WHERE id = $1", v.id)
        .execute(&mut *conn)
        .await?;
    Ok(version_by_id(conn, v.id).await?)
}

/// Deletes the playbook's draft; a playbook left without any version is deleted with it.
/// Returns whether the playbook itself was deleted.
pub async fn delete_draft(conn: &mut PgConnection, playbook_id: Uuid) -> Result<bool, PlaybookError> {
    lock_playbook(conn, playbook_id).await?;
    let done = sqlx::query!("DELETE FROM playbook_versions WHERE playbook_id = $1 AND status = 'draft'", playbook_id)
        .execute(&mut *conn)
        .await?;
    if done.rows_affected() == 0 {
        return Err(PlaybookError::State("the playbook has no draft".into()));
    }
    let gone = sqlx::query!(
        "DELETE FROM playbooks p WHERE p.id = $1 AND NOT EXISTS (SELECT 1 FROM playbook_versions v WHERE v.playbook_id = p.id)",
        playbook_id
    )
    .execute(&mut *conn)
    .await?;
    Ok(gone.rows_affected() == 1)
}

/// The tenant's playbooks, by name.
pub async fn list(conn: &mut PgConnection) -> Result<Vec<PlaybookRow>> {
    Ok(sqlx::query_as!(
        PlaybookRow,
        r#"SELECT p.id, p.name, p.created_at, p.created_by,
                  (SELECT v.version FROM playbook_versions v WHERE v.playbook_id = p.id AND v.status = 'published')
                      AS published_version,
                  (SELECT v.version FROM playbook_versions v WHERE v.playbook_id = p.id AND v.status = 'draft')
                      AS draft_version,
                  (SELECT max(v.version) FROM playbook_versions v WHERE v.playbook_id = p.id) AS latest_version
             FROM playbooks p ORDER BY p.name"#
    )
    .fetch_all(conn)
    .await?)
}

async fn playbook_row(conn: &mut PgConnection, id: Option<Uuid>, name: Option<&str>) -> Result<PlaybookRow> {
    sqlx::query_as!(
        PlaybookRow,
        r#"SELECT p.id, p.name, p.created_at, p.created_by,
                  (SELECT v.version FROM playbook_versions v WHERE v.playbook_id = p.id AND v.status = 'published')
                      AS published_version,
                  (SELECT v.version FROM playbook_versions v WHERE v.playbook_id = p.id AND v.status = 'draft')
                      AS draft_version,
                  (SELECT max(v.version) FROM playbook_versions v WHERE v.playbook_id = p.id) AS latest_version
             FROM playbooks p WHERE p.id = $1 OR p.name = $2"#,
        id,
        name
    )
    .fetch_optional(conn)
    .await?
    .ok_or(StoreError::NotFound)
}

/// A playbook and all its versions (newest first).
pub async fn get(conn: &mut PgConnection, playbook_id: Uuid) -> Result<PlaybookDetail> {
    let playbook = playbook_row(conn, Some(playbook_id), None).await?;
    let versions = sqlx::query_as!(
        VersionRow,
        r#"SELECT v.id, v.playbook_id, p.name, v.version, v.status, v.source, v.triggers, v.created_at, v.created_by,
                  v.published_at, v.published_by, v.retired_at
             FROM playbook_versions v JOIN playbooks p ON p.id = v.playbook_id
            WHERE v.playbook_id = $1 ORDER BY v.version DESC"#,
        playbook_id
    )
    .fetch_all(conn)
    .await?;
    Ok(PlaybookDetail { playbook, versions })
}

/// The playbook named `name`.
pub async fn get_by_name(conn: &mut PgConnection, name: &str) -> Result<PlaybookRow> {
    playbook_row(conn, None, Some(name)).await
}

/// Version `version` of a playbook.
pub async fn version_row(conn: &mut PgConnection, playbook_id: Uuid, version: i32) -> Result<VersionRow> {
    sqlx::query_as!(
        VersionRow,
        r#"SELECT v.id, v.playbook_id, p.name, v.version, v.status, v.source, v.triggers, v.created_at, v.created_by,
                  v.published_at, v.published_by, v.retired_at
             FROM playbook_versions v JOIN playbooks p ON p.id = v.playbook_id
            WHERE v.playbook_id = $1 AND v.version = $2"#,
        playbook_id,
        version
    )
    .fetch_optional(conn)
    .await?
    .ok_or(StoreError::NotFound)
}

/// A version by its id.
pub async fn version_by_id(conn: &mut PgConnection, id: Uuid) -> Result<VersionRow> {
    sqlx::query_as!(
        VersionRow,
        r#"SELECT v.id, v.playbook_id, p.name, v.version, v.status, v.source, v.triggers, v.created_at, v.created_by,
                  v.published_at, v.published_by, v.retired_at
             FROM playbook_versions v JOIN playbooks p ON p.id = v.playbook_id
            WHERE v.id = $1"#,
        id
    )
    .fetch_optional(conn)
    .await?
    .ok_or(StoreError::NotFound)
}

/// The published version of the playbook named `name`, if it has one.
pub async fn published(conn: &mut PgConnection, name: &str) -> Result<Option<VersionRow>> {
    Ok(sqlx::query_as!(
        VersionRow,
        r#"SELECT v.id, v.playbook_id, p.name, v.version, v.status, v.source, v.triggers, v.created_at, v.created_by,
                  v.published_at, v.published_by, v.retired_at
             FROM playbook_versions v JOIN playbooks p ON p.id = v.playbook_id
            WHERE p.name = $1 AND v.status = 'published'"#,
        name
    )
    .fetch_optional(conn)
    .await?)
}

// ---- catalog items -----------------------------------------------------------------------------

/// The playbook an item's version names (`spec.playbook`); the current version when `version`
/// is `None`.
pub async fn item_playbook(conn: &mut PgConnection, item_id: Uuid, version: Option<i32>) -> Result<Option<String>> {
    let item = match version {
        Some(v) => catalog::item_version(conn, item_id, v).await?,
        None => catalog::item(conn, item_id).await?,
    };
    Ok(item.spec.get("playbook").and_then(Value::as_str).map(str::to_owned))
}

/// Names `playbook` (or none) as the item's fulfilment playbook: a new version of the item
/// (its definition is versioned; requests already submitted keep the playbook of theirs).
pub async fn set_item_playbook(
    conn: &mut PgConnection,
    tenant_id: Uuid,
    item_id: Uuid,
    playbook: Option<&str>,
    by: Option<Uuid>,
) -> Result<catalog::Item> {
    let item = catalog::item(conn, item_id).await?;
    let mut spec = item.spec;
    let Some(obj) = spec.as_object_mut() else {
        return Err(StoreError::Invalid(format!("catalog item {item_id} has a spec that is not an object")));
    };
    if obj.get("playbook").and_then(Value::as_str) == playbook {
        return catalog::item(conn, item_id).await;
    }
    match playbook {
        Some(name) => obj.insert("playbook".into(), Value::from(name)),
        None => obj.remove("playbook"),
    };
    catalog::update_item(conn, tenant_id, item_id, None, None, Some(&spec), by).await
}

/// The published version of the playbook that a catalog request's item version names: what
/// runs after the request is approved. `None` when the item names none or it has no published
/// version.
pub async fn fulfilment(conn: &mut PgConnection, item_id: Uuid, item_version: i32) -> Result<Option<VersionRow>> {
    match item_playbook(conn, item_id, Some(item_version)).await? {
        Some(name) => published(conn, &name).await,
        None => Ok(None),
    }
}

/// A catalog item's name as the `item` of a `catalog_fulfilment` trigger and of a run's
/// `request.item`: lower case, runs of anything but letters and digits as one `-`.
pub fn item_slug(name: &str) -> String {
    let mut slug = String::new();
    for c in name.chars() {
        if c.is_alphanumeric() {
            slug.extend(c.to_lowercase());
        } else if !slug.is_empty() && !slug.ends_with('-') {
            slug.push('-');
        }
    }
    slug.trim_end_matches('-').to_owned()
}

/// The active item a trigger's `item` names: its slug ([`item_slug`]) or its id.
pub async fn find_item(conn: &mut PgConnection, item: &str) -> Result<Option<catalog::Item>> {
    let id = Uuid::parse_str(item).ok();
    Ok(catalog::items(conn).await?.into_iter().find(|i| Some(i.id) == id || item_slug(&i.name) == item))
}

// ---- triggers ---------------------------------------------------------------------------------

/// A published version with the conditions of its triggers of one kind (`None`: no condition).
#[derive(Debug, Clone)]
pub struct Triggered {
    pub version: VersionRow,
    pub conditions: Vec<Option<String>>,
}

/// Published versions in the tenant with a trigger of `kind` (`ticket_created`,
/// `ticket_changed`, `sla_warning`, `sla_breach`), with those triggers' conditions. One indexed
/// query; when `unless_in_run`, none when the transaction writes for a playbook run.
async fn triggered_where(conn: &mut PgConnection, kind: &str, unless_in_run: bool) -> Result<Vec<Triggered>> {
    let rows = sqlx::query!(
        r#"SELECT v.id, v.playbook_id, p.name, v.version, v.status, v.source, v.triggers, v.created_at, v.created_by,
                  v.published_at, v.published_by, v.retired_at, t.value ->> 'condition' AS condition
             FROM playbook_versions v
             JOIN playbooks p ON p.id = v.playbook_id
             CROSS JOIN LATERAL jsonb_array_elements(v.triggers) AS t(value)
            WHERE v.status = 'published'
              AND v.triggers @> jsonb_build_array(jsonb_build_object('kind', $1::text))
              AND t.value ->> 'kind' = $1
              AND NOT ($2 AND COALESCE(current_setting('archer.request_id', true), '') LIKE 'playbook:%')
            ORDER BY p.name"#,
        kind,
        unless_in_run
    )
    .fetch_all(conn)
    .await?;
    let mut out: Vec<Triggered> = Vec::new();
    for r in rows {
        if let Some(last) = out.last_mut().filter(|t| t.version.id == r.id) {
            last.conditions.push(r.condition);
            continue;
        }
        let version = VersionRow {
            id: r.id,
            playbook_id: r.playbook_id,
            name: r.name,
            version: r.version,
            status: r.status,
            source: r.source,
            triggers: r.triggers,
            created_at: r.created_at,
            created_by: r.created_by,
            published_at: r.published_at,
            published_by: r.published_by,
            retired_at: r.retired_at,
        };
        out.push(Triggered { version, conditions: vec![r.condition] });
    }
    Ok(out)
}

/// Published versions with a trigger of `kind`, and their conditions (for SLA triggers, which
/// the ticket workflow's activities fire).
pub async fn triggered(conn: &mut PgConnection, kind: &str) -> Result<Vec<Triggered>> {
    triggered_where(conn, kind, false).await
}

/// Whether any of `conditions` holds for `ticket` (the scope's ticket) and, for a change, the
/// ticket `before` it; a condition that fails to evaluate counts as not holding (and is logged).
pub fn any_holds(conditions: &[Option<String>], ticket: &Value, before: Option<&Value>) -> bool {
    conditions.iter().any(|c| match c {
        None => true,
        Some(c) => playbook::condition_holds(c, ticket, before).unwrap_or_else(|e| {
            tracing::warn!(condition = %c, error = %e, "a trigger condition could not be evaluated");
            false
        }),
    })
}

/// The ticket triggers the write path fires.
#[derive(Debug, Clone, Copy)]
pub enum TicketTrigger<'a> {
    Created,
    /// A change of the ticket that was `before` it.
    Changed {
        before: &'a TicketRow,
    },
}

impl TicketTrigger<'_> {
    pub fn as_str(self) -> &'static str {
        match self {
            TicketTrigger::Created => "ticket_created",
            TicketTrigger::Changed { .. } => "ticket_changed",
        }
    }
}

/// Starts a run of every published playbook with a `trigger` whose condition holds for
/// `ticket` (and, for a change, the ticket `before` it, which is also the run's
/// `run.event.before`), unless the transaction writes for a playbook run. One indexed query
/// when the tenant has no such playbook.
pub async fn fire_ticket_triggers(
    conn: &mut PgConnection,
    tenant: &TenantSlug,
    ticket: &TicketRow,
    trigger: TicketTrigger<'_>,
) -> Result<Vec<RunRow>, ServiceError> {
    let found = triggered_where(conn, trigger.as_str(), true).await?;
    if found.is_empty() {
        return Ok(Vec::new());
    }
    let event = match trigger {
        TicketTrigger::Created => None,
        TicketTrigger::Changed { before } => Some(json!({"before": ticket_scope(conn, before).await?})),
    };
    start_triggered(conn, tenant, ticket, &found, trigger.as_str(), event).await
}

/// The tenant's published `ticket_created` playbooks (none inside a playbook run's own
/// writes), read before a create takes its number (see `changes::create_with_sla`).
pub async fn created_triggers(conn: &mut PgConnection) -> Result<Vec<Triggered>> {
    triggered_where(conn, TicketTrigger::Created.as_str(), true).await
}

/// Starts a run of each of `found` (from [`created_triggers`]) whose condition holds for the
/// new `ticket`.
pub async fn fire_created(
    conn: &mut PgConnection,
    tenant: &TenantSlug,
    ticket: &TicketRow,
    found: &[Triggered],
) -> Result<Vec<RunRow>, ServiceError> {
    if found.is_empty() {
        return Ok(Vec::new());
    }
    start_triggered(conn, tenant, ticket, found, TicketTrigger::Created.as_str(), None).await
}

/// The trigger an SLA fact fires (`sla_warning`, `sla_breach`) and the run's `run.event`:
/// `{"metric", "cycle", "kind": "warning"|"breach", "percent" (a warning's; null for a breach),
/// "at" (the fact's true instant, RFC 3339)}`. Escalations fire no trigger (`None`).
pub fn sla_trigger(fact: &Fact) -> Option<(&'static str, Value)> {
    let (trigger, metric, cycle, kind, percent, at) = match fact {
        Fact::Warning { metric, cycle, percent, at } => ("sla_warning", metric, cycle, "warning", Some(percent), at),
        Fact::Breach { metric, cycle, at } => ("sla_breach", metric, cycle, "breach", None, at),
        Fact::Escalation { .. } => return None,
    };
    let event =
        json!({"metric": metric.as_str(), "cycle": cycle, "kind": kind, "percent": percent, "at": at.to_string()});
    Some((trigger, event))
}

/// Starts a run of every published playbook with the trigger `fact` fires (see
/// [`sla_trigger`]), its event in the scope's `run.event`. The caller records the fact in the
/// same transaction and calls this only the first time (`sla::record_event` answered new), so
/// a retried activity never starts a run twice. One indexed query when the tenant has no such
/// playbook; the ticket is read (locked) only when one is triggered.
pub async fn fire_sla_trigger(
    conn: &mut PgConnection,
    tenant: &TenantSlug,
    ticket_id: Uuid,
    fact: &Fact,
) -> Result<Vec<RunRow>, ServiceError> {
    let Some((trigger, event)) = sla_trigger(fact) else { return Ok(Vec::new()) };
    let found = triggered(conn, trigger).await?;
    if found.is_empty() {
        return Ok(Vec::new());
    }
    let ticket = tickets::lock(conn, ticket_id).await?;
    start_triggered(conn, tenant, &ticket, &found, trigger, Some(event)).await
}

/// Starts a run, as `trigger` with `event`, of each of `found` (not empty: callers look first,
/// so a tenant without such playbooks pays one query) with a condition that holds for `ticket`
/// (and the event's `before`, for a change: the one loop every trigger shares).
async fn start_triggered(
    conn: &mut PgConnection,
    tenant: &TenantSlug,
    ticket: &TicketRow,
    found: &[Triggered],
    trigger: &str,
    event: Option<Value>,
) -> Result<Vec<RunRow>, ServiceError> {
    let scope = ticket_scope(conn, ticket).await?;
    let before = event.as_ref().and_then(|e| e.get("before"));
    let mut runs = Vec::new();
    for t in found.iter().filter(|t| any_holds(&t.conditions, &scope, before)) {
        let start = StartRun {
            version: &t.version,
            tenant,
            ticket,
            trigger,
            event: event.clone(),
            inputs: json!({}),
            request: None,
            started_by: None,
        };
        runs.push(start_run(conn, start).await?);
    }
    Ok(runs)
}

// ---- scope ------------------------------------------------------------------------------------

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

/// The scope's `ticket` object for a stored ticket (one query: the requester's email).
pub async fn ticket_scope(conn: &mut PgConnection, t: &TicketRow) -> Result<Value, ServiceError> {
    let email = sqlx::query_scalar!("SELECT email FROM users WHERE id = $1", t.requester_id)
        .fetch_optional(&mut *conn)
        .await
        .map_err(StoreError::from)?;
    let p = changes::parse(t)?;
    Ok(json!({
        "id": t.id,
        "number": p.number.to_string(),
        "kind": t.kind.as_str(),
        "title": t.title,
        "description": t.description,
        "status": t.status.as_str(),
        "priority": t.priority,
        "impact": t.impact,
        "urgency": t.urgency,
        "requester_id": t.requester_id,
        "requester_email": email,
        "assignee_id": t.assignee_id,
        "team_id": t.team_id,
        "created_at": rfc3339(t.created_at),
    }))
}

/// The scope's `ticket` object for the ticket `ticket_id`.
pub async fn scope_for(conn: &mut PgConnection, ticket_id: Uuid) -> Result<Value, ServiceError> {
    let t = tickets::get(conn, ticket_id).await?;
    ticket_scope(conn, &t).await
}

/// The scope's `request` object of a catalog request (`None` for other tickets): the item (its
/// slug, id and the version submitted against) and the form's answers as submitted.
pub async fn request_scope(conn: &mut PgConnection, t: &TicketRow) -> Result<Option<Value>> {
    let (Some(item_id), Some(version)) = (t.catalog_item_id, t.catalog_item_version) else {
        return Ok(None);
    };
    let item = catalog::item_version(conn, item_id, version).await?;
    Ok(Some(json!({
        "item": item_slug(&item.name),
        "item_id": item_id,
        "item_version": version,
        "fields": t.request_fields.clone().unwrap_or_else(|| json!({})),
    })))
}

// ---- runs -------------------------------------------------------------------------------------

/// A run of a playbook on a ticket.
#[derive(Debug, Clone)]
pub struct RunRow {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub playbook_id: Uuid,
    /// The playbook's name.
    pub playbook: String,
    pub version_id: Uuid,
    pub version: i32,
    pub ticket_id: Uuid,
    pub run_number: i32,
    pub workflow_id: String,
    pub trigger: String,
    pub inputs: Value,
    /// `pending`, `running`, `succeeded`, `failed`, `cancelled`.
    pub status: String,
    pub error: Option<String>,
    pub started_by: Option<Uuid>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
    pub finished_at: Option<OffsetDateTime>,
}

/// One step of a run, as the timeline shows it.
#[derive(Debug, Clone)]
pub struct StepRow {
    pub run_id: Uuid,
    pub step_id: String,
    pub action: String,
    /// `pending`, `running`, `succeeded`, `failed`, `skipped`.
    pub status: String,
    pub round: i32,
    pub attempts: i32,
    pub reason: Option<String>,
    /// At most [`MAX_OUTPUT_BYTES`] of the output (a note replaces a larger one).
    pub output: Option<Value>,
    pub error: Option<String>,
    pub started_at: Option<OffsetDateTime>,
    pub finished_at: Option<OffsetDateTime>,
    pub updated_at: OffsetDateTime,
}

#[derive(Debug, Clone)]
pub struct RunDetail {
    pub run: RunRow,
    /// In the document's order.
    pub steps: Vec<StepRow>,
}

/// What starts a run.
#[derive(Debug, Clone)]
pub struct StartRun<'a> {
    /// The version to run (normally the published one); its source is pinned to the run.
    pub version: &'a VersionRow,
    pub tenant: &'a TenantSlug,
    pub ticket: &'a TicketRow,
    /// `catalog_fulfilment`, `ticket_created`, `ticket_changed`, `sla_warning`, `sla_breach`, `manual`
    /// (the scope's `run.trigger`).
    pub trigger: &'a str,
    /// What fired the trigger, the scope's `run.event` (an SLA trigger's [`sla_trigger`] event;
    /// `None`, null in the scope, for the others).
    pub event: Option<Value>,
    /// A manual run's inputs (`{}` otherwise).
    pub inputs: Value,
    /// The scope's `request`; `None`: derived from the ticket ([`request_scope`]).
    pub request: Option<Value>,
    pub started_by: Option<Uuid>,
}

/// Starts a run in the caller's transaction: the run (number `n`, the next for this ticket and
/// playbook, allocated under the ticket's row lock), one pending row per step, a watch on the
/// ticket, and the intent to start its workflow with the version's source and the scope.
#[tracing::instrument(skip_all, fields(playbook = %s.version.name, ticket = %s.ticket.id, trigger = s.trigger))]
pub async fn start_run(conn: &mut PgConnection, s: StartRun<'_>) -> Result<RunRow, ServiceError> {
    let parsed = playbook::parse(&s.version.source).map_err(|e| {
        StoreError::Invalid(format!("playbook {} v{} does not parse: {e}", s.version.name, s.version.version))
    })?;
    let steps: Vec<(String, String)> =
        parsed.steps.iter().map(|st| (st.value.id.value.clone(), st.value.action.value.clone())).collect();
    let p = changes::parse(s.ticket)?;
    let ticket_wf_id = ticket_wf::workflow_id(s.tenant, &p.number);
    sqlx::query_scalar!("SELECT id FROM tickets WHERE id = $1 FOR UPDATE", s.ticket.id)
        .fetch_one(&mut *conn)
        .await
        .map_err(StoreError::from)?;
    let n = sqlx::query_scalar!(
        r#"SELECT COALESCE(max(run_number), 0) + 1 AS "n!" FROM playbook_runs WHERE ticket_id = $1 AND playbook_id = $2"#,
        s.ticket.id,
        s.version.playbook_id
    )
    .fetch_one(&mut *conn)
    .await
    .map_err(StoreError::from)?;
    let run_id = Uuid::now_v7();
    let workflow_id = pwf::workflow_id(&ticket_wf_id, &s.version.name, n);
    sqlx::query!(
        "INSERT INTO playbook_runs (id, tenant_id, playbook_id, version_id, ticket_id, run_number, workflow_id, trigger,
                                    inputs, started_by)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        run_id,
        s.ticket.tenant_id,
        s.version.playbook_id,
        s.version.id,
        s.ticket.id,
        n,
        workflow_id,
        s.trigger,
        s.inputs,
        s.started_by
    )
    .execute(&mut *conn)
    .await
    .map_err(StoreError::from)?;
    let (ids, actions): (Vec<String>, Vec<String>) = steps.into_iter().unzip();
    sqlx::query!(
        "INSERT INTO playbook_steps (tenant_id, run_id, step_id, action, position)
         SELECT $1, $2, s.id, s.action, s.position - 1
           FROM unnest($3::text[], $4::text[]) WITH ORDINALITY AS s(id, action, position)",
        s.ticket.tenant_id,
        run_id,
        &ids,
        &actions
    )
    .execute(&mut *conn)
    .await
    .map_err(StoreError::from)?;
    add_watch(conn, run_id, s.ticket.id).await?;
    let request = match s.request {
        Some(r) => Some(r),
        None => request_scope(conn, s.ticket).await?,
    };
    let scope = json!({
        "ticket": ticket_scope(conn, s.ticket).await?,
        "request": request,
        "inputs": s.inputs,
        "run": {"id": run_id, "number": n, "workflow_id": workflow_id, "trigger": s.trigger, "event": s.event},
    });
    let run = RunRef {
        run_id,
        ticket: TicketRef {
            tenant_id: s.ticket.tenant_id,
            tenant: s.tenant.clone(),
            ticket_id: s.ticket.id,
            number: p.number,
        },
        workflow_id: workflow_id.clone(),
        playbook: s.version.name.clone(),
        version: s.version.version,
    };
    let input = RunInput { run, source: s.version.source.clone(), scope, trigger: s.trigger.to_owned() };
    outbox::start(conn, s.ticket.tenant_id, &workflow_id, pwf::WORKFLOW_TYPE, &input).await?;
    Ok(run_row(conn, run_id).await?)
}

/// Signals a run's workflow whenever `ticket_id` changes (its own ticket; a task it opened).
pub async fn add_watch(conn: &mut PgConnection, run_id: Uuid, ticket_id: Uuid) -> Result<()> {
    sqlx::query!(
        "INSERT INTO playbook_watches (tenant_id, run_id, ticket_id)
         SELECT r.tenant_id, r.id, $2 FROM playbook_runs r WHERE r.id = $1
         ON CONFLICT DO NOTHING",
        run_id,
        ticket_id
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Signals the new state of `ticket` to every run still going (pending, running, or failed and
/// waiting for a retry) that watches it. One indexed query when none does.
pub async fn notify_watchers(conn: &mut PgConnection, ticket: &TicketRow) -> Result<usize, ServiceError> {
    let runs = sqlx::query!(
        "SELECT r.workflow_id FROM playbook_watches w JOIN playbook_runs r ON r.id = w.run_id
          WHERE w.ticket_id = $1 AND r.status IN ('pending', 'running', 'failed')
          ORDER BY r.id",
        ticket.id
    )
    .fetch_all(&mut *conn)
    .await
    .map_err(StoreError::from)?;
    if runs.is_empty() {
        return Ok(0);
    }
    let signal = TicketChanged { ticket_id: ticket.id, ticket: ticket_scope(conn, ticket).await? };
    for r in &runs {
        outbox::signal(conn, ticket.tenant_id, &r.workflow_id, &signal).await?;
    }
    Ok(runs.len())
}

/// A step output as stored: itself when it is at most [`MAX_OUTPUT_BYTES`] serialised, else a note.
pub fn output_summary(output: &Value) -> Value {
    let size = serde_json::to_vec(output).map_or(usize::MAX, |b| b.len());
    if size <= MAX_OUTPUT_BYTES {
        output.clone()
    } else {
        json!({"_truncated": true, "note": format!("the output ({size} bytes) is larger than {MAX_OUTPUT_BYTES} bytes and was not stored")})
    }
}

const TERMINAL_STEP: [&str; 3] = ["succeeded", "failed", "skipped"];

/// Applies what the workflow recorded: each step's state (idempotent upserts: recording the
/// same thing twice changes nothing), then the run's.
#[tracing::instrument(skip_all, fields(run = %r.run.run_id, status = r.status))]
pub async fn record(conn: &mut PgConnection, r: &RecordRun) -> Result<()> {
    for step in &r.steps {
        let output = step.output.as_ref().map(output_summary);
        let error = (step.status == "failed").then(|| step.reason.clone()).flatten();
        sqlx::query!(
            "INSERT INTO playbook_steps (tenant_id, run_id, step_id, action, status, reason, output, error, finished_at)
             SELECT r.tenant_id, r.id, $2, $3, $4, $5, $6, $7, CASE WHEN $4 = ANY($8) THEN archer_now() END
               FROM playbook_runs r WHERE r.id = $1
             ON CONFLICT (run_id, step_id) DO UPDATE
                SET status = EXCLUDED.status,
                    reason = EXCLUDED.reason,
                    output = CASE WHEN EXCLUDED.status IN ('pending', 'running') THEN NULL
                                  ELSE COALESCE(EXCLUDED.output, playbook_steps.output) END,
                    error = CASE WHEN EXCLUDED.status = 'failed' THEN COALESCE(EXCLUDED.error, playbook_steps.error) END,
                    finished_at = CASE WHEN NOT EXCLUDED.status = ANY($8) THEN NULL
                                       WHEN playbook_steps.status = EXCLUDED.status
                                           THEN COALESCE(playbook_steps.finished_at, archer_now())
                                       ELSE archer_now() END,
                    updated_at = archer_now()",
            r.run.run_id,
            step.step,
            step.action,
            step.status,
            step.reason,
            output,
            error,
            &TERMINAL_STEP.map(str::to_owned)[..]
        )
        .execute(&mut *conn)
        .await?;
    }
    let done = sqlx::query!(
        "UPDATE playbook_runs
            SET status = $2, error = $3, updated_at = archer_now(),
                finished_at = CASE WHEN $2 NOT IN ('succeeded', 'failed', 'cancelled') THEN NULL
                                   WHEN status = $2 THEN COALESCE(finished_at, archer_now())
                                   ELSE archer_now() END
          WHERE id = $1",
        r.run.run_id,
        r.status,
        r.error
    )
    .execute(&mut *conn)
    .await?;
    if done.rows_affected() == 0 {
        return Err(StoreError::NotFound);
    }
    Ok(())
}

/// An activity began executing `step` (attempt `attempt` of round `round`): the step is
/// running, and so is its run. A step that already succeeded in this round is left alone
/// (a late duplicate); returns whether anything changed.
pub async fn step_started(conn: &mut PgConnection, run_id: Uuid, step: &str, round: u32, attempt: u32) -> Result<bool> {
    let (round, attempt) = (i32::try_from(round).unwrap_or(i32::MAX), i32::try_from(attempt).unwrap_or(i32::MAX));
    let done = sqlx::query!(
        "UPDATE playbook_steps
            SET status = 'running', attempts = $4, reason = NULL, error = NULL, output = NULL, finished_at = NULL,
                started_at = CASE WHEN status = 'running' AND round = $3 THEN started_at ELSE archer_now() END,
                round = $3, updated_at = archer_now()
          WHERE run_id = $1 AND step_id = $2 AND NOT (status = 'succeeded' AND round >= $3)",
        run_id,
        step,
        round,
        attempt
    )
    .execute(&mut *conn)
    .await?;
    sqlx::query!(
        "UPDATE playbook_runs SET status = 'running', updated_at = archer_now() WHERE id = $1 AND status = 'pending'",
        run_id
    )
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// `step` succeeded with `output` (stored as [`output_summary`]).
pub async fn step_succeeded(conn: &mut PgConnection, run_id: Uuid, step: &str, output: &Value) -> Result<()> {
    let output = output_summary(output);
    let done = sqlx::query!(
        "UPDATE playbook_steps
            SET status = 'succeeded', output = $3, reason = NULL, error = NULL,
                finished_at = CASE WHEN status = 'succeeded' THEN COALESCE(finished_at, archer_now()) ELSE archer_now() END,
                updated_at = archer_now()
          WHERE run_id = $1 AND step_id = $2",
        run_id,
        step,
        output
    )
    .execute(conn)
    .await?;
    if done.rows_affected() == 0 {
        return Err(StoreError::NotFound);
    }
    Ok(())
}

/// `step` failed for good with `error`.
pub async fn step_failed(conn: &mut PgConnection, run_id: Uuid, step: &str, error: &str) -> Result<()> {
    let done = sqlx::query!(
        "UPDATE playbook_steps
            SET status = 'failed', error = $3,
                finished_at = CASE WHEN status = 'failed' THEN COALESCE(finished_at, archer_now()) ELSE archer_now() END,
                updated_at = archer_now()
          WHERE run_id = $1 AND step_id = $2",
        run_id,
        step,
        error
    )
    .execute(conn)
    .await?;
    if done.rows_affected() == 0 {
        return Err(StoreError::NotFound);
    }
    Ok(())
}

/// A run by id.
pub async fn run_row(conn: &mut PgConnection, run_id: Uuid) -> Result<RunRow> {
    sqlx::query_as!(
        RunRow,
        r#"SELECT r.id, r.tenant_id, r.playbook_id, p.name AS playbook, r.version_id, v.version, r.ticket_id, r.run_number,
                  r.workflow_id, r.trigger, r.inputs, r.status, r.error, r.started_by, r.created_at, r.updated_at,
                  r.finished_at
             FROM playbook_runs r JOIN playbooks p ON p.id = r.playbook_id JOIN playbook_versions v ON v.id = r.version_id
            WHERE r.id = $1"#,
        run_id
    )
    .fetch_optional(conn)
    .await?
    .ok_or(StoreError::NotFound)
}

/// The steps of `runs`, by run, in the document's order.
async fn steps_of(conn: &mut PgConnection, runs: &[Uuid]) -> Result<BTreeMap<Uuid, Vec<StepRow>>> {
    let rows = sqlx::query_as!(
        StepRow,
        "SELECT run_id, step_id, action, status, round, attempts, reason, output, error, started_at, finished_at,
                updated_at
           FROM playbook_steps WHERE run_id = ANY($1) ORDER BY run_id, position, step_id",
        runs
    )
    .fetch_all(conn)
    .await?;
    let mut by_run: BTreeMap<Uuid, Vec<StepRow>> = BTreeMap::new();
    for row in rows {
        by_run.entry(row.run_id).or_default().push(row);
    }
    Ok(by_run)
}

/// A run with its steps.
pub async fn run(conn: &mut PgConnection, run_id: Uuid) -> Result<RunDetail> {
    let run = run_row(conn, run_id).await?;
    let steps = steps_of(conn, &[run_id]).await?.remove(&run_id).unwrap_or_default();
    Ok(RunDetail { run, steps })
}

/// The runs on a ticket, oldest first, with their steps (for its timeline).
pub async fn runs_of_ticket(conn: &mut PgConnection, ticket_id: Uuid) -> Result<Vec<RunDetail>> {
    let runs = sqlx::query_as!(
        RunRow,
        r#"SELECT r.id, r.tenant_id, r.playbook_id, p.name AS playbook, r.version_id, v.version, r.ticket_id, r.run_number,
                  r.workflow_id, r.trigger, r.inputs, r.status, r.error, r.started_by, r.created_at, r.updated_at,
                  r.finished_at
             FROM playbook_runs r JOIN playbooks p ON p.id = r.playbook_id JOIN playbook_versions v ON v.id = r.version_id
            WHERE r.ticket_id = $1 ORDER BY r.created_at, r.id"#,
        ticket_id
    )
    .fetch_all(&mut *conn)
    .await?;
    let ids: Vec<Uuid> = runs.iter().map(|r| r.id).collect();
    let mut steps = steps_of(conn, &ids).await?;
    Ok(runs.into_iter().map(|run| RunDetail { steps: steps.remove(&run.id).unwrap_or_default(), run }).collect())
}

/// Asks a failed run to run its failed steps again (signal `RetryRun`).
pub async fn request_retry(conn: &mut PgConnection, run_id: Uuid, by: Option<Uuid>) -> Result<RunRow, PlaybookError> {
    let run = run_row(conn, run_id).await?;
    if run.status != "failed" {
        return Err(PlaybookError::State(format!("the run is {}; only a failed run can be retried", run.status)));
    }
    outbox::signal(conn, run.tenant_id, &run.workflow_id, &RetryRun { by }).await?;
    Ok(run)
}

/// Asks a run that has not finished (pending, running, or failed and waiting) to stop (signal
/// `CancelRun`).
pub async fn request_cancel(
    conn: &mut PgConnection,
    run_id: Uuid,
    by: Option<Uuid>,
    reason: &str,
) -> Result<RunRow, PlaybookError> {
    let run = run_row(conn, run_id).await?;
    if !matches!(run.status.as_str(), "pending" | "running" | "failed") {
        return Err(PlaybookError::State(format!("the run is {}; it can no longer be cancelled", run.status)));
    }
    let signal = CancelRun { by, reason: reason.to_owned() };
    outbox::signal(conn, run.tenant_id, &run.workflow_id, &signal).await?;
    Ok(run)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn item_slugs_are_lower_case_with_dashes() {
        assert_eq!(item_slug("New starter"), "new-starter");
        assert_eq!(item_slug("  Laptop (13\") / Mac "), "laptop-13-mac");
        assert_eq!(item_slug("VPN"), "vpn");
    }

    #[test]
    fn sla_facts_fire_their_trigger_with_the_fact_as_the_event_and_escalations_none() {
        use archer_orchestrator::sla::policy::Metric;
        let at: jiff::Timestamp = "2026-12-01T10:15:00Z".parse().unwrap();
        let warning = Fact::Warning { metric: Metric::FirstResponse, cycle: 2, percent: 75, at };
        assert_eq!(
            sla_trigger(&warning),
            Some((
                "sla_warning",
                json!({"metric": "first_response", "cycle": 2, "kind": "warning", "percent": 75, "at": "2026-12-01T10:15:00Z"})
            ))
        );
        let breach = Fact::Breach { metric: Metric::Resolution, cycle: 1, at };
        assert_eq!(
            sla_trigger(&breach),
            Some((
                "sla_breach",
                json!({"metric": "resolution", "cycle": 1, "kind": "breach", "percent": null, "at": "2026-12-01T10:15:00Z"})
            ))
        );
        let escalation = Fact::Escalation {
            level: 0,
            name: "x".into(),
            metric: Metric::Resolution,
            cycle: 1,
            due_at: at,
            fired_at: at,
        };
        assert_eq!(sla_trigger(&escalation), None);
    }

    #[test]
    fn large_outputs_are_replaced_by_a_note() {
        let small = json!({"id": 42});
        assert_eq!(output_summary(&small), small);
        let big = json!({"blob": "x".repeat(MAX_OUTPUT_BYTES)});
        let stored = output_summary(&big);
        assert_eq!(stored["_truncated"], true);
        assert!(stored["note"].as_str().unwrap().contains("larger than 8192"));
    }

    #[test]
    fn run_contexts_are_marked_as_playbook_writes() {
        let ctx = run_audit_context("acme/INC-000001/playbook/p/1", None);
        assert_eq!(ctx.request_id.as_deref(), Some("playbook:acme/INC-000001/playbook/p/1"));
    }
}
