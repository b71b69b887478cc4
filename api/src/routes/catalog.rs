//! `/catalog` and `/requests`: the service catalog (categories and versioned items with JSON
//! Schema forms; `catalog:admin` to change) and submitting requests from it.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use archer_orchestrator::access::Permission;
use archer_orchestrator::approval::{ApproverSpec, ChainSpec, OnTimeout, StepTally};
use archer_orchestrator::catalog::ItemSpec;
use archer_orchestrator::{Impact, Priority, Status, TicketKind, Urgency};
use archer_store::tickets::NewTicket;
use archer_store::{StoreError, TenantTx, catalog, changes, teams};

use archer_store::approval_changes;

use crate::app::AppState;
use crate::auth::Principal;
use crate::error::{ApiError, ApiResult, FieldError, Problem};
use crate::extract::{AppJson, AppPath, IdempotencyKey, RequestMeta};
use crate::forms;
use crate::idempotency;
use crate::validate::Errors;
use crate::views::ticket::{Ticket, dto, tenant_slug};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(browse))
        .routes(routes!(list_categories, create_category))
        .routes(routes!(update_category, delete_category))
        .routes(routes!(list_items, create_item))
        .routes(routes!(get_item, update_item, deactivate_item))
        .routes(routes!(submit_request))
}

#[derive(Serialize, ToSchema)]
pub struct Category {
    id: Uuid,
    name: String,
    description: String,
    icon: Option<String>,
    position: i32,
}

impl From<catalog::Category> for Category {
    fn from(c: catalog::Category) -> Self {
        Category { id: c.id, name: c.name, description: c.description, icon: c.icon, position: c.position }
    }
}

#[derive(Serialize, ToSchema)]
pub struct Item {
    id: Uuid,
    category_id: Uuid,
    name: String,
    /// Requests keep the version they were submitted against.
    version: i32,
    spec: ItemSpec,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    updated_at: OffsetDateTime,
}

impl TryFrom<catalog::Item> for Item {
    type Error = ApiError;
    fn try_from(i: catalog::Item) -> Result<Self, ApiError> {
        let spec = serde_json::from_value(i.spec).map_err(ApiError::internal)?;
        Ok(Item {
            id: i.id,
            category_id: i.category_id,
            name: i.name,
            version: i.version,
            spec,
            updated_at: i.updated_at,
        })
    }
}

#[derive(Serialize, ToSchema)]
pub struct CatalogCategory {
    #[serde(flatten)]
    category: Category,
    items: Vec<Item>,
}

/// What the caller may request, by category, each item with its form schema.
#[utoipa::path(get, path = "/catalog", tag = "catalog", security(("bearer" = [])), responses((status = 200, body = Vec<CatalogCategory>)))]
pub async fn browse(
    State(state): State<AppState>,
    meta: RequestMeta,
    p: Principal,
) -> ApiResult<Json<Vec<CatalogCategory>>> {
    let mut tx = TenantTx::begin(&state.pool, p.tenant_id, &meta.audit(Some(p.user_id))).await?;
    let my_teams = teams::of_user(&mut tx, p.user_id).await?;
    let cats = catalog::categories(&mut tx).await?;
    let items = catalog::items(&mut tx).await?;
    tx.commit().await?;
    let mut out = Vec::new();
    for c in cats {
        let mut visible = Vec::new();
        for i in items.iter().filter(|i| i.category_id == c.id) {
            let item = Item::try_from(i.clone())?;
            if item.spec.audience.admits(&p.roles, &my_teams) {
                visible.push(item);
            }
        }
        if !visible.is_empty() {
            out.push(CatalogCategory { category: c.into(), items: visible });
        }
    }
    Ok(Json(out))
}

/// Every category (for admins).
#[utoipa::path(get, path = "/catalog/categories", tag = "catalog", security(("bearer" = [])), responses((status = 200, body = Vec<Category>)))]
pub async fn list_categories(
    State(state): State<AppState>,
    meta: RequestMeta,
    p: Principal,
) -> ApiResult<Json<Vec<Category>>> {
    let mut tx = TenantTx::begin(&state.pool, p.tenant_id, &meta.audit(Some(p.user_id))).await?;
    let all = catalog::categories(&mut tx).await?;
    tx.commit().await?;
    Ok(Json(all.into_iter().map(Category::from).collect()))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CategoryBody {
    #[schema(pattern = r"\S", max_length = 200)]
    name: String,
    #[serde(default)]
    #[schema(max_length = 2000)]
    description: String,
    icon: Option<String>,
    #[serde(default)]
    position: i32,
}

/// Create a category. Needs `catalog:admin`.
#[utoipa::path(post, path = "/catalog/categories", tag = "catalog", request_body = CategoryBody, security(("bearer" = [])), responses(
    (status = 201, body = Category),
    (status = 403, body = Problem, content_type = "application/problem+json"),
))]
pub async fn create_category(
    State(state): State<AppState>,
    meta: RequestMeta,
    p: Principal,
    AppJson(body, _): AppJson<CategoryBody>,
) -> ApiResult<(StatusCode, Json<Category>)> {
    p.require(&state, &meta, Permission::CatalogAdmin).await?;
    let mut errors = Errors::new();
    let name = errors.text("/name", &body.name, 1, 200);
    let description = errors.text("/description", &body.description, 0, 2000);
    errors.into_result()?;
    let mut tx = TenantTx::begin(&state.pool, p.tenant_id, &meta.audit(Some(p.user_id))).await?;
    let c = catalog::create_category(
        &mut tx,
        p.tenant_id,
        Uuid::now_v7(),
        &name,
        &description,
        body.icon.as_deref(),
        body.position,
    )
    .await
    .map_err(|e| taken(e, "/name"))?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(c.into())))
}

fn taken(e: StoreError, pointer: &str) -> ApiError {
    match e {
        StoreError::Constraint { ref constraint, .. } if constraint.ends_with("_name") => {
            ApiError::field(pointer, "taken", "this name is already in use")
        }
        other => other.into(),
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CategoryUpdate {
    #[schema(pattern = r"\S", max_length = 200)]
    name: Option<String>,
    description: Option<String>,
    #[serde(default, deserialize_with = "crate::serde_ext::double_option")]
    #[schema(value_type = Option<String>)]
    icon: Option<Option<String>>,
    position: Option<i32>,
}

/// Change a category. Needs `catalog:admin`.
#[utoipa::path(patch, path = "/catalog/categories/{id}", tag = "catalog", params(("id" = Uuid, Path)), request_body = CategoryUpdate, security(("bearer" = [])), responses(
    (status = 200, body = Category),
    (status = 403, body = Problem, content_type = "application/problem+json"),
    (status = 404, body = Problem, content_type = "application/problem+json"),
))]
pub async fn update_category(
    State(state): State<AppState>,
    meta: RequestMeta,
    p: Principal,
    AppPath(id): AppPath<Uuid>,
    AppJson(body, _): AppJson<CategoryUpdate>,
) -> ApiResult<Json<Category>> {
    p.require(&state, &meta, Permission::CatalogAdmin).await?;
    let mut errors = Errors::new();
    let name = body.name.as_deref().map(|n| errors.text("/name", n, 1, 200));
    errors.into_result()?;
    let mut tx = TenantTx::begin(&state.pool, p.tenant_id, &meta.audit(Some(p.user_id))).await?;
    let c = catalog::update_category(
        &mut tx,
        id,
        name.as_deref(),
        body.description.as_deref(),
        body.icon.as_ref().map(|i| i.as_deref()),
        body.position,
    )
    .await
    .map_err(|e| taken(e, "/name"))?;
    tx.commit().await?;
    Ok(Json(c.into()))
}

/// Delete an empty category. Needs `catalog:admin`.
#[utoipa::path(delete, path = "/catalog/categories/{id}", tag = "catalog", params(("id" = Uuid, Path)), security(("bearer" = [])), responses(
    (status = 204, description = "deleted"),
    (status = 403, body = Problem, content_type = "application/problem+json"),
    (status = 409, body = Problem, content_type = "application/problem+json", description = "items still belong to it"),
))]
pub async fn delete_category(
    State(state): State<AppState>,
    meta: RequestMeta,
    p: Principal,
    AppPath(id): AppPath<Uuid>,
) -> ApiResult<StatusCode> {
    p.require(&state, &meta, Permission::CatalogAdmin).await?;
    let mut tx = TenantTx::begin(&state.pool, p.tenant_id, &meta.audit(Some(p.user_id))).await?;
    match catalog::delete_category(&mut tx, id).await {
        Err(StoreError::Constraint { .. }) => {
            return Err(ApiError::Conflict("items still belong to this category".into()));
        }
        other => other?,
    }
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Every active item (for admins).
#[utoipa::path(get, path = "/catalog/items", tag = "catalog", security(("bearer" = [])), responses(
    (status = 200, body = Vec<Item>),
    (status = 403, body = Problem, content_type = "application/problem+json"),
))]
pub async fn list_items(State(state): State<AppState>, meta: RequestMeta, p: Principal) -> ApiResult<Json<Vec<Item>>> {
    p.require(&state, &meta, Permission::CatalogAdmin).await?;
    let mut tx = TenantTx::begin(&state.pool, p.tenant_id, &meta.audit(Some(p.user_id))).await?;
    let all = catalog::items(&mut tx).await?;
    tx.commit().await?;
    Ok(Json(all.into_iter().map(Item::try_from).collect::<ApiResult<_>>()?))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ItemBody {
    category_id: Uuid,
    #[schema(pattern = r"\S", max_length = 200)]
    name: String,
    spec: ItemSpec,
}

/// Checks an item version: its form is a valid JSON Schema, its chain is valid, and whatever
/// it names exists in the tenant.
async fn check_item(tx: &mut TenantTx, spec: &ItemSpec) -> ApiResult<Vec<FieldError>> {
    let mut errors = forms::check_schema(&spec.form_schema, "/spec/form_schema");
    if let Some(chain) = &spec.approval {
        if let Err(errs) = chain.validate() {
            errors.extend(
                errs.into_iter().map(|e| FieldError::new(format!("/spec/approval{}", e.pointer), e.code, e.message)),
            );
        }
        errors.extend(approver_errors(tx, &[("/spec/approval".to_owned(), chain.clone())]).await?);
    }
    if let Some(owner) = spec.owner_id
        && matches!(archer_store::users::get(tx, owner).await, Err(StoreError::NotFound))
    {
        errors.push(FieldError::new("/spec/owner_id", "unknown", "no such user"));
    }
    if spec.playbook.is_some() {
        errors.push(FieldError::new("/spec/playbook", "unsupported", "playbooks are not available yet; leave it out"));
    }
    Ok(errors)
}

/// Whatever the chains' approvers name (users, teams, roles) must exist in the tenant.
pub(crate) async fn approver_errors(tx: &mut TenantTx, chains: &[(String, ChainSpec)]) -> ApiResult<Vec<FieldError>> {
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
    let mut people = std::collections::BTreeSet::new();
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

/// Create a catalog item (version 1). Needs `catalog:admin`.
#[utoipa::path(post, path = "/catalog/items", tag = "catalog", request_body = ItemBody, security(("bearer" = [])), responses(
    (status = 201, body = Item),
    (status = 403, body = Problem, content_type = "application/problem+json"),
    (status = 422, body = Problem, content_type = "application/problem+json", description = "not a valid JSON Schema, a bad chain, unknown category"),
))]
pub async fn create_item(
    State(state): State<AppState>,
    meta: RequestMeta,
    p: Principal,
    AppJson(body, _): AppJson<ItemBody>,
) -> ApiResult<(StatusCode, Json<Item>)> {
    p.require(&state, &meta, Permission::CatalogAdmin).await?;
    let mut e = Errors::new();
    let name = e.text("/name", &body.name, 1, 200);
    let mut errors = e.into_fields();
    let mut tx = TenantTx::begin(&state.pool, p.tenant_id, &meta.audit(Some(p.user_id))).await?;
    if matches!(catalog::category(&mut tx, body.category_id).await, Err(StoreError::NotFound)) {
        errors.push(FieldError::new("/category_id", "unknown", "no such category"));
    }
    errors.extend(check_item(&mut tx, &body.spec).await?);
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let spec = serde_json::to_value(&body.spec).map_err(ApiError::internal)?;
    let item =
        catalog::create_item(&mut tx, p.tenant_id, Uuid::now_v7(), body.category_id, &name, &spec, Some(p.user_id))
            .await
            .map_err(|e| taken(e, "/name"))?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(item.try_into()?)))
}

/// One item (its current version): any item for `catalog:admin`, otherwise only an active
/// item the caller may request (404 for the rest).
#[utoipa::path(get, path = "/catalog/items/{id}", tag = "catalog", params(("id" = Uuid, Path)), security(("bearer" = [])), responses(
    (status = 200, body = Item),
    (status = 404, body = Problem, content_type = "application/problem+json"),
))]
pub async fn get_item(
    State(state): State<AppState>,
    meta: RequestMeta,
    p: Principal,
    AppPath(id): AppPath<Uuid>,
) -> ApiResult<Json<Item>> {
    let mut tx = TenantTx::begin(&state.pool, p.tenant_id, &meta.audit(Some(p.user_id))).await?;
    let row = catalog::item(&mut tx, id).await?;
    let active = row.active;
    let item: Item = row.try_into()?;
    // catalog admins see every item; anyone else only the active ones they may request, and
    // what they may not see does not exist for them (as everywhere else)
    if !p.can(Permission::CatalogAdmin) {
        let my_teams = teams::of_user(&mut tx, p.user_id).await?;
        if !active || !item.spec.audience.admits(&p.roles, &my_teams) {
            return Err(ApiError::NotFound);
        }
    }
    tx.commit().await?;
    Ok(Json(item))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ItemUpdate {
    #[schema(pattern = r"\S", max_length = 200)]
    name: Option<String>,
    category_id: Option<Uuid>,
    /// A new spec makes a new version; requests already submitted keep theirs.
    spec: Option<ItemSpec>,
}

/// Rename, move, or write a new version of an item. Needs `catalog:admin`.
#[utoipa::path(patch, path = "/catalog/items/{id}", tag = "catalog", params(("id" = Uuid, Path)), request_body = ItemUpdate, security(("bearer" = [])), responses(
    (status = 200, body = Item),
    (status = 403, body = Problem, content_type = "application/problem+json"),
    (status = 404, body = Problem, content_type = "application/problem+json"),
    (status = 422, body = Problem, content_type = "application/problem+json"),
))]
pub async fn update_item(
    State(state): State<AppState>,
    meta: RequestMeta,
    p: Principal,
    AppPath(id): AppPath<Uuid>,
    AppJson(body, _): AppJson<ItemUpdate>,
) -> ApiResult<Json<Item>> {
    p.require(&state, &meta, Permission::CatalogAdmin).await?;
    let mut e = Errors::new();
    let name = body.name.as_deref().map(|n| e.text("/name", n, 1, 200));
    let mut errors = e.into_fields();
    let mut tx = TenantTx::begin(&state.pool, p.tenant_id, &meta.audit(Some(p.user_id))).await?;
    if let Some(c) = body.category_id
        && matches!(catalog::category(&mut tx, c).await, Err(StoreError::NotFound))
    {
        errors.push(FieldError::new("/category_id", "unknown", "no such category"));
    }
    if let Some(spec) = &body.spec {
        errors.extend(check_item(&mut tx, spec).await?);
    }
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let spec = body.spec.as_ref().map(serde_json::to_value).transpose().map_err(ApiError::internal)?;
    let item = catalog::update_item(
        &mut tx,
        p.tenant_id,
        id,
        name.as_deref(),
        body.category_id,
        spec.as_ref(),
        Some(p.user_id),
    )
    .await
    .map_err(|e| taken(e, "/name"))?;
    tx.commit().await?;
    Ok(Json(item.try_into()?))
}

/// Withdraw an item from the catalog. Needs `catalog:admin`.
#[utoipa::path(delete, path = "/catalog/items/{id}", tag = "catalog", params(("id" = Uuid, Path)), security(("bearer" = [])), responses(
    (status = 204, description = "withdrawn"),
    (status = 403, body = Problem, content_type = "application/problem+json"),
    (status = 404, body = Problem, content_type = "application/problem+json"),
))]
pub async fn deactivate_item(
    State(state): State<AppState>,
    meta: RequestMeta,
    p: Principal,
    AppPath(id): AppPath<Uuid>,
) -> ApiResult<StatusCode> {
    p.require(&state, &meta, Permission::CatalogAdmin).await?;
    let mut tx = TenantTx::begin(&state.pool, p.tenant_id, &meta.audit(Some(p.user_id))).await?;
    catalog::deactivate_item(&mut tx, id).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RequestBody {
    /// The catalog item's id.
    item: Uuid,
    /// The form's answers, checked against the item's JSON Schema.
    #[schema(value_type = Object)]
    fields: serde_json::Value,
}

/// Submit a request from the catalog. Needs `ticket:create` and to be in the item's audience.
///
/// The answers are checked against the item's form schema: every failing field is reported
/// in one problem+json (`errors[]` with the pointer under `/fields`, the rule and a message)
/// and nothing is stored. A valid request becomes a `REQ-` ticket that keeps the item version
/// and the answers, and starts its request workflow: the item's approval chain (the ticket
/// waits in `pending_approval`), then fulfilment. Accepts `Idempotency-Key`.
#[utoipa::path(post, path = "/requests", tag = "catalog", request_body = RequestBody, security(("bearer" = [])),
    params(IdempotencyKey),
    responses(
        (status = 201, body = Ticket),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn submit_request(
    State(state): State<AppState>,
    meta: RequestMeta,
    p: Principal,
    key: IdempotencyKey,
    AppJson(body, digest): AppJson<RequestBody>,
) -> ApiResult<Response> {
    p.require(&state, &meta, Permission::TicketCreate).await?;
    let tenant = tenant_slug(&p)?;
    let mut tx = TenantTx::begin(&state.pool, p.tenant_id, &meta.audit(Some(p.user_id))).await?;
    let item = match catalog::item(&mut tx, body.item).await {
        Ok(i) if i.active => i,
        Ok(_) | Err(StoreError::NotFound) => return Err(ApiError::field("/item", "unknown", "no such catalog item")),
        Err(e) => return Err(e.into()),
    };
    let spec: ItemSpec = serde_json::from_value(item.spec.clone()).map_err(ApiError::internal)?;
    let my_teams = teams::of_user(&mut tx, p.user_id).await?;
    if !spec.audience.admits(&p.roles, &my_teams) {
        return Err(ApiError::Forbidden(format!("you may not request {}", item.name)));
    }
    if !body.fields.is_object() {
        return Err(ApiError::field("/fields", "type", "the answers are an object of field names to values"));
    }
    let errors =
        forms::check_answers(&spec.form_schema, &body.fields, "/fields").map_err(|e| ApiError::Internal(e.into()))?;
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    if let Some(replay) = idempotency::claim(&mut tx, &p, &key, "POST /requests", &digest).await? {
        return Ok(replay);
    }
    let (impact, urgency) = (Impact::new(3).map_err(ApiError::internal)?, Urgency::new(3).map_err(ApiError::internal)?);
    let status = if spec.approval.is_some() { Status::PendingApproval } else { Status::New };
    let new = NewTicket {
        id: Uuid::now_v7(),
        tenant_id: p.tenant_id,
        kind: TicketKind::ServiceRequest.as_str().into(),
        title: item.name.clone(),
        description: describe(&spec, &body.fields),
        requester_id: p.user_id,
        assignee_id: None,
        team_id: None,
        impact: i16::from(impact.get()),
        urgency: i16::from(urgency.get()),
        priority: i16::from(Priority::derive(impact, urgency).get()),
        priority_reason: None,
        category: Some("service_request".into()),
        status: status.as_str().into(),
        tags: Vec::new(),
        change_type: None,
        risk: None,
        catalog_item_id: Some(item.id),
        catalog_item_version: Some(item.version),
        request_fields: Some(body.fields.clone()),
    };
    let row = changes::create(&mut tx, &tenant, &new).await?;
    if let Some(chain) = &spec.approval {
        let waiting = approval_changes::Waiting {
            waiting_in: Status::PendingApproval,
            on_approved: Status::InProgress,
            on_rejected: Status::Rejected,
        };
        let source = format!("catalog item {} v{}", item.name, item.version);
        approval_changes::start(&mut tx, &row, &tenant, chain, None, &source, waiting).await?;
    }
    let version = row.version;
    let dto = dto(&state, &mut tx, &tenant, row).await?;
    let location = format!("/api/v1/tickets/{}", dto.number);
    let mut resp = idempotency::respond(&mut tx, &p, &key, StatusCode::CREATED, &dto, Some(&location)).await?;
    tx.commit().await?;
    if let Ok(v) = axum::http::HeaderValue::from_str(&crate::error::etag(version)) {
        resp.headers_mut().insert(axum::http::header::ETAG, v);
    }
    Ok(resp)
}

/// A Markdown summary of the answers, for the ticket's description.
fn describe(spec: &ItemSpec, fields: &serde_json::Value) -> String {
    let mut out = String::new();
    if let Some(obj) = fields.as_object() {
        for (k, v) in obj {
            let label =
                spec.form_schema.pointer(&format!("/properties/{k}/title")).and_then(|t| t.as_str()).unwrap_or(k);
            let value = v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string());
            out.push_str(&format!("- **{label}**: {value}\n"));
        }
    }
    out.chars().take(20_000).collect()
}
