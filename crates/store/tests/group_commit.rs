//! The SQLite writer: concurrent writes share commits, and a failing write
//! rolls back alone.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::sync::Arc;

use strongroom_store::StoreError;
use strongroom_store::sqlite::Database;

const SCHEMA: &[&str] = &["CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT NOT NULL)"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_write_rolls_back_alone_and_the_rest_commit() {
    let dir = tempfile::TempDir::new().unwrap();
    let db = Database::open(&dir.path().join("t.db"), SCHEMA).unwrap();
    let mut tasks = Vec::new();
    for k in 0..200i64 {
        let db = Arc::clone(&db);
        tasks.push(tokio::spawn(async move {
            db.write(move |c| {
                c.execute("INSERT INTO t (k, v) VALUES (?1, 'x')", [k])
                    .map_err(|e| StoreError::Backend {
                        op: "t",
                        detail: e.to_string(),
                    })?;
                if k % 10 == 3 {
                    // Fails after writing: its own insert must be undone.
                    return Err(StoreError::Conflict("deliberate"));
                }
                Ok(k)
            })
            .await
        }));
    }
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => ok += 1,
            Err(StoreError::Conflict("deliberate")) => {}
            Err(e) => panic!("unexpected error {e}"),
        }
    }
    assert_eq!(ok, 180);
    let rows: i64 = db
        .read(|c| {
            Ok(c.query_row("SELECT count(*) FROM t", [], |r| r.get(0))
                .unwrap())
        })
        .unwrap();
    assert_eq!(rows, 180, "failed jobs' rows must be rolled back");
    let failed_present: i64 = db
        .read(|c| {
            Ok(
                c.query_row("SELECT count(*) FROM t WHERE k % 10 = 3", [], |r| r.get(0))
                    .unwrap(),
            )
        })
        .unwrap();
    assert_eq!(failed_present, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_reopening_and_files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::TempDir::new().unwrap();
    let path = dir.path().join("t.db");
    {
        let db = Database::open(&path, SCHEMA).unwrap();
        db.write(|c| {
            c.execute("INSERT INTO t (k, v) VALUES (1, 'kept')", [])
                .map(|_| ())
                .map_err(|e| StoreError::Backend {
                    op: "t",
                    detail: e.to_string(),
                })
        })
        .await
        .unwrap();
    }
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let db = Database::open(&path, SCHEMA).unwrap();
    let v: String = db
        .read(|c| {
            Ok(c.query_row("SELECT v FROM t WHERE k = 1", [], |r| r.get(0))
                .unwrap())
        })
        .unwrap();
    assert_eq!(v, "kept");
}

#[test]
fn a_newer_schema_is_refused() {
    let dir = tempfile::TempDir::new().unwrap();
    let path = dir.path().join("t.db");
    drop(Database::open(&path, &["CREATE TABLE a (x)", "CREATE TABLE b (x)"]).unwrap());
    let err = Database::open(&path, &["CREATE TABLE a (x)"]).unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::SchemaTooNew {
                found: 2,
                supported: 1
            }
        ),
        "{err}"
    );
}
