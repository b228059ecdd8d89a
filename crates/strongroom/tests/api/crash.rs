//! A server killed with SIGKILL in the middle of a large import loses no
//! code and duplicates none: running the same file again finishes the job,
//! and afterwards every code of the file is held exactly once.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::https_client;
use crate::leaks::free_port;

/// Rows of the file: large enough that the kill lands mid-import.
const ROWS: usize = 200_000;

/// A `strongroom serve --dev` process on a data directory.
struct Server {
    child: Child,
    url: String,
}

impl Server {
    async fn start(data: &std::path::Path, port: u16) -> Self {
        let child = Command::new(env!("CARGO_BIN_EXE_strongroom"))
            .args(["serve", "--dev", "--listen", &format!("127.0.0.1:{port}")])
            .arg("--data-dir")
            .arg(data)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let url = format!("https://localhost:{port}");
        let server = Server { child, url };
        for _ in 0..200 {
            if data.join("dev-credentials.json").exists()
                && std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
            {
                return server;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the server did not start");
    }

    fn kill(mut self) {
        // SIGKILL: no shutdown, no flush, nothing but what is on disk.
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn stock_manager(http: &reqwest::Client, url: &str, data: &std::path::Path) -> String {
    let creds: Value =
        serde_json::from_slice(&std::fs::read(data.join("dev-credentials.json")).unwrap()).unwrap();
    let who = &creds["stock_manager"];
    let resp = http
        .post(format!("{url}/v1/auth/token"))
        .json(
            &json!({"grant_type": "client_credentials", "client_id": who["client_id"],
                      "client_secret": who["client_secret"]}),
        )
        .send()
        .await
        .unwrap();
    let body: Value = resp.json().await.unwrap();
    body["access_token"].as_str().unwrap().to_owned()
}

async fn import(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    query: &str,
    file: &str,
) -> (StatusCode, Value) {
    let resp = http
        .post(format!("{url}/v1/imports?{query}"))
        .bearer_auth(token)
        .header("content-type", "text/csv")
        .body(file.to_owned())
        .timeout(Duration::from_secs(600))
        .send()
        .await
        .unwrap();
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn available(http: &reqwest::Client, url: &str, token: &str) -> i64 {
    let resp = http
        .get(format!("{url}/v1/stock"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let report: Value = resp.json().await.unwrap();
    report["lines"][0]["available"].as_i64().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_dash_nine_during_a_large_import_then_a_rerun_holds_every_code_once() {
    let tmp = tempfile::TempDir::new().unwrap();
    let data = tmp.path().join("data");
    let port = free_port();
    let server = Server::start(&data, port).await;
    let creds: Value =
        serde_json::from_slice(&std::fs::read(data.join("dev-credentials.json")).unwrap()).unwrap();
    let http = https_client(std::path::Path::new(
        creds["ca_cert_path"].as_str().unwrap(),
    ));
    let url = server.url.clone();
    let token = stock_manager(&http, &url, &data).await;
    for (path, body) in [
        ("/v1/retailers", json!({"name": "Acme"})),
        (
            "/v1/products",
            json!({"retailer": "Acme", "sku": "ACME-GIFT", "name": "Gift",
                                "currency": "GBP", "denominations": [2500]}),
        ),
    ] {
        let resp = http
            .post(format!("{url}{path}"))
            .bearer_auth(&token)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::CREATED);
    }
    let mut file = String::with_capacity(ROWS * 48);
    file.push_str("sku,code,face_value,currency,expires_at\n");
    let run = strongroom_crypto::random::hex_id::<4>().unwrap();
    for i in 0..ROWS {
        file.push_str(&format!(
            "ACME-GIFT,KILL-{run}-{i:08},25.00,GBP,2099-12-31\n"
        ));
    }

    // The upload runs; once some of it is in stock, the server is killed.
    let upload = {
        let (http, url, token, file) = (http.clone(), url.clone(), token.clone(), file.clone());
        tokio::spawn(async move {
            http.post(format!("{url}/v1/imports?retailer=Acme"))
                .bearer_auth(token)
                .header("content-type", "text/csv")
                .body(file)
                .send()
                .await
                .map(|r| r.status())
        })
    };
    let mut stocked = 0;
    for _ in 0..1200 {
        stocked = available(&http, &url, &token).await;
        if stocked >= 5_000 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        stocked >= 5_000 && stocked < ROWS as i64,
        "killed at {stocked}"
    );
    server.kill();
    let outcome = upload.await.unwrap();
    assert!(
        !matches!(outcome, Ok(StatusCode::CREATED)),
        "the import finished before the kill: {outcome:?}"
    );

    // Restarted on the same directory, the same file again.
    let server = Server::start(&data, port).await;
    let token = stock_manager(&http, &server.url, &data).await;
    let before = available(&http, &server.url, &token).await;
    assert!(
        before >= stocked,
        "acknowledged stock was lost: {before} < {stocked}"
    );
    let (status, report) = import(&http, &server.url, &token, "retailer=Acme", &file).await;
    assert_eq!(status, StatusCode::CREATED, "{report}");
    assert_eq!(report["rejected"], 0, "{report}");
    let accepted = report["accepted"].as_i64().unwrap();
    let duplicates = report["duplicates"].as_i64().unwrap();
    assert_eq!(accepted + duplicates, ROWS as i64, "{report}");
    assert_eq!(
        duplicates, before,
        "each code already in stock is a duplicate, no other"
    );

    // Every code of the file is in stock exactly once: one voucher each,
    // and a dry run of the file finds every row already held.
    assert_eq!(available(&http, &server.url, &token).await, ROWS as i64);
    let (status, dry) = import(
        &http,
        &server.url,
        &token,
        "retailer=Acme&dry_run=true",
        &file,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{dry}");
    assert_eq!(
        (&dry["accepted"], &dry["duplicates"]),
        (&json!(0), &json!(ROWS)),
        "{dry}"
    );
}
