//! The `orders` table, and the one transaction that sells stock.
//!
//! [`Store::place_order`] checks and decrements the stock in a single conditional `UPDATE …
//! WHERE stock >= quantity`, inside the transaction that inserts the order. The database
//! evaluates the condition and the decrement as one step under its write lock, so concurrent
//! orders can never sell more than the stock, and the order and the stock change commit
//! together or not at all.

use std::time::Duration;

use serde::Serialize;

use super::webhooks::PaymentOutcome;
use super::{Engine, Remember, Saved, Store, StoreError};
use crate::domain::{Id, Quantity};

/// An order as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema, sqlx::FromRow)]
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
    Database(#[from] StoreError),
}

/// Why the conditional stock decrement updated nothing: no product (`available` is `None`), or
/// less stock than `requested`.
pub(crate) fn stock_refusal(
    product_id: Id,
    available: Option<i64>,
    requested: i64,
) -> PlaceOrderError {
    match available {
        None => PlaceOrderError::UnknownProduct(product_id),
        Some(available) => PlaceOrderError::InsufficientStock {
            available,
            requested,
        },
    }
}

/// The order's total at `price_cents` each, unless it does not fit in 64 bits (the
/// transaction then rolls back, and the stock comes back).
pub(crate) fn order_total(price_cents: i64, quantity: i64) -> Result<i64, PlaceOrderError> {
    price_cents
        .checked_mul(quantity)
        .ok_or(PlaceOrderError::TotalOutOfRange)
}

impl Store {
    /// Places an order: refused for an unknown user or product or a short stock, otherwise
    /// the stock is decremented, the order inserted, `order.created` fanned out and its
    /// expiry scheduled `payment_window` later, in one write: an order that exists always
    /// has the job that cancels it if it is not paid in time.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn place_order(
        &self,
        new: NewOrder,
        payment_window: Duration,
        key: Remember,
    ) -> Result<(Order, Saved), PlaceOrderError> {
        forward!(&self.engine, Engine, db => db.place_order(new, payment_window, key).await)
    }

    /// Cancels order `order_id` if it is still pending (its payment window has ended): the
    /// stock goes back and `order.cancelled` is fanned out, in one write. A paid or already
    /// cancelled order is left as it is.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn expire_order(&self, order_id: i64) -> Result<PaymentOutcome, StoreError> {
        forward!(&self.engine, Engine, db => db.expire_order(order_id).await)
    }

    /// The order with this id, if any.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn order(&self, id: Id) -> Result<Option<Order>, StoreError> {
        forward!(&self.engine, Engine, db => db.order(id).await)
    }
}
