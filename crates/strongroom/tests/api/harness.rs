//! Starting servers and calling them.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use strongroom_watch::WatchConfig;
use strongroom_watch::forward::ForwarderConfig;

/// The bearer token of test servers' metrics.
pub const METRICS_TOKEN: &str = "test-metrics-token-0123456789abcdef";

/// Test servers serve metrics on a port of their own, behind a token.
fn test_metrics() -> strongroom::app::MetricsOptions {
    strongroom::app::MetricsOptions {
        listen: "127.0.0.1:0".into(),
        token: Some(zeroize::Zeroizing::new(METRICS_TOKEN.into())),
    }
}

/// What a test server is started with besides its stores.
pub type Settings = (ApiConfig, WatchConfig, Vec<ForwarderConfig>);

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use strongroom::app::{DevCredentials, RunningServer, StartOptions, TlsSource, start};
use strongroom::storage::Backend;
use strongroom_api::ApiConfig;
use strongroom_vault::{ManualClock, VaultConfig};
use tempfile::TempDir;

/// The real clock's "now", to start a manual clock from.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// An HTTPS client trusting one CA certificate.
pub fn https_client(ca: &Path) -> reqwest::Client {
    let config = strongroom::client::tls_client_config(Some(&ca.to_path_buf())).unwrap();
    reqwest::Client::builder()
        .tls_backend_preconfigured(config)
        .build()
        .unwrap()
}

/// Which stores a test server runs on.
#[derive(Debug, Clone)]
pub enum TestStore {
    /// SQLite files in the test's data directory.
    Sqlite,
    /// A fresh PostgreSQL database of the test's own, already set up.
    Postgres { url: String },
}

impl TestStore {
    /// A fresh PostgreSQL database, or `None` when the test is skipped
    /// (PostgreSQL unreachable outside CI; under CI=true that panics).
    pub async fn postgres() -> Option<Self> {
        strongroom_store_postgres::testing::fresh_database()
            .await
            .map(|url| TestStore::Postgres { url })
    }

    /// Separate stores of the same kind, for a second, unrelated vault.
    pub async fn another(&self) -> Self {
        match self {
            TestStore::Sqlite => TestStore::Sqlite,
            TestStore::Postgres { .. } => TestStore::postgres()
                .await
                .expect("PostgreSQL was reachable a moment ago"),
        }
    }

    /// The server's storage backend.
    pub fn backend(&self) -> Backend {
        match self {
            TestStore::Sqlite => Backend::Sqlite,
            TestStore::Postgres { url } => {
                Backend::Postgres(strongroom::storage::PostgresSettings {
                    urls: strongroom_store_postgres::testing::store_urls(url),
                    prefix: strongroom_store_postgres::DEFAULT_PREFIX.into(),
                    max_connections: 4,
                })
            }
        }
    }
}

/// Runs a test once per storage backend, as `NAME::sqlite` and
/// `NAME::postgres`: the body gets the [`TestStore`] to start servers on.
macro_rules! on_each_backend {
    ($(#[$meta:meta])* async fn $name:ident($store:ident) $body:block) => {
        $(#[$meta])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            async fn run($store: crate::harness::TestStore) $body

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                run(crate::harness::TestStore::Sqlite).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if let Some(store) = crate::harness::TestStore::postgres().await {
                    run(store.clone()).await;
                    // Kept for inspection if the test failed (dropped an hour later).
                    if let crate::harness::TestStore::Postgres { url } = store {
                        strongroom_store_postgres::testing::drop_database(&url).await;
                    }
                }
            }
        }
    };
}
pub(crate) use on_each_backend;

/// The API settings of test servers: the defaults, but with address limits
/// no test's burst of logins reaches (the rate-limit tests set their own).
pub fn test_api_config() -> ApiConfig {
    let mut config = ApiConfig::default();
    config.rate_limits.auth_per_address = strongroom_api::ratelimit::Rate::new(10_000, 10_000);
    // Every test client is 127.0.0.1, some with hundreds of requests at
    // once (connections.rs tests the caps themselves).
    config.connections.max_per_address = 4096;
    config
}

/// Runs one statement on a store's schema of the test database, as its
/// administrator or, with `role`, under that role's rights only.
async fn pg_tamper(
    url: &str,
    store: strongroom_store_postgres::Store,
    role: Option<&str>,
    statement: &str,
    args: &[&str],
) {
    use sqlx::Connection;
    let mut c = sqlx::PgConnection::connect(url).await.unwrap();
    let names = strongroom_store_postgres::Names::new("strongroom").unwrap();
    let set_role = role.map(|r| format!("SET ROLE {r}; ")).unwrap_or_default();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "{set_role}SET search_path TO {}",
        names.schema(store)
    )))
    .execute(&mut c)
    .await
    .unwrap();
    let mut query = sqlx::query(sqlx::AssertSqlSafe(statement.to_owned()));
    for a in args {
        query = query.bind(*a);
    }
    query.execute(&mut c).await.unwrap();
}

/// A dev server with a manual clock, in a temporary directory.
pub struct Harness {
    pub server: RunningServer,
    pub dir: TempDir,
    pub http: reqwest::Client,
    pub url: String,
    pub clock: ManualClock,
    pub creds: DevCredentials,
    pub store: TestStore,
    pub api_config: ApiConfig,
    pub watch: WatchConfig,
    pub forwarders: Vec<ForwarderConfig>,
    pub suppliers: strongroom::suppliers::SuppliersSettings,
}

impl Harness {
    /// Starts a server on `data` (dev mode creates and unseals it).
    async fn launch(
        dir: TempDir,
        data: PathBuf,
        dev: bool,
        clock: ManualClock,
        creds: Option<DevCredentials>,
        store: TestStore,
    ) -> Self {
        let settings = (test_api_config(), WatchConfig::default(), Vec::new());
        Self::launch_with(
            dir,
            data,
            dev,
            clock,
            creds,
            store,
            settings,
            Default::default(),
        )
        .await
    }

    #[allow(clippy::too_many_arguments)]
    async fn launch_with(
        dir: TempDir,
        data: PathBuf,
        dev: bool,
        clock: ManualClock,
        creds: Option<DevCredentials>,
        store: TestStore,
        (api_config, watch, forwarders): Settings,
        suppliers: strongroom::suppliers::SuppliersSettings,
    ) -> Self {
        let server = start(StartOptions {
            data_dir: data,
            listen: "127.0.0.1:0".into(),
            tls: TlsSource::DevSelfSigned,
            dev,
            vault_config: VaultConfig::default(),
            api_config: api_config.clone(),
            clock: Arc::new(clock.clone()),
            backend: store.backend(),
            watch: watch.clone(),
            checkpoint_every: None,
            forwarders: forwarders.clone(),
            metrics: Some(test_metrics()),
            suppliers: suppliers.clone(),
        })
        .await
        .unwrap();
        let http = https_client(server.ca_cert_path.as_ref().unwrap());
        let url = server.url.clone();
        let creds = creds.or_else(|| server.dev_credentials.clone()).unwrap();
        Self {
            server,
            dir,
            http,
            url,
            clock,
            creds,
            store,
            api_config,
            watch,
            forwarders,
            suppliers,
        }
    }

    /// A dev server buying from these suppliers.
    pub async fn dev_suppliers(
        store: TestStore,
        suppliers: strongroom::suppliers::SuppliersSettings,
    ) -> Self {
        let dir = TempDir::new().unwrap();
        let data = dir.path().join("data");
        let settings = (test_api_config(), WatchConfig::default(), Vec::new());
        Self::launch_with(
            dir,
            data,
            true,
            ManualClock::new(now_ms()),
            None,
            store,
            settings,
            suppliers,
        )
        .await
    }

    /// A dev server with these API settings (rate limits, say).
    pub async fn dev_with(store: TestStore, api_config: ApiConfig) -> Self {
        Self::dev_watched(store, api_config, WatchConfig::default()).await
    }

    /// A dev server with these API and detector settings.
    pub async fn dev_watched(store: TestStore, api_config: ApiConfig, watch: WatchConfig) -> Self {
        Self::dev_settings(store, (api_config, watch, Vec::new())).await
    }

    /// A dev server with these API, detector and forwarding settings.
    pub async fn dev_settings(store: TestStore, settings: Settings) -> Self {
        let dir = TempDir::new().unwrap();
        let data = dir.path().join("data");
        Self::launch_with(
            dir,
            data,
            true,
            ManualClock::new(now_ms()),
            None,
            store,
            settings,
            Default::default(),
        )
        .await
    }

    /// A dev server on the given stores.
    pub async fn dev_on(store: TestStore) -> Self {
        let dir = TempDir::new().unwrap();
        let data = dir.path().join("data");
        Self::launch(dir, data, true, ManualClock::new(now_ms()), None, store).await
    }

    /// Stops the server and starts a new one on the same data directory,
    /// as after a crash or an upgrade: everything in memory is rebuilt.
    pub async fn restart(self) -> Self {
        let Self {
            server,
            dir,
            clock,
            creds,
            store,
            api_config,
            watch,
            forwarders,
            suppliers,
            ..
        } = self;
        server.shutdown().await.unwrap();
        let data = dir.path().join("data");
        let settings = (api_config, watch, forwarders);
        Self::launch_with(
            dir,
            data,
            true,
            clock,
            Some(creds),
            store,
            settings,
            suppliers,
        )
        .await
    }

    /// Options to start another server on this harness's data directory.
    pub fn options(&self) -> StartOptions {
        StartOptions {
            data_dir: self.data_dir(),
            listen: "127.0.0.1:0".into(),
            tls: TlsSource::DevSelfSigned,
            dev: true,
            vault_config: VaultConfig::default(),
            api_config: test_api_config(),
            clock: Arc::new(self.clock.clone()),
            backend: self.store.backend(),
            watch: self.watch.clone(),
            checkpoint_every: None,
            forwarders: self.forwarders.clone(),
            metrics: Some(test_metrics()),
            suppliers: Default::default(),
        }
    }

    /// Runs one statement with text parameters (`$1`, `$2`, …) on a store's
    /// own tables, bypassing the vault: what someone holding the store could
    /// do. On PostgreSQL it runs as the test database's administrator.
    pub async fn tamper(
        &self,
        store: strongroom_store_postgres::Store,
        statement: &str,
        args: &[&str],
    ) {
        match &self.store {
            TestStore::Sqlite => {
                let db = self.sqlite_file(store);
                let statement = statement.to_owned();
                let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
                db.write(move |c| {
                    c.execute(
                        &statement,
                        strongroom_store::sqlite::rusqlite::params_from_iter(args.iter()),
                    )
                    .unwrap();
                    Ok::<_, strongroom_store::StoreError>(())
                })
                .await
                .unwrap();
            }
            TestStore::Postgres { url } => pg_tamper(url, store, None, statement, args).await,
        }
    }

    /// Runs one statement as someone holding only that store's own login
    /// could: on PostgreSQL under the store's role (`SET ROLE`), so the
    /// attack has that role's rights and no more; on SQLite on the file.
    pub async fn tamper_as_store_role(
        &self,
        store: strongroom_store_postgres::Store,
        statement: &str,
        args: &[&str],
    ) {
        match &self.store {
            TestStore::Sqlite => self.tamper(store, statement, args).await,
            TestStore::Postgres { url } => {
                let role = strongroom_store_postgres::Names::new("strongroom")
                    .unwrap()
                    .role(store);
                pg_tamper(url, store, Some(&role), statement, args).await
            }
        }
    }

    /// Rows in one of a store's tables, counted past the vault.
    pub async fn count_rows(&self, store: strongroom_store_postgres::Store, table: &str) -> i64 {
        match &self.store {
            TestStore::Sqlite => {
                let db = self.sqlite_file(store);
                let sql = format!("SELECT count(*) FROM {table}");
                db.read(|c| Ok(c.query_row(&sql, [], |r| r.get(0)).unwrap()))
                    .unwrap()
            }
            TestStore::Postgres { url } => {
                use sqlx::{Connection, Row};
                let mut c = sqlx::PgConnection::connect(url).await.unwrap();
                let names = strongroom_store_postgres::Names::new("strongroom").unwrap();
                let sql = format!("SELECT count(*) FROM {}.{table}", names.schema(store));
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .fetch_one(&mut c)
                    .await
                    .unwrap()
                    .get(0)
            }
        }
    }

    /// Every audit record as stored: (seq, body, mac).
    pub async fn audit_rows(&self) -> Vec<(u64, String, Vec<u8>)> {
        self.server
            .stores
            .audit
            .read_from(1, 1_000_000)
            .await
            .unwrap()
            .into_iter()
            .map(|r| (r.seq, r.body, r.mac))
            .collect()
    }

    /// Replaces the whole audit log with `rows`, past the vault (and, on
    /// PostgreSQL, past the audit role's grants: as the administrator).
    pub async fn replace_audit_log(&self, rows: Vec<(u64, String, Vec<u8>)>) {
        match &self.store {
            TestStore::Sqlite => {
                self.sqlite()
                    .audit
                    .database()
                    .write(move |c| {
                        c.execute("DELETE FROM audit_log", []).unwrap();
                        for (seq, body, mac) in &rows {
                            c.execute(
                                "INSERT INTO audit_log (seq, body, mac) VALUES (?1, ?2, ?3)",
                                strongroom_store::sqlite::rusqlite::params![seq, body, mac],
                            )
                            .unwrap();
                        }
                        Ok::<_, strongroom_store::StoreError>(())
                    })
                    .await
                    .unwrap();
            }
            TestStore::Postgres { url } => {
                use sqlx::Connection;
                let mut c = sqlx::PgConnection::connect(url).await.unwrap();
                let mut tx = c.begin().await.unwrap();
                sqlx::query("DELETE FROM strongroom_audit.audit_log")
                    .execute(&mut *tx)
                    .await
                    .unwrap();
                for (seq, body, mac) in rows {
                    sqlx::query(
                        "INSERT INTO strongroom_audit.audit_log (seq, body, mac) VALUES ($1, $2, $3)",
                    )
                    .bind(i64::try_from(seq).unwrap())
                    .bind(body)
                    .bind(mac)
                    .execute(&mut *tx)
                    .await
                    .unwrap();
                }
                tx.commit().await.unwrap();
            }
        }
    }

    /// The sequence number of the audit head the vault sealed into the vault
    /// store (0: none yet), read past the vault.
    pub async fn sealed_head_seq(&self) -> u64 {
        let name = strongroom_audit::head::HEAD_META;
        let bytes: Option<Vec<u8>> = match &self.store {
            TestStore::Sqlite => self
                .sqlite()
                .vault
                .database()
                .read(move |c| {
                    use strongroom_store::sqlite::rusqlite::OptionalExtension;
                    Ok(
                        c.query_row("SELECT value FROM meta WHERE name = ?1", [name], |r| {
                            r.get(0)
                        })
                        .optional()
                        .unwrap(),
                    )
                })
                .unwrap(),
            TestStore::Postgres { url } => {
                use sqlx::{Connection, Row};
                let mut c = sqlx::PgConnection::connect(url).await.unwrap();
                sqlx::query("SELECT value FROM strongroom_vault.meta WHERE name = $1")
                    .bind(name)
                    .fetch_optional(&mut c)
                    .await
                    .unwrap()
                    .map(|r| r.get(0))
            }
        };
        bytes.map_or(0, |b| u64::from_be_bytes(b[4..12].try_into().unwrap()))
    }

    /// Waits until the sealed audit head has caught up with the log's last
    /// record (it is written just after each append), and returns it.
    pub async fn settled_audit_head(&self) -> u64 {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let last = self.audit_rows().await.last().map_or(0, |r| r.0);
            let head = self.sealed_head_seq().await;
            if head == last {
                return head;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "head {head} never reached {last}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    /// `strongroom audit verify` on this server's stores (the real binary):
    /// whether it passed, and what it printed.
    pub fn cli_verify(&self) -> (bool, String) {
        self.cli_verify_with(&[])
    }

    /// `strongroom audit verify` with more arguments (`--checkpoint FILE`).
    pub fn cli_verify_with(&self, extra: &[&std::ffi::OsStr]) -> (bool, String) {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_strongroom"));
        cmd.args(["audit", "verify"]).args(extra);
        match &self.store {
            TestStore::Sqlite => {
                cmd.arg("--data-dir").arg(self.data_dir());
            }
            TestStore::Postgres { url } => {
                let config = self.dir.path().join("verify.toml");
                std::fs::write(
                    &config,
                    format!(
                        "data_dir = {:?}\n[storage]\nbackend = \"postgres\"\n[storage.postgres]\nurl = {url:?}\n",
                        self.data_dir()
                    ),
                )
                .unwrap();
                cmd.arg("--config").arg(config);
            }
        }
        let out = cmd.output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    }

    /// A sealed envelope as stored, read past the vault.
    pub async fn raw_envelope(&self, token: &str) -> Vec<u8> {
        match &self.store {
            TestStore::Sqlite => {
                let t = token.to_owned();
                self.sqlite()
                    .vault
                    .database()
                    .read(move |c| {
                        Ok(
                            c.query_row(
                                "SELECT envelope FROM records WHERE token = ?1",
                                [t],
                                |r| r.get(0),
                            )
                            .unwrap(),
                        )
                    })
                    .unwrap()
            }
            TestStore::Postgres { url } => {
                use sqlx::{Connection, Row};
                let mut c = sqlx::PgConnection::connect(url).await.unwrap();
                sqlx::query("SELECT envelope FROM strongroom_vault.records WHERE token = $1")
                    .bind(token)
                    .fetch_one(&mut c)
                    .await
                    .unwrap()
                    .get(0)
            }
        }
    }

    /// Overwrites a sealed envelope past the vault.
    pub async fn set_raw_envelope(&self, token: &str, envelope: Vec<u8>) {
        match &self.store {
            TestStore::Sqlite => {
                let t = token.to_owned();
                self.sqlite()
                    .vault
                    .database()
                    .write(move |c| {
                        c.execute(
                            "UPDATE records SET envelope = ?2 WHERE token = ?1",
                            strongroom_store::sqlite::rusqlite::params![t, envelope],
                        )
                        .unwrap();
                        Ok::<_, strongroom_store::StoreError>(())
                    })
                    .await
                    .unwrap();
            }
            TestStore::Postgres { url } => {
                use sqlx::Connection;
                let mut c = sqlx::PgConnection::connect(url).await.unwrap();
                sqlx::query("UPDATE strongroom_vault.records SET envelope = $2 WHERE token = $1")
                    .bind(token)
                    .bind(envelope)
                    .execute(&mut c)
                    .await
                    .unwrap();
            }
        }
    }

    /// One embedded store's file.
    fn sqlite_file(
        &self,
        store: strongroom_store_postgres::Store,
    ) -> &strongroom_store::sqlite::Database {
        use strongroom_store_postgres::Store;
        let s = self.sqlite();
        match store {
            Store::Central => s.central.database(),
            Store::Vault => s.vault.database(),
            Store::Archive => s.archive.database(),
            Store::Audit => s.audit.database(),
        }
    }

    /// The embedded stores, for tests that inspect or tamper with rows.
    pub fn sqlite(&self) -> &strongroom_store::sqlite::SqliteStores {
        self.server
            .sqlite
            .as_ref()
            .expect("an SQLite-backed server")
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn anonymous(&self) -> Caller {
        Caller {
            http: self.http.clone(),
            url: self.url.clone(),
            token: None,
        }
    }

    pub async fn login(&self, client_id: &str, secret: &str) -> Caller {
        let (status, body) = self
            .anonymous()
            .call(
                Method::POST,
                "/v1/auth/token",
                Some(json!({"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "login failed: {body}");
        Caller {
            token: Some(body["access_token"].as_str().unwrap().to_owned()),
            ..self.anonymous()
        }
    }

    pub async fn service(&self) -> Caller {
        self.login(
            &self.creds.service.client_id,
            &self.creds.service.client_secret,
        )
        .await
    }

    pub async fn admin(&self) -> Caller {
        self.login(&self.creds.admin.client_id, &self.creds.admin.client_secret)
            .await
    }

    pub async fn officer(&self) -> Caller {
        self.login(
            &self.creds.security_officer.client_id,
            &self.creds.security_officer.client_secret,
        )
        .await
    }

    /// A security officer bound to every tenant, made directly in the stores
    /// (as `init` does), to approve principals in tests.
    pub async fn approver(&self) -> Caller {
        let name = format!(
            "approver-{}",
            strongroom_crypto::random::hex_id::<4>().unwrap()
        );
        let made = strongroom::bootstrap::create_principal(
            &self.server.vault,
            &name,
            &["security_officer"],
            &["*"],
            "test",
        )
        .await
        .unwrap();
        self.login(&made.record.client_id, &made.client_secret)
            .await
    }

    /// Creates a principal through the API (approving it if its roles need
    /// dual control) and logs in as it.
    pub async fn principal(&self, name: &str, roles: &[&str], tenants: &[&str]) -> Caller {
        let (status, body) = self
            .admin()
            .await
            .post(
                "/v1/principals",
                json!({"name": name, "roles": roles, "tenants": tenants}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        if body["pending_approval"] == true {
            let id = body["id"].as_str().unwrap();
            let (status, resp) = self
                .approver()
                .await
                .post(&format!("/v1/principals/{id}/approve"), json!({}))
                .await;
            assert_eq!(status, StatusCode::NO_CONTENT, "{resp}");
        }
        self.login(
            body["client_id"].as_str().unwrap(),
            body["client_secret"].as_str().unwrap(),
        )
        .await
    }
}

/// A (possibly authenticated) API caller.
#[derive(Clone)]
pub struct Caller {
    pub http: reqwest::Client,
    pub url: String,
    pub token: Option<String>,
}

impl Caller {
    pub fn with_token(&self, token: &str) -> Caller {
        Caller {
            token: Some(token.to_owned()),
            ..self.clone()
        }
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.url));
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, value)
    }

    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, Some(body)).await
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path, None).await
    }

    /// A request with a body that is not JSON (a CSV file, say).
    pub async fn call_raw(
        &self,
        method: Method,
        path: &str,
        content_type: &str,
        body: &str,
    ) -> (StatusCode, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.url))
            .header("content-type", content_type)
            .body(body.to_owned());
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub async fn put_json(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::PUT, path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> (StatusCode, Value) {
        self.call(Method::DELETE, path, None).await
    }

    /// Tokenizes a voucher code and returns the token.
    pub async fn put(&self, value: &str) -> String {
        let (status, body) = self
            .post(
                "/v1/secrets",
                json!({"class": "voucher_code", "value": value}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["token"].as_str().unwrap().to_owned()
    }

    pub async fn reveal(&self, token: &str) -> (StatusCode, Value) {
        self.post(
            &format!("/v1/secrets/{token}/reveal"),
            json!({"purpose": "test"}),
        )
        .await
    }
}

/// The error code of an error body.
pub fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("<no error code>")
}

/// A random voucher-like code.
pub fn random_code() -> String {
    format!(
        "GC-{}",
        strongroom_crypto::random::token("").unwrap().to_uppercase()
    )
}

impl Harness {
    /// A production-style vault: root key split into `shares` Shamir shares
    /// (`threshold` needed), served sealed. Returns the printed shares.
    pub async fn shamir_on(store: TestStore, threshold: u8, shares: u8) -> (Self, Vec<String>) {
        use strongroom::app::DevIdentity;
        use strongroom::bootstrap::create_principal;
        use strongroom_vault::{Principal, RequestContext, Role, SealMethod, Vault, initialize};

        let dir = TempDir::new().unwrap();
        let data = dir.path().join("data");
        strongroom::datadir::DataDir::new(&data).create().unwrap();
        let clock = ManualClock::new(now_ms());
        let (printed, creds) = {
            let stores = strongroom::storage::open(
                &store.backend(),
                &strongroom::datadir::DataDir::new(&data),
            )
            .await
            .unwrap();
            let vault = Vault::new(
                stores.set.clone(),
                Arc::new(clock.clone()),
                VaultConfig::default(),
            );
            let init = initialize(vault.stores(), SealMethod::Shamir { threshold, shares })
                .await
                .unwrap();
            let ctx = RequestContext::default();
            vault.unseal_with_root(&init.root_key, &ctx).await.unwrap();
            let mk = |c: strongroom_api::identity::NewCredentials| DevIdentity {
                client_id: c.record.client_id.clone(),
                client_secret: c.client_secret.to_string(),
            };
            let admin = create_principal(&vault, "admin", &["admin"], &["*"], "test")
                .await
                .unwrap();
            let service =
                create_principal(&vault, "svc", &["ingest", "fulfilment"], &["dev"], "test")
                    .await
                    .unwrap();
            let officer =
                create_principal(&vault, "officer", &["security_officer"], &["dev"], "test")
                    .await
                    .unwrap();
            let root_principal = Principal {
                id: "test".into(),
                name: "test".into(),
                roles: vec!["admin".into()],
                permissions: Role::Admin.permissions(),
                tenants: vec!["*".into()],
                human: false,
                mfa_recent: false,
            };
            vault.seal(&root_principal, &ctx).await.unwrap();
            let printed: Vec<String> = init.shares.iter().map(|s| s.to_string()).collect();
            (
                printed,
                DevCredentials {
                    url: String::new(),
                    ca_cert_path: None,
                    admin: mk(admin),
                    service: mk(service),
                    security_officer: mk(officer),
                    stock_manager: None,
                    auditor: None,
                    gateway: None,
                },
            )
        };
        (
            Self::launch(dir, data, false, clock, Some(creds), store).await,
            printed,
        )
    }

    /// Gives shares until the vault reports unsealed.
    pub async fn unseal(&self, shares: &[String]) {
        for share in shares {
            let (status, body) = self
                .anonymous()
                .post("/v1/sys/unseal", json!({ "share": share }))
                .await;
            assert_eq!(status, StatusCode::OK, "{body}");
        }
        let (_, status) = self.anonymous().get("/v1/sys/seal-status").await;
        assert_eq!(status["sealed"], false, "{status}");
    }
}

/// The bootstrap token in `init`'s output.
pub fn bootstrap_token(init_stdout: &str) -> String {
    init_stdout
        .split_whitespace()
        .find(|w| w.starts_with("srbt_"))
        .unwrap_or_else(|| panic!("init printed no bootstrap token: {init_stdout}"))
        .to_owned()
}

/// How a person made by [`bootstrap_first_people`] logs in again: with a
/// recovery code each time, so tests need not wait for the next TOTP step.
pub struct PersonLogin {
    pub name: String,
    pub password: String,
    pub recovery: Vec<String>,
}

impl PersonLogin {
    pub async fn login(&mut self, http: &reqwest::Client, url: &str) -> String {
        let code = self.recovery.pop().expect("recovery codes left");
        let resp = http
            .post(format!("{url}/v1/auth/login"))
            .json(&json!({"username": self.name, "password": self.password, "recovery_code": code}))
            .send()
            .await
            .unwrap();
        let status = resp.status();
        let body: Value = resp.json().await.unwrap();
        assert_eq!(status, StatusCode::OK, "{body}");
        body["access_token"].as_str().unwrap().to_owned()
    }
}

/// A vault's first administrator and security officer, made with the
/// bootstrap token through the API at `url` and enrolled (real clock).
pub async fn bootstrap_first_people(
    http: &reqwest::Client,
    url: &str,
    token: &str,
) -> (PersonLogin, PersonLogin) {
    let post = |path: &str, body: Value| {
        let req = http.post(format!("{url}{path}")).json(&body);
        async move {
            let resp = req.send().await.unwrap();
            let status = resp.status();
            let text = resp.text().await.unwrap();
            (
                status,
                serde_json::from_str::<Value>(&text).unwrap_or(Value::Null),
            )
        }
    };
    let (status, made) = post(
        "/v1/sys/bootstrap",
        json!({"bootstrap_token": token, "admin": "first-admin", "security_officer": "first-officer"}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    let mut people = Vec::new();
    for role in ["admin", "security_officer"] {
        let name = made[role]["name"].as_str().unwrap().to_owned();
        let code = made[role]["enrolment_code"].as_str().unwrap().to_owned();
        let password = format!("a long passphrase for the {role} role");
        let (status, enrolled) = post(
            "/v1/auth/enrol",
            json!({"username": name, "enrolment_code": code, "password": password}),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{enrolled}");
        let totp = totp_rs::Totp::from_url(enrolled["otpauth_uri"].as_str().unwrap()).unwrap();
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let (status, body) = post(
            "/v1/auth/enrol/confirm",
            json!({"username": name, "enrolment_code": code, "totp": totp.generate(secs).to_string()}),
        )
        .await;
        assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
        let recovery = enrolled["recovery_codes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap().to_owned())
            .collect();
        people.push(PersonLogin {
            name,
            password,
            recovery,
        });
    }
    let officer = people.pop().unwrap();
    let admin = people.pop().unwrap();
    (admin, officer)
}

/// The Redis the tests use, or `None` (said plainly) when there is none
/// outside CI; under `CI=true` a missing Redis fails the test.
pub fn redis_url(test: &str) -> Option<String> {
    let url = std::env::var("STRONGROOM_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let addr = url
        .trim_start_matches("redis://")
        .split('/')
        .next()
        .unwrap_or("127.0.0.1:6379")
        .to_owned();
    if std::net::TcpStream::connect(&addr).is_ok() {
        return Some(url);
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("Redis is not reachable at {addr} and CI=true: this test cannot be skipped");
    }
    eprintln!("SKIPPED: Redis is not reachable at {addr}; {test} did not run");
    None
}

/// The key shares `strongroom init` printed (`Share N: srs1-…`).
pub fn printed_shares(out: &str) -> Vec<String> {
    out.lines()
        .filter_map(|l| {
            l.trim()
                .strip_prefix("Share ")
                .and_then(|r| r.split_once(": "))
        })
        .map(|(_, s)| s.trim().to_owned())
        .collect()
}
