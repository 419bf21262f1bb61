//! The `orders` table on PostgreSQL, and the one transaction that sells stock.
//!
//! The stock check and decrement are one conditional `UPDATE … WHERE stock >= quantity`: the
//! row's lock makes concurrent orders, from any instance, take turns on it, and the condition
//! is evaluated again on the row as the previous order left it, so the stock never goes below
//! zero and the order and its stock change commit together or not at all.

use std::time::Duration;

use keel::jobs::postgres::PgQueue;
use sqlx::PgConnection;

use super::{finish, remember, retried, rfc3339, webhooks, PgStore};
use crate::domain::Id;
use crate::events::{Event, EventKind};
use crate::store::orders::{order_total, stock_refusal, NewOrder, Order, PlaceOrderError};
use crate::store::payloads::ExpireOrder;
use crate::store::webhooks::{payment_transition, PaymentOutcome, Transition};
use crate::store::{Remember, Saved, StoreError};

pub(super) const ORDER_COLUMNS: &str = concat!(
    "id, user_id, product_id, quantity, total_cents, status, ",
    rfc3339!("created_at"),
    " AS created_at"
);

impl From<sqlx::Error> for PlaceOrderError {
    fn from(err: sqlx::Error) -> Self {
        PlaceOrderError::Database(err.into())
    }
}

impl PlaceOrderError {
    fn is_retryable(&self) -> bool {
        matches!(self, PlaceOrderError::Database(err) if err.is_retryable())
    }
}

impl PgStore {
    pub(crate) async fn place_order(
        &self,
        new: NewOrder,
        payment_window: Duration,
        key: Remember,
    ) -> Result<(Order, Saved), PlaceOrderError> {
        retried!(self.place_order_once(new, payment_window, &key).await)
    }

    async fn place_order_once(
        &self,
        new: NewOrder,
        payment_window: Duration,
        key: &Remember,
    ) -> Result<(Order, Saved), PlaceOrderError> {
        let mut tx = self.pool.begin().await?;
        let result: Result<(Order, Saved), PlaceOrderError> = async {
            let order = insert_order(&mut tx, new).await?;
            let event = Event::new(EventKind::OrderCreated, &order).map_err(StoreError::from)?;
            webhooks::fan_out(&mut tx, &self.jobs, &event).await?;
            let expiry = ExpireOrder { order_id: order.id };
            self.jobs
                .enqueue_at(&mut tx, &expiry, payment_window)
                .await?;
            let saved = remember(&mut tx, key, order.id, &order).await?;
            Ok((order, saved))
        }
        .await;
        let value = finish(tx, result).await?;
        self.jobs.wake();
        Ok(value)
    }

    pub(crate) async fn expire_order(&self, order_id: i64) -> Result<PaymentOutcome, StoreError> {
        retried!(self.expire_order_once(order_id).await)
    }

    async fn expire_order_once(&self, order_id: i64) -> Result<PaymentOutcome, StoreError> {
        let mut tx = self.pool.begin().await?;
        let result: Result<PaymentOutcome, StoreError> = async {
            let order: Option<(String, i64, i64)> = sqlx::query_as(
                "SELECT status, product_id, quantity FROM orders WHERE id = $1 FOR UPDATE",
            )
            .bind(order_id)
            .fetch_optional(&mut *tx)
            .await?;
            let outcome = match order {
                Some((status, product_id, quantity)) if status == "pending" => {
                    cancel(&mut tx, &self.jobs, order_id, product_id, quantity).await?
                }
                Some(_) => PaymentOutcome::Unchanged,
                None => PaymentOutcome::Failed(format!("unknown order {order_id}")),
            };
            Ok(outcome)
        }
        .await;
        let value = finish(tx, result).await?;
        self.jobs.wake();
        Ok(value)
    }

    pub(crate) async fn order(&self, id: Id) -> Result<Option<Order>, StoreError> {
        Ok(
            sqlx::query_as(&format!("SELECT {ORDER_COLUMNS} FROM orders WHERE id = $1"))
                .bind(id.get())
                .fetch_optional(&self.pool)
                .await?,
        )
    }
}

async fn insert_order(conn: &mut PgConnection, new: NewOrder) -> Result<Order, PlaceOrderError> {
    let user_exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM users WHERE id = $1)")
        .bind(new.user_id.get())
        .fetch_one(&mut *conn)
        .await?;
    if !user_exists {
        return Err(PlaceOrderError::UnknownUser(new.user_id));
    }
    let quantity = new.quantity.get();
    let price: Option<i64> = sqlx::query_scalar(
        "UPDATE products SET stock = stock - $1 WHERE id = $2 AND stock >= $1 \
         RETURNING price_cents",
    )
    .bind(quantity)
    .bind(new.product_id.get())
    .fetch_optional(&mut *conn)
    .await?;
    let Some(price) = price else {
        let available: Option<i64> = sqlx::query_scalar("SELECT stock FROM products WHERE id = $1")
            .bind(new.product_id.get())
            .fetch_optional(&mut *conn)
            .await?;
        return Err(stock_refusal(new.product_id, available, quantity));
    };
    // The transaction is rolled back on any error below: the stock comes back.
    let total_cents = order_total(price, quantity)?;
    let order = sqlx::query_as(&format!(
        "INSERT INTO orders (user_id, product_id, quantity, total_cents) \
         VALUES ($1, $2, $3, $4) RETURNING {ORDER_COLUMNS}"
    ))
    .bind(new.user_id.get())
    .bind(new.product_id.get())
    .bind(quantity)
    .bind(total_cents)
    .fetch_one(&mut *conn)
    .await?;
    Ok(order)
}

impl PgStore {
    /// Applies inbound payment webhook `inbound_id` to its order, in one transaction with the
    /// order's outbound webhooks.
    pub(crate) async fn process_payment(
        &self,
        inbound_id: i64,
    ) -> Result<PaymentOutcome, StoreError> {
        retried!(self.process_payment_once(inbound_id).await)
    }

    async fn process_payment_once(&self, inbound_id: i64) -> Result<PaymentOutcome, StoreError> {
        let mut tx = self.pool.begin().await?;
        let result: Result<PaymentOutcome, StoreError> = async {
            let outcome = process_payment(&mut tx, &self.jobs, inbound_id).await?;
            Ok(outcome)
        }
        .await;
        let value = finish(tx, result).await?;
        self.jobs.wake();
        Ok(value)
    }
}

async fn process_payment(
    conn: &mut PgConnection,
    jobs: &PgQueue,
    inbound_id: i64,
) -> Result<PaymentOutcome, StoreError> {
    let inbound: Option<(String, i64, String)> = sqlx::query_as(
        "SELECT type, order_id, status FROM inbound_webhooks WHERE id = $1 FOR UPDATE",
    )
    .bind(inbound_id)
    .fetch_optional(&mut *conn)
    .await?;
    let Some((kind, order_id, status)) = inbound else {
        return Ok(PaymentOutcome::Failed("inbound webhook not found".into()));
    };
    if status != "received" {
        return Ok(PaymentOutcome::Unchanged);
    }
    let order: Option<(String, i64, i64)> =
        sqlx::query_as("SELECT status, product_id, quantity FROM orders WHERE id = $1 FOR UPDATE")
            .bind(order_id)
            .fetch_optional(&mut *conn)
            .await?;
    let outcome = match payment_transition(&kind, order_id, order) {
        Transition::Pay => set_status(conn, jobs, order_id, "paid", EventKind::OrderPaid).await?,
        Transition::Cancel {
            product_id,
            quantity,
        } => cancel(conn, jobs, order_id, product_id, quantity).await?,
        Transition::Unchanged => PaymentOutcome::Unchanged,
        Transition::Refuse(reason) => PaymentOutcome::Failed(reason),
    };
    let (status, error) = outcome.inbound_status();
    sqlx::query(
        "UPDATE inbound_webhooks SET status = $2, error = $3, processed_at = now() WHERE id = $1",
    )
    .bind(inbound_id)
    .bind(status)
    .bind(error)
    .execute(&mut *conn)
    .await?;
    Ok(outcome)
}

/// Cancels pending order `order_id`: its stock goes back and `order.cancelled` is fanned out.
async fn cancel(
    conn: &mut PgConnection,
    jobs: &PgQueue,
    order_id: i64,
    product_id: i64,
    quantity: i64,
) -> Result<PaymentOutcome, StoreError> {
    sqlx::query("UPDATE products SET stock = stock + $2 WHERE id = $1")
        .bind(product_id)
        .bind(quantity)
        .execute(&mut *conn)
        .await?;
    set_status(conn, jobs, order_id, "cancelled", EventKind::OrderCancelled).await
}

async fn set_status(
    conn: &mut PgConnection,
    jobs: &PgQueue,
    order_id: i64,
    status: &str,
    kind: EventKind,
) -> Result<PaymentOutcome, StoreError> {
    let order: Order = sqlx::query_as(&format!(
        "UPDATE orders SET status = $2 WHERE id = $1 RETURNING {ORDER_COLUMNS}"
    ))
    .bind(order_id)
    .bind(status)
    .fetch_one(&mut *conn)
    .await?;
    let event = Event::new(kind, &order)?;
    webhooks::fan_out(conn, jobs, &event).await?;
    Ok(PaymentOutcome::Changed { event })
}
