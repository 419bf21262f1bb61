//! The kinds of durable job shop runs, and the registry that maps each to its handler.

use std::time::{SystemTime, UNIX_EPOCH};

use keel::jobs::{JobError, JobMeta, Registry};
use keel::ws::Hub;

use crate::mail::Mailer;
use crate::outbound::Sender;
use crate::store::webhooks::PaymentOutcome;
use crate::store::Store;

pub use crate::store::payloads::{DeliverWebhook, ExpireOrder, ProcessPayment, WelcomeEmail};

/// What the handlers need.
#[derive(Debug, Clone)]
pub struct Context {
    pub store: Store,
    pub hub: Hub,
    pub mailer: Mailer,
    pub sender: Sender,
}

/// Every job kind, with its handler.
pub fn registry(ctx: Context) -> Registry {
    let (mail, deliver, pay, expire) = (ctx.clone(), ctx.clone(), ctx.clone(), ctx);
    Registry::new()
        .register(move |job: WelcomeEmail, meta: JobMeta| {
            let mailer = mail.mailer.clone();
            async move {
                mailer.send_welcome(&job.email, &job.username).await?;
                tracing::info!(
                    user_id = job.user_id,
                    attempt = meta.attempt,
                    "welcome mail sent"
                );
                Ok(())
            }
        })
        .register(move |job: DeliverWebhook, _meta: JobMeta| {
            let ctx = deliver.clone();
            async move { deliver_webhook(&ctx, job.delivery_id).await }
        })
        .register(move |job: ProcessPayment, _meta: JobMeta| {
            let ctx = pay.clone();
            async move { process_payment(&ctx, job.inbound_id).await }
        })
        .register(move |job: ExpireOrder, _meta: JobMeta| {
            let ctx = expire.clone();
            async move { expire_order(&ctx, job.order_id).await }
        })
}

fn db_error(err: crate::store::StoreError) -> JobError {
    JobError::retry(format!("database: {err}"))
}

async fn deliver_webhook(ctx: &Context, delivery_id: i64) -> Result<(), JobError> {
    let Some(outgoing) = ctx.store.outgoing(delivery_id).await.map_err(db_error)? else {
        return Err(JobError::permanent(format!(
            "delivery {delivery_id} not found"
        )));
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let attempt = ctx.sender.send(&outgoing, now).await;
    ctx.store
        .record_attempt(delivery_id, attempt.status_code, attempt.error.as_deref())
        .await
        .map_err(db_error)?;
    attempt.result
}

async fn expire_order(ctx: &Context, order_id: i64) -> Result<(), JobError> {
    match ctx.store.expire_order(order_id).await.map_err(db_error)? {
        PaymentOutcome::Changed { event } => {
            ctx.hub.publish(event.topic(), event.frame());
            tracing::info!(
                order_id,
                "unpaid order cancelled at the end of its payment window"
            );
        }
        // Paid (or cancelled) in time: nothing to do.
        PaymentOutcome::Unchanged => {}
        PaymentOutcome::Failed(reason) => {
            return Err(JobError::permanent(reason));
        }
    }
    Ok(())
}

async fn process_payment(ctx: &Context, inbound_id: i64) -> Result<(), JobError> {
    match ctx
        .store
        .process_payment(inbound_id)
        .await
        .map_err(db_error)?
    {
        PaymentOutcome::Changed { event } => {
            ctx.hub.publish(event.topic(), event.frame());
            let event = event.kind().name();
            tracing::info!(inbound_id, event, "payment webhook processed");
        }
        PaymentOutcome::Unchanged => {}
        // Recorded on the inbound webhook; retrying cannot make an unknown order exist.
        PaymentOutcome::Failed(reason) => {
            tracing::warn!(inbound_id, reason = %reason, "payment webhook not applied");
        }
    }
    Ok(())
}
