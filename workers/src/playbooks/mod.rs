//! The activities of playbook runs (`playbook.*`, declared in
//! `archer_orchestrator::workflows::playbook_activities`): one per action, and `playbook.record`
//! for the state the workflow decides.
//!
//! Each `#[activity]` method is a thin wrapper over a plain async function (the core, callable
//! from tests without Temporal) that records the step as running with its attempt number,
//! performs the action and records its success with its output. Every action is idempotent:
//! a retry (Temporal's, or an admin's retry of the run) finds the effect of an earlier attempt
//! and answers with it instead of repeating it:
//! - ticket changes record the step's success in the transaction that makes the change, and
//!   look for that success first;
//! - a task ticket and an approval are looked up by the run and step before one is opened;
//! - emails are queued under a Message-ID derived from the run and step, and never sent twice;
//! - HTTP requests and webhooks carry the step's idempotency key (`Idempotency-Key`,
//!   `webhook-id`) for the receiver to dedupe.
//!
//! Changes made by steps are audited with the request id `playbook:<workflow id>`, which is how
//! the trigger lookup knows not to start playbooks on them (no loops). Failures carry the
//! application error types of `playbook_activities::errors`, which say whether Temporal retries.

pub mod approval;
pub mod email;
pub mod http;
pub mod net;
pub mod tickets;
pub mod webhook;

use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde_json::Value;
use temporalio_common::error::ApplicationFailure;
use temporalio_macros::activities;
use temporalio_sdk::activities::{ActivityContext, ActivityError};

use archer_orchestrator::workflows::playbook_activities::{
    ApprovalOpened, RecordRun, StepCall, TaskOpened, WithdrawApproval, errors,
};
use archer_store::secrets::Cipher;
use archer_store::{AuditContext, Db, StoreError, TenantTx, playbooks};

use crate::email::Mailer;
pub use net::HttpClients;

/// Why a step failed, by what Temporal should do about it.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    /// The input is wrong for the action: never retried.
    #[error("{0}")]
    Input(String),
    /// The receiver refused the request (4xx, a redirect): never retried.
    #[error("{0}")]
    BadRequest(String),
    /// The receiver could not be reached or answered 5xx, 408 or 429: retried.
    #[error("{0}")]
    Unavailable(String),
    /// The connection may not reach the address: never retried.
    #[error("{0}")]
    Forbidden(String),
    /// A ticket command refused the change: never retried.
    #[error("{0}")]
    Refused(String),
    /// Archer's own failure (the database): retried.
    #[error("{0}")]
    Internal(String),
}

impl StepError {
    /// The application error type the workflow (and a step's `retry.non_retryable`) sees.
    pub fn type_name(&self) -> &'static str {
        match self {
            StepError::Input(_) => errors::INPUT,
            StepError::BadRequest(_) => errors::BAD_REQUEST,
            StepError::Unavailable(_) | StepError::Internal(_) => errors::UNAVAILABLE,
            StepError::Forbidden(_) => errors::FORBIDDEN,
            StepError::Refused(_) => errors::REFUSED,
        }
    }

    pub fn is_retryable(&self) -> bool {
        matches!(self, StepError::Unavailable(_) | StepError::Internal(_))
    }

    /// The activity's failure: an application error of [`StepError::type_name`], non-retryable
    /// unless [`StepError::is_retryable`]. (Not a `From`: `ActivityError` converts every error
    /// into a retryable one without a type, which `?` would pick silently.)
    pub fn into_activity(self) -> ActivityError {
        let failure = ApplicationFailure::builder(anyhow::anyhow!("{self}"))
            .type_name(self.type_name().to_owned())
            .non_retryable(!self.is_retryable())
            .build();
        ActivityError::application(failure)
    }
}

impl From<StoreError> for StepError {
    fn from(e: StoreError) -> Self {
        StepError::Internal(e.to_string())
    }
}

impl From<archer_store::changes::ServiceError> for StepError {
    fn from(e: archer_store::changes::ServiceError) -> Self {
        StepError::Internal(e.to_string())
    }
}

/// The action's inputs, or an input error naming what is wrong.
pub fn input<T: DeserializeOwned>(call: &StepCall) -> Result<T, StepError> {
    serde_json::from_value(call.input.clone())
        .map_err(|e| StepError::Input(format!("step {} ({}): {e}", call.step, call.action)))
}

/// Audit context of a step's writes: no person, the run as the request (`playbook:<workflow
/// id>`), which keeps ticket triggers from firing on them.
pub fn audit(call: &StepCall) -> AuditContext {
    playbooks::run_audit_context(&call.run.workflow_id, None)
}

/// What the activities reach: the database (and its clock), the mailer, the key of the
/// connections' secrets, the HTTP clients, where people reach the API.
pub struct PlaybookActivities {
    pub pool: Db,
    pub mailer: Option<Mailer>,
    pub cipher: Cipher,
    pub http: HttpClients,
    pub public_url: String,
}

/// What a step found when it began.
pub enum Begun {
    /// Nothing done yet (the step is recorded running).
    Fresh,
    /// An earlier attempt succeeded with this output: answer with it.
    Done(Value),
}

impl PlaybookActivities {
    pub async fn tx(&self, call: &StepCall) -> Result<TenantTx, StepError> {
        Ok(TenantTx::begin(&self.pool, call.run.ticket.tenant_id, &audit(call)).await?)
    }

    /// Records the step running (attempt `attempt`), unless an earlier attempt succeeded.
    pub async fn begin(&self, call: &StepCall, attempt: u32) -> Result<Begun, StepError> {
        let mut tx = self.tx(call).await?;
        if let Some(output) = succeeded(&mut tx, call).await? {
            return Ok(Begun::Done(output));
        }
        playbooks::step_started(&mut tx, call.run.run_id, &call.step, call.round, attempt).await?;
        tx.commit().await?;
        Ok(Begun::Fresh)
    }

    /// Records the step's success with `output`.
    pub async fn finish(&self, call: &StepCall, output: &Value) -> Result<(), StepError> {
        let mut tx = self.tx(call).await?;
        playbooks::step_succeeded(&mut tx, call.run.run_id, &call.step, output).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Runs an action that keeps no transaction open while it works (HTTP, email): begins the
    /// step, runs `act`, records its success.
    async fn run<F, Fut>(&self, call: &StepCall, attempt: u32, act: F) -> Result<Value, StepError>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<Value, StepError>>,
    {
        if let Begun::Done(output) = self.begin(call, attempt).await? {
            return Ok(output);
        }
        let output = act().await?;
        self.finish(call, &output).await?;
        Ok(output)
    }

    /// `playbook.record`.
    pub async fn record_run(&self, input: &RecordRun) -> Result<(), StepError> {
        let ctx = playbooks::run_audit_context(&input.run.workflow_id, None);
        let mut tx = TenantTx::begin(&self.pool, input.run.ticket.tenant_id, &ctx).await?;
        playbooks::record(&mut tx, input).await?;
        tx.commit().await?;
        Ok(())
    }

    /// `playbook.ticket.comment`.
    pub async fn comment(&self, call: &StepCall, attempt: u32) -> Result<Value, StepError> {
        tickets::comment(self, call, attempt).await
    }

    /// `playbook.ticket.update`.
    pub async fn update(&self, call: &StepCall, attempt: u32) -> Result<Value, StepError> {
        tickets::update(self, call, attempt).await
    }

    /// `playbook.ticket.create_task`.
    pub async fn create_task(&self, call: &StepCall, attempt: u32) -> Result<TaskOpened, StepError> {
        tickets::create_task(self, call, attempt).await
    }

    /// `playbook.approval.request`.
    pub async fn request_approval(&self, call: &StepCall, attempt: u32) -> Result<ApprovalOpened, StepError> {
        approval::request(self, call, attempt).await
    }

    /// `playbook.approval.withdraw`.
    pub async fn withdraw_approval(&self, w: &WithdrawApproval) -> Result<(), StepError> {
        approval::withdraw(self, w).await
    }

    /// `playbook.email.send`.
    pub async fn send_email(&self, call: &StepCall, attempt: u32) -> Result<Value, StepError> {
        email::send(self, call, attempt).await
    }

    /// `playbook.http.request`.
    pub async fn send_http(&self, call: &StepCall, attempt: u32) -> Result<Value, StepError> {
        let request: http::HttpRequest = input(call)?;
        self.run(call, attempt, || async {
            let target = self.target(call, &request.connection).await?;
            http::request(&self.http, &target, &request, &call.idempotency_key).await
        })
        .await
    }

    /// `playbook.webhook.post`.
    pub async fn post_webhook(&self, call: &StepCall, attempt: u32) -> Result<Value, StepError> {
        let post: webhook::WebhookPost = input(call)?;
        self.run(call, attempt, || async {
            let target = self.target(call, &post.connection).await?;
            webhook::post(&self.http, &target, &post, &call.idempotency_key, self.pool.now()).await
        })
        .await
    }

    /// The step's connection, its secret decrypted for this request only.
    async fn target(&self, call: &StepCall, name: &str) -> Result<http::Target, StepError> {
        use archer_store::connections::{self, Auth as StoredAuth, ConnectionError};
        let mut tx = self.tx(call).await?;
        let c = connections::resolve(&mut tx, name, &self.cipher).await.map_err(|e| match e {
            ConnectionError::Store(StoreError::NotFound) => StepError::Input(format!("no connection named {name:?}")),
            ConnectionError::Secret(_) => {
                StepError::Input(format!("the secret of connection {name:?} cannot be decrypted with this key"))
            }
            other => StepError::Internal(other.to_string()),
        })?;
        tx.commit().await?;
        let auth = match c.auth {
            StoredAuth::None => http::Auth::None,
            StoredAuth::Bearer => http::Auth::Bearer,
            StoredAuth::Basic => http::Auth::Basic { username: c.username.clone().unwrap_or_default() },
            StoredAuth::Header => http::Auth::Header { name: c.header_name.clone().unwrap_or_default() },
            StoredAuth::Webhook => http::Auth::Webhook,
        };
        Ok(http::Target {
            name: c.name,
            base_url: c.base_url.to_string(),
            auth,
            allow_private: c.allow_private,
            secret: c.secret,
        })
    }
}

/// The output an earlier attempt of the step recorded, if it succeeded.
/// (Any round: a step keeps its idempotency key when an admin retries its run, and its
/// effect stays done.)
async fn succeeded(tx: &mut TenantTx, call: &StepCall) -> Result<Option<Value>, StepError> {
    let run = playbooks::run(tx, call.run.run_id).await?;
    let step = run.steps.into_iter().find(|s| s.step_id == call.step);
    Ok(step.filter(|s| s.status == "succeeded").map(|s| s.output.unwrap_or(Value::Null)))
}

fn attempt(ctx: &ActivityContext) -> u32 {
    ctx.info().attempt
}

#[activities]
impl PlaybookActivities {
    /// Records what the workflow decided: step states and the run's own.
    #[activity(name = "playbook.record")]
    pub async fn record(self: Arc<Self>, _ctx: ActivityContext, input: RecordRun) -> Result<(), ActivityError> {
        self.record_run(&input).await.map_err(StepError::into_activity)
    }

    #[activity(name = "playbook.ticket.comment")]
    pub async fn ticket_comment(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: StepCall,
    ) -> Result<serde_json::Value, ActivityError> {
        self.comment(&input, attempt(&ctx)).await.map_err(StepError::into_activity)
    }

    #[activity(name = "playbook.ticket.update")]
    pub async fn ticket_update(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: StepCall,
    ) -> Result<serde_json::Value, ActivityError> {
        self.update(&input, attempt(&ctx)).await.map_err(StepError::into_activity)
    }

    #[activity(name = "playbook.ticket.create_task")]
    pub async fn ticket_create_task(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: StepCall,
    ) -> Result<TaskOpened, ActivityError> {
        self.create_task(&input, attempt(&ctx)).await.map_err(StepError::into_activity)
    }

    #[activity(name = "playbook.approval.request")]
    pub async fn approval_request(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: StepCall,
    ) -> Result<ApprovalOpened, ActivityError> {
        self.request_approval(&input, attempt(&ctx)).await.map_err(StepError::into_activity)
    }

    #[activity(name = "playbook.approval.withdraw")]
    pub async fn approval_withdraw(
        self: Arc<Self>,
        _ctx: ActivityContext,
        input: WithdrawApproval,
    ) -> Result<(), ActivityError> {
        self.withdraw_approval(&input).await.map_err(StepError::into_activity)
    }

    #[activity(name = "playbook.email.send")]
    pub async fn email_send(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: StepCall,
    ) -> Result<serde_json::Value, ActivityError> {
        self.send_email(&input, attempt(&ctx)).await.map_err(StepError::into_activity)
    }

    #[activity(name = "playbook.http.request")]
    pub async fn http_request(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: StepCall,
    ) -> Result<serde_json::Value, ActivityError> {
        self.send_http(&input, attempt(&ctx)).await.map_err(StepError::into_activity)
    }

    #[activity(name = "playbook.webhook.post")]
    pub async fn webhook_post(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: StepCall,
    ) -> Result<serde_json::Value, ActivityError> {
        self.post_webhook(&input, attempt(&ctx)).await.map_err(StepError::into_activity)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_types_say_what_is_retried() {
        for (e, ty, retried) in [
            (StepError::Input("x".into()), errors::INPUT, false),
            (StepError::BadRequest("x".into()), errors::BAD_REQUEST, false),
            (StepError::Forbidden("x".into()), errors::FORBIDDEN, false),
            (StepError::Refused("x".into()), errors::REFUSED, false),
            (StepError::Unavailable("x".into()), errors::UNAVAILABLE, true),
            (StepError::Internal("x".into()), errors::UNAVAILABLE, true),
        ] {
            assert_eq!((e.type_name(), e.is_retryable()), (ty, retried), "{e:?}");
            let ActivityError::Application(failure) = e.into_activity() else { panic!("not an application error") };
            assert_eq!(failure.type_name(), Some(ty));
            assert_eq!(failure.is_non_retryable(), !retried);
        }
    }
}
