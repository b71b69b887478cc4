//! What the approval routes share besides views: checking the approvers a chain names (when a
//! catalog item or the change routing is saved), and taking a decision, in the app or by an
//! emailed link, by the domain's rules (`archer_orchestrator::commands::approval`) through the
//! store's one write path (`archer_store::approval_changes::decide`).

use std::collections::BTreeSet;

use jiff::Timestamp;
use uuid::Uuid;

use archer_orchestrator::approval::{ApproverSpec, ChainSpec, Decision, OnTimeout, StepTally};
use archer_orchestrator::commands::approval::{self as rules, Actor, Refusal, UnknownState, Verdict};
use archer_store::approvals::{self, ApprovalRow, TaskRow};
use archer_store::{StoreError, TenantTx, approval_changes};

use crate::error::{ApiError, ApiResult, FieldError};

// ---------------------------------------------------------------------------------------------
// Chains

/// Whatever the chains' approvers name (users, teams, roles) must exist in the tenant, and each
/// step's rule must be one the approvers it names today can meet. `chains` are (pointer
/// prefix, chain) pairs; the errors point into them.
pub async fn approver_errors(tx: &mut TenantTx, chains: &[(String, ChainSpec)]) -> ApiResult<Vec<FieldError>> {
    let roles: Vec<String> = archer_store::users::roles(tx).await?.into_iter().map(|r| r.name).collect();
    let mut errors = Vec::new();
    for (prefix, chain) in chains {
        for (i, step) in chain.steps.iter().enumerate() {
            let escalate = match &step.on_timeout {
                OnTimeout::Escalate(to) => to.as_slice(),
                _ => &[],
            };
            let named =
                step.approvers.iter().enumerate().map(|(j, a)| (format!("{prefix}/steps/{i}/approvers/{j}"), a));
            let esc =
                escalate.iter().enumerate().map(|(j, a)| (format!("{prefix}/steps/{i}/on_timeout/escalate/{j}"), a));
            for (at, a) in named.chain(esc) {
                match a {
                    ApproverSpec::User(id) => {
                        if matches!(archer_store::users::get(tx, *id).await, Err(StoreError::NotFound)) {
                            errors.push(FieldError::new(at, "unknown", "no such user"));
                        }
                    }
                    ApproverSpec::Team(id) => {
                        if matches!(archer_store::teams::get(tx, *id).await, Err(StoreError::NotFound)) {
                            errors.push(FieldError::new(at, "unknown", "no such team"));
                        }
                    }
                    ApproverSpec::Role(r) if !roles.contains(r) => {
                        errors.push(FieldError::new(
                            at,
                            "unknown",
                            format!("no role {r}; roles are {}", roles.join(", ")),
                        ));
                    }
                    _ => {}
                }
            }
            // a rule the approvers it names cannot meet today is refused (it would fail closed)
            let found = approvers_today(tx, &step.approvers).await?;
            if !StepTally::satisfiable(step, found) {
                let needed = step.approve_when.needed(found as u32).max(1);
                errors.push(FieldError::new(
                    format!("{prefix}/steps/{i}/approve_when"),
                    "unsatisfiable",
                    format!("needs {needed} approval(s) but only {found} approver(s) can be found today"),
                ));
            }
        }
    }
    Ok(errors)
}

/// How many distinct active people a step's approvers name today. The requester's manager and
/// the item's owner are known only per request and count as one each.
async fn approvers_today(tx: &mut TenantTx, specs: &[ApproverSpec]) -> ApiResult<usize> {
    let mut people = BTreeSet::new();
    let mut per_request = 0;
    for spec in specs {
        match spec {
            ApproverSpec::User(id) => {
                if archer_store::users::get(tx, *id).await.is_ok_and(|u| u.active) {
                    people.insert(*id);
                }
            }
            ApproverSpec::Role(role) => {
                let filter = archer_store::users::UserFilter {
                    q: None,
                    role: Some(role),
                    active: Some(true),
                    limit: 1000,
                    offset: 0,
                };
                people.extend(archer_store::users::list(tx, filter).await?.0.into_iter().map(|u| u.id));
            }
            ApproverSpec::Team(id) => {
                if let Ok(team) = archer_store::teams::get(tx, *id).await {
                    for member in team.members {
                        if archer_store::users::get(tx, member).await.is_ok_and(|u| u.active) {
                            people.insert(member);
                        }
                    }
                }
            }
            ApproverSpec::RequesterManager | ApproverSpec::ItemOwner => per_request += 1,
        }
    }
    Ok(people.len() + per_request)
}

// ---------------------------------------------------------------------------------------------
// Deciding

/// A decision being taken: on which approval, by whom and how, what, and when.
pub struct Deciding<'a> {
    pub approval: &'a ApprovalRow,
    pub actor: &'a Actor,
    pub decision: Decision,
    pub now: Timestamp,
}

/// What a decision the domain allows came to.
#[derive(Debug)]
pub enum Decided {
    /// Recorded now (the task as recorded).
    Recorded(TaskRow),
    /// The same decision was recorded already (the task as found).
    AlreadyDecided(TaskRow),
}

/// A refused decision, with the task as it was found (if the actor has one).
#[derive(Debug)]
pub struct Refused {
    pub refusal: Refusal,
    pub task: Option<TaskRow>,
}

/// A row that contradicts the domain or the store: a state no migration allows, or the store
/// refusing a decision the domain would record.
#[derive(Debug, thiserror::Error)]
#[error("approval rows out of line: {0}")]
struct Inconsistent(String);

impl From<UnknownState> for ApiError {
    fn from(e: UnknownState) -> Self {
        ApiError::internal(Inconsistent(e.to_string()))
    }
}

/// A task as the domain's rules read it, given its step's and its approval's states.
pub fn task_facts(task: &TaskRow, step_state: &str, approval_state: &str) -> Result<rules::Task, UnknownState> {
    Ok(rules::Task {
        approver: task.approver_id,
        state: task.state.parse()?,
        step: step_state.parse()?,
        approval: approval_state.parse()?,
    })
}

/// What the domain says of the decision `d` on `task` (the actor's task in the approval, if
/// any) as the rows are now. Writes nothing.
pub async fn verdict(
    tx: &mut TenantTx,
    d: &Deciding<'_>,
    requester: Uuid,
    task: Option<&TaskRow>,
) -> ApiResult<Result<Verdict, Refusal>> {
    let facts = match task {
        Some(t) => {
            let step = approvals::step(tx, t.step_id).await?;
            Some(task_facts(t, &step.state, &d.approval.state)?)
        }
        None => None,
    };
    Ok(rules::decide(d.actor, requester, facts.as_ref(), d.decision, d.now))
}

/// Takes the decision `d`: [`verdict`], then, if it is to be recorded, [`record`].
pub async fn decide(
    tx: &mut TenantTx,
    d: &Deciding<'_>,
    requester: Uuid,
    task: Option<TaskRow>,
    comment: Option<&str>,
) -> ApiResult<Result<Decided, Refused>> {
    let verdict = verdict(tx, d, requester, task.as_ref()).await?;
    match (verdict, task) {
        (Err(refusal), task) => Ok(Err(Refused { refusal, task })),
        (Ok(Verdict::AlreadyDecided), Some(t)) => Ok(Ok(Decided::AlreadyDecided(t))),
        (Ok(Verdict::Record), Some(t)) => record(tx, d, &t, comment).await,
        (Ok(_), None) => Err(ApiError::internal(Inconsistent("a decision allowed without a task".into()))),
    }
}

/// Records a decision the domain allowed through the store's write path, with the outbox row
/// that delivers it to the chain's workflow. The store re-reads the task under lock: if it
/// changed since it was read (another tab decided, the chain closed the step), nothing is
/// written and the domain judges it again as the store found it.
pub async fn record(
    tx: &mut TenantTx,
    d: &Deciding<'_>,
    task: &TaskRow,
    comment: Option<&str>,
) -> ApiResult<Result<Decided, Refused>> {
    let via = &d.actor.via;
    let (facts, found) = match approval_changes::decide(tx, d.approval, task, d.decision, comment, via.as_str()).await?
    {
        approvals::Decided::Recorded(t) => return Ok(Ok(Decided::Recorded(t))),
        approvals::Decided::Already(t) => {
            let step = approvals::step(tx, t.step_id).await?;
            (task_facts(&t, &step.state, &d.approval.state)?, t)
        }
        approvals::Decided::Closed { task, step_state, approval_state } => {
            (task_facts(&task, &step_state, &approval_state)?, task)
        }
    };
    match rules::judge(&facts, via, d.decision, d.now) {
        Ok(Verdict::AlreadyDecided) => Ok(Ok(Decided::AlreadyDecided(found))),
        Err(refusal) => Ok(Err(Refused { refusal, task: Some(found) })),
        Ok(Verdict::Record) => {
            Err(ApiError::internal(Inconsistent(format!("the store did not record a decision on task {}", found.id))))
        }
    }
}
