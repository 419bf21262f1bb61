//! The `users` table on SQLite.

use rusqlite::{OptionalExtension, Row};

use super::{remember, webhooks, SqliteStore};
use crate::domain::Id;
use crate::store::users::{NewUser, User};
use crate::store::{Remember, Saved, StoreError};

impl User {
    fn from_row(row: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(User {
            id: row.get(0)?,
            email: row.get(1)?,
            username: row.get(2)?,
            created_at: row.get(3)?,
        })
    }
}

impl SqliteStore {
    /// Inserts a user, enqueues its welcome mail and fans out `user.created`, in one write:
    /// all or nothing. A taken email or username (in any case) is a unique violation, which
    /// keel maps to 409 naming the column. With `key`, the answer is stored under it in the
    /// same write.
    pub(crate) async fn create_user(
        &self,
        new: &NewUser,
        key: Remember,
    ) -> Result<(User, Saved), StoreError> {
        let new = new.clone();
        let jobs = self.jobs.clone();
        let user = self
            .writer()
            .write(move |conn| {
                let user = conn
                    .prepare_cached(
                        "INSERT INTO users (email, username) VALUES (?1, ?2) \
                         RETURNING id, email, username, created_at",
                    )?
                    .query_row([new.email.as_str(), new.username.as_str()], User::from_row)?;
                jobs.enqueue(conn, &user.welcome())?;
                webhooks::fan_out(conn, &jobs, &user.created()?)?;
                let saved = remember(conn, &key, user.id, &user)?;
                Ok::<_, StoreError>((user, saved))
            })
            .await?;
        self.jobs.wake();
        Ok(user)
    }

    /// The user with this id, if any.
    pub(crate) async fn user(&self, id: Id) -> Result<Option<User>, StoreError> {
        Ok(self.readers().read(|conn| {
            conn.prepare_cached("SELECT id, email, username, created_at FROM users WHERE id = ?1")?
                .query_row([id.get()], User::from_row)
                .optional()
        })?)
    }
}
