//! `escalade generate-city`: a synthetic organisation at the scale of a real city, for
//! benchmarks. Zhengzhou's grid had 180 first-level, 2,879 second-level and 19,801 third-level
//! grids under its districts; other sizes scale those ratios.

use std::fmt::Write as _;
use std::path::Path;

const DEPARTMENTS: &[(&str, &str)] = &[
    ("城市管理局", "Urban Management"),
    ("公安局", "Public Security"),
    ("生态环境局", "Ecology and Environment"),
    ("市场监督管理局", "Market Supervision"),
    ("住房和城乡建设局", "Housing and Urban-Rural Development"),
    ("交通运输局", "Transport"),
    ("水利局", "Water Resources"),
    ("卫生健康委员会", "Health Commission"),
    ("民政局", "Civil Affairs"),
    ("消防救援支队", "Fire and Rescue"),
    ("应急管理局", "Emergency Management"),
    ("供电公司", "Power Supply"),
    ("燃气公司", "Gas Supply"),
    ("自来水公司", "Water Supply"),
    ("园林绿化局", "Landscaping"),
    ("教育局", "Education"),
    (
        "人力资源和社会保障局",
        "Human Resources and Social Security",
    ),
    ("自然资源和规划局", "Natural Resources and Planning"),
    ("农业农村局", "Agriculture and Rural Affairs"),
    ("商务局", "Commerce"),
    ("文化广电和旅游局", "Culture and Tourism"),
    ("退役军人事务局", "Veterans Affairs"),
    ("医疗保障局", "Healthcare Security"),
    ("体育局", "Sports"),
    ("统计局", "Statistics"),
    ("信访局", "Letters and Visits"),
    ("司法局", "Justice"),
    ("财政局", "Finance"),
    ("税务局", "Taxation"),
    ("气象局", "Meteorology"),
    ("人防办", "Civil Air Defence"),
    ("邮政管理局", "Postal Administration"),
    ("网格化管理中心", "Grid Management Centre"),
];

/// Writes the organisation into `out` and returns a one-line summary.
pub fn city(out: &Path, grids: usize) -> Result<String, String> {
    if out.exists()
        && std::fs::read_dir(out)
            .map_err(|e| e.to_string())?
            .next()
            .is_some()
    {
        return Err("exists and is not empty".into());
    }
    std::fs::create_dir_all(out.join("calendars")).map_err(|e| e.to_string())?;
    let scale = |n: usize| ((grids * n) as f64 / 19_801.0).round().max(1.0) as usize;
    let streets = scale(180);
    let communities = scale(2_879).max(streets);
    let districts = streets.min(12);

    let mut units = String::from("id,tier,parent,leader,name_zh,name_en\n");
    let mut people = String::from("id,name,phone,email,locale,channels\n");
    let mut phone = 13_800_000_000u64;
    let mut person = |people: &mut String, id: &str, name: &str| {
        phone += 1;
        writeln!(
            people,
            "{id},{name},+86{phone},{id}@example.org,zh-CN,sms;email"
        )
        .expect("string");
    };
    person(&mut people, "p-city", "市长");
    writeln!(units, "city,city,,p-city,郑州市,Zhengzhou").expect("string");
    for d in 0..districts {
        let id = format!("d{d:02}");
        person(&mut people, &format!("p-{id}"), &format!("区长{d}"));
        writeln!(units, "{id},district,city,p-{id},第{d}区,District {d}").expect("string");
    }
    for s in 0..streets {
        let id = format!("s{s:04}");
        person(&mut people, &format!("p-{id}"), &format!("街道主任{s}"));
        writeln!(
            units,
            "{id},street,d{:02},p-{id},第{s}街道,Street {s}",
            s % districts
        )
        .expect("string");
    }
    for c in 0..communities {
        let id = format!("c{c:05}");
        person(&mut people, &format!("p-{id}"), &format!("社区书记{c}"));
        writeln!(
            units,
            "{id},community,s{:04},p-{id},第{c}社区,Community {c}",
            c % streets
        )
        .expect("string");
    }
    for g in 0..grids {
        let id = format!("g{g:05}");
        person(&mut people, &format!("p-{id}"), &format!("网格长{g}"));
        writeln!(
            units,
            "{id},grid,c{:05},p-{id},第{g}网格,Grid {g}",
            g % communities
        )
        .expect("string");
    }
    let mut org = String::from(
        "tiers:\n  - {id: grid, names: {zh: 网格, en: Grid}}\n  - {id: community, names: {zh: 社区, en: Community}}\n  - {id: street, names: {zh: 街道, en: Street}}\n  - {id: district, names: {zh: 区, en: District}}\n  - {id: city, names: {zh: 市, en: City}}\nunit_files: [units.csv]\npeople_files: [people.csv]\npeople:\n",
    );
    for (i, _) in DEPARTMENTS.iter().enumerate() {
        for k in 0..2 {
            writeln!(
                org,
                "  - {{id: staff-{i:02}-{k}, name: 值班员{i}-{k}, phone: \"+8613900{i:03}{k:03}\", email: staff-{i:02}-{k}@example.org, channels: [email, sms]}}"
            )
            .expect("string");
        }
    }
    org.push_str("departments:\n");
    for (i, (zh, en)) in DEPARTMENTS.iter().enumerate() {
        writeln!(org, "  - {{id: dept-{i:02}, names: {{zh: {zh}, en: {en}}}, contacts: [staff-{i:02}-0, staff-{i:02}-1]}}").expect("string");
    }
    writeln!(
        org,
        "  - {{id: triage, names: {{zh: 分拨中心, en: Triage}}, contacts: [staff-32-0]}}"
    )
    .expect("string");

    let mut policy = String::from(POLICY_HEAD);
    policy.push_str("categories:\n");
    for i in 0..DEPARTMENTS.len() * 2 {
        writeln!(
            policy,
            "  - {{code: cat-{i:02}, names: {{zh: 问题{i}, en: Problem {i}}}, department: dept-{:02}}}",
            i / 2
        )
        .expect("string");
    }
    policy.push_str("routes:\n");
    for d in 0..districts {
        writeln!(
            policy,
            "  - name: district-{d:02}-hazard\n    when: {{units: [d{d:02}], text_any: [爆炸, 坍塌]}}\n    department: dept-10\n    co_assign: [dept-09]"
        )
        .expect("string");
    }
    policy.push_str("  - name: night-noise\n    when: {category: [cat-00], working: false}\n    department_hook: night_department\n");
    policy.push_str(TEMPLATES);

    let write = |name: &str, text: &str| {
        std::fs::write(out.join(name), text).map_err(|e| format!("{name}: {e}"))
    };
    write("units.csv", &units)?;
    write("people.csv", &people)?;
    write("organisation.yaml", &org)?;
    write("policy.yaml", &policy)?;
    write("calendars/cn-2026.yaml", HOLIDAYS)?;
    std::fs::create_dir_all(out.join("scripts")).map_err(|e| e.to_string())?;
    write("scripts/routing.rhai", SCRIPT)?;
    Ok(format!(
        "wrote {}: 1 city, {districts} districts, {streets} streets, {communities} communities, {grids} grids, {} departments",
        out.display(),
        DEPARTMENTS.len() + 1
    ))
}

const POLICY_HEAD: &str = r#"settings: {locale: zh-CN, calendar: cn-office, triage: triage, ladder: standard}
calendars:
  - id: cn-office
    timezone: Asia/Shanghai
    working_days: [Mon, Tue, Wed, Thu, Fri]
    hours: ["09:00-12:00", "13:30-17:30"]
    holiday_files: [calendars/cn-2026.yaml]
  - id: always
    timezone: Asia/Shanghai
    working_days: [Mon, Tue, Wed, Thu, Fri, Sat, Sun]
    hours: ["00:00-24:00"]
deadlines:
  low: {acknowledge: 1d, resolve: 10d, remind_before: [2h]}
  normal: {acknowledge: 4h, resolve: 5d, remind_before: [1h]}
  high: {acknowledge: 2h, resolve: 2d, remind_before: [30m]}
  urgent: {acknowledge: 30m, resolve: 8h, remind_before: [10m], calendar: always}
ladders:
  - id: standard
    steps:
      - on: acknowledge_overdue
        actions: [{remind: departments}, {extend: 2h}]
      - on: resolve_overdue
        actions: [{raise: next}, {notify: leader}, {extend: 1d}]
        repeat: true
      - on: rejected
        actions: [{supervise: street}]
meetings:
  - id: joint
    names: {zh: 联席会议, en: Joint meeting}
    when: {departments_at_least: 2, escalations_at_least: 4}
    schedule: {working_days_later: 1, at: "09:00"}
    invite: [departments, leader]
"#;

const TEMPLATES: &str = r#"templates:
  assigned:
    zh-CN:
      email: {subject: "新问题 {{ issue.id }}", body: "{{ recipient.name }}：{{ issue.category_name }}，{{ issue.unit_name }}。请于 {{ deadline.at }} 前受理。"}
      sms: {body: "新问题{{ issue.id }}：{{ issue.category_name }}，{{ deadline.at }}前受理"}
  reminder:
    zh-CN:
      email: {subject: "提醒 {{ issue.id }}", body: "{{ deadline.kind }} 截止 {{ deadline.at }}"}
      sms: {body: "提醒：{{ issue.id }} {{ deadline.at }}截止"}
  overdue:
    zh-CN:
      email: {subject: "超期 {{ issue.id }}", body: "{{ issue.description }}"}
      sms: {body: "超期：{{ issue.id }}"}
  escalated:
    zh-CN:
      email: {subject: "升级 {{ issue.id }}", body: "已升级至{{ issue.tier_name }}：{{ issue.description }}"}
      sms: {body: "升级：{{ issue.id }} {{ issue.tier_name }}"}
  supervision:
    zh-CN:
      email: {subject: "督办 {{ issue.id }}", body: "{{ departments | join(', ') }}"}
      sms: {body: "督办：{{ issue.id }}"}
  meeting:
    zh-CN:
      email: {subject: "{{ meeting.name }} {{ meeting.at }}", body: "{{ issue.description }}"}
      sms: {body: "{{ meeting.name }}：{{ meeting.at }}"}
  resolved:
    zh-CN:
      email: {subject: "已处理 {{ issue.id }}", body: "请确认"}
      sms: {body: "{{ issue.id }}已处理，请确认"}
  reopened:
    zh-CN:
      email: {subject: "重新办理 {{ issue.id }}", body: "{{ reason }}"}
      sms: {body: "{{ issue.id }}被退回：{{ reason }}"}
  triage:
    zh-CN:
      email: {subject: "待分拨 {{ issue.id }}", body: "{{ reason }}"}
      sms: {body: "待分拨：{{ issue.id }}"}
"#;

const HOLIDAYS: &str = r#"holidays:
  - {from: 2026-01-01, to: 2026-01-03, name: 元旦}
  - {from: 2026-02-15, to: 2026-02-23, name: 春节}
  - {from: 2026-04-04, to: 2026-04-06, name: 清明节}
  - {from: 2026-05-01, to: 2026-05-05, name: 劳动节}
  - {from: 2026-06-19, to: 2026-06-21, name: 端午节}
  - {from: 2026-09-25, to: 2026-09-27, name: 中秋节}
  - {from: 2026-10-01, to: 2026-10-07, name: 国庆节}
makeup_days:
  - {date: 2026-01-04}
  - {date: 2026-02-14}
  - {date: 2026-02-28}
  - {date: 2026-05-09}
  - {date: 2026-09-20}
  - {date: 2026-10-10}
"#;

const SCRIPT: &str = r#"// Noise outside working hours goes to public security, otherwise to urban management.
fn night_department(issue) {
    if issue.hour >= 22 || issue.hour < 6 { "dept-01" } else { "dept-00" }
}
"#;

/// What [`history`] generates: how many issues, over which days, from which seed.
#[derive(Clone, Debug)]
pub struct HistoryOptions {
    pub issues: usize,
    /// The first day of reports, in the rules' default calendar's time zone.
    pub start: chrono::NaiveDate,
    /// Reports are spread over this many days; the history ends (its horizon) after the last.
    pub days: u32,
    pub seed: u64,
}

/// What [`history`] wrote.
#[derive(Clone, Debug)]
pub struct HistoryStats {
    pub issues: usize,
    pub events: usize,
    /// Issues not closed at the end (open, or resolved and not yet confirmed).
    pub open: usize,
    /// The end of the history: every event is at or before it.
    pub horizon: chrono::DateTime<chrono::Utc>,
    pub rules_version: String,
}

/// Issues generated and written per transaction; their events are written in time order.
const HISTORY_BLOCK: usize = 4_000;

/// Writes a new store at `out` holding a plausible past: `o.issues` issues of the organisation
/// of `rules`, reported over `o.days` days (mostly in office hours), each lived through `rules`
/// with its timers firing and the actions people take at plausible times (acknowledged,
/// sometimes a handling note, resolved, confirmed or rejected and resolved again, evaluated,
/// commented, closed at grid level, reassigned out of triage), some late enough for the ladders
/// to climb, the last ones still open at the end. Rows are written as the daemon writes them
/// (issues, events with their decisions, pending timers, assignments) with the rules' files in
/// `rule_versions` and `rule_files`, as if `rules` had gone live from `rules_dir` the day
/// before the first report. The same options give the same history.
pub async fn history(
    rules: &escalade_rules::RuleSet,
    rules_dir: &str,
    out: &Path,
    o: &HistoryOptions,
) -> Result<HistoryStats, String> {
    use chrono::{Duration, TimeZone, Utc};
    use rayon::prelude::*;
    use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions, SqliteSynchronous};

    if out.exists() {
        return Err(format!("{} already exists", out.display()));
    }
    if o.issues == 0 || o.days == 0 {
        return Err("a history needs at least one issue over at least one day".into());
    }
    let grids: Vec<usize> = rules
        .org
        .units
        .iter()
        .enumerate()
        .filter(|(_, u)| u.tier == 0)
        .map(|(i, _)| i)
        .collect();
    if grids.is_empty() || rules.categories.is_empty() {
        return Err("the rules have no units of the lowest tier or no categories".into());
    }
    let tz = rules.org.calendars[rules.settings.calendar as usize].tz();
    let midnight = |day: chrono::NaiveDate| {
        tz.from_local_datetime(&day.and_hms_opt(0, 0, 0).expect("midnight"))
            .earliest()
            .map(|t| t.with_timezone(&Utc))
            .ok_or_else(|| format!("no local midnight on {day}"))
    };
    let begin = midnight(o.start)?;
    let horizon = midnight(o.start + Duration::days(o.days as i64))?;

    // Report times, in order: each day's share, mostly in office hours.
    let mut rng = fastrand::Rng::with_seed(o.seed);
    let mut times = Vec::with_capacity(o.issues);
    for d in 0..o.days as usize {
        let n = (d + 1) * o.issues / o.days as usize - d * o.issues / o.days as usize;
        let day = midnight(o.start + Duration::days(d as i64))?;
        let mut today: Vec<i64> = (0..n)
            .map(|_| {
                let second = if rng.f64() < 0.8 {
                    rng.i64(8 * 3600..18 * 3600)
                } else {
                    rng.i64(0..86_400)
                };
                (day + Duration::seconds(second)).timestamp_millis()
            })
            .collect();
        today.sort_unstable();
        times.extend(today);
    }

    crate::store::Store::open_sqlite(out)
        .await
        .map_err(|e| format!("{}: {e}", out.display()))?
        .close()
        .await;
    let options = SqliteConnectOptions::new()
        .filename(out)
        .synchronous(SqliteSynchronous::Off);
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await
        .map_err(|e| format!("{}: {e}", out.display()))?;
    let db = |e: sqlx::Error| format!("{}: {e}", out.display());

    // The rule version, as the daemon records one that goes live.
    let mut files = serde_json::Map::new();
    let mut tx = pool.begin().await.map_err(db)?;
    for (path, content) in rules.files.iter() {
        use sha2::Digest;
        let hash = hex::encode(sha2::Sha256::digest(content.as_bytes()));
        sqlx::query("INSERT OR IGNORE INTO rule_files (hash, content) VALUES (?, ?)")
            .bind(&hash)
            .bind(&**content)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        files.insert(path.clone(), serde_json::Value::String(hash));
    }
    sqlx::query(
        "INSERT INTO rule_versions (version, loaded_at, loaded_by, dir, files) VALUES (?, ?, 'start-up', ?, ?)",
    )
    .bind(&*rules.version)
    .bind((begin - Duration::days(1)).timestamp_millis())
    .bind(rules_dir)
    .bind(serde_json::Value::Object(files).to_string())
    .execute(&mut *tx)
    .await
    .map_err(db)?;
    tx.commit().await.map_err(db)?;

    let mut stats = HistoryStats {
        issues: o.issues,
        events: 0,
        open: 0,
        horizon,
        rules_version: rules.version.to_string(),
    };
    let mut seq: i64 = 0;
    for start in (0..o.issues).step_by(HISTORY_BLOCK) {
        let end = (start + HISTORY_BLOCK).min(o.issues);
        let lived: Vec<Lived> = (start..end)
            .into_par_iter()
            .map(|i| live_one(rules, &grids, i, times[i], horizon, o.seed))
            .collect();
        let mut events: Vec<(&Lived, &HistoryEvent)> = lived
            .iter()
            .flat_map(|l| l.events.iter().map(move |e| (l, e)))
            .collect();
        events.sort_by_key(|(l, e)| (e.at, l.id));
        let mut tx = pool.begin().await.map_err(db)?;
        for chunk in lived.chunks(32_000 / 14) {
            let mut q = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
                "INSERT INTO issues (id, version, body, state, status, category, unit, department, tier, reported_at, updated_at, branch, acknowledge_by, resolve_by) ",
            );
            q.push_values(chunk, |mut b, l| {
                b.push_bind(l.id.to_string())
                    .push_bind(l.events.len() as i64)
                    .push_bind(&l.body)
                    .push_bind(&l.state)
                    .push_bind(l.status)
                    .push_bind(&l.category)
                    .push_bind(&l.unit)
                    .push_bind(&l.department)
                    .push_bind(&l.tier)
                    .push_bind(l.reported_at)
                    .push_bind(l.updated_at)
                    .push_bind(&l.branch)
                    .push_bind(l.acknowledge_by)
                    .push_bind(l.resolve_by);
            });
            q.build().execute(&mut *tx).await.map_err(db)?;
        }
        for chunk in events.chunks(32_000 / 8) {
            let mut q = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
                "INSERT INTO events (seq, issue_id, at, actor, kind, payload, rules_version, decision) ",
            );
            q.push_values(chunk, |mut b, (l, e)| {
                seq += 1;
                b.push_bind(seq)
                    .push_bind(l.id.to_string())
                    .push_bind(e.at)
                    .push_bind(&e.actor)
                    .push_bind(e.kind)
                    .push_bind(&e.payload)
                    .push_bind(&*rules.version)
                    .push_bind(&e.decision);
            });
            q.build().execute(&mut *tx).await.map_err(db)?;
        }
        let timers: Vec<(u64, &(i64, String))> = lived
            .iter()
            .flat_map(|l| l.timers.iter().map(move |t| (l.id, t)))
            .collect();
        for chunk in timers.chunks(32_000 / 3) {
            let mut q = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
                "INSERT INTO timers (issue_id, due, event) ",
            );
            q.push_values(chunk, |mut b, (id, (due, event))| {
                b.push_bind(id.to_string()).push_bind(*due).push_bind(event);
            });
            q.build().execute(&mut *tx).await.map_err(db)?;
        }
        let assigned: Vec<(u64, usize, &String)> = lived
            .iter()
            .flat_map(|l| {
                l.departments
                    .iter()
                    .enumerate()
                    .map(move |(i, d)| (l.id, i, d))
            })
            .collect();
        for chunk in assigned.chunks(32_000 / 3) {
            let mut q = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
                "INSERT OR IGNORE INTO assignments (department, issue_id, lead) ",
            );
            q.push_values(chunk, |mut b, (id, i, d)| {
                b.push_bind(*d).push_bind(id.to_string()).push_bind(*i == 0);
            });
            q.build().execute(&mut *tx).await.map_err(db)?;
        }
        tx.commit().await.map_err(db)?;
        stats.events += events.len();
        stats.open += lived.iter().filter(|l| l.open).count();
    }
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
        .execute(&pool)
        .await
        .map_err(db)?;
    pool.close().await;
    Ok(stats)
}

/// One event of a generated issue, as its row is written.
struct HistoryEvent {
    at: i64,
    actor: String,
    kind: &'static str,
    payload: String,
    decision: String,
}

/// One generated issue, ready to be written.
struct Lived {
    id: u64,
    body: String,
    state: String,
    status: &'static str,
    category: String,
    unit: String,
    department: Option<String>,
    tier: Option<String>,
    reported_at: i64,
    updated_at: i64,
    branch: String,
    acknowledge_by: Option<i64>,
    resolve_by: Option<i64>,
    departments: Vec<String>,
    timers: Vec<(i64, String)>,
    events: Vec<HistoryEvent>,
    open: bool,
}

/// Words that make a report take a particular route in the example organisation; harmless
/// elsewhere.
const FLAVOURS: &[(&str, &str)] = &[
    ("noise", "，工地夜间施工"),
    ("food_safety", "，学校食堂"),
    ("illegal_advertising", "，贷款小广告"),
    ("building_cracks", "，墙体裂缝扩大"),
    ("flooding", "，路口积水"),
];

/// Issue `i` (id `i + 1`), reported at `reported` (Unix ms), lived to `horizon`.
fn live_one(
    rules: &escalade_rules::RuleSet,
    grids: &[usize],
    i: usize,
    reported: i64,
    horizon: chrono::DateTime<chrono::Utc>,
    seed: u64,
) -> Lived {
    use chrono::{DateTime, Duration, Utc};
    use escalade_rules::{Event, Issue, State, Timeline};

    let mut rng =
        fastrand::Rng::with_seed(seed ^ (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let org = &rules.org;
    let cat = &rules.categories[rng.usize(..rules.categories.len())];
    let gi = grids[rng.usize(..grids.len())];
    let grid = &org.units[gi];
    let mut description = format!("{}：{}", cat.names.zh, grid.names.zh);
    for (c, words) in FLAVOURS {
        if *c == cat.code && rng.f64() < 0.25 {
            description.push_str(words);
        }
    }
    if rng.f64() < 0.01 {
        description.push_str("，燃气泄漏且电线裸露");
    }
    let reporter = grid.leader.map(|p| org.people[p as usize].id.to_string());
    let issue = Issue {
        id: (i + 1).to_string(),
        category: cat.code.clone(),
        unit: grid.id.clone(),
        description,
        reporter,
        ..Issue::default()
    };
    let reporter_actor = format!("reporter:{}#{}", grid.id, 1000 + gi);
    let dept_actor = |d: &str| {
        let ix = org.department(d).unwrap_or(0);
        format!("department:{d}#{}", 100 + ix)
    };
    let at0 = DateTime::<Utc>::from_timestamp_millis(reported).expect("in range");
    let mut actors = vec![reporter_actor.clone()];
    let mut t = match Timeline::report(rules, issue.clone(), at0) {
        Ok(t) => t,
        Err(e) => unreachable!("generated issues name known things: {e}"),
    };
    let minutes = |rng: &mut fastrand::Rng, lo: i64, hi: i64| Duration::minutes(rng.i64(lo..hi));
    let mut now = at0;
    // Each step: an action at a time after `now`; nothing happens after the horizon.
    let mut act = |t: &mut Timeline, at: DateTime<Utc>, actor: String, e: Event| -> bool {
        if at > horizon {
            return false;
        }
        if t.apply(at, e).is_ok() {
            actors.push(actor);
        }
        true
    };
    'life: {
        if rng.f64() < 0.04 {
            let at = now + minutes(&mut rng, 10, 90);
            act(
                &mut t,
                at,
                reporter_actor.clone(),
                Event::ClosedAtGrid {
                    note: "网格员现场处置".into(),
                },
            );
            break 'life;
        }
        if t.state.triage {
            now += minutes(&mut rng, 30, 240);
            let to = org.departments[cat.department as usize].id.clone();
            if !act(
                &mut t,
                now,
                "admin#1".into(),
                Event::Reassigned { department: to },
            ) {
                break 'life;
            }
        }
        // Acknowledged, mostly before the deadline, sometimes after.
        let ack_window = t
            .state
            .acknowledge_by
            .map(|a| (a - now).num_minutes().max(10))
            .unwrap_or(240);
        now += Duration::minutes((ack_window as f64 * (0.1 + rng.f64() * 1.3)) as i64);
        let d = t.state.departments.first().cloned().unwrap_or_default();
        if !act(&mut t, now, dept_actor(&d), Event::Acknowledged) {
            break 'life;
        }
        let res_window = t
            .state
            .resolve_by
            .map(|r| (r - now).num_minutes().max(30))
            .unwrap_or(3 * 24 * 60);
        if rng.f64() < 0.4 {
            let at = now + Duration::minutes((res_window as f64 * rng.f64() * 0.3) as i64);
            now = at;
            if !act(
                &mut t,
                at,
                dept_actor(&d),
                Event::Progress {
                    note: "已派人现场核查".into(),
                },
            ) {
                break 'life;
            }
        }
        if rng.f64() < 0.1 {
            let at = now + minutes(&mut rng, 5, 120);
            now = at;
            if !act(
                &mut t,
                at,
                dept_actor(&d),
                Event::Commented {
                    text: "已联系责任单位".into(),
                },
            ) {
                break 'life;
            }
        }
        let mut rejections = 0;
        loop {
            let window = t
                .state
                .resolve_by
                .map(|r| (r - now).num_minutes().max(30))
                .unwrap_or(res_window);
            now += Duration::minutes((window as f64 * (0.1 + rng.f64() * 1.2)) as i64);
            let d = t.state.departments.first().cloned().unwrap_or_default();
            if !act(
                &mut t,
                now,
                dept_actor(&d),
                Event::Resolved {
                    note: "已处理完毕".into(),
                    photos: Vec::new(),
                },
            ) {
                break 'life;
            }
            now += minutes(&mut rng, 30, 24 * 60);
            if rejections < 2 && rng.f64() < 0.08 {
                rejections += 1;
                if !act(
                    &mut t,
                    now,
                    reporter_actor.clone(),
                    Event::Rejected {
                        reason: "现场问题仍在".into(),
                    },
                ) {
                    break 'life;
                }
                continue;
            }
            if !act(&mut t, now, reporter_actor.clone(), Event::Confirmed) {
                break 'life;
            }
            break;
        }
        if rng.f64() < 0.5 {
            now += minutes(&mut rng, 5, 180);
            act(
                &mut t,
                now,
                reporter_actor.clone(),
                Event::Evaluated {
                    rating: rng.u8(3..=5),
                    comment: String::new(),
                },
            );
        }
    }
    t.advance_to(horizon);

    let mut people = actors.into_iter();
    let events: Vec<HistoryEvent> = t
        .log
        .iter()
        .map(|e| HistoryEvent {
            at: e.at.timestamp_millis(),
            actor: if e.event.is_timer() {
                "scheduler".into()
            } else {
                people.next().unwrap_or_default()
            },
            kind: e.event.name(),
            payload: serde_json::to_string(&e.event).expect("plain data"),
            decision: serde_json::to_string(&e.decision).expect("plain data"),
        })
        .collect();
    let s = &t.state;
    let branch = crate::engine::branch(rules, &grid.id);
    Lived {
        id: i as u64 + 1,
        body: serde_json::to_string(&issue).expect("plain data"),
        state: serde_json::to_string(s).expect("plain data"),
        status: s.state.as_str(),
        category: issue.category.clone(),
        unit: issue.unit.clone(),
        department: s.departments.first().cloned(),
        tier: s.tier.clone(),
        reported_at: reported,
        updated_at: events.last().map(|e| e.at).unwrap_or(reported),
        branch,
        acknowledge_by: s.acknowledge_by.map(|t| t.timestamp_millis()),
        resolve_by: s.resolve_by.map(|t| t.timestamp_millis()),
        departments: s.departments.clone(),
        timers: t
            .timers
            .iter()
            .map(|x| {
                (
                    x.at.timestamp_millis(),
                    serde_json::to_string(&x.event).expect("plain data"),
                )
            })
            .collect(),
        events,
        open: s.state.is_open() || matches!(s.state, State::Resolved),
    }
}
