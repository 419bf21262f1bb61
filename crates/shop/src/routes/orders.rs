//! `POST /orders`, `GET /orders/{id}`.

use axum::extract::State;
use axum::routing::get;
use axum::Router;
use keel::idempotency::{self, Idempotency, Saved};
use keel::tasks::Tasks;
use keel::validate::{Valid, Validate};
use keel::{ApiError, Json, Path};

use super::envelope::ErrorEnvelope;
use crate::events::{Event, EventKind};

use crate::domain::{Id, Quantity};
use crate::state::AppState;
use crate::store::orders::{NewOrder, Order, PlaceOrderError};

pub fn router(idempotent: &super::Idempotent) -> Router<AppState> {
    Router::new()
        .route("/orders", idempotency::post(create, idempotent.clone()))
        .route("/orders/{id}", get(show))
}

/// An order to place.
#[derive(Debug, Validate)]
pub(crate) struct NewOrderBody {
    #[validate(example = 1)]
    user_id: Id,
    #[validate(example = 2)]
    product_id: Id,
    /// 1 to 1000.
    #[validate(example = 3)]
    quantity: Quantity,
}

/// Places an order: the stock check and decrement are one atomic step with the insert.
#[utoipa::path(post, path = "/orders", tag = "orders", request_body = NewOrderBody,
    params(("Idempotency-Key" = Option<String>, Header, nullable = false, min_length = 1, max_length = 255, pattern = "^[ -~]+$",
        description = "1 to 255 printable ASCII characters: a retry with the same key, method, path and body gets the first answer again (`Idempotent-Replayed: true`) and creates nothing")),
    responses(
        (status = 201, description = "Placed; `Location: /orders/{id}`", body = Order),
        (status = 400, description = "Malformed JSON body", body = ErrorEnvelope, example = json!({"success": false, "error": "Malformed JSON body", "code": "malformed_json", "details": {"line": 1, "column": 10, "reason": "unexpected end of input"}, "request_id": "0b6e3f0e-3d1c-4c7e-9a8e-2f4b8c1d9e10"})),
        (status = 413, description = "Payload too large", body = ErrorEnvelope),
        (status = 415, description = "Unsupported media type", body = ErrorEnvelope),
        (status = 422, description = "Validation error: every problem of the body (`validation_error`); or the Idempotency-Key came with another method, path or body (`idempotency_key_reused`)", body = ErrorEnvelope),
        (status = 404, description = "Resource not found", body = ErrorEnvelope, example = json!({"success": false, "error": "Resource not found", "code": "not_found", "details": {"resource": "user", "id": 99999}, "request_id": "0b6e3f0e-3d1c-4c7e-9a8e-2f4b8c1d9e10"})),
        (status = 409, description = "Insufficient stock (`insufficient_stock`); the total does not fit at this product's price (`total_out_of_range`); or a request with the same Idempotency-Key is in flight (`idempotency_in_progress`, `Retry-After: 1`)", body = ErrorEnvelope, example = json!({"success": false, "error": "Insufficient stock", "code": "insufficient_stock", "details": {"available": 3, "requested": 5}, "request_id": "0b6e3f0e-3d1c-4c7e-9a8e-2f4b8c1d9e10"})),
        (status = "default", description = "Any other error (500, 503 with Retry-After, 504), in the envelope", body = ErrorEnvelope)
    ))]
pub(crate) async fn create(
    State(state): State<AppState>,
    tasks: Tasks,
    key: Idempotency,
    Valid(body): Valid<NewOrderBody>,
) -> Result<Saved, ApiError> {
    let new = NewOrder {
        user_id: body.user_id,
        product_id: body.product_id,
        quantity: body.quantity,
    };
    let key = super::remember(key, "/orders/");
    let (order, saved) = state
        .store
        .place_order(new, state.order_payment_window, key)
        .await
        .map_err(refusal)?;
    let event = Event::new(EventKind::OrderCreated, &order).map_err(ApiError::internal)?;
    super::announce(&tasks, &state, event);
    Ok(saved)
}

/// An order by id.
#[utoipa::path(get, path = "/orders/{id}", tag = "orders",
    params(("id" = i64, Path, minimum = 1, description = "A positive integer")),
    responses(
        (status = 200, description = "The order", body = Order),
        (status = 404, description = "Resource not found", body = ErrorEnvelope, example = json!({"success": false, "error": "Resource not found", "code": "not_found", "details": {"resource": "order", "id": 99999}, "request_id": "0b6e3f0e-3d1c-4c7e-9a8e-2f4b8c1d9e10"})),
        (status = 422, description = "The id is not a positive integer", body = ErrorEnvelope),
        (status = "default", description = "Any other error (500, 503 with Retry-After, 504), in the envelope", body = ErrorEnvelope)
    ))]
pub(crate) async fn show(
    State(state): State<AppState>,
    Path(id): Path<Id>,
) -> Result<Json<Order>, ApiError> {
    let order = state.store.order(id).await?;
    order
        .map(Json)
        .ok_or_else(|| ApiError::not_found("order", id))
}

/// Returns 409 `insufficient_stock`: the order asks for more than the stock.
#[derive(Debug, thiserror::Error)]
#[error("Insufficient stock")]
struct InsufficientStock {
    available: i64,
    requested: i64,
}

impl keel::DomainError for InsufficientStock {
    fn status(&self) -> http::StatusCode {
        http::StatusCode::CONFLICT
    }

    fn code(&self) -> &'static str {
        "insufficient_stock"
    }

    fn details(&self) -> Option<serde_json::Value> {
        Some(serde_json::json!({"available": self.available, "requested": self.requested}))
    }
}

/// Returns 409 `total_out_of_range`: the body is valid, but at this product's price the total
/// does not fit the integers totals are kept in. A rule on stored data, not a validation error.
#[derive(Debug, thiserror::Error)]
#[error("Order total out of range")]
struct TotalOutOfRange;

impl keel::DomainError for TotalOutOfRange {
    fn status(&self) -> http::StatusCode {
        http::StatusCode::CONFLICT
    }

    fn code(&self) -> &'static str {
        "total_out_of_range"
    }
}

/// What each refusal of the store means to the client.
fn refusal(err: PlaceOrderError) -> ApiError {
    match err {
        PlaceOrderError::UnknownUser(id) => ApiError::not_found("user", id),
        PlaceOrderError::UnknownProduct(id) => ApiError::not_found("product", id),
        PlaceOrderError::InsufficientStock {
            available,
            requested,
        } => InsufficientStock {
            available,
            requested,
        }
        .into(),
        PlaceOrderError::TotalOutOfRange => TotalOutOfRange.into(),
        PlaceOrderError::Database(err) => err.into(),
    }
}
