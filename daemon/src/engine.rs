//! The engine: every submission, action and timer becomes an event; the rules decide on a
//! blocking thread; the store commits the decision whole.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use escalade_rules::{Decision, Event, Issue, IssueState, Outcome, Refusal, RuleSet, WorkDuration};
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, watch};

use std::collections::HashSet;

use futures_util::future::join_all;

use crate::store::{DueTimer, Meeting, Store, StoreError, StoredIssue, Submitted};

/// Where the engine gets the time. The daemon uses the system clock; tests use a manual one,
/// which nothing in the binary can reach.
pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that moves only when told to.
pub struct ManualClock(Mutex<DateTime<Utc>>);

impl ManualClock {
    pub fn new(t: DateTime<Utc>) -> ManualClock {
        ManualClock(Mutex::new(t))
    }

    pub fn set(&self, t: DateTime<Utc>) {
        *self.0.lock().expect("clock lock") = t;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().expect("clock lock")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error("no issue {0}")]
    NotFound(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the decision could not run: {0}")]
    Decide(String),
    #[error("no meeting {0}")]
    MeetingNotFound(i64),
    /// The meeting was held with another outcome.
    #[error("meeting {id} was already held with another outcome")]
    MeetingHeld { id: i64, outcome: serde_json::Value },
    /// A meeting's outcome is recorded from the time it sits.
    #[error("meeting {id} sits at {at}; its outcome can be recorded from then on")]
    MeetingNotYet { id: i64, at: DateTime<Utc> },
}

/// A meeting's outcome as recorded: it applies to every issue on the agenda.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutcomeRecord {
    pub outcome: Outcome,
    /// For a joint enforcement action: the departments that carry it out.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub departments: Vec<String>,
    /// For a joint enforcement action: its working time to resolve, instead of the category's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolve: Option<WorkDuration>,
    /// The minutes, in a sentence or two.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub note: String,
}

pub type Result<T> = std::result::Result<T, EngineError>;

pub struct Engine {
    store: Store,
    rules: RwLock<Arc<RuleSet>>,
    clock: Arc<dyn Clock>,
    /// Wakes the scheduler when a decision added a timer sooner than it sleeps to.
    wake: Notify,
    /// When the scheduler will next look (Unix ms); a decision with an earlier timer wakes it.
    /// `i64::MAX` while it is not asleep: any new timer then leaves it a wake-up permit.
    next_look: AtomicI64,
    /// Actions on one issue take turns within this process (by a stripe of its id), so they
    /// do not race to the store; the store's version check still catches other processes.
    turns: Vec<tokio::sync::Mutex<()>>,
}

/// How many times an action is decided again when another action on the same issue committed
/// between its read and its write.
const CONFLICT_RETRIES: usize = 8;

/// Timers fired in one pass at most, so a pass cannot run without end.
const MAX_FIRINGS: usize = 10_000;

/// Issues whose timers fire together.
const FIRE_BATCH: i64 = 256;

impl Engine {
    pub fn new(store: Store, rules: RuleSet, clock: Arc<dyn Clock>) -> Engine {
        Engine::with_rules(store, Arc::new(rules), clock)
    }

    /// An engine on a rule set shared with others (a rule set is immutable).
    pub fn with_rules(store: Store, rules: Arc<RuleSet>, clock: Arc<dyn Clock>) -> Engine {
        Engine {
            store,
            rules: RwLock::new(rules),
            clock,
            wake: Notify::new(),
            next_look: AtomicI64::new(i64::MAX),
            turns: (0..64).map(|_| tokio::sync::Mutex::new(())).collect(),
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn rules(&self) -> Arc<RuleSet> {
        self.rules.read().expect("rules lock").clone()
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// Decides on a blocking thread: hooks may run up to their wall-clock limit.
    async fn decide(
        &self,
        issue: Issue,
        state: IssueState,
        event: Event,
        now: DateTime<Utc>,
    ) -> Result<Decision> {
        let rules = self.rules();
        let decide = move || rules.decide(&issue, &state, &event, now);
        // On the multi-threaded runtime, `block_in_place` hands this worker's other tasks to the
        // rest of the runtime and decides here, without a thread switch; a single-threaded
        // runtime cannot, so there the decision goes to the blocking pool.
        match tokio::runtime::Handle::current().runtime_flavor() {
            tokio::runtime::RuntimeFlavor::MultiThread => tokio::task::block_in_place(decide),
            _ => tokio::task::spawn_blocking(decide)
                .await
                .map_err(|e| EngineError::Decide(e.to_string()))?,
        }
        .map_err(EngineError::from)
    }

    /// Takes in a new issue. With an idempotency key (and the hash of the request), a retried
    /// submission returns the first answer; the same key with another request is refused.
    pub async fn submit(
        &self,
        mut issue: Issue,
        actor: &str,
        idempotency: Option<(&str, &str)>,
    ) -> Result<Submitted> {
        if let Some((key, hash)) = idempotency
            && let Some(first) = self.store.idempotent(key, hash).await?
        {
            return Ok(Submitted {
                issue: first,
                replayed: true,
            });
        }
        issue.id = self.store.allocate_id();
        let now = self.clock.now();
        let decision = self
            .decide(issue.clone(), IssueState::default(), Event::Reported, now)
            .await?;
        let branch = self.branch(&issue.unit);
        let submitted = self
            .store
            .create(&issue, &branch, &decision, now, actor, idempotency)
            .await?;
        self.timers_added(&decision);
        Ok(submitted)
    }

    /// The unit's branch from the top, `/city/d1/s1/g1/`: what subtree filters search.
    fn branch(&self, unit: &str) -> String {
        let rules = self.rules();
        let org = &rules.org;
        let Some(u) = org.unit(unit) else {
            return String::new();
        };
        let ids: Vec<&str> = org
            .branch(u)
            .map(|u| org.units[u as usize].id.as_str())
            .collect();
        let mut b = String::from("/");
        for id in ids.iter().rev() {
            b.push_str(id);
            b.push('/');
        }
        b
    }

    /// Applies a person's (or the scheduler's) event to an issue.
    pub async fn act(
        &self,
        id: &str,
        event: Event,
        actor: &str,
    ) -> Result<(StoredIssue, Decision)> {
        self.act_with(id, event, actor, None).await
    }

    /// `act`, marking the issue's item of meeting `agenda` done in the same transaction.
    async fn act_with(
        &self,
        id: &str,
        event: Event,
        actor: &str,
        agenda: Option<i64>,
    ) -> Result<(StoredIssue, Decision)> {
        let stripe = id
            .bytes()
            .fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(b as usize));
        let _turn = self.turns[stripe % self.turns.len()].lock().await;
        for _ in 0..CONFLICT_RETRIES {
            let stored = self
                .store
                .issue_for_update(id)
                .await?
                .ok_or_else(|| EngineError::NotFound(id.to_string()))?;
            let now = self.clock.now();
            let decision = self
                .decide(
                    stored.issue.clone(),
                    stored.state.clone(),
                    event.clone(),
                    now,
                )
                .await?;
            match self
                .store
                .apply(&stored, &event, &decision, now, actor, agenda)
                .await
            {
                Ok(_) => {
                    self.timers_added(&decision);
                    let next = StoredIssue {
                        state: decision.next.clone(),
                        version: stored.version + 1,
                        issue: stored.issue,
                    };
                    return Ok((next, decision));
                }
                Err(StoreError::Conflict(_)) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(StoreError::Conflict(id.to_string()).into())
    }

    /// Records a meeting's outcome: holds the meeting, then applies the outcome to every issue
    /// on its agenda, each as a `meeting_outcome` event of that issue. An issue closed since it
    /// was put on the agenda is skipped, with the reason kept. Recording the same outcome again
    /// finishes a recording that was cut short; another outcome for a held meeting is refused.
    pub async fn record_outcome(
        &self,
        id: i64,
        record: &OutcomeRecord,
        actor: &str,
    ) -> Result<Meeting> {
        let meeting = self
            .store
            .meeting(id)
            .await?
            .ok_or(EngineError::MeetingNotFound(id))?;
        let invalid = |message: String| {
            EngineError::Refused(Refusal::Invalid {
                field: "departments",
                message,
            })
        };
        match record.outcome {
            Outcome::Enforcement if record.departments.is_empty() => {
                return Err(invalid(
                    "a joint enforcement action needs departments".into(),
                ));
            }
            Outcome::Enforcement => {
                let rules = self.rules();
                if let Some(d) = record
                    .departments
                    .iter()
                    .find(|d| rules.org.department(d).is_none())
                {
                    return Err(invalid(format!("unknown department `{d}`")));
                }
            }
            _ if !record.departments.is_empty() || record.resolve.is_some() => {
                return Err(invalid(
                    "departments and resolve belong to a joint enforcement action only".into(),
                ));
            }
            _ => {}
        }
        let now = self.clock.now();
        let wanted = serde_json::to_value(record).expect("plain data serialises");
        if meeting.status == "scheduled" {
            if now < meeting.at {
                return Err(EngineError::MeetingNotYet { id, at: meeting.at });
            }
            self.store.hold_meeting(id, &wanted, actor, now).await?;
        }
        let meeting = self
            .store
            .meeting(id)
            .await?
            .ok_or(EngineError::MeetingNotFound(id))?;
        if meeting.outcome.as_ref() != Some(&wanted) {
            return Err(EngineError::MeetingHeld {
                id,
                outcome: meeting.outcome.unwrap_or_default(),
            });
        }
        for item in &meeting.agenda {
            if item.outcome_seq.is_some() || item.skipped.is_some() {
                continue;
            }
            let event = Event::MeetingOutcome {
                meeting: meeting.kind.clone(),
                outcome: record.outcome,
                departments: record.departments.clone(),
                resolve: record.resolve,
            };
            match self.act_with(&item.issue, event, actor, Some(id)).await {
                Ok(_) => {}
                Err(EngineError::Refused(r)) => {
                    self.store
                        .skip_agenda_item(id, &item.issue, &r.to_string())
                        .await?;
                }
                Err(e) => return Err(e),
            }
        }
        self.store
            .meeting(id)
            .await?
            .ok_or(EngineError::MeetingNotFound(id))
    }

    /// Wakes the scheduler if the decision's earliest timer comes before it next looks.
    fn timers_added(&self, decision: &Decision) {
        if let Some(first) = decision
            .timers
            .iter()
            .map(|t| t.at.timestamp_millis())
            .min()
            && first < self.next_look.load(Ordering::Acquire)
        {
            self.wake.notify_one();
        }
    }

    /// Fires every timer due now, each as an event of its issue. Returns how many fired.
    /// Timers that fell due while the daemon was down fire here, in the scheduler's first pass.
    ///
    /// Each pass takes the earliest due timer of each of up to `FIRE_BATCH` issues and fires
    /// them together: one issue's timers fire one after another in due order, while different
    /// issues' decisions share the store's group commits instead of paying one each.
    pub async fn fire_due(&self) -> Result<usize> {
        let mut fired = 0;
        while fired < MAX_FIRINGS {
            let now = self.clock.now();
            let due = self.store.due(now, FIRE_BATCH).await?;
            if due.is_empty() {
                break;
            }
            let mut issues = HashSet::new();
            let batch: Vec<DueTimer> = due
                .into_iter()
                .filter(|t| issues.insert(t.issue_id.clone()))
                .collect();
            let results = join_all(batch.iter().map(|t| self.fire(t))).await;
            for r in results {
                r?;
            }
            fired += batch.len();
        }
        Ok(fired)
    }

    /// Fires one timer. A timer is never refused by the rules; should the issue be gone or the
    /// decision fail, the timer is dropped rather than retried forever.
    async fn fire(&self, t: &DueTimer) -> Result<()> {
        match self.act(&t.issue_id, t.event.clone(), "scheduler").await {
            Ok(_) => Ok(()),
            Err(
                e @ (EngineError::NotFound(_) | EngineError::Refused(_) | EngineError::Decide(_)),
            ) => {
                tracing::error!(timer = t.id, issue = %t.issue_id, error = %e, "timer dropped");
                self.store.drop_timer(t.id).await?;
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// The scheduler: fires due timers, then sleeps until the earliest pending one (or a minute,
    /// or until a decision may have added a sooner one), until `shutdown` turns true.
    pub async fn run_scheduler(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        loop {
            if *shutdown.borrow() {
                return;
            }
            self.next_look.store(i64::MAX, Ordering::Release);
            if let Err(e) = self.fire_due().await {
                tracing::error!(error = %e, "firing timers failed; retrying shortly");
            }
            let now = self.clock.now();
            let wait = match self.store.next_due().await {
                Ok(Some(due)) => (due - now)
                    .to_std()
                    .unwrap_or(Duration::ZERO)
                    .min(Duration::from_secs(60)),
                Ok(None) => Duration::from_secs(60),
                Err(_) => Duration::from_secs(1),
            };
            let look = now + chrono::Duration::from_std(wait).unwrap_or_default();
            self.next_look
                .store(look.timestamp_millis(), Ordering::Release);
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.wake.notified() => {}
                _ = shutdown.changed() => {}
            }
        }
    }
}
