//! `POST /products`, `GET /products/{id}`.

use axum::extract::State;
use axum::routing::get;
use axum::Router;
use keel::idempotency::{self, Idempotency, Saved};
use keel::validate::{Valid, Validate};
use keel::{ApiError, Json, Path};

use super::envelope::ErrorEnvelope;

use crate::domain::{Id, ProductName};
use crate::state::AppState;
use crate::store::products::{NewProduct, Product};

pub fn router(idempotent: &super::Idempotent) -> Router<AppState> {
    Router::new()
        .route("/products", idempotency::post(create, idempotent.clone()))
        .route("/products/{id}", get(show))
}

/// A product to create.
#[derive(Debug, Validate)]
pub(crate) struct NewProductBody {
    /// 1 to 200 characters.
    #[validate(example = "Lamp")]
    name: ProductName,
    /// An integer ≥ 0.
    #[validate(range(ge = 0), example = 1999)]
    price_cents: i64,
    /// An integer ≥ 0.
    #[validate(range(ge = 0), example = 10)]
    stock: i64,
}

/// Creates a product.
#[utoipa::path(post, path = "/products", tag = "products", request_body = NewProductBody,
    params(("Idempotency-Key" = Option<String>, Header, nullable = false, min_length = 1, max_length = 255, pattern = "^[ -~]+$",
        description = "1 to 255 printable ASCII characters: a retry with the same key, method, path and body gets the first answer again (`Idempotent-Replayed: true`) and creates nothing")),
    responses(
        (status = 201, description = "Created; `Location: /products/{id}`", body = Product),
        (status = 400, description = "Malformed JSON body", body = ErrorEnvelope, example = json!({"success": false, "error": "Malformed JSON body", "code": "malformed_json", "details": {"line": 1, "column": 10, "reason": "unexpected end of input"}, "request_id": "0b6e3f0e-3d1c-4c7e-9a8e-2f4b8c1d9e10"})),
        (status = 413, description = "Payload too large", body = ErrorEnvelope),
        (status = 415, description = "Unsupported media type", body = ErrorEnvelope),
        (status = 422, description = "Validation error: every problem of the body (`validation_error`); or the Idempotency-Key came with another method, path or body (`idempotency_key_reused`)", body = ErrorEnvelope),
                (status = 409, description = "A request with the same Idempotency-Key is in flight; `Retry-After: 1`", body = ErrorEnvelope, example = json!({"success": false, "error": "Request with this idempotency key is in progress", "code": "idempotency_in_progress", "details": null, "request_id": "0b6e3f0e-3d1c-4c7e-9a8e-2f4b8c1d9e10"})),
(status = "default", description = "Any other error (500, 503 with Retry-After, 504), in the envelope", body = ErrorEnvelope)
    ))]
pub(crate) async fn create(
    State(state): State<AppState>,
    key: Idempotency,
    Valid(body): Valid<NewProductBody>,
) -> Result<Saved, ApiError> {
    let new = NewProduct {
        name: body.name,
        price_cents: body.price_cents,
        stock: body.stock,
    };
    let key = super::remember(key, "/products/");
    let (_, saved) = state.store.create_product(&new, key).await?;
    Ok(saved)
}

/// A product by id.
#[utoipa::path(get, path = "/products/{id}", tag = "products",
    params(("id" = i64, Path, minimum = 1, description = "A positive integer")),
    responses(
        (status = 200, description = "The product", body = Product),
        (status = 404, description = "Resource not found", body = ErrorEnvelope, example = json!({"success": false, "error": "Resource not found", "code": "not_found", "details": {"resource": "product", "id": 99999}, "request_id": "0b6e3f0e-3d1c-4c7e-9a8e-2f4b8c1d9e10"})),
        (status = 422, description = "The id is not a positive integer", body = ErrorEnvelope),
        (status = "default", description = "Any other error (500, 503 with Retry-After, 504), in the envelope", body = ErrorEnvelope)
    ))]
pub(crate) async fn show(
    State(state): State<AppState>,
    Path(id): Path<Id>,
) -> Result<Json<Product>, ApiError> {
    let product = state.store.product(id).await?;
    product
        .map(Json)
        .ok_or_else(|| ApiError::not_found("product", id))
}
