//! Provisioning tenants and users, and the demo data `archer dev` loads.
//!
//! Demo tickets are created through the same service as the API, so each gets its workflow.

use serde_json::json;
use uuid::Uuid;

use archer_orchestrator::{Impact, Status, TenantSlug, TicketKind, Urgency};
use archer_store::{AuditContext, Db, SystemTx, TenantTx, approvals, catalog, teams, tenants, users};

use crate::auth::hash_password;
use crate::error::ApiError;
use archer_orchestrator::access::{Permission, Permissions};
use archer_orchestrator::catalog::{ChangeType, Risk};
use archer_orchestrator::commands::ticket::{Actor, NewTicket, TicketChange};
use archer_store::changes::{self as service};

/// The password of every demo account.
pub const DEMO_PASSWORD: &str = "archer-demo";

#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    #[error(transparent)]
    Store(#[from] archer_store::StoreError),
    #[error(transparent)]
    Service(#[from] service::ServiceError),
    #[error("{0}")]
    Other(String),
}

impl From<ApiError> for SeedError {
    fn from(e: ApiError) -> Self {
        SeedError::Other(e.to_string())
    }
}

/// Creates a tenant (as the schema owner; tenants are not created through the API).
pub async fn provision_tenant(pool: &Db, slug: &str, name: &str) -> Result<Uuid, SeedError> {
    let slug = TenantSlug::parse(slug).map_err(|e| SeedError::Other(e.to_string()))?;
    let id = Uuid::now_v7();
    let mut tx = SystemTx::begin(pool, Some(id), &AuditContext::default()).await?;
    tenants::create(&mut tx, id, slug.as_str(), name).await?;
    tx.commit().await?;
    Ok(id)
}

/// Creates a user with roles in a tenant.
pub async fn provision_user(
    pool: &Db,
    tenant_id: Uuid,
    email: &str,
    name: &str,
    password: &str,
    roles: &[&str],
    manager_id: Option<Uuid>,
) -> Result<Uuid, SeedError> {
    let hash = hash_password(password)?;
    let id = Uuid::now_v7();
    let mut tx = TenantTx::begin(pool, tenant_id, &AuditContext::default()).await?;
    users::create(
        &mut tx,
        users::NewUser { id, tenant_id, email, display_name: name, password_hash: Some(&hash), manager_id },
    )
    .await?;
    let roles: Vec<String> = roles.iter().map(|r| (*r).to_owned()).collect();
    users::set_roles(&mut tx, tenant_id, id, &roles).await?;
    tx.commit().await?;
    Ok(id)
}

/// A demo login, as printed by `archer dev` and listed in the README.
pub struct DemoLogin {
    pub tenant: &'static str,
    pub email: &'static str,
    pub roles: &'static str,
}

pub const DEMO_LOGINS: &[DemoLogin] = &[
    DemoLogin { tenant: "acme", email: "admin@acme.example", roles: "admin" },
    DemoLogin { tenant: "acme", email: "agent@acme.example", roles: "agent" },
    DemoLogin { tenant: "acme", email: "manager@acme.example", roles: "manager, approver" },
    DemoLogin { tenant: "acme", email: "approver@acme.example", roles: "approver" },
    DemoLogin { tenant: "acme", email: "cab@acme.example", roles: "cab_member" },
    DemoLogin { tenant: "acme", email: "cab2@acme.example", roles: "cab_member" },
    DemoLogin { tenant: "acme", email: "requester@acme.example", roles: "requester" },
    DemoLogin { tenant: "globex", email: "admin@globex.example", roles: "admin" },
    DemoLogin { tenant: "globex", email: "agent@globex.example", roles: "agent" },
    DemoLogin { tenant: "globex", email: "requester@globex.example", roles: "requester" },
];

/// Loads the demo tenants, users, teams and tickets unless they are there already.
/// Returns whether it loaded anything.
pub async fn demo(pool: &Db) -> Result<bool, SeedError> {
    let mut conn = pool.acquire().await.map_err(archer_store::StoreError::from)?;
    if tenants::by_slug(&mut conn, "acme").await?.is_some() {
        return Ok(false);
    }
    drop(conn);
    let acme = provision_tenant(pool, "acme", "Acme Corporation").await?;
    let pw = DEMO_PASSWORD;
    let admin = provision_user(pool, acme, "admin@acme.example", "Ada Admin", pw, &["admin"], None).await?;
    let agent = provision_user(pool, acme, "agent@acme.example", "Alex Agent", pw, &["agent"], None).await?;
    let agent2 = provision_user(pool, acme, "agent2@acme.example", "Sam Support", pw, &["agent"], None).await?;
    let manager =
        provision_user(pool, acme, "manager@acme.example", "Morgan Manager", pw, &["manager", "approver"], None)
            .await?;
    let approver =
        provision_user(pool, acme, "approver@acme.example", "Avery Approver", pw, &["approver"], Some(manager)).await?;
    let cab = provision_user(pool, acme, "cab@acme.example", "Casey Board", pw, &["cab_member"], Some(manager)).await?;
    // two CAB members: normal and emergency changes need two of them (a quorum is never lowered)
    let cab2 =
        provision_user(pool, acme, "cab2@acme.example", "Jordan Board", pw, &["cab_member"], Some(manager)).await?;
    let requester =
        provision_user(pool, acme, "requester@acme.example", "Riley Requester", pw, &["requester"], Some(manager))
            .await?;

    let ctx = AuditContext { actor_id: Some(admin), ..Default::default() };
    let mut tx = TenantTx::begin(pool, acme, &ctx).await?;
    let desk = Uuid::now_v7();
    teams::create(&mut tx, acme, desk, "Service Desk", "First line: every incident and request lands here").await?;
    for m in [agent, agent2, manager] {
        teams::add_member(&mut tx, acme, desk, m).await?;
    }
    let network = Uuid::now_v7();
    teams::create(&mut tx, acme, network, "Network Operations", "Switches, Wi-Fi, VPN").await?;
    teams::add_member(&mut tx, acme, network, agent2).await?;
    let board = Uuid::now_v7();
    teams::create(&mut tx, acme, board, "Change Advisory Board", "Reviews normal changes").await?;
    for m in [cab, cab2, manager] {
        teams::add_member(&mut tx, acme, board, m).await?;
    }
    let hardware = Uuid::now_v7();
    teams::create(
        &mut tx,
        acme,
        hardware,
        "Hardware Approvers",
        "Approve computers and other equipment (two of three)",
    )
    .await?;
    for m in [approver, cab, agent2] {
        teams::add_member(&mut tx, acme, hardware, m).await?;
    }
    tx.commit().await?;
    demo_sla(pool, acme, admin, desk, manager).await?;
    demo_catalog(pool, acme, admin, hardware, agent).await?;
    demo_playbooks(pool, acme, admin).await?;

    let slug = TenantSlug::parse("acme").map_err(|e| SeedError::Other(e.to_string()))?;
    let demo = [
        (
            TicketKind::Incident,
            "Email not syncing on my phone",
            "Since this morning Outlook on my phone shows *no new mail*.",
            3,
            2,
            requester,
            None,
            None,
            None,
        ),
        (
            TicketKind::Incident,
            "VPN drops every ten minutes",
            "Remote staff lose the VPN about every 10 minutes; reconnecting works.",
            2,
            1,
            requester,
            Some(agent2),
            Some(network),
            Some(Status::InProgress),
        ),
        (
            TicketKind::ServiceRequest,
            "Laptop for a new starter",
            "Jordan starts on Monday and needs a laptop.",
            3,
            3,
            requester,
            None,
            Some(desk),
            None,
        ),
        (
            TicketKind::Change,
            "Upgrade core switch firmware",
            "Vendor advisory: upgrade both core switches during the Saturday window.",
            2,
            3,
            agent2,
            Some(agent2),
            Some(network),
            Some(Status::Assess),
        ),
        (
            TicketKind::Problem,
            "Recurring VPN disconnects",
            "Root cause of the VPN incidents.",
            2,
            2,
            agent,
            Some(agent2),
            Some(network),
            None,
        ),
    ];
    for (kind, title, description, impact, urgency, requester_id, assignee, team, status) in demo {
        let impact = Impact::new(impact).map_err(|e| SeedError::Other(e.to_string()))?;
        let urgency = Urgency::new(urgency).map_err(|e| SeedError::Other(e.to_string()))?;
        let ctx = AuditContext { actor_id: Some(requester_id), ..Default::default() };
        let mut tx = TenantTx::begin(pool, acme, &ctx).await?;
        // the demo data is set up by Archer itself, through the same command as the API
        let change = kind == TicketKind::Change;
        let new = NewTicket {
            kind,
            title: title.into(),
            description: description.into(),
            impact,
            urgency,
            priority: None,
            requester_id: Some(requester_id),
            assignee_id: assignee,
            team_id: team,
            category: None,
            tags: vec!["demo".into()],
            change_type: change.then_some(ChangeType::Normal),
            risk: change.then_some(Risk::Medium),
        };
        let opened = new.open(&Actor::system()).map_err(|e| SeedError::Other(format!("demo ticket {title}: {e}")))?;
        let row = service::open(&mut tx, &slug, &opened).await?;
        if let Some(to) = status {
            // the agent moves it on, through the same command as the API
            let actor = Actor::user(agent, Permissions::new(vec![Permission::TicketUpdate, Permission::TicketAssign]));
            let change = TicketChange { status: Some(to), ..TicketChange::default() };
            let now = service::to_jiff(tx.now());
            let decision = service::snapshot(&row)
                .map_err(service::ServiceError::from)?
                .apply(&change, &actor, now)
                .map_err(|e| SeedError::Other(format!("demo ticket {title}: {e}")))?;
            service::apply(&mut tx, &slug, &row, decision, &actor).await?;
        }
        tx.commit().await?;
    }

    let globex = provision_tenant(pool, "globex", "Globex Inc.").await?;
    provision_user(pool, globex, "admin@globex.example", "Gale Admin", pw, &["admin"], None).await?;
    let g_agent = provision_user(pool, globex, "agent@globex.example", "Glen Agent", pw, &["agent"], None).await?;
    let g_req =
        provision_user(pool, globex, "requester@globex.example", "Gus Requester", pw, &["requester"], None).await?;
    let gslug = TenantSlug::parse("globex").map_err(|e| SeedError::Other(e.to_string()))?;
    let mut tx = TenantTx::begin(pool, globex, &AuditContext { actor_id: Some(g_req), ..Default::default() }).await?;
    let impact = Impact::new(2).map_err(|e| SeedError::Other(e.to_string()))?;
    let urgency = Urgency::new(2).map_err(|e| SeedError::Other(e.to_string()))?;
    let printer = NewTicket {
        kind: TicketKind::Incident,
        title: "Printer on floor 3 jams".into(),
        description: "Every second page jams.".into(),
        impact,
        urgency,
        priority: None,
        requester_id: Some(g_req),
        assignee_id: Some(g_agent),
        team_id: None,
        category: Some("hardware".into()),
        tags: vec!["demo".into()],
        change_type: None,
        risk: None,
    };
    let opened = printer.open(&Actor::system()).map_err(|e| SeedError::Other(format!("demo ticket: {e}")))?;
    service::open(&mut tx, &gslug, &opened).await?;
    tx.commit().await?;
    Ok(true)
}

/// The demo catalog's form schemas (also in `schemas/catalog/`, where admins read them).
pub const LAPTOP_SCHEMA: &str = include_str!("../../schemas/catalog/laptop.schema.json");
pub const SOFTWARE_ACCESS_SCHEMA: &str = include_str!("../../schemas/catalog/software-access.schema.json");
pub const ONBOARDING_SCHEMA: &str = include_str!("../../schemas/catalog/onboarding.schema.json");

/// The demo laptop item: the requester's manager approves (reminded after 4 and 20 business
/// hours, escalated to the admins after 24), then two of the three hardware approvers.
pub fn laptop_item(hardware_team: Uuid) -> Result<serde_json::Value, SeedError> {
    let schema: serde_json::Value = serde_json::from_str(LAPTOP_SCHEMA).map_err(|e| SeedError::Other(e.to_string()))?;
    Ok(json!({
        "description": "A new or replacement laptop, desktop or tablet.",
        "icon": "laptop",
        "fulfilment_target": "24h",
        "form_schema": schema,
        "approval": {"steps": [
            {
                "name": "Manager approval",
                "approvers": ["requester_manager"],
                "approve_when": "any",
                "timeout": {"after": "24h", "reminders": ["4h", "20h"], "clock": "business"},
                "on_timeout": {"escalate": [{"role": "admin"}]}
            },
            {
                "name": "Hardware approvers",
                "approvers": [{"team": hardware_team}],
                "approve_when": {"count": 2}
            }
        ]}
    }))
}

/// A demo item passes the checks the API makes when an admin saves one.
fn checked(spec: &serde_json::Value) -> Result<(), SeedError> {
    let item: archer_orchestrator::catalog::ItemSpec =
        serde_json::from_value(spec.clone()).map_err(|e| SeedError::Other(format!("demo item: {e}")))?;
    let mut problems: Vec<String> = crate::forms::check_schema(&item.form_schema, "/form_schema")
        .into_iter()
        .map(|e| format!("{}: {}", e.pointer, e.detail))
        .collect();
    if let Some(chain) = &item.approval
        && let Err(errs) = chain.validate()
    {
        problems.extend(errs.into_iter().map(|e| e.to_string()));
    }
    if problems.is_empty() { Ok(()) } else { Err(SeedError::Other(format!("demo item: {}", problems.join("; ")))) }
}

/// The demo catalog: hardware, software access and onboarding, and the change routing.
async fn demo_catalog(pool: &Db, tenant: Uuid, admin: Uuid, hardware: Uuid, it_owner: Uuid) -> Result<(), SeedError> {
    let bad = |e: serde_json::Error| SeedError::Other(e.to_string());
    let mut tx = TenantTx::begin(pool, tenant, &AuditContext { actor_id: Some(admin), ..Default::default() }).await?;
    let (hw, access, people) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    catalog::create_category(&mut tx, tenant, hw, "Hardware", "Computers, phones and accessories", Some("laptop"), 1)
        .await?;
    catalog::create_category(&mut tx, tenant, access, "Access", "Applications and permissions", Some("key"), 2).await?;
    catalog::create_category(&mut tx, tenant, people, "People", "Joiners, movers and leavers", Some("users"), 3)
        .await?;
    let laptop = laptop_item(hardware)?;
    checked(&laptop)?;
    catalog::create_item(&mut tx, tenant, Uuid::now_v7(), hw, "Laptop", &laptop, Some(admin)).await?;
    let software = json!({
        "description": "Access to a business application.",
        "icon": "key",
        "owner_id": it_owner,
        "fulfilment_target": "8h",
        "form_schema": serde_json::from_str::<serde_json::Value>(SOFTWARE_ACCESS_SCHEMA).map_err(bad)?,
        "approval": {"steps": [
            {"name": "Application owner", "approvers": ["item_owner"], "approve_when": "any",
             "timeout": {"after": "16h", "reminders": ["8h"], "clock": "business"}, "on_timeout": "reject"}
        ]}
    });
    checked(&software)?;
    catalog::create_item(&mut tx, tenant, Uuid::now_v7(), access, "Software access", &software, Some(admin)).await?;
    let onboarding = json!({
        "description": "Accounts, equipment and access for someone joining.",
        "icon": "user-plus",
        "audience": {"roles": ["manager", "admin"]},
        "fulfilment_target": "40h",
        "form_schema": serde_json::from_str::<serde_json::Value>(ONBOARDING_SCHEMA).map_err(bad)?,
        "approval": {"steps": [
            {"name": "Hiring manager's manager", "approvers": ["requester_manager"], "approve_when": "any"},
            {"name": "People team", "approvers": [{"role": "admin"}], "approve_when": "any"}
        ]},
        "playbook": "onboarding"
    });
    checked(&onboarding)?;
    catalog::create_item(&mut tx, tenant, Uuid::now_v7(), people, "New starter", &onboarding, Some(admin)).await?;
    let routing = serde_json::to_value(archer_orchestrator::catalog::ChangeRouting::default_routing()).map_err(bad)?;
    approvals::set_change_routing(&mut tx, tenant, &routing).await?;
    tx.commit().await?;
    Ok(())
}

/// The playbooks Archer ships (`playbooks/`), each checked as the API checks it, published.
pub const SHIPPED_PLAYBOOKS: [(&str, &str); 5] = [
    ("onboarding.yaml", include_str!("../../playbooks/onboarding.yaml")),
    ("laptop-order.yaml", include_str!("../../playbooks/laptop-order.yaml")),
    ("access-grant.yaml", include_str!("../../playbooks/access-grant.yaml")),
    ("standard-change.yaml", include_str!("../../playbooks/standard-change.yaml")),
    ("major-incident.yaml", include_str!("../../playbooks/major-incident.yaml")),
];

/// The demo's connections (to example hosts: runs that call them fail until an admin points
/// them somewhere real, which the run's timeline shows) and the shipped playbooks, published.
async fn demo_playbooks(pool: &Db, tenant: Uuid, admin: Uuid) -> Result<(), SeedError> {
    use archer_store::connections::{self, Auth, ConnectionSpec};
    let mut tx = TenantTx::begin(pool, tenant, &AuditContext { actor_id: Some(admin), ..Default::default() }).await?;
    let cipher = archer_store::secrets::Cipher::dev();
    let conns = [
        ("graph", "https://graph.microsoft.com/v1.0", Auth::Bearer, None),
        ("vendor", "https://vendor.example/api", Auth::Header, Some("X-Api-Key")),
        ("slack", "https://slack.com/api", Auth::Bearer, None),
        ("status-page", "https://status.acme.example/hooks", Auth::Webhook, None),
    ];
    for (name, base_url, auth, header) in conns {
        let spec = ConnectionSpec {
            base_url: base_url.into(),
            auth,
            header_name: header.map(str::to_owned),
            username: None,
            allow_private: false,
        };
        connections::create(&mut tx, tenant, &cipher, name, &spec, None)
            .await
            .map_err(|e| SeedError::Other(format!("demo connection {name}: {e}")))?;
    }
    for (file, source) in SHIPPED_PLAYBOOKS {
        let env = archer_orchestrator::playbook::CheckEnv::default();
        let playbook = archer_orchestrator::playbook::validate(source, &env)
            .map_err(|e| SeedError::Other(format!("playbooks/{file}: {e}")))?;
        let triggers = archer_store::playbooks::triggers_json(&playbook);
        let name = playbook.name.value.clone();
        let draft = archer_store::playbooks::save_draft(&mut tx, tenant, &name, source, &triggers, Some(admin)).await?;
        archer_store::playbooks::publish(&mut tx, draft.playbook_id, draft.version, Some(admin))
            .await
            .map_err(|e| SeedError::Other(format!("publishing playbooks/{file}: {e}")))?;
    }
    tx.commit().await?;
    Ok(())
}

/// Acme's office calendar and SLA policies: P1 incidents around the clock, everything else in
/// office hours, with warnings and escalations that mail people (MailDev shows them).
async fn demo_sla(pool: &Db, tenant: Uuid, admin: Uuid, desk: Uuid, manager: Uuid) -> Result<(), SeedError> {
    let ctx = AuditContext { actor_id: Some(admin), ..Default::default() };
    let mut tx = TenantTx::begin(pool, tenant, &ctx).await?;
    let weekdays = ["monday", "tuesday", "wednesday", "thursday", "friday"];
    let weekly: Vec<serde_json::Value> =
        weekdays.iter().map(|d| json!({"day": d, "start": "08:00", "end": "18:00"})).collect();
    let office = json!({
        "time_zone": "Europe/Berlin",
        "weekly": weekly,
        "holidays": [
            {"date": "2026-01-01", "recurring": true, "name": "New Year's Day"},
            {"date": "2026-05-01", "recurring": true, "name": "Labour Day"},
            {"date": "2026-10-03", "recurring": true, "name": "German Unity Day"},
            {"date": "2026-12-24", "recurring": true, "name": "Christmas Eve"},
            {"date": "2026-12-25", "recurring": true, "name": "Christmas Day"},
            {"date": "2026-12-26", "recurring": true, "name": "Boxing Day"},
            {"date": "2026-12-31", "recurring": true, "name": "New Year's Eve"}
        ]
    });
    let calendar = Uuid::now_v7();
    archer_store::sla::create_calendar(&mut tx, tenant, calendar, "Acme office hours", &office, Some(admin)).await?;
    let escalations = json!([
        {"name": "Warn the assignee", "when": {"warning": {"percent": 80}},
         "actions": [{"type": "notify", "to": {"assignee": true, "ticket_team": true}}]},
        {"name": "Breach: the assignee's manager and an internal note", "when": "breach",
         "actions": [
            {"type": "notify", "to": {"assignee": true, "assignee_manager": true, "users": [manager]}},
            {"type": "internal_comment", "body": "SLA breached: escalated to the service desk manager."}
         ]},
        {"name": "Still breached after an hour: raise the priority", "metric": "resolution",
         "when": {"breach_plus": {"after": "1h"}},
         "actions": [{"type": "raise_priority", "by": 1}, {"type": "reassign", "team_id": desk}]}
    ]);
    let critical = json!({
        "applies_to": {"kinds": ["incident"], "priorities": [1]},
        "targets": [
            {"metric": "first_response", "durations": {"1": "15m", "2": "15m", "3": "15m", "4": "15m"}},
            {"metric": "next_response", "durations": {"1": "30m", "2": "30m", "3": "30m", "4": "30m"}},
            {"metric": "resolution", "durations": {"1": "4h", "2": "4h", "3": "4h", "4": "4h"}}
        ],
        "escalations": escalations,
        "escalation_cooldown": "5m"
    });
    archer_store::sla::create_policy(
        &mut tx,
        tenant,
        Uuid::now_v7(),
        "Critical incidents (24×7)",
        Some(10),
        &critical,
        None,
        Some(admin),
    )
    .await?;
    let standard = json!({
        "targets": [
            {"metric": "first_response", "durations": {"1": "30m", "2": "1h", "3": "4h", "4": "8h"}},
            {"metric": "next_response", "durations": {"1": "1h", "2": "2h", "3": "4h", "4": "8h"}},
            {"metric": "resolution", "durations": {"1": "8h", "2": "10h", "3": "30h", "4": "50h"}, "warnings": [50, 80]}
        ],
        "escalations": escalations,
        "escalation_cooldown": "5m"
    });
    archer_store::sla::create_policy(
        &mut tx,
        tenant,
        Uuid::now_v7(),
        "Standard (office hours)",
        Some(20),
        &standard,
        Some(calendar),
        Some(admin),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}
