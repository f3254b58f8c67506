//! Prometheus metrics, served at `/metrics` in the text format. Names follow the conventions
//! Alertmanager uses for its own (`<program>_<thing>_total` counters, `_seconds` histograms,
//! `config_last_reload_*` gauges).
//!
//! Counters and histograms are recorded where things happen (the engine, delivery, the store's
//! group commit, the HTTP layer); the gauges of what the store holds (open and overdue issues,
//! pending timers, the outbox by channel and status) are read from the store when scraped.

use std::sync::{Mutex, OnceLock};

use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::engine::Engine;

/// Seconds: from a millisecond (an HTTP answer, a commit) to a day (a timer fired late after an
/// outage, a message that waited for its channel).
const SECONDS: [f64; 16] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 60.0, 600.0, 3600.0,
    86400.0,
];

/// Writes in one group commit.
const SIZES: [f64; 10] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the process's recorder on first call (the daemon's start, or the router's creation
/// in a test) and returns its handle; `None` if another recorder was installed first.
pub fn install() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &SECONDS)
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full("escalade_store_commit_batch_size".into()),
                        &SIZES,
                    )
                })
                .expect("bucket lists are not empty")
                .build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).ok()?;
            describe();
            Some(handle)
        })
        .as_ref()
}

fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        "escalade_issues_received_total",
        "Issues taken in (idempotent replays not counted)."
    );
    describe_counter!(
        "escalade_issues_refused_total",
        "Submissions refused, by reason."
    );
    describe_counter!(
        "escalade_decisions_total",
        "Decisions made by the rules, by event and outcome (decided, triage, refused)."
    );
    describe_gauge!("escalade_issues_open", "Issues not closed.");
    describe_gauge!(
        "escalade_issues_overdue",
        "Open issues with a deadline passed."
    );
    describe_gauge!("escalade_timers_pending", "Timers waiting to fire.");
    describe_histogram!(
        "escalade_timer_lateness_seconds",
        Unit::Seconds,
        "How long after its due time a timer fired."
    );
    describe_counter!(
        "escalade_delivery_taken_over_total",
        "Messages claimed after an earlier claim lapsed mid-send (a worker died, stopped or outlasted its lease), by channel: each may have been delivered twice."
    );
    describe_counter!(
        "escalade_timer_hints_total",
        "Wake-up hints about timers sent to the other replicas or received from them, by direction (PostgreSQL)."
    );
    describe_counter!(
        "escalade_timer_takeovers_total",
        "Timer firings discarded because another replica took the timer over (its claim lapsed) or a decision replaced it."
    );
    describe_counter!(
        "escalade_escalations_total",
        "Escalations committed, by the tier reached."
    );
    describe_gauge!(
        "escalade_outbox_messages",
        "Outbox rows by channel and status."
    );
    describe_counter!(
        "escalade_notifications_sent_total",
        "Messages delivered, by channel."
    );
    describe_counter!(
        "escalade_notifications_failed_total",
        "Delivery attempts that failed, by channel and whether the message will be retried."
    );
    describe_histogram!(
        "escalade_notification_latency_seconds",
        Unit::Seconds,
        "From when a message was due to its delivery, by channel."
    );
    describe_gauge!(
        "escalade_config_last_reload_successful",
        "Whether the last reload of the rules succeeded."
    );
    describe_gauge!(
        "escalade_config_last_reload_success_timestamp_seconds",
        Unit::Seconds,
        "When the rules were last loaded successfully."
    );
    describe_gauge!(
        "escalade_rules_version_info",
        "The live rules' version, as a label; 1 for the live one."
    );
    describe_histogram!(
        "escalade_store_commit_batch_size",
        "Writes committed together in one group commit."
    );
    describe_histogram!(
        "escalade_store_commit_duration_seconds",
        Unit::Seconds,
        "How long a group commit took, from its transaction's start to its commit."
    );
    describe_counter!(
        "escalade_http_requests_total",
        "HTTP requests answered, by route, method and status."
    );
    describe_histogram!(
        "escalade_http_request_duration_seconds",
        Unit::Seconds,
        "How long HTTP requests took to answer, by route and method."
    );
}

/// A reload of the rules ended: `ok` or not, at Unix time `at`.
pub fn reloaded(ok: bool, at: i64) {
    gauge!("escalade_config_last_reload_successful").set(if ok { 1.0 } else { 0.0 });
    if ok {
        gauge!("escalade_config_last_reload_success_timestamp_seconds").set(at as f64);
    }
}

/// The version last reported live, so that a new one sets the old one's series to 0.
static LIVE_VERSION: Mutex<Option<String>> = Mutex::new(None);

fn live_version(version: &str) {
    let mut live = LIVE_VERSION.lock().unwrap_or_else(|p| p.into_inner());
    if live.as_deref() != Some(version) {
        if let Some(old) = live.take() {
            gauge!("escalade_rules_version_info", "version" => old).set(0.0);
        }
        *live = Some(version.to_string());
    }
    gauge!("escalade_rules_version_info", "version" => version.to_string()).set(1.0);
}

/// The text `/metrics` answers: the gauges of the store read now, then everything recorded.
pub async fn render(engine: &Engine) -> Result<String, crate::store::StoreError> {
    let Some(handle) = install() else {
        return Ok(String::new());
    };
    let g = engine.store().gauges(engine.now()).await?;
    gauge!("escalade_issues_open").set(g.open as f64);
    gauge!("escalade_issues_overdue").set(g.overdue as f64);
    gauge!("escalade_timers_pending").set(g.timers as f64);
    for (channel, status, n) in g.outbox {
        gauge!("escalade_outbox_messages", "channel" => channel, "status" => status).set(n as f64);
    }
    live_version(&engine.rules().version);
    Ok(handle.render())
}

/// An issue was taken in.
pub fn received() {
    counter!("escalade_issues_received_total").increment(1);
}

/// A submission was refused, for `reason` (an error code).
pub fn refused(reason: &'static str) {
    counter!("escalade_issues_refused_total", "reason" => reason).increment(1);
}

/// The rules decided `event` with `outcome` (`decided`, `triage` or `refused`).
pub fn decision(event: &'static str, outcome: &'static str) {
    counter!("escalade_decisions_total", "event" => event, "outcome" => outcome).increment(1);
}

/// A committed decision escalated the issue to `tier`.
pub fn escalated(tier: &str) {
    counter!("escalade_escalations_total", "tier" => tier.to_string()).increment(1);
}

/// A timer fired `late` seconds after its due time.
pub fn timer_fired(late: f64) {
    histogram!("escalade_timer_lateness_seconds").record(late.max(0.0));
}

/// A wake-up hint about a timer was `sent` to the other replicas or `received` from one.
pub fn timer_hint(direction: &'static str) {
    counter!("escalade_timer_hints_total", "direction" => direction).increment(1);
}

/// A timer's firing was discarded: its claim passed to another replica, or its timer was
/// replaced meanwhile.
pub fn timer_lease_lost() {
    counter!("escalade_timer_takeovers_total").increment(1);
}

/// `n` messages of `channel` were claimed after an earlier claim lapsed mid-send: each may
/// be delivered twice.
pub fn delivery_taken_over(channel: &str, n: usize) {
    counter!("escalade_delivery_taken_over_total", "channel" => channel.to_string())
        .increment(n as u64);
}

/// A message went out on `channel`, `latency` seconds after it was due.
pub fn notification_sent(channel: &str, latency: f64) {
    counter!("escalade_notifications_sent_total", "channel" => channel.to_string()).increment(1);
    histogram!("escalade_notification_latency_seconds", "channel" => channel.to_string())
        .record(latency.max(0.0));
}

/// A delivery attempt on `channel` failed; `retried` unless the message is now dead.
pub fn notification_failed(channel: &str, retried: bool) {
    counter!(
        "escalade_notifications_failed_total",
        "channel" => channel.to_string(),
        "retried" => if retried { "true" } else { "false" }
    )
    .increment(1);
}

/// A group commit of `size` writes took `seconds`.
pub fn committed(size: usize, seconds: f64) {
    histogram!("escalade_store_commit_batch_size").record(size as f64);
    histogram!("escalade_store_commit_duration_seconds").record(seconds);
}

/// An HTTP request to `route` was answered `status` in `seconds`.
pub fn answered(route: &str, method: &str, status: u16, seconds: f64) {
    counter!(
        "escalade_http_requests_total",
        "route" => route.to_string(),
        "method" => method.to_string(),
        "status" => status.to_string()
    )
    .increment(1);
    histogram!(
        "escalade_http_request_duration_seconds",
        "route" => route.to_string(),
        "method" => method.to_string()
    )
    .record(seconds);
}
