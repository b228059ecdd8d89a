//! Two `strongroom serve` processes on one PostgreSQL database behave as one
//! vault: concurrent mixed traffic across both, one valid audit chain, every
//! acknowledged secret revealable from either node, deletions and key
//! rotations seen by both.

use std::collections::HashSet;
use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::sync::Semaphore;

use crate::harness::{TestStore, random_code};

/// A server process, killed when dropped.
struct Node {
    child: Child,
    url: String,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP client (the nodes serve plain HTTP on loopback here).
fn client() -> reqwest::Client {
    // reqwest is built without a default TLS provider; this client speaks
    // plain HTTP but still needs one installed.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    reqwest::Client::new()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_strongroom"))
}

/// Writes a node's configuration: its own data directory and port, the
/// shared database (each store logging in as its own role).
fn node_config(root: &std::path::Path, n: u32, db_url: &str) -> (std::path::PathBuf, String) {
    use std::os::unix::fs::PermissionsExt;
    let data = root.join(format!("node{n}"));
    std::fs::create_dir_all(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).unwrap();
    let port = free_port();
    let path = root.join(format!("node{n}.toml"));
    std::fs::write(
        &path,
        format!(
            "data_dir = \"{}\"\nlisten = \"127.0.0.1:{port}\"\ninsecure_http = true\n\n\
             [storage]\nbackend = \"postgres\"\n\n[storage.postgres]\nurl = \"{db_url}\"\nmax_connections = 4\n",
            data.display()
        ),
    )
    .unwrap();
    (path, format!("http://127.0.0.1:{port}"))
}

async fn start(config: &std::path::Path, url: String, log: &std::path::Path) -> Node {
    let child = bin()
        .args(["serve", "--config"])
        .arg(config)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    let node = Node { child, url };
    let http = client();
    for _ in 0..100 {
        if http
            .get(format!("{}/v1/sys/health", node.url))
            .send()
            .await
            .is_ok()
        {
            return node;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "node at {} did not start: {}",
        node.url,
        std::fs::read_to_string(log).unwrap_or_default()
    );
}

async fn call(
    http: &reqwest::Client,
    url: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let req = match &body {
        Some(b) => http.post(url).json(b),
        None => http.get(url),
    };
    let req = match token {
        Some(t) => req.bearer_auth(t),
        None => req,
    };
    let resp = req.send().await.unwrap();
    let status = resp.status();
    let text = resp.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

async fn login(http: &reqwest::Client, node: &Node, id: &str, secret: &str) -> String {
    let (status, body) = call(
        http,
        &format!("{}/v1/auth/token", node.url),
        None,
        Some(json!({"grant_type": "client_credentials", "client_id": id, "client_secret": secret})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["access_token"].as_str().unwrap().to_owned()
}

/// `init`'s printed shares and bootstrap token.
struct Initialised {
    shares: Vec<String>,
    bootstrap_token: String,
}

fn parse_init(out: &str) -> Initialised {
    Initialised {
        shares: crate::harness::printed_shares(out),
        bootstrap_token: crate::harness::bootstrap_token(out),
    }
}

/// Two nodes on one PostgreSQL database, initialised and unsealed, with
/// the first administrator signed in on node 1 and the first security
/// officer on node 2.
struct Cluster {
    nodes: Vec<Node>,
    /// Node 2's configuration file.
    config2: std::path::PathBuf,
    /// The key shares `init` printed.
    shares: Vec<String>,
    /// The database's admin URL.
    db: String,
    http: reqwest::Client,
    admin: String,
    officer: String,
    first_officer: crate::harness::PersonLogin,
    // Last: the nodes stop before their directories go.
    _dir: TempDir,
}

async fn cluster() -> Option<Cluster> {
    let store = TestStore::postgres().await?;
    let TestStore::Postgres { url: db } = &store else {
        unreachable!()
    };
    let dir = TempDir::new().unwrap();
    let (config1, url1) = node_config(dir.path(), 1, db);
    let (config2, url2) = node_config(dir.path(), 2, db);

    let out = bin()
        .args(["init", "--shares", "3", "--threshold", "2", "--config"])
        .arg(&config1)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let init = parse_init(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(init.shares.len(), 3);

    let nodes = vec![
        start(&config1, url1, &dir.path().join("node1.log")).await,
        start(&config2, url2, &dir.path().join("node2.log")).await,
    ];
    let http = client();
    for node in &nodes {
        for share in &init.shares[..2] {
            let (status, body) = call(
                &http,
                &format!("{}/v1/sys/unseal", node.url),
                None,
                Some(json!({"share": share})),
            )
            .await;
            assert_eq!(status, StatusCode::OK, "{body}");
        }
    }
    let (mut first_admin, mut first_officer) =
        crate::harness::bootstrap_first_people(&http, &nodes[0].url, &init.bootstrap_token).await;
    let admin = first_admin.login(&http, &nodes[0].url).await;
    let officer = first_officer.login(&http, &nodes[1].url).await;
    Some(Cluster {
        nodes,
        config2,
        shares: init.shares,
        db: db.clone(),
        http,
        admin,
        officer,
        first_officer,
        _dir: dir,
    })
}

impl Cluster {
    /// A service made on node 1 and, if it needs a second person, approved
    /// on node 2; signed in on each node.
    async fn service(&self, name: &str, roles: &[&str], tenants: &[&str]) -> [String; 2] {
        let (status, made) = call(
            &self.http,
            &format!("{}/v1/principals", self.nodes[0].url),
            Some(&self.admin),
            Some(json!({"name": name, "roles": roles, "tenants": tenants})),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{made}");
        if made["pending_approval"] == true {
            let (status, _) = call(
                &self.http,
                &format!(
                    "{}/v1/principals/{}/approve",
                    self.nodes[1].url,
                    made["id"].as_str().unwrap()
                ),
                Some(&self.officer),
                Some(json!({})),
            )
            .await;
            assert_eq!(status, StatusCode::NO_CONTENT);
        }
        let (id, secret) = (
            made["client_id"].as_str().unwrap(),
            made["client_secret"].as_str().unwrap(),
        );
        [
            login(&self.http, &self.nodes[0], id, secret).await,
            login(&self.http, &self.nodes[1], id, secret).await,
        ]
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_on_one_database_act_as_one_vault() {
    let Some(mut c) = cluster().await else {
        return;
    };
    let (http, officer) = (c.http.clone(), c.officer.clone());
    let svc = c.service("svc", &["ingest", "fulfilment"], &["t1"]).await;
    let nodes = &c.nodes;

    // 1,000 concurrent mixed requests across both nodes: single and batch
    // tokenizes, reveals of earlier secrets on the other node, the same value
    // offered to both nodes at once, and a key rotation in the middle.
    let seeded: Vec<(String, String)> = {
        let mut v = Vec::new();
        for i in 0..50 {
            let code = random_code();
            let (s, b) = call(
                &http,
                &format!("{}/v1/secrets", nodes[i % 2].url),
                Some(&svc[i % 2]),
                Some(json!({"class": "voucher_code", "value": code})),
            )
            .await;
            assert_eq!(s, StatusCode::CREATED, "{b}");
            v.push((b["token"].as_str().unwrap().to_owned(), code));
        }
        v
    };
    let limit = std::sync::Arc::new(Semaphore::new(48));
    let shared_codes: Vec<String> = (0..100).map(|_| random_code()).collect();
    let mut tasks = Vec::new();
    for i in 0..1000usize {
        let (http, limit) = (http.clone(), limit.clone());
        let node = nodes[i % 2].url.clone();
        let other = nodes[(i + 1) % 2].url.clone();
        let token = svc[i % 2].clone();
        let officer = officer.clone();
        let seeded = seeded[i % seeded.len()].clone();
        let shared = shared_codes[i / 10].clone();
        tasks.push(tokio::spawn(async move {
            let _slot = limit.acquire().await.unwrap();
            let mut stored: Vec<(String, String)> = Vec::new();
            match i % 10 {
                0..=4 => {
                    let code = random_code();
                    let (s, b) = call(&http, &format!("{node}/v1/secrets"), Some(&token), Some(json!({"class": "voucher_code", "value": code}))).await;
                    assert_eq!(s, StatusCode::CREATED, "{b}");
                    stored.push((b["token"].as_str().unwrap().to_owned(), code));
                }
                5 => {
                    let codes: Vec<String> = (0..5).map(|_| random_code()).collect();
                    let items: Vec<Value> = codes.iter().map(|c| json!({"class": "voucher_code", "value": c})).collect();
                    let (s, b) = call(&http, &format!("{node}/v1/secrets/batch"), Some(&token), Some(json!({"items": items}))).await;
                    assert_eq!(s, StatusCode::OK, "{b}");
                    for (item, code) in b["items"].as_array().unwrap().iter().zip(codes) {
                        stored.push((item["token"].as_str().unwrap().to_owned(), code));
                    }
                }
                6 | 7 => {
                    let (s, b) = call(&http, &format!("{other}/v1/secrets/{}/reveal", seeded.0), Some(&token), Some(json!({"purpose": "multi-node test"}))).await;
                    assert_eq!(s, StatusCode::OK, "{b}");
                    assert_eq!(b["value"], seeded.1.as_str());
                }
                8 => {
                    // The same value offered to both nodes at the same moment:
                    // one stores it, the other returns that token.
                    let body = json!({"class": "voucher_code", "value": shared, "on_duplicate": "return_existing"});
                    let (here, there) = (format!("{node}/v1/secrets"), format!("{other}/v1/secrets"));
                    let ((s1, b1), (s2, b2)) = tokio::join!(
                        call(&http, &here, Some(&token), Some(body.clone())),
                        call(&http, &there, Some(&token), Some(body)),
                    );
                    let mut statuses = [s1, s2];
                    statuses.sort();
                    assert_eq!(statuses, [StatusCode::OK, StatusCode::CREATED], "{b1} {b2}");
                    assert_eq!(b1["token"], b2["token"], "one value, one token");
                    stored.push((b1["token"].as_str().unwrap().to_owned(), shared));
                }
                _ => {
                    if i == 499 {
                        let (s, b) = call(&http, &format!("{node}/v1/keys/rotate"), Some(&officer), Some(json!({"tenant": "t1", "class": "voucher_code"}))).await;
                        assert_eq!(s, StatusCode::OK, "{b}");
                    } else {
                        let (s, _) = call(&http, &format!("{node}/v1/auth/whoami"), Some(&token), None).await;
                        assert_eq!(s, StatusCode::OK);
                    }
                }
            }
            stored
        }));
    }
    let mut acknowledged: Vec<(String, String)> = seeded.clone();
    for t in tasks {
        acknowledged.extend(t.await.unwrap());
    }
    // Every acknowledged secret reveals from either node.
    let mut checks = Vec::new();
    for (i, (token, code)) in acknowledged.iter().enumerate() {
        for n in 0..2 {
            let (http, limit) = (http.clone(), limit.clone());
            let (url, auth) = (nodes[n].url.clone(), svc[n].clone());
            let (token, code) = (token.clone(), code.clone());
            let _ = i;
            checks.push(tokio::spawn(async move {
                let _slot = limit.acquire().await.unwrap();
                let (s, b) = call(
                    &http,
                    &format!("{url}/v1/secrets/{token}/reveal"),
                    Some(&auth),
                    Some(json!({"purpose": "check"})),
                )
                .await;
                assert_eq!(s, StatusCode::OK, "{token} on {url}: {b}");
                assert_eq!(b["value"], code.as_str());
            }));
        }
    }
    for c in checks {
        c.await.unwrap();
    }

    // A rotation on one node is used for new secrets by the other.
    let (s, b) = call(
        &http,
        &format!("{}/v1/keys/rotate", nodes[0].url),
        Some(&officer),
        Some(json!({"tenant": "t1", "class": "voucher_code"})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let newest = b["version"].as_u64().unwrap();
    tokio::time::sleep(strongroom_vault::keyring::REFRESH + Duration::from_millis(200)).await;
    let (s, b) = call(
        &http,
        &format!("{}/v1/secrets", nodes[1].url),
        Some(&svc[1]),
        Some(json!({"class": "voucher_code", "value": random_code()})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    assert_eq!(
        b["key_version"].as_u64(),
        Some(newest),
        "node 2 still seals with an old key"
    );

    // A reveal window is one window: once closed it is closed on both nodes,
    // and re-opened on one it is open on the other.
    let short = random_code();
    let (s, b) = call(
        &http,
        &format!("{}/v1/secrets", nodes[0].url),
        Some(&svc[0]),
        Some(json!({"class": "voucher_code", "value": short, "reveal_window_secs": 1})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let short_token = b["token"].as_str().unwrap().to_owned();
    let reveal_url = |n: usize| format!("{}/v1/secrets/{short_token}/reveal", nodes[n].url);
    let purpose = json!({"purpose": "window check"});
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for (n, token) in svc.iter().enumerate() {
        let (s, b) = call(&http, &reveal_url(n), Some(token), Some(purpose.clone())).await;
        assert_eq!(s, StatusCode::CONFLICT, "node {}: {b}", n + 1);
        assert_eq!(b["error"]["code"], "vault.dormant");
    }
    let officer2 = c.first_officer.login(&http, &nodes[1].url).await;
    let (s, b) = call(
        &http,
        &format!("{}/v1/secrets/{short_token}/reactivate", nodes[1].url),
        Some(&officer2),
        Some(json!({"window_secs": 600, "reason": "multi-node window check"})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (s, b) = call(&http, &reveal_url(0), Some(&svc[0]), Some(purpose)).await;
    assert_eq!(
        s,
        StatusCode::OK,
        "reactivated on node 2, refused on node 1: {b}"
    );
    assert_eq!(b["value"], short.as_str());

    // A deletion on one node is seen at once by the other.
    let (gone, _) = &acknowledged[7];
    let resp = http
        .delete(format!("{}/v1/secrets/{gone}", nodes[1].url))
        .bearer_auth(&officer2)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let (s, _) = call(
        &http,
        &format!("{}/v1/secrets/{gone}/reveal", nodes[0].url),
        Some(&svc[0]),
        Some(json!({"purpose": "after delete"})),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // One audit chain for both nodes, intact, checked offline.
    c.nodes.clear();
    let mut verify = bin()
        .args(["audit", "verify", "--config"])
        .arg(&c.config2)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(
        verify.stdin.take().unwrap(),
        "{}\n{}",
        c.shares[1],
        c.shares[2]
    )
    .unwrap();
    let out = verify.wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{said} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Intact, or (if the other node appended after the last sealed head)
    // verified with the last few records vouched for by the chain alone.
    assert!(
        said.contains("audit log intact") || said.contains("audit log verified through"),
        "{said}"
    );
    strongroom_store_postgres::testing::drop_database(&c.db).await;
}

/// 500 orders for 100 vouchers, spread over both nodes at once: exactly 100
/// delivered, 400 out of stock, no voucher (or code) in two orders.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_never_sell_one_voucher_twice() {
    let Some(mut c) = cluster().await else {
        return;
    };
    let http = c.http.clone();
    let stock = c.service("stock", &["stock_manager"], &["t1"]).await;
    let shop = c.service("shop", &["fulfilment"], &["t1"]).await;
    let node = |n: usize, path: &str| format!("{}{path}", c.nodes[n].url);
    let (s, b) = call(
        &http,
        &node(0, "/v1/retailers"),
        Some(&stock[0]),
        Some(json!({"name": "Acme"})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let (s, b) = call(
        &http,
        &node(1, "/v1/products"),
        Some(&stock[1]),
        Some(
            json!({"retailer": "Acme", "sku": "ACME-GIFT", "name": "Acme gift card",
                    "currency": "GBP", "denominations": [2500]}),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let codes: HashSet<String> = (0..100).map(|_| random_code()).collect();
    let mut csv = String::from("sku,code,face_value,currency\n");
    for code in &codes {
        csv.push_str(&format!("ACME-GIFT,{code},25.00,GBP\n"));
    }
    let resp = http
        .post(node(0, "/v1/imports?retailer=Acme"))
        .bearer_auth(&stock[0])
        .header("content-type", "text/csv")
        .body(csv)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);

    let limit = std::sync::Arc::new(Semaphore::new(64));
    let tasks: Vec<_> = (0..500usize)
        .map(|i| {
            let (http, limit) = (http.clone(), limit.clone());
            let url = node(i % 2, "/v1/orders");
            let token = shop[i % 2].clone();
            tokio::spawn(async move {
                let _slot = limit.acquire().await.unwrap();
                let body = json!({"external_ref": format!("two-{i}"), "sku": "ACME-GIFT",
                                  "face_value": 2500, "currency": "GBP",
                                  "customer_ref": "c", "delivery": "code"});
                call(&http, &url, Some(&token), Some(body)).await
            })
        })
        .collect();
    let mut delivered = Vec::new();
    let mut out_of_stock = 0;
    for t in tasks {
        let (status, body) = t.await.unwrap();
        match status {
            StatusCode::CREATED => delivered.push(body),
            StatusCode::CONFLICT if body["error"]["code"] == "order.out_of_stock" => {
                out_of_stock += 1
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!((delivered.len(), out_of_stock), (100, 400));
    let vouchers: HashSet<&str> = delivered
        .iter()
        .map(|o| o["voucher_id"].as_str().unwrap())
        .collect();
    let got: HashSet<String> = delivered
        .iter()
        .map(|o| o["code"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(vouchers.len(), 100, "a voucher went to two orders");
    assert_eq!(got, codes, "every code delivered exactly once");
    c.nodes.clear();
    strongroom_store_postgres::testing::drop_database(&c.db).await;
}
