//! API tokens in the store: created (with a label and an expiry), revoked, listed, looked up for
//! every request through a short cache, and their last use recorded at most once a minute.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use super::{Backend, Result, Store};

/// A live token as a request sees it: its id, role and scope, who it belongs to (a person or an
/// integration; neither for a token made before owners existed), and when it stops working.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenRow {
    pub id: i64,
    pub role: String,
    pub scope: Option<String>,
    pub person: Option<String>,
    pub integration: Option<String>,
    /// After this instant the token is refused (`token_expired`); never if none.
    pub expires_at: Option<DateTime<Utc>>,
}

/// What a token is made with beyond its grant.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TokenTerms {
    /// What the token is for, as `token list` shows it.
    pub label: Option<String>,
    /// When it stops working; never if none.
    pub expires_at: Option<DateTime<Utc>>,
}

/// A token as `token list` shows it: revoked and expired ones included.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct TokenListing {
    pub id: i64,
    pub role: String,
    pub scope: Option<String>,
    pub person: Option<String>,
    pub integration: Option<String>,
    pub label: Option<String>,
    pub created_at: DateTime<Utc>,
    /// Written at most every `LAST_USED_EVERY`, so it may be that much behind.
    pub last_used_at: Option<DateTime<Utc>>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// How long a looked-up token is trusted without reading the store again: a token revoked by
/// another process (`escalade token revoke`) stops working within this time; one revoked through
/// this store stops at once.
pub const TOKEN_CACHE_TTL: Duration = Duration::from_secs(1);

/// A token's last use is written at most this often (by the time of the requests): checking a
/// token adds no write to every request, and `token list` may be this much behind.
pub const LAST_USED_EVERY: chrono::TimeDelta = chrono::TimeDelta::minutes(1);

impl Store {
    /// Stores a token's hash with what it grants; returns the token's id.
    pub async fn create_token(
        &self,
        hash: &str,
        grant: &crate::auth::Grant,
        at: DateTime<Utc>,
    ) -> Result<i64> {
        self.create_token_with(hash, grant, &TokenTerms::default(), at)
            .await
    }

    /// `create_token` with a label and an expiry.
    pub async fn create_token_with(
        &self,
        hash: &str,
        grant: &crate::auth::Grant,
        terms: &TokenTerms,
        at: DateTime<Utc>,
    ) -> Result<i64> {
        on!(self, s => s.create_token(hash, grant, terms, at).await)
    }

    /// Revokes a token; false if no live token has that id.
    pub async fn revoke_token(&self, id: i64, at: DateTime<Utc>) -> Result<bool> {
        let revoked = on!(self, s => s.revoke_token(id, at).await?);
        self.tokens
            .lock()
            .expect("token cache lock")
            .retain(|_, (_, t)| t.id != id);
        Ok(revoked)
    }

    /// Every token, by id: revoked and expired ones too.
    pub async fn tokens(&self) -> Result<Vec<TokenListing>> {
        on!(self, s => s.tokens().await)
    }

    /// The unrevoked token with this hash (expired or not: the caller judges the time), read
    /// again from the store at most every `TOKEN_CACHE_TTL`.
    pub async fn token(&self, hash: &str) -> Result<Option<TokenRow>> {
        if let Some((seen, t)) = self.tokens.lock().expect("token cache lock").get(hash)
            && seen.elapsed() < TOKEN_CACHE_TTL
        {
            return Ok(Some(t.clone()));
        }
        let found = on!(self, s => s.token(hash).await?);
        let mut cache = self.tokens.lock().expect("token cache lock");
        match &found {
            Some(t) => {
                // Unknown tokens are not remembered: guessing cannot grow the cache, and
                // expired entries go when it is full.
                if cache.len() >= 10_000 {
                    cache.retain(|_, (seen, _)| seen.elapsed() < TOKEN_CACHE_TTL);
                }
                cache.insert(hash.to_string(), (Instant::now(), t.clone()));
            }
            None => {
                cache.remove(hash);
            }
        }
        Ok(found)
    }

    /// Notes that token `id` was used at `now`: written to the store only if this store has not
    /// written a use of it in the `LAST_USED_EVERY` before `now` (nor has another process, as
    /// far as the row says). Returns whether it wrote.
    pub async fn token_used(&self, id: i64, now: DateTime<Utc>) -> Result<bool> {
        {
            let mut used = self.used.lock().expect("token use lock");
            if used
                .get(&id)
                .is_some_and(|last| now - *last < LAST_USED_EVERY)
            {
                return Ok(false);
            }
            if used.len() >= 10_000 {
                used.retain(|_, last| now - *last < LAST_USED_EVERY);
            }
            used.insert(id, now);
        }
        on!(self, s => s.token_used(id, now, now - LAST_USED_EVERY).await)
    }
}
