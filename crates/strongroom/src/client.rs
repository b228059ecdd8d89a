//! The CLI's HTTPS client: finds the server and credentials, gets an access
//! token, and turns API errors into messages that say what to do.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, anyhow, bail};
use serde_json::Value;
use zeroize::Zeroizing;

use crate::app::DevCredentials;
use crate::cli::ClientArgs;

/// An API client, optionally authenticated.
pub struct Client {
    http: reqwest::Client,
    base: String,
    ca_cert: Option<PathBuf>,
    client_id: Option<String>,
    client_secret: Option<Zeroizing<String>>,
    /// A person's access token from `strongroom login`.
    session_token: Option<Zeroizing<String>>,
}

fn default_credentials() -> Option<PathBuf> {
    let p = PathBuf::from("strongroom-dev").join(crate::datadir::DEV_CREDENTIALS);
    p.exists().then_some(p)
}

impl Client {
    /// Builds a client from flags, environment and (for development) a dev
    /// credentials file. `default_identity` picks the dev identity for the command.
    pub fn new(args: &ClientArgs, default_identity: &str) -> Result<Self> {
        // A person who logged in acts as themselves unless told otherwise.
        let wants_service =
            args.client_id.is_some() || args.credentials.is_some() || args.as_identity.is_some();
        if !wants_service
            && let Some(session) = crate::session::load()?
            && args
                .url
                .as_ref()
                .is_none_or(|u| u.trim_end_matches('/') == session.url)
        {
            return Self::for_session(&session);
        }
        let creds_path = args.credentials.clone().or_else(default_credentials);
        let creds: Option<DevCredentials> = match &creds_path {
            Some(p) => Some(
                serde_json::from_slice(
                    &std::fs::read(p).with_context(|| format!("could not read {}", p.display()))?,
                )
                .with_context(|| format!("{} is not a dev credentials file", p.display()))?,
            ),
            None => None,
        };
        let base = args
            .url
            .clone()
            .or_else(|| creds.as_ref().map(|c| c.url.clone()))
            .context("no server given: pass --url (or STRONGROOM_URL), or run `strongroom serve --dev` first")?;
        let ca = args
            .ca_cert
            .clone()
            .or_else(|| creds.as_ref().and_then(|c| c.ca_cert_path.clone()));
        let (client_id, client_secret) = match (
            &args.client_id,
            std::env::var("STRONGROOM_CLIENT_SECRET").ok(),
        ) {
            (Some(id), Some(secret)) => (Some(id.clone()), Some(Zeroizing::new(secret))),
            (Some(_), None) => bail!(
                "--client-id needs the secret in STRONGROOM_CLIENT_SECRET (secrets are never taken from the command line)"
            ),
            (None, _) => match &creds {
                Some(c) => {
                    let which = args.as_identity.as_deref().unwrap_or(default_identity);
                    let ident = match which {
                        "admin" => &c.admin,
                        "service" => &c.service,
                        "security_officer" => &c.security_officer,
                        "stock_manager" => c.stock_manager.as_ref().context(
                            "this dev credentials file has no stock_manager: restart `serve --dev` to add one",
                        )?,
                        "auditor" => c.auditor.as_ref().context(
                            "this dev credentials file has no auditor: restart `serve --dev` to add one",
                        )?,
                        other => bail!(
                            "--as {other}: choose admin, service, security_officer, stock_manager or auditor"
                        ),
                    };
                    (
                        Some(ident.client_id.clone()),
                        Some(Zeroizing::new(ident.client_secret.clone())),
                    )
                }
                None => (None, None),
            },
        };
        let mut client = Self::connect(&base, ca)?;
        client.client_id = client_id;
        client.client_secret = client_secret;
        Ok(client)
    }

    /// A client of the server a saved session belongs to, acting with it:
    /// the session's token never goes to another server.
    pub fn for_session(session: &crate::session::Session) -> Result<Self> {
        let mut client = Self::connect(&session.url, session.ca_cert.clone())?;
        client.session_token = Some(Zeroizing::new(session.access_token.clone()));
        Ok(client)
    }

    /// A client of `base` with no credentials yet.
    fn connect(base: &str, ca: Option<PathBuf>) -> Result<Self> {
        let mut builder = reqwest::Client::builder()
            .user_agent(concat!("strongroom-cli/", env!("CARGO_PKG_VERSION")));
        if base.starts_with("https://") {
            builder = builder.tls_backend_preconfigured(tls_client_config(ca.as_ref())?);
        }
        Ok(Self {
            http: builder.build().context("could not build the HTTP client")?,
            base: base.trim_end_matches('/').to_owned(),
            ca_cert: ca,
            client_id: None,
            client_secret: None,
            session_token: None,
        })
    }

    /// The server's URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The CA certificate trusted for the server, if any.
    pub fn ca_cert(&self) -> Option<&PathBuf> {
        self.ca_cert.as_ref()
    }

    /// Calls an endpoint with a given access token.
    pub async fn call_with(
        &self,
        token: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value> {
        self.send(method, path, body, Some(token)).await
    }

    async fn token(&self) -> Result<String> {
        if self.client_id.is_none()
            && let Some(token) = &self.session_token
        {
            return Ok(token.to_string());
        }
        let (Some(id), Some(secret)) = (&self.client_id, &self.client_secret) else {
            bail!(
                "this command needs credentials: `strongroom login` (people), --client-id with STRONGROOM_CLIENT_SECRET (services), or --credentials FILE"
            );
        };
        let body = serde_json::json!({
            "grant_type": "client_credentials",
            "client_id": id,
            "client_secret": secret.as_str(),
        });
        let v = self
            .send(reqwest::Method::POST, "/v1/auth/token", Some(body), None)
            .await?;
        v.get("access_token")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| anyhow!("the server's token response had no access_token"))
    }

    /// Calls an endpoint with an access token.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value> {
        let token = Zeroizing::new(self.token().await?);
        self.send(method, path, body, Some(&token)).await
    }

    /// Calls an endpoint without authentication.
    pub async fn call_anonymous(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value> {
        self.send(method, path, body, None).await
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
        token: Option<&str>,
    ) -> Result<Value> {
        let url = format!("{}{path}", self.base);
        let mut req = self.http.request(method, &url);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        self.answer(req).await
    }

    /// Sends a body that is not JSON (a file, streamed) and reads the answer.
    pub async fn upload(
        &self,
        path: &str,
        content_type: &str,
        body: reqwest::Body,
    ) -> Result<Value> {
        let token = Zeroizing::new(self.token().await?);
        let req = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(token.as_str())
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(body);
        self.answer(req).await
    }

    async fn answer(&self, req: reqwest::RequestBuilder) -> Result<Value> {
        let resp = req
            .send()
            .await
            .map_err(|e| anyhow!("could not reach {}: {e}", self.base))?;
        let status = resp.status();
        let bytes = resp.bytes().await.context("could not read the response")?;
        if status.is_success() {
            if bytes.is_empty() {
                return Ok(Value::Null);
            }
            return serde_json::from_slice(&bytes)
                .context("the server sent a response that is not JSON");
        }
        Err(refusal(status, &bytes))
    }

    /// Streams the body of a GET into `out` as it arrives (an export that
    /// may be larger than memory); returns the bytes written.
    pub async fn download(&self, path: &str, out: &mut impl std::io::Write) -> Result<u64> {
        let token = Zeroizing::new(self.token().await?);
        let mut resp = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(token.as_str())
            .send()
            .await
            .map_err(|e| anyhow!("could not reach {}: {e}", self.base))?;
        let status = resp.status();
        if !status.is_success() {
            let bytes = resp.bytes().await.context("could not read the response")?;
            return Err(refusal(status, &bytes));
        }
        let mut written = 0u64;
        while let Some(chunk) = resp
            .chunk()
            .await
            .context("the download was cut off; run it again")?
        {
            out.write_all(&chunk)
                .context("could not write the output")?;
            written += chunk.len() as u64;
        }
        Ok(written)
    }
}

/// The server's error answer as an error for a person.
fn refusal(status: reqwest::StatusCode, bytes: &[u8]) -> anyhow::Error {
    {
        let parsed: Option<Value> = serde_json::from_slice(bytes).ok();
        let err = parsed.as_ref().and_then(|v| v.get("error"));
        let code = err
            .and_then(|e| e.get("code"))
            .and_then(Value::as_str)
            .unwrap_or("unknown");
        let message = err
            .and_then(|e| e.get("message"))
            .and_then(Value::as_str)
            .unwrap_or("no details");
        let rid = err
            .and_then(|e| e.get("request_id"))
            .and_then(Value::as_str)
            .unwrap_or("-");
        anyhow!(
            "{message} ({code}, HTTP {}, request {rid})",
            status.as_u16()
        )
    }
}

/// A rustls client configuration trusting one CA certificate (aws-lc-rs, TLS 1.2+).
pub fn tls_client_config(ca: Option<&PathBuf>) -> Result<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    let Some(ca) = ca else {
        bail!(
            "an https server needs --ca-cert (or STRONGROOM_CA_CERT) naming the CA certificate to trust"
        );
    };
    let pem = std::fs::read(ca)
        .with_context(|| format!("could not read CA certificate {}", ca.display()))?;
    for cert in rustls_pemfile::certs(&mut &pem[..]) {
        roots.add(cert?).context("invalid CA certificate")?;
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_root_certificates(roots)
        .with_no_client_auth())
}
