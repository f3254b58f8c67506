//! Delivery of the outbox: email over SMTP, SMS through an HTTP gateway and a signed webhook of
//! every event, with retries, quiet hours and digests.
//!
//! A few worker tasks per configured channel each loop: claim a batch of due rows with a lease
//! (one statement: the rows become `sending` until the lease ends), render and send them, then
//! settle the batch in one statement: `sent`; `queued` again with an exponential, jittered
//! backoff after a transient failure; `dead` after a permanent one or too many attempts; or
//! `queued` until later, not counted as an attempt, when quiet hours or a digest window hold
//! it (the row is then due when the hold ends); `stale`, not sent and not an attempt, when it
//! was due longer ago than the channel's `stale_after` (a backlog that waited for its channel to
//! be configured, or for a relay to come back, does not all go out late: it is logged, listed,
//! and each row may be retried by hand). A worker that dies mid-send leaves its rows `sending`;
//! once the lease ends they are due again and sent again: delivery is **at least once** (an
//! email keeps its Message-ID, an SMS and a webhook call their row's id, so a receiver can drop
//! a repeat).
//!
//! Time comes from the engine's clock: `run_once(route, now)` is one pass at `now`, what the
//! loop calls and what tests call on a manual clock.

pub mod config;
mod email;
pub mod sms;
pub mod webhook;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use escalade_rules::decide::MessageVars;
use escalade_rules::jobs::Named;
use escalade_rules::notify::{DigestItem, DigestVars, sms_segments};
use escalade_rules::template::{KINDS, REPORT_KINDS, Rendered};
use escalade_rules::{Channel, Issue, IssueState, Message, RuleSet};
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::engine::Engine;
use crate::links::Links;
use crate::store::{Claimed, OutboxRow, Settlement, StoreError};

pub use config::{DeliveryConfig, SmsConfig, SmtpConfig, WebhookConfig};
pub use email::Email;

/// A delivery channel: the outbox's `channel` column.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Route {
    Email,
    Sms,
    Webhook,
}

impl Route {
    pub const ALL: [Route; 3] = [Route::Email, Route::Sms, Route::Webhook];

    pub fn as_str(self) -> &'static str {
        match self {
            Route::Email => "email",
            Route::Sms => "sms",
            Route::Webhook => "webhook",
        }
    }

    /// The rules' channel, for quiet hours (the webhook is never held).
    fn channel(self) -> Option<Channel> {
        match self {
            Route::Email => Some(Channel::Email),
            Route::Sms => Some(Channel::Sms),
            Route::Webhook => None,
        }
    }
}

/// Why a send failed.
#[derive(Clone, Debug)]
pub enum Failure {
    /// It may pass later (no connection, a timeout, SMTP 4xx, HTTP 5xx, 408 or 429); `after`:
    /// the server asked to wait at least that long.
    Transient {
        error: String,
        after: Option<Duration>,
    },
    /// It never will (SMTP 5xx, HTTP 4xx, a bad address, a template that fails).
    Permanent(String),
}

/// What one pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pass {
    pub claimed: usize,
    /// Of those, taken over from a claim that lapsed mid-send: each may go out a second time.
    pub taken_over: usize,
    pub sent: usize,
    pub retried: usize,
    pub dead: usize,
    /// Held for quiet hours or a digest window.
    pub held: usize,
    /// Digest emails sent (each counts its rows in `sent`).
    pub digests: usize,
    /// Made stale: due longer ago than the channel's `stale_after`.
    pub stale: usize,
    /// When the oldest of them was due.
    pub oldest_stale: Option<DateTime<Utc>>,
}

impl std::ops::AddAssign for Pass {
    fn add_assign(&mut self, o: Pass) {
        self.claimed += o.claimed;
        self.taken_over += o.taken_over;
        self.sent += o.sent;
        self.retried += o.retried;
        self.dead += o.dead;
        self.held += o.held;
        self.digests += o.digests;
        self.stale += o.stale;
        self.oldest_stale = match (self.oldest_stale, o.oldest_stale) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
}

/// The delivery workers' shared state: the configured channels and the engine (for the store,
/// the rules and the clock).
pub struct Delivery {
    engine: Arc<Engine>,
    cfg: DeliveryConfig,
    email: Option<Lane<email::Email>>,
    sms: Option<Lane<sms::Sms>>,
    webhook: Option<Lane<webhook::Webhook>>,
    /// Acknowledgement links put in messages, when configured.
    links: Option<Arc<Links>>,
}

/// A configured channel: its sender, its workers, how long a claim holds a batch and how long
/// after it was due a message is still sent.
struct Lane<T> {
    sender: Arc<T>,
    workers: usize,
    lease: Duration,
    stale_after: Duration,
}

impl<T> Lane<T> {
    /// The configured lease, plus the time a whole batch may take: its sends in rounds of
    /// `concurrency`, each up to `timeout`, and `paced` (a rate limit's spacing). Its
    /// `stale_after`, else the policy's.
    fn new(
        sender: T,
        workers: usize,
        cfg: &DeliveryConfig,
        concurrency: usize,
        timeout: Duration,
        paced: Duration,
        stale_after: Option<config::Dur>,
    ) -> Lane<T> {
        let rounds = cfg.batch.div_ceil(concurrency.max(1)) as u32;
        Lane {
            sender: Arc::new(sender),
            workers,
            lease: cfg.lease.0 + timeout * rounds + paced,
            stale_after: stale_after.unwrap_or(cfg.stale_after).0,
        }
    }
}

/// One email to send: a message, or a digest of several rows to one person.
struct Outgoing {
    rows: Vec<OutboxRow>,
    address: String,
    name: Option<String>,
    rendered: Rendered,
    message_id: String,
}

impl Delivery {
    /// The channels `cfg` configures (checked by `Config::load`).
    pub fn new(engine: Arc<Engine>, cfg: &crate::config::Config) -> Result<Delivery, String> {
        let d = &cfg.delivery;
        let email = match &cfg.smtp {
            Some(c) => Some(Lane::new(
                email::Email::new(c)?,
                c.workers,
                d,
                c.pool as usize,
                c.timeout.0,
                Duration::ZERO,
                c.stale_after,
            )),
            None => None,
        };
        let sms = match &cfg.sms {
            Some(c) => {
                let sender = sms::Sms::new(c)?;
                let paced = sender
                    .limit
                    .as_ref()
                    .map_or(Duration::ZERO, |l| l.span(d.batch));
                Some(Lane::new(
                    sender,
                    c.workers,
                    d,
                    c.concurrency,
                    c.timeout.0,
                    paced,
                    c.stale_after,
                ))
            }
            None => None,
        };
        let webhook = match &cfg.webhook {
            Some(c) => Some(Lane::new(
                webhook::Webhook::new(c)?,
                c.workers,
                d,
                c.concurrency,
                c.timeout.0,
                Duration::ZERO,
                c.stale_after,
            )),
            None => None,
        };
        Ok(Delivery {
            engine,
            cfg: d.clone(),
            email,
            sms,
            webhook,
            links: cfg.links.as_ref().map(|l| Arc::new(Links::new(l))),
        })
    }

    /// The mailer of the email channel, if SMTP is configured: for an email sent at once
    /// rather than through the outbox (a console invitation).
    pub fn mailer(&self) -> Option<Arc<Email>> {
        self.email.as_ref().map(|l| l.sender.clone())
    }

    /// The acknowledgement links messages carry, if configured: what the `/ack` routes check.
    pub fn links(&self) -> Option<Arc<Links>> {
        self.links.clone()
    }

    pub fn configured(&self, route: Route) -> bool {
        self.workers(route) > 0
    }

    fn workers(&self, route: Route) -> usize {
        match route {
            Route::Email => self.email.as_ref().map_or(0, |l| l.workers),
            Route::Sms => self.sms.as_ref().map_or(0, |l| l.workers),
            Route::Webhook => self.webhook.as_ref().map_or(0, |l| l.workers),
        }
    }

    /// How long a claim holds its rows: long enough for the whole batch to be sent, so a row is
    /// claimed again only when its worker died.
    fn lease(&self, route: Route) -> Duration {
        match route {
            Route::Email => self.email.as_ref().map(|l| l.lease),
            Route::Sms => self.sms.as_ref().map(|l| l.lease),
            Route::Webhook => self.webhook.as_ref().map(|l| l.lease),
        }
        .unwrap_or(self.cfg.lease.0)
    }

    /// How long after it was due a message of `route` is still sent.
    pub fn stale_after(&self, route: Route) -> Duration {
        match route {
            Route::Email => self.email.as_ref().map(|l| l.stale_after),
            Route::Sms => self.sms.as_ref().map(|l| l.stale_after),
            Route::Webhook => self.webhook.as_ref().map(|l| l.stale_after),
        }
        .unwrap_or(self.cfg.stale_after.0)
    }

    /// The delay before retry `attempts + 1`: up to `backoff × 2^(attempts-1)`, capped, chosen at
    /// random below that (full jitter) but at least a second (or `backoff`, if shorter), and no
    /// sooner than the server asked.
    pub fn backoff(&self, attempts: i64, after: Option<Duration>) -> chrono::Duration {
        let base = self.cfg.backoff.0;
        let cap = self.cfg.backoff_cap.0;
        let exp = (attempts.max(1) - 1).min(30) as u32;
        let ceiling = base.saturating_mul(1u32 << exp).min(cap);
        let r = getrandom::u64().unwrap_or(u64::MAX / 2) as f64 / u64::MAX as f64;
        let floor = base.min(Duration::from_secs(1));
        let d = ceiling
            .mul_f64(r)
            .max(floor)
            .max(after.unwrap_or_default().min(cap));
        chrono::Duration::from_std(d).unwrap_or(chrono::Duration::hours(1))
    }

    /// What a failure makes of a row: a retry, or a dead letter.
    fn failed(&self, row: &OutboxRow, f: Failure, at: DateTime<Utc>) -> Settlement {
        match f {
            Failure::Permanent(error) => {
                tracing::warn!(id = row.id, channel = %row.channel, to = %row.address, %error, "dead letter");
                Settlement::Dead { error }
            }
            Failure::Transient { error, .. } if row.attempts >= self.cfg.max_attempts as i64 => {
                let error = format!("{error} (gave up after {} attempts)", row.attempts);
                tracing::warn!(id = row.id, channel = %row.channel, to = %row.address, %error, "dead letter");
                Settlement::Dead { error }
            }
            Failure::Transient { error, after } => {
                let not_before = at + self.backoff(row.attempts, after);
                tracing::info!(id = row.id, channel = %row.channel, attempts = row.attempts,
                    %not_before, %error, "send failed; retrying");
                Settlement::Retry { not_before, error }
            }
        }
    }

    /// One pass of a worker at `now`: claims a batch of `route`'s due rows, makes stale those
    /// due longer ago than `stale_after` (unless retried by hand), holds those quiet hours or a
    /// digest window hold, sends the rest and settles all of them. A channel not configured is
    /// left alone: its rows stay queued.
    pub async fn run_once(&self, route: Route, now: DateTime<Utc>) -> Result<Pass, StoreError> {
        if !self.configured(route) {
            return Ok(Pass::default());
        }
        let store = self.engine.store();
        let lease = chrono::Duration::from_std(self.lease(route))
            .unwrap_or_else(|_| chrono::Duration::hours(1));
        let claimed = store
            .claim(route.as_str(), now, now + lease, self.cfg.batch as i64)
            .await?;
        let mut pass = Pass {
            claimed: claimed.len(),
            taken_over: claimed.iter().filter(|c| c.taken_over).count(),
            ..Pass::default()
        };
        if claimed.is_empty() {
            return Ok(pass);
        }
        if pass.taken_over > 0 {
            crate::metrics::delivery_taken_over(route.as_str(), pass.taken_over);
            tracing::warn!(
                channel = route.as_str(),
                messages = pass.taken_over,
                "messages whose sending lapsed (their worker died, stopped or took longer than the lease) are sent again: each may arrive twice"
            );
        }
        let rules = self.engine.rules();
        let age = self.stale_after(route);
        let cutoff = chrono::Duration::from_std(age)
            .ok()
            .and_then(|a| now.checked_sub_signed(a));
        let mut settled = Vec::with_capacity(claimed.len());
        let mut due = Vec::with_capacity(claimed.len());
        let due_at: std::collections::HashMap<i64, DateTime<Utc>> =
            claimed.iter().map(|c| (c.row.id, c.row.due_at)).collect();
        for c in claimed {
            if let Some(cutoff) = cutoff
                && c.row.retried_at.is_none()
                && c.row.due_at < cutoff
            {
                pass.stale += 1;
                pass.oldest_stale = Some(
                    pass.oldest_stale
                        .map_or(c.row.due_at, |t| t.min(c.row.due_at)),
                );
                let error = format!(
                    "stale: due at {}, not sent within {} (stale_after); retry it to send it",
                    c.row
                        .due_at
                        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    human(age)
                );
                settled.push((c.row.id, Settlement::Stale { error }));
                continue;
            }
            match route
                .channel()
                .and_then(|ch| rules.notifications.release(ch, c.row.urgent, now))
            {
                Some(t) => settled.push((c.row.id, Settlement::Hold { not_before: t })),
                None => due.push(c),
            }
        }
        match route {
            Route::Email => {
                self.emails(&rules, due, now, &mut settled, &mut pass)
                    .await?
            }
            Route::Sms => self.texts(&rules, due, now, &mut settled).await?,
            Route::Webhook => self.events(due, now, &mut settled).await,
        }
        let at = self.settle_at(now);
        for (id, s) in &settled {
            match s {
                Settlement::Sent { .. } => {
                    pass.sent += 1;
                    let waited = due_at
                        .get(id)
                        .map_or(0.0, |d| (at - *d).num_milliseconds() as f64 / 1000.0);
                    crate::metrics::notification_sent(route.as_str(), waited);
                }
                Settlement::Retry { .. } => {
                    pass.retried += 1;
                    crate::metrics::notification_failed(route.as_str(), true);
                }
                Settlement::Dead { .. } => {
                    pass.dead += 1;
                    crate::metrics::notification_failed(route.as_str(), false);
                }
                Settlement::Hold { .. } => pass.held += 1,
                Settlement::Stale { .. } => {}
            }
        }
        store.settle(&settled, at).await?;
        Ok(pass)
    }

    /// When a pass settles: its `now`, or later if the clock moved on while it sent.
    fn settle_at(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        now.max(self.engine.now())
    }

    /// Runs passes of every configured channel at `now` until none claims anything: everything
    /// due at `now` is sent, retried later, dead, held or stale.
    pub async fn drain(&self, now: DateTime<Utc>) -> Result<Pass, StoreError> {
        let mut total = Pass::default();
        for route in Route::ALL {
            let mut tally = StaleTally::default();
            for _ in 0..100_000 {
                let p = self.run_once(route, now).await?;
                total += p;
                tally.add(&p);
                if p.claimed == 0 {
                    break;
                }
            }
            tally.flush(route, self.stale_after(route));
        }
        Ok(total)
    }

    /// Email rows: a digest per person for rows due together when the rules merge emails (a
    /// person sent an email less than the window ago waits for the window's end), else one
    /// email each.
    async fn emails(
        &self,
        rules: &Arc<RuleSet>,
        rows: Vec<Claimed>,
        now: DateTime<Utc>,
        settled: &mut Vec<(i64, Settlement)>,
        pass: &mut Pass,
    ) -> Result<(), StoreError> {
        let Some(Lane { sender, .. }) = &self.email else {
            return Ok(());
        };
        let mut groups: Vec<Vec<Claimed>> = Vec::new();
        let digest = rules
            .notifications
            .digest
            .as_ref()
            .filter(|d| d.channels.contains(&Channel::Email));
        match digest {
            None => groups.extend(rows.into_iter().map(|r| vec![r])),
            Some(d) => {
                // Urgent messages and reports go alone, at once.
                let (mergeable, alone): (Vec<Claimed>, Vec<Claimed>) = rows
                    .into_iter()
                    .partition(|c| !c.row.urgent && !is_report(c));
                groups.extend(alone.into_iter().map(|r| vec![r]));
                let persons: Vec<&str> = mergeable
                    .iter()
                    .map(|c| c.row.person.as_str())
                    .collect::<HashSet<_>>()
                    .into_iter()
                    .collect();
                let last = self.engine.store().last_emails(&persons).await?;
                let mut index: HashMap<(String, String), usize> = HashMap::new();
                let mut by_person: Vec<Vec<Claimed>> = Vec::new();
                for c in mergeable {
                    let key = (c.row.person.clone(), c.row.address.clone());
                    match index.get(&key) {
                        Some(&i) => by_person[i].push(c),
                        None => {
                            index.insert(key, by_person.len());
                            by_person.push(vec![c]);
                        }
                    }
                }
                for group in by_person {
                    match last.get(&group[0].row.person) {
                        Some(t) if *t + d.window > now => {
                            let until = *t + d.window;
                            // The window never holds a message past the deadline it names (a
                            // reminder's): such a one goes now.
                            let (pressing, held): (Vec<Claimed>, Vec<Claimed>) =
                                group.into_iter().partition(|c| {
                                    deadline_of(c).is_some_and(|at| now < at && at <= until)
                                });
                            for c in &held {
                                settled.push((c.row.id, Settlement::Hold { not_before: until }));
                            }
                            if !pressing.is_empty() {
                                tracing::debug!(person = %pressing[0].row.person, %until,
                                    messages = pressing.len(),
                                    "sent before the digest window ends: a deadline falls within it");
                                groups.push(pressing);
                            }
                        }
                        _ => groups.push(group),
                    }
                }
            }
        }

        let all: Vec<&Claimed> = groups.iter().flatten().collect();
        let mut rendered = self.render(rules, &all, Channel::Email).await?.into_iter();
        let mut outgoing = Vec::new();
        for group in &groups {
            let mut ok: Vec<(&Claimed, Rendered)> = Vec::new();
            for c in group {
                match rendered.next().expect("one rendering per row") {
                    Ok(r) => ok.push((c, r)),
                    Err(e) => {
                        settled.push((c.row.id, self.failed(&c.row, Failure::Permanent(e), now)))
                    }
                }
            }
            let single = |(c, r): (&Claimed, Rendered)| Outgoing {
                rows: vec![c.row.clone()],
                address: c.row.address.clone(),
                name: person_name(rules, &c.row.person),
                rendered: r,
                message_id: format!("escalade-{}", c.row.id),
            };
            if ok.len() < 2 {
                outgoing.extend(ok.into_iter().map(single));
                continue;
            }
            let first = &ok[0].0.row;
            let vars = DigestVars {
                recipient: Named {
                    id: first.person.clone(),
                    name: person_name(rules, &first.person).unwrap_or_default(),
                },
                messages: ok
                    .iter()
                    .map(|(_, r)| DigestItem {
                        subject: r.subject.clone().unwrap_or_default(),
                        body: r.body.clone(),
                    })
                    .collect(),
            };
            let locale =
                person_locale(rules, &first.person).unwrap_or_else(|| first.locale.clone());
            match rules.render_report("digest", &locale, Channel::Email, &vars) {
                Ok(digest) => {
                    pass.digests += 1;
                    outgoing.push(Outgoing {
                        rows: ok.iter().map(|(c, _)| c.row.clone()).collect(),
                        address: first.address.clone(),
                        name: person_name(rules, &first.person),
                        rendered: digest,
                        message_id: format!("escalade-digest-{}-{}", first.id, ok.len()),
                    });
                }
                Err(e) => {
                    tracing::warn!(person = %first.person, error = %e,
                        "the digest template failed; sending the messages one by one");
                    outgoing.extend(ok.into_iter().map(single));
                }
            }
        }

        let mut tasks = JoinSet::new();
        for (i, o) in outgoing.iter().enumerate() {
            let sender = sender.clone();
            let (address, name, rendered) = (o.address.clone(), o.name.clone(), o.rendered.clone());
            let id = o.message_id.clone();
            tasks.spawn(async move {
                let r = sender.send(&address, name.as_deref(), &rendered, &id).await;
                (i, r)
            });
        }
        let at = self.settle_at(now);
        while let Some(done) = tasks.join_next().await {
            let (i, result) = done.expect("a send task does not panic");
            for row in &outgoing[i].rows {
                settled.push((
                    row.id,
                    match &result {
                        Ok(()) => Settlement::Sent { segments: None },
                        Err(f) => self.failed(row, f.clone(), at),
                    },
                ));
            }
        }
        Ok(())
    }

    /// SMS rows: each text capped to the policy's segments and sent through the gateway.
    async fn texts(
        &self,
        rules: &Arc<RuleSet>,
        rows: Vec<Claimed>,
        now: DateTime<Utc>,
        settled: &mut Vec<(i64, Settlement)>,
    ) -> Result<(), StoreError> {
        let Some(Lane { sender, .. }) = &self.sms else {
            return Ok(());
        };
        let all: Vec<&Claimed> = rows.iter().collect();
        let rendered = self.render(rules, &all, Channel::Sms).await?;
        let mut tasks = JoinSet::new();
        for (c, r) in rows.iter().zip(rendered) {
            let r = match r {
                Ok(r) => r,
                Err(e) => {
                    settled.push((c.row.id, self.failed(&c.row, Failure::Permanent(e), now)));
                    continue;
                }
            };
            let text = rules.notifications.cap_sms(&r.body);
            let segments = sms_segments(&text).segments;
            let sender = sender.clone();
            let (id, to) = (c.row.id, c.row.address.clone());
            tasks.spawn(async move {
                let result = sender.send(id, &to, &text, segments).await;
                (id, segments, result)
            });
        }
        let rows: HashMap<i64, &OutboxRow> = rows.iter().map(|c| (c.row.id, &c.row)).collect();
        let at = self.settle_at(now);
        while let Some(done) = tasks.join_next().await {
            let (id, segments, result) = done.expect("a send task does not panic");
            settled.push((
                id,
                match result {
                    Ok(()) => {
                        tracing::debug!(id, segments, "SMS sent");
                        Settlement::Sent {
                            segments: Some(segments as i64),
                        }
                    }
                    Err(f) => self.failed(rows[&id], f, at),
                },
            ));
        }
        Ok(())
    }

    /// Webhook rows: each event's JSON, as stored.
    async fn events(
        &self,
        rows: Vec<Claimed>,
        now: DateTime<Utc>,
        settled: &mut Vec<(i64, Settlement)>,
    ) {
        let Some(Lane { sender, .. }) = &self.webhook else {
            return;
        };
        let mut tasks = JoinSet::new();
        for c in &rows {
            let sender = sender.clone();
            let (id, body) = (c.row.id, c.vars.clone());
            tasks.spawn(async move { (id, sender.send(id, &body).await) });
        }
        let rows: HashMap<i64, &OutboxRow> = rows.iter().map(|c| (c.row.id, &c.row)).collect();
        let at = self.settle_at(now);
        while let Some(done) = tasks.join_next().await {
            let (id, result) = done.expect("a send task does not panic");
            settled.push((
                id,
                match result {
                    Ok(()) => Settlement::Sent { segments: None },
                    Err(f) => self.failed(rows[&id], f, at),
                },
            ));
        }
    }

    /// Renders rows with the current rules: a message of an issue from the issue and its state
    /// right after the event, a job's report from its own variables.
    async fn render(
        &self,
        rules: &RuleSet,
        rows: &[&Claimed],
        channel: Channel,
    ) -> Result<Vec<Result<Rendered, String>>, StoreError> {
        let seqs: Vec<i64> = rows
            .iter()
            .filter(|c| !is_report(c))
            .filter_map(|c| c.row.event_seq)
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        let context = if seqs.is_empty() {
            HashMap::new()
        } else {
            self.engine.store().message_context(&seqs).await?
        };
        Ok(rows
            .iter()
            .map(|c| render_row(rules, c, channel, &context, self.links.as_deref()))
            .collect())
    }

    /// Every configured channel's workers, and a monitor that warns of rows queued on a
    /// channel that is not configured. Each stops between passes once `shutdown` turns true, so
    /// sends in flight finish and are settled; the handle ends when all have stopped.
    pub fn spawn(self: Arc<Self>, shutdown: watch::Receiver<bool>) -> tokio::task::JoinHandle<()> {
        tracing::info!(
            email = self.workers(Route::Email),
            sms = self.workers(Route::Sms),
            webhook = self.workers(Route::Webhook),
            "delivery workers started (per channel; 0: not configured)"
        );
        let mut tasks = JoinSet::new();
        for route in Route::ALL {
            for _ in 0..self.workers(route) {
                tasks.spawn(self.clone().worker(route, shutdown.clone()));
            }
        }
        tasks.spawn(self.clone().monitor(shutdown));
        tokio::spawn(async move { while tasks.join_next().await.is_some() {} })
    }

    async fn worker(self: Arc<Self>, route: Route, mut shutdown: watch::Receiver<bool>) {
        let poll = self.cfg.poll.0;
        let age = self.stale_after(route);
        let mut tally = StaleTally::default();
        loop {
            if *shutdown.borrow() {
                tally.flush(route, age);
                return;
            }
            let now = self.engine.now();
            let pass = self.run_once(route, now).await;
            if let Ok(p) = &pass {
                tally.add(p);
            }
            if !matches!(pass, Ok(Pass { claimed: 1.., .. })) || tally.overdue() {
                tally.flush(route, age);
            }
            let wait = match pass {
                Ok(p) if p.claimed > 0 => continue,
                Ok(_) => match self.engine.store().next_not_before(route.as_str()).await {
                    Ok(Some(t)) => (t - now)
                        .to_std()
                        .unwrap_or(Duration::ZERO)
                        .clamp(Duration::from_millis(10), poll),
                    _ => poll,
                },
                Err(e) => {
                    tracing::error!(channel = route.as_str(), error = %e, "delivery pass failed");
                    poll
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.changed() => {}
            }
        }
    }

    /// Warns, at start and then every minute, of channels with queued rows and no configuration:
    /// those rows stay queued (never dropped) until the channel is configured.
    async fn monitor(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let mut warned: HashMap<String, i64> = HashMap::new();
        loop {
            if *shutdown.borrow() {
                return;
            }
            if let Ok(counts) = self.engine.store().outbox_counts().await {
                let mut waiting: HashMap<String, i64> = HashMap::new();
                for (channel, status, n) in counts {
                    let configured = Route::ALL
                        .iter()
                        .any(|r| r.as_str() == channel && self.configured(*r));
                    if !configured && (status == "queued" || status == "sending") {
                        *waiting.entry(channel).or_default() += n;
                    }
                }
                for (channel, n) in &waiting {
                    if warned.get(channel) != Some(n) {
                        tracing::warn!(%channel, queued = n,
                            "messages are queued on a channel that is not configured; they stay queued until it is");
                    }
                }
                warned = waiting;
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(60)) => {}
                _ = shutdown.changed() => {}
            }
        }
    }

    /// What `/readyz` shows: each channel configured or not, and `unconfigured`, the channels
    /// with rows waiting but no configuration. Index lookups only: a probe must stay fast with
    /// a million rows queued.
    pub async fn readiness(&self) -> Result<Value, StoreError> {
        let mut channels = serde_json::Map::new();
        let mut unconfigured = Vec::new();
        for route in Route::ALL {
            let configured = self.configured(route);
            channels.insert(route.as_str().into(), json!({ "configured": configured }));
            if !configured && self.engine.store().outbox_waiting(route.as_str()).await? {
                unconfigured.push(route.as_str());
            }
        }
        Ok(json!({"channels": channels, "unconfigured": unconfigured}))
    }

    /// Each channel: configured or not, rows queued, sending, dead and stale; and
    /// `unconfigured`, the channels with rows waiting but no configuration. Counts every row
    /// waiting.
    pub async fn status(&self) -> Result<Value, StoreError> {
        let counts = self.engine.store().outbox_counts().await?;
        let mut channels = serde_json::Map::new();
        let empty = |configured: bool| json!({"configured": configured, "queued": 0, "sending": 0, "dead": 0, "stale": 0});
        for route in Route::ALL {
            channels.insert(route.as_str().into(), empty(self.configured(route)));
        }
        for (channel, status, n) in counts {
            let entry = channels.entry(channel).or_insert_with(|| empty(false));
            entry[status.as_str()] = json!(n);
        }
        let unconfigured: Vec<&String> = channels
            .iter()
            .filter(|(_, c)| {
                c["configured"] == false
                    && (c["queued"].as_i64().unwrap_or(0) + c["sending"].as_i64().unwrap_or(0)) > 0
            })
            .map(|(name, _)| name)
            .collect();
        Ok(json!({"channels": channels, "unconfigured": unconfigured}))
    }
}

/// How often a worker working through a backlog says how many rows it made stale so far.
const STALE_LOG_EVERY: Duration = Duration::from_secs(10);

/// Rows a worker made stale and has not logged yet: one line when the backlog is through (a
/// pass claims nothing), or every `STALE_LOG_EVERY` while it lasts, not one per batch.
#[derive(Default)]
struct StaleTally {
    count: usize,
    oldest: Option<DateTime<Utc>>,
    since: Option<std::time::Instant>,
}

impl StaleTally {
    fn add(&mut self, p: &Pass) {
        if p.stale == 0 {
            return;
        }
        self.count += p.stale;
        self.oldest = match (self.oldest, p.oldest_stale) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.since.get_or_insert_with(std::time::Instant::now);
    }

    fn overdue(&self) -> bool {
        self.since.is_some_and(|t| t.elapsed() >= STALE_LOG_EVERY)
    }

    fn flush(&mut self, route: Route, age: Duration) {
        if self.count > 0 {
            let oldest = self
                .oldest
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                .unwrap_or_default();
            tracing::warn!(
                channel = route.as_str(),
                stale = self.count,
                oldest_due = %oldest,
                stale_after = %human(age),
                "{} {} message(s) due more than {} ago (the oldest at {oldest}) were not sent but \
                 marked stale: `escalade outbox list --status stale` lists them, \
                 `escalade outbox retry ID` sends one",
                self.count,
                route.as_str(),
                human(age),
            );
        }
        *self = StaleTally::default();
    }
}

/// A duration as the configuration writes it: `24h`, `90m`, `45s`, `500ms`.
fn human(d: Duration) -> String {
    let s = d.as_secs();
    if d.subsec_nanos() != 0 || s == 0 {
        format!("{}ms", d.as_millis())
    } else if s.is_multiple_of(3600) {
        format!("{}h", s / 3600)
    } else if s.is_multiple_of(60) {
        format!("{}m", s / 60)
    } else {
        format!("{s}s")
    }
}

/// The deadline a message of an issue names (a reminder's, an assignment's), from the
/// variables the rules queued it with.
fn deadline_of(c: &Claimed) -> Option<DateTime<Utc>> {
    if is_report(c) {
        return None;
    }
    let vars: MessageVars = serde_json::from_str(&c.vars).ok()?;
    vars.deadline.map(|(_, at)| at)
}

/// A job's report (no issue, or a report template) rather than a message of an issue.
fn is_report(c: &Claimed) -> bool {
    c.row.issue_id.is_none() || REPORT_KINDS.contains(&c.row.template.as_str())
}

fn person_name(rules: &RuleSet, id: &str) -> Option<String> {
    rules
        .org
        .person(id)
        .map(|p| rules.org.people[p as usize].name.clone())
}

fn person_locale(rules: &RuleSet, id: &str) -> Option<String> {
    rules
        .org
        .person(id)
        .map(|p| rules.org.people[p as usize].locale.to_string())
}

fn render_row(
    rules: &RuleSet,
    c: &Claimed,
    channel: Channel,
    context: &HashMap<i64, (Issue, IssueState)>,
    links: Option<&Links>,
) -> Result<Rendered, String> {
    let r = &c.row;
    if is_report(c) {
        let vars: Value = serde_json::from_str(&c.vars)
            .map_err(|e| format!("the report's variables are not JSON: {e}"))?;
        return rules.render_report(&r.template, &r.locale, channel, &vars);
    }
    let seq = r
        .event_seq
        .ok_or_else(|| "the message names no event".to_string())?;
    let (issue, state) = context
        .get(&seq)
        .ok_or_else(|| format!("event {seq} of the message is not stored"))?;
    let vars: MessageVars = serde_json::from_str(&c.vars)
        .map_err(|e| format!("the message's variables are unreadable: {e}"))?;
    // Made here, from the message as the rules decided it: the rules hold no secret.
    let links = escalade_rules::Links {
        acknowledge: links
            .and_then(|l| l.acknowledge(&issue.id, vars.department.as_deref(), vars.deadline)),
    };
    let message = Message {
        kind: KINDS
            .iter()
            .find(|k| **k == r.kind)
            .copied()
            .unwrap_or("message"),
        template: r.template.as_str().into(),
        to: r.person.as_str().into(),
        channel,
        locale: r.locale.as_str().into(),
        address: r.address.as_str().into(),
        urgent: r.urgent,
        vars,
    };
    rules.render_with(issue, state, &message, &links)
}

/// The failure an HTTP error status means, if it is one: 5xx, 408 and 429 may pass later; any
/// other 4xx will not. `None` for any other status.
pub(crate) fn http_failure(
    what: &str,
    status: reqwest::StatusCode,
    retry_after: Option<Duration>,
    body: &str,
) -> Option<Failure> {
    let code = status.as_u16();
    let error = format!("{what} answered {status}: {}", snippet(body));
    if code >= 500 || code == 408 || code == 429 {
        Some(Failure::Transient {
            error,
            after: retry_after,
        })
    } else if (400..500).contains(&code) {
        Some(Failure::Permanent(error))
    } else {
        None
    }
}

/// `Retry-After` in seconds, if the answer has one.
pub(crate) fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    headers
        .get("retry-after")?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

/// The start of an answer's body, for an error message.
pub(crate) fn snippet(body: &str) -> String {
    let body = body.trim();
    match body.char_indices().nth(200) {
        Some((i, _)) => format!("{}…", &body[..i]),
        None => body.to_string(),
    }
}
