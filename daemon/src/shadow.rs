//! Shadow rules: a candidate rule set that decides every live event beside the live rules, on
//! the same issue, state, event and instant, after the live decision has committed and off the
//! request's path. Nothing it decides has any effect; where it decides differently the
//! difference is stored, and summarised by kind with example issues.
//!
//! The live path only offers each event to a bounded queue: when the shadow falls behind, the
//! event is counted as dropped, never waited for.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use chrono::{DateTime, Utc};
use escalade_rules::{Decision, Event, Issue, IssueState, RuleSet};
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::engine::Engine;
use crate::store::{ShadowDiff, ShadowSummary};

/// Events waiting for the shadow at most; more are dropped (and counted).
const QUEUE: usize = 8192;
/// Events decided and written together.
const BATCH: usize = 256;

/// One live event, as the shadow decides it again.
pub struct Offer {
    pub issue: Issue,
    /// The state the live decision found.
    pub state: IssueState,
    pub event: Event,
    pub at: DateTime<Utc>,
    /// The live decision.
    pub live: Decision,
}

/// A running shadow: its rules, and the queue to its worker.
pub struct Shadow {
    pub run: i64,
    pub rules: Arc<RuleSet>,
    pub dir: String,
    tx: mpsc::Sender<Offer>,
    dropped: Arc<AtomicI64>,
}

impl Shadow {
    /// Starts a shadow of `rules` (from `dir`): records the run and spawns its worker, which
    /// ends once the shadow is dropped and its queue drained.
    pub async fn start(
        engine: Arc<Engine>,
        rules: Arc<RuleSet>,
        dir: String,
        by: &str,
    ) -> Result<Shadow, crate::store::StoreError> {
        let now = engine.now();
        let run = engine
            .store()
            .start_shadow(&rules.version, &dir, by, now)
            .await?;
        let (tx, rx) = mpsc::channel(QUEUE);
        let dropped = Arc::new(AtomicI64::new(0));
        tokio::spawn(work(engine, rules.clone(), run, rx, dropped.clone()));
        Ok(Shadow {
            run,
            rules,
            dir,
            tx,
            dropped,
        })
    }

    /// Runs `rules` (from `dir`) beside the live rules, replacing shadow rules that ran (their
    /// run is recorded as stopped). What `PUT /api/v1/rules/shadow` and the console both do.
    pub async fn replace(
        engine: &Arc<Engine>,
        rules: Arc<RuleSet>,
        dir: String,
        by: &str,
    ) -> Result<Arc<Shadow>, crate::store::StoreError> {
        let started = Arc::new(Shadow::start(engine.clone(), rules, dir, by).await?);
        if let Some(old) = engine.set_shadow(Some(started.clone())) {
            engine.store().stop_shadow(old.run, engine.now()).await?;
        }
        tracing::info!(version = %&started.rules.version[..16], run = started.run, "shadow rules started");
        Ok(started)
    }

    /// Stops the shadow rules that run, if any (their differences stay readable): their run.
    pub async fn stop(engine: &Engine) -> Result<Option<i64>, crate::store::StoreError> {
        let stopped = engine.set_shadow(None);
        if let Some(old) = &stopped {
            engine.store().stop_shadow(old.run, engine.now()).await?;
        }
        Ok(stopped.map(|o| o.run))
    }

    /// Offers a live event; never waits.
    pub fn offer(&self, o: Offer) {
        if self.tx.try_send(o).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Decides offered events in batches on a blocking thread, and writes the batch's differences
/// and counts in one transaction.
async fn work(
    engine: Arc<Engine>,
    rules: Arc<RuleSet>,
    run: i64,
    mut rx: mpsc::Receiver<Offer>,
    dropped: Arc<AtomicI64>,
) {
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        if rx.recv_many(&mut batch, BATCH).await == 0 {
            break;
        }
        let offers = std::mem::take(&mut batch);
        let compared = offers.len() as i64;
        let rs = rules.clone();
        let diffs = match tokio::task::spawn_blocking(move || {
            offers
                .iter()
                .filter_map(|o| compare(&rs, o))
                .collect::<Vec<_>>()
        })
        .await
        {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(error = %e, "shadow rules: a batch did not finish");
                continue;
            }
        };
        let lost = dropped.swap(0, Ordering::Relaxed);
        if let Err(e) = engine
            .store()
            .record_shadow(run, compared, lost, &diffs)
            .await
        {
            tracing::error!(error = %e, "shadow rules: their differences were not stored");
        }
    }
    let lost = dropped.swap(0, Ordering::Relaxed);
    if lost > 0 {
        let _ = engine.store().record_shadow(run, 0, lost, &[]).await;
    }
}

/// What a decision did, as far as a difference is reported.
#[derive(Debug, PartialEq, Serialize)]
struct Gist {
    state: &'static str,
    departments: Vec<String>,
    tier: Option<String>,
    acknowledge_by: Option<DateTime<Utc>>,
    resolve_by: Option<DateTime<Utc>>,
    triage: bool,
    meetings: Vec<String>,
    /// `person channel template`, sorted.
    messages: Vec<String>,
}

fn gist(d: &Decision) -> Gist {
    let mut messages: Vec<String> = d
        .messages
        .iter()
        .map(|m| format!("{} {} {}", m.to, m.channel.as_str(), m.template))
        .collect();
    messages.sort();
    Gist {
        state: d.next.state.as_str(),
        departments: d.next.departments.clone(),
        tier: d.next.tier.clone(),
        acknowledge_by: d.next.acknowledge_by,
        resolve_by: d.next.resolve_by,
        triage: d.triage.is_some(),
        meetings: d.meetings.iter().map(|m| m.meeting.clone()).collect(),
        messages,
    }
}

/// The live decision against the shadow's, on the same input: `None` when they agree.
fn compare(rules: &RuleSet, o: &Offer) -> Option<ShadowDiff> {
    let live = gist(&o.live);
    let (kinds, shadow): (Vec<&'static str>, Value) =
        match rules.decide(&o.issue, &o.state, &o.event, o.at) {
            Err(refusal) => (vec!["refused"], json!({ "refused": refusal.to_string() })),
            Ok(d) => {
                let s = gist(&d);
                let mut kinds = Vec::new();
                if s.departments != live.departments {
                    kinds.push("route");
                }
                if (s.acknowledge_by, s.resolve_by) != (live.acknowledge_by, live.resolve_by) {
                    kinds.push("deadlines");
                }
                if s.tier != live.tier {
                    kinds.push("tier");
                }
                if s.state != live.state {
                    kinds.push("state");
                }
                if s.triage != live.triage {
                    kinds.push("triage");
                }
                if s.meetings != live.meetings {
                    kinds.push("meetings");
                }
                if s.messages != live.messages {
                    kinds.push("messages");
                }
                (
                    kinds,
                    serde_json::to_value(&s).expect("plain data serialises"),
                )
            }
        };
    if kinds.is_empty() {
        return None;
    }
    Some(ShadowDiff {
        issue: o.issue.id.clone(),
        event: o.event.name().to_string(),
        at: o.at,
        kinds: kinds.into_iter().map(str::to_string).collect(),
        live: serde_json::to_value(&live).expect("plain data serialises"),
        shadow,
    })
}

/// The summary as `escalade rules shadow` prints it.
pub fn render_summary(s: &ShadowSummary) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "shadow rules {} from {} (run {}), since {}{}",
        &s.version[..16.min(s.version.len())],
        s.dir,
        s.run,
        s.started_at
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        match s.stopped_at {
            Some(t) => format!(
                ", stopped {}",
                t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ),
            None => String::new(),
        }
    );
    let _ = writeln!(
        out,
        "{} events compared, {} decided differently, {} dropped",
        s.compared, s.differing, s.dropped
    );
    for k in &s.by_kind {
        let _ = writeln!(
            out,
            "  {}: {} events (issues {})",
            k.kind,
            k.count,
            k.examples.join(", ")
        );
    }
    out
}
