//! The `products` table.

use serde::Serialize;

use super::{Engine, Remember, Saved, Store, StoreError};
use crate::domain::{Id, ProductName};

/// A product as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema, sqlx::FromRow)]
pub struct Product {
    pub id: i64,
    pub name: String,
    pub price_cents: i64,
    pub stock: i64,
    pub created_at: String,
}

/// A product to create: every field already valid.
#[derive(Debug, Clone)]
pub struct NewProduct {
    pub name: ProductName,
    pub price_cents: i64,
    pub stock: i64,
}

impl Store {
    /// Inserts a product; with `key`, stores the answer under it in the same write.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn create_product(
        &self,
        new: &NewProduct,
        key: Remember,
    ) -> Result<(Product, Saved), StoreError> {
        forward!(&self.engine, Engine, db => db.create_product(new, key).await)
    }

    /// The product with this id, if any.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn product(&self, id: Id) -> Result<Option<Product>, StoreError> {
        forward!(&self.engine, Engine, db => db.product(id).await)
    }
}
