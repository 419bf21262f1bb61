//! `POST /users`, `GET /users/{id}`.

use axum::extract::State;
use axum::routing::get;
use axum::Router;
use keel::idempotency::{self, Idempotency, Saved};
use keel::tasks::Tasks;
use keel::validate::{Valid, Validate};
use keel::{ApiError, Json, Path};

use super::envelope::ErrorEnvelope;

use crate::domain::{Email, Id, Username};
use crate::events::{Event, EventKind};
use crate::state::AppState;
use crate::store::users::{NewUser, User};

pub fn router(idempotent: &super::Idempotent) -> Router<AppState> {
    Router::new()
        .route("/users", idempotency::post(create, idempotent.clone()))
        .route("/users/{id}", get(show))
}

/// A user to create.
#[derive(Debug, Validate)]
pub(crate) struct NewUserBody {
    /// A valid address of at most 254 characters; stored lowercased; unique regardless of case.
    #[validate(example = "ada@example.com")]
    email: Email,
    /// 3 to 32 characters of `[A-Za-z0-9_]`; unique regardless of case.
    #[validate(example = "ada")]
    username: Username,
}

/// Creates a user; its welcome mail and webhooks are queued in the same transaction.
#[utoipa::path(post, path = "/users", tag = "users", request_body = NewUserBody,
    params(("Idempotency-Key" = Option<String>, Header, nullable = false, min_length = 1, max_length = 255, pattern = "^[ -~]+$",
        description = "1 to 255 printable ASCII characters: a retry with the same key, method, path and body gets the first answer again (`Idempotent-Replayed: true`) and creates nothing")),
    responses(
        (status = 201, description = "Created; `Location: /users/{id}`", body = User),
        (status = 400, description = "Malformed JSON body", body = ErrorEnvelope, example = json!({"success": false, "error": "Malformed JSON body", "code": "malformed_json", "details": {"line": 1, "column": 10, "reason": "unexpected end of input"}, "request_id": "0b6e3f0e-3d1c-4c7e-9a8e-2f4b8c1d9e10"})),
        (status = 413, description = "Payload too large", body = ErrorEnvelope),
        (status = 415, description = "Unsupported media type", body = ErrorEnvelope),
        (status = 422, description = "Validation error: every problem of the body (`validation_error`); or the Idempotency-Key came with another method, path or body (`idempotency_key_reused`)", body = ErrorEnvelope),
        (status = 409, description = "Email or username taken (`conflict`); or a request with the same Idempotency-Key is in flight (`idempotency_in_progress`, `Retry-After: 1`)", body = ErrorEnvelope, example = json!({"success": false, "error": "Resource already exists or constraint violation", "code": "conflict", "details": {"field": "email"}, "request_id": "0b6e3f0e-3d1c-4c7e-9a8e-2f4b8c1d9e10"})),
        (status = "default", description = "Any other error (500, 503 with Retry-After, 504), in the envelope", body = ErrorEnvelope)
    ))]
pub(crate) async fn create(
    State(state): State<AppState>,
    tasks: Tasks,
    key: Idempotency,
    Valid(body): Valid<NewUserBody>,
) -> Result<Saved, ApiError> {
    let new = NewUser {
        email: body.email,
        username: body.username,
    };
    let key = super::remember(key, "/users/");
    let (user, saved) = state.store.create_user(&new, key).await?;
    // Anyone may listen on /ws/events: the event there names the user, never their email.
    let event = Event::new(EventKind::UserCreated, &user).map_err(ApiError::internal)?;
    super::announce(&tasks, &state, event);
    Ok(saved)
}

/// A user by id.
#[utoipa::path(get, path = "/users/{id}", tag = "users",
    params(("id" = i64, Path, minimum = 1, description = "A positive integer")),
    responses(
        (status = 200, description = "The user", body = User),
        (status = 404, description = "Resource not found", body = ErrorEnvelope, example = json!({"success": false, "error": "Resource not found", "code": "not_found", "details": {"resource": "user", "id": 99999}, "request_id": "0b6e3f0e-3d1c-4c7e-9a8e-2f4b8c1d9e10"})),
        (status = 422, description = "The id is not a positive integer", body = ErrorEnvelope),
        (status = "default", description = "Any other error (500, 503 with Retry-After, 504), in the envelope", body = ErrorEnvelope)
    ))]
pub(crate) async fn show(
    State(state): State<AppState>,
    Path(id): Path<Id>,
) -> Result<Json<User>, ApiError> {
    let user = state.store.user(id).await?;
    user.map(Json)
        .ok_or_else(|| ApiError::not_found("user", id))
}
