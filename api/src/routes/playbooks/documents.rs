//! Playbook documents and their versions: saving (every problem located in the YAML, nothing
//! stored when there is one), publishing, retiring, reading, and the dry run.

use axum::Json;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use archer_orchestrator::access::Permission;
use archer_orchestrator::playbook::run::{Plan, dry_run as plan};
use archer_orchestrator::playbook::{self, CheckEnv, IssueKind, Playbook, PlaybookErrors, PlaybookIssue, Trigger};
use archer_store::playbooks::{self as store, PlaybookError, VersionRow};
use archer_store::{TenantTx, connections};

use super::PlaybookSource;
use crate::caller::Caller;
use crate::error::{ApiError, ApiResult, FieldError, Problem};
use crate::extract::{AppPath, OptionalJson};
use crate::views::playbook as view;
use crate::views::ticket::find;

/// Where a version is in its life.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum VersionStatus {
    /// Saved, not yet run; saving again replaces it.
    Draft,
    /// What triggers and manual runs start; immutable.
    Published,
    /// No longer started; runs already going finish on it.
    Retired,
}

/// One version of a playbook.
#[derive(Serialize, ToSchema)]
pub struct Version {
    playbook_id: Uuid,
    /// The playbook's name (its document's `name`).
    name: String,
    version: i32,
    status: VersionStatus,
    /// The document's triggers: `[{"kind": "catalog_fulfilment", "item": "laptop"}, ...]`.
    #[schema(value_type = Vec<Object>)]
    triggers: Value,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    created_at: OffsetDateTime,
    created_by: Option<Uuid>,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    published_at: Option<OffsetDateTime>,
    published_by: Option<Uuid>,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    retired_at: Option<OffsetDateTime>,
}

impl TryFrom<&VersionRow> for Version {
    type Error = ApiError;
    fn try_from(v: &VersionRow) -> ApiResult<Self> {
        let status = match v.status.as_str() {
            "draft" => VersionStatus::Draft,
            "published" => VersionStatus::Published,
            "retired" => VersionStatus::Retired,
            other => return Err(ApiError::Internal(format!("version status `{other}`").into())),
        };
        Ok(Version {
            playbook_id: v.playbook_id,
            name: v.name.clone(),
            version: v.version,
            status,
            triggers: v.triggers.clone(),
            created_at: v.created_at,
            created_by: v.created_by,
            published_at: v.published_at,
            published_by: v.published_by,
            retired_at: v.retired_at,
        })
    }
}

/// A version with its YAML document.
#[derive(Serialize, ToSchema)]
pub struct VersionSource {
    #[serde(flatten)]
    version: Version,
    /// The YAML document, as saved.
    source: String,
}

/// A playbook and the numbers of its current versions.
#[derive(Serialize, ToSchema)]
pub struct PlaybookSummary {
    id: Uuid,
    name: String,
    published_version: Option<i32>,
    draft_version: Option<i32>,
    latest_version: Option<i32>,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    created_at: OffsetDateTime,
}

impl From<store::PlaybookRow> for PlaybookSummary {
    fn from(p: store::PlaybookRow) -> Self {
        PlaybookSummary {
            id: p.id,
            name: p.name,
            published_version: p.published_version,
            draft_version: p.draft_version,
            latest_version: p.latest_version,
            created_at: p.created_at,
        }
    }
}

/// A playbook with all its versions, newest first.
#[derive(Serialize, ToSchema)]
pub struct PlaybookDetail {
    #[serde(flatten)]
    playbook: PlaybookSummary,
    versions: Vec<Version>,
}

fn lifecycle(e: PlaybookError) -> ApiError {
    match e {
        PlaybookError::State(detail) => ApiError::Conflict(detail),
        PlaybookError::Store(s) => s.into(),
    }
}

fn located(kind: IssueKind, path: String, line: u64, column: u64, message: String) -> PlaybookIssue {
    PlaybookIssue { kind, path, line, column, message }
}

/// Checks a parsed document against the tenant: the catalog item its fulfilment trigger names
/// must exist (its form is what `request.fields.X` templates may read), connections must
/// exist, and then everything the domain checks beyond structure. Every problem at once.
async fn check_in_tenant(tx: &mut TenantTx, pb: &Playbook) -> ApiResult<()> {
    let mut issues = Vec::new();
    let mut form = None;
    for (i, t) in pb.triggers.iter().enumerate() {
        let Trigger::CatalogFulfilment { item } = &t.value else { continue };
        match store::find_item(tx, item).await? {
            Some(found) => form = form.or_else(|| found.spec.get("form_schema").cloned()),
            None => issues.push(located(
                IssueKind::Trigger,
                format!("/triggers/{i}/catalog_fulfilment/item"),
                t.referenced.line(),
                t.referenced.column(),
                format!("no active catalog item `{item}` (name it by its slug, e.g. `new-starter`, or its id)"),
            )),
        }
    }
    let env = CheckEnv { form, connections: Some(connections::names(tx).await?) };
    issues.extend(playbook::check(pb, &env));
    let mut errors = view::issue_errors(&PlaybookErrors(issues));
    // the name is the playbook's key (and part of its runs' workflow ids)
    if !connections::valid_name(&pb.name.value) && !pb.name.value.trim().is_empty() {
        errors.push(
            FieldError::new(
                "/name",
                "name",
                "1 to 100 letters, digits, `_`, `.` or `-`, starting with a letter or digit",
            )
            .located(pb.name.referenced.line(), pb.name.referenced.column()),
        );
    }
    if errors.is_empty() { Ok(()) } else { Err(ApiError::Validation(errors)) }
}

/// The document, parsed; its structural problems as a 422.
fn parsed(source: &str) -> ApiResult<Playbook> {
    playbook::parse(source).map_err(|e| ApiError::Validation(view::issue_errors(&e)))
}

/// Save a playbook as its draft (`application/yaml`, or JSON `{"source": ...}`). The document
/// is checked completely first; on any problem the answer lists every one (pointer, YAML line
/// and column, kind as `code`) and nothing is stored. Needs `playbook:admin`.
#[utoipa::path(post, path = "/playbooks", tag = "playbooks", security(("bearer" = [])),
    request_body(content(
        (String = "application/yaml", example = "name: triage\ntriggers: [manual]\nsteps:\n  - id: note\n    action: ticket.comment\n    with: { body: Triage started }\n"),
        (String = "text/yaml"),
        (super::SourceBody = "application/json"),
    )),
    responses(
        (status = 201, body = VersionSource, description = "the draft (a new version, or the draft replaced)"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json", description = "every problem in the document, each with `pointer`, `line`, `column` and `code` (its kind: `cycle`, `unknown_action`, `missing_need`, `yaml`, `too_large`, `bad_duration`, ...)"),
    ))]
pub async fn save_playbook(
    caller: Caller,
    PlaybookSource(source): PlaybookSource,
) -> ApiResult<(StatusCode, Json<VersionSource>)> {
    caller.require(Permission::PlaybookAdmin).await?;
    let pb = parsed(&source)?;
    let mut tx = caller.begin().await?;
    check_in_tenant(&mut tx, &pb).await?;
    let triggers = store::triggers_json(&pb);
    let v = store::save_draft(&mut tx, caller.tenant_id(), &pb.name.value, &source, &triggers, Some(caller.user_id()))
        .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(VersionSource { version: (&v).try_into()?, source: v.source })))
}

/// The tenant's playbooks, by name. Needs `playbook:admin`.
#[utoipa::path(get, path = "/playbooks", tag = "playbooks", security(("bearer" = [])), responses(
    (status = 200, body = Vec<PlaybookSummary>),
    (status = 403, body = Problem, content_type = "application/problem+json"),
))]
pub async fn list_playbooks(caller: Caller) -> ApiResult<Json<Vec<PlaybookSummary>>> {
    caller.require(Permission::PlaybookAdmin).await?;
    let mut tx = caller.begin().await?;
    let all = store::list(&mut tx).await?;
    tx.commit().await?;
    Ok(Json(all.into_iter().map(PlaybookSummary::from).collect()))
}

/// A playbook with its versions (newest first). Needs `playbook:admin`.
#[utoipa::path(get, path = "/playbooks/{id}", tag = "playbooks", params(("id" = Uuid, Path)), security(("bearer" = [])), responses(
    (status = 200, body = PlaybookDetail),
    (status = 403, body = Problem, content_type = "application/problem+json"),
    (status = 404, body = Problem, content_type = "application/problem+json"),
))]
pub async fn get_playbook(caller: Caller, AppPath(id): AppPath<Uuid>) -> ApiResult<Json<PlaybookDetail>> {
    caller.require(Permission::PlaybookAdmin).await?;
    let mut tx = caller.begin().await?;
    let detail = store::get(&mut tx, id).await?;
    tx.commit().await?;
    let versions = detail.versions.iter().map(Version::try_from).collect::<ApiResult<_>>()?;
    Ok(Json(PlaybookDetail { playbook: detail.playbook.into(), versions }))
}

/// One version with its document. Needs `playbook:admin`.
#[utoipa::path(get, path = "/playbooks/{id}/versions/{version}", tag = "playbooks", params(("id" = Uuid, Path), ("version" = i32, Path)), security(("bearer" = [])), responses(
    (status = 200, body = VersionSource),
    (status = 403, body = Problem, content_type = "application/problem+json"),
    (status = 404, body = Problem, content_type = "application/problem+json"),
))]
pub async fn get_version(
    caller: Caller,
    AppPath((id, version)): AppPath<(Uuid, i32)>,
) -> ApiResult<Json<VersionSource>> {
    caller.require(Permission::PlaybookAdmin).await?;
    let mut tx = caller.begin().await?;
    let v = store::version_row(&mut tx, id, version).await?;
    tx.commit().await?;
    Ok(Json(VersionSource { version: (&v).try_into()?, source: v.source }))
}

/// Publish the draft: checked again against the tenant as it is now (a connection or catalog
/// item it names may have gone), then it is what triggers and manual runs start; the version
/// published before is retired (its runs in flight finish on it). Needs `playbook:admin`.
#[utoipa::path(post, path = "/playbooks/{id}/versions/{version}/publish", tag = "playbooks", params(("id" = Uuid, Path), ("version" = i32, Path)), security(("bearer" = [])), responses(
    (status = 200, body = Version),
    (status = 403, body = Problem, content_type = "application/problem+json"),
    (status = 404, body = Problem, content_type = "application/problem+json"),
    (status = 409, body = Problem, content_type = "application/problem+json", description = "the version is not the draft"),
    (status = 422, body = Problem, content_type = "application/problem+json", description = "the draft no longer passes its checks"),
))]
pub async fn publish_version(caller: Caller, AppPath((id, version)): AppPath<(Uuid, i32)>) -> ApiResult<Json<Version>> {
    caller.require(Permission::PlaybookAdmin).await?;
    let mut tx = caller.begin().await?;
    let v = store::version_row(&mut tx, id, version).await?;
    if v.status == "draft" {
        check_in_tenant(&mut tx, &parsed(&v.source)?).await?;
    }
    let published = store::publish(&mut tx, id, version, Some(caller.user_id())).await.map_err(lifecycle)?;
    tx.commit().await?;
    Ok(Json((&published).try_into()?))
}

/// Retire the published version: nothing starts it any more (runs in flight finish). Needs
/// `playbook:admin`.
#[utoipa::path(post, path = "/playbooks/{id}/versions/{version}/retire", tag = "playbooks", params(("id" = Uuid, Path), ("version" = i32, Path)), security(("bearer" = [])), responses(
    (status = 200, body = Version),
    (status = 403, body = Problem, content_type = "application/problem+json"),
    (status = 404, body = Problem, content_type = "application/problem+json"),
    (status = 409, body = Problem, content_type = "application/problem+json", description = "the version is not the published one"),
))]
pub async fn retire_version(caller: Caller, AppPath((id, version)): AppPath<(Uuid, i32)>) -> ApiResult<Json<Version>> {
    caller.require(Permission::PlaybookAdmin).await?;
    let mut tx = caller.begin().await?;
    let retired = store::retire(&mut tx, id, version).await.map_err(lifecycle)?;
    tx.commit().await?;
    Ok(Json((&retired).try_into()?))
}

/// A sample catalog request for a dry run.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SampleRequest {
    /// The item's slug (`new-starter`) or id.
    item: String,
    /// The form's answers.
    #[schema(value_type = Object)]
    fields: Value,
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct DryRunBody {
    /// The version to plan; by default the draft, else the published version, else the latest.
    version: Option<i32>,
    /// A ticket (number or id) whose data the plan renders; a neutral sample when left out.
    #[schema(pattern = r"\S", max_length = 64)]
    ticket: Option<String>,
    /// A sample catalog request; for a catalog request ticket, its own request by default.
    request: Option<SampleRequest>,
    /// A manual run's inputs.
    #[schema(value_type = Option<Object>)]
    inputs: Option<Value>,
}

/// The version a dry run plans: the one asked for, or the draft, the published or the latest.
fn pick(versions: &[VersionRow], asked: Option<i32>) -> ApiResult<&VersionRow> {
    let found = match asked {
        Some(n) => versions.iter().find(|v| v.version == n),
        None => versions
            .iter()
            .find(|v| v.status == "draft")
            .or_else(|| versions.iter().find(|v| v.status == "published"))
            .or_else(|| versions.first()),
    };
    found.ok_or_else(|| ApiError::field("/version", "unknown", "the playbook has no such version"))
}

/// The plan of a version for a sample ticket, request or inputs: which steps run, in which
/// waves, with their inputs rendered; which are skipped and why. Nothing is written, started or
/// audited. Needs `playbook:admin`.
#[utoipa::path(post, path = "/playbooks/{id}/dry-run", tag = "playbooks", params(("id" = Uuid, Path)), request_body = DryRunBody, security(("bearer" = [])), responses(
    (status = 200, body = Plan),
    (status = 403, body = Problem, content_type = "application/problem+json"),
    (status = 404, body = Problem, content_type = "application/problem+json"),
    (status = 422, body = Problem, content_type = "application/problem+json", description = "no such version or ticket"),
))]
pub async fn dry_run(
    caller: Caller,
    AppPath(id): AppPath<Uuid>,
    OptionalJson(body): OptionalJson<DryRunBody>,
) -> ApiResult<Json<Plan>> {
    caller.require(Permission::PlaybookAdmin).await?;
    let mut tx = caller.begin().await?;
    let detail = store::get(&mut tx, id).await?;
    let version = pick(&detail.versions, body.version)?;
    let pb = parsed(&version.source)?;
    let mut request = body.request.map(|r| serde_json::json!({"item": r.item, "fields": r.fields}));
    let (ticket, number) = match body.ticket.as_deref() {
        Some(reference) => {
            let row = match find(&mut tx, &caller.principal, reference, false).await {
                Err(ApiError::NotFound) => return Err(ApiError::field("/ticket", "unknown", "no such ticket")),
                other => other?,
            };
            if request.is_none() {
                request = store::request_scope(&mut tx, &row).await?;
            }
            let scope = store::ticket_scope(&mut tx, &row).await?;
            let number = scope["number"].as_str().unwrap_or("TICKET").to_owned();
            (Some(scope), number)
        }
        None => (None, "DRY-RUN".to_owned()),
    };
    // it only read
    tx.commit().await?;
    let workflow_id = view::dry_run_workflow_id(caller.tenant.as_str(), &number, &pb.name.value);
    let scope = view::dry_run_scope(ticket, request, body.inputs, &workflow_id);
    Ok(Json(plan(&pb, &scope, &workflow_id)))
}
