//! A local HTTPS "payment processor" for the relay benchmark: it answers
//! `POST /v1/charges` with a small JSON body echoing the card number (as
//! real processors do, so the relay's masking is part of what is measured).
//! The same upstream is called directly and through the relay, so the
//! difference is the relay's cost.

use std::path::PathBuf;

use anyhow::Result;
use serde_json::{Value, json};

/// The running upstream.
pub struct Upstream {
    /// Its port on 127.0.0.1 (name: `localhost`).
    pub port: u16,
    /// The CA certificate that signed its certificate.
    pub ca_file: PathBuf,
    _dir: tempfile::TempDir,
}

impl Upstream {
    /// Starts it, with a certificate of its own for `localhost`.
    pub fn start() -> Result<Self> {
        // A fresh private directory (the certificate's key is in it).
        let dir = tempfile::Builder::new()
            .prefix("strongroom-upstream-")
            .tempdir()?;
        let data = strongroom::datadir::DataDir::new(dir.path().join("tls"));
        data.create()?;
        let (cert, key, ca_file) = strongroom::devtls::ensure(&data)?;
        let app = axum::Router::new().route(
            "/v1/charges",
            axum::routing::post(|body: axum::Json<Value>| async move {
                let number = body["source"]["number"].clone();
                axum::Json(json!({"id": "ch_bench", "status": "succeeded", "card": number}))
            }),
        );
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        let tls = strongroom_api::server::tls_config(&cert, &key)?;
        tokio::spawn(strongroom_api::server::serve_tls(
            listener,
            app,
            tls,
            axum_server::Handle::new(),
        ));
        Ok(Self {
            port,
            ca_file,
            _dir: dir,
        })
    }

    /// The `[relay]` section naming it, as an environment value.
    pub fn relay_env(&self) -> String {
        format!(
            r#"{{route=[{{name="bench",upstream="https://localhost:{}",paths=["/v1/charges"],ca_file="{}",allow_private=true,tenants=["dev"]}}]}}"#,
            self.port,
            self.ca_file.display()
        )
    }
}
