//! `POST /orders`, `GET /orders/{id}`.

use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;
use keel::tasks::Tasks;
use keel::validate::{Field, Validation};
use keel::{ApiError, Json, Path};
use serde::Deserialize;

use crate::app::AppState;
use crate::domain::{Id, Quantity};
use crate::store::orders::{NewOrder, Order};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/orders", post(create))
        .route("/orders/{id}", get(show))
}

#[derive(Debug, Deserialize)]
struct NewOrderBody {
    #[serde(default)]
    user_id: Field<i64>,
    #[serde(default)]
    product_id: Field<i64>,
    #[serde(default)]
    quantity: Field<i64>,
}

impl TryFrom<NewOrderBody> for NewOrder {
    type Error = ApiError;

    fn try_from(body: NewOrderBody) -> Result<Self, ApiError> {
        let mut v = Validation::body();
        let user_id = v.field("user_id", body.user_id, Id::parse);
        let product_id = v.field("product_id", body.product_id, Id::parse);
        let quantity = v.field("quantity", body.quantity, Quantity::parse);
        match (user_id, product_id, quantity) {
            (Some(user_id), Some(product_id), Some(quantity)) => Ok(NewOrder {
                user_id,
                product_id,
                quantity,
            }),
            _ => Err(v.into_error()),
        }
    }
}

async fn create(
    State(state): State<AppState>,
    tasks: Tasks,
    Json(body): Json<NewOrderBody>,
) -> Result<impl IntoResponse, ApiError> {
    let new = NewOrder::try_from(body)?;
    let order = state.store.place_order(new).await?;
    let properties = serde_json::json!({
        "order_id": order.id, "user_id": order.user_id, "product_id": order.product_id,
        "quantity": order.quantity, "total_cents": order.total_cents,
    });
    super::record_event(&tasks, &state, "order_created", properties);
    super::push_event(&tasks, &state, "order.created", &order);
    Ok(super::created(format!("/orders/{}", order.id), order))
}

async fn show(State(state): State<AppState>, Path(id): Path<Id>) -> Result<Json<Order>, ApiError> {
    let order = state.store.order(id).await?;
    order
        .map(Json)
        .ok_or_else(|| ApiError::not_found("order", id))
}
