//! The `products` table.

use rusqlite::{OptionalExtension, Row};
use serde::Serialize;

use super::{remember, Remember, Store, StoreError};
use crate::domain::{Id, ProductName};

/// A product as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Product {
    pub id: i64,
    pub name: String,
    pub price_cents: i64,
    pub stock: i64,
    pub created_at: String,
}

impl Product {
    fn from_row(row: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(Product {
            id: row.get(0)?,
            name: row.get(1)?,
            price_cents: row.get(2)?,
            stock: row.get(3)?,
            created_at: row.get(4)?,
        })
    }
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
    pub async fn create_product(
        &self,
        new: &NewProduct,
        key: Option<Remember>,
    ) -> Result<Product, StoreError> {
        let new = new.clone();
        self.writer()
            .write(move |conn| {
                let product = conn
                    .prepare_cached(
                        "INSERT INTO products (name, price_cents, stock) VALUES (?1, ?2, ?3) \
                         RETURNING id, name, price_cents, stock, created_at",
                    )?
                    .query_row(
                        rusqlite::params![new.name.as_str(), new.price_cents, new.stock],
                        Product::from_row,
                    )?;
                remember(conn, key.as_ref(), product.id, &product)?;
                Ok(product)
            })
            .await
    }

    /// The product with this id, if any.
    pub async fn product(&self, id: Id) -> Result<Option<Product>, StoreError> {
        Ok(self.readers().read(|conn| {
            conn.prepare_cached(
                "SELECT id, name, price_cents, stock, created_at FROM products WHERE id = ?1",
            )?
            .query_row([id.get()], Product::from_row)
            .optional()
        })?)
    }
}
