//! The API's JSON answers, and the one place their times take their form: RFC 3339 in UTC to the
//! second (`2026-03-03T10:00:00Z`).
//!
//! The store keeps instants to the millisecond, and the decisions it keeps (which `explain`
//! compares) are written as the rules' types serialise them, fractions included; only what the
//! API serves is cut to the second, here, so stores written before read the same. A time is cut,
//! not rounded: a deadline served is never later than the one that runs.
//!
//! What is cut is a string in the form chrono writes an instant in UTC with a fraction
//! (`2026-03-03T10:00:00.123Z`), wherever it sits in the answer (states, timelines, effects,
//! stored decisions, outbox rows, meetings, versions), except under the keys that hold people's
//! own words (`PEOPLES_WORDS`), which are served as written.

use axum::Json;
use axum::response::{IntoResponse, Response};
use serde_json::Value;

/// A JSON answer (200 unless paired with a status) whose times are written to the second.
pub(crate) struct Answer(pub Value);

impl IntoResponse for Answer {
    fn into_response(self) -> Response {
        let mut v = self.0;
        to_seconds(&mut v);
        Json(v).into_response()
    }
}

/// Keys whose strings are what a person wrote or was sent, never rewritten.
const PEOPLES_WORDS: [&str; 10] = [
    "description",
    "address",
    "note",
    "reason",
    "comment",
    "text",
    "minutes",
    "subject",
    "body",
    "lines",
];

/// Cuts every instant in `v` to the second (see the module's notes).
pub(crate) fn to_seconds(v: &mut Value) {
    match v {
        Value::String(s) => {
            if let Some(cut) = cut(s) {
                s.truncate(cut);
                s.push('Z');
            }
        }
        Value::Array(a) => a.iter_mut().for_each(to_seconds),
        Value::Object(o) => {
            for (k, x) in o.iter_mut() {
                if !PEOPLES_WORDS.contains(&k.as_str()) {
                    to_seconds(x);
                }
            }
        }
        _ => {}
    }
}

/// Where the fraction of `s` starts, if `s` is an instant in UTC with a fraction
/// (`YYYY-MM-DDTHH:MM:SS.fZ`, one to nine digits).
fn cut(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    if !(21..=30).contains(&b.len()) || b[19] != b'.' || b[b.len() - 1] != b'Z' {
        return None;
    }
    let digits = &b[20..b.len() - 1];
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    chrono::DateTime::parse_from_rfc3339(s).ok().map(|_| 19)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn instants_are_cut_to_the_second_and_peoples_words_kept() {
        let mut v = json!({
            "at": "2026-03-03T02:00:00.123Z",
            "deep": [{"to": "2026-03-03T02:00:00.123456789Z"}, ["d", "2026-03-03T02:00:59.999Z"]],
            "whole": "2026-03-03T02:00:00Z",
            "offset": "2026-03-03T10:00:00.5+08:00",
            "not": "2026-13-03T02:00:00.123Z",
            "note": "2026-03-03T02:00:00.123Z",
            "n": 5,
        });
        to_seconds(&mut v);
        assert_eq!(
            v,
            json!({
                "at": "2026-03-03T02:00:00Z",
                "deep": [{"to": "2026-03-03T02:00:00Z"}, ["d", "2026-03-03T02:00:59Z"]],
                "whole": "2026-03-03T02:00:00Z",
                "offset": "2026-03-03T10:00:00.5+08:00",
                "not": "2026-13-03T02:00:00.123Z",
                "note": "2026-03-03T02:00:00.123Z",
                "n": 5,
            })
        );
    }
}
