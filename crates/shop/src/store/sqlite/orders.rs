//! The `orders` table on SQLite, and the one transaction that sells stock.

use std::time::Duration;

use keel::jobs::sqlite::SqliteQueue;
use rusqlite::{Connection, OptionalExtension, Row};

use super::{remember, webhooks, SqliteStore, NOW_TEXT};
use crate::domain::Id;
use crate::events::{Event, EventKind};
use crate::store::orders::{order_total, stock_refusal, NewOrder, Order, PlaceOrderError};
use crate::store::payloads::ExpireOrder;
use crate::store::webhooks::{payment_transition, PaymentOutcome, Transition};
use crate::store::{Remember, Saved, StoreError};

impl Order {
    pub(super) fn from_row(row: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(Order {
            id: row.get(0)?,
            user_id: row.get(1)?,
            product_id: row.get(2)?,
            quantity: row.get(3)?,
            total_cents: row.get(4)?,
            status: row.get(5)?,
            created_at: row.get(6)?,
        })
    }
}

impl From<keel::sqlite::Error> for PlaceOrderError {
    fn from(err: keel::sqlite::Error) -> Self {
        PlaceOrderError::Database(err.into())
    }
}

impl From<rusqlite::Error> for PlaceOrderError {
    fn from(err: rusqlite::Error) -> Self {
        PlaceOrderError::Database(err.into())
    }
}

pub(super) const ORDER_COLUMNS: &str =
    "id, user_id, product_id, quantity, total_cents, status, created_at";

impl SqliteStore {
    /// Places an order: refused for an unknown user or product or a short stock, otherwise
    /// the stock is decremented, the order inserted, `order.created` fanned out and its
    /// expiry scheduled `payment_window` later, in one write: an order that exists always
    /// has the job that cancels it if it is not paid in time.
    pub(crate) async fn place_order(
        &self,
        new: NewOrder,
        payment_window: Duration,
        key: Remember,
    ) -> Result<(Order, Saved), PlaceOrderError> {
        let jobs = self.jobs.clone();
        let order = self
            .writer()
            .write(move |conn| {
                let order = insert_order(conn, new)?;
                let event =
                    Event::new(EventKind::OrderCreated, &order).map_err(StoreError::from)?;
                webhooks::fan_out(conn, &jobs, &event)?;
                let expiry = ExpireOrder { order_id: order.id };
                jobs.enqueue_at(conn, &expiry, payment_window)
                    .map_err(StoreError::from)?;
                let saved = remember(conn, &key, order.id, &order)?;
                Ok::<_, PlaceOrderError>((order, saved))
            })
            .await?;
        self.jobs.wake();
        Ok(order)
    }

    /// Cancels order `order_id` if it is still pending (its payment window has ended): the
    /// stock goes back and `order.cancelled` is fanned out, in one write. A paid or already
    /// cancelled order is left as it is.
    pub(crate) async fn expire_order(&self, order_id: i64) -> Result<PaymentOutcome, StoreError> {
        let jobs = self.jobs.clone();
        let outcome = self
            .writer()
            .write(move |conn| {
                let order: Option<(String, i64, i64)> = conn
                    .prepare_cached(
                        "SELECT status, product_id, quantity FROM orders WHERE id = ?1",
                    )?
                    .query_row([order_id], |row| {
                        Ok((row.get(0)?, row.get(1)?, row.get(2)?))
                    })
                    .optional()?;
                match order {
                    Some((status, product_id, quantity)) if status == "pending" => {
                        cancel(conn, &jobs, order_id, product_id, quantity)
                    }
                    Some(_) => Ok(PaymentOutcome::Unchanged),
                    None => Ok(PaymentOutcome::Failed(format!("unknown order {order_id}"))),
                }
            })
            .await?;
        self.jobs.wake();
        Ok(outcome)
    }

    /// The order with this id, if any.
    pub(crate) async fn order(&self, id: Id) -> Result<Option<Order>, StoreError> {
        Ok(self.readers().read(|conn| {
            conn.prepare_cached(&format!("SELECT {ORDER_COLUMNS} FROM orders WHERE id = ?1"))?
                .query_row([id.get()], Order::from_row)
                .optional()
        })?)
    }
}

fn insert_order(conn: &Connection, new: NewOrder) -> Result<Order, PlaceOrderError> {
    let user_exists = conn
        .prepare_cached("SELECT 1 FROM users WHERE id = ?1")?
        .exists([new.user_id.get()])?;
    if !user_exists {
        return Err(PlaceOrderError::UnknownUser(new.user_id));
    }
    let quantity = new.quantity.get();
    let price: Option<i64> = conn
        .prepare_cached(
            "UPDATE products SET stock = stock - ?1 WHERE id = ?2 AND stock >= ?1 \
             RETURNING price_cents",
        )?
        .query_row([quantity, new.product_id.get()], |row| row.get(0))
        .optional()?;
    let Some(price) = price else {
        let available: Option<i64> = conn
            .prepare_cached("SELECT stock FROM products WHERE id = ?1")?
            .query_row([new.product_id.get()], |row| row.get(0))
            .optional()?;
        return Err(stock_refusal(new.product_id, available, quantity));
    };
    // The savepoint of this write is rolled back on any error below: the stock comes back.
    let total_cents = order_total(price, quantity)?;
    let order = conn
        .prepare_cached(&format!(
            "INSERT INTO orders (user_id, product_id, quantity, total_cents) \
             VALUES (?1, ?2, ?3, ?4) RETURNING {ORDER_COLUMNS}"
        ))?
        .query_row(
            [
                new.user_id.get(),
                new.product_id.get(),
                quantity,
                total_cents,
            ],
            Order::from_row,
        )?;
    Ok(order)
}

impl SqliteStore {
    /// Applies inbound payment webhook `inbound_id` to its order, in one write with the
    /// order's outbound webhooks: `payment.succeeded` marks a pending order paid;
    /// `payment.failed` cancels it and puts its stock back.
    pub(crate) async fn process_payment(
        &self,
        inbound_id: i64,
    ) -> Result<PaymentOutcome, StoreError> {
        let jobs = self.jobs.clone();
        let outcome = self
            .writer()
            .write(move |conn| process_payment(conn, &jobs, inbound_id))
            .await?;
        self.jobs.wake();
        Ok(outcome)
    }
}

fn process_payment(
    conn: &Connection,
    jobs: &SqliteQueue,
    inbound_id: i64,
) -> Result<PaymentOutcome, StoreError> {
    let inbound: Option<(String, i64, String)> = conn
        .prepare_cached("SELECT type, order_id, status FROM inbound_webhooks WHERE id = ?1")?
        .query_row([inbound_id], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?))
        })
        .optional()?;
    let Some((kind, order_id, status)) = inbound else {
        return Ok(PaymentOutcome::Failed("inbound webhook not found".into()));
    };
    if status != "received" {
        return Ok(PaymentOutcome::Unchanged);
    }
    let order: Option<(String, i64, i64)> = conn
        .prepare_cached("SELECT status, product_id, quantity FROM orders WHERE id = ?1")?
        .query_row([order_id], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?))
        })
        .optional()?;
    let outcome = match payment_transition(&kind, order_id, order) {
        Transition::Pay => set_status(conn, jobs, order_id, "paid", EventKind::OrderPaid)?,
        Transition::Cancel {
            product_id,
            quantity,
        } => cancel(conn, jobs, order_id, product_id, quantity)?,
        Transition::Unchanged => PaymentOutcome::Unchanged,
        Transition::Refuse(reason) => PaymentOutcome::Failed(reason),
    };
    let (status, error) = outcome.inbound_status();
    conn.prepare_cached(&format!(
        "UPDATE inbound_webhooks SET status = ?2, error = ?3, processed_at = {NOW_TEXT} \
         WHERE id = ?1"
    ))?
    .execute(rusqlite::params![inbound_id, status, error])?;
    Ok(outcome)
}

/// Cancels pending order `order_id`: its stock goes back and `order.cancelled` is fanned out.
fn cancel(
    conn: &Connection,
    jobs: &SqliteQueue,
    order_id: i64,
    product_id: i64,
    quantity: i64,
) -> Result<PaymentOutcome, StoreError> {
    conn.prepare_cached("UPDATE products SET stock = stock + ?2 WHERE id = ?1")?
        .execute([product_id, quantity])?;
    set_status(conn, jobs, order_id, "cancelled", EventKind::OrderCancelled)
}

fn set_status(
    conn: &Connection,
    jobs: &SqliteQueue,
    order_id: i64,
    status: &str,
    kind: EventKind,
) -> Result<PaymentOutcome, StoreError> {
    let order: Order = conn
        .prepare_cached(&format!(
            "UPDATE orders SET status = ?2 WHERE id = ?1 RETURNING {ORDER_COLUMNS}"
        ))?
        .query_row(rusqlite::params![order_id, status], Order::from_row)?;
    let event = Event::new(kind, &order)?;
    webhooks::fan_out(conn, jobs, &event)?;
    Ok(PaymentOutcome::Changed { event })
}
