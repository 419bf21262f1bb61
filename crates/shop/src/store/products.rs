//! The `products` table.

use serde::Serialize;

use super::Store;
use crate::domain::{Id, ProductName};

/// A product as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow, utoipa::ToSchema)]
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
    /// Inserts a product.
    pub async fn create_product(&self, new: &NewProduct) -> Result<Product, sqlx::Error> {
        sqlx::query_as(
            "INSERT INTO products (name, price_cents, stock) VALUES (?1, ?2, ?3) \
             RETURNING id, name, price_cents, stock, created_at",
        )
        .bind(new.name.as_str())
        .bind(new.price_cents)
        .bind(new.stock)
        .fetch_one(&self.write)
        .await
    }

    /// The product with this id, if any.
    pub async fn product(&self, id: Id) -> Result<Option<Product>, sqlx::Error> {
        sqlx::query_as(
            "SELECT id, name, price_cents, stock, created_at FROM products WHERE id = ?1",
        )
        .bind(id.get())
        .fetch_optional(&self.read)
        .await
    }
}
