//! `POST /products`, `GET /products/{id}`.

use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;
use keel::validate::{Field, Validation};
use keel::{ApiError, Json, Path};
use serde::Deserialize;

use crate::app::AppState;
use crate::domain::{non_negative, Id, ProductName};
use crate::store::products::{NewProduct, Product};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/products", post(create))
        .route("/products/{id}", get(show))
}

#[derive(Debug, Deserialize)]
struct NewProductBody {
    #[serde(default)]
    name: Field<String>,
    #[serde(default)]
    price_cents: Field<i64>,
    #[serde(default)]
    stock: Field<i64>,
}

impl TryFrom<NewProductBody> for NewProduct {
    type Error = ApiError;

    fn try_from(body: NewProductBody) -> Result<Self, ApiError> {
        let mut v = Validation::body();
        let name = v.field("name", body.name, ProductName::parse);
        let price_cents = v.field("price_cents", body.price_cents, non_negative);
        let stock = v.field("stock", body.stock, non_negative);
        match (name, price_cents, stock) {
            (Some(name), Some(price_cents), Some(stock)) => Ok(NewProduct {
                name,
                price_cents,
                stock,
            }),
            _ => Err(v.into_error()),
        }
    }
}

async fn create(
    State(state): State<AppState>,
    Json(body): Json<NewProductBody>,
) -> Result<impl IntoResponse, ApiError> {
    let new = NewProduct::try_from(body)?;
    let product = state.store.create_product(&new).await?;
    Ok(super::created(format!("/products/{}", product.id), product))
}

async fn show(
    State(state): State<AppState>,
    Path(id): Path<Id>,
) -> Result<Json<Product>, ApiError> {
    let product = state.store.product(id).await?;
    product
        .map(Json)
        .ok_or_else(|| ApiError::not_found("product", id))
}
