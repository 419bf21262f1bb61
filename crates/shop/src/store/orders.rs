//! The `orders` table, and the one transaction that sells stock.
//!
//! [`Store::place_order`] checks and decrements the stock in a single conditional `UPDATE …
//! WHERE stock >= quantity`, inside the transaction that inserts the order. The database
//! evaluates the condition and the decrement as one step under its write lock, so concurrent
//! orders can never sell more than the stock, and the order and the stock change commit
//! together or not at all.

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

/// Why an order was not placed.
#[derive(Debug, thiserror::Error)]
pub enum PlaceOrderError {
    #[error("user {0} not found")]
    UnknownUser(Id),
    #[error("product {0} not found")]
    UnknownProduct(Id),
    #[error("insufficient stock: {available} available, {requested} requested")]
    InsufficientStock { available: i64, requested: i64 },
    #[error("the order's total does not fit in 64 bits")]
    TotalOutOfRange,
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

const ORDER_COLUMNS: &str = "id, user_id, product_id, quantity, total_cents, status, created_at";

impl Store {
    /// Places an order: refused for an unknown user or product or a short stock, otherwise
    /// the stock is decremented and the order inserted, atomically.
    pub async fn place_order(&self, new: NewOrder) -> Result<Order, PlaceOrderError> {
        let mut tx = self.write.begin().await?;

        let user_exists: Option<i64> = sqlx::query_scalar("SELECT 1 FROM users WHERE id = ?1")
            .bind(new.user_id.get())
            .fetch_optional(&mut *tx)
            .await?;
        if user_exists.is_none() {
            return Err(PlaceOrderError::UnknownUser(new.user_id));
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
                None => PlaceOrderError::UnknownProduct(new.product_id),
                Some(available) => PlaceOrderError::InsufficientStock {
                    available,
                    requested: quantity,
                },
            });
        };

        let Some(total_cents) = price.checked_mul(quantity) else {
            return Err(PlaceOrderError::TotalOutOfRange);
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
