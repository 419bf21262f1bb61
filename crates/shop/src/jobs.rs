//! The kinds of durable job shop runs, and the registry that maps each to its handler.

use keel::jobs::{Job, JobMeta, Registry};
use serde::{Deserialize, Serialize};

use crate::mail::Mailer;

/// The welcome mail of a new user, enqueued in the transaction that creates the user.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WelcomeEmail {
    pub user_id: i64,
    pub email: String,
    pub username: String,
}

impl Job for WelcomeEmail {
    const KIND: &'static str = "welcome_email";
    const QUEUE: &'static str = "email";
}

/// Every job kind, with what its handlers need.
pub fn registry(mailer: Mailer) -> Registry {
    Registry::new().register(move |job: WelcomeEmail, meta: JobMeta| {
        let mailer = mailer.clone();
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
}
