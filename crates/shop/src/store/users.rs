//! The `users` table.

use serde::Serialize;

use super::Store;
use crate::domain::{Email, Id, Username};
use crate::jobs::WelcomeEmail;

/// A user as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow, utoipa::ToSchema)]
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

impl Store {
    /// Inserts a user and enqueues its welcome mail in the same transaction: both or neither.
    /// A taken email or username (in any case) is a unique violation, which keel maps to 409
    /// naming the column.
    pub async fn create_user(&self, new: &NewUser) -> Result<User, sqlx::Error> {
        let mut tx = self.write.begin().await?;
        let user: User = sqlx::query_as(
            "INSERT INTO users (email, username) VALUES (?1, ?2) \
             RETURNING id, email, username, created_at",
        )
        .bind(new.email.as_str())
        .bind(new.username.as_str())
        .fetch_one(&mut *tx)
        .await?;
        let welcome = WelcomeEmail {
            user_id: user.id,
            email: user.email.clone(),
            username: user.username.clone(),
        };
        self.jobs.enqueue(&mut tx, &welcome).await?;
        let data = serde_json::to_value(&user).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
        self.fan_out(&mut tx, "user.created", &data).await?;
        tx.commit().await?;
        self.jobs.wake();
        Ok(user)
    }

    /// The user with this id, if any.
    pub async fn user(&self, id: Id) -> Result<Option<User>, sqlx::Error> {
        sqlx::query_as("SELECT id, email, username, created_at FROM users WHERE id = ?1")
            .bind(id.get())
            .fetch_optional(&self.read)
            .await
    }
}
