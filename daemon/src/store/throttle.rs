//! Failed console sign-ins, counted per person in the store so that every replica refuses the
//! same person after the same failures. The statements are the same on both backends, written
//! once here and expanded into each.

use chrono::{DateTime, Utc};

use super::{Backend, Result, Store};

macro_rules! throttle_queries {
    ($store:ty, $write:ident, $read:ident) => {
        impl $store {
            pub async fn sign_in_failures(
                &self,
                person: &str,
                since: chrono::DateTime<chrono::Utc>,
            ) -> crate::store::Result<i64> {
                Ok(sqlx::query_scalar(
                    "SELECT COUNT(*) FROM sign_in_failures WHERE person = $1 AND at > $2",
                )
                .bind(person)
                .bind(since.timestamp_millis())
                .fetch_one(&self.$read)
                .await?)
            }

            pub async fn sign_in_failed(
                &self,
                person: &str,
                at: chrono::DateTime<chrono::Utc>,
                forget_before: chrono::DateTime<chrono::Utc>,
            ) -> crate::store::Result<()> {
                sqlx::query("DELETE FROM sign_in_failures WHERE at <= $1")
                    .bind(forget_before.timestamp_millis())
                    .execute(&self.$write)
                    .await?;
                sqlx::query("INSERT INTO sign_in_failures (person, at) VALUES ($1, $2)")
                    .bind(person)
                    .bind(at.timestamp_millis())
                    .execute(&self.$write)
                    .await?;
                Ok(())
            }

            pub async fn sign_in_succeeded(&self, person: &str) -> crate::store::Result<()> {
                sqlx::query("DELETE FROM sign_in_failures WHERE person = $1")
                    .bind(person)
                    .execute(&self.$write)
                    .await?;
                Ok(())
            }
        }
    };
}

impl Store {
    /// `person`'s failed sign-ins after `since`.
    pub async fn sign_in_failures(&self, person: &str, since: DateTime<Utc>) -> Result<i64> {
        on!(self, s => s.sign_in_failures(person, since).await)
    }

    /// Counts a failed sign-in of `person` at `at`, and forgets every failure at or before
    /// `forget_before`.
    pub async fn sign_in_failed(
        &self,
        person: &str,
        at: DateTime<Utc>,
        forget_before: DateTime<Utc>,
    ) -> Result<()> {
        on!(self, s => s.sign_in_failed(person, at, forget_before).await)
    }

    /// Forgets `person`'s failures: they signed in.
    pub async fn sign_in_succeeded(&self, person: &str) -> Result<()> {
        on!(self, s => s.sign_in_succeeded(person).await)
    }
}
