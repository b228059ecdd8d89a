//! Support for tests that need a real PostgreSQL server: a fresh database
//! per test, set up with every schema and role.
//!
//! The server is found at `STRONGROOM_TEST_PG_ADMIN_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`, a role that may create
//! databases and roles). Without one, [`fresh_database`] prints why the test
//! is skipped and returns `None`; under `CI=true` it panics instead, so CI
//! can never pass by skipping.

use sqlx::{Connection, PgConnection, Row};

use crate::{Names, PgUrls, Store};

/// The admin URL tests use.
pub fn admin_url() -> String {
    std::env::var("STRONGROOM_TEST_PG_ADMIN_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// Databases made for tests are dropped by later runs after this long.
const STALE_SECS: u64 = 3600;

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Creates a database for one test and returns its admin URL, or `None`
/// (having said so) when no server is reachable outside CI.
///
/// # Panics
/// Under `CI=true` when PostgreSQL is unreachable, and on any setup failure.
#[allow(clippy::panic, clippy::expect_used)]
pub async fn fresh_database() -> Option<String> {
    let admin = admin_url();
    let mut conn = match PgConnection::connect(&admin).await {
        Ok(c) => c,
        Err(e) if std::env::var("CI").as_deref() != Ok("true") => {
            say_skipped(&without_password(&admin), &e);
            return None;
        }
        Err(e) => panic!(
            "CI=true needs PostgreSQL, and it is not reachable at {}: {e}",
            without_password(&admin)
        ),
    };
    // Databases left by failed or interrupted runs go after an hour.
    let old: Vec<String> =
        sqlx::query("SELECT datname FROM pg_database WHERE datname LIKE 'sr_test_%'")
            .fetch_all(&mut conn)
            .await
            .expect("list test databases")
            .iter()
            .filter_map(|r| r.try_get::<String, _>(0).ok())
            .filter(|name| {
                name.split('_')
                    .nth(2)
                    .and_then(|t| t.parse::<u64>().ok())
                    .is_some_and(|t| t + STALE_SECS < now_secs())
            })
            .collect();
    for name in old {
        let _ = sqlx::raw_sql(crate::sql(&format!(
            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
        )))
        .execute(&mut conn)
        .await;
    }
    let suffix = strongroom_crypto::random::hex_id::<5>().expect("random");
    let name = format!("sr_test_{}_{suffix}", now_secs());
    sqlx::raw_sql(crate::sql(&format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .expect("create test database");
    let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b);
    let url = format!("{base}/{name}");
    crate::setup(
        &url,
        &Names::new(crate::DEFAULT_PREFIX).expect("prefix"),
        false,
    )
    .await
    .expect("set up test database");
    Some(url)
}

/// `url` with any password in it replaced, for messages.
fn without_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some((user_info, host)) = rest.rsplit_once('@') else {
        return url.to_owned();
    };
    match user_info.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_owned(),
    }
}

#[cfg(test)]
#[test]
fn messages_leave_out_passwords() {
    assert_eq!(
        without_password("postgres://admin:s3cret@db:5432/test"),
        "postgres://admin:***@db:5432/test"
    );
    assert_eq!(
        without_password("postgres://postgres@127.0.0.1:5432/test"),
        "postgres://postgres@127.0.0.1:5432/test"
    );
}

/// Says once per test process, past the test harness's output capture (so
/// it shows on a passing run), that the PostgreSQL tests were skipped, and
/// why.
fn say_skipped(admin: &str, error: &sqlx::Error) {
    use std::io::Write;
    static SAID: std::sync::Once = std::sync::Once::new();
    SAID.call_once(|| {
        let _ = writeln!(
            std::io::stderr(),
            "\nSKIPPED: the PostgreSQL tests of this binary did not run: PostgreSQL is not \
             reachable at {admin} ({error}). Start it, or point STRONGROOM_TEST_PG_ADMIN_URL \
             at a server where this role may create databases and roles. Under CI=true \
             this is a failure.\n"
        );
    });
}

/// Drops a test database made by [`fresh_database`] (connections and all).
pub async fn drop_database(url: &str) {
    let Some((_, name)) = url.rsplit_once('/') else {
        return;
    };
    if !name.starts_with("sr_test_") {
        return;
    }
    if let Ok(mut conn) = PgConnection::connect(&admin_url()).await {
        let _ = sqlx::raw_sql(crate::sql(&format!(
            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
        )))
        .execute(&mut conn)
        .await;
    }
}

/// Per-store URLs for a test database (trust authentication: the role is
/// what matters, and no password is needed).
pub fn store_urls(url: &str) -> PgUrls {
    let names = Names::new(crate::DEFAULT_PREFIX).unwrap_or_else(|_| unreachable_names());
    let login = |s: Store| crate::store_url(url, &names.role(s), None).unwrap_or_default();
    PgUrls {
        central: login(Store::Central),
        vault: login(Store::Vault),
        archive: login(Store::Archive),
        audit: login(Store::Audit),
    }
}

#[allow(clippy::panic)]
fn unreachable_names() -> Names {
    panic!("the default prefix is valid")
}
