//! People's console passwords and the invitations that set them. The statements are the same on
//! both backends (numbered parameters, `ON CONFLICT`, `RETURNING`), so they are written once
//! here and each backend expands them over its own connections: a statement each, not the group
//! commit (they change no issue).

use chrono::{DateTime, Utc};

use super::{Backend, Result, Store};

/// The queries, expanded into a backend's `impl` with the pool it writes through and the pool
/// it reads through.
macro_rules! credential_queries {
    ($store:ty, $write:ident, $read:ident) => {
        impl $store {
            pub async fn invite(
                &self,
                person: &str,
                invite_hash: &str,
                expires_at: chrono::DateTime<chrono::Utc>,
            ) -> crate::store::Result<()> {
                sqlx::query(
                    "INSERT INTO credentials (person, invite_hash, invite_expires_at)
                     VALUES ($1, $2, $3)
                     ON CONFLICT (person) DO UPDATE SET invite_hash = excluded.invite_hash,
                         invite_expires_at = excluded.invite_expires_at",
                )
                .bind(person)
                .bind(invite_hash)
                .bind(expires_at.timestamp_millis())
                .execute(&self.$write)
                .await?;
                Ok(())
            }

            pub async fn invited(
                &self,
                invite_hash: &str,
                now: chrono::DateTime<chrono::Utc>,
            ) -> crate::store::Result<Option<String>> {
                Ok(sqlx::query_scalar(
                    "SELECT person FROM credentials
                     WHERE invite_hash = $1 AND invite_expires_at > $2",
                )
                .bind(invite_hash)
                .bind(now.timestamp_millis())
                .fetch_optional(&self.$read)
                .await?)
            }

            pub async fn set_password(
                &self,
                invite_hash: &str,
                password_hash: &str,
                now: chrono::DateTime<chrono::Utc>,
            ) -> crate::store::Result<Option<String>> {
                Ok(sqlx::query_scalar(
                    "UPDATE credentials SET password_hash = $1, password_set_at = $2,
                         invite_hash = NULL, invite_expires_at = NULL
                     WHERE invite_hash = $3 AND invite_expires_at > $2
                     RETURNING person",
                )
                .bind(password_hash)
                .bind(now.timestamp_millis())
                .bind(invite_hash)
                .fetch_optional(&self.$write)
                .await?)
            }

            pub async fn password_hash(
                &self,
                person: &str,
            ) -> crate::store::Result<Option<String>> {
                Ok(sqlx::query_scalar(
                    "SELECT password_hash FROM credentials
                     WHERE person = $1 AND password_hash IS NOT NULL",
                )
                .bind(person)
                .fetch_optional(&self.$read)
                .await?)
            }
        }
    };
}

impl Store {
    /// Invites `person` to set a console password through the one-time link whose token hashes
    /// to `invite_hash`, until `expires_at`; replaces an invitation not yet used. A password
    /// already set stays until a new one is set.
    pub async fn invite(
        &self,
        person: &str,
        invite_hash: &str,
        expires_at: DateTime<Utc>,
    ) -> Result<()> {
        on!(self, s => s.invite(person, invite_hash, expires_at).await)
    }

    /// The person a live invitation (by its token's hash) is for.
    pub async fn invited(&self, invite_hash: &str, now: DateTime<Utc>) -> Result<Option<String>> {
        on!(self, s => s.invited(invite_hash, now).await)
    }

    /// Sets the password of the person a live invitation is for, spending the invitation;
    /// returns the person, none if the invitation is unknown, used or lapsed.
    pub async fn set_password(
        &self,
        invite_hash: &str,
        password_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<String>> {
        on!(self, s => s.set_password(invite_hash, password_hash, now).await)
    }

    /// A person's password (an argon2id PHC string), if one was set.
    pub async fn password_hash(&self, person: &str) -> Result<Option<String>> {
        on!(self, s => s.password_hash(person).await)
    }
}
