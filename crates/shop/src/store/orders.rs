//! The `orders` table, and the one transaction that sells stock.
//!
//! [`Store::place_order`] checks and decrements the stock in a single conditional `UPDATE …
//! WHERE stock >= quantity`, inside the transaction that inserts the order. The database
//! evaluates the condition and the decrement as one step under its write lock, so concurrent
//! orders can never sell more than the stock, and the order and the stock change commit
//! together or not at all.

use keel::{ApiError, DomainError};
use serde::Serialize;

use super::Store;
use crate::domain::{Id, Quantity};

/// An order as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Order {
    pub id: i64,
    pub user_id: i64,
    pub product_id: i64,
    pub quantity: i64,
    pub total_cents: i64,
    pub status: String,
    pub created_at: String,
}

/// An order to place: every field already valid.
#[derive(Debug, Clone, Copy)]
pub struct NewOrder {
    pub user_id: Id,
    pub product_id: Id,
    pub quantity: Quantity,
}

/// Returns 409 `insufficient_stock`: the order asks for more than the stock.
#[derive(Debug, thiserror::Error)]
#[error("Insufficient stock")]
pub struct InsufficientStock {
    pub available: i64,
    pub requested: i64,
}

impl DomainError for InsufficientStock {
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

const ORDER_COLUMNS: &str = "id, user_id, product_id, quantity, total_cents, status, created_at";

impl Store {
    /// Places an order: 404 for an unknown user or product, 409 `insufficient_stock` when the
    /// stock is short, otherwise the stock is decremented and the order inserted, atomically.
    pub async fn place_order(&self, new: NewOrder) -> Result<Order, ApiError> {
        let mut tx = self.write.begin().await?;

        let user_exists: Option<i64> = sqlx::query_scalar("SELECT 1 FROM users WHERE id = ?1")
            .bind(new.user_id.get())
            .fetch_optional(&mut *tx)
            .await?;
        if user_exists.is_none() {
            return Err(ApiError::not_found("user", new.user_id));
        }

        let quantity = new.quantity.get();
        let price: Option<i64> = sqlx::query_scalar(
            "UPDATE products SET stock = stock - ?1 WHERE id = ?2 AND stock >= ?1 \
             RETURNING price_cents",
        )
        .bind(quantity)
        .bind(new.product_id.get())
        .fetch_optional(&mut *tx)
        .await?;
        let Some(price) = price else {
            let available: Option<i64> =
                sqlx::query_scalar("SELECT stock FROM products WHERE id = ?1")
                    .bind(new.product_id.get())
                    .fetch_optional(&mut *tx)
                    .await?;
            return Err(match available {
                None => ApiError::not_found("product", new.product_id),
                Some(available) => InsufficientStock {
                    available,
                    requested: quantity,
                }
                .into(),
            });
        };

        let Some(total_cents) = price.checked_mul(quantity) else {
            let mut v = keel::validate::Validation::body();
            v.report(
                &["quantity"],
                keel::validate::Problem::out_of_range("Total price is out of range"),
            );
            return Err(v.into_error());
        };
        let order: Order = sqlx::query_as(&format!(
            "INSERT INTO orders (user_id, product_id, quantity, total_cents) \
             VALUES (?1, ?2, ?3, ?4) RETURNING {ORDER_COLUMNS}"
        ))
        .bind(new.user_id.get())
        .bind(new.product_id.get())
        .bind(quantity)
        .bind(total_cents)
        .fetch_one(&mut *tx)
        .await?;
        let data = serde_json::to_value(&order).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
        self.fan_out(&mut tx, "order.created", &data).await?;
        tx.commit().await?;
        self.jobs.wake();
        Ok(order)
    }

    /// The order with this id, if any.
    pub async fn order(&self, id: Id) -> Result<Option<Order>, sqlx::Error> {
        sqlx::query_as(&format!("SELECT {ORDER_COLUMNS} FROM orders WHERE id = ?1"))
            .bind(id.get())
            .fetch_optional(&self.read)
            .await
    }
}
