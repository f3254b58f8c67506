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
