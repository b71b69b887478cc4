//! Realistic ticket volumes for benchmarks and query-plan tests: a tenant's tickets generated
//! in PostgreSQL itself (`generate_series`), so a million take minutes, not hours.
//!
//! The rows go through what real rows go through: the tenant's transaction as `archer_app`
//! (row-level security, its `WITH CHECK`), every constraint of `tickets` (kinds, numbers unique
//! per kind, title length, impact/urgency/priority ranges, the requester, assignee and team
//! foreign keys) and the audit trigger (one audit row per ticket, as in production). Numbers
//! follow on from the tenant's counters, which are moved past them, so tickets created later
//! through the API get the next numbers. Tickets that are still open get an SLA projection
//! (`ticket_sla`) copied from a real ticket's (its policy, assignment and clocks), with a due
//! instant spread around now, so the SLA-due sort and the SLA-state filters have work to do.
//!
//! The mix (deterministic: a hash of the row's position): kinds 50 % incidents, 30 % service
//! requests, 10 % changes, 5 % problems, 5 % tasks; statuses per kind, a third to a half still
//! open; impact and urgency 1–4 (the priority from the matrix); 80 % assigned (to the given
//! agents, evenly), teams evenly; titles from an IT help desk's vocabulary ("printer" in one
//! title of 24); created over the last two years.

use std::time::Instant;

use sqlx::PgConnection;
use uuid::Uuid;

use archer_store::{AuditContext, Db, TenantTx};

/// Who and what the generated tickets refer to.
pub struct Population {
    pub tenant_id: Uuid,
    pub requesters: Vec<Uuid>,
    pub agents: Vec<Uuid>,
    pub teams: Vec<Uuid>,
    /// A real ticket whose SLA projection open tickets copy (none: no projection).
    pub sla_from: Option<Uuid>,
}

/// Rows per transaction.
const BATCH: i64 = 50_000;

/// Generates `n` tickets in the population's tenant, in transactions of [`BATCH`], calling
/// `progress(done, n)` after each; then analyzes the tables, as autovacuum would.
pub async fn generate_tickets(db: &Db, pop: &Population, n: i64, mut progress: impl FnMut(i64, i64)) {
    let ctx = AuditContext { request_id: Some("bench:generate".into()), ..Default::default() };
    let mut done = 0;
    while done < n {
        let size = BATCH.min(n - done);
        let mut tx = TenantTx::begin(db, pop.tenant_id, &ctx).await.expect("tenant transaction");
        insert_batch(&mut tx, pop, done, size).await;
        advance_counters(&mut tx).await;
        tx.commit().await.expect("commit");
        done += size;
        progress(done, n);
    }
    let mut conn = db.pool().acquire().await.expect("connection");
    sqlx::raw_sql("ANALYZE tickets; ANALYZE ticket_sla; ANALYZE audit_log").execute(&mut *conn).await.expect("analyze");
}

/// The batch's tickets (rows `offset + 1 ..= offset + size` of the series) and the SLA
/// projections of those still open, in one statement.
async fn insert_batch(conn: &mut PgConnection, pop: &Population, offset: i64, size: i64) {
    let started = Instant::now();
    sqlx::query(INSERT)
        .bind(offset)
        .bind(size)
        .bind(pop.tenant_id)
        .bind(&pop.requesters)
        .bind(&pop.agents)
        .bind(&pop.teams)
        .bind(pop.sla_from)
        .execute(conn)
        .await
        .unwrap_or_else(|e| panic!("generating tickets {offset}+{size}: {e}"));
    tracing::debug!(size, elapsed = ?started.elapsed(), "batch inserted");
}

const INSERT: &str = r#"
WITH series AS (
    SELECT g,
           (hashint8(g) & 9223372036854775807) AS h1,
           (hashint8(g + 7919) & 9223372036854775807) AS h2,
           (hashint8(g + 104729) & 9223372036854775807) AS h3
      FROM generate_series($1 + 1, $1 + $2) AS g
), shaped AS (
    SELECT g, h1, h2, h3,
           CASE WHEN h1 % 20 < 10 THEN 'incident'
                WHEN h1 % 20 < 16 THEN 'service_request'
                WHEN h1 % 20 < 18 THEN 'change'
                WHEN h1 % 20 < 19 THEN 'problem'
                ELSE 'task' END AS kind,
           1 + (h2 % 4)::int AS impact,
           1 + ((h2 / 4) % 4)::int AS urgency,
           (h3 % 100)::int AS life
      FROM series
), numbered AS (
    SELECT s.*,
           COALESCE((SELECT last_number FROM ticket_counters c
                      WHERE c.tenant_id = $3 AND c.kind = s.kind), 0)
             + row_number() OVER (PARTITION BY s.kind ORDER BY s.g) AS number,
           now() - make_interval(secs => (s.h3 % (2 * 365 * 86400))::float8) AS created
      FROM shaped s
)
, inserted AS (
INSERT INTO tickets (id, tenant_id, kind, number, title, description, requester_id, assignee_id, team_id,
                     impact, urgency, priority, category, status, tags, created_at, updated_at,
                     resolved_at, closed_at, change_type, risk)
SELECT gen_random_uuid(), $3, n.kind, n.number,
       (ARRAY['Printer', 'VPN', 'Laptop', 'Email', 'Password reset', 'Wi-Fi', 'Monitor', 'Outlook',
              'SAP', 'Badge', 'Teams', 'Docking station'])[1 + n.h1 % 12]
         || ' ' ||
       (ARRAY['not working', 'is slow', 'request', 'keeps disconnecting', 'access needed', 'error'])[1 + (n.h2 / 16) % 6]
         || ' (' || n.g || ')',
       'Reported from the ' || (ARRAY['third', 'fourth', 'fifth'])[1 + n.h3 % 3] || ' floor; '
         || (ARRAY['happens every morning', 'since the last update', 'for the whole team',
                   'only on battery', 'after the password change'])[1 + (n.h1 / 12) % 5] || '.',
       ($4::uuid[])[1 + n.h3 % cardinality($4::uuid[])],
       CASE WHEN n.h2 % 10 < 8 THEN ($5::uuid[])[1 + (n.h1 / 7) % cardinality($5::uuid[])] END,
       ($6::uuid[])[1 + (n.h2 / 13) % cardinality($6::uuid[])],
       n.impact, n.urgency,
       ('{{1,1,2,3},{1,2,3,3},{2,3,3,4},{3,3,4,4}}'::smallint[])[n.impact][n.urgency],
       (ARRAY['hardware', 'software', 'network', 'access', 'other'])[1 + n.h2 % 5],
       st.status,
       CASE WHEN n.h1 % 9 = 0 THEN ARRAY['vip'] ELSE '{}'::text[] END,
       n.created,
       n.created + make_interval(secs => (n.h2 % 86400)::float8),
       CASE WHEN st.status IN ('resolved', 'closed') THEN n.created + interval '1 day' END,
       CASE WHEN st.status = 'closed' THEN n.created + interval '4 days' END,
       CASE WHEN n.kind = 'change' THEN 'normal' END,
       CASE WHEN n.kind = 'change' THEN 'medium' END
  FROM numbered n
 CROSS JOIN LATERAL (
    SELECT CASE n.kind
        WHEN 'change' THEN (ARRAY['assess', 'scheduled', 'implement', 'review', 'closed', 'closed',
                                  'closed', 'closed', 'cancelled', 'closed'])[1 + n.life % 10]
        WHEN 'problem' THEN (ARRAY['new', 'root_cause_analysis', 'fix_in_progress', 'resolved', 'closed',
                                   'closed', 'closed', 'closed', 'closed', 'closed'])[1 + n.life % 10]
        WHEN 'task' THEN (ARRAY['new', 'in_progress', 'in_progress', 'closed', 'closed', 'closed', 'closed',
                                'closed', 'cancelled', 'closed'])[1 + n.life % 10]
        ELSE (ARRAY['new', 'new', 'in_progress', 'in_progress', 'waiting_on_customer', 'resolved',
                    'closed', 'closed', 'closed', 'cancelled'])[1 + n.life % 10]
    END AS status
 ) st
RETURNING id, tenant_id, status, number
)
INSERT INTO ticket_sla (ticket_id, tenant_id, policy_id, policy_version, calendar_id, calendar_version,
                        assignment, clocks, state, next_due_at)
SELECT i.id, i.tenant_id, s.policy_id, s.policy_version, s.calendar_id, s.calendar_version, s.assignment, s.clocks,
       CASE WHEN (hashint8(i.number) & 255) < 26 THEN 'breached'
            WHEN (hashint8(i.number) & 255) < 52 THEN 'warning'
            WHEN i.status = 'waiting_on_customer' THEN 'paused'
            ELSE 'running' END,
       now() + make_interval(secs => ((hashint8(i.number + 31) & 1048575)::float8 * 8 * 86400 / 1048576 - 86400))
  FROM inserted i, ticket_sla s
 WHERE s.ticket_id = $7
   AND i.status NOT IN ('resolved', 'closed', 'cancelled', 'rejected')
"#;

/// Moves the tenant's counters past the numbers generated, so the API numbers on.
async fn advance_counters(conn: &mut PgConnection) {
    sqlx::query(
        "INSERT INTO ticket_counters (tenant_id, kind, last_number)
         SELECT tenant_id, kind, max(number) FROM tickets WHERE tenant_id = archer_current_tenant() GROUP BY tenant_id, kind
         ON CONFLICT (tenant_id, kind) DO UPDATE SET last_number = GREATEST(ticket_counters.last_number, EXCLUDED.last_number)",
    )
    .execute(conn)
    .await
    .expect("counters");
}
