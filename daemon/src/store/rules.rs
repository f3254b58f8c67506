//! The rules' side of the store: every rule version that went live with its files, and what
//! open issues use, which a reload checks a candidate against.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::{Backend, Result, Store};

/// A rule version that went live: when, by whom, from where, and how many files it has.
#[derive(Clone, Debug, serde::Serialize)]
pub struct RuleVersionRow {
    /// Counts each time a version went live.
    pub id: i64,
    pub version: String,
    pub loaded_at: DateTime<Utc>,
    pub loaded_by: String,
    pub dir: String,
    pub files: usize,
}

/// What open issues (not closed) use, distinct values: what new rules must still know.
#[derive(Clone, Debug, Default)]
pub struct OpenUses {
    pub categories: Vec<String>,
    /// The branches of their units, `/city/d1/s1/g1/`.
    pub branches: Vec<String>,
    pub departments: Vec<String>,
    /// Escalation tiers they were raised to.
    pub tiers: Vec<String>,
    /// Kinds of scheduled meetings with open issues on their agenda.
    pub meetings: Vec<String>,
}

/// A thing of the rules that open issues may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Use {
    Category,
    /// A unit anywhere in the issue's branch.
    Unit,
    Department,
    Tier,
    Meeting,
}

impl Use {
    pub fn as_str(self) -> &'static str {
        match self {
            Use::Category => "category",
            Use::Unit => "unit",
            Use::Department => "department",
            Use::Tier => "tier",
            Use::Meeting => "meeting",
        }
    }
}

/// An event the shadow rules decided differently from the live ones.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ShadowDiff {
    pub issue: String,
    pub event: String,
    pub at: DateTime<Utc>,
    /// What differed: route, deadlines, tier, state, triage, messages, meetings, refused.
    pub kinds: Vec<String>,
    pub live: serde_json::Value,
    pub shadow: serde_json::Value,
}

/// How one kind of difference counted, with a few issues as examples.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ShadowKind {
    pub kind: String,
    pub count: i64,
    pub examples: Vec<String>,
}

/// A shadow run's differences since it started.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ShadowSummary {
    pub run: i64,
    pub version: String,
    pub dir: String,
    pub started_at: DateTime<Utc>,
    pub started_by: String,
    pub stopped_at: Option<DateTime<Utc>>,
    /// Live events the shadow decided.
    pub compared: i64,
    /// Of them, decided differently.
    pub differing: i64,
    /// Live events the shadow had no room for.
    pub dropped: i64,
    pub by_kind: Vec<ShadowKind>,
    /// The latest differences, newest first.
    pub recent: Vec<ShadowDiff>,
}

/// An event as recorded, with the decision stored for it.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub seq: i64,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub event: escalade_rules::Event,
    pub rules_version: String,
    pub decision: serde_json::Value,
}

impl Store {
    /// An issue's events with their stored decisions, in order.
    pub async fn recorded(&self, issue: &str) -> Result<Vec<Recorded>> {
        on!(self, s => s.recorded(issue).await)
    }

    /// Records that `version` went live, storing its files (each content once across all
    /// versions). Returns the row's id.
    pub async fn record_rule_version(
        &self,
        version: &str,
        at: DateTime<Utc>,
        by: &str,
        dir: &str,
        files: &BTreeMap<String, Arc<str>>,
    ) -> Result<i64> {
        on!(self, s => s.record_rule_version(version, at, by, dir, files).await)
    }

    /// The versions that went live, newest first, before the row `before` if given.
    pub async fn rule_versions(
        &self,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<RuleVersionRow>> {
        on!(self, s => s.rule_versions(before, limit).await)
    }

    /// The files of a version that went live (a unique prefix of its hash will do), by path;
    /// `None` if no such version was stored.
    pub async fn rule_version_files(
        &self,
        version: &str,
    ) -> Result<Option<(String, BTreeMap<String, Arc<str>>)>> {
        on!(self, s => s.rule_version_files(version).await)
    }

    /// Records a shadow run's start; returns its id. A run still open is stopped first.
    pub async fn start_shadow(
        &self,
        version: &str,
        dir: &str,
        by: &str,
        at: DateTime<Utc>,
    ) -> Result<i64> {
        on!(self, s => s.start_shadow(version, dir, by, at).await)
    }

    /// Records a shadow run's stop.
    pub async fn stop_shadow(&self, run: i64, at: DateTime<Utc>) -> Result<()> {
        on!(self, s => s.stop_shadow(run, at).await)
    }

    /// Adds to a shadow run's counts and stores its differences, in one transaction.
    pub async fn record_shadow(
        &self,
        run: i64,
        compared: i64,
        dropped: i64,
        diffs: &[ShadowDiff],
    ) -> Result<()> {
        on!(self, s => s.record_shadow(run, compared, dropped, diffs).await)
    }

    /// The latest shadow run's summary, with up to `examples` issues per kind.
    pub async fn shadow_summary(&self, examples: usize) -> Result<Option<ShadowSummary>> {
        on!(self, s => s.shadow_summary(examples).await)
    }

    /// What open issues use.
    pub async fn open_uses(&self) -> Result<OpenUses> {
        on!(self, s => s.open_uses().await)
    }

    /// The open issues that use `value` as a `what`: up to `limit` ids, in id order, and how
    /// many there are in all.
    pub async fn open_issues_using(
        &self,
        what: Use,
        value: &str,
        limit: i64,
    ) -> Result<(Vec<String>, i64)> {
        on!(self, s => s.open_issues_using(what, value, limit).await)
    }
}
