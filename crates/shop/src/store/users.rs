//! The `users` table.

use serde::Serialize;

use super::payloads::WelcomeEmail;
use super::{Engine, Remember, Saved, Store, StoreError};
use crate::domain::{Email, Id, Username};
use crate::events::{Event, EventKind};

/// A user as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema, sqlx::FromRow)]
pub struct User {
    pub id: i64,
    pub email: String,
    pub username: String,
    pub created_at: String,
}

/// A user to create: every field already valid.
#[derive(Debug, Clone)]
pub struct NewUser {
    pub email: Email,
    pub username: Username,
}

impl User {
    /// The welcome mail of the new user, queued in the write that creates it.
    pub(crate) fn welcome(&self) -> WelcomeEmail {
        WelcomeEmail {
            user_id: self.id,
            email: self.email.clone(),
            username: self.username.clone(),
        }
    }

    /// `user.created`, fanned out in the same write.
    pub(crate) fn created(&self) -> Result<Event, StoreError> {
        Ok(Event::new(EventKind::UserCreated, self)?)
    }
}

impl Store {
    /// Inserts a user, enqueues its welcome mail and fans out `user.created`, in one write:
    /// all or nothing. A taken email or username (in any case) is a unique violation, which
    /// keel maps to 409 naming the column. With `key`, the answer is stored under it in the
    /// same write.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn create_user(
        &self,
        new: &NewUser,
        key: Remember,
    ) -> Result<(User, Saved), StoreError> {
        forward!(&self.engine, Engine, db => db.create_user(new, key).await)
    }

    /// The user with this id, if any.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn user(&self, id: Id) -> Result<Option<User>, StoreError> {
        forward!(&self.engine, Engine, db => db.user(id).await)
    }
}
