//! `escalade backup` and `escalade restore`, the real binary: a backup taken while issues pour
//! in holds every issue answered before it began, photos byte for byte, and restores into a
//! store the daemon serves; each bad input (an existing target, a truncated or corrupt file, a
//! photo whose bytes do not match its name, a photo missing, a store that is not empty, a store
//! a daemon owns) is refused, naming what was wrong, changing nothing. A backup is of an SQLite
//! store: on PostgreSQL these tests are skipped.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};
use sqlx::Connection;

mod support;

use support::{Api, TestDb, admin_token, client, escalade_in, files, png, sha, start};

const CITY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/city");

fn expect(out: &Output, code: i32, what: &str) -> String {
    support::expect_code(out, code, what);
    if code == 0 {
        String::from_utf8_lossy(&out.stdout).into_owned()
    } else {
        assert!(out.stdout.is_empty(), "{what}: {:?}", out.stdout);
        String::from_utf8_lossy(&out.stderr).into_owned()
    }
}

/// `escalade backup --to FILE ARGS` of the store `db`.
fn backup(db: &TestDb, to: &Path, args: &[&str]) -> Output {
    let mut all = vec!["backup", "--to", to.to_str().unwrap()];
    all.extend_from_slice(args);
    escalade_in(db, &[], &all)
}

/// `escalade restore --from FILE ARGS` into the store of the state directory `state`.
fn restore(state: &Path, from: &Path, args: &[&str]) -> Output {
    let mut all = vec!["restore", "--from", from.to_str().unwrap()];
    all.extend_from_slice(args);
    escalade_in(&TestDb::new(state), &[], &all)
}

/// An issue in g-0001 with these photos, as multipart.
fn report(description: &str, photos: &[Vec<u8>]) -> Form {
    let issue = json!({"category": "garbage", "unit": "g-0001", "description": description});
    photos.iter().fold(
        Form::new().part(
            "issue",
            Part::text(issue.to_string())
                .mime_str("application/json")
                .unwrap(),
        ),
        |f, p| {
            f.part(
                "photo",
                Part::bytes(p.clone()).mime_str("image/png").unwrap(),
            )
        },
    )
}

/// Submits issues with photos from 8 clients while `escalade backup` runs in the middle; the
/// daemon is then stopped, the backup restored into a new state directory and the daemon started
/// on it: every issue answered 201 before the backup began is there, with its photos byte for
/// byte, and so is a resolution's photo of the fixed site.
#[test]
fn a_backup_under_load_restores_every_issue_answered_before_it() {
    if !support::sqlite_only("a backup is a copy of the SQLite store") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (live, restored, file) = (
        tmp.path().join("live"),
        tmp.path().join("restored"),
        tmp.path().join("escalade.backup"),
    );
    let live = Arc::new(TestDb::new(&live));
    let token = admin_token(&live, CITY);
    let (daemon, addr) = start(&live, CITY);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let issues = format!("http://{addr}/api/v1/issues");
    let c = client(&token);

    // An issue resolved with a photo of the fixed site.
    let (before_photo, after_photo) = (png(1), png(2));
    let resolved: String = rt.block_on(async {
        let r = c
            .post(&issues)
            .multipart(report(
                "resolved with a photo",
                std::slice::from_ref(&before_photo),
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let id = r.json::<Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string();
        let events = format!("{issues}/{id}/events");
        let r = c
            .post(&events)
            .json(&json!({"event": "acknowledged"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
        let form = Form::new()
            .part(
                "event",
                Part::text(json!({"event": "resolved", "note": "cleared"}).to_string()),
            )
            .part(
                "photo",
                Part::bytes(after_photo.clone())
                    .mime_str("image/png")
                    .unwrap(),
            );
        let r = c.post(&events).multipart(form).send().await.unwrap();
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
        id
    });

    // (id, description, photo, when its 201 arrived)
    type Answered = (String, String, Option<Vec<u8>>, Instant);
    let (answered, began): (Vec<Answered>, Instant) = rt.block_on(async {
        let sent = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for client_no in 0..8u32 {
            let (c, issues, sent) = (c.clone(), issues.clone(), sent.clone());
            tasks.push(tokio::spawn(async move {
                let mut out = Vec::new();
                for i in 0..50u32 {
                    let description = format!("client {client_no} report {i}");
                    let photo = (i % 3 == 0).then(|| png(10 + client_no * 100 + i));
                    let r = c
                        .post(&issues)
                        .multipart(report(&description, photo.as_slice()))
                        .send()
                        .await
                        .unwrap();
                    let status = r.status();
                    let body = r.json::<Value>().await.unwrap();
                    assert_eq!(status, 201, "{body}");
                    let id = body["id"].as_str().unwrap().to_string();
                    out.push((id, description, photo, Instant::now()));
                    sent.fetch_add(1, Ordering::Relaxed);
                }
                out
            }));
        }
        while sent.load(Ordering::Relaxed) < 120 {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        let began = Instant::now();
        let (live, file) = (live.clone(), file.clone());
        let out = tokio::task::spawn_blocking(move || backup(&live, &file, &[]))
            .await
            .unwrap();
        let said = expect(&out, 0, "backup under load");
        assert!(
            said.contains("integrity and photo hashes checked"),
            "{said}"
        );
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.unwrap());
        }
        (all, began)
    });
    drop(daemon);
    let before: Vec<&Answered> = answered.iter().filter(|a| a.3 < began).collect();
    assert!(before.len() >= 120, "{} answered before", before.len());
    assert!(
        before.len() < answered.len(),
        "the backup came after every submission"
    );

    let said = expect(&restore(&restored, &file, &[]), 0, "restore");
    assert!(said.contains("restored"), "{said}");
    let (_daemon, addr) = start(&TestDb::new(&restored), CITY);
    let issues = format!("http://{addr}/api/v1/issues");
    rt.block_on(async {
        let get = |url: String| {
            let c = c.clone();
            async move { c.get(url).send().await.unwrap() }
        };
        for (id, description, photo, _) in before {
            let r = get(format!("{issues}/{id}")).await;
            assert_eq!(
                r.status(),
                200,
                "issue {id} answered before the backup is gone"
            );
            let v: Value = r.json().await.unwrap();
            assert_eq!(v["issue"]["description"], description.as_str());
            if let Some(bytes) = photo {
                assert_eq!(v["issue"]["photos"], json!([sha(bytes)]));
                let r = get(format!("{issues}/{id}/photos/{}", sha(bytes))).await;
                assert_eq!(r.status(), 200, "issue {id}'s photo");
                assert_eq!(&r.bytes().await.unwrap()[..], &bytes[..], "issue {id}");
            }
        }
        let v: Value = get(format!("{issues}/{resolved}"))
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(v["state"]["state"], "resolved");
        for bytes in [&before_photo, &after_photo] {
            let r = get(format!("{issues}/{resolved}/photos/{}", sha(bytes))).await;
            assert_eq!(r.status(), 200);
            assert_eq!(&r.bytes().await.unwrap()[..], &bytes[..]);
        }
        // The restored store takes new issues, numbered after the restored ones.
        let r = c
            .post(&issues)
            .multipart(report("after the restore", &[]))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    });
}

/// A store with two issues, one with a photo, served in-process (the store open, as under a
/// running daemon): the API, its state directory and the photo.
async fn fixture() -> (Api, Vec<u8>) {
    let api = Api::start(CITY, "2026-03-03T10:00:00+08:00").await;
    let photo = png(7);
    for (description, photos) in [("with a photo", vec![photo.clone()]), ("without", vec![])] {
        let r = api
            .admin
            .post(format!("{}/api/v1/issues", api.base))
            .multipart(report(description, &photos))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    (api, photo)
}

/// The fixture's store: its state directory and database.
fn live(api: &Api) -> (PathBuf, PathBuf) {
    (
        api.db.state().to_path_buf(),
        api.db.sqlite_path().unwrap().to_path_buf(),
    )
}

/// `escalade backup` of the fixture's store.
fn backup_of(api: &Api, to: &Path, args: &[&str]) -> Output {
    backup(&api.db, to, args)
}

/// A backup of the fixture in `dir`.
async fn a_backup(dir: &Path) -> (Api, Vec<u8>, PathBuf) {
    let (api, photo) = fixture().await;
    let file = dir.join("good.backup");
    let said = expect(&backup_of(&api, &file, &[]), 0, "backup");
    assert!(
        said.contains("2 issues, 2 events, 1 tokens, 1 photos"),
        "{said}"
    );
    (api, photo, file)
}

/// Runs `sql` on the SQLite file `db`.
async fn edit(db: &Path, sql: &str, bytes: Option<Vec<u8>>) {
    let mut c = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    let q = sqlx::query(sql);
    let q = match bytes {
        Some(b) => q.bind(b),
        None => q,
    };
    q.execute(&mut c).await.unwrap();
    c.close().await.unwrap();
}

#[tokio::test]
async fn a_backup_refuses_an_existing_target_unless_forced() {
    if !support::sqlite_only("a backup is a copy of the SQLite store") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (api, _) = fixture().await;
    let file = tmp.path().join("there.backup");
    std::fs::write(&file, b"an earlier file").unwrap();
    let err = expect(&backup_of(&api, &file, &[]), 2, "an existing target");
    assert!(
        err.contains(&format!(
            "{} exists: name a new file, or give --force to replace it",
            file.display()
        )),
        "{err}"
    );
    assert_eq!(std::fs::read(&file).unwrap(), b"an earlier file");
    assert_eq!(
        files(tmp.path()),
        std::slice::from_ref(&file),
        "nothing else written"
    );
    // A directory is never replaced.
    let dir = tmp.path().join("a-directory");
    std::fs::create_dir(&dir).unwrap();
    let err = expect(&backup_of(&api, &dir, &["--force"]), 2, "a directory");
    assert!(
        err.contains(&format!("{} is a directory, not a file", dir.display())),
        "{err}"
    );
    std::fs::remove_dir(&dir).unwrap();
    // Nor is a file written into a directory that is not there.
    let nowhere = tmp.path().join("no-such-dir").join("x.backup");
    let err = expect(&backup_of(&api, &nowhere, &[]), 2, "no directory");
    assert!(
        err.contains(&format!(
            "cannot write {}: {} is not a directory",
            nowhere.display(),
            nowhere.parent().unwrap().display()
        )),
        "{err}"
    );
    expect(&backup_of(&api, &file, &["--force"]), 0, "--force");
    let said = expect(
        &escalade_in(
            &TestDb::new(tmp.path()),
            &[],
            &["restore", "--check", "--from", file.to_str().unwrap()],
        ),
        0,
        "restore --check",
    );
    assert!(said.contains("2 issues"), "{said}");
}

#[tokio::test]
async fn a_truncated_or_corrupt_backup_is_refused_and_nothing_restored() {
    if !support::sqlite_only("a backup is a copy of the SQLite store") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (_api, _, good) = a_backup(tmp.path()).await;
    let bytes = std::fs::read(&good).unwrap();
    assert!(bytes.len() >= 8 * 4096, "{} bytes", bytes.len());
    let truncated = tmp.path().join("truncated.backup");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    // A page of the issues' table overwritten.
    let corrupt = tmp.path().join("corrupt.backup");
    let mut damaged = bytes.clone();
    for b in &mut damaged[3 * 4096..4 * 4096] {
        *b = 0x5a;
    }
    std::fs::write(&corrupt, &damaged).unwrap();
    let text = tmp.path().join("text.backup");
    std::fs::write(&text, "not a database at all\n".repeat(100)).unwrap();
    let missing = tmp.path().join("missing.backup");
    for (file, says) in [
        (&truncated, "is not a usable backup"),
        (&corrupt, "is not a usable backup"),
        (&text, "is not a usable backup"),
        (&missing, "cannot read"),
    ] {
        let target = tmp.path().join(format!(
            "into-{}",
            file.file_name().unwrap().to_string_lossy()
        ));
        let err = expect(&restore(&target, file, &[]), 2, &file.display().to_string());
        assert!(err.contains(says), "{}: {err}", file.display());
        assert!(err.contains(&file.display().to_string()), "{err}");
        assert!(!target.exists(), "{}: {:?}", file.display(), files(&target));
    }
}

#[tokio::test]
async fn a_store_that_is_not_a_backup_is_refused() {
    if !support::sqlite_only("a backup is a copy of the SQLite store") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (api, _) = fixture().await;
    // The store itself, open under its daemon.
    let (_, db) = live(&api);
    let out = escalade_in(
        &TestDb::new(tmp.path()),
        &[],
        &["restore", "--check", "--from", db.to_str().unwrap()],
    );
    let err = expect(&out, 2, "a store");
    assert!(
        err.contains("was not written by `escalade backup`"),
        "{err}"
    );
    let target = tmp.path().join("target");
    let err = expect(&restore(&target, &db, &[]), 2, "a store restored");
    assert!(
        err.contains("was not written by `escalade backup`"),
        "{err}"
    );
    assert!(!target.exists());
}

#[tokio::test]
async fn a_photo_whose_bytes_do_not_match_its_name_is_refused() {
    if !support::sqlite_only("a backup is a copy of the SQLite store") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (api, photo, good) = a_backup(tmp.path()).await;
    let name = sha(&photo);

    // In the backup: restore refuses before writing anything.
    let bad = tmp.path().join("bad-photo.backup");
    std::fs::copy(&good, &bad).unwrap();
    edit(&bad, "UPDATE backup_photos SET bytes = ?", Some(png(8))).await;
    let target = tmp.path().join("target");
    let err = expect(&restore(&target, &bad, &[]), 2, "a damaged photo");
    assert!(
        err.contains(&format!(
            "photo {name} is damaged: its bytes hash to {}",
            sha(&png(8))
        )),
        "{err}"
    );
    assert!(!target.join("escalade.sqlite").exists());
    assert!(files(&target.join("photos")).is_empty());

    // In the store: backup refuses, leaving no file.
    let (state, _) = live(&api);
    let on_disk = state.join("photos").join(&name[..2]).join(&name);
    std::fs::write(&on_disk, png(9)).unwrap();
    let file = tmp.path().join("of-a-damaged-store.backup");
    let err = expect(
        &backup_of(&api, &file, &[]),
        2,
        "a damaged photo in the store",
    );
    assert!(
        err.contains(&format!(
            "photo {} is damaged: its bytes hash to {}",
            on_disk.display(),
            sha(&png(9))
        )),
        "{err}"
    );
    assert!(!file.exists());
    assert_eq!(files(tmp.path()).len(), 2, "{:?}", files(tmp.path()));
}

#[tokio::test]
async fn a_photo_missing_from_the_store_or_the_backup_is_refused() {
    if !support::sqlite_only("a backup is a copy of the SQLite store") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (api, photo, good) = a_backup(tmp.path()).await;
    let name = sha(&photo);

    let lacking = tmp.path().join("lacking.backup");
    std::fs::copy(&good, &lacking).unwrap();
    edit(&lacking, "DELETE FROM backup_photos", None).await;
    let target = tmp.path().join("target");
    let err = expect(
        &restore(&target, &lacking, &[]),
        2,
        "a backup lacking a photo",
    );
    assert!(
        err.contains(&format!(
            "the store names photo {name}, which the backup does not hold"
        )),
        "{err}"
    );
    assert!(!target.join("escalade.sqlite").exists());

    let (state, _) = live(&api);
    std::fs::remove_file(state.join("photos").join(&name[..2]).join(&name)).unwrap();
    let file = tmp.path().join("of-an-incomplete-store.backup");
    let err = expect(
        &backup_of(&api, &file, &[]),
        2,
        "a photo missing from the store",
    );
    assert!(
        err.contains(&format!("the store names photo {name}, which is not in")),
        "{err}"
    );
    assert!(!file.exists());
}

/// A store that is not empty is not replaced unless forced, and never while a daemon owns it.
#[tokio::test]
async fn a_restore_into_a_store_that_is_not_empty_is_refused_unless_forced() {
    if !support::sqlite_only("a backup is a copy of the SQLite store") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (_api, photo, good) = a_backup(tmp.path()).await;
    let target = tmp.path().join("target");
    let target_db = TestDb::new(&target);
    let token = admin_token(&target_db, CITY);
    let db = target.join("escalade.sqlite");
    let before = std::fs::read(&db).unwrap();
    let err = expect(&restore(&target, &good, &[]), 2, "a store with a token");
    assert!(
        err.contains(&format!(
            "the store is not empty ({} exists): restore into a new state_dir or database, or \
             give --force to replace it",
            db.display()
        )),
        "{err}"
    );
    assert_eq!(std::fs::read(&db).unwrap(), before);

    // Photos alone make a store not empty too.
    let photos_only = tmp.path().join("photos-only");
    let stray = photos_only.join("photos").join("ab").join("ab".repeat(32));
    std::fs::create_dir_all(stray.parent().unwrap()).unwrap();
    std::fs::write(&stray, png(3)).unwrap();
    let err = expect(&restore(&photos_only, &good, &[]), 2, "a store with photos");
    assert!(err.contains("photos holds photos"), "{err}");

    // Never under a running daemon, even forced.
    let (daemon, addr) = start(&target_db, CITY);
    let err = expect(&restore(&target, &good, &["--force"]), 2, "a daemon runs");
    assert!(err.contains("another escalade (pid"), "{err}");
    assert!(err.contains("stop it first"), "{err}");
    drop(daemon);

    // Forced, with the daemon stopped: the backup's store, its token and its photo.
    expect(&restore(&target, &good, &["--force"]), 0, "--force");
    let (_daemon, addr2) = start(&target_db, CITY);
    assert_ne!(addr, addr2);
    let old = client(&token);
    let r = old
        .get(format!("http://{addr2}/api/v1/issues"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "the replaced store's token is gone");
    let new = admin_token(&target_db, CITY);
    let r = client(&new)
        .get(format!("http://{addr2}/api/v1/issues"))
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["issues"].as_array().unwrap().len(), 2, "{v}");
    let path = target
        .join("photos")
        .join(&sha(&photo)[..2])
        .join(sha(&photo));
    assert_eq!(std::fs::read(path).unwrap(), photo);
}

/// A backup of another layout, or taken by a newer escalade (a migration this one does not
/// know), is refused before anything is written.
#[tokio::test]
async fn a_backup_of_another_format_or_a_newer_schema_is_refused() {
    if !support::sqlite_only("a backup is a copy of the SQLite store") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (_api, _, good) = a_backup(tmp.path()).await;
    // The newest migration this escalade knows: the last of its SQLite migrations.
    let latest = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/sqlite"))
        .unwrap()
        .filter_map(|e| {
            e.ok()?
                .file_name()
                .to_str()?
                .split('_')
                .next()?
                .parse::<u32>()
                .ok()
        })
        .max()
        .unwrap();
    let newer = format!(
        "it was taken by a newer escalade (schema 99990101000000; this one knows up to {latest})"
    );
    let cases = [
        (
            "UPDATE backup_meta SET value = '2' WHERE key = 'format'",
            "its format is 2, this escalade reads 1",
        ),
        (
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, \
             execution_time) VALUES (99990101000000, 'from the future', 1, x'00', 0)",
            newer.as_str(),
        ),
    ];
    for (i, (sql, says)) in cases.into_iter().enumerate() {
        let file = tmp.path().join(format!("other-{i}.backup"));
        std::fs::copy(&good, &file).unwrap();
        edit(&file, sql, None).await;
        let target = tmp.path().join(format!("target-{i}"));
        let err = expect(&restore(&target, &file, &[]), 2, sql);
        assert!(err.contains(says), "{sql}: {err}");
        assert!(!target.exists());
    }
}
