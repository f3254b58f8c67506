//! The engine: every submission, action and timer becomes an event; the rules decide on a
//! blocking thread; the store commits the decision whole.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use escalade_rules::{
    Decision, Event, Issue, IssueState, Outcome, Refusal, RuleSet, State, WorkDuration,
};
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, watch};

use std::collections::HashSet;

use futures_util::future::join_all;

use crate::auth::{Actor, Role};
use crate::links::{Claim, Spent};
use crate::photos::{PhotoStore, Received};
use crate::store::{
    DueTimer, Firing, IssueFilter, Listed, Meeting, MeetingFilter, Store, StoreError, StoredIssue,
    Submitted,
};

/// Who acts on an issue: a caller of the API, whose permission is checked inside the issue's
/// turn on the very state the decision uses; an acknowledgement link, checked there the same
/// way against what it is bound to; or the daemon itself (the scheduler, a reload, tests and
/// benchmarks driving the engine), which is not checked.
#[derive(Clone, Copy, Debug)]
pub enum By<'a> {
    Caller(&'a Actor),
    Link(&'a Claim),
    System(&'a str),
}

impl<'a> From<&'a Actor> for By<'a> {
    fn from(a: &'a Actor) -> By<'a> {
        By::Caller(a)
    }
}

impl<'a> From<&'a str> for By<'a> {
    fn from(s: &'a str) -> By<'a> {
        By::System(s)
    }
}

impl<'a> From<&'a String> for By<'a> {
    fn from(s: &'a String) -> By<'a> {
        By::System(s)
    }
}

impl By<'_> {
    /// How events record their actor.
    pub fn name(&self) -> String {
        match self {
            By::Caller(a) => a.name(),
            By::Link(c) => format!("link:{}", c.department),
            By::System(s) => s.to_string(),
        }
    }
}

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
    /// The caller may not do this to the issue as it stands.
    #[error("{message}")]
    Forbidden {
        message: String,
        /// The request's field at fault (`unit` of a submission, `event` of an action).
        field: &'static str,
    },
    /// An acknowledgement link that no longer fits the issue: expired, used, or the issue
    /// moved on.
    #[error(transparent)]
    LinkSpent(#[from] Spent),
    /// Photos could not be stored.
    #[error("storing photos: {0}")]
    Photos(String),
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

impl EngineError {
    /// A short name of the error, for metrics: the API's error code where there is one.
    pub fn reason(&self) -> &'static str {
        match self {
            EngineError::Refused(Refusal::NotAllowed { .. }) => "not_allowed",
            EngineError::Refused(Refusal::Invalid { .. }) => "invalid",
            EngineError::Refused(Refusal::Unchanged { .. }) => "unchanged",
            EngineError::Refused(Refusal::Overloaded { .. }) => "overloaded",
            EngineError::Forbidden { .. } => "forbidden",
            EngineError::Store(StoreError::KeyReused(_)) => "idempotency_key_reused",
            EngineError::NotFound(_) => "not_found",
            _ => "error",
        }
    }
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

/// The unit's branch from the top, `/city/d1/s1/g1/`: what subtree filters search.
pub fn branch(rules: &RuleSet, unit: &str) -> String {
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

/// Narrows a meeting filter to what the caller may see: a leader's subtree (an agenda issue in
/// it), a department's invitations, everything for an admin; a reporter or a kiosk sees none.
fn scope_meetings(actor: &Actor, f: &mut MeetingFilter) -> Result<()> {
    match actor.role {
        Role::Admin => {}
        Role::Leader => f.subtree = actor.scope.clone(),
        Role::Department => f.department = actor.scope.clone(),
        Role::Reporter | Role::Kiosk => {
            return Err(EngineError::Forbidden {
                message: actor.may_not("see meetings"),
                field: "role",
            });
        }
    }
    Ok(())
}

/// Whether the caller may submit this issue: a reporter or leader reports only in their
/// subtree, and a caller names as `reporter` only whom it may (`Actor::may_not_name_reporter`:
/// a person's token its person; an admin's or an integration's anyone). An unknown unit is the
/// rules' to refuse (422); a known one outside the caller's scope is not theirs to report in.
fn may_submit(rules: &RuleSet, actor: &Actor, issue: &Issue) -> Result<()> {
    if rules.org.unit(&issue.unit).is_some() && !actor.may_submit(rules, &issue.unit) {
        return Err(EngineError::Forbidden {
            message: actor.may_not(&format!("report in unit {}", issue.unit)),
            field: "unit",
        });
    }
    if let Some(message) = issue
        .reporter
        .as_deref()
        .and_then(|r| actor.may_not_name_reporter(r))
    {
        return Err(EngineError::Forbidden {
            message,
            field: "reporter",
        });
    }
    Ok(())
}

/// The issue as its caller reports it, and the actor its `reported` event records: a person's
/// token reports as its person, so an issue naming no reporter gets the caller's person; an
/// issue whose reporter is not the caller's person was submitted on the reporter's behalf,
/// which the actor says (`admin#1 on behalf of p-g-0001`). Runs after `may_submit`.
fn as_reported(by: By<'_>, mut issue: Issue) -> (Issue, String) {
    let By::Caller(actor) = by else {
        return (issue, by.name());
    };
    if issue.reporter.is_none() {
        issue.reporter = actor.person.clone();
    }
    let name = match &issue.reporter {
        Some(r) if actor.person.as_ref() != Some(r) => {
            format!("{} on behalf of {r}", actor.name())
        }
        _ => actor.name(),
    };
    (issue, name)
}

/// The key a caller sent, from the key stored for it (`OWNER/KEY`).
fn idempotency_key_sent(stored: Option<&str>) -> String {
    stored
        .and_then(|k| k.split_once('/'))
        .map(|(_, k)| k.to_string())
        .unwrap_or_default()
}

/// A link acknowledges its issue and does nothing else.
fn link_only_acknowledges(c: &Claim, what: &str) -> EngineError {
    EngineError::Forbidden {
        message: format!(
            "a link to acknowledge issue {} for {} may not {what}",
            c.issue, c.department
        ),
        field: "event",
    }
}

/// Moves received photos into the photo directory on a blocking thread and returns their names,
/// each once, in order.
async fn keep_photos(store: &PhotoStore, photos: Vec<Received>) -> Result<Vec<String>> {
    let store = store.clone();
    let stored = tokio::task::spawn_blocking(move || {
        photos
            .into_iter()
            .map(|r| store.keep(r))
            .collect::<std::result::Result<Vec<_>, _>>()
    })
    .await
    .map_err(|e| EngineError::Photos(e.to_string()))?
    .map_err(|e| EngineError::Photos(e.to_string()))?;
    let mut names: Vec<String> = Vec::with_capacity(stored.len());
    for p in stored {
        if !names.contains(&p.hash) {
            names.push(p.hash);
        }
    }
    Ok(names)
}

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
    /// Shadow rules, when a candidate runs beside the live rules: each committed event is
    /// offered to them, off the request's path.
    shadow: RwLock<Option<Arc<crate::shadow::Shadow>>>,
    /// Whether this replica leads (runs the scheduled jobs), and when that was last settled
    /// with the store; none before the first try.
    leadership: std::sync::Mutex<Option<Leadership>>,
    /// Decisions committed by this process, counted: what live pages wait on.
    commits: watch::Sender<u64>,
}

/// This replica's role among the replicas, as last settled with the store.
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct Leadership {
    pub leader: bool,
    /// When the store last answered (the lease taken, kept, or seen held by another).
    pub checked_at: DateTime<Utc>,
    /// Whether the last attempt reached the store: a replica that cannot is not the leader.
    pub healthy: bool,
}

/// The leader's lease: the replica that holds it runs the scheduled jobs. Renewed every third of
/// it, so the next run after a leader dies happens on another replica within about this long.
pub const LEADER_LEASE: Duration = Duration::from_secs(10);

/// How many times an action is decided again when another action on the same issue committed
/// between its read and its write.
const CONFLICT_RETRIES: usize = 8;

/// Timers fired in one pass at most, so a pass cannot run without end.
const MAX_FIRINGS: usize = 10_000;

/// How long a timer whose decision the wall clock stopped waits before it is tried again.
const OVERLOAD_RETRY: Duration = Duration::from_secs(30);

/// Issues whose timers fire together.
const FIRE_BATCH: i64 = 256;

/// How long a replica's claim on the timers it fires holds before others may take them over:
/// renewed every third of it while the replica works, so a replica that dies (or stops) has its
/// timers fired elsewhere this long after its last renewal, plus one poll.
pub const TIMER_LEASE: Duration = Duration::from_secs(5);

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
            shadow: RwLock::new(None),
            leadership: std::sync::Mutex::new(None),
            commits: watch::Sender::new(0),
        }
    }

    /// Changes each time this process commits a decision (not another replica's: a watcher on
    /// a shared store looks at it every `Store::poll_every` too).
    pub fn commits(&self) -> watch::Receiver<u64> {
        self.commits.subscribe()
    }

    /// Takes or keeps the leader's lease, and says whether this replica leads: it runs the
    /// scheduled jobs. A store that cannot be reached makes it a follower (the lease lapses
    /// for another replica to take).
    pub async fn lead(&self) -> bool {
        let now = self.now();
        let until = now + chrono::Duration::from_std(LEADER_LEASE).unwrap_or_default();
        let (leader, healthy) = match self.store.lead("leader", now, until).await {
            Ok(held) => (held, true),
            Err(e) => {
                tracing::warn!(error = %e, "the leader's lease could not be settled");
                (false, false)
            }
        };
        let mut l = self.leadership.lock().expect("leadership lock");
        let was = l.map(|l| l.leader);
        if was != Some(leader) && self.store.replica().is_some() {
            tracing::info!(
                replica = self.store.replica().unwrap_or_default(),
                leader,
                "this replica's role changed"
            );
        }
        *l = Some(Leadership {
            leader,
            checked_at: if healthy {
                now
            } else {
                l.map_or(now, |l| l.checked_at)
            },
            healthy,
        });
        leader
    }

    /// This replica's role as last settled.
    pub fn leadership(&self) -> Option<Leadership> {
        *self.leadership.lock().expect("leadership lock")
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Keeps received photos: in the photo directory, and where the store holds photos (every
    /// replica reads them from the database), there too, before anything names them.
    async fn store_photos(&self, store: &PhotoStore, photos: Vec<Received>) -> Result<Vec<String>> {
        let names = keep_photos(store, photos).await?;
        if self.store.keeps_photos() {
            let (dir, wanted) = (store.clone(), names.clone());
            let read = tokio::task::spawn_blocking(move || {
                wanted
                    .into_iter()
                    .map(|h| match dir.get(&h)? {
                        Some((bytes, ct)) => Ok((h, ct, bytes)),
                        None => Err(std::io::Error::other(format!("photo {h} vanished"))),
                    })
                    .collect::<std::io::Result<Vec<_>>>()
            })
            .await
            .map_err(|e| EngineError::Photos(e.to_string()))?
            .map_err(|e| EngineError::Photos(e.to_string()))?;
            self.store.put_photos(&read, self.now()).await?;
        }
        Ok(names)
    }

    /// A photo for serving: from the photo directory, or, where the store holds photos, fetched
    /// from it into the directory first (another replica received it). `None` if neither has it.
    pub async fn open_photo(
        &self,
        store: &PhotoStore,
        hash: &str,
    ) -> Result<Option<(std::fs::File, &'static str, u64)>> {
        let open = |dir: PhotoStore, h: String| async move {
            tokio::task::spawn_blocking(move || dir.open_photo(&h))
                .await
                .map_err(|e| EngineError::Photos(e.to_string()))?
                .map_err(|e| EngineError::Photos(e.to_string()))
        };
        if let Some(found) = open(store.clone(), hash.to_string()).await? {
            return Ok(Some(found));
        }
        let Some((bytes, _)) = self.store.photo(hash).await? else {
            return Ok(None);
        };
        let dir = store.clone();
        tokio::task::spawn_blocking(move || dir.put(&bytes))
            .await
            .map_err(|e| EngineError::Photos(e.to_string()))?
            .map_err(|e| EngineError::Photos(e.to_string()))?;
        open(store.clone(), hash.to_string()).await
    }

    pub fn rules(&self) -> Arc<RuleSet> {
        self.rules.read().expect("rules lock").clone()
    }

    /// The time, to the millisecond: what the store keeps, so that a decision re-made from
    /// the stored event (`explain`, replay) sees exactly the instant the first one saw.
    pub fn now(&self) -> DateTime<Utc> {
        let t = self.clock.now();
        DateTime::from_timestamp_millis(t.timestamp_millis()).unwrap_or(t)
    }

    /// Puts a new rule set live: every request from now on takes it; a request under way keeps
    /// the one it took. Returns the rule set it replaced.
    pub fn swap_rules(&self, rules: Arc<RuleSet>) -> Arc<RuleSet> {
        std::mem::replace(&mut *self.rules.write().expect("rules lock"), rules)
    }

    /// Puts shadow rules beside the live ones (or stops them, with `None`); returns the ones
    /// they replace, whose worker finishes what it was offered and ends.
    pub fn set_shadow(
        &self,
        shadow: Option<Arc<crate::shadow::Shadow>>,
    ) -> Option<Arc<crate::shadow::Shadow>> {
        std::mem::replace(&mut *self.shadow.write().expect("shadow lock"), shadow)
    }

    pub fn shadow(&self) -> Option<Arc<crate::shadow::Shadow>> {
        self.shadow.read().expect("shadow lock").clone()
    }

    /// Offers a committed event to the shadow rules, if they run.
    fn offer_shadow(
        &self,
        issue: &Issue,
        state: &IssueState,
        event: &Event,
        at: DateTime<Utc>,
        live: &Decision,
    ) {
        if let Some(s) = self.shadow() {
            s.offer(crate::shadow::Offer {
                issue: issue.clone(),
                state: state.clone(),
                event: event.clone(),
                at,
                live: live.clone(),
            });
        }
    }

    /// Decides on a blocking thread: hooks may run up to their wall-clock limit.
    async fn decide(
        rules: &Arc<RuleSet>,
        issue: Issue,
        state: IssueState,
        event: Event,
        now: DateTime<Utc>,
    ) -> Result<Decision> {
        let rules = rules.clone();
        let name = event.name();
        let decide = move || {
            let d = rules.decide(&issue, &state, &event, now);
            match &d {
                Ok(d) if d.triage.is_some() => crate::metrics::decision(name, "triage"),
                Ok(_) => crate::metrics::decision(name, "decided"),
                Err(_) => crate::metrics::decision(name, "refused"),
            }
            d
        };
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
    pub async fn submit<'a>(
        &self,
        issue: Issue,
        by: impl Into<By<'a>>,
        idempotency: Option<(&str, &str)>,
    ) -> Result<Submitted> {
        self.submit_with_photos(issue, by, idempotency, None).await
    }

    /// `submit`, with photos sent in the same request: they are written to `photos` only once
    /// the caller's permission, the idempotency key and the rules' decision have all admitted
    /// the issue, so a refused or replayed submission leaves no photo behind.
    ///
    /// One rule set serves the whole submission: the permission, the decision and the unit's
    /// branch all come from the rules live when it began.
    pub async fn submit_with_photos<'a>(
        &self,
        issue: Issue,
        by: impl Into<By<'a>>,
        idempotency: Option<(&str, &str)>,
        photos: Option<(&PhotoStore, Vec<Received>)>,
    ) -> Result<Submitted> {
        let submitted = self
            .submit_admitted(issue, by.into(), idempotency, photos)
            .await;
        match &submitted {
            Ok(s) if !s.replayed => crate::metrics::received(),
            Ok(_) => {}
            Err(e) => crate::metrics::refused(e.reason()),
        }
        submitted
    }

    async fn submit_admitted(
        &self,
        issue: Issue,
        by: By<'_>,
        idempotency: Option<(&str, &str)>,
        photos: Option<(&PhotoStore, Vec<Received>)>,
    ) -> Result<Submitted> {
        let rules = self.rules();
        match by {
            By::Caller(actor) => may_submit(&rules, actor, &issue)?,
            By::Link(c) => return Err(link_only_acknowledges(c, "report an issue")),
            By::System(_) => {}
        }
        let (mut issue, actor) = as_reported(by, issue);
        // A key is the caller's own: another token's use of the same key is another request.
        let scoped = idempotency.map(|(key, hash)| {
            let owner = match by {
                By::Caller(a) => format!("token:{}", a.token),
                other => other.name(),
            };
            (format!("{owner}/{key}"), hash)
        });
        let idempotency = scoped.as_ref().map(|(k, h)| (k.as_str(), *h));
        // A reused key is named as the caller sent it.
        let named = |e: StoreError| match (e, idempotency) {
            (StoreError::KeyReused(_), Some(_)) => {
                StoreError::KeyReused(idempotency_key_sent(scoped.as_ref().map(|s| s.0.as_str())))
            }
            (e, _) => e,
        };
        if let Some((key, hash)) = idempotency
            && let Some(first) = self.store.idempotent(key, hash).await.map_err(named)?
        {
            return Ok(Submitted {
                issue: self.first_answer(first).await?,
                replayed: true,
            });
        }
        issue.id = self.store.allocate_id().await?;
        let now = self.now();
        let decision = Engine::decide(
            &rules,
            issue.clone(),
            IssueState::default(),
            Event::Reported,
            now,
        )
        .await?;
        if let Some((store, bytes)) = photos
            && !bytes.is_empty()
        {
            issue.photos = self.store_photos(store, bytes).await?;
        }
        let branch = branch(&rules, &issue.unit);
        let submitted = self
            .store
            .create(&issue, &branch, &decision, now, &actor, idempotency)
            .await
            .map_err(named)?;
        self.after_commit(&decision);
        if submitted.replayed {
            // Another request with the key committed first: its answer is this one's.
            return Ok(Submitted {
                issue: self.first_answer(submitted.issue).await?,
                replayed: true,
            });
        }
        self.offer_shadow(
            &issue,
            &IssueState::default(),
            &Event::Reported,
            now,
            &decision,
        );
        Ok(submitted)
    }

    /// The answer a submission first got: the issue as reported, in the state its report left
    /// it (whatever happened to it since), at version 1.
    async fn first_answer(&self, now: StoredIssue) -> Result<StoredIssue> {
        let recorded = self.store.recorded(&now.issue.id).await?;
        let Some(first) = recorded.first() else {
            return Ok(now);
        };
        let state: IssueState = serde_json::from_value(first.decision["next"].clone())
            .map_err(|e| EngineError::Decide(format!("the stored first decision: {e}")))?;
        Ok(StoredIssue {
            state,
            version: 1,
            issue: now.issue,
        })
    }

    /// Acknowledges an issue through a link, for the department it was sent to: inside the
    /// issue's turn, the link is checked against the state the decision uses (the department
    /// still holds the issue, which is still assigned, with the deadline the link was made
    /// for, and the link has not expired). The event's actor is `link:DEPARTMENT`.
    pub async fn acknowledge_by_link(&self, claim: &Claim) -> Result<(StoredIssue, Decision)> {
        self.act_with(&claim.issue, Event::Acknowledged, By::Link(claim), None)
            .await
    }

    /// Sweeps the photo store at start and every hour (a grace of an hour), until `stop`.
    pub async fn run_photo_sweeps(
        self: Arc<Self>,
        photos: PhotoStore,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        const EVERY: std::time::Duration = std::time::Duration::from_secs(3600);
        loop {
            match self.sweep_photos(&photos, EVERY).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(removed = n, "photos nothing names were removed"),
                Err(e) => tracing::warn!(error = %e, "sweeping the photo store failed"),
            }
            tokio::select! {
                _ = tokio::time::sleep(EVERY) => {}
                _ = stop.changed() => return,
            }
        }
    }

    /// Removes the photo files nothing committed names, written more than `grace` ago (see
    /// `PhotoStore::sweep`); the names are read before the files are listed.
    pub async fn sweep_photos(
        &self,
        photos: &PhotoStore,
        grace: std::time::Duration,
    ) -> Result<usize> {
        let named = self.store.photo_names().await?;
        let before = self.now() - chrono::Duration::from_std(grace).unwrap_or_default();
        let in_database = self.store.sweep_photos(before).await?;
        if in_database > 0 {
            tracing::info!(
                removed = in_database,
                "photos nothing names were removed from the database"
            );
        }
        let photos = photos.clone();
        tokio::task::spawn_blocking(move || photos.sweep(&named, grace))
            .await
            .map_err(|e| EngineError::Photos(e.to_string()))?
            .map_err(|e| EngineError::Photos(e.to_string()))
    }

    /// Whether the caller may report this issue where it says and as whom it says, by the rules
    /// live now: what a multipart submission asks before it reads the photos. `submit` asks
    /// again.
    pub fn may_submit(&self, actor: &Actor, issue: &Issue) -> Result<()> {
        may_submit(&self.rules(), actor, issue)
    }

    /// A meeting as `actor` may see it: the agenda items whose issues it may see, on one rules
    /// snapshot; its participants and departments only if it may see every item (they were
    /// invited for issues it may not see).
    pub async fn meeting_for(&self, actor: &Actor, mut m: Meeting) -> Result<Meeting> {
        if actor.role == Role::Admin {
            return Ok(m);
        }
        let rules = self.rules();
        let total = m.agenda.len();
        let mut kept = Vec::with_capacity(total);
        for item in std::mem::take(&mut m.agenda) {
            if let Some(i) = self.store.issue(&item.issue).await?
                && actor.may_see(&rules, &i.issue, &i.state)
            {
                kept.push(item);
            }
        }
        if kept.len() < total {
            m.participants.clear();
            m.departments
                .retain(|d| actor.role == Role::Department && actor.scope.as_ref() == Some(d));
        }
        m.agenda = kept;
        Ok(m)
    }

    /// The meetings matching `f` that the caller may see, each as it may see it (`meeting_for`):
    /// a leader's those with an agenda issue in its subtree, a department's those it is invited
    /// to, every one for an admin; a reporter or a kiosk sees none.
    pub async fn meetings_for(&self, actor: &Actor, mut f: MeetingFilter) -> Result<Vec<Meeting>> {
        scope_meetings(actor, &mut f)?;
        let mut meetings = Vec::new();
        for m in self.store.meetings(&f).await? {
            meetings.push(self.meeting_for(actor, m).await?);
        }
        Ok(meetings)
    }

    /// Meeting `id` as the caller may see it: not found if there is none, forbidden if it is
    /// not the caller's to see (in that order).
    pub async fn meeting_visible(&self, actor: &Actor, id: i64) -> Result<Meeting> {
        if self.store.meeting(id).await?.is_none() {
            return Err(EngineError::MeetingNotFound(id));
        }
        let f = MeetingFilter {
            id: Some(id),
            limit: 1,
            ..Default::default()
        };
        self.meetings_for(actor, f)
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| EngineError::Forbidden {
                message: actor.may_not(&format!("see meeting {id}")),
                field: "id",
            })
    }

    /// Whether the caller may record the outcome of meeting `id` (`record_outcome` asks again):
    /// an admin, or a leader whose subtree holds every agenda issue.
    pub async fn may_record_outcome(&self, actor: &Actor, id: i64) -> Result<bool> {
        let meeting = self
            .store
            .meeting(id)
            .await?
            .ok_or(EngineError::MeetingNotFound(id))?;
        match self.may_record(actor, &meeting).await {
            Ok(()) => Ok(true),
            Err(EngineError::Forbidden { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The open issues with a request (延期 or 挂起) the caller may decide, the soonest to
    /// lapse first (a request without a time limit last), at most `limit`: the store's
    /// candidates (a leader's from its subtree), each kept if the caller may post the decision
    /// to the issue as it stands. A reporter or a kiosk decides none.
    pub async fn requests_for(&self, actor: &Actor, limit: i64) -> Result<Vec<StoredIssue>> {
        let subtree = match actor.role {
            Role::Admin | Role::Department => None,
            Role::Leader => Some(actor.scope.clone().unwrap_or_default()),
            Role::Reporter | Role::Kiosk => {
                return Err(EngineError::Forbidden {
                    message: actor.may_not("decide requests"),
                    field: "role",
                });
            }
        };
        let limit = limit.max(1);
        let rules = self.rules();
        let mut kept = Vec::new();
        let mut after = None;
        loop {
            let page = self
                .store
                .requests(subtree.as_deref(), after, limit)
                .await?;
            let full = page.len() as i64 == limit;
            after = page.last().and_then(|l| {
                let (key, id) = l.cursor.split_once(':')?;
                Some((key.parse().ok()?, id.to_string()))
            });
            for l in page {
                let (issue, state) = (&l.issue.issue, &l.issue.state);
                let decides = state.request.as_ref().is_some_and(|r| {
                    let decision = Event::RequestDecided {
                        request: r.kind,
                        granted: true,
                        note: String::new(),
                    };
                    decision.allowed_in(state.state)
                        && actor.may_act(&rules, issue, state, &decision)
                });
                if decides {
                    kept.push(l.issue);
                    if kept.len() as i64 == limit {
                        return Ok(kept);
                    }
                }
            }
            if !full || after.is_none() {
                return Ok(kept);
            }
        }
    }

    /// The issues matching `f` that the caller may list: a department's own, a reporter's or
    /// leader's unit subtree (the filter narrowed to it when it names none), everything for an
    /// admin. Naming another department or a unit outside the caller's subtree is refused.
    pub async fn list_for(&self, actor: &Actor, mut f: IssueFilter) -> Result<Vec<Listed>> {
        let refuse = |what: String, field| EngineError::Forbidden {
            message: actor.may_not(&format!("list the issues of {what}")),
            field,
        };
        match actor.role {
            Role::Admin => {}
            Role::Department => match (&f.department, &actor.scope) {
                (Some(d), Some(mine)) if d != mine => {
                    return Err(refuse(d.clone(), "department"));
                }
                _ => f.department = actor.scope.clone(),
            },
            Role::Reporter | Role::Leader => {
                let scope = actor.scope.clone().unwrap_or_default();
                match &f.subtree {
                    Some(u) => {
                        let rules = self.rules();
                        let org = &rules.org;
                        let inside = match (org.unit(u), org.unit(&scope)) {
                            (Some(u), Some(sc)) => org.in_subtree(u, sc),
                            _ => false,
                        };
                        if !inside {
                            return Err(refuse(u.clone(), "unit"));
                        }
                    }
                    None => f.subtree = Some(scope),
                }
            }
            Role::Kiosk => {
                return Err(EngineError::Forbidden {
                    message: actor.may_not("list issues"),
                    field: "role",
                });
            }
        }
        Ok(self.store.list(&f).await?)
    }

    /// The scorecards from `from` to `to` that the caller may read: an admin every card (or
    /// the department's or the unit subtree's asked for), a leader the departments' and its
    /// subtree's units' (or one asked for inside it), a department its own; a reporter none.
    /// Names in `locale`.
    pub async fn scorecards_for(
        &self,
        actor: &Actor,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        department: Option<String>,
        unit: Option<String>,
        locale: &str,
    ) -> Result<crate::scorecards::Scorecards> {
        use crate::scorecards::{Show, Which};
        let rules = self.rules();
        let refuse = |what: &str| EngineError::Forbidden {
            message: actor.may_not(what),
            field: if unit.is_some() { "unit" } else { "department" },
        };
        let which = match actor.role {
            Role::Admin => match (department, unit.clone()) {
                (Some(d), _) => Which {
                    departments: Show::Only(d),
                    units: Show::None,
                },
                (None, Some(u)) => Which {
                    departments: Show::None,
                    units: Show::Only(u),
                },
                (None, None) => Which::default(),
            },
            Role::Leader => {
                let scope = actor.scope.clone().unwrap_or_default();
                match (department, unit.clone()) {
                    (_, Some(u)) if !actor.in_subtree(&rules, &u) => {
                        return Err(refuse(&format!("read the scorecards of {u}")));
                    }
                    (None, Some(u)) => Which {
                        departments: Show::None,
                        units: Show::Only(u),
                    },
                    (Some(d), _) => Which {
                        departments: Show::Only(d),
                        units: Show::None,
                    },
                    (None, None) => Which {
                        departments: Show::All,
                        units: Show::Only(scope),
                    },
                }
            }
            Role::Department => {
                let own = actor.scope.clone().unwrap_or_default();
                if unit.is_some() || department.as_ref().is_some_and(|d| *d != own) {
                    return Err(refuse("read another department's or a unit's scorecard"));
                }
                Which {
                    departments: Show::Only(own),
                    units: Show::None,
                }
            }
            Role::Reporter | Role::Kiosk => return Err(refuse("read scorecards")),
        };
        Ok(crate::scorecards::scorecards(&self.store, &rules, from, to, &which, locale).await?)
    }

    /// The city's wall for a kiosk or an administrator: today's reports (since midnight on the
    /// default calendar), open issues by tier, overdue ones by branch, and the latest
    /// `ticker` events.
    pub async fn wall_for(
        &self,
        actor: &Actor,
        ticker: i64,
    ) -> Result<(crate::store::WallCounts, Vec<crate::store::Ticked>)> {
        if !matches!(actor.role, Role::Kiosk | Role::Admin) {
            return Err(EngineError::Forbidden {
                message: actor.may_not("read the city's wall"),
                field: "role",
            });
        }
        let rules = self.rules();
        let now = self.now();
        let tz = rules.org.calendars[rules.settings.calendar as usize].tz();
        let midnight = now
            .with_timezone(&tz)
            .date_naive()
            .and_hms_opt(0, 0, 0)
            .expect("midnight exists");
        let since = escalade_rules::calendar::wall_clock_instant(tz, midnight);
        let counts = self.store.wall_counts(since, now).await?;
        let ticked = self.store.ticker(ticker).await?;
        Ok((counts, ticked))
    }

    /// An issue, if the caller may see it: 404 before 403, both on the state read.
    pub async fn issue_for(&self, actor: &Actor, id: &str) -> Result<StoredIssue> {
        let stored = self
            .store
            .issue(id)
            .await?
            .ok_or_else(|| EngineError::NotFound(id.to_string()))?;
        if !actor.may_see(&self.rules(), &stored.issue, &stored.state) {
            return Err(EngineError::Forbidden {
                message: actor.may_not(&format!("see issue {id}")),
                field: "id",
            });
        }
        Ok(stored)
    }

    /// A leader's board: the open issues of its subtree (the whole city for an administrator)
    /// that need attention now (overdue, or raised above the first tier of `rules`), counted
    /// by branch and by department, and the `limit` most urgent of them.
    pub async fn board_for(
        &self,
        actor: &Actor,
        rules: &RuleSet,
        limit: i64,
    ) -> Result<(crate::store::BoardCounts, Vec<Listed>)> {
        let subtree = match actor.role {
            Role::Admin => None,
            Role::Leader => Some(actor.scope.clone().unwrap_or_default()),
            _ => {
                return Err(EngineError::Forbidden {
                    message: actor.may_not("read a leader's board"),
                    field: "role",
                });
            }
        };
        let attention = crate::store::Attention {
            at: self.now(),
            first_tier: rules
                .org
                .tiers
                .first()
                .map(|t| t.id.clone())
                .unwrap_or_default(),
        };
        let counts = self
            .store
            .board_counts(&attention, subtree.as_deref())
            .await?;
        let issues = self
            .store
            .list(&IssueFilter {
                subtree,
                attention: Some(attention),
                by_deadline: true,
                limit,
                ..IssueFilter::default()
            })
            .await?;
        Ok((counts, issues))
    }

    /// What happens to `stored` if nobody acts from now on: its ladder projected by `rules`
    /// (the request's snapshot) from the issue's pending timers.
    pub async fn ahead(
        &self,
        rules: Arc<RuleSet>,
        stored: &StoredIssue,
    ) -> Result<escalade_rules::explain::Ahead> {
        let timers = self.store.pending_timers(&stored.issue.id).await?;
        let (issue, state, now) = (stored.issue.clone(), stored.state.clone(), self.now());
        tokio::task::spawn_blocking(move || rules.ahead(&issue, &state, timers, now))
            .await
            .map_err(|e| EngineError::Decide(e.to_string()))
    }

    /// Applies a person's (or the scheduler's) event to an issue.
    pub async fn act<'a>(
        &self,
        id: &str,
        event: Event,
        by: impl Into<By<'a>>,
    ) -> Result<(StoredIssue, Decision)> {
        let by = by.into();
        let event = match (event, by) {
            // A department rates as itself; an admin names the department.
            (
                Event::ReportRated {
                    verdict,
                    comment,
                    department,
                },
                By::Caller(a),
            ) if a.role == Role::Department => {
                let own = a.scope.clone().unwrap_or_default();
                if !department.is_empty() && department != own {
                    return Err(EngineError::Forbidden {
                        message: a.may_not(&format!("rate the report for {department}")),
                        field: "department",
                    });
                }
                Event::ReportRated {
                    verdict,
                    comment,
                    department: own,
                }
            }
            (e, _) => e,
        };
        if let Event::Duplicate { original } = &event
            && original != id
        {
            self.follow_original(id, original, by).await?;
        }
        self.act_with(id, event, by, None).await
    }

    /// Before an issue is closed as a duplicate of `original`: checks that it may be, then has
    /// its reporter follow the original (a `followed` event there), so that nothing is lost if
    /// the daemon stops between the two: at worst the reporter follows an issue its report was
    /// not merged into after all, and hears of its resolution.
    async fn follow_original(&self, id: &str, original: &str, by: By<'_>) -> Result<()> {
        let rules = self.rules();
        let refuse = |message: String| {
            EngineError::Refused(Refusal::Invalid {
                field: "original",
                message,
            })
        };
        let target = self
            .store
            .issue(original)
            .await?
            .ok_or_else(|| refuse(format!("no issue {original}")))?;
        if let By::Caller(a) = by
            && !a.may_see(&rules, &target.issue, &target.state)
        {
            return Err(EngineError::Forbidden {
                message: a.may_not(&format!("see issue {original}")),
                field: "original",
            });
        }
        if let Some(o) = &target.state.duplicate_of {
            return Err(refuse(format!(
                "issue {original} is itself a duplicate of issue {o}: merge into {o}"
            )));
        }
        if !target.state.state.is_held() && target.state.state != State::Resolved {
            return Err(refuse(format!(
                "issue {original} is {}: a duplicate merges into an issue still being handled",
                target.state.state.as_str()
            )));
        }
        let dup = self
            .store
            .issue(id)
            .await?
            .ok_or_else(|| EngineError::NotFound(id.to_string()))?;
        let event = Event::Duplicate {
            original: original.to_string(),
        };
        if let By::Caller(a) = by
            && !a.may_act(&rules, &dup.issue, &dup.state, &event)
        {
            return Err(EngineError::Forbidden {
                message: a.may_not(&format!("post `duplicate` to issue {id}")),
                field: "event",
            });
        }
        // Refused here (say, in a state that allows no merge), nothing is written.
        rules.decide(&dup.issue, &dup.state, &event, self.now())?;
        if let Some(person) = dup.issue.reporter.clone() {
            let follow = Event::Followed {
                person,
                duplicate: id.to_string(),
            };
            let actor = by.name();
            self.act_with(original, follow, By::System(&actor), None)
                .await?;
        }
        Ok(())
    }

    /// `act`, marking the issue's item of meeting `agenda` done in the same transaction.
    ///
    /// Inside the issue's turn, on each attempt, the issue is read, the caller's permission is
    /// checked on that state, the rules decide on it, and the store commits only if the issue
    /// is still at the version read: an issue reassigned in between cannot be acted on by the
    /// department that lost it. One rule set serves every attempt of the request.
    async fn act_with(
        &self,
        id: &str,
        event: Event,
        by: By<'_>,
        agenda: Option<i64>,
    ) -> Result<(StoredIssue, Decision)> {
        self.act_with_photos(id, event, by, agenda, None, None)
            .await
    }

    /// Resolves an issue with photos of the fixed site sent with the request: their names go
    /// into the `resolved` event, and their bytes are written only once the rules have taken
    /// it, before it is committed (content-addressed: a commit that then fails leaves a file
    /// nothing names, never an event naming a missing file).
    pub async fn resolve_with_photos(
        &self,
        id: &str,
        note: String,
        by: &Actor,
        store: &PhotoStore,
        photos: Vec<Received>,
    ) -> Result<(StoredIssue, Decision)> {
        let mut names: Vec<String> = Vec::with_capacity(photos.len());
        for r in &photos {
            if !names.contains(&r.photo.hash) {
                names.push(r.photo.hash.clone());
            }
        }
        let event = Event::Resolved {
            note,
            photos: names,
        };
        self.act_with_photos(id, event, By::Caller(by), None, Some((store, photos)), None)
            .await
    }

    async fn act_with_photos(
        &self,
        id: &str,
        event: Event,
        by: By<'_>,
        agenda: Option<i64>,
        mut photos: Option<(&PhotoStore, Vec<Received>)>,
        firing: Option<Firing>,
    ) -> Result<(StoredIssue, Decision)> {
        let rules = self.rules();
        let stripe = id
            .bytes()
            .fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(b as usize));
        let _turn = self.turns[stripe % self.turns.len()].lock().await;
        let actor = by.name();
        for _ in 0..CONFLICT_RETRIES {
            let stored = self
                .store
                .issue_for_update(id)
                .await?
                .ok_or_else(|| EngineError::NotFound(id.to_string()))?;
            let now = self.now();
            match by {
                By::Caller(a) if !a.may_act(&rules, &stored.issue, &stored.state, &event) => {
                    return Err(EngineError::Forbidden {
                        message: a.may_not(&format!("post `{}` to issue {id}", event.name())),
                        field: "event",
                    });
                }
                By::Link(c) if c.issue != id || !matches!(event, Event::Acknowledged) => {
                    return Err(link_only_acknowledges(
                        c,
                        &format!("post `{}` to issue {id}", event.name()),
                    ));
                }
                By::Link(c) => c.admits(&stored.state, now)?,
                _ => {}
            }
            let decision = Engine::decide(
                &rules,
                stored.issue.clone(),
                stored.state.clone(),
                event.clone(),
                now,
            )
            .await?;
            if let Some((store, bytes)) = photos.take() {
                self.store_photos(store, bytes).await?;
            }
            match self
                .store
                .apply(&stored, &event, &decision, now, &actor, agenda, firing)
                .await
            {
                Ok(_) => {
                    self.after_commit(&decision);
                    if let Some(e) = &decision.escalated {
                        crate::metrics::escalated(&e.to);
                    }
                    self.offer_shadow(&stored.issue, &stored.state, &event, now, &decision);
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
    ///
    /// A caller records an outcome if it is an admin, or a leader whose subtree holds every
    /// agenda issue; each issue's outcome event is then checked again inside its turn.
    pub async fn record_outcome<'a>(
        &self,
        id: i64,
        record: &OutcomeRecord,
        by: impl Into<By<'a>>,
    ) -> Result<Meeting> {
        let by = by.into();
        let actor = by.name();
        let meeting = self
            .store
            .meeting(id)
            .await?
            .ok_or(EngineError::MeetingNotFound(id))?;
        match by {
            By::Caller(a) => self.may_record(a, &meeting).await?,
            By::Link(c) => {
                return Err(link_only_acknowledges(
                    c,
                    &format!("record the outcome of meeting {id}"),
                ));
            }
            By::System(_) => {}
        }
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
        let now = self.now();
        let wanted = serde_json::to_value(record).expect("plain data serialises");
        if meeting.status == "scheduled" {
            if now < meeting.at {
                return Err(EngineError::MeetingNotYet { id, at: meeting.at });
            }
            self.store.hold_meeting(id, &wanted, &actor, now).await?;
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
            match self.act_with(&item.issue, event, by, Some(id)).await {
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

    /// Whether a caller may record a meeting's outcome: an admin, or a leader whose subtree
    /// holds every issue on the agenda.
    async fn may_record(&self, a: &Actor, meeting: &Meeting) -> Result<()> {
        use crate::auth::Role;
        let refuse = |what: String| EngineError::Forbidden {
            message: a.may_not(&what),
            field: "outcome",
        };
        match a.role {
            Role::Admin => Ok(()),
            Role::Leader => {
                let rules = self.rules();
                for item in &meeting.agenda {
                    let unit = self.store.issue(&item.issue).await?.map(|i| i.issue.unit);
                    if !unit.is_some_and(|u| a.in_subtree(&rules, &u)) {
                        return Err(refuse(format!(
                            "record the outcome of meeting {}: issue {} is outside its scope",
                            meeting.id, item.issue
                        )));
                    }
                }
                Ok(())
            }
            _ => Err(refuse("record meeting outcomes".into())),
        }
    }

    /// After a decision's commit: counts it for those watching (open inboxes), wakes the
    /// scheduler if the decision's earliest timer comes before it next looks, and tells the
    /// other replicas when it falls due (each wakes if it would sleep past it).
    fn after_commit(&self, decision: &Decision) {
        self.commits.send_modify(|n| *n = n.wrapping_add(1));
        let Some(first) = decision.timers.iter().map(|t| t.at).min() else {
            return;
        };
        if first.timestamp_millis() < self.next_look.load(Ordering::Acquire) {
            self.wake.notify_one();
        }
        self.store.hint_timer(first);
    }

    /// Fires every timer due now, each as an event of its issue. Returns how many fired.
    /// Timers that fell due while the daemon was down fire here, in the scheduler's first pass.
    ///
    /// Each pass takes the earliest due timer of each of up to `FIRE_BATCH` issues and fires
    /// them together: one issue's timers fire one after another in due order, while different
    /// issues' decisions share the store's group commits instead of paying one each.
    pub async fn fire_due(&self) -> Result<usize> {
        self.fire_due_watched(None).await
    }

    /// `fire_due`, pinging `watchdog` after each batch: a long catch-up that makes progress is
    /// not taken for a hang, a batch that never ends is.
    async fn fire_due_watched(&self, watchdog: Option<&crate::systemd::Watchdog>) -> Result<usize> {
        let mut fired = 0;
        while fired < MAX_FIRINGS {
            let now = self.now();
            let lease = chrono::Duration::from_std(TIMER_LEASE).unwrap_or_default();
            let due = self.store.claim_due(now, now + lease, FIRE_BATCH).await?;
            if due.is_empty() {
                break;
            }
            let mut issues = HashSet::new();
            let batch: Vec<DueTimer> = due
                .into_iter()
                .filter(|t| issues.insert(t.issue_id.clone()))
                .collect();
            // The claims are renewed while the batch is fired, so a slow batch keeps its
            // timers; a replica that stops renewing loses them to the others.
            let claims: Vec<Firing> = batch
                .iter()
                .map(|t| Firing {
                    timer: t.id,
                    fence: t.fence,
                })
                .collect();
            let firing = join_all(batch.iter().map(|t| self.fire(t)));
            let renewing = async {
                loop {
                    tokio::time::sleep(TIMER_LEASE / 3).await;
                    let until = self.now() + lease;
                    if let Err(e) = self.store.renew_claims(&claims, until).await {
                        tracing::warn!(error = %e, "renewing the claims on timers failed");
                    }
                }
            };
            let results = tokio::select! {
                results = firing => results,
                _ = renewing => unreachable!("renewing never ends"),
            };
            for r in results {
                r?;
            }
            fired += batch.len();
            if let Some(w) = watchdog {
                w.ping();
            }
        }
        Ok(fired)
    }

    /// Fires one timer. A timer is never refused by the rules; should the issue be gone or the
    /// decision fail, the timer is dropped rather than retried forever.
    async fn fire(&self, t: &DueTimer) -> Result<()> {
        crate::metrics::timer_fired((self.now() - t.due).num_milliseconds() as f64 / 1000.0);
        let firing = Firing {
            timer: t.id,
            fence: t.fence,
        };
        let by = By::System("scheduler");
        match self
            .act_with_photos(&t.issue_id, t.event.clone(), by, None, None, Some(firing))
            .await
        {
            Ok(_) => Ok(()),
            // Another replica took the timer over, or a decision replaced it: not this one's.
            Err(EngineError::Store(StoreError::LeaseLost(_))) => {
                crate::metrics::timer_lease_lost();
                tracing::info!(timer = t.id, issue = %t.issue_id, "a timer's firing was taken over; its work here is discarded");
                Ok(())
            }
            // Not a routing outcome: how far a hook got before the wall clock stopped it
            // depends on the machine's load. The timer is kept and tried again a little later;
            // the operator is alarmed.
            Err(EngineError::Refused(Refusal::Overloaded { hook, message })) => {
                tracing::error!(
                    alarm = "hook_overloaded",
                    timer = t.id,
                    issue = %t.issue_id,
                    hook,
                    error = %message,
                    "a timer's decision was stopped by the wall clock; trying again in {} s",
                    OVERLOAD_RETRY.as_secs()
                );
                let later =
                    self.now() + chrono::Duration::from_std(OVERLOAD_RETRY).unwrap_or_default();
                self.store.postpone_timer(t.id, later).await?;
                Ok(())
            }
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
    /// or until a decision here or a hint from another replica tells of a sooner one), until
    /// `shutdown` turns true.
    pub async fn run_scheduler(self: Arc<Self>, shutdown: watch::Receiver<bool>) {
        self.run_scheduler_watched(shutdown, None).await
    }

    /// `run_scheduler`, pinging `watchdog` at the top of every pass and after each batch of
    /// timers it fires, and sleeping no longer than its interval: a pass that stops making
    /// progress stops the pings, and the service manager restarts the daemon.
    pub async fn run_scheduler_watched(
        self: Arc<Self>,
        mut shutdown: watch::Receiver<bool>,
        watchdog: Option<crate::systemd::Watchdog>,
    ) {
        loop {
            if *shutdown.borrow() {
                return;
            }
            if let Some(w) = &watchdog {
                w.ping();
            }
            self.next_look.store(i64::MAX, Ordering::Release);
            if let Err(e) = self.fire_due_watched(watchdog.as_ref()).await {
                tracing::error!(error = %e, "firing timers failed; retrying shortly");
            }
            let now = self.now();
            let wait = match self.store.next_due().await {
                Ok(Some(due)) => (due - now)
                    .to_std()
                    .unwrap_or(Duration::ZERO)
                    .min(Duration::from_secs(60)),
                Ok(None) => Duration::from_secs(60),
                Err(_) => Duration::from_secs(1),
            };
            let wait = watchdog.as_ref().map_or(wait, |w| wait.min(w.every()));
            // Other replicas add timers this one is not told of.
            let wait = self.store.poll_every().map_or(wait, |p| wait.min(p));
            let look = now + chrono::Duration::from_std(wait).unwrap_or_default();
            self.next_look
                .store(look.timestamp_millis(), Ordering::Release);
            let until = tokio::time::Instant::now() + wait;
            loop {
                tokio::select! {
                    _ = tokio::time::sleep_until(until) => break,
                    _ = self.wake.notified() => break,
                    _ = shutdown.changed() => break,
                    // Another replica committed a timer: look now if it falls due before this
                    // one would look.
                    due = self.store.timer_hint() => {
                        if due < look {
                            break;
                        }
                    }
                }
            }
        }
    }
}
