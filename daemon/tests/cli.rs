//! The real `escalade` binary, spawned: exit codes, output, and the example organisation.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod support;

use support::{TestDb, escalade_in, expect_code};

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

fn escalade(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_escalade"))
        .args(args)
        .current_dir(ROOT)
        .output()
        .expect("the binary runs")
}

fn example() -> String {
    format!("{ROOT}/examples/city")
}

#[test]
fn check_accepts_the_example() {
    let out = escalade(&["check", &example()]);
    expect_code(&out, 0, "check examples/city");
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(s.starts_with("ok: "), "{s}");
    assert!(s.contains("departments") && s.contains("version "), "{s}");
    // After the summary, each job with its next three runs in its zone.
    let job = |prefix: &str| -> Vec<String> {
        let line = s
            .lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no line `{prefix}...` in:\n{s}"));
        line[prefix.len()..]
            .split(", ")
            .map(str::to_string)
            .collect()
    };
    let digest = job("job overdue-digest (0 8 * * Mon-Fri, Asia/Shanghai): ");
    let card = job("job weekly-scorecard (0 9 * * Mon, Asia/Shanghai): ");
    assert_eq!((digest.len(), card.len()), (3, 3), "{s}");
    for run in &digest {
        // `2026-11-25 08:00 +08:00`, never on a weekend.
        assert!(run.ends_with(" 08:00 +08:00"), "{run}");
        let date = chrono::NaiveDate::parse_from_str(&run[..10], "%Y-%m-%d").unwrap();
        assert!(
            !matches!(
                chrono::Datelike::weekday(&date),
                chrono::Weekday::Sat | chrono::Weekday::Sun
            ),
            "{run}"
        );
    }
    for run in &card {
        let date = chrono::NaiveDate::parse_from_str(&run[..10], "%Y-%m-%d").unwrap();
        assert_eq!(
            chrono::Datelike::weekday(&date),
            chrono::Weekday::Mon,
            "{run}"
        );
        assert!(run.ends_with(" 09:00 +08:00"), "{run}");
    }
    assert!(digest[0] < digest[1] && digest[1] < digest[2], "{digest:?}");
}

#[test]
fn the_example_rule_tests_pass() {
    let out = escalade(&["test", &example()]);
    expect_code(&out, 0, "test examples/city");
    let s = String::from_utf8_lossy(&out.stdout);
    let last = s.lines().last().unwrap();
    assert!(last.ends_with(" passed, 0 failed"), "{last}");
    let passed: usize = last.split(' ').next().unwrap().parse().unwrap();
    assert!(passed >= 40, "{passed} rule tests");
}

fn broken_copy(tmp: &Path) -> PathBuf {
    let dir = tmp.join("rules");
    copy(
        Path::new(&format!("{ROOT}/rules/tests/fixtures/mini")),
        &dir,
    );
    let p = dir.join("policy.yaml");
    let text = std::fs::read_to_string(&p).unwrap();
    std::fs::write(&p, text.replace("department: police", "department: polise")).unwrap();
    dir
}

fn copy(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.path().is_dir() {
            copy(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

#[test]
fn check_reports_rule_errors_with_location_and_exits_1() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = broken_copy(tmp.path());
    let out = escalade(&["check", dir.to_str().unwrap()]);
    expect_code(&out, 1, "check on broken rules");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("policy.yaml:49:17: unknown department `polise` (did you mean `police`?)"),
        "{err}"
    );
    // The rendered form shows the line itself.
    assert!(err.contains("department: polise"), "{err}");
    // `test` refuses to run on broken rules too.
    expect_code(
        &escalade(&["test", dir.to_str().unwrap()]),
        1,
        "test on broken rules",
    );
}

#[test]
fn usage_errors_exit_2() {
    expect_code(
        &escalade(&["check", "/nonexistent/dir"]),
        2,
        "missing directory",
    );
    expect_code(&escalade(&["frobnicate"]), 2, "unknown subcommand");
    let tmp = tempfile::tempdir().unwrap();
    let bad = tmp.path().join("issue.json");
    std::fs::write(&bad, "{\"category\": \"noise\",").unwrap();
    let out = escalade(&["explain", &example(), "--issue", bad.to_str().unwrap()]);
    expect_code(&out, 2, "malformed issue JSON");
    assert!(String::from_utf8_lossy(&out.stderr).contains("issue.json:1:"));
    std::fs::write(
        &bad,
        r#"{"category": "nope", "unit": "g-0001", "description": "x"}"#,
    )
    .unwrap();
    let out = escalade(&["explain", &example(), "--issue", bad.to_str().unwrap()]);
    expect_code(&out, 2, "unknown category");
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown category `nope`"));
}

#[test]
fn explain_json_has_the_documented_fields() {
    let tmp = tempfile::tempdir().unwrap();
    let f = tmp.path().join("issue.json");
    std::fs::write(
        &f,
        r#"{"category": "noise", "unit": "g1", "description": "drums"}"#,
    )
    .unwrap();
    let fixture = format!("{ROOT}/rules/tests/fixtures/mini");
    let out = escalade(&[
        "explain",
        &fixture,
        "--issue",
        f.to_str().unwrap(),
        "--at",
        "2026-03-02T10:00:00+08:00",
        "--json",
    ]);
    expect_code(&out, 0, "explain --json");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["rules_version"].as_str().unwrap().len(), 64);
    assert_eq!(v["departments"], serde_json::json!(["urban"]));
    assert_eq!(v["deadlines"]["acknowledge"], "2026-03-02T12:00:00+08:00");
    assert_eq!(v["deadlines"]["resolve"], "2026-03-04T10:00:00+08:00");
    let esc = v["escalations"].as_array().unwrap();
    // The acknowledge deadline passes first (remind, extend 1h), then the resolve one climbs.
    assert_eq!(esc[0]["at"], "2026-03-02T12:00:00+08:00");
    assert_eq!(esc[0]["trigger"], "acknowledge_overdue");
    let climb: Vec<&str> = esc
        .iter()
        .filter(|e| e["trigger"] == "resolve_overdue")
        .map(|e| e["tier"].as_str().unwrap())
        .collect();
    assert_eq!(&climb[..2], ["street", "city"]);
    let first_climb = esc
        .iter()
        .find(|e| e["trigger"] == "resolve_overdue")
        .unwrap();
    assert_eq!(first_climb["notify"], serde_json::json!(["p-s1"]));
    assert!(
        v["trace"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t.as_str().unwrap().contains("no route matched"))
    );

    // The human form shows the working time counted and skipped.
    let out = escalade(&[
        "explain",
        &fixture,
        "--issue",
        f.to_str().unwrap(),
        "--at",
        "2026-03-02T10:00:00+08:00",
    ]);
    expect_code(&out, 0, "explain");
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(
        s.contains("skip Mon 2026-03-02 12:00 .. Mon 2026-03-02 13:00 (not working time)"),
        "{s}"
    );
}

#[test]
fn a_generated_city_checks_clean() {
    let tmp = tempfile::tempdir().unwrap();
    let out_dir = tmp.path().join("city");
    let out = escalade(&[
        "generate-city",
        "--grids",
        "500",
        "--out",
        out_dir.to_str().unwrap(),
    ]);
    expect_code(&out, 0, "generate-city");
    let out = escalade(&["check", out_dir.to_str().unwrap()]);
    expect_code(&out, 0, "check generated city");
    let s = String::from_utf8_lossy(&out.stdout);
    // 1 city + 5 districts + 5 streets + 73 communities + 500 grids.
    assert!(s.contains("ok: 584 units"), "{s}");
    assert!(s.contains("34 departments"), "{s}");
    // Writing into a non-empty directory is refused.
    let again = escalade(&[
        "generate-city",
        "--grids",
        "10",
        "--out",
        out_dir.to_str().unwrap(),
    ]);
    expect_code(&again, 2, "generate into a non-empty directory");
}

#[test]
fn check_prints_warnings_with_their_location_and_still_exits_0() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("rules");
    copy(
        Path::new(&format!("{ROOT}/rules/tests/fixtures/mini")),
        &dir,
    );
    let p = dir.join("policy.yaml");
    let text = std::fs::read_to_string(&p).unwrap();
    let text = text
        .replacen(
            "    co_assign: [urban]\n",
            "    co_assign: [urban]\n  - name: street-fights\n    when: {text_any: [street fight]}\n    department: urban\n",
            1,
        )
        .replacen(
            "meetings:\n",
            "  - id: spare\n    steps:\n      - on: resolve_overdue\n        actions: [{notify: leader}]\nmeetings:\n",
            1,
        );
    std::fs::write(&p, text).unwrap();
    let out = escalade(&["check", dir.to_str().unwrap()]);
    expect_code(&out, 0, "check with warnings");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("  --> policy.yaml:51:5: warning: route `street-fights` can never match: route `fights` (line 47) comes first and matches every issue it would"),
        "{err}"
    );
    assert!(
        err.contains("  --> policy.yaml:64:9: warning: ladder `spare` is used by no category: its steps never run"),
        "{err}"
    );
    // The rendered form: marked as a warning, with the line itself.
    assert!(
        err.contains("⚠ route `street-fights` can never match"),
        "{err}"
    );
    assert!(err.contains("  - name: street-fights"), "{err}");
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(
        s.starts_with("ok: ") && s.lines().next().unwrap().ends_with("; 2 warnings"),
        "{s}"
    );
}

#[test]
fn the_example_checks_without_warnings() {
    let out = escalade(&["check", &example()]);
    expect_code(&out, 0, "check examples/city");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("warning"), "{err}");
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("warning"),
        "no warning count"
    );
}

#[test]
fn test_update_rewrites_only_the_wrong_expectation_and_the_suite_then_passes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("city");
    copy(Path::new(&example()), &dir);
    let file = dir.join("tests/routing.yaml");
    let original = std::fs::read_to_string(&file).unwrap();
    let right = "      departments: [utilities, fire]\n";
    let wrong = "      departments: [utilities, police]\n";
    assert_eq!(original.matches(right).count(), 1);
    std::fs::write(&file, original.replacen(right, wrong, 1)).unwrap();
    let d = dir.to_str().unwrap();
    let before = escalade(&["test", d]);
    expect_code(&before, 1, "test with a wrong expectation");
    assert!(
        String::from_utf8_lossy(&before.stdout).contains(
            r#"departments: expected ["utilities", "police"], got ["utilities", "fire"]"#
        )
    );

    let out = escalade(&["test", "--update", d]);
    expect_code(&out, 0, "test --update");
    let s = String::from_utf8_lossy(&out.stdout);
    let updated: Vec<&str> = s.lines().filter(|l| l.starts_with("updated ")).collect();
    assert_eq!(
        updated,
        [
            "updated tests/routing.yaml:44:20 :: a gas leak goes to utilities with fire and rescue standing by: expect.departments: [utilities, police] -> [utilities, fire]"
        ]
    );
    assert!(s.ends_with(" passed, 0 failed\n"), "{s}");
    // Byte for byte the file it was before the wrong expectation, comments and all.
    assert_eq!(std::fs::read_to_string(&file).unwrap(), original);
    expect_code(&escalade(&["test", d]), 0, "test after the update");
    // Nothing to update: nothing printed, nothing written.
    let again = escalade(&["test", "--update", d]);
    expect_code(&again, 0, "test --update with nothing failing");
    assert!(!String::from_utf8_lossy(&again.stdout).contains("updated "));
}

#[test]
fn explain_renders_messages_and_cuts_a_ladder_repeating_at_the_top() {
    let tmp = tempfile::tempdir().unwrap();
    let f = tmp.path().join("issue.json");
    std::fs::write(
        &f,
        r#"{"category": "gas_leak", "unit": "g-0001", "description": "燃气泄漏，闻到很重的煤气味", "reporter": "p-g-0001"}"#,
    )
    .unwrap();
    let args = [
        "explain",
        &example(),
        "--issue",
        f.to_str().unwrap(),
        "--at",
        "2026-03-02T09:00:00+08:00",
    ];
    let out = escalade(&args);
    expect_code(&out, 0, "explain a gas leak");
    let s = String::from_utf8_lossy(&out.stdout);
    // The urgent ladder repeats every 15 minutes and every 2 hours at the city for ever; the
    // projection shows each a few times and says so.
    assert!(s.lines().count() < 300, "{} lines", s.lines().count());
    assert!(
        s.contains("  cut: resolve_overdue: ladder `urgent` step 4 repeats every 2h at the top tier (city) with nothing else changing: shown 3 times, then the projection stops"),
        "{s}"
    );
    // Each message as its recipient reads it: an SMS's text, an email's subject and body.
    assert!(
        s.contains("  - p-uti-yu by sms (zh-CN), template assigned:\n      【网格化管理】农科社区第1网格燃气泄漏问题已派遣公用事业局，请及时签收。\n"),
        "{s}"
    );
    assert!(
        s.contains("  - p-uti-bai by email (en), template assigned:\n      subject: [New assignment] Gas leak"),
        "{s}"
    );

    let mut json_args = args.to_vec();
    json_args.push("--json");
    let out = escalade(&json_args);
    expect_code(&out, 0, "explain --json");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let sms = v["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["to"] == "p-uti-yu" && m["channel"] == "sms")
        .unwrap();
    assert_eq!(
        *sms,
        serde_json::json!({
            "to": "p-uti-yu",
            "channel": "sms",
            "template": "assigned",
            "locale": "zh-CN",
            "text": "【网格化管理】农科社区第1网格燃气泄漏问题已派遣公用事业局，请及时签收。"
        })
    );
    let email = v["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["channel"] == "email")
        .unwrap();
    assert!(email["subject"].is_string(), "{email}");
    assert_eq!(v["cut"].as_array().unwrap().len(), 3, "{}", v["cut"]);
}

/// `escalade token create ARGS` on the store `db`, against the rules in `rules`.
fn token_create(db: &TestDb, rules: &str, args: &[&str]) -> Output {
    db.command()
        .args(["token", "create", "--rules", rules])
        .args(args)
        .current_dir(ROOT)
        .output()
        .expect("the binary runs")
}

/// The first line `token create` prints: `token ID (WHAT):`.
fn made(out: &Output, what: &str) -> String {
    expect_code(out, 0, what);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap()
        .to_string()
}

#[test]
fn token_create_derives_a_persons_role_and_scope_from_the_organisation() {
    let tmp = tempfile::tempdir().unwrap();
    let (state, city) = (TestDb::new(tmp.path()), example());
    let cases: [(&[&str], &str); 7] = [
        // A grid's leader reports in the grid.
        (&["--person", "p-g-0001"], "reporter for g-0001 as p-g-0001"),
        // A community's, a street's, the city's leader leads the subtree.
        (&["--person", "p-c-001"], "leader for c-001 as p-c-001"),
        (&["--person", "p-mayor"], "leader for zz as p-mayor"),
        // A department's contact, and a person on its rota, act for it.
        (
            &["--person", "p-urban-li"],
            "department for urban as p-urban-li",
        ),
        (
            &["--person", "p-ps-zhang", "--role", "department"],
            "department for public-security as p-ps-zhang",
        ),
        // An administrator who is a person of the organisation.
        (
            &["--person", "p-mayor", "--role", "admin"],
            "admin as p-mayor",
        ),
        // An integration, with the role and scope given.
        (
            &[
                "--integration",
                "wechat",
                "--role",
                "reporter",
                "--scope",
                "g-0001",
            ],
            "reporter for g-0001 as integration wechat",
        ),
    ];
    for (id, (args, what)) in cases.iter().enumerate() {
        let line = made(&token_create(&state, &city, args), what);
        assert_eq!(line, format!("token {} ({what}):", id + 1));
    }
    // The old form, for an admin token of no one.
    let line = made(&token_create(&state, &city, &["--role", "admin"]), "admin");
    assert_eq!(line, "token 8 (admin):");
}

#[test]
fn token_create_refuses_bad_owners_clearly_and_creates_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let state = TestDb::new(&tmp.path().join("state"));
    // p-visitor is in the organisation with no role; p-g-0001 also becomes a contact of urban.
    let rules = tmp.path().join("city");
    support::copy_rules_edited(
        &example(),
        &rules,
        &[
            (
                "people.yaml",
                "people_files:",
                "  - {id: p-visitor, name: 访客, email: visitor@example.org, channels: [email]}\npeople_files:",
            ),
            (
                "departments.yaml",
                "contacts: [p-urban-li, p-urban-zhao]",
                "contacts: [p-urban-li, p-urban-zhao, p-g-0001]",
            ),
        ],
    );
    let rules = rules.to_str().unwrap();
    let cases: [(&[&str], &[&str]); 11] = [
        (&["--person", "p-nobody"], &["unknown person `p-nobody`"]),
        (
            &["--person", "p-visitor"],
            &["`p-visitor` has no role in the organisation"],
        ),
        (
            &["--person", "p-g-0001"],
            &[
                "`p-g-0001` has several roles",
                "--role department --scope urban, --role reporter --scope g-0001",
            ],
        ),
        (
            &["--person", "p-g-0001", "--role", "leader"],
            &[
                "`p-g-0001` may not hold a leader token",
                "--role reporter --scope g-0001",
            ],
        ),
        (
            &[
                "--person", "p-g-0001", "--role", "reporter", "--scope", "g-0002",
            ],
            &["may not hold a reporter token for g-0002"],
        ),
        (
            &["--person", "p-c-001", "--scope", "g-0001"],
            &[
                "`p-c-001` may not hold a token for g-0001",
                "--role leader --scope c-001",
            ],
        ),
        (
            &["--person", "p-mayor", "--role", "admin", "--scope", "zz"],
            &["an admin token has no scope"],
        ),
        (
            &["--role", "reporter", "--scope", "g-0001"],
            &["a reporter token belongs to a person (--person ID) or an integration"],
        ),
        (
            &["--integration", "we chat", "--role", "admin"],
            &["invalid integration name `we chat`"],
        ),
        (
            &["--integration", "wechat"],
            &["an integration's token needs --role"],
        ),
        (
            &["--person", "p-g-0001", "--integration", "wechat"],
            &["cannot be used with"],
        ),
    ];
    for (args, says) in cases {
        let out = token_create(&state, rules, args);
        expect_code(&out, 2, &format!("token create {args:?}"));
        let err = String::from_utf8_lossy(&out.stderr);
        for s in says {
            assert!(err.contains(s), "token create {args:?}: {err}");
        }
        assert!(out.stdout.is_empty(), "token create {args:?}");
    }
    // Nothing was created: the first token made is token 1, and choosing among the roles works.
    let line = made(
        &token_create(
            &state,
            rules,
            &["--person", "p-g-0001", "--role", "department"],
        ),
        "a choice",
    );
    assert_eq!(line, "token 1 (department for urban as p-g-0001):");
}

/// A person's token made by the command reports as its person in the daemon it serves.
#[tokio::test]
async fn a_token_made_for_a_person_reports_as_that_person() {
    let tmp = tempfile::tempdir().unwrap();
    let city = example();
    let db = TestDb::new(tmp.path());
    let out = token_create(&db, &city, &["--person", "p-g-0001"]);
    expect_code(&out, 0, "token create --person p-g-0001");
    let token = String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .unwrap()
        .trim()
        .to_string();
    let (_daemon, addr) = support::start(&db, &city);
    let issues = format!("http://{addr}/api/v1/issues");
    let c = support::client(&token);
    let r = c
        .post(&issues)
        .json(&serde_json::json!({"category": "garbage", "unit": "g-0001", "description": "垃圾桶满溢"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["issue"]["reporter"], "p-g-0001");
    let r = c
        .post(&issues)
        .json(&serde_json::json!({"category": "garbage", "unit": "g-0001", "description": "垃圾桶满溢", "reporter": "p-mayor"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"]["field"], "reporter");
}

/// `escalade test DIR | head -1`: a reader that goes away ends the command quietly, by SIGPIPE,
/// as command-line tools end; it used to panic on the failed write and exit 101.
#[test]
fn a_command_whose_reader_goes_away_ends_quietly() {
    use std::os::unix::process::ExitStatusExt;
    use std::process::Stdio;
    let mut child = Command::new(env!("CARGO_BIN_EXE_escalade"))
        .args(["test", &example()])
        .current_dir(ROOT)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The reader is gone before the first line is written.
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(
        out.status.signal(),
        Some(libc::SIGPIPE),
        "{:?}: {stderr}",
        out.status
    );
}

/// The store's commands need the store only: a configuration whose delivery secrets are not set
/// in this environment still serves `token create` and `outbox list`, while `run` refuses it,
/// naming the variable.
#[test]
fn the_stores_commands_run_without_the_delivery_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("escalade.yaml");
    std::fs::write(
        &cfg,
        format!(
            "state_dir: {}\nsmtp:\n  host: 127.0.0.1\n  port: 2525\n  from: escalade@example.org\n  username: u\n  password_env: ESCALADE_TEST_UNSET_PASSWORD\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let cfg = cfg.to_str().unwrap();
    let db = TestDb::new(dir.path());
    let out = escalade_in(
        &db,
        &[],
        &["token", "create", "--config", cfg, "--role", "admin"],
    );
    expect_code(&out, 0, "token create with the secret unset");
    let out = escalade_in(&db, &[], &["outbox", "list", "--config", cfg]);
    expect_code(&out, 0, "outbox list with the secret unset");
    let out = escalade_in(&db, &[], &["run", "--config", cfg, "--rules", &example()]);
    expect_code(&out, 2, "run with the secret unset");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("ESCALADE_TEST_UNSET_PASSWORD"), "{err}");
}

/// `escalade token ARGS` on the store `db`, run from `cwd`, with no rule directory configured
/// anywhere it could be found.
fn token_cmd(db: &TestDb, cwd: &Path, args: &[&str]) -> Output {
    db.command()
        .arg("token")
        .args(args)
        .env("ESCALADE_RULES", cwd.join("no-rules-here"))
        .current_dir(cwd)
        .output()
        .expect("the binary runs")
}

/// An administrator's token names nothing of the organisation: it is made without a rule
/// directory (on a host that has none yet, say), while a person's still needs one and says so.
#[test]
fn an_admin_token_is_made_without_a_rule_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let state = TestDb::new(&tmp.path().join("state"));
    let out = token_cmd(&state, tmp.path(), &["create", "--role", "admin"]);
    assert_eq!(made(&out, "admin without rules"), "token 1 (admin):");
    let out = token_cmd(
        &state,
        tmp.path(),
        &["create", "--role", "admin", "--integration", "backup-job"],
    );
    assert_eq!(
        made(&out, "an integration's admin token without rules"),
        "token 2 (admin as integration backup-job):"
    );
    let out = token_cmd(&state, tmp.path(), &["create", "--person", "p-g-0001"]);
    expect_code(&out, 2, "a person's token without rules");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no-rules-here is not a directory"), "{err}");
}

/// `token list` shows every token with its label, owner, creation, last use and expiry, as a
/// table and as JSON, with the revoked and the expired marked; the tokens themselves never.
#[test]
fn token_list_shows_labels_owners_and_expiry() {
    let tmp = tempfile::tempdir().unwrap();
    let state = TestDb::new(&tmp.path().join("state"));
    let city = example();
    let create = |args: &[&str]| {
        let mut all = vec!["create", "--rules", &city];
        all.extend_from_slice(args);
        let out = token_cmd(&state, tmp.path(), &all);
        expect_code(&out, 0, &format!("token create {args:?}"));
        String::from_utf8(out.stdout).unwrap()
    };
    let before = chrono::Utc::now();
    let first = create(&["--role", "admin", "--label", "夜班 ops console"]);
    assert!(first.starts_with("token 1 (admin):\nesc_"), "{first}");
    let second = create(&["--person", "p-g-0001", "--expires-in", "90d"]);
    let line = second.lines().next().unwrap();
    assert!(
        line.starts_with("token 2 (reporter for g-0001 as p-g-0001, expires "),
        "{line}"
    );
    create(&[
        "--integration",
        "wechat",
        "--role",
        "reporter",
        "--scope",
        "g-0001",
        "--expires-in",
        "1s",
        "--label",
        "pilot",
    ]);
    let out = token_cmd(&state, tmp.path(), &["revoke", "1"]);
    expect_code(&out, 0, "token revoke 1");
    std::thread::sleep(std::time::Duration::from_millis(1100));

    let out = token_cmd(&state, tmp.path(), &["list"]);
    expect_code(&out, 0, "token list");
    let table = String::from_utf8(out.stdout).unwrap();
    let rows: Vec<Vec<&str>> = table.lines().map(|l| l.split('\t').collect()).collect();
    assert_eq!(
        rows[0],
        [
            "id",
            "status",
            "role",
            "scope",
            "owner",
            "label",
            "created",
            "last_used",
            "expires"
        ]
    );
    assert_eq!(rows.len(), 4, "{table}");
    assert_eq!(
        rows[1][..6],
        ["1", "revoked", "admin", "-", "-", "夜班 ops console"]
    );
    assert_eq!(
        rows[2][..6],
        ["2", "live", "reporter", "g-0001", "p-g-0001", "-"]
    );
    assert_eq!(
        rows[3][..6],
        [
            "3",
            "expired",
            "reporter",
            "g-0001",
            "integration:wechat",
            "pilot"
        ]
    );
    assert!(!table.contains("esc_"), "{table}");
    // Never used; created now; the second expires 90 days after it was made.
    assert_eq!(rows[2][7], "-");
    let created = support::at(rows[2][6]);
    assert!(
        (created - before).num_seconds().abs() <= 2,
        "{}",
        rows[2][6]
    );
    let expires = support::at(rows[2][8]);
    assert_eq!((expires - created).num_days(), 90, "{table}");
    assert_eq!(rows[1][8], "-");

    let out = token_cmd(&state, tmp.path(), &["list", "--json"]);
    expect_code(&out, 0, "token list --json");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let all = json.as_array().unwrap();
    assert_eq!(all.len(), 3);
    assert_eq!(all[0]["status"], "revoked");
    assert_eq!(all[0]["label"], "夜班 ops console");
    assert!(all[0]["revoked_at"].is_string());
    assert_eq!(all[1]["person"], "p-g-0001");
    assert_eq!(all[1]["last_used_at"], serde_json::Value::Null);
    assert_eq!(all[2]["integration"], "wechat");
    assert_eq!(all[2]["status"], "expired");
    assert!(all[2]["expires_at"].is_string());
    assert!(all.iter().all(|t| t.get("hash").is_none()));
}

/// A lifetime or a label that cannot be taken is refused, naming the flag and the form it
/// takes, and no token is made.
#[test]
fn token_create_refuses_a_bad_lifetime_or_label_and_creates_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let state = TestDb::new(&tmp.path().join("state"));
    let long = "x".repeat(201);
    let cases: [(&[&str], &str); 9] = [
        (
            &["--expires-in", "soon"],
            "--expires-in `soon` is not a duration",
        ),
        (
            &["--expires-in", "90"],
            "--expires-in `90` is not a duration",
        ),
        (
            &["--expires-in", "1h1d"],
            "--expires-in `1h1d` is not a duration",
        ),
        (
            &["--expires-in", "2w"],
            "write it as `90d`, `12h`, `30m` or `1d12h`",
        ),
        (&["--expires-in", "0m"], "must be longer than zero"),
        (&["--expires-in=-5m"], "must be longer than zero"),
        (&["--label", " "], "--label is empty"),
        (
            &["--label", &long],
            "--label is 201 characters long: at most 200",
        ),
        (&["--label", "a\tb"], "--label holds a control character"),
    ];
    for (args, says) in cases {
        let mut all = vec!["create", "--role", "admin"];
        all.extend_from_slice(args);
        let out = token_cmd(&state, tmp.path(), &all);
        expect_code(&out, 2, &format!("token create {args:?}"));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "token create {args:?}: {err}");
        assert!(out.stdout.is_empty(), "token create {args:?}");
    }
    let out = token_cmd(&state, tmp.path(), &["create", "--role", "admin"]);
    assert_eq!(made(&out, "a good one"), "token 1 (admin):");
}

/// A token made by the command with a short lifetime serves the daemon, then is refused with
/// 401 `token_expired`.
#[tokio::test]
async fn an_expired_token_is_refused_by_the_daemon() {
    let tmp = tempfile::tempdir().unwrap();
    let city = example();
    // Made while the daemon runs, so that its lifetime is not spent starting it.
    let db = TestDb::new(tmp.path());
    let (_daemon, addr) = support::start(&db, &city);
    let out = token_create(&db, &city, &["--role", "admin", "--expires-in", "2s"]);
    expect_code(&out, 0, "token create --expires-in 2s");
    let said = String::from_utf8_lossy(&out.stdout);
    let token = said.lines().last().unwrap().trim().to_string();
    let expires = said
        .lines()
        .next()
        .and_then(|l| l.split("expires ").nth(1))
        .map(|t| support::at(t.trim_end_matches("):")))
        .unwrap_or_else(|| panic!("no expiry in {said}"));
    let c = support::client(&token);
    let issues = format!("http://{addr}/api/v1/issues");
    assert_eq!(c.get(&issues).send().await.unwrap().status(), 200);
    // The expiry is printed to the second, truncated.
    let left = expires - chrono::Utc::now() + chrono::TimeDelta::milliseconds(1200);
    tokio::time::sleep(left.to_std().unwrap_or_default()).await;
    let r = c.get(&issues).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "token_expired", "{body}");
    // The use before the expiry was recorded.
    let out = escalade_in(&db, &[], &["token", "list", "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(json[0]["last_used_at"].is_string(), "{json}");
    assert_eq!(json[0]["status"], "expired");
}
