//! The `users` table on PostgreSQL.

use sqlx::FromRow;

use super::webhooks::{Subscribers, SUBSCRIBED_AT, SUBSCRIBERS};
use super::{finish, remember, retried, rfc3339, webhooks, PgStore};
use crate::domain::Id;
use crate::events::EventKind;
use crate::store::payloads::WelcomeEmail;
use crate::store::users::{NewUser, User};
use crate::store::{Remember, Saved, StoreError};

const USER_COLUMNS: &str = concat!(
    "id, email, username, ",
    rfc3339!("created_at"),
    " AS created_at"
);

impl PgStore {
    pub(crate) async fn create_user(
        &self,
        new: &NewUser,
        key: Remember,
    ) -> Result<(User, Saved), StoreError> {
        // Without a key, there is no answer to store in a transaction.
        if let Some(unkeyed) = key.key.unkeyed() {
            if let Some(user) = retried!(self.create_user_alone(new).await)? {
                let saved = unkeyed.answer(key.answer(user.id, &user)?);
                return Ok((user, saved));
            }
        }
        retried!(self.create_user_once(new, &key).await)
    }

    /// The user and its welcome mail in one statement, in autocommit: one round trip where a
    /// transaction takes four. Only when no webhook endpoint is subscribed to `user.created`
    /// (their deliveries need [`PgStore::create_user_once`]'s transaction), which the statement
    /// reads in its own snapshot as the transaction would: `None` when one is, and nothing is
    /// written.
    async fn create_user_alone(&self, new: &NewUser) -> Result<Option<User>, StoreError> {
        let welcome = self.jobs.jobs_from::<WelcomeEmail>(
            "u",
            "jsonb_build_object('user_id', u.id, 'email', u.email, 'username', u.username)::text",
            4,
        );
        let sql = format!(
            "WITH u AS (INSERT INTO users (email, username) \
               SELECT $2, $3 WHERE cardinality({SUBSCRIBERS}) = 0 RETURNING *), \
             {welcome} \
             SELECT {USER_COLUMNS} FROM u"
        );
        let query = sqlx::query(&sql)
            .bind(EventKind::UserCreated.name())
            .bind(new.email.as_str())
            .bind(new.username.as_str());
        let row = self
            .jobs
            .bind_jobs_from::<WelcomeEmail>(query)
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let user = User::from_row(&row)?;
        self.jobs.wake();
        Ok(Some(user))
    }

    async fn create_user_once(
        &self,
        new: &NewUser,
        key: &Remember,
    ) -> Result<(User, Saved), StoreError> {
        let mut tx = self.pool.begin().await?;
        let result: Result<(User, Saved), StoreError> = async {
            // The user, and who is subscribed to its creation, in one round trip.
            let row = sqlx::query(&format!(
                "INSERT INTO users (email, username) VALUES ($2, $3) RETURNING {USER_COLUMNS}, \
                 {SUBSCRIBERS} AS endpoints, {SUBSCRIBED_AT} AS subscribed_at"
            ))
            .bind(EventKind::UserCreated.name())
            .bind(new.email.as_str())
            .bind(new.username.as_str())
            .fetch_one(&mut *tx)
            .await?;
            let user = User::from_row(&row)?;
            let subscribers = Subscribers::from_row(&row)?;
            self.jobs.enqueue(&mut tx, &user.welcome()).await?;
            webhooks::fan_out_to(&mut tx, &self.jobs, &user.created()?, subscribers).await?;
            let saved = remember(&mut tx, key, user.id, &user).await?;
            Ok((user, saved))
        }
        .await;
        let value = finish(tx, result).await?;
        self.jobs.wake();
        Ok(value)
    }

    pub(crate) async fn user(&self, id: Id) -> Result<Option<User>, StoreError> {
        Ok(
            sqlx::query_as(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1"))
                .bind(id.get())
                .fetch_optional(&self.pool)
                .await?,
        )
    }
}
