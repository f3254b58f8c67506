//! An issue's decisions made again: each event of its timeline decided anew by the rules
//! version that decided it, on the state it found, at the instant it happened, and compared with
//! the decision stored then. `decide` is pure, so they must be equal; a difference means the
//! rules were not what the version says, or the daemon stored something the rules did not
//! decide.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use escalade_rules::{Issue, IssueState};
use serde::Serialize;
use serde_json::Value;

use crate::reload::{ReloadError, Rules};
use crate::store::{Store, StoreError};

/// One event re-decided.
#[derive(Clone, Debug, Serialize)]
pub struct Redecided {
    pub seq: i64,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub kind: String,
    pub rules_version: String,
    /// Why the rules decided as they did, step by step.
    pub trace: Vec<String>,
    /// Whether the decision made again equals the stored one.
    pub matches: bool,
    /// Where they differ (JSON pointers into the decision), when they do.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub differences: Vec<String>,
    /// Why the event could not be decided again (its version is not stored, say).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The decision made again.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decision: Option<Value>,
}

#[derive(Clone, Debug, Serialize)]
pub struct IssueExplanation {
    pub id: String,
    /// Every event re-decided and equal to its stored decision.
    pub all_match: bool,
    pub events: Vec<Redecided>,
}

#[derive(Debug, thiserror::Error)]
pub enum ExplainError {
    #[error("no issue {0}")]
    NotFound(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Where two JSON values differ, as JSON pointers, at most `max`.
fn differences(a: &Value, b: &Value, at: &str, out: &mut Vec<String>, max: usize) {
    if out.len() >= max || a == b {
        return;
    }
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                let (u, v) = (
                    x.get(k).unwrap_or(&Value::Null),
                    y.get(k).unwrap_or(&Value::Null),
                );
                differences(u, v, &format!("{at}/{k}"), out, max);
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (u, v)) in x.iter().zip(y).enumerate() {
                differences(u, v, &format!("{at}/{i}"), out, max);
            }
        }
        _ => out.push(if at.is_empty() { "/".into() } else { at.into() }),
    }
}

/// The parts decisions carry since an earlier release are not compared when the stored decision
/// lacks them: a decision's `effects`, and the department each message is for. Named one by one,
/// so that any other part missing from a stored decision still shows as a difference.
fn without_later_parts(mut again: Value, stored: &Value) -> Value {
    let Value::Object(a) = &mut again else {
        return again;
    };
    if stored.get("effects").is_none() {
        a.remove("effects");
    }
    if let (Some(Value::Array(made)), Some(Value::Array(kept))) =
        (a.get_mut("messages"), stored.get("messages"))
    {
        for (m, k) in made.iter_mut().zip(kept) {
            if k.pointer("/vars/department").is_none()
                && let Some(Value::Object(vars)) = m.get_mut("vars")
            {
                vars.remove("department");
                if vars.is_empty() {
                    m.as_object_mut()
                        .expect("a message is an object")
                        .remove("vars");
                }
            }
        }
    }
    again
}

/// Re-decides every event of issue `id` with the version that decided it.
pub async fn explain_issue(
    store: &Store,
    rules: &Rules,
    id: &str,
) -> Result<IssueExplanation, ExplainError> {
    let stored = store
        .issue(id)
        .await?
        .ok_or_else(|| ExplainError::NotFound(id.to_string()))?;
    // The decisions saw the issue as reported; photos are written after the first decision
    // and decide nothing.
    let issue = Issue {
        photos: Vec::new(),
        ..stored.issue
    };
    let recorded = store.recorded(id).await?;
    let mut state = IssueState::default();
    let mut events = Vec::with_capacity(recorded.len());
    for r in recorded {
        let mut out = Redecided {
            seq: r.seq,
            at: r.at,
            actor: r.actor,
            kind: r.event.name().to_string(),
            rules_version: r.rules_version.clone(),
            trace: Vec::new(),
            matches: false,
            differences: Vec::new(),
            error: None,
            decision: None,
        };
        match rules.version(&r.rules_version).await {
            Ok(Some(rs)) => {
                let (i, st, ev, at) = (issue.clone(), state.clone(), r.event.clone(), r.at);
                let rs2: Arc<_> = rs.clone();
                let made = tokio::task::spawn_blocking(move || rs2.decide(&i, &st, &ev, at)).await;
                match made {
                    Ok(Ok(d)) => {
                        let again = serde_json::to_value(&d).expect("plain data serialises");
                        let compared = without_later_parts(again.clone(), &r.decision);
                        differences(&compared, &r.decision, "", &mut out.differences, 20);
                        out.matches = out.differences.is_empty();
                        out.trace = d.trace.clone();
                        out.decision = Some(again);
                    }
                    Ok(Err(refusal)) => {
                        out.error = Some(format!("refused when decided again: {refusal}"))
                    }
                    Err(e) => out.error = Some(format!("the decision did not finish: {e}")),
                }
            }
            Ok(None) => {
                out.error = Some(format!(
                    "rules version {} is not stored",
                    &r.rules_version[..16.min(r.rules_version.len())]
                ))
            }
            Err(ReloadError::Invalid(d)) => {
                out.error = Some(format!(
                    "rules version {} no longer loads: {}",
                    &r.rules_version[..16.min(r.rules_version.len())],
                    d.first().map(|d| d.message.as_str()).unwrap_or("")
                ))
            }
            Err(e) => out.error = Some(e.to_string()),
        }
        // The next event found the state this one's stored decision left.
        if let Some(next) = r.decision.get("next") {
            state = serde_json::from_value(next.clone()).map_err(|e| {
                StoreError::Corrupt(format!("event {} of issue {id}: its state: {e}", r.seq))
            })?;
        }
        events.push(out);
    }
    Ok(IssueExplanation {
        id: id.to_string(),
        all_match: events.iter().all(|e| e.matches),
        events,
    })
}
