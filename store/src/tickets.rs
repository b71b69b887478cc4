//! Tickets, their numbers, comments and links.

use std::fmt::Display;
use std::str::FromStr;

use sqlx::error::BoxDynError;
use sqlx::postgres::{PgTypeInfo, PgValueRef};
use sqlx::{Decode, PgConnection, Postgres, QueryBuilder, Type};
use time::OffsetDateTime;
use uuid::Uuid;

use archer_orchestrator::{LinkKind, Status, TicketKind};

use crate::sla::NewTicketSla;
use crate::{Result, StoreError};

/// A domain enum stored as its name in a `text` column (`TicketKind`, `Status`, `LinkKind`),
/// decoded through `FromStr`: a row holding a name this build does not know fails to decode
/// instead of travelling on as a string. The domain crate knows nothing of sqlx, so the mapping
/// lives here. Queries name it in their column overrides (`kind AS "kind: Text<TicketKind>"`);
/// rows hold the enum itself, and writes bind its `as_str()`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Text<T>(pub T);

impl<T> Type<Postgres> for Text<T> {
    fn type_info() -> PgTypeInfo {
        <&str as Type<Postgres>>::type_info()
    }

    fn compatible(ty: &PgTypeInfo) -> bool {
        <&str as Type<Postgres>>::compatible(ty)
    }
}

impl<'r, T: FromStr> Decode<'r, Postgres> for Text<T>
where
    T::Err: Display,
{
    fn decode(value: PgValueRef<'r>) -> std::result::Result<Self, BoxDynError> {
        let name = <&str as Decode<Postgres>>::decode(value)?;
        name.parse().map(Text).map_err(|e: T::Err| e.to_string().into())
    }
}

macro_rules! stored_as_text {
    ($($t:ty),*) => {$(
        impl From<Text<$t>> for $t {
            fn from(t: Text<$t>) -> $t {
                t.0
            }
        }
    )*};
}

stored_as_text!(TicketKind, Status, LinkKind);

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TicketRow {
    pub id: Uuid,
    pub tenant_id: Uuid,
    #[sqlx(try_from = "Text<TicketKind>")]
    pub kind: TicketKind,
    pub number: i32,
    pub title: String,
    pub description: String,
    pub requester_id: Uuid,
    pub assignee_id: Option<Uuid>,
    pub team_id: Option<Uuid>,
    pub impact: i16,
    pub urgency: i16,
    pub priority: i16,
    pub priority_reason: Option<String>,
    pub category: Option<String>,
    #[sqlx(try_from = "Text<Status>")]
    pub status: Status,
    pub tags: Vec<String>,
    pub version: i32,
    pub event_seq: i64,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
    pub resolved_at: Option<OffsetDateTime>,
    pub closed_at: Option<OffsetDateTime>,
    pub change_type: Option<String>,
    pub risk: Option<String>,
    pub catalog_item_id: Option<Uuid>,
    pub catalog_item_version: Option<i32>,
    pub request_fields: Option<serde_json::Value>,
}

const COLUMNS: &str = "t.id, t.tenant_id, t.kind, t.number, t.title, t.description, t.requester_id, t.assignee_id, \
     t.team_id, t.impact, t.urgency, t.priority, t.priority_reason, t.category, t.status, t.tags, t.version, \
     t.event_seq, t.created_at, t.updated_at, t.resolved_at, t.closed_at, t.change_type, t.risk, t.catalog_item_id, \
     t.catalog_item_version, t.request_fields";

/// Tickets with their SLA projection, for filters and sorting on SLA state and due time.
const FROM: &str = " FROM tickets t LEFT JOIN ticket_sla s ON s.ticket_id = t.id";

/// Tickets without a running clock sort after every due instant. The ticket's copy of its
/// projection's due instant, in the expression `tickets_sla_due` indexes (migration 0013).
const DUE: &str = "COALESCE(t.sla_due_at, '9999-12-31T00:00:00Z'::timestamptz)";

/// How far a list counts its matches: an exact count of a million rows on every page would
/// cost more than the page; beyond this, "at least this many" is what a person needs.
pub const COUNT_CAP: i64 = 1000;

/// One page of a list.
#[derive(Debug)]
pub struct Page {
    pub rows: Vec<TicketRow>,
    /// Whether more tickets follow this page.
    pub has_more: bool,
    /// The matches, counted up to [`COUNT_CAP`].
    pub total: i64,
    /// Whether `total` is every match (false: at least `total` match).
    pub total_exact: bool,
}

/// A ticket to create; the number is allocated here.
#[derive(Debug, Clone)]
pub struct NewTicket {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub kind: TicketKind,
    pub title: String,
    pub description: String,
    pub requester_id: Uuid,
    pub assignee_id: Option<Uuid>,
    pub team_id: Option<Uuid>,
    pub impact: i16,
    pub urgency: i16,
    pub priority: i16,
    pub priority_reason: Option<String>,
    pub category: Option<String>,
    pub status: Status,
    pub tags: Vec<String>,
    pub change_type: Option<String>,
    pub risk: Option<String>,
    pub catalog_item_id: Option<Uuid>,
    pub catalog_item_version: Option<i32>,
    pub request_fields: Option<serde_json::Value>,
}

/// Allocates the next number of the tenant's `kind` sequence. The counter row stays locked
/// until the transaction ends, so numbers are handed out in commit order, and a rollback gives
/// the number back: no gaps, no duplicates.
/// What a create writes beside the ticket, in the same statement: its SLA pin (when a policy
/// applies) and the intent to start its workflow, whose id and input name the number only
/// that statement knows.
pub struct Opening<'a> {
    pub sla: Option<&'a NewTicketSla<'a>>,
    /// The workflow id without the number (`<tenant>/`).
    pub workflow_prefix: &'a str,
    pub workflow_type: &'a str,
    /// The start intent's payload; the statement writes the number at `input.number`.
    pub payload: &'a serde_json::Value,
}

/// Inserts the ticket, numbered from the tenant's counter for its kind, with its SLA pin and
/// its workflow's start intent, in one statement.
///
/// The counter row is the one lock every create of a kind in the tenant queues behind, held
/// until the transaction commits. Taking it in the statement that does every write a create
/// makes (not in one of its own before them) keeps the time it is held to this statement and
/// the commit: no round trip to the API happens under it. Callers do their reads first (see
/// `changes::create`). Numbers stay gap-free: a transaction that rolls back rolls its
/// increment back too. Data-modifying `WITH` parts always run to completion; the SLA pin's
/// foreign key to the ticket is checked at the end of the statement, when the ticket exists.
pub async fn create(conn: &mut PgConnection, t: &NewTicket, opening: &Opening<'_>) -> Result<TicketRow> {
    let sla = opening.sla;
    Ok(sqlx::query_as!(
        TicketRow,
        r#"WITH counter AS (
               INSERT INTO ticket_counters (tenant_id, kind, last_number) VALUES ($2, $3, 1)
               ON CONFLICT (tenant_id, kind) DO UPDATE SET last_number = ticket_counters.last_number + 1
               RETURNING last_number),
           pin AS (
               INSERT INTO ticket_sla (ticket_id, tenant_id, policy_id, policy_version, calendar_id, calendar_version,
                                       assignment, clocks, state, next_due_at)
               SELECT $1::uuid, $2::uuid, $22::uuid, $23::int4, $24::uuid, $25::int4, $26::jsonb, $27::jsonb,
                      $28::text, $21::timestamptz
                WHERE $22::uuid IS NOT NULL),
           intent AS (
               INSERT INTO outbox (tenant_id, workflow_id, intent, name, payload, trace_context)
               SELECT $2::uuid, $29::text || archer_ticket_number($30::text, counter.last_number), 'start', $31::text,
                      jsonb_set($32::jsonb, '{input,number}',
                                to_jsonb(archer_ticket_number($30::text, counter.last_number))),
                      $33::text
                 FROM counter)
           INSERT INTO tickets (id, tenant_id, kind, number, title, description, requester_id, assignee_id,
                                team_id, impact, urgency, priority, priority_reason, category, status, tags,
                                change_type, risk, catalog_item_id, catalog_item_version, request_fields, sla_due_at)
           SELECT $1::uuid, $2::uuid, $3::text, counter.last_number, $4::text, $5::text, $6::uuid, $7::uuid,
                  $8::uuid, $9::int2, $10::int2, $11::int2, $12::text, $13::text, $14::text, $15::text[],
                  $16::text, $17::text, $18::uuid, $19::int4, $20::jsonb, $21::timestamptz
             FROM counter
           RETURNING id, tenant_id, kind AS "kind: Text<TicketKind>", number, title, description, requester_id,
                     assignee_id, team_id, impact, urgency, priority, priority_reason, category,
                     status AS "status: Text<Status>", tags, version, event_seq,
                     created_at, updated_at, resolved_at, closed_at, change_type, risk, catalog_item_id,
                     catalog_item_version, request_fields"#,
        t.id,
        t.tenant_id,
        t.kind.as_str(),
        t.title,
        t.description,
        t.requester_id,
        t.assignee_id,
        t.team_id,
        t.impact,
        t.urgency,
        t.priority,
        t.priority_reason,
        t.category,
        t.status.as_str(),
        &t.tags,
        t.change_type,
        t.risk,
        t.catalog_item_id,
        t.catalog_item_version,
        t.request_fields,
        sla.and_then(|s| s.next_due_at),
        sla.map(|s| s.policy_id),
        sla.map(|s| s.policy_version),
        sla.and_then(|s| s.calendar_id),
        sla.and_then(|s| s.calendar_version),
        sla.map(|s| s.assignment),
        sla.map(|s| s.clocks),
        sla.map(|s| s.state),
        opening.workflow_prefix,
        t.kind.prefix(),
        opening.workflow_type,
        opening.payload,
        crate::outbox::current_trace_context()
    )
    .fetch_one(conn)
    .await?)
}

pub async fn get(conn: &mut PgConnection, id: Uuid) -> Result<TicketRow> {
    sqlx::query_as!(
        TicketRow,
        r#"SELECT id, tenant_id, kind AS "kind: Text<TicketKind>", number, title, description, requester_id,
                assignee_id, team_id, impact, urgency, priority, priority_reason, category,
                status AS "status: Text<Status>", tags, version, event_seq,
                created_at, updated_at, resolved_at, closed_at, change_type, risk, catalog_item_id,
                catalog_item_version, request_fields
           FROM tickets WHERE id = $1"#,
        id
    )
    .fetch_optional(conn)
    .await?
    .ok_or(StoreError::NotFound)
}

pub async fn get_by_number(conn: &mut PgConnection, kind: TicketKind, number: i32) -> Result<TicketRow> {
    sqlx::query_as!(
        TicketRow,
        r#"SELECT id, tenant_id, kind AS "kind: Text<TicketKind>", number, title, description, requester_id,
                assignee_id, team_id, impact, urgency, priority, priority_reason, category,
                status AS "status: Text<Status>", tags, version, event_seq,
                created_at, updated_at, resolved_at, closed_at, change_type, risk, catalog_item_id,
                catalog_item_version, request_fields
           FROM tickets WHERE kind = $1 AND number = $2"#,
        kind.as_str(),
        number
    )
    .fetch_optional(conn)
    .await?
    .ok_or(StoreError::NotFound)
}

/// Reads a ticket and locks it until the transaction ends.
pub async fn lock(conn: &mut PgConnection, id: Uuid) -> Result<TicketRow> {
    sqlx::query_as!(
        TicketRow,
        r#"SELECT id, tenant_id, kind AS "kind: Text<TicketKind>", number, title, description, requester_id,
                assignee_id, team_id, impact, urgency, priority, priority_reason, category,
                status AS "status: Text<Status>", tags, version, event_seq,
                created_at, updated_at, resolved_at, closed_at, change_type, risk, catalog_item_id,
                catalog_item_version, request_fields
           FROM tickets WHERE id = $1 FOR UPDATE"#,
        id
    )
    .fetch_optional(conn)
    .await?
    .ok_or(StoreError::NotFound)
}

/// Writes a ticket's mutable fields, bumping its version. `t.version` must be the version
/// read; `t.event_seq` is stored as given (the caller numbered the events it emits).
pub async fn save(conn: &mut PgConnection, t: &TicketRow) -> Result<TicketRow> {
    let saved = sqlx::query_as!(
        TicketRow,
        r#"UPDATE tickets SET title = $3, description = $4, assignee_id = $5, team_id = $6, impact = $7,
                urgency = $8, priority = $9, priority_reason = $10, category = $11, status = $12, tags = $13,
                event_seq = $14, resolved_at = $15, closed_at = $16, change_type = $17, risk = $18,
                version = version + 1, updated_at = archer_now()
          WHERE id = $1 AND version = $2
          RETURNING id, tenant_id, kind AS "kind: Text<TicketKind>", number, title, description, requester_id,
                    assignee_id, team_id, impact, urgency, priority, priority_reason, category,
                    status AS "status: Text<Status>", tags, version, event_seq,
                    created_at, updated_at, resolved_at, closed_at, change_type, risk, catalog_item_id,
                    catalog_item_version, request_fields"#,
        t.id,
        t.version,
        t.title,
        t.description,
        t.assignee_id,
        t.team_id,
        t.impact,
        t.urgency,
        t.priority,
        t.priority_reason,
        t.category,
        t.status.as_str(),
        &t.tags,
        t.event_seq,
        t.resolved_at,
        t.closed_at,
        t.change_type,
        t.risk
    )
    .fetch_optional(&mut *conn)
    .await?;
    match saved {
        Some(row) => Ok(row),
        None => {
            let current = sqlx::query_scalar!("SELECT version FROM tickets WHERE id = $1", t.id)
                .fetch_optional(conn)
                .await?
                .ok_or(StoreError::NotFound)?;
            Err(StoreError::VersionConflict { current })
        }
    }
}

/// Takes the next event sequence number of a ticket without changing its fields (comments).
pub async fn next_event_seq(conn: &mut PgConnection, id: Uuid) -> Result<i64> {
    sqlx::query_scalar!("UPDATE tickets SET event_seq = event_seq + 1 WHERE id = $1 RETURNING event_seq", id)
        .fetch_optional(conn)
        .await?
        .ok_or(StoreError::NotFound)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortField {
    CreatedAt,
    UpdatedAt,
    Priority,
    /// The earliest upcoming breach of the ticket's running clocks.
    SlaDueAt,
}

impl SortField {
    fn column(self) -> &'static str {
        match self {
            SortField::CreatedAt => "t.created_at",
            SortField::UpdatedAt => "t.updated_at",
            SortField::Priority => "t.priority",
            SortField::SlaDueAt => DUE,
        }
    }
}

/// The position after the last row of a page, for keyset pagination.
#[derive(Debug, Clone, PartialEq)]
pub enum CursorValue {
    Time(OffsetDateTime),
    Int(i16),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Cursor {
    pub value: CursorValue,
    pub id: Uuid,
}

impl Cursor {
    /// The cursor that continues after `t` in `sort` order (`due`: the ticket's next SLA due
    /// instant, for that sort).
    pub fn after(t: &TicketRow, due: Option<OffsetDateTime>, sort: SortField) -> Self {
        let value = match sort {
            SortField::CreatedAt => CursorValue::Time(t.created_at),
            SortField::UpdatedAt => CursorValue::Time(t.updated_at),
            SortField::Priority => CursorValue::Int(t.priority),
            SortField::SlaDueAt => CursorValue::Time(due.unwrap_or(far_future())),
        };
        Cursor { value, id: t.id }
    }
}

fn far_future() -> OffsetDateTime {
    time::macros::datetime!(9999-12-31 00:00 UTC)
}

#[derive(Debug, Clone, PartialEq)]
pub enum AssigneeFilter {
    User(Uuid),
    Unassigned,
}

/// Tickets that ever breached an SLA target, whatever their clocks say now: the recorded breach
/// facts, which outlive cancelling, resolving and rebuilding (unlike `sla_states`, the live
/// projection).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BreachedFilter {
    /// Any target.
    Any,
    /// Any of these targets (`first_response`, `next_response`, `resolution`).
    Metrics(Vec<String>),
}

#[derive(Debug, Clone)]
pub struct TicketFilter {
    pub kinds: Vec<String>,
    pub statuses: Vec<String>,
    pub priorities: Vec<i16>,
    pub assignee: Option<AssigneeFilter>,
    pub team_id: Option<Uuid>,
    pub requester_id: Option<Uuid>,
    pub created_from: Option<OffsetDateTime>,
    pub created_to: Option<OffsetDateTime>,
    pub tag: Option<String>,
    pub category: Option<String>,
    /// Full-text search over title and description (web-search syntax).
    pub q: Option<String>,
    /// SLA states (`breached`, `warning`, `running`, `paused`, `met`, `cancelled`, `none`).
    pub sla_states: Vec<String>,
    /// Tickets that ever breached (any target, or one of those given).
    pub breached: Option<BreachedFilter>,
    pub sort: SortField,
    pub descending: bool,
    pub after: Option<Cursor>,
    pub offset: i64,
    pub limit: i64,
}

impl TicketFilter {
    /// Every ticket, newest first, `limit` a page: the list with no filter, which a filter or
    /// sort is written over (`TicketFilter { q: Some(..), ..TicketFilter::newest_first(50) }`).
    pub fn newest_first(limit: i64) -> Self {
        TicketFilter {
            kinds: Vec::new(),
            statuses: Vec::new(),
            priorities: Vec::new(),
            assignee: None,
            team_id: None,
            requester_id: None,
            created_from: None,
            created_to: None,
            tag: None,
            category: None,
            q: None,
            sla_states: Vec::new(),
            breached: None,
            sort: SortField::CreatedAt,
            descending: true,
            after: None,
            offset: 0,
            limit,
        }
    }
}

fn push_filters(b: &mut QueryBuilder<Postgres>, f: &TicketFilter) {
    b.push(" WHERE true");
    if !f.sla_states.is_empty() {
        b.push(" AND COALESCE(s.state, 'none') = ANY(").push_bind(f.sla_states.clone()).push(")");
    }
    if let Some(breached) = &f.breached {
        // a semi-join over the breach facts: index probes per ticket, or a scan of the tenant's
        // breaches (`sla_events_breaches`) when they are few
        b.push(
            " AND EXISTS (SELECT 1 FROM sla_events e WHERE e.tenant_id = t.tenant_id AND e.ticket_id = t.id \
             AND e.kind = 'breach'",
        );
        if let BreachedFilter::Metrics(metrics) = breached {
            b.push(" AND e.metric = ANY(").push_bind(metrics.clone()).push(")");
        }
        b.push(")");
    }
    if !f.kinds.is_empty() {
        b.push(" AND t.kind = ANY(").push_bind(f.kinds.clone()).push(")");
    }
    if !f.statuses.is_empty() {
        b.push(" AND t.status = ANY(").push_bind(f.statuses.clone()).push(")");
    }
    if !f.priorities.is_empty() {
        b.push(" AND t.priority = ANY(").push_bind(f.priorities.clone()).push(")");
    }
    match &f.assignee {
        Some(AssigneeFilter::User(id)) => {
            b.push(" AND t.assignee_id = ").push_bind(*id);
        }
        Some(AssigneeFilter::Unassigned) => {
            b.push(" AND t.assignee_id IS NULL");
        }
        None => {}
    }
    if let Some(team) = f.team_id {
        b.push(" AND t.team_id = ").push_bind(team);
    }
    if let Some(r) = f.requester_id {
        b.push(" AND t.requester_id = ").push_bind(r);
    }
    if let Some(from) = f.created_from {
        b.push(" AND t.created_at >= ").push_bind(from);
    }
    if let Some(to) = f.created_to {
        b.push(" AND t.created_at < ").push_bind(to);
    }
    if let Some(tag) = &f.tag {
        b.push(" AND ").push_bind(tag.clone()).push(" = ANY(t.tags)");
    }
    if let Some(c) = &f.category {
        b.push(" AND t.category = ").push_bind(c.clone());
    }
    if let Some(q) = &f.q {
        b.push(" AND t.search @@ websearch_to_tsquery('english', ").push_bind(q.clone()).push(")");
    }
}

/// One page of tickets: `limit` rows (one more is read to know whether more follow) and the
/// matches counted up to [`COUNT_CAP`] (an index walk of at most that many entries).
pub async fn list(conn: &mut PgConnection, f: &TicketFilter) -> Result<Page> {
    let mut rows = page_query(f, "").build_query_as::<TicketRow>().fetch_all(&mut *conn).await?;
    let has_more = rows.len() as i64 > f.limit;
    rows.truncate(usize::try_from(f.limit).unwrap_or(0));
    let counted: i64 = count_query(f, "").build_query_scalar().fetch_one(conn).await?;
    Ok(Page { rows, has_more, total: counted.min(COUNT_CAP), total_exact: counted <= COUNT_CAP })
}

/// The plans (`EXPLAIN (FORMAT JSON)`, with the filter's values) of a page and of its count:
/// what the query-plan test reads; with `analyze`, run, with their timings and buffers (what
/// the list benchmark's `--explain` prints).
pub async fn explain_list(conn: &mut PgConnection, f: &TicketFilter, analyze: bool) -> Result<[serde_json::Value; 2]> {
    let explain = if analyze { "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " } else { "EXPLAIN (FORMAT JSON) " };
    let page: serde_json::Value = page_query(f, explain).build_query_scalar().fetch_one(&mut *conn).await?;
    let count: serde_json::Value = count_query(f, explain).build_query_scalar().fetch_one(conn).await?;
    Ok([page, count])
}

/// The page's rows and one more.
fn page_query(f: &TicketFilter, prefix: &str) -> QueryBuilder<Postgres> {
    let mut b = QueryBuilder::<Postgres>::new(format!("{prefix}SELECT {COLUMNS}{FROM}"));
    push_filters(&mut b, f);
    let col = f.sort.column();
    let (cmp, dir) = if f.descending { ("<", "DESC") } else { (">", "ASC") };
    if let Some(c) = &f.after {
        b.push(format!(" AND ({col}, t.id) {cmp} ("));
        match &c.value {
            CursorValue::Time(t) => b.push_bind(*t),
            CursorValue::Int(i) => b.push_bind(*i),
        };
        b.push(", ").push_bind(c.id).push(")");
    }
    b.push(format!(" ORDER BY {col} {dir}, t.id {dir} LIMIT ")).push_bind(f.limit + 1);
    if f.after.is_none() && f.offset > 0 {
        b.push(" OFFSET ").push_bind(f.offset);
    }
    b
}

/// The matches, up to one more than [`COUNT_CAP`].
fn count_query(f: &TicketFilter, prefix: &str) -> QueryBuilder<Postgres> {
    let mut c = QueryBuilder::<Postgres>::new(format!("{prefix}SELECT count(*) FROM (SELECT 1{FROM}"));
    push_filters(&mut c, f);
    c.push(" LIMIT ").push_bind(COUNT_CAP + 1).push(") AS matches");
    c
}

#[derive(Debug, Clone)]
pub struct Comment {
    pub id: Uuid,
    pub ticket_id: Uuid,
    /// `None` for notes Archer wrote itself (escalations).
    pub author_id: Option<Uuid>,
    pub body: String,
    pub internal: bool,
    pub created_at: OffsetDateTime,
}

pub async fn add_comment(
    conn: &mut PgConnection,
    tenant_id: Uuid,
    ticket_id: Uuid,
    author_id: Option<Uuid>,
    body: &str,
    internal: bool,
) -> Result<Comment> {
    Ok(sqlx::query_as!(
        Comment,
        "INSERT INTO ticket_comments (id, tenant_id, ticket_id, author_id, body, internal)
         VALUES ($1, $2, $3, $4, $5, $6)
         RETURNING id, ticket_id, author_id, body, internal, created_at",
        Uuid::now_v7(),
        tenant_id,
        ticket_id,
        author_id,
        body,
        internal
    )
    .fetch_one(conn)
    .await?)
}

pub async fn comments(conn: &mut PgConnection, ticket_id: Uuid, include_internal: bool) -> Result<Vec<Comment>> {
    Ok(sqlx::query_as!(
        Comment,
        "SELECT id, ticket_id, author_id, body, internal, created_at FROM ticket_comments
          WHERE ticket_id = $1 AND ($2 OR NOT internal)
          ORDER BY created_at, id",
        ticket_id,
        include_internal
    )
    .fetch_all(conn)
    .await?)
}

#[derive(Debug, Clone)]
pub struct Link {
    pub id: Uuid,
    pub from_ticket_id: Uuid,
    pub to_ticket_id: Uuid,
    pub kind: LinkKind,
    pub created_by: Uuid,
    pub created_at: OffsetDateTime,
    /// The other ticket's kind and number, for display.
    pub other_kind: TicketKind,
    pub other_number: i32,
}

pub async fn add_link(
    conn: &mut PgConnection,
    tenant_id: Uuid,
    from: Uuid,
    to: Uuid,
    kind: LinkKind,
    created_by: Uuid,
) -> Result<Link> {
    let id = Uuid::now_v7();
    sqlx::query!(
        "INSERT INTO ticket_links (id, tenant_id, from_ticket_id, to_ticket_id, kind, created_by)
         VALUES ($1, $2, $3, $4, $5, $6)",
        id,
        tenant_id,
        from,
        to,
        kind.as_str(),
        created_by
    )
    .execute(&mut *conn)
    .await?;
    links(conn, from).await?.into_iter().find(|l| l.id == id).ok_or(StoreError::NotFound)
}

/// Links from and to a ticket.
pub async fn links(conn: &mut PgConnection, ticket_id: Uuid) -> Result<Vec<Link>> {
    Ok(sqlx::query_as!(
        Link,
        r#"SELECT l.id, l.from_ticket_id, l.to_ticket_id, l.kind AS "kind: Text<LinkKind>", l.created_by,
                  l.created_at, o.kind AS "other_kind: Text<TicketKind>", o.number AS other_number
             FROM ticket_links l
             JOIN tickets o ON o.id = CASE WHEN l.from_ticket_id = $1 THEN l.to_ticket_id ELSE l.from_ticket_id END
            WHERE l.from_ticket_id = $1 OR l.to_ticket_id = $1
            ORDER BY l.created_at, l.id"#,
        ticket_id
    )
    .fetch_all(conn)
    .await?)
}

pub async fn delete_link(conn: &mut PgConnection, ticket_id: Uuid, link_id: Uuid) -> Result<()> {
    let done = sqlx::query!(
        "DELETE FROM ticket_links WHERE id = $1 AND (from_ticket_id = $2 OR to_ticket_id = $2)",
        link_id,
        ticket_id
    )
    .execute(conn)
    .await?;
    if done.rows_affected() == 0 {
        return Err(StoreError::NotFound);
    }
    Ok(())
}
