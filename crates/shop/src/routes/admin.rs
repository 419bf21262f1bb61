//! The operators' console: the job queue (list, retry), figures, and the page that shows them.
//!
//! Everything under `/admin/` needs the admin token (the caller puts these routes behind
//! it); `GET /admin` itself is a page without data and loads without one.

use axum::extract::State;
use axum::response::{Html, IntoResponse};
use axum::routing::{get, post};
use axum::Router;
use keel::jobs::sqlite::{JobFilter, JobView, MinuteCount, RetryOutcome};
use keel::validate::{Problem, Report, Valid, Validate};
use keel::{ApiError, Json, Path, Query};
use serde::Serialize;
use std::collections::BTreeMap;
use utoipa::ToSchema;

use super::envelope::ErrorEnvelope;
use crate::domain::Id;
use crate::state::AppState;
use crate::store::webhooks::EndpointSummary;

const PAGE: &str = include_str!("../../assets/admin.html");
const STATES: &[&str] = &["pending", "running", "succeeded", "dead"];

/// `GET /admin`: no data, no token.
pub fn page_router() -> Router<AppState> {
    Router::new().route("/admin", get(page))
}

/// Everything under `/admin/`: the caller puts it behind the admin token.
pub fn operator_router() -> Router<AppState> {
    Router::new()
        .route("/admin/jobs", get(jobs))
        .route("/admin/jobs/{id}/retry", post(retry))
        .route("/admin/stats", get(stats))
        .route("/admin/webhook-endpoints", get(endpoints))
}

/// The console: counts by queue and state, a chart of the last hour, dead jobs with a Retry
/// button, and the webhook subscribers with their latest deliveries.
#[utoipa::path(get, path = "/admin", tag = "admin",
    responses((status = 200, description = "HTML; the token is typed into the page", content_type = "text/html", body = String)))]
pub(crate) async fn page() -> impl IntoResponse {
    static POLICY: std::sync::LazyLock<http::HeaderValue> =
        std::sync::LazyLock::new(|| super::csp::for_inline_page(PAGE));
    (
        [(http::header::CONTENT_SECURITY_POLICY, POLICY.clone())],
        Html(PAGE),
    )
}

/// Query of `GET /admin/jobs`: every problem of it at once, at `["query", name]`.
#[derive(Debug, Validate)]
pub(crate) struct JobsQuery {
    /// `pending`, `running`, `succeeded` or `dead`; empty means any.
    state: Option<StateFilter>,
    /// A queue name (`email`, `webhooks`, `payments`); empty means any.
    queue: Option<String>,
    /// 1 to 500; 50 when absent.
    limit: Option<PageSize>,
    /// Only jobs older than this id: the last id of the previous page.
    before_id: Option<Id>,
}

/// A job state to filter on; empty (`?state=`, as a form with nothing chosen sends it) is any.
#[derive(Debug)]
pub(crate) struct StateFilter(Option<String>);

impl Validate for StateFilter {
    type Raw = String;
    fn validate(raw: String, report: &mut Report) -> Option<Self> {
        if raw.is_empty() {
            return Some(StateFilter(None));
        }
        if STATES.contains(&raw.as_str()) {
            return Some(StateFilter(Some(raw)));
        }
        report.problem(Problem::new(
            "invalid_value",
            "Input should be pending, running, succeeded or dead",
        ));
        None
    }
    /// One of the states, or empty.
    fn openapi_schema() -> keel::validate::schema::SchemaRef {
        let mut schema = <String as Validate>::openapi_schema();
        let options: Vec<&str> = std::iter::once("").chain(STATES.iter().copied()).collect();
        keel::validate::schema::one_of(&mut schema, &options);
        schema
    }
}

/// How many jobs a page holds: 1 to 500.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PageSize(u32);

impl PageSize {
    const MIN: u32 = 1;
    const MAX: u32 = 500;
}

impl Validate for PageSize {
    type Raw = <i64 as Validate>::Raw;
    fn validate(raw: Self::Raw, report: &mut Report) -> Option<Self> {
        match u32::try_from(raw) {
            Ok(size @ Self::MIN..=Self::MAX) => Some(PageSize(size)),
            _ => {
                report.problem(Problem::out_of_range(format!(
                    "Input should be between {} and {}",
                    Self::MIN,
                    Self::MAX
                )));
                None
            }
        }
    }
    fn openapi_schema() -> keel::validate::schema::SchemaRef {
        use keel::validate::schema::{of_type, range, Bound};
        let mut schema = of_type(utoipa::openapi::schema::Type::Integer);
        range(&mut schema, Bound::Ge, Self::MIN);
        range(&mut schema, Bound::Le, Self::MAX);
        schema
    }
}

impl From<JobsQuery> for JobFilter {
    fn from(query: JobsQuery) -> Self {
        JobFilter {
            state: query.state.and_then(|s| s.0),
            queue: query.queue.filter(|q| !q.is_empty()),
            before_id: query.before_id.map(Id::get),
            limit: query.limit.map_or(50, |size| size.0),
        }
    }
}

/// The durable jobs, newest first.
#[utoipa::path(get, path = "/admin/jobs", tag = "admin", params(JobsQuery),
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "Jobs, newest first", body = Vec<Job>),
        (status = 401, description = "Missing or wrong bearer token", body = ErrorEnvelope),
        (status = 403, description = "Admin API disabled", body = ErrorEnvelope),
        (status = 422, description = "A bad filter", body = ErrorEnvelope),
        (status = "default", description = "Any other error, in the envelope", body = ErrorEnvelope),
    ))]
pub(crate) async fn jobs(
    State(state): State<AppState>,
    Valid(Query(query)): Valid<Query<JobsQuery>>,
) -> Result<Json<Vec<JobView>>, ApiError> {
    Ok(Json(state.store.jobs().list(&query.into()).await?))
}

/// A job as the console shows it (the schema of `keel`'s `JobView`).
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub(crate) struct Job {
    id: i64,
    queue: String,
    kind: String,
    /// `pending`, `running`, `succeeded` or `dead`.
    state: String,
    attempts: i64,
    max_attempts: i64,
    last_error: Option<String>,
    run_at: String,
    created_at: String,
    /// The request that enqueued the job.
    request_id: Option<String>,
}

/// Puts a dead job back to pending with its attempts reset.
#[utoipa::path(post, path = "/admin/jobs/{id}/retry", tag = "admin",
    security(("admin_token" = [])),
    params(("id" = i64, Path, minimum = 1, description = "A positive integer")),
    responses(
        (status = 200, description = "The job, pending again", body = Job),
        (status = 401, description = "Missing or wrong bearer token", body = ErrorEnvelope),
        (status = 403, description = "Admin API disabled", body = ErrorEnvelope),
        (status = 404, description = "No such job", body = ErrorEnvelope),
        (status = 409, description = "The job is not dead", body = ErrorEnvelope, example = json!({"success": false, "error": "Invalid state", "code": "invalid_state", "details": {"state": "succeeded"}, "request_id": "0b6e3f0e-3d1c-4c7e-9a8e-2f4b8c1d9e10"})),
        (status = 422, description = "The id is not a positive integer", body = ErrorEnvelope),
        (status = "default", description = "Any other error, in the envelope", body = ErrorEnvelope),
    ))]
pub(crate) async fn retry(
    State(state): State<AppState>,
    Path(id): Path<Id>,
) -> Result<Json<JobView>, ApiError> {
    match state.store.jobs().retry(id.get()).await? {
        RetryOutcome::Retried(job) => Ok(Json(job)),
        RetryOutcome::NotDead(job) => {
            Err(
                ApiError::new(http::StatusCode::CONFLICT, "invalid_state", "Invalid state")
                    .with_details(serde_json::json!({"state": job.state})),
            )
        }
        RetryOutcome::NotFound => Err(ApiError::not_found("job", id)),
    }
}

/// The console's figures.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Stats {
    /// Queue → state → count; every state present for every queue.
    jobs: BTreeMap<String, BTreeMap<String, i64>>,
    /// Path → open connections in this instance.
    websocket_connections: BTreeMap<String, usize>,
    /// Jobs finished per minute over the last hour, oldest first.
    #[schema(value_type = Vec<Object>)]
    finished_per_minute: Vec<MinuteCount>,
}

/// Counts of jobs by queue and state, WebSocket connections by path, and jobs finished per
/// minute over the last hour.
#[utoipa::path(get, path = "/admin/stats", tag = "admin",
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "Figures", body = Stats),
        (status = 401, description = "Missing or wrong bearer token", body = ErrorEnvelope),
        (status = 403, description = "Admin API disabled", body = ErrorEnvelope),
        (status = "default", description = "Any other error, in the envelope", body = ErrorEnvelope),
    ))]
pub(crate) async fn stats(State(state): State<AppState>) -> Result<Json<Stats>, ApiError> {
    let mut jobs: BTreeMap<String, BTreeMap<String, i64>> = BTreeMap::new();
    for (queue, job_state, count) in state.store.jobs().counts().await? {
        let by_state = jobs
            .entry(queue)
            .or_insert_with(|| STATES.iter().map(|s| ((*s).to_owned(), 0)).collect());
        by_state.insert(job_state, count);
    }
    let mut websocket_connections: BTreeMap<String, usize> = [
        (super::ws::CHAT.to_owned(), 0),
        (super::ws::EVENTS.to_owned(), 0),
    ]
    .into();
    websocket_connections.extend(state.hub.connection_counts());
    Ok(Json(Stats {
        jobs,
        websocket_connections,
        finished_per_minute: state.store.jobs().finished_per_minute(60).await?,
    }))
}

/// Webhook subscribers, newest first, each with its five latest deliveries (no secrets).
#[utoipa::path(get, path = "/admin/webhook-endpoints", tag = "admin",
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "Subscribers", body = Vec<EndpointSummary>),
        (status = 401, description = "Missing or wrong bearer token", body = ErrorEnvelope),
        (status = 403, description = "Admin API disabled", body = ErrorEnvelope),
        (status = "default", description = "Any other error, in the envelope", body = ErrorEnvelope),
    ))]
pub(crate) async fn endpoints(
    State(state): State<AppState>,
) -> Result<Json<Vec<EndpointSummary>>, ApiError> {
    Ok(Json(state.store.endpoint_summaries(5).await?))
}
