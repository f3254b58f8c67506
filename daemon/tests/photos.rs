//! Photos on issues through the API, in-process on port 0 against a real store: multipart
//! submissions, the files under the state directory, reading them back, and bad photos refused
//! with nothing stored.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use chrono::{DateTime, Utc};
use escalade::api::{AppState, serve};
use escalade::engine::{Engine, ManualClock};
use escalade::photos::{PhotoLimits, PhotoStore};
use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};

mod support;

use support::{PNG, call, client, files, sha, token};

const MINI: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../rules/tests/fixtures/mini");

/// A 1×1 grey baseline JPEG (JFIF, optimised Huffman tables).
const JPEG: [u8; 159] = [
    0xff, 0xd8, 0xff, 0xe0, 0x00, 0x10, 0x4a, 0x46, 0x49, 0x46, 0x00, 0x01, 0x01, 0x00, 0x00, 0x01,
    0x00, 0x01, 0x00, 0x00, 0xff, 0xdb, 0x00, 0x43, 0x00, 0x10, 0x0b, 0x0c, 0x0e, 0x0c, 0x0a, 0x10,
    0x0e, 0x0d, 0x0e, 0x12, 0x11, 0x10, 0x13, 0x18, 0x28, 0x1a, 0x18, 0x16, 0x16, 0x18, 0x31, 0x23,
    0x25, 0x1d, 0x28, 0x3a, 0x33, 0x3d, 0x3c, 0x39, 0x33, 0x38, 0x37, 0x40, 0x48, 0x5c, 0x4e, 0x40,
    0x44, 0x57, 0x45, 0x37, 0x38, 0x50, 0x6d, 0x51, 0x57, 0x5f, 0x62, 0x67, 0x68, 0x67, 0x3e, 0x4d,
    0x71, 0x79, 0x70, 0x64, 0x78, 0x5c, 0x65, 0x67, 0x63, 0xff, 0xc0, 0x00, 0x0b, 0x08, 0x00, 0x01,
    0x00, 0x01, 0x01, 0x01, 0x11, 0x00, 0xff, 0xc4, 0x00, 0x14, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x05, 0xff, 0xc4, 0x00, 0x14,
    0x10, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0xff, 0xda, 0x00, 0x08, 0x01, 0x01, 0x00, 0x00, 0x3f, 0x00, 0x15, 0xff, 0xd9,
];

/// The limits of the test server: small, so that the refusals are cheap to provoke.
const LIMITS: PhotoLimits = PhotoLimits {
    max_photo_bytes: 4096,
    max_photos: 3,
};

struct Server {
    base: String,
    engine: Arc<Engine>,
    /// An admin token.
    admin: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    _db: support::TestDb,
    dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

async fn start() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let db = support::TestDb::new(dir.path());
    let now: DateTime<Utc> = "2026-03-02T02:00:00Z".parse().unwrap();
    let engine = Arc::new(support::engine(&db, MINI, Arc::new(ManualClock::new(now))).await);
    let admin = token(&engine, "admin", None).await;
    let state = Arc::new(AppState {
        rules: support::steward(&engine, MINI).await,
        engine: engine.clone(),
        scheduler_running: Arc::new(AtomicBool::new(true)),
        photos: Arc::new(PhotoStore::open(dir.path()).unwrap()),
        photo_limits: LIMITS,
        delivery: None,
        links: None,
        turns: Arc::new(escalade::api::Turns::new(Default::default(), 1 << 16)),
        console: Default::default(),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(serve(listener, state, async {
        let _ = stopped.await;
    }));
    Server {
        base,
        engine,
        admin,
        stop: Some(stop),
        _db: db,
        dir,
    }
}

fn garbage() -> Value {
    json!({"category": "garbage", "unit": "g1", "description": "bins overflowing", "reporter": "p-g1"})
}

fn issue_part(issue: &Value) -> Part {
    Part::text(issue.to_string())
        .mime_str("application/json")
        .unwrap()
}

fn photo_part(bytes: &[u8], name: &str, content_type: &str) -> Part {
    Part::bytes(bytes.to_vec())
        .file_name(name.to_string())
        .mime_str(content_type)
        .unwrap()
}

/// A form with the issue first, then the photos (bytes, file name, declared type).
fn form(issue: &Value, photos: &[(&[u8], &str, &str)]) -> Form {
    photos.iter().fold(
        Form::new().part("issue", issue_part(issue)),
        |f, (bytes, name, ct)| f.part("photo", photo_part(bytes, name, ct)),
    )
}

impl Server {
    fn issues(&self) -> String {
        format!("{}/api/v1/issues", self.base)
    }

    fn photo_path(&self, hash: &str) -> std::path::PathBuf {
        self.dir.path().join("photos").join(&hash[..2]).join(hash)
    }

    /// How many issues the admin sees.
    async fn issue_count(&self) -> usize {
        let (status, body) = call(client(&self.admin).get(self.issues())).await;
        assert_eq!(status, 200, "{body}");
        body["issues"].as_array().unwrap().len()
    }

    async fn outbox_len(&self) -> usize {
        let (_, body) = call(client(&self.admin).get(format!("{}/api/v1/outbox", self.base))).await;
        body["messages"].as_array().unwrap().len()
    }
}

#[tokio::test]
async fn photos_are_stored_by_hash_and_served_to_whoever_may_see_the_issue() {
    let s = start().await;
    let admin = client(&s.admin);
    let reporter = client(&support::person_token(&s.engine, "p-g1", None, None).await);
    let (png, jpeg) = (sha(&PNG), sha(&JPEG));

    let submit = |key: &'static str| {
        reporter
            .post(s.issues())
            .header("idempotency-key", key)
            .multipart(form(
                &garbage(),
                &[
                    (&PNG, "bins.png", "image/png"),
                    (&JPEG, "bins.jpg", "image/jpeg"),
                ],
            ))
    };
    let (status, body) = call(submit("photos-1")).await;
    assert_eq!(status, 201, "{body}");
    let id = body["id"].as_str().unwrap().to_string();
    assert_eq!(body["issue"]["photos"], json!([png, jpeg]));
    assert_eq!(body["state"]["departments"], json!(["urban"]));
    assert_eq!(std::fs::read(s.photo_path(&png)).unwrap(), PNG);
    assert_eq!(std::fs::read(s.photo_path(&jpeg)).unwrap(), JPEG);
    assert_eq!(files(&s.dir.path().join("photos")).len(), 2);

    // A retry with the same key (and a new boundary) is the first answer, not a new issue.
    let r = submit("photos-1").send().await.unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(r.headers()["idempotent-replayed"], "true");
    assert_eq!(r.json::<Value>().await.unwrap()["id"], id.as_str());
    assert_eq!(s.issue_count().await, 1);
    // The same key with other photos is refused, and the new photo is not written.
    let other = [&PNG[..], b"\0"].concat();
    let (status, body) = call(
        reporter
            .post(s.issues())
            .header("idempotency-key", "photos-1")
            .multipart(form(&garbage(), &[(&other, "other.png", "image/png")])),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["code"], "idempotency_key_reused");
    assert!(!s.photo_path(&sha(&other)).exists());
    assert_eq!(s.issue_count().await, 1);

    // The issue lists its photos; each is served with the type its bytes tell.
    let (status, body) = call(admin.get(format!("{}/{id}", s.issues()))).await;
    assert_eq!(status, 200);
    assert_eq!(body["issue"]["photos"], json!([png, jpeg]));
    for (hash, bytes, ct) in [
        (&png, &PNG[..], "image/png"),
        (&jpeg, &JPEG[..], "image/jpeg"),
    ] {
        for c in [&admin, &reporter] {
            let r = c
                .get(format!("{}/{id}/photos/{hash}", s.issues()))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            assert_eq!(r.headers()["content-type"], ct);
            assert_eq!(r.bytes().await.unwrap(), bytes);
        }
    }

    // Out of scope: 403. Not among the issue's photos, or no such issue: 404.
    let g2 = client(&token(&s.engine, "reporter", Some("g2")).await);
    let (status, body) = call(g2.get(format!("{}/{id}/photos/{png}", s.issues()))).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("forbidden"))
    );
    let police = client(&token(&s.engine, "department", Some("police")).await);
    let (status, _) = call(police.get(format!("{}/{id}/photos/{png}", s.issues()))).await;
    assert_eq!(status, 403);
    for path in [
        format!("{id}/photos/{}", "0".repeat(64)),
        format!("{id}/photos/..%2F..%2Fescalade.sqlite"),
        format!("999/photos/{png}"),
    ] {
        let (status, body) = call(admin.get(format!("{}/{path}", s.issues()))).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (404, Some("not_found")),
            "{path}"
        );
    }

    // A JSON submission may name photos already stored.
    let mut listed = garbage();
    listed["photos"] = json!([jpeg]);
    let (status, body) = call(admin.post(s.issues()).json(&listed)).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["issue"]["photos"], json!([jpeg]));
    // The same photo twice is stored once and listed once.
    let (status, body) = call(admin.post(s.issues()).multipart(form(
        &garbage(),
        &[(&PNG, "a.png", "image/png"), (&PNG, "b.png", "image/png")],
    )))
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["issue"]["photos"], json!([png]));
    // No photos at all is a plain submission.
    let (status, body) = call(admin.post(s.issues()).multipart(form(&garbage(), &[]))).await;
    assert_eq!(status, 201, "{body}");
    assert!(body["issue"].get("photos").is_none(), "{body}");
    assert_eq!(files(&s.dir.path().join("photos")).len(), 2);
}

/// What is sent, the request, and the status, code, field and words of the message expected.
type Case<'a> = (
    &'a str,
    reqwest::RequestBuilder,
    u16,
    &'a str,
    Option<&'a str>,
    Vec<String>,
);

#[tokio::test]
async fn bad_photos_are_refused_and_nothing_is_stored() {
    let s = start().await;
    let admin = client(&s.admin);
    let g2 = client(&token(&s.engine, "reporter", Some("g2")).await);
    let g1 = client(&support::person_token(&s.engine, "p-g1", None, None).await);
    let mut as_the_mayor = garbage();
    as_the_mayor["reporter"] = json!("p-mayor");
    let text = b"these are not the bytes of an image\n";
    let big = [&PNG[..], &[0u8; 4096][..]].concat();
    let huge = [&JPEG[..], &vec![0u8; 1 << 20][..]].concat();
    let png = &PNG[..];
    let jpeg = &JPEG[..];
    // A PNG signature, then a web page: it begins like a PNG and is none.
    let disguised = [&PNG[..8], &b"<html><script>alert(1)</script></html>"[..]].concat();
    // A PNG whose header chunk is damaged (its checksum no longer holds).
    let mut damaged = PNG.to_vec();
    damaged[20] ^= 0x40;
    let mut listing_unknown = garbage();
    listing_unknown["photos"] = json!(["0".repeat(64)]);
    let mut listing_a_path = garbage();
    listing_a_path["photos"] = json!(["../../escalade.sqlite"]);
    let mut photos_in_the_part = garbage();
    photos_in_the_part["photos"] = json!([sha(png)]);
    let only_photo = Form::new().part("photo", photo_part(png, "a.png", "image/png"));
    let photo_first = Form::new()
        .part("photo", photo_part(png, "a.png", "image/png"))
        .part("issue", issue_part(&garbage()));
    let unknown_part =
        form(&garbage(), &[(png, "a.png", "image/png")]).part("notes", Part::text("hello"));

    let cases: Vec<Case> = vec![
        (
            "a photo over the limit",
            admin.post(s.issues()).multipart(form(
                &garbage(),
                &[(png, "a.png", "image/png"), (&big, "big.png", "image/png")],
            )),
            413,
            "photo_too_large",
            Some("photo"),
            vec!["photo 2".into(), "big.png".into(), "4096".into()],
        ),
        (
            "a photo far over every limit",
            admin
                .post(s.issues())
                .multipart(form(&garbage(), &[(&huge, "huge.jpg", "image/jpeg")])),
            413,
            "photo_too_large",
            Some("photo"),
            vec![],
        ),
        (
            "text labelled image/jpeg",
            admin
                .post(s.issues())
                .multipart(form(&garbage(), &[(text, "leak.jpg", "image/jpeg")])),
            415,
            "unsupported_photo",
            Some("photo"),
            vec!["image/jpeg".into(), "text".into()],
        ),
        (
            "a PNG labelled image/jpeg",
            admin.post(s.issues()).multipart(form(
                &garbage(),
                &[(jpeg, "a.jpg", "image/jpeg"), (png, "b.jpg", "image/jpeg")],
            )),
            415,
            "unsupported_photo",
            Some("photo"),
            vec![
                "photo 2".into(),
                "declared image/jpeg".into(),
                "image/png".into(),
            ],
        ),
        (
            "a JPEG labelled text/plain",
            admin
                .post(s.issues())
                .multipart(form(&garbage(), &[(jpeg, "a.txt", "text/plain")])),
            415,
            "unsupported_photo",
            Some("photo"),
            vec!["text/plain".into(), "image/jpeg".into()],
        ),
        (
            "a PNG signature followed by HTML",
            admin
                .post(s.issues())
                .multipart(form(&garbage(), &[(&disguised, "a.png", "image/png")])),
            415,
            "unsupported_photo",
            Some("photo"),
            vec!["begins like image/png but is not one".into()],
        ),
        (
            "a PNG with a damaged header",
            admin
                .post(s.issues())
                .multipart(form(&garbage(), &[(&damaged, "b.png", "image/png")])),
            415,
            "unsupported_photo",
            Some("photo"),
            vec!["begins like image/png but is not one".into()],
        ),
        (
            "a GIF",
            admin.post(s.issues()).multipart(form(
                &garbage(),
                &[(b"GIF89a\x01\x00\x01\x00\x00\x00\x00;", "a.gif", "image/gif")],
            )),
            415,
            "unsupported_photo",
            Some("photo"),
            vec!["image/gif".into()],
        ),
        (
            "too many photos",
            admin.post(s.issues()).multipart(form(
                &garbage(),
                &[
                    (png, "1.png", "image/png"),
                    (jpeg, "2.jpg", "image/jpeg"),
                    (png, "3.png", "image/png"),
                    (jpeg, "4.jpg", "image/jpeg"),
                ],
            )),
            413,
            "too_many_photos",
            Some("photo"),
            vec!["3".into()],
        ),
        (
            "no issue part",
            admin.post(s.issues()).multipart(only_photo),
            422,
            "invalid",
            Some("issue"),
            vec![],
        ),
        (
            "the issue part after a photo",
            admin.post(s.issues()).multipart(photo_first),
            422,
            "invalid",
            Some("issue"),
            vec![],
        ),
        (
            // RFC 2046: a multipart body has at least one part.
            "an empty form",
            admin.post(s.issues()).multipart(Form::new()),
            400,
            "bad_body",
            None,
            vec![],
        ),
        (
            "an unknown part",
            admin.post(s.issues()).multipart(unknown_part),
            400,
            "invalid",
            Some("notes"),
            vec!["notes".into()],
        ),
        (
            "photos named inside the issue part",
            admin
                .post(s.issues())
                .multipart(form(&photos_in_the_part, &[(png, "a.png", "image/png")])),
            422,
            "invalid",
            Some("photos"),
            vec![],
        ),
        (
            "an issue the rules refuse, with a good photo",
            admin.post(s.issues()).multipart(form(
                &json!({"category": "nope", "unit": "g1", "description": "x"}),
                &[(png, "a.png", "image/png")],
            )),
            422,
            "invalid",
            Some("category"),
            vec![],
        ),
        (
            "malformed issue JSON",
            admin.post(s.issues()).multipart(
                Form::new()
                    .part("issue", Part::text("{\"category\": "))
                    .part("photo", photo_part(png, "a.png", "image/png")),
            ),
            400,
            "malformed_json",
            None,
            vec![],
        ),
        (
            "a reporter out of scope, with a good photo",
            g2.post(s.issues())
                .multipart(form(&garbage(), &[(png, "a.png", "image/png")])),
            403,
            "forbidden",
            Some("unit"),
            vec![],
        ),
        (
            "a person's token naming another reporter, with a good photo",
            g1.post(s.issues())
                .multipart(form(&as_the_mayor, &[(png, "a.png", "image/png")])),
            403,
            "forbidden",
            Some("reporter"),
            vec![],
        ),
        (
            "no token",
            reqwest::Client::new()
                .post(s.issues())
                .multipart(form(&garbage(), &[(png, "a.png", "image/png")])),
            401,
            "missing_token",
            None,
            vec![],
        ),
        (
            "JSON naming a photo never stored",
            admin.post(s.issues()).json(&listing_unknown),
            422,
            "invalid",
            Some("photos"),
            vec!["0000".into()],
        ),
        (
            "JSON naming a path, not a photo",
            admin.post(s.issues()).json(&listing_a_path),
            422,
            "invalid",
            Some("photos"),
            vec![],
        ),
    ];
    for (what, req, status, code, field, words) in cases {
        let (got, body) = call(req).await;
        assert_eq!(got, status, "{what}: {body}");
        assert_eq!(body["error"]["code"], code, "{what}: {body}");
        if let Some(f) = field {
            assert_eq!(body["error"]["field"], f, "{what}: {body}");
        }
        let message = body["error"]["message"].as_str().unwrap();
        for w in words {
            assert!(message.contains(&w), "{what}: `{w}` not in {message}");
        }
        // Nothing changed: no issue, no message, no photo file.
        assert_eq!(s.issue_count().await, 0, "{what}");
        assert_eq!(s.outbox_len().await, 0, "{what}");
        assert_eq!(
            files(&s.dir.path().join("photos")),
            Vec::<std::path::PathBuf>::new(),
            "{what}"
        );
    }

    // And the same good photo is taken afterwards.
    let (status, body) = call(
        admin
            .post(s.issues())
            .multipart(form(&garbage(), &[(png, "a.png", "image/png")])),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert!(s.photo_path(&sha(png)).is_file());
}

/// Every photo file under the store (not the uploads being received), by name.
fn photo_files(s: &Server) -> std::collections::BTreeSet<String> {
    files(&s.dir.path().join("photos"))
        .into_iter()
        .filter(|p| !p.starts_with(s.dir.path().join("photos").join(".uploads")))
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_submissions_with_one_key_leave_no_photo_that_nothing_names() {
    let s = start().await;
    let admin = client(&s.admin);
    let store = PhotoStore::open(s.dir.path()).unwrap();
    let png = &PNG[..];
    let jpeg = &JPEG[..];
    for round in 0..8 {
        let key = format!("retry-{round}");
        let a = admin
            .post(s.issues())
            .header("idempotency-key", &key)
            .multipart(form(&garbage(), &[(png, "a.png", "image/png")]));
        let b = admin
            .post(s.issues())
            .header("idempotency-key", &key)
            .multipart(form(&garbage(), &[(jpeg, "b.jpg", "image/jpeg")]));
        let ((sa, ba), (sb, bb)) = tokio::join!(call(a), call(b));
        // One is taken; the other, a different request under the same key, is refused.
        let mut statuses = [sa, sb];
        statuses.sort();
        assert_eq!(statuses, [201, 422], "{ba} {bb}");
    }
    // A commit refused after its photos were kept may leave a file behind; the sweep removes
    // whatever nothing names, and nothing else.
    s.engine
        .sweep_photos(&store, std::time::Duration::ZERO)
        .await
        .unwrap();
    let named = s.engine.store().photo_names().await.unwrap();
    assert_eq!(
        photo_files(&s),
        named
            .iter()
            .cloned()
            .collect::<std::collections::BTreeSet<_>>()
    );
    assert!(!named.is_empty());
    // What the issues name is still served.
    let (_, list) = call(admin.get(s.issues())).await;
    for i in list["issues"].as_array().unwrap() {
        let id = i["id"].as_str().unwrap();
        let hash = i["issue"]["photos"][0].as_str().unwrap();
        let r = admin
            .get(format!("{}/api/v1/issues/{id}/photos/{hash}", s.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_crash_leaves_in_the_photo_store_is_removed_and_nothing_named_is() {
    let s = start().await;
    let admin = client(&s.admin);
    let (status, body) = call(
        admin
            .post(s.issues())
            .multipart(form(&garbage(), &[(&PNG[..], "a.png", "image/png")])),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let named = sha(&PNG);
    let root = s.dir.path().join("photos");
    // A photo half received when the daemon stopped.
    std::fs::write(root.join(".uploads").join("4242.7"), b"half a photo").unwrap();
    // A photo kept by a request whose commit never happened, an hour and more ago, and one
    // kept a moment ago by a request that may still commit.
    let old = sha(&JPEG);
    let fresh = "f".repeat(64);
    for name in [&old, &fresh] {
        let dir = root.join(&name[..2]);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), JPEG).unwrap();
    }
    let two_hours_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(7200);
    std::fs::File::options()
        .write(true)
        .open(root.join(&old[..2]).join(&old))
        .unwrap()
        .set_modified(two_hours_ago)
        .unwrap();
    std::fs::File::options()
        .write(true)
        .open(root.join(&named[..2]).join(&named))
        .unwrap()
        .set_modified(two_hours_ago)
        .unwrap();

    // Opening the store (a start) clears the uploads; the hourly sweep the rest.
    let store = PhotoStore::open(s.dir.path()).unwrap();
    assert_eq!(
        files(&root.join(".uploads")),
        Vec::<std::path::PathBuf>::new()
    );
    let removed = s
        .engine
        .sweep_photos(&store, std::time::Duration::from_secs(3600))
        .await
        .unwrap();
    assert_eq!(removed, 1);
    assert_eq!(
        photo_files(&s),
        [named.clone(), fresh].into_iter().collect()
    );
}
