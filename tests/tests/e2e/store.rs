//! The one write path for tickets (`archer_store::changes`), on a database of its own without
//! an API or a relay: what a domain command decided becomes the ticket row, its audit rows and
//! its outbox rows in one transaction, and what it refused writes nothing.

use archer_orchestrator::access::{Permission, Permissions};
use archer_orchestrator::commands::ticket::{Actor, Decision, NewComment, NewTicket, TicketChange};
use archer_orchestrator::workflows::{approval as approval_wf, ticket as ticket_wf};
use archer_orchestrator::{Impact, Status, TenantSlug, TicketKind, Urgency};
use archer_store::tickets::TicketRow;
use archer_store::{AuditContext, Db, TenantTx, changes, tickets};
use serde_json::Value;
use uuid::Uuid;

/// A tenant with one agent, on a fresh database.
struct World {
    db: Db,
    tenant_id: Uuid,
    tenant: TenantSlug,
    agent: Actor,
}

async fn world() -> World {
    let db = archer_tests::fresh_db().await;
    let slug = archer_tests::unique_slug("s");
    let tenant_id = archer_api::seed::provision_tenant(&db, &slug, "Store").await.unwrap();
    let agent_id =
        archer_api::seed::provision_user(&db, tenant_id, "agent@store.example", "Agent", "x", &["agent"], None)
            .await
            .unwrap();
    let agent = Actor::user(agent_id, Permissions::new(Permission::ALL.to_vec()));
    World { db, tenant_id, tenant: TenantSlug::parse(&slug).unwrap(), agent }
}

impl World {
    async fn tx(&self) -> TenantTx {
        let ctx = AuditContext { actor_id: self.agent.user_id(), ..Default::default() };
        TenantTx::begin(&self.db, self.tenant_id, &ctx).await.unwrap()
    }

    async fn open(&self, kind: TicketKind) -> TicketRow {
        let change = kind == TicketKind::Change;
        let new = NewTicket {
            kind,
            title: "Printer jams".into(),
            description: String::new(),
            impact: Impact::new(3).unwrap(),
            urgency: Urgency::new(3).unwrap(),
            priority: None,
            requester_id: None,
            assignee_id: None,
            team_id: None,
            category: None,
            tags: Vec::new(),
            change_type: change.then_some(archer_orchestrator::catalog::ChangeType::Normal),
            risk: change.then_some(archer_orchestrator::catalog::Risk::Low),
        };
        let ticket = new.open(&self.agent).unwrap();
        let mut tx = self.tx().await;
        let row = changes::open(&mut tx, &self.tenant, &ticket).await.unwrap();
        tx.commit().await.unwrap();
        row
    }

    /// Decides `change` on the stored ticket and persists it, as the API does.
    async fn change(&self, id: Uuid, change: TicketChange) -> TicketRow {
        let mut tx = self.tx().await;
        let old = tickets::lock(&mut tx, id).await.unwrap();
        let decision = self.decide(&mut tx, &old, &change).await;
        let row = changes::apply(&mut tx, &self.tenant, &old, decision, &self.agent).await.unwrap();
        tx.commit().await.unwrap();
        row
    }

    async fn decide(&self, tx: &mut TenantTx, old: &TicketRow, change: &TicketChange) -> Decision {
        let now = changes::to_jiff(archer_store::tx_now(tx).await.unwrap());
        changes::snapshot(old).unwrap().apply(change, &self.agent, now).unwrap()
    }

    /// The outbox rows of a workflow, in order: (intent, name, payload).
    async fn outbox(&self, workflow_id: &str) -> Vec<(String, String, Value)> {
        sqlx::query_as("SELECT intent, name, payload FROM outbox WHERE workflow_id = $1 ORDER BY id")
            .bind(workflow_id)
            .fetch_all(self.db.pool())
            .await
            .unwrap()
    }

    async fn count(&self, sql: &str, id: Uuid) -> i64 {
        sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned())).bind(id).fetch_one(self.db.pool()).await.unwrap()
    }

    /// What the ticket left behind so far: its version, its audit rows and its outbox rows.
    async fn written(&self, row: &TicketRow) -> (i64, i64, usize) {
        let version = self.count("SELECT version::bigint FROM tickets WHERE id = $1", row.id).await;
        let audit = self.count("SELECT count(*) FROM audit_log WHERE entity_id = $1::text", row.id).await;
        (version, audit, self.outbox(&self.workflow_id(row)).await.len())
    }

    fn workflow_id(&self, row: &TicketRow) -> String {
        ticket_wf::workflow_id(&self.tenant, &changes::parse(row).unwrap().number)
    }
}

fn to(status: Status) -> TicketChange {
    TicketChange { status: Some(status), ..TicketChange::default() }
}

#[tokio::test]
async fn a_create_writes_the_ticket_its_audit_row_and_one_start() {
    let w = world().await;
    let row = w.open(TicketKind::Incident).await;
    assert_eq!(w.count("SELECT count(*) FROM tickets WHERE id = $1", row.id).await, 1);
    let audit = "SELECT count(*) FROM audit_log WHERE entity_id = $1::text AND action = 'tickets.insert'";
    assert_eq!(w.count(audit, row.id).await, 1);
    let outbox = w.outbox(&w.workflow_id(&row)).await;
    assert_eq!(outbox.len(), 1, "{outbox:?}");
    let (intent, name, payload) = &outbox[0];
    assert_eq!((intent.as_str(), name.as_str()), ("start", ticket_wf::WORKFLOW_TYPE));
    assert_eq!(payload["input"]["ticket_id"], Value::from(row.id.to_string()));
    assert_eq!(payload["title"], "Printer jams");
    // the statement writes the number only it knows into the workflow's id and input
    let number = changes::parse(&row).unwrap().number;
    assert_eq!(payload["input"]["number"], Value::from(number.to_string()));
    assert_eq!(w.workflow_id(&row), format!("{}/{number}", w.tenant));
    let created = row.created_at.format(&time::format_description::well_known::Rfc3339).unwrap();
    assert_eq!(payload["input"]["created_at"], Value::from(created));
    assert_eq!(payload["input"]["seq"], Value::from(row.event_seq));
    // consecutive creates take consecutive numbers
    let next = w.open(TicketKind::Incident).await;
    assert_eq!(next.number, row.number + 1);
}

/// The create statement names the workflow with `archer_ticket_number`, which must write a
/// number exactly as `TicketNumber` does, on both sides of six digits.
#[tokio::test]
async fn the_database_writes_ticket_numbers_as_the_domain_does() {
    let db = archer_tests::fresh_db().await;
    for kind in TicketKind::ALL {
        for n in [1u32, 45, 99_999, 999_999, 1_000_000, 1_234_567, i32::MAX as u32] {
            let sql: String = sqlx::query_scalar("SELECT archer_ticket_number($1, $2)")
                .bind(kind.prefix())
                .bind(n as i32)
                .fetch_one(db.pool())
                .await
                .unwrap();
            assert_eq!(sql, archer_orchestrator::TicketNumber::new(kind, n).unwrap().to_string());
        }
    }
}

#[tokio::test]
async fn a_change_writes_one_signal_per_event_with_consecutive_seq() {
    let w = world().await;
    let row = w.open(TicketKind::Incident).await;
    let change = TicketChange {
        status: Some(Status::InProgress),
        impact: Some(Impact::new(1).unwrap()),
        urgency: Some(Urgency::new(1).unwrap()),
        assignee_id: Some(w.agent.user_id()),
        ..TicketChange::default()
    };
    let saved = w.change(row.id, change).await;
    assert_eq!(saved.event_seq, row.event_seq + 3);
    assert_eq!(saved.version, row.version + 1);
    let signals: Vec<(String, i64)> = w.outbox(&w.workflow_id(&row)).await[1..]
        .iter()
        .map(|(intent, name, payload)| {
            assert_eq!(intent, "signal");
            (name.clone(), payload["seq"].as_i64().unwrap())
        })
        .collect();
    let seq = row.event_seq;
    assert_eq!(
        signals,
        [
            ("status_changed".to_owned(), seq + 1),
            ("priority_changed".to_owned(), seq + 2),
            ("assignment_changed".to_owned(), seq + 3)
        ]
    );
    let audit = "SELECT count(*) FROM audit_log WHERE entity_id = $1::text AND action = 'tickets.update'";
    assert_eq!(w.count(audit, row.id).await, 1);
}

#[tokio::test]
async fn only_public_comments_are_signalled() {
    let w = world().await;
    let row = w.open(TicketKind::Incident).await;
    let agent = w.agent.user_id().unwrap();
    let mut tx = w.tx().await;
    for internal in [true, false] {
        let voice = changes::snapshot(&row).unwrap().comment(&NewComment { internal }, &w.agent).unwrap();
        changes::comment(&mut tx, &w.tenant, &row, agent, voice, "Looking into it", internal).await.unwrap();
    }
    tx.commit().await.unwrap();
    assert_eq!(w.count("SELECT count(*) FROM ticket_comments WHERE ticket_id = $1", row.id).await, 2);
    let outbox = w.outbox(&w.workflow_id(&row)).await;
    let names: Vec<&str> = outbox.iter().map(|(_, name, _)| name.as_str()).collect();
    assert_eq!(names, [ticket_wf::WORKFLOW_TYPE, "comment_added"]);
    // the agent opened the ticket for themselves: they speak as its customer
    assert_eq!(outbox[1].2["author"], "customer");
    assert_eq!(outbox[1].2["seq"], row.event_seq + 1);
}

#[tokio::test]
async fn an_approval_follow_up_writes_the_approval_and_its_intents() {
    let w = world().await;
    let row = w.open(TicketKind::Change).await;
    w.change(row.id, to(Status::Assess)).await;
    w.change(row.id, to(Status::Authorize)).await;
    let approval: (Uuid, String, i32) = sqlx::query_as("SELECT id, state, seq FROM approvals WHERE ticket_id = $1")
        .bind(row.id)
        .fetch_one(w.db.pool())
        .await
        .unwrap();
    assert_eq!(approval.1, "pending");
    let ticket_workflow = w.workflow_id(&row);
    let request = w.outbox(&approval_wf::request_workflow_id(&ticket_workflow, approval.2)).await;
    assert_eq!(request.len(), 1, "{request:?}");
    assert_eq!((request[0].0.as_str(), request[0].1.as_str()), ("start", approval_wf::REQUEST_TYPE));
    assert_eq!(request[0].2["waiting_in"], "authorize");

    // sent back to assessment: the pending approval is cancelled and its chain told so
    w.change(row.id, to(Status::Assess)).await;
    let (state, reason): (String, Option<String>) = sqlx::query_as("SELECT state, reason FROM approvals WHERE id = $1")
        .bind(approval.0)
        .fetch_one(w.db.pool())
        .await
        .unwrap();
    assert_eq!(state, "cancelled");
    assert_eq!(reason.as_deref(), Some("the ticket moved from authorize to assess before its approval ended"));
    let chain = approval_wf::chain_workflow_id(&ticket_workflow, approval.2);
    let cancel = w.outbox(&chain).await;
    assert_eq!(cancel.iter().map(|(i, n, _)| (i.as_str(), n.as_str())).collect::<Vec<_>>(), [("signal", "cancel")]);
}

#[tokio::test]
async fn a_refused_or_empty_change_writes_nothing() {
    let w = world().await;
    let row = w.open(TicketKind::Incident).await;
    let before = w.written(&row).await;

    // refused by the command: nothing reaches the store
    let mut tx = w.tx().await;
    let old = tickets::lock(&mut tx, row.id).await.unwrap();
    let requester = Actor::user(Uuid::now_v7(), Permissions::new(vec![Permission::TicketCreate]));
    let now = changes::to_jiff(archer_store::tx_now(&mut tx).await.unwrap());
    assert!(changes::snapshot(&old).unwrap().apply(&to(Status::Resolved), &requester, now).is_err());
    tx.commit().await.unwrap();

    // decided, but changing nothing: the store writes nothing
    let same = TicketChange { title: Some(row.title.clone()), status: Some(Status::New), ..TicketChange::default() };
    let saved = w.change(row.id, same).await;
    assert_eq!((saved.version, saved.event_seq), (row.version, row.event_seq));
    assert_eq!(w.written(&row).await, before);
}
