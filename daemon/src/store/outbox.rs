//! The outbox as delivery sees it: claiming due rows with a lease, settling them (sent, retried,
//! dead, held), dead letters requeued, and what the digest and the renderer read.

use std::collections::HashMap;
use std::path::Path;

use chrono::{DateTime, Utc};
use escalade_rules::{Issue, IssueState};

use super::{Backend, OutboxRow, Result, Store};

/// How a store is opened.
#[derive(Clone, Copy, Debug, Default)]
pub struct StoreOptions {
    /// Queue every committed event for the webhook (channel `webhook`), in the event's
    /// transaction: only when a webhook is configured.
    pub webhook_events: bool,
    /// How often the scheduler looks for timers another replica added at least, besides the
    /// hints replicas send each other (PostgreSQL); none for the default, 1 s.
    pub timer_poll: Option<std::time::Duration>,
}

/// An outbox row's statuses, as listings filter on them.
pub const OUTBOX_STATUSES: [&str; 5] = ["queued", "sending", "sent", "dead", "stale"];

/// Which outbox rows to list: by id, after a cursor.
#[derive(Clone, Debug, Default)]
pub struct OutboxFilter {
    pub status: Option<String>,
    /// Continue after this id.
    pub after: Option<i64>,
    pub limit: i64,
}

/// A row claimed by a worker: the row and its variables (for a webhook row, the event's JSON).
#[derive(Clone, Debug)]
pub struct Claimed {
    pub row: OutboxRow,
    pub vars: String,
    /// Taken over from a claim whose lease lapsed while it was being sent (its worker died,
    /// stopped or took too long): it may have gone out already, and goes out again.
    pub taken_over: bool,
}

/// What became of a claimed row.
#[derive(Clone, Debug, PartialEq)]
pub enum Settlement {
    /// Delivered (an SMS: in this many segments).
    Sent { segments: Option<i64> },
    /// A transient failure: queued again for `not_before`.
    Retry {
        not_before: DateTime<Utc>,
        error: String,
    },
    /// A permanent failure, or too many attempts: kept as a dead letter.
    Dead { error: String },
    /// Due longer ago than the policy's age: not sent, and not an attempt; kept until retried.
    Stale { error: String },
    /// Not sent, and not an attempt: held until `not_before` (quiet hours, a digest window).
    Hold { not_before: DateTime<Utc> },
}

/// What requeuing a dead letter or a stale message did.
#[derive(Clone, Debug)]
pub enum Requeue {
    Requeued(Box<OutboxRow>),
    /// The row is neither dead nor stale: its status.
    NotDead(String),
    NotFound,
}

impl Store {
    /// Opens the SQLite database at `path` (see `open_sqlite`) with `options`.
    pub async fn open_sqlite_with(path: &Path, options: StoreOptions) -> Result<Store> {
        let store = Store::open_sqlite(path).await?;
        on!(store, s => s.set_webhook_events(options.webhook_events));
        Ok(store)
    }

    /// Connects to the PostgreSQL database at `url`, migrates it, and opens it with `options`.
    pub async fn open_postgres_with(url: &str, options: StoreOptions) -> Result<Store> {
        let store = Store::over(Backend::Postgres(
            super::PgStore::open(url, options.timer_poll).await?,
        ));
        on!(store, s => s.set_webhook_events(options.webhook_events));
        Ok(store)
    }

    /// Outbox rows matching `f`, by id.
    pub async fn outbox_page(&self, f: &OutboxFilter) -> Result<Vec<OutboxRow>> {
        on!(self, s => s.outbox_page(f).await)
    }

    pub async fn outbox_row(&self, id: i64) -> Result<Option<OutboxRow>> {
        on!(self, s => s.outbox_row(id).await)
    }

    /// Claims up to `limit` rows of `channel` due at `now` (queued with `not_before <= now`,
    /// or sending with a lease expired: a worker died mid-send, and the row goes again), in
    /// due order: marks them `sending` until `lease_until` and counts the attempt. One
    /// statement, so two workers never claim the same row.
    pub async fn claim(
        &self,
        channel: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<Claimed>> {
        on!(self, s => s.claim(channel, now, lease_until, limit).await)
    }

    /// Records what became of claimed rows, all in one statement. A row no longer `sending`
    /// (requeued by hand meanwhile) is left alone.
    pub async fn settle(&self, outcomes: &[(i64, Settlement)], now: DateTime<Utc>) -> Result<()> {
        on!(self, s => s.settle(outcomes, now).await)
    }

    /// When each of `persons` was last sent an email of an issue.
    pub async fn last_emails(&self, persons: &[&str]) -> Result<HashMap<String, DateTime<Utc>>> {
        on!(self, s => s.last_emails(persons).await)
    }

    /// The issue and its state right after each event: what its messages are rendered from.
    pub async fn message_context(&self, seqs: &[i64]) -> Result<HashMap<i64, (Issue, IssueState)>> {
        on!(self, s => s.message_context(seqs).await)
    }

    /// Queues a dead letter or a stale message again, due at `now`, its attempts counted
    /// afresh, retried by hand at `now`: it is sent whatever its age.
    pub async fn requeue(&self, id: i64, now: DateTime<Utc>) -> Result<Requeue> {
        on!(self, s => s.requeue(id, now).await)
    }

    /// Rows per `(channel, status)` that are not sent.
    pub async fn outbox_counts(&self) -> Result<Vec<(String, String, i64)>> {
        on!(self, s => s.outbox_counts().await)
    }

    /// Whether a channel has rows waiting (queued or sending): an index lookup, not a count.
    pub async fn outbox_waiting(&self, channel: &str) -> Result<bool> {
        on!(self, s => s.outbox_waiting(channel).await)
    }

    /// The earliest `not_before` of a channel's queued rows.
    pub async fn next_not_before(&self, channel: &str) -> Result<Option<DateTime<Utc>>> {
        on!(self, s => s.next_not_before(channel).await)
    }
}
