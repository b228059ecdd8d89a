//! `strongroom db setup` and `strongroom db migrate`: roles, schemas, grants
//! and migrations, each safe to run again.

use sqlx::{Connection, PgConnection, Row};

use crate::schema::{Names, Store, latest_version};
use crate::{PgError, sql};

/// What setup did for one store's login role. `Debug` leaves out the
/// password and the URL that carries it.
pub struct StoreLogin {
    /// The store.
    pub store: Store,
    /// Its login role.
    pub role: String,
    /// The password, when setup created the role (or was asked to reset
    /// it); `None` when the role existed and kept its password.
    pub password: Option<String>,
    /// Connection URL for the store: the admin URL's host, port, database and
    /// options with this role's credentials.
    pub url: String,
}

impl std::fmt::Debug for StoreLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreLogin")
            .field("store", &self.store)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

/// Creates (if missing) the owner role, one login role and one schema per
/// store, the grants between them, and brings every schema to the latest
/// version. `admin_url` needs a role that may create roles and schemas.
pub async fn setup(
    admin_url: &str,
    names: &Names,
    reset_passwords: bool,
) -> Result<Vec<StoreLogin>, PgError> {
    let mut conn = PgConnection::connect(admin_url).await?;
    let owner = names.owner();
    if !role_exists(&mut conn, &owner).await? {
        create_role(&mut conn, &format!("CREATE ROLE {owner} NOLOGIN")).await?;
    }
    // Lets a non-superuser admin act as the owner for migrations.
    create_role(&mut conn, &format!("GRANT {owner} TO CURRENT_USER")).await?;
    let mut logins = Vec::new();
    for store in Store::ALL {
        let role = names.role(store);
        let schema = names.schema(store);
        let password = if role_exists(&mut conn, &role).await? {
            if reset_passwords {
                let password = new_password()?;
                sqlx::raw_sql(sql(&format!("ALTER ROLE {role} PASSWORD '{password}'")))
                    .execute(&mut conn)
                    .await?;
                Some(password)
            } else {
                None
            }
        } else {
            let password = new_password()?;
            create_role(
                &mut conn,
                &format!("CREATE ROLE {role} LOGIN PASSWORD '{password}'"),
            )
            .await?;
            Some(password)
        };
        check_store_role(&mut conn, &role, &owner).await?;
        // The schema is the owner's, even if someone made it beforehand for
        // another role; the store's role may only use it.
        sqlx::raw_sql(sql(&format!(
            "CREATE SCHEMA IF NOT EXISTS {schema} AUTHORIZATION {owner};
             ALTER SCHEMA {schema} OWNER TO {owner};
             REVOKE ALL ON SCHEMA {schema} FROM PUBLIC;
             GRANT USAGE ON SCHEMA {schema} TO {role}"
        )))
        .execute(&mut conn)
        .await?;
        let url = store_url(admin_url, &role, password.as_deref())?;
        logins.push(StoreLogin {
            store,
            role,
            password,
            url,
        });
    }
    migrate_with(&mut conn, names).await?;
    conn.close().await?;
    Ok(logins)
}

/// Brings every store's schema to this build's version. Safe to run from
/// several nodes at once: each schema migrates under an advisory lock.
pub async fn migrate(admin_url: &str, names: &Names) -> Result<Vec<(Store, i32, i32)>, PgError> {
    let mut conn = PgConnection::connect(admin_url).await?;
    let done = migrate_with(&mut conn, names).await?;
    conn.close().await?;
    Ok(done)
}

/// Per store: (store, version before, version after).
async fn migrate_with(
    conn: &mut PgConnection,
    names: &Names,
) -> Result<Vec<(Store, i32, i32)>, PgError> {
    let owner = names.owner();
    let mut done = Vec::new();
    for store in Store::ALL {
        let schema = names.schema(store);
        let role = names.role(store);
        let mut tx = conn.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
            .bind(format!("strongroom-migrate:{schema}"))
            .execute(&mut *tx)
            .await?;
        // Objects are created as the owner, so the owner owns them.
        sqlx::raw_sql(sql(&format!(
            "SET LOCAL ROLE {owner};
             CREATE TABLE IF NOT EXISTS {schema}.schema_version (version INTEGER NOT NULL);
             INSERT INTO {schema}.schema_version (version)
                 SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM {schema}.schema_version);
             GRANT SELECT ON {schema}.schema_version TO {role}"
        )))
        .execute(&mut *tx)
        .await?;
        let before: i32 = sqlx::query(sql(&format!("SELECT version FROM {schema}.schema_version")))
            .fetch_one(&mut *tx)
            .await?
            .try_get(0)?;
        let scripts = names.migrations(store);
        let latest = latest_version(store);
        if before > latest {
            return Err(PgError::SchemaTooNew {
                schema,
                found: before,
                supported: latest,
            });
        }
        for (i, script) in scripts
            .iter()
            .enumerate()
            .skip(usize::try_from(before).unwrap_or(0))
        {
            sqlx::raw_sql(sql(script)).execute(&mut *tx).await?;
            let version = i32::try_from(i + 1).unwrap_or(i32::MAX);
            sqlx::query(sql(&format!(
                "UPDATE {schema}.schema_version SET version = $1"
            )))
            .bind(version)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        done.push((store, before, latest));
    }
    Ok(done)
}

async fn role_exists(conn: &mut PgConnection, role: &str) -> Result<bool, PgError> {
    Ok(sqlx::query("SELECT 1 FROM pg_roles WHERE rolname = $1")
        .bind(role)
        .fetch_optional(&mut *conn)
        .await?
        .is_some())
}

/// Refuses a store role that could step past its grants: a superuser, one
/// that bypasses row security, creates roles or databases, or is a member of
/// the owner role (and so could act as it). Such a role may have been made
/// by hand before setup ran; setup must not bless it.
async fn check_store_role(conn: &mut PgConnection, role: &str, owner: &str) -> Result<(), PgError> {
    let row = sqlx::query(
        "SELECT rolsuper OR rolbypassrls OR rolcreaterole OR rolcreatedb, \
                pg_has_role(oid, (SELECT oid FROM pg_roles WHERE rolname = $2), 'MEMBER') \
         FROM pg_roles WHERE rolname = $1",
    )
    .bind(role)
    .bind(owner)
    .fetch_one(&mut *conn)
    .await?;
    let (powerful, member): (bool, Option<bool>) = (row.try_get(0)?, row.try_get(1)?);
    if powerful || member == Some(true) {
        return Err(PgError::Config(format!(
            "role {role} exists with more power than a store may have (superuser, \
             BYPASSRLS, CREATEROLE, CREATEDB or membership of {owner}); \
             remove those, or drop the role, and run setup again"
        )));
    }
    Ok(())
}

/// Runs a cluster-wide CREATE ROLE or GRANT: another setup (for another
/// database of the same cluster) doing the same at the same moment is fine.
async fn create_role(conn: &mut PgConnection, statement: &str) -> Result<(), PgError> {
    match sqlx::raw_sql(crate::sql(statement))
        .execute(&mut *conn)
        .await
    {
        Ok(_) => Ok(()),
        Err(sqlx::Error::Database(e))
            if matches!(e.code().as_deref(), Some("42710") | Some("23505")) =>
        {
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

/// 192 random bits in hex: safe to splice into `PASSWORD '...'` (DDL takes
/// no bound parameters), and stored by PostgreSQL as a SCRAM verifier.
fn new_password() -> Result<String, PgError> {
    strongroom_crypto::random::hex_id::<24>().map_err(|_| PgError::Random)
}

/// `base` (a `postgres://` URL) with another role's credentials, keeping its
/// host, port, database and options (`sslmode`, `sslrootcert`, …). Without a
/// password the driver looks in `PGPASSFILE` / `~/.pgpass`.
pub fn store_url(admin_url: &str, role: &str, password: Option<&str>) -> Result<String, PgError> {
    let rest = admin_url
        .strip_prefix("postgres://")
        .or_else(|| admin_url.strip_prefix("postgresql://"))
        .ok_or_else(|| PgError::Config("the admin URL must start with postgres://".into()))?;
    // Drop the admin's user info, keep host, port, database and options.
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host_and_rest = format!("{host}{path}");
    Ok(match password {
        Some(p) => format!("postgres://{role}:{p}@{host_and_rest}"),
        None => format!("postgres://{role}@{host_and_rest}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_urls_keep_host_database_and_options_but_not_the_admin() {
        let url = store_url(
            "postgres://admin:hunter2@db.internal:5433/vault?sslmode=verify-full&sslrootcert=/ca.pem",
            "strongroom_audit",
            Some("abc"),
        )
        .unwrap();
        assert_eq!(
            url,
            "postgres://strongroom_audit:abc@db.internal:5433/vault?sslmode=verify-full&sslrootcert=/ca.pem"
        );
        assert!(!url.contains("hunter2"));
        assert_eq!(
            store_url("postgresql://127.0.0.1/test", "r", None).unwrap(),
            "postgres://r@127.0.0.1/test"
        );
    }
}
