//! `approval.request`: records an approval of the run's ticket by a one-step chain of the
//! named approvers, which the playbook workflow then runs as its child `approval_chain` (the
//! approvals engine as it is: tasks, emails with decision links, reminders, the inbox). Unlike
//! a catalog request's approval, it neither moves the ticket's status nor starts a `request`
//! workflow: the step's outcome is the chain's.
//!
//! The approval's `source` names the run and step (with the step's idempotency key), so a
//! retry finds the approval it recorded instead of recording a second one.

use serde::Deserialize;

use archer_orchestrator::approval::{ApproverSpec, ChainSpec, Mode, OnTimeout, Rule, StepSpec};
use archer_orchestrator::workflows::approval::chain_workflow_id;
use archer_orchestrator::workflows::playbook_activities::{ApprovalOpened, StepCall, WithdrawApproval};
use archer_store::approvals::{self, ApprovalRow};
use archer_store::{approval_changes, playbooks, tickets};

use super::tickets::user;
use super::{PlaybookActivities, StepError, input};

/// `approval.request`'s inputs.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    /// The approvers' emails.
    pub approvers: Vec<String>,
    /// `all` (the default), `any`, or how many must approve.
    #[serde(default)]
    pub rule: Option<RuleInput>,
    /// The chain step's name, as approvers see it.
    #[serde(default)]
    pub title: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RuleInput {
    Word(String),
    Count(u32),
}

/// The rule `rule` names.
pub fn rule_of(rule: Option<&RuleInput>) -> Result<Rule, StepError> {
    match rule {
        None => Ok(Rule::All),
        Some(RuleInput::Word(w)) if w == "all" => Ok(Rule::All),
        Some(RuleInput::Word(w)) if w == "any" => Ok(Rule::Any),
        Some(RuleInput::Count(n)) if *n >= 1 => Ok(Rule::Count(*n)),
        Some(other) => Err(StepError::Input(format!("rule {other:?} is not all, any or a count of at least 1"))),
    }
}

/// The chain the step asks for: one parallel step of `approvers`.
pub fn chain(approvers: Vec<uuid::Uuid>, rule: Rule, title: &str) -> Result<ChainSpec, StepError> {
    let chain = ChainSpec {
        steps: vec![StepSpec {
            name: title.to_owned(),
            approvers: approvers.into_iter().map(ApproverSpec::User).collect(),
            mode: Mode::Parallel,
            approve_when: rule,
            reject_when: None,
            timeout: None,
            on_timeout: OnTimeout::Reject,
        }],
    };
    chain
        .validate()
        .map_err(|errors| StepError::Input(errors.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; ")))?;
    if let Rule::Count(n) = rule
        && n as usize > chain.steps[0].approvers.len()
    {
        return Err(StepError::Input(format!(
            "rule asks for {n} approvals of {} approvers",
            chain.steps[0].approvers.len()
        )));
    }
    Ok(chain)
}

/// What the approval's `source` says: the run, the step and its idempotency key.
pub fn source(call: &StepCall) -> String {
    format!("playbook {} v{}, step {} ({})", call.run.playbook, call.run.version, call.step, call.idempotency_key)
}

/// `approval.request`: the approval recorded (the workflow runs its chain).
pub async fn request(acts: &PlaybookActivities, call: &StepCall, attempt: u32) -> Result<ApprovalOpened, StepError> {
    let r: Request = input(call)?;
    let rule = rule_of(r.rule.as_ref())?;
    let title = r.title.clone().unwrap_or_else(|| format!("{} ({})", call.step, call.run.playbook));
    let mut tx = acts.tx(call).await?;
    // the ticket's lock serialises attempts: one approval per step
    let ticket = tickets::lock(&mut tx, call.run.ticket.ticket_id).await?;
    let source = source(call);
    if let Some(found) = approvals::of_ticket(&mut tx, ticket.id).await?.into_iter().find(|a| a.source == source) {
        return opened(found);
    }
    playbooks::step_started(&mut tx, call.run.run_id, &call.step, call.round, attempt).await?;
    let mut approvers = Vec::new();
    for email in &r.approvers {
        let id = user(&mut tx, email).await?;
        if !approvers.contains(&id) {
            approvers.push(id);
        }
    }
    let chain = chain(approvers, rule, &title)?;
    let chain_json = serde_json::to_value(&chain).map_err(|e| StepError::Internal(e.to_string()))?;
    let ticket_wf =
        archer_orchestrator::workflows::ticket::workflow_id(&call.run.ticket.tenant, &call.run.ticket.number);
    let row = approvals::create(
        &mut tx,
        ticket.tenant_id,
        ticket.id,
        |seq| chain_workflow_id(&ticket_wf, seq),
        &chain_json,
        &source,
    )
    .await?;
    tx.commit().await?;
    tracing::info!(run = %call.run.workflow_id, step = %call.step, seq = row.seq, "approval recorded");
    opened(row)
}

/// `playbook.approval.withdraw`: cancels the step's approval if it is still pending (a decision
/// that got there first stands: the chain then ends with it), through the same write path as
/// a ticket leaving its approval. Idempotent: a retried attempt finds it no longer pending.
pub async fn withdraw(acts: &PlaybookActivities, w: &WithdrawApproval) -> Result<(), StepError> {
    let mut tx = acts.tx(&w.call).await?;
    // the ticket's lock orders this against a decision being recorded
    tickets::lock(&mut tx, w.call.run.ticket.ticket_id).await?;
    let a = approvals::get(&mut tx, w.approval_id).await?;
    if a.state == "pending" {
        approval_changes::cancel(&mut tx, &a, &w.reason).await?;
        tracing::info!(run = %w.call.run.workflow_id, step = %w.call.step, reason = %w.reason, "approval withdrawn");
    }
    tx.commit().await?;
    Ok(())
}

fn opened(row: ApprovalRow) -> Result<ApprovalOpened, StepError> {
    let chain: ChainSpec = serde_json::from_value(row.chain).map_err(|e| StepError::Internal(e.to_string()))?;
    Ok(ApprovalOpened { approval_id: row.id, seq: row.seq, chain })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use uuid::Uuid;

    #[test]
    fn rules() {
        let parse = |v: serde_json::Value| rule_of(Some(&serde_json::from_value(v).unwrap()));
        assert_eq!(rule_of(None).unwrap(), Rule::All);
        assert_eq!(parse(serde_json::json!("any")).unwrap(), Rule::Any);
        assert_eq!(parse(serde_json::json!(2)).unwrap(), Rule::Count(2));
        assert!(matches!(parse(serde_json::json!("most")), Err(StepError::Input(_))));
        assert!(matches!(parse(serde_json::json!(0)), Err(StepError::Input(_))));
    }

    #[test]
    fn chains() {
        let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let c = chain(vec![a, b], Rule::Any, "Manager sign-off").unwrap();
        assert_eq!(c.steps.len(), 1);
        assert_eq!(c.steps[0].approvers, vec![ApproverSpec::User(a), ApproverSpec::User(b)]);
        assert_eq!(c.steps[0].approve_when, Rule::Any);
        assert!(matches!(chain(vec![a], Rule::Count(2), "x"), Err(StepError::Input(_))));
        assert!(matches!(chain(vec![], Rule::All, "x"), Err(StepError::Input(_))));
        assert!(matches!(chain(vec![a], Rule::All, " "), Err(StepError::Input(_))));
    }
}
