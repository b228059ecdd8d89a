//! The PostgreSQL stores against a real server: setup, grants, round trips
//! and one audit chain shared by two connections writing at once.
//!
//! Needs PostgreSQL at `STRONGROOM_TEST_PG_ADMIN_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`). Without one, each test says it
//! was skipped and why; under `CI=true` it fails instead.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::sync::Arc;

use sqlx::{Connection, PgConnection};
use strongroom_crypto::KeyBytes;
use strongroom_crypto::mac::MacKey;
use strongroom_store::{
    AuditStore, CentralStore, ChainFn, InsertOutcome, RecordStore, SecretRecord, SecretState,
    TenantScope,
};
use strongroom_store_postgres::{Names, PgStores, PgUrls, Store, setup};

use strongroom_store_postgres::testing::{drop_database, fresh_database};

fn login(admin_url: &str, names: &Names, store: Store) -> String {
    // Trust authentication on the test server: the role is what matters.
    let (_, host_db) = admin_url.split_once('@').unwrap();
    format!("postgres://{}@{host_db}", names.role(store))
}

async fn as_role(admin_url: &str, names: &Names, store: Store) -> PgConnection {
    PgConnection::connect(&login(admin_url, names, store))
        .await
        .unwrap()
}

async fn denied(conn: &mut PgConnection, statement: &str) -> bool {
    match sqlx::raw_sql(sqlx::AssertSqlSafe(statement.to_owned()))
        .execute(&mut *conn)
        .await
    {
        Err(sqlx::Error::Database(e)) => e.code().as_deref() == Some("42501"),
        other => panic!("{statement}: expected permission denied, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setup_is_repeatable_and_each_role_reaches_only_its_store() {
    let Some(admin) = fresh_database().await else {
        return;
    };
    let names = Names::new("strongroom").unwrap();
    // `fresh_database` ran setup once already.
    let again = setup(&admin, &names, false).await.unwrap();
    assert!(
        again.iter().all(|l| l.password.is_none()),
        "re-running kept passwords"
    );
    for l in &again {
        assert!(
            l.url.starts_with(&format!("postgres://{}@", l.role)),
            "{}",
            l.url
        );
    }

    let mut central = as_role(&admin, &names, Store::Central).await;
    assert!(denied(&mut central, "SELECT * FROM strongroom_vault.records").await);
    assert!(denied(&mut central, "SELECT * FROM strongroom_audit.audit_log").await);
    assert!(denied(&mut central, "DELETE FROM strongroom_central.secrets").await);

    let mut vault = as_role(&admin, &names, Store::Vault).await;
    assert!(denied(&mut vault, "SELECT * FROM strongroom_audit.audit_log").await);
    assert!(denied(&mut vault, "SELECT * FROM strongroom_central.secrets").await);
    assert!(denied(&mut vault, "SELECT * FROM strongroom_archive.records").await);
    assert!(
        denied(
            &mut vault,
            "UPDATE strongroom_vault.keyring SET wrapped = ''"
        )
        .await
    );

    let mut audit = as_role(&admin, &names, Store::Audit).await;
    sqlx::raw_sql("INSERT INTO strongroom_audit.audit_log VALUES (1, '{}', '\\x00')")
        .execute(&mut audit)
        .await
        .unwrap();
    assert!(
        denied(
            &mut audit,
            "UPDATE strongroom_audit.audit_log SET body = 'x'"
        )
        .await
    );
    assert!(denied(&mut audit, "DELETE FROM strongroom_audit.audit_log").await);
    assert!(denied(&mut audit, "TRUNCATE strongroom_audit.audit_log").await);
    assert!(denied(&mut audit, "SELECT * FROM strongroom_vault.records").await);
    // Nobody but the owner may change the schemas themselves.
    assert!(denied(&mut audit, "CREATE TABLE strongroom_audit.x (a int)").await);
    assert!(denied(&mut central, "DROP TABLE strongroom_central.secrets").await);
    drop((central, vault, audit));
    drop_database(&admin).await;
}

fn record(token: &str, fingerprint: u8, unique: bool) -> SecretRecord {
    SecretRecord {
        token: token.to_owned(),
        tenant: "t1".into(),
        class: "voucher_code".into(),
        key_version: 1,
        fingerprint: Some([fingerprint; 32]),
        fingerprint_unique: unique,
        metadata: Some("{\"brand\":\"acme\"}".into()),
        created_at: 1,
        window_closes_at: 2,
        created_by: "p".into(),
        state: SecretState::Active,
        seal: vec![1],
    }
}

async fn connect(admin: &str, names: &Names) -> PgStores {
    let urls = PgUrls {
        central: login(admin, names, Store::Central),
        vault: login(admin, names, Store::Vault),
        archive: login(admin, names, Store::Archive),
        audit: login(admin, names, Store::Audit),
    };
    PgStores::connect(&urls, names, 4).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_share_one_duplicate_rule_and_one_audit_chain() {
    let Some(admin) = fresh_database().await else {
        return;
    };
    let names = Names::new("strongroom").unwrap();
    let (a, b) = (connect(&admin, &names).await, connect(&admin, &names).await);

    // Records and metadata round-trip; a duplicate is found from either node.
    a.vault
        .put_many(vec![("tok-1".into(), vec![1, 2, 3])])
        .await
        .unwrap();
    assert_eq!(b.vault.get("tok-1").await.unwrap(), Some(vec![1, 2, 3]));
    let stored = a
        .central
        .insert_secrets(vec![record("tok-1", 5, true)].into())
        .await
        .unwrap();
    assert_eq!(stored, vec![InsertOutcome::Inserted]);
    let dup = b
        .central
        .insert_secrets(vec![record("tok-2", 5, true)].into())
        .await
        .unwrap();
    assert_eq!(
        dup,
        vec![InsertOutcome::Duplicate {
            existing: "tok-1".into()
        }]
    );
    let found = b
        .central
        .find_fingerprints("t1", "voucher_code", &[[5; 32], [6; 32]])
        .await
        .unwrap();
    assert_eq!(found, vec![Some("tok-1".into()), None]);
    assert_eq!(
        b.central
            .get_secret("tok-1", &TenantScope::All)
            .await
            .unwrap()
            .found(),
        Some(record("tok-1", 5, true))
    );

    // Two nodes racing the same values: each value is stored exactly once.
    let race = |s: PgStores, prefix: &'static str| async move {
        let recs: Vec<SecretRecord> = (10..40u8)
            .map(|f| record(&format!("{prefix}-{f}"), f, true))
            .collect();
        s.central.insert_secrets(recs.into()).await.unwrap()
    };
    let (ra, rb) = tokio::join!(race(a.clone(), "a"), race(b.clone(), "b"));
    for (x, y) in ra.iter().zip(&rb) {
        let inserted = [x, y]
            .iter()
            .filter(|o| ***o == InsertOutcome::Inserted)
            .count();
        assert_eq!(inserted, 1, "{x:?} {y:?}");
    }

    // Both nodes append at once; the chain stays one line with no gap.
    let key = MacKey::new(&KeyBytes::new([7; 32]));
    let chain: ChainFn = Arc::new(move |prev: &[u8], seq: u64, body: &str| {
        key.tag(&[prev, &seq.to_be_bytes(), body.as_bytes()])
            .to_vec()
    });
    let mut writers = Vec::new();
    for (node, stores) in [a.clone(), b.clone()].into_iter().enumerate() {
        for i in 0..100 {
            let (stores, chain) = (stores.clone(), chain.clone());
            writers.push(tokio::spawn(async move {
                let bodies = vec![
                    format!("{{\"node\":{node},\"i\":{i},\"n\":0}}"),
                    format!("{{\"node\":{node},\"i\":{i},\"n\":1}}"),
                ];
                stores.audit.append(bodies, chain).await.unwrap()
            }));
        }
    }
    for w in writers {
        let seqs = w.await.unwrap();
        assert_eq!(seqs[1], seqs[0] + 1, "one append's records are contiguous");
    }
    let log = a.audit.read_from(1, 10_000).await.unwrap();
    assert_eq!(log.len(), 400);
    let mut prev: Vec<u8> = Vec::new();
    for (i, rec) in log.iter().enumerate() {
        assert_eq!(rec.seq, i as u64 + 1);
        assert_eq!(
            rec.mac,
            chain(&prev, rec.seq, &rec.body),
            "record {} breaks the chain",
            rec.seq
        );
        prev = rec.mac.clone();
    }
    drop((a, b));
    drop_database(&admin).await;
}

/// The server's own certificate file and whether it speaks TLS at all.
async fn server_tls(admin: &str) -> Option<String> {
    use sqlx::Row;
    let mut c = PgConnection::connect(admin).await.unwrap();
    let on: String = sqlx::query("SHOW ssl")
        .fetch_one(&mut c)
        .await
        .unwrap()
        .get(0);
    let cert: String = sqlx::query("SHOW ssl_cert_file")
        .fetch_one(&mut c)
        .await
        .unwrap()
        .get(0);
    (on == "on").then_some(cert)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_to_postgresql_verifies_the_server() {
    let Some(admin) = fresh_database().await else {
        return;
    };
    let Some(server_cert) = server_tls(&admin).await else {
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "the CI server has TLS on"
        );
        // Past the output capture, so a passing run shows it.
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED: TLS to PostgreSQL not tested: the server has ssl = off"
        );
        return;
    };
    let names = Names::new("strongroom").unwrap();
    let (_, path) = admin
        .split_once("@127.0.0.1")
        .expect("admin URL on 127.0.0.1");
    let with = |host: &str, root: &str| {
        let base =
            format!("postgres://postgres@{host}{path}?sslmode=verify-full&sslrootcert={root}");
        PgUrls::from_base(&base, &names).unwrap()
    };

    // verify-full: the certificate chains to the given root and names the host.
    let good = with("localhost", &server_cert);
    let stores = PgStores::connect(&good, &names, 2).await.unwrap();
    stores.vault.put_meta("tls-check", vec![1]).await.unwrap();
    let mut c = PgConnection::connect(&good.central).await.unwrap();
    let encrypted: bool = sqlx::Row::get(
        &sqlx::query("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            .fetch_one(&mut c)
            .await
            .unwrap(),
        0,
    );
    assert!(encrypted, "the store's connection is not encrypted");

    // A certificate for another name, or from another authority, is refused.
    for (host, root) in [
        ("127.0.0.1", server_cert.as_str()),
        ("localhost", "/etc/ssl/certs/ca-certificates.crt"),
    ] {
        let refused = PgStores::connect(&with(host, root), &names, 2)
            .await
            .err()
            .expect("an unverifiable server was accepted")
            .to_string()
            .to_lowercase();
        assert!(
            refused.contains("certificate") || refused.contains("tls"),
            "{refused}"
        );
    }
    drop((stores, c));
    drop_database(&admin).await;
}

/// A merged group that fails after its insert committed is rerun job by
/// job: the rerun must report the committed rows as stored, never as
/// duplicates of themselves (the vault would then erase their envelopes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeating_an_insert_reports_stored_rows_as_stored() {
    let Some(admin) = fresh_database().await else {
        return;
    };
    let names = Names::new("strongroom").unwrap();
    let stores = connect(&admin, &names).await;

    let rows: Arc<[SecretRecord]> = vec![
        record("rep-1", 50, true),
        record("rep-2", 51, false),
        SecretRecord {
            fingerprint: None,
            ..record("rep-3", 0, false)
        },
    ]
    .into();
    for _ in 0..2 {
        let outcomes = stores.central.insert_secrets(rows.clone()).await.unwrap();
        assert_eq!(outcomes, vec![InsertOutcome::Inserted; 3]);
    }
    // Another secret's value is still a duplicate, and a token taken by a
    // different secret is refused, not reported as stored.
    let dup = stores
        .central
        .insert_secrets(vec![record("rep-4", 50, true)].into())
        .await
        .unwrap();
    assert_eq!(
        dup,
        vec![InsertOutcome::Duplicate {
            existing: "rep-1".into()
        }]
    );
    let clash = SecretRecord {
        tenant: "t2".into(),
        ..record("rep-1", 60, true)
    };
    assert!(
        stores
            .central
            .insert_secrets(vec![clash].into())
            .await
            .is_err()
    );

    // Envelopes likewise: the same one again is fine, another one is not.
    let put = |env: Vec<u8>| stores.vault.put_many(vec![("rep-1".into(), env)]);
    put(vec![1, 2, 3]).await.unwrap();
    put(vec![1, 2, 3]).await.unwrap();
    assert!(put(vec![9, 9, 9]).await.is_err());
    assert_eq!(
        stores.vault.get("rep-1").await.unwrap(),
        Some(vec![1, 2, 3])
    );
    drop(stores);
    drop_database(&admin).await;
}

/// Reads merged from many concurrent callers (every reveal makes two) answer
/// each caller with its own row: the same token asked twice in one group,
/// missing tokens, and duplicate look-ups of many values at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_reads_each_get_their_own_answer() {
    let Some(admin) = fresh_database().await else {
        return;
    };
    let names = Names::new("strongroom").unwrap();
    let stores = connect(&admin, &names).await;
    let records: Vec<SecretRecord> = (0..200u8)
        .map(|i| record(&format!("read-{i}"), i, true))
        .collect();
    let envelopes = (0..200u8)
        .map(|i| (format!("read-{i}"), vec![i; 3]))
        .collect();
    stores.vault.put_many(envelopes).await.unwrap();
    let outcomes = stores
        .central
        .insert_secrets(records.clone().into())
        .await
        .unwrap();
    assert!(outcomes.iter().all(|o| *o == InsertOutcome::Inserted));

    let mut readers = Vec::new();
    for n in 0..600usize {
        let stores = stores.clone();
        let expected = records.get(n % 250).cloned();
        readers.push(tokio::spawn(async move {
            // Tokens 200..250 were never stored.
            let token = format!("read-{}", n % 250);
            let secret = stores
                .central
                .get_secret(&token, &TenantScope::All)
                .await
                .unwrap()
                .found();
            assert_eq!(secret, expected, "{token}");
            let envelope = stores.vault.get(&token).await.unwrap();
            let byte = u8::try_from(n % 250).ok();
            assert_eq!(envelope, byte.filter(|b| *b < 200).map(|b| vec![b; 3]));
        }));
    }
    for n in 0..20u8 {
        let stores = stores.clone();
        readers.push(tokio::spawn(async move {
            // Ten stored values and ten never seen, in one look-up.
            let fps: Vec<[u8; 32]> = (0..20u8).map(|i| [n * 10 + i; 32]).collect();
            let found = stores
                .central
                .find_fingerprints("t1", "voucher_code", &fps)
                .await
                .unwrap();
            for (fp, tok) in fps.iter().zip(found) {
                let want = (fp[0] < 200).then(|| format!("read-{}", fp[0]));
                assert_eq!(tok, want);
            }
            // Another tenant's look-up of the same values finds nothing.
            let other = stores
                .central
                .find_fingerprints("t2", "voucher_code", &fps)
                .await
                .unwrap();
            assert!(other.iter().all(Option::is_none));
        }));
    }
    for r in readers {
        r.await.unwrap();
    }
    drop(stores);
    drop_database(&admin).await;
}

/// When the server ends the stores' connections (a restart, a failover, an
/// administrator), callers do not see it: a connection idle for a moment is
/// checked on checkout and replaced if it is dead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_ended_by_the_server_are_replaced() {
    let Some(admin) = fresh_database().await else {
        return;
    };
    let names = Names::new("strongroom").unwrap();
    let stores = connect(&admin, &names).await;
    stores
        .vault
        .put_many(vec![("cut-1".into(), vec![1])])
        .await
        .unwrap();
    assert!(
        stores
            .central
            .get_secret("cut-1", &TenantScope::All)
            .await
            .unwrap()
            .found()
            .is_none()
    );

    let mut a = PgConnection::connect(&admin).await.unwrap();
    let ended = sqlx::query(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    .fetch_one(&mut a)
    .await
    .unwrap();
    let ended: i64 = sqlx::Row::get(&ended, 0);
    assert!(ended >= 2, "only {ended} connections were open");
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;

    assert_eq!(stores.vault.get("cut-1").await.unwrap(), Some(vec![1]));
    assert!(
        stores
            .central
            .get_secret("cut-1", &TenantScope::All)
            .await
            .unwrap()
            .found()
            .is_none()
    );
    let outcomes = stores
        .central
        .insert_secrets(vec![record("cut-1", 1, true)].into())
        .await
        .unwrap();
    assert_eq!(outcomes, vec![InsertOutcome::Inserted]);
    drop((stores, a));
    drop_database(&admin).await;
}

/// A store role made by hand with powers past its grants is refused, not
/// adopted; and a schema made beforehand for a store role is taken back by
/// the owner.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setup_refuses_over_powerful_roles_and_owns_every_schema() {
    let Some(admin) = fresh_database().await else {
        return;
    };
    // Roles are cluster-wide: a prefix of this test's own.
    let prefix = format!(
        "sr_power_{}",
        strongroom_crypto::random::hex_id::<4>().unwrap()
    );
    let names = Names::new(&prefix).unwrap();
    let mut conn = PgConnection::connect(&admin).await.unwrap();
    let run = |sql: String| sqlx::raw_sql(sqlx::AssertSqlSafe(sql));
    let (audit_role, audit_schema) = (names.role(Store::Audit), names.schema(Store::Audit));
    run(format!(
        "CREATE ROLE {audit_role} LOGIN CREATEDB; \
         CREATE SCHEMA {audit_schema} AUTHORIZATION {audit_role}"
    ))
    .execute(&mut conn)
    .await
    .unwrap();

    let refused = setup(&admin, &names, false).await.unwrap_err().to_string();
    assert!(
        refused.contains(&audit_role) && refused.contains("CREATEDB"),
        "{refused}"
    );

    run(format!("ALTER ROLE {audit_role} NOCREATEDB"))
        .execute(&mut conn)
        .await
        .unwrap();
    setup(&admin, &names, false).await.unwrap();
    let owner: String = sqlx::Row::get(
        &sqlx::query("SELECT nspowner::regrole::text FROM pg_namespace WHERE nspname = $1")
            .bind(&audit_schema)
            .fetch_one(&mut conn)
            .await
            .unwrap(),
        0,
    );
    assert_eq!(owner, names.owner());

    drop(conn);
    drop_database(&admin).await;
    // The database (and all its objects) is gone: the roles can go too.
    let mut server = PgConnection::connect(&strongroom_store_postgres::testing::admin_url())
        .await
        .unwrap();
    let mut roles: Vec<String> = Store::ALL.iter().map(|s| names.role(*s)).collect();
    roles.push(names.owner());
    for role in roles {
        run(format!("DROP ROLE IF EXISTS {role}"))
            .execute(&mut server)
            .await
            .unwrap();
    }
}
