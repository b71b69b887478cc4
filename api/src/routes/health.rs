//! Liveness and readiness.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use temporalio_client::tonic::IntoRequest;
use temporalio_common::protos::temporal::api::workflowservice::v1::GetSystemInfoRequest;

use crate::app::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(health)).routes(routes!(ready)).routes(routes!(metrics))
}

#[derive(Serialize, ToSchema)]
pub struct Health {
    status: &'static str,
}

/// The process is up.
#[utoipa::path(get, path = "/health", tag = "ops", responses((status = 200, body = Health)))]
pub async fn health() -> Json<Health> {
    Json(Health { status: "ok" })
}

#[derive(Serialize, ToSchema)]
pub struct Readiness {
    ready: bool,
    database: Check,
    migrations: Check,
    temporal: Check,
    outbox: OutboxCheck,
}

/// Whether workflow intents are being delivered: fails while the oldest undelivered one is
/// older than `outbox_max_age_secs` (no relay running, Temporal refusing, delivery stuck).
#[derive(Serialize, ToSchema)]
pub struct OutboxCheck {
    ok: bool,
    /// Intents not yet delivered to Temporal.
    pending: i64,
    /// Age in seconds of the oldest undelivered intent (0 when none waits).
    oldest_undelivered_secs: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct Check {
    ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<String>,
}

impl Check {
    fn from<E: std::fmt::Display>(r: Result<bool, E>, when_false: &str) -> Self {
        match r {
            Ok(true) => Check { ok: true, detail: None },
            Ok(false) => Check { ok: false, detail: Some(when_false.to_owned()) },
            Err(e) => Check { ok: false, detail: Some(e.to_string()) },
        }
    }
}

/// Ready to serve: the database answers, every migration is applied, Temporal answers and the
/// outbox is being delivered (its oldest undelivered intent is younger than
/// `outbox_max_age_secs`).
#[utoipa::path(get, path = "/ready", tag = "ops", responses(
    (status = 200, body = Readiness, description = "ready"),
    (status = 503, body = Readiness, description = "not ready; the failing checks say why"),
))]
pub async fn ready(State(state): State<AppState>) -> (StatusCode, Json<Readiness>) {
    let database = sqlx::query_scalar::<_, i32>("SELECT 1").fetch_one(state.pool.pool()).await.map(|_| true);
    let migrations = if database.is_ok() {
        archer_store::migrations_current(&state.pool).await.map_err(|e| e.to_string())
    } else {
        Err("database unreachable".to_owned())
    };
    let temporal = async {
        let client = state.temporal().await.map_err(|e| e.to_string())?;
        let mut svc = client.connection().workflow_service();
        svc.get_system_info(GetSystemInfoRequest::default().into_request())
            .await
            .map_err(|e| e.message().to_owned())?;
        Ok::<bool, String>(true)
    }
    .await;
    let max_age = state.config.outbox_max_age_secs as f64;
    let outbox = match state.pool.acquire().await {
        Ok(mut conn) => match archer_store::outbox::backlog(&mut conn, state.pool.now()).await {
            Ok((pending, age)) => OutboxCheck {
                ok: age <= max_age,
                pending,
                oldest_undelivered_secs: (age * 10.0).round() / 10.0,
                detail: (age > max_age).then(|| {
                    format!("the oldest undelivered workflow intent is {age:.0} s old (limit {max_age:.0} s)")
                }),
            },
            Err(e) => OutboxCheck { ok: false, pending: 0, oldest_undelivered_secs: 0.0, detail: Some(e.to_string()) },
        },
        Err(e) => OutboxCheck { ok: false, pending: 0, oldest_undelivered_secs: 0.0, detail: Some(e.to_string()) },
    };
    let r = Readiness {
        database: Check::from(database, "database unreachable"),
        migrations: Check::from(migrations, "migrations pending: run `archer migrate`"),
        temporal: Check::from(temporal, "Temporal unreachable"),
        outbox,
        ready: false,
    };
    let ready = r.database.ok && r.migrations.ok && r.temporal.ok && r.outbox.ok;
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(Readiness { ready, ..r }))
}

/// Prometheus metrics of this process, in the text exposition format: HTTP traffic by route,
/// the outbox and its relay, workflow starts and signals, SLA clocks, warnings, breaches and
/// breach lag, approvals, emails, database pools (and the Temporal SDK's `temporal_*` when a
/// worker runs in the process). Names and labels: see the README ("Operations").
#[utoipa::path(get, path = "/metrics", tag = "ops", responses(
    (status = 200, content_type = "text/plain; version=0.0.4", body = String, description = "Prometheus text exposition"),
))]
pub async fn metrics(State(state): State<AppState>) -> axum::response::Response {
    crate::ops::metrics_response(crate::ops::metrics_text(Some(&state.pool)).await)
}
