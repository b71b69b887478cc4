//! `ticket.comment`, `ticket.update` and `ticket.create_task`: through the one write path (the
//! domain's ticket commands decide, `archer_store::changes` persists), as Archer itself
//! (`Actor::system()`), audited as the run (`playbook:<workflow id>`).
//!
//! A comment or an update records the step's success in the transaction that makes the
//! change, after checking (with the ticket locked) that no earlier attempt succeeded: the
//! change happens once.
//!
//! `ticket.create_task` opens a `task` ticket (`TASK-000001`) requested by the parent's
//! requester, linked `task_of` to the parent (the run's ticket) and watched by the run, which
//! waits for it to be closed or cancelled. The task is remembered on its step
//! (`archer_store::playbook_tasks`) in the transaction that opens it, and looked up first:
//! - another attempt of the same round (an activity retry, a concurrent attempt) gets the same
//!   task, whatever its status, so a step never opens two tasks;
//! - an admin's retry of a failed run (a later round) waits on the earlier task again unless it
//!   was cancelled: a task still open is waited on again (the step failed because it was not
//!   closed in time; the work is under way), a task closed since lets the step succeed at once
//!   (the work was done), a cancelled task means nobody will do it, so the retry opens a new
//!   one (the cancelled one stays, linked to the parent). A step that failed before it opened a
//!   task (bad inputs, an unknown team) opens one on retry.

use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use archer_orchestrator::commands::ticket::{Actor, NewComment, NewTicket, PriorityOverride, TicketChange};
use archer_orchestrator::workflows::playbook_activities::{StepCall, TaskOpened};
use archer_orchestrator::{Impact, LinkKind, Priority, Status, TicketKind, Urgency};
use archer_store::playbook_tasks::StepTask;
use archer_store::tickets::{self, TicketRow};
use archer_store::{TenantTx, changes, playbook_tasks, playbooks, teams, users};

use super::{Begun, PlaybookActivities, StepError, input, succeeded};

/// `ticket.comment`'s inputs.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Comment {
    pub body: String,
    /// Shown to the requester; an internal note otherwise (the default).
    #[serde(default)]
    pub public: bool,
}

/// `ticket.update`'s inputs.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Update {
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub priority: Option<i64>,
    /// The assignee's email (or id).
    #[serde(default)]
    pub assignee: Option<String>,
    /// The team's name (or id).
    #[serde(default)]
    pub team: Option<String>,
    /// Other fields: `title`, `description`, `category`, `tags`, `impact`, `urgency`.
    #[serde(default)]
    pub fields: Option<serde_json::Map<String, Value>>,
    /// Why (kept with a priority override; the default names the playbook).
    #[serde(default)]
    pub reason: Option<String>,
}

/// `ticket.create_task`'s inputs.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateTask {
    pub title: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub team: Option<String>,
    #[serde(default)]
    pub assignee: Option<String>,
}

/// The run's ticket, locked, unless an earlier attempt succeeded meanwhile (checked under the
/// lock, so two attempts at once change the ticket once).
async fn lock(tx: &mut TenantTx, call: &StepCall) -> Result<Result<TicketRow, Value>, StepError> {
    let ticket = tickets::lock(tx, call.run.ticket.ticket_id).await?;
    match succeeded(tx, call).await? {
        Some(output) => Ok(Err(output)),
        None => Ok(Ok(ticket)),
    }
}

/// `ticket.comment`: `{comment_id}`.
pub async fn comment(acts: &PlaybookActivities, call: &StepCall, attempt: u32) -> Result<Value, StepError> {
    let c: Comment = input(call)?;
    if c.body.trim().is_empty() {
        return Err(StepError::Input("the comment's body is empty".into()));
    }
    if let Begun::Done(output) = acts.begin(call, attempt).await? {
        return Ok(output);
    }
    let mut tx = acts.tx(call).await?;
    let ticket = match lock(&mut tx, call).await? {
        Ok(t) => t,
        Err(done) => return Ok(done),
    };
    let snapshot = changes::snapshot(&ticket).map_err(|e| StepError::Internal(e.to_string()))?;
    let internal = !c.public;
    snapshot.comment(&NewComment { internal }, &Actor::system()).map_err(|r| StepError::Refused(r.to_string()))?;
    // Archer's own comment, as the approvals' notes: nobody's reply, so no SLA clock stops on it
    let row = changes::note(&mut tx, &ticket, &c.body, internal).await?;
    let output = json!({"comment_id": row.id});
    playbooks::step_succeeded(&mut tx, call.run.run_id, &call.step, &output).await?;
    tx.commit().await?;
    Ok(output)
}

/// `ticket.update`: `{number, status, priority}` after the change.
pub async fn update(acts: &PlaybookActivities, call: &StepCall, attempt: u32) -> Result<Value, StepError> {
    let u: Update = input(call)?;
    if let Begun::Done(output) = acts.begin(call, attempt).await? {
        return Ok(output);
    }
    let mut tx = acts.tx(call).await?;
    let ticket = match lock(&mut tx, call).await? {
        Ok(t) => t,
        Err(done) => return Ok(done),
    };
    let change = change_of(&mut tx, &u, &call.run.playbook).await?;
    let now = changes::to_jiff(tx.now());
    let decision = changes::snapshot(&ticket)
        .map_err(|e| StepError::Internal(e.to_string()))?
        .apply(&change, &Actor::system(), now)
        .map_err(|r| StepError::Refused(r.to_string()))?;
    let row = changes::apply(&mut tx, &call.run.ticket.tenant, &ticket, decision, &Actor::system()).await?;
    let output = json!({
        "number": call.run.ticket.number.to_string(),
        "status": row.status.as_str(),
        "priority": row.priority,
    });
    playbooks::step_succeeded(&mut tx, call.run.run_id, &call.step, &output).await?;
    tx.commit().await?;
    Ok(output)
}

/// The ticket change `u` asks for, its people and teams looked up.
async fn change_of(tx: &mut TenantTx, u: &Update, playbook: &str) -> Result<TicketChange, StepError> {
    let mut change = TicketChange {
        status: u
            .status
            .as_deref()
            .map(|s| s.parse::<Status>().map_err(|e| StepError::Input(format!("status: {e}"))))
            .transpose()?,
        ..TicketChange::default()
    };
    if let Some(p) = u.priority {
        let p = Priority::new(p).map_err(|e| StepError::Input(format!("priority: {e}")))?;
        let reason = u.reason.clone().unwrap_or_else(|| format!("set by playbook {playbook}"));
        change.priority = PriorityOverride::new(p, &reason);
    }
    if let Some(a) = &u.assignee {
        change.assignee_id = Some(Some(user(tx, a).await?));
    }
    if let Some(t) = &u.team {
        change.team_id = Some(Some(team(tx, t).await?));
    }
    for (key, value) in u.fields.iter().flatten() {
        let text = || {
            value.as_str().map(str::to_owned).ok_or_else(|| StepError::Input(format!("fields.{key} is not a string")))
        };
        let level = || value.as_i64().ok_or_else(|| StepError::Input(format!("fields.{key} is not an integer 1-4")));
        match key.as_str() {
            "title" => change.title = Some(text()?),
            "description" => change.description = Some(text()?),
            "category" => change.category = Some(Some(text()?)),
            "tags" => {
                change.tags = Some(
                    serde_json::from_value(value.clone())
                        .map_err(|_| StepError::Input(format!("fields.{key} is not a list of strings")))?,
                )
            }
            "impact" => {
                change.impact = Some(Impact::new(level()?).map_err(|e| StepError::Input(format!("impact: {e}")))?)
            }
            "urgency" => {
                change.urgency = Some(Urgency::new(level()?).map_err(|e| StepError::Input(format!("urgency: {e}")))?)
            }
            other => {
                return Err(StepError::Input(format!(
                    "fields.{other}: not a field a playbook sets (title, description, category, tags, impact, urgency)"
                )));
            }
        }
    }
    if change == TicketChange::default() {
        return Err(StepError::Input("the update changes nothing".into()));
    }
    Ok(change)
}

/// An active user of the tenant by email (or id).
pub async fn user(tx: &mut TenantTx, who: &str) -> Result<Uuid, StepError> {
    if let Ok(id) = who.parse::<Uuid>() {
        return match users::get(tx, id).await {
            Ok(u) if u.active => Ok(u.id),
            _ => Err(StepError::Input(format!("no active user {who}"))),
        };
    }
    let filter = users::UserFilter { q: Some(who), role: None, active: Some(true), limit: 50, offset: 0 };
    let (found, _) = users::list(tx, filter).await?;
    found
        .into_iter()
        .find(|u| u.email.eq_ignore_ascii_case(who.trim()))
        .map(|u| u.id)
        .ok_or_else(|| StepError::Input(format!("no active user with the email {who:?}")))
}

/// A team of the tenant by name (or id).
async fn team(tx: &mut TenantTx, which: &str) -> Result<Uuid, StepError> {
    let all = teams::list(tx).await?;
    all.iter()
        .find(|t| t.name.eq_ignore_ascii_case(which.trim()) || which.parse::<Uuid>().is_ok_and(|id| id == t.id))
        .map(|t| t.id)
        .ok_or_else(|| StepError::Input(format!("no team named {which:?}")))
}

/// `ticket.create_task`: the task the step waits on (the workflow then waits for it to be closed
/// or cancelled): the one this round or an earlier one opened (see the module's rules), or a new
/// one.
pub async fn create_task(acts: &PlaybookActivities, call: &StepCall, attempt: u32) -> Result<TaskOpened, StepError> {
    let t: CreateTask = input(call)?;
    if t.title.trim().is_empty() {
        return Err(StepError::Input("the task's title is empty".into()));
    }
    let mut tx = acts.tx(call).await?;
    if let Some(opened) = existing_task(&mut tx, call, attempt).await? {
        tx.commit().await?;
        return Ok(opened);
    }
    playbooks::step_started(&mut tx, call.run.run_id, &call.step, call.round, attempt).await?;
    tx.commit().await?;
    let mut tx = acts.tx(call).await?;
    let parent = tickets::lock(&mut tx, call.run.ticket.ticket_id).await?;
    // a concurrent attempt may have opened it while this one waited for the lock
    if let Some(opened) = existing_task(&mut tx, call, attempt).await? {
        tx.commit().await?;
        return Ok(opened);
    }
    let new = new_task(&mut tx, &t, &parent, call).await?;
    let decided = new.open(&Actor::system()).map_err(|r| StepError::Refused(r.to_string()))?;
    let task = changes::open(&mut tx, &call.run.ticket.tenant, &decided).await?;
    // ticket_links name who linked: the parent's requester, on whose behalf the task is open
    tickets::add_link(&mut tx, task.tenant_id, task.id, parent.id, LinkKind::TaskOf, parent.requester_id).await?;
    playbooks::add_watch(&mut tx, call.run.run_id, task.id).await?;
    let opened = opened_of(&task)?;
    let waits = StepTask { ticket_id: task.id, round: call.round };
    playbook_tasks::remember(&mut tx, call.run.run_id, &call.step, waits, &shown(&opened)).await?;
    tx.commit().await?;
    tracing::info!(run = %call.run.workflow_id, step = %call.step, task = %opened.number, "task opened");
    Ok(opened)
}

/// The task ticket `t` asks for, for `parent`: requested by the parent's requester, at the
/// parent's impact and urgency, its team and assignee looked up.
async fn new_task(
    tx: &mut TenantTx,
    t: &CreateTask,
    parent: &TicketRow,
    call: &StepCall,
) -> Result<NewTicket, StepError> {
    let assignee_id = match &t.assignee {
        Some(a) => Some(user(tx, a).await?),
        None => None,
    };
    let team_id = match &t.team {
        Some(name) => Some(team(tx, name).await?),
        None => None,
    };
    let number = call.run.ticket.number.to_string();
    let description = match t.description.as_deref() {
        Some(d) if !d.trim().is_empty() => format!("{d}\n\n(Task of {number}, playbook {})", call.run.playbook),
        _ => format!("Task of {number}, opened by playbook {}.", call.run.playbook),
    };
    Ok(NewTicket {
        kind: TicketKind::Task,
        title: t.title.clone(),
        description,
        impact: Impact::new(i64::from(parent.impact)).unwrap_or(Impact::MEDIUM),
        urgency: Urgency::new(i64::from(parent.urgency)).unwrap_or(Urgency::MEDIUM),
        priority: None,
        requester_id: Some(parent.requester_id),
        assignee_id,
        team_id,
        category: parent.category.clone(),
        tags: vec!["playbook-task".into()],
        change_type: None,
        risk: None,
    })
}

/// The task this round of the step waits on if there is one already (the module's rules): the
/// one this round opened, whatever its status; else the one an earlier round waited on, unless
/// it was cancelled, which this round takes over (the step running again, in this round).
/// `None`: a new task is to be opened.
async fn existing_task(tx: &mut TenantTx, call: &StepCall, attempt: u32) -> Result<Option<TaskOpened>, StepError> {
    let Some(known) = playbook_tasks::opened(tx, call.run.run_id, &call.step).await? else { return Ok(None) };
    let task = tickets::get(tx, known.ticket_id).await?;
    let opened = opened_of(&task)?;
    if known.round >= call.round {
        return Ok(Some(opened));
    }
    if task.status == Status::Cancelled {
        return Ok(None);
    }
    playbooks::step_started(tx, call.run.run_id, &call.step, call.round, attempt).await?;
    let waits = StepTask { ticket_id: task.id, round: call.round };
    playbook_tasks::remember(tx, call.run.run_id, &call.step, waits, &shown(&opened)).await?;
    tracing::info!(run = %call.run.workflow_id, step = %call.step, task = %opened.number, "waiting on the task again");
    Ok(Some(opened))
}

/// What the step shows while it waits on `opened`.
fn shown(opened: &TaskOpened) -> Value {
    json!({"task_ticket_id": opened.ticket_id, "number": opened.number, "status": opened.status})
}

fn opened_of(task: &TicketRow) -> Result<TaskOpened, StepError> {
    let parsed = changes::parse(task).map_err(|e| StepError::Internal(e.to_string()))?;
    Ok(TaskOpened { ticket_id: task.id, number: parsed.number.to_string(), status: task.status.as_str().to_owned() })
}
