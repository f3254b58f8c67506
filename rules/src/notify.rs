//! How messages are delivered: quiet hours, digests and SMS length (the `notifications`
//! section). Pure: the daemon asks, with the time as an argument, when a message may go out and
//! how long its SMS text may be.

use chrono::{DateTime, Duration, NaiveTime, Timelike, Utc};
use chrono_tz::Tz;
use serde::Serialize;

use crate::calendar::wall_clock_instant;
use crate::spec::Channel;

/// SMS segments a text may take unless the policy says otherwise.
pub const DEFAULT_SMS_MAX_SEGMENTS: u32 = 3;

/// The `notifications` section, checked. Every part is optional: without it nothing is held,
/// nothing is merged, and an SMS takes at most [`DEFAULT_SMS_MAX_SEGMENTS`] segments.
#[derive(Clone, Debug)]
pub struct Notifications {
    pub quiet_hours: Option<QuietHours>,
    pub digest: Option<Digest>,
    pub sms_max_segments: u32,
}

impl Default for Notifications {
    fn default() -> Self {
        Notifications {
            quiet_hours: None,
            digest: None,
            sms_max_segments: DEFAULT_SMS_MAX_SEGMENTS,
        }
    }
}

impl Notifications {
    /// When a message on `channel` created at `at` may be sent: `None` for at once (an urgent
    /// message, a channel not held, a time outside quiet hours), else the end of quiet hours.
    pub fn release(
        &self,
        channel: Channel,
        urgent: bool,
        at: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        if urgent {
            return None;
        }
        self.quiet_hours.as_ref()?.release(channel, at)
    }

    /// An SMS text shortened to the policy's `sms.max_segments` (see [`cap_sms`]).
    pub fn cap_sms(&self, text: &str) -> String {
        cap_sms(text, self.sms_max_segments as usize)
    }
}

/// Hours in which messages on some channels wait: `[from, to)` in local wall-clock time of a
/// calendar's zone, wrapping midnight when `from > to` (22:00 to 07:00).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuietHours {
    pub tz: Tz,
    pub from: NaiveTime,
    pub to: NaiveTime,
    pub channels: Vec<Channel>,
}

impl QuietHours {
    /// Whether the local wall-clock time of `at` lies in quiet hours (`from` included, `to` not).
    pub fn contains(&self, at: DateTime<Utc>) -> bool {
        let t = at.with_timezone(&self.tz).time();
        if self.from < self.to {
            self.from <= t && t < self.to
        } else {
            self.from <= t || t < self.to
        }
    }

    /// `None` if a message on `channel` at `at` may go at once (the channel is not held, or `at`
    /// is outside quiet hours); else the instant quiet hours end: the first instant after `at`
    /// at which the local clock shows `to`. Exact across midnight and daylight-saving changes
    /// (when `to` falls in a gap, the end of the gap; when the clock shows it twice, the first
    /// time after `at`).
    pub fn release(&self, channel: Channel, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        if !self.channels.contains(&channel) || !self.contains(at) {
            return None;
        }
        let local = at.with_timezone(&self.tz);
        let mut day = local.date_naive();
        // Before `to` on the same local day, or (wrapping) after `from`: the next day's `to`.
        if local.time() >= self.to {
            day = day.succ_opt()?;
        }
        let end = day.and_time(self.to);
        let first = wall_clock_instant(self.tz, end);
        if first > at {
            return Some(first);
        }
        // The clock fell back and shows `to` a second time after `at`.
        use chrono::TimeZone;
        match self.tz.from_local_datetime(&end) {
            chrono::LocalResult::Ambiguous(_, latest) if latest.with_timezone(&Utc) > at => {
                Some(latest.with_timezone(&Utc))
            }
            // Not reachable with a consistent zone; never hold a message for nothing.
            _ => None,
        }
    }
}

/// Messages to one person within `window` (wall-clock) merge into one digest email.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Digest {
    pub window: Duration,
    pub channels: Vec<Channel>,
}

/// The variables of the `digest` template: the messages merged, each already rendered.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DigestVars {
    pub recipient: crate::jobs::Named,
    pub messages: Vec<DigestItem>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DigestItem {
    pub subject: String,
    pub body: String,
}

/// How an SMS text is encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SmsEncoding {
    /// The GSM 03.38 7-bit alphabet: 160 septets in one message, 153 per concatenated segment.
    Gsm7,
    /// UTF-16: 70 code units in one message, 67 per concatenated segment.
    Ucs2,
}

/// The length of an SMS text: its encoding, its length in that encoding's units (septets or
/// UTF-16 code units) and the number of segments it is sent as.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct SmsSegments {
    pub encoding: SmsEncoding,
    pub units: usize,
    pub segments: usize,
}

/// The GSM 03.38 basic character set (one septet each; the escape code itself excluded).
const GSM_BASIC: &str = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?\
¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";

/// The GSM 03.38 extension table: an escape septet and one more, two septets each.
const GSM_EXTENSION: &str = "\u{0C}^{}\\[~]|€";

/// Septets of `c` in GSM-7, or `None` if GSM-7 cannot carry it.
fn gsm_septets(c: char) -> Option<usize> {
    if c.is_ascii_alphanumeric() || c == ' ' {
        return Some(1);
    }
    if GSM_BASIC.contains(c) {
        Some(1)
    } else if GSM_EXTENSION.contains(c) {
        Some(2)
    } else {
        None
    }
}

/// How an SMS text is sent: GSM-7 if every character is in the GSM 03.38 basic set or its
/// extension table (extension characters count two septets), else UCS-2 (UTF-16 code units).
/// A text that fits one message (160 septets, 70 code units) is one segment; a longer one is
/// split into segments of 153 septets or 67 code units, never splitting an escape pair or a
/// surrogate pair across two segments. An empty text is one (empty) message.
pub fn sms_segments(text: &str) -> SmsSegments {
    let gsm: Option<Vec<usize>> = text.chars().map(gsm_septets).collect();
    let (encoding, sizes, single, multi) = match gsm {
        Some(sizes) => (SmsEncoding::Gsm7, sizes, 160, 153),
        None => (
            SmsEncoding::Ucs2,
            text.chars().map(char::len_utf16).collect(),
            70,
            67,
        ),
    };
    let units: usize = sizes.iter().sum();
    let segments = if units <= single {
        1
    } else {
        // Greedy packing: a character that does not fit whole starts the next segment.
        let mut segments = 1;
        let mut used = 0;
        for s in sizes {
            if used + s > multi {
                segments += 1;
                used = 0;
            }
            used += s;
        }
        segments
    };
    SmsSegments {
        encoding,
        units,
        segments,
    }
}

/// The text shortened to fit `max_segments` SMS segments: unchanged if it fits, else its
/// longest prefix (whole characters, so never half a surrogate pair; trailing whitespace
/// dropped) followed by "…". The ellipsis is not in GSM-7, so a shortened text is always UCS-2
/// (at most 70 code units in one segment, 67 per segment beyond). With `max_segments` 0
/// nothing fits: the empty text.
pub fn cap_sms(text: &str, max_segments: usize) -> String {
    if max_segments == 0 {
        return String::new();
    }
    if sms_segments(text).segments <= max_segments {
        return text.to_string();
    }
    let capacity = if max_segments == 1 {
        70
    } else {
        67 * max_segments
    };
    let fits = |prefix: &str| {
        let s = sms_segments(&format!("{}…", prefix.trim_end()));
        s.segments <= max_segments
    };
    // The end of each prefix of whole characters that is not already over the capacity; the
    // longest that fits, by binary search (fitting is monotonic in the prefix length).
    let mut ends = vec![0usize];
    let mut units = 0;
    for (i, c) in text.char_indices() {
        units += c.len_utf16();
        if units >= capacity {
            break;
        }
        ends.push(i + c.len_utf8());
    }
    // Invariant: the prefix `ends[lo]` fits (the empty one does: "…" alone is one unit).
    let (mut lo, mut hi) = (0usize, ends.len() - 1);
    while lo < hi {
        let mid = (lo + hi).div_ceil(2);
        if fits(&text[..ends[mid]]) {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    let end = ends[lo];
    format!("{}…", text[..end].trim_end())
}

/// `HH:MM`, 00:00 to 23:59, as a time of day.
pub(crate) fn parse_time_of_day(s: &str) -> Option<NaiveTime> {
    let (h, m) = s.split_once(':')?;
    if h.len() != 2 || m.len() != 2 || !(h.bytes().chain(m.bytes())).all(|b| b.is_ascii_digit()) {
        return None;
    }
    let t = NaiveTime::from_hms_opt(h.parse().ok()?, m.parse().ok()?, 0)?;
    (t.second() == 0).then_some(t)
}

/// A positive or negative wall-clock duration: `15m`, `2h`, `7d` (24 hours), `1d12h`, `-5m`.
pub fn parse_wall_duration(s: &str) -> Option<Duration> {
    let (neg, rest) = match s.trim().strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s.trim()),
    };
    if rest.is_empty() {
        return None;
    }
    let mut total = Duration::zero();
    let mut digits = String::new();
    let mut last_unit = 0u8; // units in order d, h, m, s, each at most once
    for c in rest.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let (rank, secs) = match c {
            'd' => (1, 86_400),
            'h' => (2, 3_600),
            'm' => (3, 60),
            's' => (4, 1),
            _ => return None,
        };
        if digits.is_empty() || digits.len() > 6 || rank <= last_unit {
            return None;
        }
        last_unit = rank;
        let n: i64 = digits.parse().ok()?;
        total += Duration::seconds(n * secs);
        digits.clear();
    }
    if !digits.is_empty() {
        return None;
    }
    Some(if neg { -total } else { total })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn quiet(tz: Tz, from: &str, to: &str) -> QuietHours {
        QuietHours {
            tz,
            from: parse_time_of_day(from).unwrap(),
            to: parse_time_of_day(to).unwrap(),
            channels: vec![Channel::Sms],
        }
    }

    #[test]
    fn quiet_hours_wrapping_midnight() {
        let q = quiet(chrono_tz::Asia::Shanghai, "22:00", "07:00");
        let sms = Channel::Sms;
        // Outside.
        assert_eq!(q.release(sms, utc("2026-03-02T21:59:59+08:00")), None);
        assert_eq!(q.release(sms, utc("2026-03-02T12:00:00+08:00")), None);
        // Exactly at `from`: held until tomorrow's 07:00.
        assert_eq!(
            q.release(sms, utc("2026-03-02T22:00:00+08:00")),
            Some(utc("2026-03-03T07:00:00+08:00"))
        );
        // After midnight: until this morning's 07:00.
        assert_eq!(
            q.release(sms, utc("2026-03-03T03:10:00+08:00")),
            Some(utc("2026-03-03T07:00:00+08:00"))
        );
        assert_eq!(
            q.release(sms, utc("2026-03-03T06:59:59+08:00")),
            Some(utc("2026-03-03T07:00:00+08:00"))
        );
        // Exactly at `to`: free.
        assert_eq!(q.release(sms, utc("2026-03-03T07:00:00+08:00")), None);
        // A channel not held.
        assert_eq!(
            q.release(Channel::Email, utc("2026-03-02T23:00:00+08:00")),
            None
        );
    }

    #[test]
    fn quiet_hours_within_one_day() {
        let q = quiet(chrono_tz::Asia::Shanghai, "12:00", "13:30");
        assert_eq!(
            q.release(Channel::Sms, utc("2026-03-02T11:59:00+08:00")),
            None
        );
        assert_eq!(
            q.release(Channel::Sms, utc("2026-03-02T12:00:00+08:00")),
            Some(utc("2026-03-02T13:30:00+08:00"))
        );
        assert_eq!(
            q.release(Channel::Sms, utc("2026-03-02T13:30:00+08:00")),
            None
        );
    }

    #[test]
    fn quiet_hours_across_daylight_saving_changes() {
        let berlin = chrono_tz::Europe::Berlin;
        // 2026-03-29: 02:00 CET becomes 03:00 CEST. The night is an hour shorter in real time.
        let q = quiet(berlin, "22:00", "07:00");
        assert_eq!(
            q.release(Channel::Sms, utc("2026-03-28T23:00:00+01:00")),
            Some(utc("2026-03-29T07:00:00+02:00"))
        );
        // 2026-10-25: 03:00 CEST becomes 02:00 CET.
        assert_eq!(
            q.release(Channel::Sms, utc("2026-10-24T23:00:00+02:00")),
            Some(utc("2026-10-25T07:00:00+01:00"))
        );
        // Quiet hours ending inside the spring gap end when the gap ends (03:00 CEST).
        let q = quiet(berlin, "22:00", "02:30");
        assert_eq!(
            q.release(Channel::Sms, utc("2026-03-29T01:30:00+01:00")),
            Some(utc("2026-03-29T03:00:00+02:00"))
        );
        // Ending at 02:30 on the autumn night the clock shows it twice: the first 02:30 after
        // the message.
        assert_eq!(
            q.release(Channel::Sms, utc("2026-10-25T02:10:00+02:00")),
            Some(utc("2026-10-25T02:30:00+02:00"))
        );
        assert_eq!(
            q.release(Channel::Sms, utc("2026-10-25T02:10:00+01:00")),
            Some(utc("2026-10-25T02:30:00+01:00"))
        );
        // Between the two 02:30s: the clock reads 02:45 CEST, outside quiet hours.
        assert_eq!(
            q.release(Channel::Sms, utc("2026-10-25T02:45:00+02:00")),
            None
        );
    }

    #[test]
    fn urgent_messages_are_never_held() {
        let n = Notifications {
            quiet_hours: Some(quiet(chrono_tz::Asia::Shanghai, "22:00", "07:00")),
            ..Notifications::default()
        };
        let night = chrono_tz::Asia::Shanghai
            .with_ymd_and_hms(2026, 3, 2, 23, 0, 0)
            .unwrap()
            .with_timezone(&Utc);
        assert!(n.release(Channel::Sms, false, night).is_some());
        assert_eq!(n.release(Channel::Sms, true, night), None);
        assert_eq!(
            Notifications::default().release(Channel::Sms, false, night),
            None
        );
    }

    fn seg(text: &str) -> (SmsEncoding, usize, usize) {
        let s = sms_segments(text);
        (s.encoding, s.units, s.segments)
    }

    #[test]
    fn gsm_segment_boundaries() {
        use SmsEncoding::Gsm7;
        assert_eq!(seg(""), (Gsm7, 0, 1));
        assert_eq!(seg(&"a".repeat(160)), (Gsm7, 160, 1));
        assert_eq!(seg(&"a".repeat(161)), (Gsm7, 161, 2));
        assert_eq!(seg(&"a".repeat(306)), (Gsm7, 306, 2));
        assert_eq!(seg(&"a".repeat(307)), (Gsm7, 307, 3));
        // Extension characters count two septets.
        assert_eq!(seg(&"€".repeat(80)), (Gsm7, 160, 1));
        assert_eq!(seg(&"{".repeat(81)), (Gsm7, 162, 2));
        // An escape pair is not split: 152 + 2 does not fit in 153.
        assert_eq!(
            seg(&format!("{}€{}", "a".repeat(152), "a".repeat(10))),
            (Gsm7, 164, 2)
        );
        assert_eq!(
            seg(&format!("{}€{}", "a".repeat(152), "a".repeat(152))),
            (Gsm7, 306, 3)
        );
        // Accented letters of the basic set stay GSM-7; others do not.
        assert_eq!(seg("Müller à Zürich, 5€").0, Gsm7);
        assert_eq!(seg("naïve").0, SmsEncoding::Ucs2);
        assert_eq!(seg("`").0, SmsEncoding::Ucs2);
    }

    #[test]
    fn ucs2_segment_boundaries() {
        use SmsEncoding::Ucs2;
        assert_eq!(seg(&"网".repeat(70)), (Ucs2, 70, 1));
        assert_eq!(seg(&"网".repeat(71)), (Ucs2, 71, 2));
        assert_eq!(seg(&"网".repeat(134)), (Ucs2, 134, 2));
        assert_eq!(seg(&"网".repeat(135)), (Ucs2, 135, 3));
        // One Chinese character makes a Latin text UCS-2.
        assert_eq!(seg(&format!("{}网", "a".repeat(69))), (Ucs2, 70, 1));
        // A character outside the BMP is two code units, kept in one segment.
        assert_eq!(seg("😀"), (Ucs2, 2, 1));
        assert_eq!(seg(&format!("{}😀", "网".repeat(68))), (Ucs2, 70, 1));
        assert_eq!(seg(&format!("{}😀", "网".repeat(69))), (Ucs2, 71, 2));
        assert_eq!(
            seg(&format!("{}😀{}", "网".repeat(66), "网".repeat(66))),
            (Ucs2, 134, 3)
        );
    }

    #[test]
    fn capping_keeps_what_fits_and_accounts_for_the_ellipsis() {
        // Fits: unchanged.
        let t = "网".repeat(201);
        assert_eq!(cap_sms(&t, 3), t);
        // 202 units need 4 segments: 200 characters and "…" fill 3 × 67.
        let c = cap_sms(&"网".repeat(202), 3);
        assert_eq!(c, format!("{}…", "网".repeat(200)));
        assert_eq!(sms_segments(&c).segments, 3);
        // One segment: 69 characters and "…".
        let c = cap_sms(&"网".repeat(71), 1);
        assert_eq!(c.chars().count(), 70);
        assert!(c.ends_with('…'));
        // GSM-7 text that does not fit becomes UCS-2 with the ellipsis: 3 × 67 units, not 459.
        let ascii = "a".repeat(460);
        assert_eq!(sms_segments(&ascii).segments, 4);
        let c = cap_sms(&ascii, 3);
        assert_eq!(c, format!("{}…", "a".repeat(200)));
        assert_eq!(
            sms_segments(&c),
            SmsSegments {
                encoding: SmsEncoding::Ucs2,
                units: 201,
                segments: 3
            }
        );
        // A GSM text that fits three segments is kept as is.
        assert_eq!(cap_sms(&"a".repeat(459), 3), "a".repeat(459));
        // Never half a surrogate pair.
        let emoji = "😀".repeat(40);
        let c = cap_sms(&emoji, 1);
        assert_eq!(c, format!("{}…", "😀".repeat(34)));
        assert!(sms_segments(&c).segments <= 1);
        // Trailing spaces are not kept before the ellipsis.
        let c = cap_sms(&format!("{}   {}", "网".repeat(68), "网".repeat(10)), 1);
        assert_eq!(c, format!("{}…", "网".repeat(68)));
        assert_eq!(cap_sms("anything", 0), "");
    }

    #[test]
    fn times_and_durations() {
        assert_eq!(parse_time_of_day("07:00"), NaiveTime::from_hms_opt(7, 0, 0));
        assert_eq!(
            parse_time_of_day("23:59"),
            NaiveTime::from_hms_opt(23, 59, 0)
        );
        for bad in ["25:00", "24:00", "7:00", "07:60", "0700", "", "ab:cd"] {
            assert_eq!(parse_time_of_day(bad), None, "{bad}");
        }
        assert_eq!(parse_wall_duration("15m"), Some(Duration::minutes(15)));
        assert_eq!(parse_wall_duration("7d"), Some(Duration::days(7)));
        assert_eq!(parse_wall_duration("1d12h"), Some(Duration::hours(36)));
        assert_eq!(parse_wall_duration("-5m"), Some(Duration::minutes(-5)));
        assert_eq!(parse_wall_duration("0m"), Some(Duration::zero()));
        for bad in ["", "m", "15", "15x", "1h1d", "1m1m", "-"] {
            assert_eq!(parse_wall_duration(bad), None, "{bad}");
        }
    }
}
