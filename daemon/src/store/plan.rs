//! The batch write plan: what a batch of waiting writes stores, built once above the backends.
//!
//! Writes of issues (a report, an action, a timer's firing, a meeting's outcome) queue for a
//! group commit: the writer takes every write waiting, checks them (idempotency keys, the
//! version each issue was read at), and stores what passes in one transaction, answering each
//! only after the commit. Everything here decides which rows to write; a backend only executes
//! the row sets as statements (`Executor`), and `group_commit` runs the loop for either.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::time::Instant;

use chrono::{DateTime, Utc};
use escalade_rules::{DeadlineKind, Decision, Event, Issue, IssueState, MeetingCall};
use tokio::sync::{mpsc, oneshot};

use super::{Firing, Result, StoreError, StoredIssue, Submitted};

/// A write waiting for the group commit.
pub(super) enum Job {
    Create {
        issue: Issue,
        /// The unit's branch, `/city/d1/s1/g1/`, for subtree filters.
        branch: String,
        decision: Decision,
        at: DateTime<Utc>,
        actor: String,
        idempotency: Option<(String, String)>,
        reply: oneshot::Sender<Result<Submitted>>,
    },
    Apply {
        id: String,
        version: i64,
        /// The state the decision was made on: the webhook's effects compare with it.
        before: Box<IssueState>,
        event: Event,
        decision: Decision,
        at: DateTime<Utc>,
        actor: String,
        /// The meeting whose outcome the event is: its agenda item is marked done with it.
        agenda: Option<i64>,
        /// The timer whose firing the event is: written only under its claim.
        firing: Option<Firing>,
        reply: oneshot::Sender<Result<i64>>,
    },
}

/// What became of one job of a batch.
pub(super) enum Done {
    Created(Box<Result<Submitted>>),
    Applied(Result<i64>),
    Failed(StoreError),
}

/// The most writes committed together.
pub(super) const MAX_BATCH: usize = 512;

/// How often a batch is tried when the database aborts it for a reason of its own (a deadlock
/// between replicas, a serialisation failure): the batch did nothing, and trying it again on the
/// new state is what its writers would do.
const ATTEMPTS: usize = 3;

/// The queue of writes a store's group commit takes, and the two ways into it.
pub(super) struct Writes {
    jobs: mpsc::Sender<Job>,
}

impl Writes {
    /// Starts the group commit over `backend`, which reads `webhooks` per batch: whether to
    /// queue every committed event for the webhook too.
    pub(super) fn start<B: Begin>(
        backend: B,
        webhooks: std::sync::Arc<std::sync::atomic::AtomicBool>,
    ) -> Writes {
        let (jobs, queue) = mpsc::channel(4 * MAX_BATCH);
        tokio::spawn(group_commit(backend, queue, webhooks));
        Writes { jobs }
    }

    /// Stores a new issue with its first decision, atomically with its idempotency key.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn create(
        &self,
        issue: &Issue,
        branch: &str,
        decision: &Decision,
        at: DateTime<Utc>,
        actor: &str,
        idempotency: Option<(&str, &str)>,
    ) -> Result<Submitted> {
        let (reply, answer) = oneshot::channel();
        let job = Job::Create {
            issue: issue.clone(),
            branch: branch.to_string(),
            decision: decision.clone(),
            at,
            actor: actor.to_string(),
            idempotency: idempotency.map(|(k, h)| (k.to_string(), h.to_string())),
            reply,
        };
        self.submit(job, answer).await
    }

    /// Applies a decision to an issue last read at `stored.version`.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn apply(
        &self,
        stored: &StoredIssue,
        event: &Event,
        decision: &Decision,
        at: DateTime<Utc>,
        actor: &str,
        agenda: Option<i64>,
        firing: Option<Firing>,
    ) -> Result<i64> {
        let (reply, answer) = oneshot::channel();
        let job = Job::Apply {
            id: stored.issue.id.clone(),
            version: stored.version,
            before: Box::new(stored.state.clone()),
            event: event.clone(),
            decision: decision.clone(),
            at,
            actor: actor.to_string(),
            agenda,
            firing,
            reply,
        };
        self.submit(job, answer).await
    }

    async fn submit<T>(&self, job: Job, answer: oneshot::Receiver<Result<T>>) -> Result<T> {
        self.jobs.send(job).await.map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }
}

/// A backend's way to start a batch's transaction.
pub(super) trait Begin: Send + Sync + 'static {
    type Tx: Executor + Send;
    fn begin(&self) -> impl Future<Output = sqlx::Result<Self::Tx>> + Send;
    /// Whether the database aborted a transaction in a way another attempt may not meet.
    fn transient(e: &sqlx::Error) -> bool;
}

/// A new issue's row.
pub(super) struct IssueRow<'a> {
    pub id: &'a str,
    pub body: String,
    pub state: String,
    pub status: &'a str,
    pub category: &'a str,
    pub unit: &'a str,
    pub department: Option<&'a str>,
    pub tier: Option<&'a str>,
    pub at: i64,
    pub branch: &'a str,
    pub acknowledge_by: Option<i64>,
    pub resolve_by: Option<i64>,
    pub reporter: Option<&'a str>,
    /// The kind of the request waiting for its decider, and when its time runs out.
    pub request_kind: Option<&'a str>,
    pub request_by: Option<i64>,
}

/// A changed issue's new state, written only where the issue is still at `version` (and, for a
/// timer's firing, where the timer still carries the claim's fence).
pub(super) struct IssueUpdate<'a> {
    pub id: &'a str,
    pub version: i64,
    pub firing: Option<Firing>,
    pub state: String,
    pub status: &'a str,
    pub department: Option<&'a str>,
    pub tier: Option<&'a str>,
    pub at: i64,
    pub acknowledge_by: Option<i64>,
    pub resolve_by: Option<i64>,
    pub request_kind: Option<&'a str>,
    pub request_by: Option<i64>,
}

pub(super) struct KeyRow<'a> {
    pub key: &'a str,
    pub hash: &'a str,
    pub issue_id: &'a str,
    pub at: i64,
}

pub(super) struct EventRow<'a> {
    pub issue_id: &'a str,
    pub at: i64,
    pub actor: &'a str,
    pub kind: &'a str,
    pub payload: String,
    pub rules_version: &'a str,
    pub decision: String,
}

pub(super) struct TimerRow<'a> {
    pub issue_id: &'a str,
    pub due: i64,
    pub event: String,
}

/// A message (or a webhook's event) to queue, once: a row whose `dedupe_key` is stored already
/// is skipped.
pub(super) struct OutboxInsert<'a> {
    pub dedupe_key: String,
    pub issue_id: &'a str,
    pub event_seq: i64,
    pub kind: &'a str,
    pub person: String,
    pub channel: &'a str,
    pub address: String,
    pub template: String,
    pub locale: String,
    pub vars: String,
    pub at: i64,
    pub urgent: bool,
}

pub(super) struct AssignmentRow<'a> {
    pub department: &'a str,
    pub issue_id: &'a str,
    pub lead: bool,
}

pub(super) struct EvaluationRow<'a> {
    pub issue_id: &'a str,
    pub event_seq: i64,
    pub rating: i64,
    pub comment: &'a str,
    pub department: Option<&'a str>,
    pub actor: &'a str,
    pub at: i64,
}

/// The tables whose rows of an issue a decision replaces.
#[derive(Clone, Copy)]
pub(super) enum Replaced {
    Timers,
    Assignments,
}

impl Replaced {
    pub(super) fn table(self) -> &'static str {
        match self {
            Replaced::Timers => "timers",
            Replaced::Assignments => "assignments",
        }
    }
}

/// The statements a batch needs, inside one transaction. Each takes every row of its kind in
/// the batch: statements per batch, not per issue, is the throughput.
pub(super) trait Executor: Send {
    /// The stored idempotency keys among `keys`: key, then the request's hash and the issue.
    fn known_keys(
        &mut self,
        keys: &[&str],
    ) -> impl Future<Output = sqlx::Result<HashMap<String, (String, String)>>> + Send;
    fn issue(&mut self, id: &str) -> impl Future<Output = Result<Option<StoredIssue>>> + Send;
    /// Stores the keys not stored yet; returns those it stored.
    fn claim_keys(
        &mut self,
        rows: &[KeyRow<'_>],
    ) -> impl Future<Output = sqlx::Result<HashSet<String>>> + Send;
    fn insert_issues(
        &mut self,
        rows: &[IssueRow<'_>],
    ) -> impl Future<Output = sqlx::Result<()>> + Send;
    /// The fences of those of `timers` still pending.
    fn fences(
        &mut self,
        timers: &[i64],
    ) -> impl Future<Output = sqlx::Result<HashMap<i64, i64>>> + Send;
    /// Writes each update whose issue is still at its version (and whose firing's timer still
    /// carries its fence); returns the ids written.
    fn update_issues(
        &mut self,
        rows: &[IssueUpdate<'_>],
    ) -> impl Future<Output = sqlx::Result<HashSet<String>>> + Send;
    /// Inserts the events (one per issue) and returns each issue's event sequence number.
    fn insert_events(
        &mut self,
        rows: &[EventRow<'_>],
    ) -> impl Future<Output = sqlx::Result<HashMap<String, i64>>> + Send;
    fn delete_of_issues(
        &mut self,
        table: Replaced,
        issues: &[&str],
    ) -> impl Future<Output = sqlx::Result<()>> + Send;
    fn insert_timers(
        &mut self,
        rows: &[TimerRow<'_>],
    ) -> impl Future<Output = sqlx::Result<()>> + Send;
    fn insert_outbox(
        &mut self,
        rows: &[OutboxInsert<'_>],
    ) -> impl Future<Output = sqlx::Result<()>> + Send;
    fn insert_assignments(
        &mut self,
        rows: &[AssignmentRow<'_>],
    ) -> impl Future<Output = sqlx::Result<()>> + Send;
    /// Puts an issue on the agenda of the scheduled meeting of its kind at its time, creating
    /// the meeting if this is its first issue, and adds the call's participants and departments.
    fn convene(
        &mut self,
        issue_id: &str,
        seq: i64,
        call: &MeetingCall,
        at: i64,
    ) -> impl Future<Output = sqlx::Result<()>> + Send;
    fn insert_evaluation(
        &mut self,
        row: &EvaluationRow<'_>,
    ) -> impl Future<Output = sqlx::Result<()>> + Send;
    /// Marks a meeting's agenda item of an issue done by the event `seq`.
    fn mark_agenda(
        &mut self,
        meeting: i64,
        issue_id: &str,
        seq: i64,
    ) -> impl Future<Output = sqlx::Result<()>> + Send;
    fn commit(self) -> impl Future<Output = sqlx::Result<()>> + Send;
}

/// Merges `new` names into a JSON list of names, keeping the order of first appearance.
pub(super) fn merge_names(stored: &str, new: &[String]) -> String {
    let mut all: Vec<String> = serde_json::from_str(stored).unwrap_or_default();
    for n in new {
        if !all.contains(n) {
            all.push(n.clone());
        }
    }
    json(&all)
}

fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("plain data serialises")
}

fn millis(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

/// The group commit: takes every write waiting, runs them in one transaction, commits once, and
/// only then answers each. The commit's flush is the cost of a write; sharing it is the
/// throughput.
async fn group_commit<B: Begin>(
    backend: B,
    mut jobs: mpsc::Receiver<Job>,
    webhooks: std::sync::Arc<std::sync::atomic::AtomicBool>,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while jobs.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let webhooks = webhooks.load(std::sync::atomic::Ordering::Acquire);
        let outcome = run_batch(&backend, &batch, webhooks).await;
        for (job, result) in batch.drain(..).zip(outcome) {
            match (job, result) {
                (Job::Create { reply, .. }, Done::Created(r)) => {
                    let _ = reply.send(*r);
                }
                (Job::Apply { reply, .. }, Done::Applied(r)) => {
                    let _ = reply.send(r);
                }
                (Job::Create { reply, .. }, Done::Failed(e)) => {
                    let _ = reply.send(Err(e));
                }
                (Job::Apply { reply, .. }, Done::Failed(e)) => {
                    let _ = reply.send(Err(e));
                }
                _ => unreachable!("outcomes follow their jobs"),
            }
        }
    }
}

/// Runs a batch in one transaction; on any database error or a failed commit every write of it
/// fails, and nothing of it is stored. A transient abort is tried again.
async fn run_batch<B: Begin>(backend: &B, batch: &[Job], webhooks: bool) -> Vec<Done> {
    let started = Instant::now();
    let mut attempt = 0;
    loop {
        attempt += 1;
        let result = async {
            let mut tx = backend.begin().await?;
            let out = write_batch(&mut tx, batch, webhooks).await?;
            tx.commit().await?;
            Ok::<_, sqlx::Error>(out)
        }
        .await;
        match result {
            Ok(out) => {
                crate::metrics::committed(batch.len(), started.elapsed().as_secs_f64());
                return out;
            }
            Err(e) if attempt < ATTEMPTS && B::transient(&e) => {
                tracing::warn!(error = %e, attempt, "a batch of writes was aborted; trying again");
            }
            Err(e) => {
                return (0..batch.len())
                    .map(|_| {
                        Done::Failed(StoreError::Db(sqlx::Error::Protocol(format!(
                            "commit failed: {e}"
                        ))))
                    })
                    .collect();
            }
        }
    }
}

/// The state before a report.
static NO_STATE: std::sync::LazyLock<IssueState> = std::sync::LazyLock::new(IssueState::default);

/// What one job of a batch writes, once its checks passed.
struct Write<'a> {
    job: usize,
    issue_id: &'a str,
    event: &'a Event,
    /// The state the decision was made on.
    before: &'a IssueState,
    decision: &'a Decision,
    at: DateTime<Utc>,
    actor: &'a str,
    /// The meeting whose outcome this event is, if it is one.
    agenda: Option<i64>,
}

/// The answer to a create whose key is stored already: the first issue, replayed, or
/// `KeyReused` if this request differs from the first.
async fn keyed_answer<E: Executor>(
    tx: &mut E,
    key: &str,
    hash: &str,
    first: &(String, String),
) -> sqlx::Result<Done> {
    let (first_hash, id) = first;
    if first_hash != hash {
        return Ok(Done::Failed(StoreError::KeyReused(key.to_string())));
    }
    Ok(match tx.issue(id).await {
        Ok(Some(first)) => Done::Created(Box::new(Ok(Submitted {
            issue: first,
            replayed: true,
        }))),
        Ok(None) => Done::Failed(StoreError::Corrupt(format!(
            "idempotency key names missing issue {id}"
        ))),
        Err(StoreError::Db(e)) => return Err(e),
        Err(e) => Done::Failed(e),
    })
}

/// The writes of a batch. Checks that refuse one job (a reused idempotency key, a version
/// conflict) come first and write nothing for it. With `webhooks`, every event is queued for the
/// webhook as well.
async fn write_batch<E: Executor>(
    tx: &mut E,
    batch: &[Job],
    webhooks: bool,
) -> sqlx::Result<Vec<Done>> {
    let mut out: Vec<Option<Done>> = batch.iter().map(|_| None).collect();

    // Idempotency keys already stored, then a key repeated within the batch.
    let keys: Vec<&str> = batch
        .iter()
        .filter_map(|j| match j {
            Job::Create {
                idempotency: Some((k, _)),
                ..
            } => Some(k.as_str()),
            _ => None,
        })
        .collect();
    let known = if keys.is_empty() {
        HashMap::new()
    } else {
        tx.known_keys(&keys).await?
    };
    let mut first_with_key: HashMap<&str, usize> = HashMap::new();
    let mut replays: Vec<(usize, usize)> = Vec::new();
    let mut creates: Vec<Write> = Vec::new();
    let mut applies: Vec<(Write, i64, Option<Firing>)> = Vec::new();
    let mut applying: HashSet<&str> = HashSet::new();
    for (i, job) in batch.iter().enumerate() {
        match job {
            Job::Create {
                issue,
                decision,
                at,
                actor,
                idempotency,
                ..
            } => {
                if let Some((key, hash)) = idempotency {
                    if let Some(first) = known.get(key) {
                        out[i] = Some(keyed_answer(tx, key, hash, first).await?);
                        continue;
                    }
                    if let Some(&j) = first_with_key.get(key.as_str()) {
                        match &batch[j] {
                            Job::Create {
                                idempotency: Some((_, h)),
                                ..
                            } if h == hash => replays.push((i, j)),
                            _ => out[i] = Some(Done::Failed(StoreError::KeyReused(key.clone()))),
                        }
                        continue;
                    }
                    first_with_key.insert(key, i);
                }
                creates.push(Write {
                    job: i,
                    issue_id: &issue.id,
                    event: &Event::Reported,
                    before: &NO_STATE,
                    decision,
                    at: *at,
                    actor,
                    agenda: None,
                });
            }
            Job::Apply {
                id,
                version,
                before,
                event,
                decision,
                at,
                actor,
                agenda,
                firing,
                ..
            } => {
                // One change per issue and batch: a second one read the same version.
                if !applying.insert(id.as_str()) {
                    out[i] = Some(Done::Applied(Err(StoreError::Conflict(id.clone()))));
                    continue;
                }
                applies.push((
                    Write {
                        job: i,
                        issue_id: id,
                        event,
                        before,
                        decision,
                        at: *at,
                        actor,
                        agenda: *agenda,
                    },
                    *version,
                    *firing,
                ));
            }
        }
    }

    // The keys, before their issues: a key another writer stored since it was read (another
    // replica's batch) is not this batch's, and its request is answered as a replay.
    let key_of = |w: &Write| match &batch[w.job] {
        Job::Create {
            idempotency: Some((k, h)),
            ..
        } => Some((k.as_str(), h.as_str())),
        _ => None,
    };
    let key_rows: Vec<KeyRow> = creates
        .iter()
        .filter_map(|w| {
            key_of(w).map(|(key, hash)| KeyRow {
                key,
                hash,
                issue_id: w.issue_id,
                at: millis(w.at),
            })
        })
        .collect();
    if !key_rows.is_empty() {
        let claimed = tx.claim_keys(&key_rows).await?;
        if claimed.len() < key_rows.len() {
            let lost: Vec<&str> = key_rows
                .iter()
                .map(|r| r.key)
                .filter(|k| !claimed.contains(*k))
                .collect();
            let first = tx.known_keys(&lost).await?;
            let mut kept = Vec::with_capacity(creates.len());
            for w in creates {
                match key_of(&w) {
                    Some((key, hash)) if !claimed.contains(key) => {
                        out[w.job] = Some(match first.get(key) {
                            Some(f) => keyed_answer(tx, key, hash, f).await?,
                            None => Done::Failed(StoreError::Corrupt(format!(
                                "idempotency key {key} neither stored nor known"
                            ))),
                        });
                    }
                    _ => kept.push(w),
                }
            }
            creates = kept;
        }
    }

    // New issues.
    let rows: Vec<IssueRow> = creates
        .iter()
        .map(|w| {
            let Job::Create { issue, branch, .. } = &batch[w.job] else {
                unreachable!("creates come from create jobs")
            };
            let s = &w.decision.next;
            IssueRow {
                id: &issue.id,
                body: json(issue),
                state: json(s),
                status: s.state.as_str(),
                category: &issue.category,
                unit: &issue.unit,
                department: s.departments.first().map(String::as_str),
                tier: s.tier.as_deref(),
                at: millis(w.at),
                branch,
                acknowledge_by: s.promised(DeadlineKind::Acknowledge).map(millis),
                resolve_by: s.promised(DeadlineKind::Resolve).map(millis),
                reporter: issue.reporter.as_deref(),
                request_kind: s.request.as_ref().map(|r| r.kind.as_str()),
                request_by: s.request.as_ref().and_then(|r| r.decide_by).map(millis),
            }
        })
        .collect();
    if !rows.is_empty() {
        tx.insert_issues(&rows).await?;
    }

    // Changed issues, guarded by the version each was read at: an issue that is not written
    // changed since, and its job is decided again.
    let updates: Vec<IssueUpdate> = applies
        .iter()
        .map(|(w, version, firing)| {
            let s = &w.decision.next;
            IssueUpdate {
                id: w.issue_id,
                version: *version,
                firing: *firing,
                state: json(s),
                status: s.state.as_str(),
                department: s.departments.first().map(String::as_str),
                tier: s.tier.as_deref(),
                at: millis(w.at),
                acknowledge_by: s.promised(DeadlineKind::Acknowledge).map(millis),
                resolve_by: s.promised(DeadlineKind::Resolve).map(millis),
                request_kind: s.request.as_ref().map(|r| r.kind.as_str()),
                request_by: s.request.as_ref().and_then(|r| r.decide_by).map(millis),
            }
        })
        .collect();
    let changed = if updates.is_empty() {
        HashSet::new()
    } else {
        tx.update_issues(&updates).await?
    };
    // A firing not written lost its claim when its timer is gone or carries another fence;
    // anything else not written met a newer version of its issue.
    let lapsed: Vec<i64> = applies
        .iter()
        .filter(|(w, _, _)| !changed.contains(w.issue_id))
        .filter_map(|(_, _, f)| f.map(|f| f.timer))
        .collect();
    let fences = if lapsed.is_empty() {
        HashMap::new()
    } else {
        tx.fences(&lapsed).await?
    };
    let mut writes = creates;
    for (w, _, firing) in applies {
        if changed.contains(w.issue_id) {
            writes.push(w);
        } else {
            let id = w.issue_id.to_string();
            let lost = firing.is_some_and(|f| fences.get(&f.timer) != Some(&f.fence));
            out[w.job] = Some(Done::Applied(Err(if lost {
                StoreError::LeaseLost(id)
            } else {
                StoreError::Conflict(id)
            })));
        }
    }
    if writes.is_empty() {
        return Ok(answers(out, replays));
    }

    // The events; each issue has one in the batch, so its sequence number is found by issue.
    let events: Vec<EventRow> = writes
        .iter()
        .map(|w| EventRow {
            issue_id: w.issue_id,
            at: millis(w.at),
            actor: w.actor,
            kind: w.event.name(),
            payload: json(w.event),
            rules_version: &w.decision.rules_version,
            decision: json(w.decision),
        })
        .collect();
    let seqs = tx.insert_events(&events).await?;
    let seq_of = |w: &Write| -> sqlx::Result<i64> {
        seqs.get(w.issue_id).copied().ok_or_else(|| {
            sqlx::Error::Protocol(format!("no event sequence returned for {}", w.issue_id))
        })
    };

    // A decision's timers and assignments replace the issue's (a new issue has none).
    let existing: Vec<&str> = writes
        .iter()
        .filter(|w| *w.event != Event::Reported)
        .map(|w| w.issue_id)
        .collect();
    if !existing.is_empty() {
        tx.delete_of_issues(Replaced::Timers, &existing).await?;
    }
    let timers: Vec<TimerRow> = writes
        .iter()
        .flat_map(|w| {
            w.decision.timers.iter().map(move |t| TimerRow {
                issue_id: w.issue_id,
                due: millis(t.at),
                event: json(&t.event),
            })
        })
        .collect();
    if !timers.is_empty() {
        tx.insert_timers(&timers).await?;
    }

    // The messages, each once: the dedupe key is the issue, event, recipient, channel and
    // template. With a webhook, every event too: its JSON, signed and posted as it is stored
    // here.
    let mut outbox = Vec::new();
    for w in &writes {
        let seq = seq_of(w)?;
        outbox.extend(w.decision.messages.iter().map(|m| OutboxInsert {
            dedupe_key: format!(
                "{}/{seq}/{}/{}/{}",
                w.issue_id,
                m.to,
                m.channel.as_str(),
                m.template
            ),
            issue_id: w.issue_id,
            event_seq: seq,
            kind: m.kind,
            person: m.to.to_string(),
            channel: m.channel.as_str(),
            address: m.address.to_string(),
            template: m.template.to_string(),
            locale: m.locale.to_string(),
            vars: json(&m.vars),
            at: millis(w.at),
            urgent: m.urgent,
        }));
        if webhooks {
            let mut effects = w.decision.effects.clone();
            effects.complete(w.before, w.decision);
            let body = serde_json::json!({
                "issue_id": w.issue_id,
                "seq": seq,
                "kind": w.event.name(),
                "at": w.at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                "actor": w.actor,
                "payload": w.event,
                "rules_version": &*w.decision.rules_version,
                "effects": effects,
            });
            outbox.push(OutboxInsert {
                dedupe_key: format!("{}/{seq}/webhook", w.issue_id),
                issue_id: w.issue_id,
                event_seq: seq,
                kind: w.event.name(),
                person: String::new(),
                channel: "webhook",
                address: String::new(),
                template: String::new(),
                locale: String::new(),
                vars: body.to_string(),
                at: millis(w.at),
                urgent: false,
            });
        }
    }
    if !outbox.is_empty() {
        tx.insert_outbox(&outbox).await?;
    }

    // The current assignments of every issue written.
    if !existing.is_empty() {
        tx.delete_of_issues(Replaced::Assignments, &existing)
            .await?;
    }
    let assigned: Vec<AssignmentRow> = writes
        .iter()
        .flat_map(|w| {
            w.decision
                .next
                .departments
                .iter()
                .enumerate()
                .map(move |(i, d)| AssignmentRow {
                    department: d,
                    issue_id: w.issue_id,
                    lead: i == 0,
                })
        })
        .collect();
    if !assigned.is_empty() {
        tx.insert_assignments(&assigned).await?;
    }

    // Meetings convened, evaluations, and agenda items an outcome was applied to: rare, a row
    // at a time.
    for w in &writes {
        let seq = seq_of(w)?;
        for call in &w.decision.meetings {
            tx.convene(w.issue_id, seq, call, millis(w.at)).await?;
        }
        if let Event::Evaluated { rating, comment } = w.event {
            tx.insert_evaluation(&EvaluationRow {
                issue_id: w.issue_id,
                event_seq: seq,
                rating: i64::from(*rating),
                comment,
                department: w.decision.next.departments.first().map(String::as_str),
                actor: w.actor,
                at: millis(w.at),
            })
            .await?;
        }
        if let Some(meeting) = w.agenda {
            tx.mark_agenda(meeting, w.issue_id, seq).await?;
        }
    }

    for w in &writes {
        out[w.job] = Some(match &batch[w.job] {
            Job::Create { issue, .. } => Done::Created(Box::new(Ok(Submitted {
                issue: StoredIssue {
                    issue: issue.clone(),
                    state: w.decision.next.clone(),
                    version: 1,
                },
                replayed: false,
            }))),
            Job::Apply { .. } => Done::Applied(Ok(seq_of(w)?)),
        });
    }
    Ok(answers(out, replays))
}

/// Every job's answer: a key repeated within the batch answers what its first use got.
fn answers(mut out: Vec<Option<Done>>, replays: Vec<(usize, usize)>) -> Vec<Done> {
    for (i, j) in replays {
        let first = match &out[j] {
            Some(Done::Created(r)) => match &**r {
                Ok(s) => Done::Created(Box::new(Ok(Submitted {
                    issue: s.issue.clone(),
                    replayed: true,
                }))),
                Err(e) => Done::Failed(StoreError::Corrupt(format!(
                    "the first request with this key failed: {e}"
                ))),
            },
            Some(Done::Failed(StoreError::KeyReused(k))) => {
                Done::Failed(StoreError::KeyReused(k.clone()))
            }
            _ => Done::Failed(StoreError::Corrupt(
                "the first request with this key has no answer".into(),
            )),
        };
        out[i] = Some(first);
    }
    out.into_iter()
        .map(|d| d.expect("every job of a batch is answered"))
        .collect()
}
