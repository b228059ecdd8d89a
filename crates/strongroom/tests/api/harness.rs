//! Starting servers and calling them.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use strongroom::app::{DevCredentials, RunningServer, StartOptions, TlsSource, start};
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

/// A dev server with a manual clock, in a temporary directory.
pub struct Harness {
    pub server: RunningServer,
    pub dir: TempDir,
    pub http: reqwest::Client,
    pub url: String,
    pub clock: ManualClock,
    pub creds: DevCredentials,
}

impl Harness {
    /// Starts a server on `data` (dev mode creates and unseals it).
    async fn launch(
        dir: TempDir,
        data: PathBuf,
        dev: bool,
        clock: ManualClock,
        creds: Option<DevCredentials>,
    ) -> Self {
        let server = start(StartOptions {
            data_dir: data,
            listen: "127.0.0.1:0".into(),
            tls: TlsSource::DevSelfSigned,
            dev,
            vault_config: VaultConfig::default(),
            api_config: ApiConfig::default(),
            clock: Arc::new(clock.clone()),
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
        }
    }

    pub async fn dev() -> Self {
        let dir = TempDir::new().unwrap();
        let data = dir.path().join("data");
        Self::launch(dir, data, true, ManualClock::new(now_ms()), None).await
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
    pub async fn shamir(threshold: u8, shares: u8) -> (Self, Vec<String>) {
        use strongroom::app::DevIdentity;
        use strongroom::bootstrap::create_principal;
        use strongroom_store::sqlite::SqliteStores;
        use strongroom_vault::{Principal, RequestContext, Role, SealMethod, Vault, initialize};

        let dir = TempDir::new().unwrap();
        let data = dir.path().join("data");
        strongroom::datadir::DataDir::new(&data).create().unwrap();
        let clock = ManualClock::new(now_ms());
        let (printed, creds) = {
            let stores = SqliteStores::open(&data).unwrap();
            let vault = Vault::new(
                stores.store_set(),
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
                roles: vec![Role::Admin],
                tenants: vec!["*".into()],
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
                },
            )
        };
        (
            Self::launch(dir, data, false, clock, Some(creds)).await,
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
