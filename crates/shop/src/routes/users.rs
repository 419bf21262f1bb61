//! `POST /users`, `GET /users/{id}`.

use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;
use keel::tasks::Tasks;
use keel::validate::{Field, Validation};
use keel::{ApiError, Json, Path};
use serde::Deserialize;

use crate::app::AppState;
use crate::domain::{Email, Id, Username};
use crate::store::users::{NewUser, User};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/users", post(create))
        .route("/users/{id}", get(show))
}

#[derive(Debug, Deserialize)]
struct NewUserBody {
    #[serde(default)]
    email: Field<String>,
    #[serde(default)]
    username: Field<String>,
}

impl TryFrom<NewUserBody> for NewUser {
    type Error = ApiError;

    fn try_from(body: NewUserBody) -> Result<Self, ApiError> {
        let mut v = Validation::body();
        let email = v.field("email", body.email, Email::parse);
        let username = v.field("username", body.username, Username::parse);
        match (email, username) {
            (Some(email), Some(username)) => Ok(NewUser { email, username }),
            _ => Err(v.into_error()),
        }
    }
}

async fn create(
    State(state): State<AppState>,
    tasks: Tasks,
    Json(body): Json<NewUserBody>,
) -> Result<impl IntoResponse, ApiError> {
    let new = NewUser::try_from(body)?;
    let user = state.store.create_user(&new).await?;
    super::record_event(
        &tasks,
        &state,
        "user_created",
        serde_json::json!({"user_id": user.id}),
    );
    super::push_event(&tasks, &state, "user.created", &user);
    Ok(super::created(format!("/users/{}", user.id), user))
}

async fn show(State(state): State<AppState>, Path(id): Path<Id>) -> Result<Json<User>, ApiError> {
    let user = state.store.user(id).await?;
    user.map(Json)
        .ok_or_else(|| ApiError::not_found("user", id))
}
