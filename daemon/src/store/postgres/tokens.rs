//! API tokens on PostgreSQL, a statement each through the pool (not the group commit: they
//! change no issue).

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::{PgStore, instant, millis};
use crate::store::{Result, TokenListing, TokenRow, TokenTerms};

fn at(ms: Option<i64>) -> Result<Option<DateTime<Utc>>> {
    ms.map(instant).transpose()
}

impl PgStore {
    /// Stores a token's hash with what it grants, its label and expiry; returns the token's id.
    pub async fn create_token(
        &self,
        hash: &str,
        grant: &crate::auth::Grant,
        terms: &TokenTerms,
        at: DateTime<Utc>,
    ) -> Result<i64> {
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO api_tokens (hash, role, scope, person, integration, label, expires_at, \
             created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
        )
        .bind(hash)
        .bind(grant.role.as_str())
        .bind(&grant.scope)
        .bind(&grant.person)
        .bind(&grant.integration)
        .bind(&terms.label)
        .bind(terms.expires_at.map(millis))
        .bind(millis(at))
        .fetch_one(&self.pool)
        .await?;
        Ok(id)
    }

    /// Revokes a token; false if no live token has that id.
    pub async fn revoke_token(&self, id: i64, at: DateTime<Utc>) -> Result<bool> {
        let r = sqlx::query(
            "UPDATE api_tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL",
        )
        .bind(millis(at))
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    /// The unrevoked token with this hash.
    pub async fn token(&self, hash: &str) -> Result<Option<TokenRow>> {
        let row = sqlx::query(
            "SELECT id, role, scope, person, integration, expires_at FROM api_tokens \
             WHERE hash = $1 AND revoked_at IS NULL",
        )
        .bind(hash)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(TokenRow {
                id: r.get(0),
                role: r.get(1),
                scope: r.get(2),
                person: r.get(3),
                integration: r.get(4),
                expires_at: at(r.get(5))?,
            })
        })
        .transpose()
    }

    /// Every token, by id.
    pub async fn tokens(&self) -> Result<Vec<TokenListing>> {
        let rows = sqlx::query(
            "SELECT id, role, scope, person, integration, label, created_at, last_used_at, \
             expires_at, revoked_at FROM api_tokens ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(TokenListing {
                    id: r.get(0),
                    role: r.get(1),
                    scope: r.get(2),
                    person: r.get(3),
                    integration: r.get(4),
                    label: r.get(5),
                    created_at: instant(r.get(6))?,
                    last_used_at: at(r.get(7))?,
                    expires_at: at(r.get(8))?,
                    revoked_at: at(r.get(9))?,
                })
            })
            .collect()
    }

    /// Records a use of token `id` at `now` unless one at or after `since` is recorded already.
    /// One conditional statement: of replicas noting the same use, one writes.
    pub async fn token_used(
        &self,
        id: i64,
        now: DateTime<Utc>,
        since: DateTime<Utc>,
    ) -> Result<bool> {
        let r = sqlx::query(
            "UPDATE api_tokens SET last_used_at = $1 \
             WHERE id = $2 AND (last_used_at IS NULL OR last_used_at < $3)",
        )
        .bind(millis(now))
        .bind(id)
        .bind(millis(since))
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }
}
