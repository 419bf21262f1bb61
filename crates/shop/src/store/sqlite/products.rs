//! The `products` table on SQLite.

use rusqlite::{OptionalExtension, Row};

use super::{remember, SqliteStore};
use crate::domain::Id;
use crate::store::products::{NewProduct, Product};
use crate::store::{Remember, Saved, StoreError};

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

impl SqliteStore {
    /// Inserts a product; with `key`, stores the answer under it in the same write.
    pub(crate) async fn create_product(
        &self,
        new: &NewProduct,
        key: Remember,
    ) -> Result<(Product, Saved), StoreError> {
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
                let saved = remember(conn, &key, product.id, &product)?;
                Ok((product, saved))
            })
            .await
    }

    /// The product with this id, if any.
    pub(crate) async fn product(&self, id: Id) -> Result<Option<Product>, StoreError> {
        Ok(self.readers().read(|conn| {
            conn.prepare_cached(
                "SELECT id, name, price_cents, stock, created_at FROM products WHERE id = ?1",
            )?
            .query_row([id.get()], Product::from_row)
            .optional()
        })?)
    }
}
