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

            pub async fn credentials(
                &self,
            ) -> crate::store::Result<Vec<crate::store::credentials::Credential>> {
                let rows: Vec<(String, Option<i64>, Option<i64>)> = sqlx::query_as(
                    "SELECT person, password_set_at, invite_expires_at FROM credentials
                     ORDER BY person",
                )
                .fetch_all(&self.$read)
                .await?;
                rows.into_iter()
                    .map(|(person, set, invite)| {
                        Ok(crate::store::credentials::Credential {
                            person,
                            password_set_at: crate::store::credentials::instant(set)?,
                            invite_expires_at: crate::store::credentials::instant(invite)?,
                        })
                    })
                    .collect()
            }

            pub async fn live_tokens_by_person(
                &self,
                session_label: &str,
                now: chrono::DateTime<chrono::Utc>,
            ) -> crate::store::Result<Vec<(String, i64, i64)>> {
                Ok(sqlx::query_as(
                    "SELECT person, COUNT(CASE WHEN label = $1 THEN 1 END), COUNT(*)
                     FROM api_tokens
                     WHERE person IS NOT NULL AND revoked_at IS NULL
                         AND (expires_at IS NULL OR expires_at > $2)
                     GROUP BY person ORDER BY person",
                )
                .bind(session_label)
                .bind(now.timestamp_millis())
                .fetch_all(&self.$read)
                .await?)
            }

            pub async fn revoke_access(
                &self,
                person: &str,
                now: chrono::DateTime<chrono::Utc>,
            ) -> crate::store::Result<(bool, u64)> {
                let mut tx = self.$write.begin().await?;
                let removed = sqlx::query("DELETE FROM credentials WHERE person = $1")
                    .bind(person)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                let revoked = sqlx::query(
                    "UPDATE api_tokens SET revoked_at = $1
                     WHERE person = $2 AND revoked_at IS NULL",
                )
                .bind(now.timestamp_millis())
                .bind(person)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                tx.commit().await?;
                Ok((removed > 0, revoked))
            }
        }
    };
}

/// A person's row: when their password was set, until when an unused invitation works.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Credential {
    pub person: String,
    pub password_set_at: Option<DateTime<Utc>>,
    pub invite_expires_at: Option<DateTime<Utc>>,
}

/// What revoking a person's access ended.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Revoked {
    /// Their password, or an invitation not yet used, was removed.
    pub credentials: bool,
    /// Their sessions and tokens revoked.
    pub tokens: u64,
}

pub(super) fn instant(ms: Option<i64>) -> Result<Option<DateTime<Utc>>> {
    ms.map(|ms| {
        DateTime::from_timestamp_millis(ms).ok_or_else(|| {
            super::StoreError::Corrupt(format!("credentials: time {ms} is out of range"))
        })
    })
    .transpose()
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

    /// Every person's row, by person: password set or not, an invitation pending or not.
    pub async fn credentials(&self) -> Result<Vec<Credential>> {
        on!(self, s => s.credentials().await)
    }

    /// How many tokens each person has live at `now`: `(person, sessions, all)`, sessions being
    /// those labelled `session_label`.
    pub async fn live_tokens_by_person(
        &self,
        session_label: &str,
        now: DateTime<Utc>,
    ) -> Result<Vec<(String, i64, i64)>> {
        on!(self, s => s.live_tokens_by_person(session_label, now).await)
    }

    /// Ends `person`'s access at once, in one transaction: their password and any unused
    /// invitation removed, every token and session of theirs revoked (on every replica within
    /// a second: the token cache forgets them here, and lives a second elsewhere).
    pub async fn revoke_access(&self, person: &str, now: DateTime<Utc>) -> Result<Revoked> {
        let (credentials, tokens) = on!(self, s => s.revoke_access(person, now).await?);
        self.tokens
            .lock()
            .expect("token cache lock")
            .retain(|_, (_, t)| t.person.as_deref() != Some(person));
        Ok(Revoked {
            credentials,
            tokens,
        })
    }
}
