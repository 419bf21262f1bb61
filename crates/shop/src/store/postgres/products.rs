//! The `products` table on PostgreSQL.

use super::{finish, remember, retried, rfc3339, PgStore};
use crate::domain::Id;
use crate::store::products::{NewProduct, Product};
use crate::store::{Remember, Saved, StoreError};

const PRODUCT_COLUMNS: &str = concat!(
    "id, name, price_cents, stock, ",
    rfc3339!("created_at"),
    " AS created_at"
);

impl PgStore {
    pub(crate) async fn create_product(
        &self,
        new: &NewProduct,
        key: Remember,
    ) -> Result<(Product, Saved), StoreError> {
        retried!(self.create_product_once(new, &key).await)
    }

    async fn create_product_once(
        &self,
        new: &NewProduct,
        key: &Remember,
    ) -> Result<(Product, Saved), StoreError> {
        let mut tx = self.pool.begin().await?;
        let result: Result<(Product, Saved), StoreError> = async {
            let product: Product = sqlx::query_as(&format!(
                "INSERT INTO products (name, price_cents, stock) VALUES ($1, $2, $3) \
                 RETURNING {PRODUCT_COLUMNS}"
            ))
            .bind(new.name.as_str())
            .bind(new.price_cents)
            .bind(new.stock)
            .fetch_one(&mut *tx)
            .await?;
            let saved = remember(&mut tx, key, product.id, &product).await?;
            Ok((product, saved))
        }
        .await;
        let value = finish(tx, result).await?;
        Ok(value)
    }

    pub(crate) async fn product(&self, id: Id) -> Result<Option<Product>, StoreError> {
        Ok(sqlx::query_as(&format!(
            "SELECT {PRODUCT_COLUMNS} FROM products WHERE id = $1"
        ))
        .bind(id.get())
        .fetch_optional(&self.pool)
        .await?)
    }
}
