//! The SQLite central store: duplicate detection through its in-memory
//! fingerprint index, across rollbacks, reopening, old files and a second
//! opener.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::Path;
use std::sync::{Arc, Mutex};

use strongroom_store::sqlite::rusqlite::{Connection, params};
use strongroom_store::sqlite::{Database, Shadow, SqliteCentralStore};
use strongroom_store::{
    CentralStore, InsertOutcome, Scoped, SealSwap, SecretRecord, SecretState, StoreError,
    TenantScope,
};

fn record(token: &str, fingerprint: u8, unique: bool) -> SecretRecord {
    SecretRecord {
        token: token.to_owned(),
        tenant: "t1".into(),
        class: "voucher_code".into(),
        key_version: 1,
        fingerprint: Some([fingerprint; 32]),
        fingerprint_unique: unique,
        metadata: None,
        created_at: 1,
        window_closes_at: 2,
        created_by: "p".into(),
        state: SecretState::Active,
        seal: vec![1],
    }
}

/// The row's seal as the vault would swap it (the store only compares).
fn swap() -> SealSwap {
    SealSwap {
        from: vec![1],
        to: vec![2],
    }
}

async fn insert(
    store: &SqliteCentralStore,
    records: Vec<SecretRecord>,
) -> Result<Vec<InsertOutcome>, StoreError> {
    store.insert_secrets(records.into()).await
}

async fn find(store: &SqliteCentralStore, fingerprint: u8) -> Option<String> {
    store
        .find_fingerprints("t1", "voucher_code", &[[fingerprint; 32]])
        .await
        .unwrap()
        .pop()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolled_back_insert_leaves_no_duplicate_behind() {
    let dir = tempfile::TempDir::new().unwrap();
    let store = SqliteCentralStore::open(&dir.path().join("central.db")).unwrap();
    insert(&store, vec![record("tok-a", 1, true)])
        .await
        .unwrap();

    // The second record's token exists, so the whole job fails after the
    // first record was inserted: both must be undone, index included.
    let failed = insert(
        &store,
        vec![record("tok-b", 2, true), record("tok-a", 3, true)],
    )
    .await;
    assert!(matches!(failed, Err(StoreError::Conflict(_))), "{failed:?}");
    assert_eq!(find(&store, 2).await, None);
    assert!(
        store
            .get_secret("tok-b", &TenantScope::All)
            .await
            .unwrap()
            .found()
            .is_none()
    );
    let again = insert(&store, vec![record("tok-c", 2, true)])
        .await
        .unwrap();
    assert_eq!(again, vec![InsertOutcome::Inserted]);

    // Duplicates are still found, and a deletion frees the value.
    let dup = insert(&store, vec![record("tok-d", 1, true)])
        .await
        .unwrap();
    assert_eq!(
        dup,
        vec![InsertOutcome::Duplicate {
            existing: "tok-a".into()
        }]
    );
    assert!(store.mark_deleted("tok-a", "t1", swap()).await.unwrap());
    assert_eq!(find(&store, 1).await, None);
    let freed = insert(&store, vec![record("tok-e", 1, true)])
        .await
        .unwrap();
    assert_eq!(freed, vec![InsertOutcome::Inserted]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_index_is_rebuilt_on_reopening() {
    let dir = tempfile::TempDir::new().unwrap();
    let path = dir.path().join("central.db");
    {
        let store = SqliteCentralStore::open(&path).unwrap();
        insert(
            &store,
            vec![record("tok-a", 7, true), record("tok-b", 7, false)],
        )
        .await
        .unwrap();
    }
    let store = SqliteCentralStore::open(&path).unwrap();
    assert_eq!(find(&store, 7).await.as_deref(), Some("tok-a"));
    assert!(store.mark_deleted("tok-a", "t1", swap()).await.unwrap());
    // The allowed copy still holds the value.
    assert_eq!(find(&store, 7).await.as_deref(), Some("tok-b"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_writer_is_refused_while_the_first_is_open() {
    let dir = tempfile::TempDir::new().unwrap();
    let path = dir.path().join("central.db");
    let first = SqliteCentralStore::open(&path).unwrap();
    let started = std::time::Instant::now();
    let second = SqliteCentralStore::open(&path);
    assert!(
        matches!(second, Err(StoreError::Locked { .. })),
        "{second:?}"
    );
    assert!(started.elapsed() >= strongroom_store::sqlite::LOCK_WAIT);
    drop(first);
    // The lock goes with the first store's writer thread.
    SqliteCentralStore::open(&path).unwrap();
}

/// The schema as the first release wrote it: fingerprints in a unique index,
/// `fp_dup` 0 for an original and a random number for an allowed copy.
fn write_version_1(path: &Path) {
    let c = Connection::open(path).unwrap();
    c.execute_batch(
        "CREATE TABLE secrets (token TEXT PRIMARY KEY, tenant TEXT NOT NULL, class TEXT NOT NULL,
             key_version INTEGER NOT NULL, fingerprint BLOB, fp_dup INTEGER NOT NULL, metadata TEXT,
             created_at INTEGER NOT NULL, window_closes_at INTEGER NOT NULL,
             created_by TEXT NOT NULL, state TEXT NOT NULL);
         CREATE UNIQUE INDEX secrets_fingerprint ON secrets (fingerprint, fp_dup);
         CREATE TABLE principals (id TEXT PRIMARY KEY, client_id TEXT NOT NULL UNIQUE,
             name TEXT NOT NULL UNIQUE, roles TEXT NOT NULL, tenants TEXT NOT NULL,
             secret_hash TEXT NOT NULL, created_at INTEGER NOT NULL,
             disabled INTEGER NOT NULL DEFAULT 0, created_by TEXT NOT NULL,
             pending_approval INTEGER NOT NULL);
         PRAGMA user_version = 1;",
    )
    .unwrap();
    for (token, dup) in [("old-a", 0i64), ("old-b", 8_123_456_789)] {
        c.execute(
            "INSERT INTO secrets VALUES (?1, 't1', 'voucher_code', 1, ?2, ?3, NULL, 1, 2, 'p', 'active')",
            params![token, [9u8; 32].as_slice(), dup],
        )
        .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_of_the_first_schema_are_migrated() {
    let dir = tempfile::TempDir::new().unwrap();
    let path = dir.path().join("central.db");
    write_version_1(&path);
    let store = SqliteCentralStore::open(&path).unwrap();
    assert!(
        store
            .get_secret("old-a", &TenantScope::All)
            .await
            .unwrap()
            .found()
            .unwrap()
            .fingerprint_unique
    );
    assert!(
        !store
            .get_secret("old-b", &TenantScope::All)
            .await
            .unwrap()
            .found()
            .unwrap()
            .fingerprint_unique
    );
    let dup = insert(&store, vec![record("new", 9, true)]).await.unwrap();
    assert_eq!(
        dup,
        vec![InsertOutcome::Duplicate {
            existing: "old-a".into()
        }]
    );
}

/// A shadow that mirrors a table's keys, as the fingerprint index does.
#[derive(Default)]
struct Mirror {
    keys: Mutex<(Vec<i64>, usize)>,
}

impl Mirror {
    fn push(&self, k: i64) {
        self.keys.lock().unwrap().0.push(k);
    }
}

impl Shadow for Mirror {
    fn mark(&self) -> usize {
        self.keys.lock().unwrap().0.len()
    }
    fn undo_to(&self, mark: usize) {
        let mut keys = self.keys.lock().unwrap();
        let committed = keys.1;
        keys.0.truncate(mark.max(committed));
    }
    fn commit(&self) {
        let mut keys = self.keys.lock().unwrap();
        keys.1 = keys.0.len();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shadow_state_keeps_exactly_what_was_committed() {
    let dir = tempfile::TempDir::new().unwrap();
    let mirror = Arc::new(Mirror::default());
    let shadow = mirror.clone();
    let db = Database::open_exclusive(
        &dir.path().join("m.db"),
        &["CREATE TABLE t (k INTEGER PRIMARY KEY)"],
        move |_| Ok(Some(shadow as Arc<dyn Shadow>)),
    )
    .unwrap();
    let mut tasks = Vec::new();
    for k in 0..300i64 {
        let (db, mirror) = (db.clone(), mirror.clone());
        tasks.push(tokio::spawn(async move {
            db.write(move |c| {
                c.execute("INSERT INTO t (k) VALUES (?1)", [k]).unwrap();
                mirror.push(k);
                if k % 7 == 0 {
                    return Err(StoreError::Conflict("deliberate"));
                }
                Ok(())
            })
            .await
        }));
    }
    for t in tasks {
        let _ = t.await.unwrap();
    }
    let mut in_table: Vec<i64> = db
        .read(|c| {
            let mut s = c.prepare("SELECT k FROM t").unwrap();
            Ok(s.query_map([], |r| r.get(0))
                .unwrap()
                .map(Result::unwrap)
                .collect())
        })
        .unwrap();
    let mut in_memory = mirror.keys.lock().unwrap().0.clone();
    in_table.sort_unstable();
    in_memory.sort_unstable();
    assert_eq!(in_table.len(), 300 - 43);
    assert_eq!(in_memory, in_table);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_of_other_tenants_never_leave_the_store() {
    let dir = tempfile::TempDir::new().unwrap();
    let store = SqliteCentralStore::open(&dir.path().join("central.db")).unwrap();
    insert(&store, vec![record("tok-a", 1, true)])
        .await
        .unwrap();
    let elsewhere = TenantScope::Only(vec!["t2".into(), "t3".into()]);

    // Read: only the owning tenant's name comes back, for the audit record.
    assert_eq!(
        store.get_secret("tok-a", &elsewhere).await.unwrap(),
        Scoped::OtherTenant("t1".into())
    );
    assert_eq!(
        store.get_secret("tok-none", &elsewhere).await.unwrap(),
        Scoped::Missing
    );
    let own = store
        .get_secret("tok-a", &TenantScope::one("t1"))
        .await
        .unwrap();
    assert!(matches!(own, Scoped::Found(r) if r.token == "tok-a"));

    // Changes: named with the wrong tenant, they change nothing.
    assert!(!store.set_window("tok-a", "t2", 1, swap()).await.unwrap());
    assert!(!store.mark_deleted("tok-a", "t2", swap()).await.unwrap());
    let still = store
        .get_secret("tok-a", &TenantScope::All)
        .await
        .unwrap()
        .found()
        .unwrap();
    assert_eq!(still.state, SecretState::Active);
    assert_ne!(still.window_closes_at, 1);
    // Nor with a seal the row no longer carries: the change was decided on
    // a state that does not hold.
    let stale = SealSwap {
        from: vec![9],
        to: vec![2],
    };
    assert!(
        !store
            .set_window("tok-a", "t1", 1, stale.clone())
            .await
            .unwrap()
    );
    assert!(!store.mark_deleted("tok-a", "t1", stale).await.unwrap());
    assert!(store.set_window("tok-a", "t1", 1, swap()).await.unwrap());
    let moved = store
        .get_secret("tok-a", &TenantScope::All)
        .await
        .unwrap()
        .found()
        .unwrap();
    assert_eq!((moved.window_closes_at, moved.seal), (1, vec![2]));
}
