//! The tests' own harness: the store's backend is chosen from the environment as documented,
//! and the store a test gets is made and removed for real on the backend of the run (a file in
//! a temp dir on SQLite, a database of its own on PostgreSQL).

use escalade::store::Database;
use sqlx::Connection;

mod support;

use support::{Backend, TestDb, choose_backend};

#[test]
fn the_backend_is_chosen_from_the_environment_as_documented() {
    assert_eq!(choose_backend(None, None), Ok(Backend::Sqlite));
    assert_eq!(choose_backend(Some(""), None), Ok(Backend::Sqlite));
    // A server named while SQLite is chosen is not used.
    assert_eq!(
        choose_backend(Some("sqlite"), Some("postgres://u@127.0.0.1/t")),
        Ok(Backend::Sqlite)
    );
    assert_eq!(
        choose_backend(Some("postgres"), Some("postgres://u@127.0.0.1:5432/t")),
        Ok(Backend::Postgres("postgres://u@127.0.0.1:5432/t".into()))
    );
    for url in [None, Some(""), Some("  ")] {
        let missing = choose_backend(Some("postgres"), url).unwrap_err();
        assert!(
            missing.contains("needs ESCALADE_TEST_DATABASE_URL") && missing.contains("set it"),
            "{missing}"
        );
    }
    let unknown = choose_backend(Some("mysql"), None).unwrap_err();
    assert!(
        unknown.contains("ESCALADE_TEST_BACKEND=mysql") && unknown.contains("postgres"),
        "{unknown}"
    );
}

/// Made and dropped inside a test's runtime, as most tests hold their store.
#[tokio::test]
async fn a_tests_store_is_made_and_removed_for_real() {
    match support::backend() {
        Backend::Sqlite => sqlite_file_in_a_temp_dir().await,
        Backend::Postgres(server) => postgres_database_of_its_own(server).await,
    }
}

async fn sqlite_file_in_a_temp_dir() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let db = TestDb::new(&state);
    let Database::Sqlite(file) = db.database() else {
        panic!("not an SQLite file: {:?}", db.database())
    };
    assert!(file.starts_with(&state), "{}", file.display());
    assert!(tmp.path().starts_with(std::env::temp_dir()));
    // Where the binary looks when given only the state directory.
    assert_eq!(file, state.join("escalade.sqlite"));
    assert_eq!(db.env(), []);
    assert!(
        !state.exists(),
        "nothing is made before the store is opened"
    );
    let store = db.open(Default::default()).await;
    store.ping().await.unwrap();
    store.close().await;
    assert!(file.exists());
    drop(db);
    drop(tmp);
    assert!(!file.exists(), "{} outlived its temp dir", file.display());
    assert!(!state.exists());
}

async fn postgres_database_of_its_own(server: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let db = TestDb::new(tmp.path());
    let Database::Postgres(url) = db.database() else {
        panic!("not a PostgreSQL database: {:?}", db.database())
    };
    let name = reqwest::Url::parse(&url).unwrap().path()[1..].to_string();
    assert!(name.starts_with("escalade_test_"), "{name}");
    assert_eq!(db.env(), [("ESCALADE_DATABASE", url.clone())]);
    let other = TestDb::new(tmp.path());
    assert_ne!(other.database(), db.database(), "two tests, one database");
    drop(other);

    // Read through a connection of the test's own, not the harness's.
    let mut admin = sqlx::PgConnection::connect(server).await.unwrap();
    assert_eq!(named(&mut admin, &name).await, 1, "{name} was not made");
    // The URL the store and the binary are given leads to that database.
    let mut inside = sqlx::PgConnection::connect(&url).await.unwrap();
    let current: String = sqlx::query_scalar("SELECT current_database()::text")
        .fetch_one(&mut inside)
        .await
        .unwrap();
    assert_eq!(current, name);

    // Dropped with a connection still open, as a store still held would be: it goes all the
    // same, and the connection with it.
    drop(db);
    assert_eq!(named(&mut admin, &name).await, 0, "{name} was not dropped");
    assert!(
        sqlx::query("SELECT 1").execute(&mut inside).await.is_err(),
        "a connection to the dropped database still answers"
    );
    admin.close().await.unwrap();
}

/// How many databases on the server of `admin` are called `name`.
async fn named(admin: &mut sqlx::PgConnection, name: &str) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM pg_database WHERE datname::text = $1")
        .bind(name)
        .fetch_one(admin)
        .await
        .unwrap()
}
