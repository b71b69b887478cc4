//! Playbooks in the store (`archer_store::playbooks`, `connections`), on a database of its own
//! without an API or a relay: versions, runs and their outbox intents, the ticket triggers and
//! watches the write path fires, connection secrets at rest, and tenant isolation.

use archer_orchestrator::access::{Permission, Permissions};
use archer_orchestrator::commands::ticket::{Actor, NewComment, NewTicket, TicketChange};
use archer_orchestrator::workflows::playbook as pwf;
use archer_orchestrator::workflows::playbook_activities::{RecordRun, RunRef, StepRecord};
use archer_orchestrator::{Impact, Status, TenantSlug, TicketKind, Urgency};
use archer_store::connections::{self, Auth, ConnectionSpec};
use archer_store::playbooks::{self, PlaybookError, StartRun, TicketTrigger, VersionRow};
use archer_store::secrets::{Cipher, ExposeSecret, SecretString};
use archer_store::tickets::TicketRow;
use archer_store::{AuditContext, Db, TenantTx, changes, tickets};
use serde_json::{Value, json};
use uuid::Uuid;

const V1: &str = "name: onboarding
triggers:
  - manual
steps:
  - id: note
    action: ticket.comment
    with: { body: \"v1\" }
  - id: call
    action: http.request
    needs: [note]
";

const V2: &str = "name: onboarding
triggers:
  - manual
steps:
  - id: note
    action: ticket.comment
    with: { body: \"v2\" }
";

const ON_CREATE: &str = "name: p1-broadcast
triggers:
  - ticket_created: {}
steps:
  - id: note
    action: ticket.comment
    with: { body: \"seen\" }
";

struct World {
    db: Db,
    tenant_id: Uuid,
    tenant: TenantSlug,
    agent: Actor,
}

async fn world() -> World {
    let db = archer_tests::fresh_db().await;
    tenant(db).await
}

async fn tenant(db: Db) -> World {
    let slug = archer_tests::unique_slug("pb");
    let tenant_id = archer_api::seed::provision_tenant(&db, &slug, "Playbooks").await.unwrap();
    let email = format!("agent@{slug}.example");
    let agent_id =
        archer_api::seed::provision_user(&db, tenant_id, &email, "Agent", "x", &["admin"], None).await.unwrap();
    let agent = Actor::user(agent_id, Permissions::new(Permission::ALL.to_vec()));
    World { db, tenant_id, tenant: TenantSlug::parse(&slug).unwrap(), agent }
}

impl World {
    async fn tx(&self) -> TenantTx {
        self.tx_as(AuditContext { actor_id: self.agent.user_id(), ..Default::default() }).await
    }

    async fn tx_as(&self, ctx: AuditContext) -> TenantTx {
        TenantTx::begin(&self.db, self.tenant_id, &ctx).await.unwrap()
    }

    fn new_ticket(&self) -> archer_orchestrator::commands::ticket::Ticket {
        let new = NewTicket {
            kind: TicketKind::Incident,
            title: "VPN down".into(),
            description: String::new(),
            impact: Impact::new(2).unwrap(),
            urgency: Urgency::new(2).unwrap(),
            priority: None,
            requester_id: None,
            assignee_id: None,
            team_id: None,
            category: None,
            tags: Vec::new(),
            change_type: None,
            risk: None,
        };
        new.open(&self.agent).unwrap()
    }

    async fn open(&self) -> TicketRow {
        let mut tx = self.tx().await;
        let row = changes::open(&mut tx, &self.tenant, &self.new_ticket()).await.unwrap();
        tx.commit().await.unwrap();
        row
    }

    /// Saves `source` as a draft and publishes it.
    async fn publish(&self, source: &str) -> VersionRow {
        let parsed = archer_orchestrator::playbook::parse(source).unwrap();
        let mut tx = self.tx().await;
        let name = parsed.name.value.clone();
        let draft = playbooks::save_draft(
            &mut tx,
            self.tenant_id,
            &name,
            source,
            &playbooks::triggers_json(&parsed),
            self.agent.user_id(),
        )
        .await
        .unwrap();
        let published =
            playbooks::publish(&mut tx, draft.playbook_id, draft.version, self.agent.user_id()).await.unwrap();
        tx.commit().await.unwrap();
        published
    }

    async fn start(&self, version: &VersionRow, ticket: &TicketRow) -> playbooks::RunRow {
        let mut tx = self.tx().await;
        let start = StartRun {
            version,
            tenant: &self.tenant,
            ticket,
            trigger: "manual",
            event: None,
            inputs: json!({"why": "test"}),
            request: None,
            started_by: self.agent.user_id(),
        };
        let run = playbooks::start_run(&mut tx, start).await.unwrap();
        tx.commit().await.unwrap();
        run
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
}

#[tokio::test]
async fn versions_go_draft_published_retired_with_one_of_each_at_most() {
    let w = world().await;
    let v1 = w.publish(V1).await;
    assert_eq!((v1.version, v1.status.as_str()), (1, "published"));
    assert!(v1.published_at.is_some());

    let mut tx = w.tx().await;
    let parsed = archer_orchestrator::playbook::parse(V2).unwrap();
    let triggers = playbooks::triggers_json(&parsed);
    assert_eq!(triggers, json!([{"kind": "manual"}]));
    let draft = playbooks::save_draft(&mut tx, w.tenant_id, "onboarding", V1, &triggers, None).await.unwrap();
    assert_eq!((draft.version, draft.status.as_str()), (2, "draft"));
    // saving again replaces the draft: still one draft, v2
    let again = playbooks::save_draft(&mut tx, w.tenant_id, "onboarding", V2, &triggers, None).await.unwrap();
    assert_eq!((again.id, again.version, again.source.as_str()), (draft.id, 2, V2));
    let listed = playbooks::list(&mut tx).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!((listed[0].published_version, listed[0].draft_version), (Some(1), Some(2)));
    // only the draft can be published
    let refused = playbooks::publish(&mut tx, v1.playbook_id, 1, None).await;
    assert!(matches!(refused, Err(PlaybookError::State(_))), "{refused:?}");

    let v2 = playbooks::publish(&mut tx, v1.playbook_id, 2, None).await.unwrap();
    assert_eq!(v2.status, "published");
    let detail = playbooks::get(&mut tx, v1.playbook_id).await.unwrap();
    let states: Vec<(i32, &str, &str)> =
        detail.versions.iter().map(|v| (v.version, v.status.as_str(), v.source.as_str())).collect();
    assert_eq!(states, [(2, "published", V2), (1, "retired", V1)], "v1 keeps its source");
    assert_eq!(playbooks::published(&mut tx, "onboarding").await.unwrap().unwrap().version, 2);
    assert!(matches!(playbooks::delete_draft(&mut tx, v1.playbook_id).await, Err(PlaybookError::State(_))));
    let retired = playbooks::retire(&mut tx, v1.playbook_id, 2).await.unwrap();
    assert_eq!(retired.status, "retired");
    assert!(playbooks::published(&mut tx, "onboarding").await.unwrap().is_none());
    tx.commit().await.unwrap();

    let audited = w
        .count("SELECT count(*) FROM audit_log WHERE tenant_id = $1 AND entity_type = 'playbook_versions'", w.tenant_id)
        .await;
    assert!(audited >= 6, "every version write is audited ({audited})");
}

#[tokio::test]
async fn a_run_starts_with_its_steps_a_watch_and_one_start_carrying_the_pinned_source() {
    let w = world().await;
    let v1 = w.publish(V1).await;
    let ticket = w.open().await;
    let run = w.start(&v1, &ticket).await;
    let number = changes::parse(&ticket).unwrap().number;
    let expected = format!("{}/{number}/playbook/onboarding/1", w.tenant);
    assert_eq!((run.workflow_id.as_str(), run.run_number, run.status.as_str()), (expected.as_str(), 1, "pending"));

    let mut tx = w.tx().await;
    let detail = playbooks::run(&mut tx, run.id).await.unwrap();
    let steps: Vec<(&str, &str, &str)> =
        detail.steps.iter().map(|s| (s.step_id.as_str(), s.action.as_str(), s.status.as_str())).collect();
    assert_eq!(steps, [("note", "ticket.comment", "pending"), ("call", "http.request", "pending")]);
    tx.commit().await.unwrap();
    assert_eq!(w.count("SELECT count(*) FROM playbook_watches WHERE run_id = $1", run.id).await, 1);

    let outbox = w.outbox(&run.workflow_id).await;
    assert_eq!(outbox.len(), 1, "{outbox:?}");
    let (intent, name, payload) = &outbox[0];
    assert_eq!((intent.as_str(), name.as_str()), ("start", pwf::WORKFLOW_TYPE));
    let input: pwf::RunInput = serde_json::from_value(payload.clone()).unwrap();
    assert_eq!(input.source, V1);
    assert_eq!((input.run.run_id, input.run.version, input.trigger.as_str()), (run.id, 1, "manual"));
    assert_eq!(input.scope["ticket"]["number"], number.to_string());
    assert_eq!(input.scope["ticket"]["priority"], json!(ticket.priority));
    assert_eq!(input.scope["ticket"]["requester_email"], json!(format!("agent@{}.example", w.tenant)));
    assert_eq!(input.scope["inputs"], json!({"why": "test"}));
    assert_eq!(input.scope["request"], Value::Null);
    assert_eq!(
        input.scope["run"],
        json!({"id": run.id, "number": 1, "workflow_id": run.workflow_id, "trigger": "manual", "event": null})
    );

    // publishing v2 changes nothing about the v1 run; the next run is n = 2 with v2's source
    let v2 = w.publish(V2).await;
    let second = w.start(&v2, &ticket).await;
    assert!(second.workflow_id.ends_with("/playbook/onboarding/2"), "{}", second.workflow_id);
    let mut tx = w.tx().await;
    let first = playbooks::run(&mut tx, run.id).await.unwrap();
    assert_eq!((first.run.version, first.steps.len()), (1, 2));
    let runs = playbooks::runs_of_ticket(&mut tx, ticket.id).await.unwrap();
    assert_eq!(runs.iter().map(|r| (r.run.version, r.steps.len())).collect::<Vec<_>>(), [(1, 2), (2, 1)]);
    tx.commit().await.unwrap();
}

#[tokio::test]
async fn recording_the_same_progress_twice_changes_nothing() {
    let w = world().await;
    let v1 = w.publish(V1).await;
    let ticket = w.open().await;
    let run = w.start(&v1, &ticket).await;
    let run_ref = RunRef {
        run_id: run.id,
        ticket: archer_orchestrator::workflows::activities::TicketRef {
            tenant_id: w.tenant_id,
            tenant: w.tenant.clone(),
            ticket_id: ticket.id,
            number: changes::parse(&ticket).unwrap().number,
        },
        workflow_id: run.workflow_id.clone(),
        playbook: "onboarding".into(),
        version: 1,
    };
    let mut tx = w.tx().await;
    assert!(playbooks::step_started(&mut tx, run.id, "note", 0, 1).await.unwrap());
    playbooks::step_succeeded(&mut tx, run.id, "note", &json!({"comment_id": "c1"})).await.unwrap();
    // a late duplicate start of a step that succeeded is ignored
    assert!(!playbooks::step_started(&mut tx, run.id, "note", 0, 2).await.unwrap());
    tx.commit().await.unwrap();
    let record = RecordRun {
        run: run_ref,
        steps: vec![StepRecord {
            step: "call".into(),
            action: "http.request".into(),
            status: "skipped".into(),
            reason: Some("when was false".into()),
            output: None,
        }],
        status: "succeeded".into(),
        error: None,
    };
    let run_id = run.id;
    let read = |w: &World| {
        let (db, tenant_id) = (w.db.clone(), w.tenant_id);
        async move {
            let mut tx = TenantTx::begin(&db, tenant_id, &AuditContext::default()).await.unwrap();
            let d = playbooks::run(&mut tx, run_id).await.unwrap();
            let audit: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_log WHERE entity_type LIKE 'playbook_%'")
                .fetch_one(&mut *tx)
                .await
                .unwrap();
            tx.commit().await.unwrap();
            let steps: Vec<_> = d
                .steps
                .iter()
                .map(|s| (s.status.clone(), s.reason.clone(), s.output.clone(), s.attempts, s.finished_at))
                .collect();
            (d.run.status, d.run.finished_at, steps, audit)
        }
    };
    for _ in 0..2 {
        let mut tx = w.tx().await;
        playbooks::record(&mut tx, &record).await.unwrap();
        tx.commit().await.unwrap();
    }
    let once = read(&w).await;
    let mut tx = w.tx().await;
    playbooks::record(&mut tx, &record).await.unwrap();
    tx.commit().await.unwrap();
    let twice = read(&w).await;
    assert_eq!(once, twice, "recording again changes no row and writes no audit row");
    let (status, finished, steps, _) = once;
    assert_eq!(status, "succeeded");
    assert!(finished.is_some());
    assert_eq!(steps[0].0, "succeeded");
    assert_eq!(steps[0].2, Some(json!({"comment_id": "c1"})));
    assert_eq!(steps[0].3, 1);
    assert_eq!((steps[1].0.as_str(), steps[1].1.as_deref()), ("skipped", Some("when was false")));
}

#[tokio::test]
async fn a_ticket_trigger_fires_once_and_never_for_a_change_a_playbook_makes() {
    let w = world().await;
    // no playbook: creating a ticket starts nothing
    let before = w.open().await;
    assert_eq!(w.count("SELECT count(*) FROM playbook_runs WHERE ticket_id = $1", before.id).await, 0);

    w.publish(ON_CREATE).await;
    let ticket = w.open().await;
    assert_eq!(w.count("SELECT count(*) FROM playbook_runs WHERE ticket_id = $1", ticket.id).await, 1);
    let trigger: String = sqlx::query_scalar("SELECT trigger FROM playbook_runs WHERE ticket_id = $1")
        .bind(ticket.id)
        .fetch_one(w.db.pool())
        .await
        .unwrap();
    assert_eq!(trigger, "ticket_created");
    let wf = format!("{}/{}/playbook/p1-broadcast/1", w.tenant, changes::parse(&ticket).unwrap().number);
    assert_eq!(w.outbox(&wf).await.len(), 1);

    // a ticket a playbook run opens (a task) fires nothing
    let mut tx = w.tx_as(playbooks::run_audit_context(&wf, None)).await;
    let task = changes::open(&mut tx, &w.tenant, &w.new_ticket()).await.unwrap();
    let fired = playbooks::fire_ticket_triggers(&mut tx, &w.tenant, &task, TicketTrigger::Created).await.unwrap();
    assert!(fired.is_empty());
    tx.commit().await.unwrap();
    assert_eq!(w.count("SELECT count(*) FROM playbook_runs WHERE ticket_id = $1", task.id).await, 0);
}

#[tokio::test]
async fn a_change_or_comment_on_a_watched_ticket_is_signalled_to_the_run() {
    let w = world().await;
    let v1 = w.publish(V1).await;
    let ticket = w.open().await;
    let other = w.open().await;
    let run = w.start(&v1, &ticket).await;

    let change = TicketChange { status: Some(Status::InProgress), ..TicketChange::default() };
    for id in [ticket.id, other.id] {
        let mut tx = w.tx().await;
        let old = tickets::lock(&mut tx, id).await.unwrap();
        let now = changes::to_jiff(archer_store::tx_now(&mut tx).await.unwrap());
        let decision = changes::snapshot(&old).unwrap().apply(&change, &w.agent, now).unwrap();
        changes::apply(&mut tx, &w.tenant, &old, decision, &w.agent).await.unwrap();
        tx.commit().await.unwrap();
    }
    let outbox = w.outbox(&run.workflow_id).await;
    let names: Vec<&str> = outbox.iter().map(|(_, n, _)| n.as_str()).collect();
    assert_eq!(names, [pwf::WORKFLOW_TYPE, "playbook.ticket_changed"], "only the watched ticket signals");
    let signal: pwf::TicketChanged = serde_json::from_value(outbox[1].2.clone()).unwrap();
    assert_eq!((signal.ticket_id, signal.ticket["status"].as_str()), (ticket.id, Some("in_progress")));

    let mut tx = w.tx().await;
    let row = tickets::get(&mut tx, ticket.id).await.unwrap();
    let voice = changes::snapshot(&row).unwrap().comment(&NewComment { internal: true }, &w.agent).unwrap();
    changes::comment(&mut tx, &w.tenant, &row, w.agent.user_id().unwrap(), voice, "note", true).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(w.outbox(&run.workflow_id).await.len(), 3);

    // a finished run hears nothing more; retry and cancel refuse what does not apply
    let mut tx = w.tx().await;
    assert!(matches!(playbooks::request_retry(&mut tx, run.id, None).await, Err(PlaybookError::State(_))));
    playbooks::request_cancel(&mut tx, run.id, None, "not needed").await.unwrap();
    sqlx::query("UPDATE playbook_runs SET status = 'cancelled' WHERE id = $1")
        .bind(run.id)
        .execute(&mut *tx)
        .await
        .unwrap();
    assert!(matches!(playbooks::request_cancel(&mut tx, run.id, None, "again").await, Err(PlaybookError::State(_))));
    tx.commit().await.unwrap();
    assert_eq!(w.outbox(&run.workflow_id).await.last().unwrap().1, "playbook.cancel");
    let count = w.outbox(&run.workflow_id).await.len();
    let mut tx = w.tx().await;
    let row = tickets::get(&mut tx, ticket.id).await.unwrap();
    let voice = changes::snapshot(&row).unwrap().comment(&NewComment { internal: true }, &w.agent).unwrap();
    changes::comment(&mut tx, &w.tenant, &row, w.agent.user_id().unwrap(), voice, "later", true).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(w.outbox(&run.workflow_id).await.len(), count);
}

#[tokio::test]
async fn a_connection_secret_is_encrypted_never_read_back_and_kept_on_update() {
    let w = world().await;
    let cipher = Cipher::dev();
    let spec = ConnectionSpec {
        base_url: "https://graph.example.com/v1.0".into(),
        auth: Auth::Bearer,
        header_name: None,
        username: None,
        allow_private: false,
    };
    let secret = SecretString::from("tok-ABCDEF-123456");
    let mut tx = w.tx().await;
    let created = connections::create(&mut tx, w.tenant_id, &cipher, "graph", &spec, Some(&secret)).await.unwrap();
    assert!(created.secret_set);
    assert!(!format!("{created:?}").contains("tok-ABCDEF"));
    // update without a secret keeps it
    let moved = ConnectionSpec { base_url: "https://graph.example.com/beta".into(), ..spec.clone() };
    let updated = connections::update(&mut tx, created.id, &cipher, &moved, None).await.unwrap();
    assert!(updated.secret_set);
    let resolved = connections::resolve(&mut tx, "graph", &cipher).await.unwrap();
    assert_eq!(resolved.secret.unwrap().expose_secret(), "tok-ABCDEF-123456");
    assert_eq!(resolved.base_url.as_str(), "https://graph.example.com/beta");
    assert!(!format!("{:?}", connections::list(&mut tx).await.unwrap()).contains("tok-ABCDEF"));
    // a bad base URL is refused with its pointer
    let bad = ConnectionSpec { base_url: "https://u:p@x.example/?q=1".into(), ..spec.clone() };
    match connections::create(&mut tx, w.tenant_id, &cipher, "bad", &bad, None).await {
        Err(connections::ConnectionError::Invalid(p)) => assert_eq!(p[0].pointer, "/base_url"),
        other => panic!("{other:?}"),
    }
    tx.commit().await.unwrap();

    let (ciphertext, nonce): (Vec<u8>, Vec<u8>) =
        sqlx::query_as("SELECT secret_ciphertext, secret_nonce FROM connections WHERE id = $1")
            .bind(created.id)
            .fetch_one(w.db.pool())
            .await
            .unwrap();
    assert!(!ciphertext.windows(10).any(|b| b == b"tok-ABCDEF"), "stored encrypted");
    assert_eq!(cipher.decrypt(&ciphertext, &nonce).unwrap().expose_secret(), "tok-ABCDEF-123456");
    let audit: Vec<String> = sqlx::query_scalar(
        "SELECT coalesce(before::text, '') || coalesce(after::text, '') FROM audit_log WHERE entity_id = $1::text",
    )
    .bind(created.id)
    .fetch_all(w.db.pool())
    .await
    .unwrap();
    assert_eq!(audit.len(), 2, "{audit:?}");
    assert!(audit.iter().all(|a| !a.contains("secret_ciphertext") && !a.contains("secret_nonce")), "{audit:?}");
    assert!(audit[0].contains("\"secret\": \"set:"), "{audit:?}");
}

#[tokio::test]
async fn another_tenant_sees_no_playbook_run_or_connection() {
    let w = world().await;
    let v1 = w.publish(V1).await;
    let ticket = w.open().await;
    let run = w.start(&v1, &ticket).await;
    let mut tx = w.tx().await;
    let spec = ConnectionSpec {
        base_url: "http://127.0.0.1:9".into(),
        auth: Auth::None,
        header_name: None,
        username: None,
        allow_private: true,
    };
    connections::create(&mut tx, w.tenant_id, &Cipher::dev(), "local", &spec, None).await.unwrap();
    tx.commit().await.unwrap();

    let other = tenant(w.db.clone()).await;
    let mut tx = other.tx().await;
    assert!(playbooks::list(&mut tx).await.unwrap().is_empty());
    assert!(playbooks::published(&mut tx, "onboarding").await.unwrap().is_none());
    assert!(matches!(playbooks::run(&mut tx, run.id).await, Err(archer_store::StoreError::NotFound)));
    assert!(playbooks::runs_of_ticket(&mut tx, ticket.id).await.unwrap().is_empty());
    assert!(connections::list(&mut tx).await.unwrap().is_empty());
    assert!(connections::resolve(&mut tx, "local", &Cipher::dev()).await.is_err());
    // the same name is free in the other tenant
    let parsed = archer_orchestrator::playbook::parse(V1).unwrap();
    let own =
        playbooks::save_draft(&mut tx, other.tenant_id, "onboarding", V1, &playbooks::triggers_json(&parsed), None)
            .await
            .unwrap();
    assert_eq!(own.version, 1);
    tx.commit().await.unwrap();
}
