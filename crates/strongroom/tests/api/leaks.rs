//! Plaintext never at rest: 10,000 codes through a real `strongroom serve`
//! process with trace-level logging (and 1,000 codes with PINs imported from
//! a CSV file, which must not be kept), then every file under the data
//! directory (databases, WAL, everything), the server's log and, on
//! PostgreSQL, a `pg_dump` of the database are searched for every code (raw
//! and hex-encoded, as `bytea` dumps it) and for the root key. Cards too:
//! numbers and CVVs tokenized, revealed masked and relayed to a local
//! processor (each CVV used), then sought in the same places.

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use data_encoding::{BASE32, BASE64, BASE64URL_NOPAD, HEXLOWER, HEXUPPER};
use reqwest::StatusCode;
use serde_json::json;
use strongroom_crypto::shamir::{Share, combine};

use crate::harness::{Caller, TestStore, https_client, on_each_backend, random_code};

const BIN: &str = env!("CARGO_BIN_EXE_strongroom");

/// Kills the server if the test fails midway.
pub(crate) struct ServerProcess(pub(crate) Option<Child>);

impl ServerProcess {
    fn stop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
            let deadline = Instant::now() + Duration::from_secs(15);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let p = entry.path();
        if p.is_dir() {
            files_under(&p, out);
        } else {
            out.push(p);
        }
    }
}

/// Every (file, code) where a code occurs in a file. Codes share one length
/// and prefix, so a sliding window over each file finds them all in one pass.
fn find_codes(
    files: &[PathBuf],
    codes: &HashSet<Vec<u8>>,
    len: usize,
    prefix: &[u8],
) -> Vec<(PathBuf, String)> {
    let mut hits = Vec::new();
    for f in files {
        let Ok(bytes) = std::fs::read(f) else {
            continue;
        };
        if bytes.len() < len {
            continue;
        }
        for w in bytes.windows(len) {
            if w.starts_with(prefix) && codes.contains(w) {
                hits.push((f.clone(), String::from_utf8_lossy(w).into_owned()));
            }
        }
    }
    hits
}

fn find_patterns(files: &[PathBuf], patterns: &[(String, Vec<u8>)]) -> Vec<(PathBuf, String)> {
    let mut hits = Vec::new();
    for f in files {
        let Ok(bytes) = std::fs::read(f) else {
            continue;
        };
        for (name, p) in patterns {
            if bytes.windows(p.len()).any(|w| w == p.as_slice()) {
                hits.push((f.clone(), name.clone()));
            }
        }
    }
    hits
}

/// Hex prefix of every code ("GC-"), as a PostgreSQL dump writes `bytea`.
const HEX_PREFIX: &[u8] = b"47432d";

fn scan(
    data: &Path,
    more: &[PathBuf],
    codes: &HashSet<Vec<u8>>,
    root_patterns: &[(String, Vec<u8>)],
    embedded: bool,
    when: &str,
) {
    let mut files = Vec::new();
    files_under(data, &mut files);
    files.extend_from_slice(more);
    let names: Vec<String> = files
        .iter()
        .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    if embedded {
        for expected in ["central.db", "vault.db", "audit.db", "archive.db"] {
            assert!(
                names.iter().any(|n| n == expected),
                "{when}: {expected} missing from {names:?}"
            );
        }
    }
    let hex: HashSet<Vec<u8>> = codes
        .iter()
        .map(|c| HEXLOWER.encode(c).into_bytes())
        .collect();
    let mut code_hits = find_codes(&files, codes, 29, b"GC-");
    code_hits.extend(find_codes(&files, &hex, 58, HEX_PREFIX));
    assert!(
        code_hits.is_empty(),
        "{when}: plaintext codes found at rest: {:?}",
        &code_hits[..code_hits.len().min(5)]
    );
    let key_hits = find_patterns(&files, root_patterns);
    assert!(
        key_hits.is_empty(),
        "{when}: root key material found: {key_hits:?}"
    );
}

/// Dumps the whole test database (every schema) with `pg_dump`.
fn pg_dump(store: &TestStore, out: &Path) -> Option<PathBuf> {
    let TestStore::Postgres { url } = store else {
        return None;
    };
    let done = Command::new("pg_dump")
        .arg("--dbname")
        .arg(url)
        .arg("--file")
        .arg(out)
        .output()
        .expect("pg_dump is installed with the PostgreSQL client");
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    let dump = std::fs::read_to_string(out).unwrap();
    assert!(
        dump.contains("strongroom_vault.records"),
        "the dump lacks the vault"
    );
    Some(out.to_path_buf())
}

on_each_backend! {
async fn no_code_or_root_key_at_rest_or_in_trace_logs(store) {
    leak_check(store).await
}
}

async fn leak_check(store: TestStore) {
    let embedded = matches!(store, TestStore::Sqlite);
    let tmp = tempfile::TempDir::new().unwrap();
    let data = tmp.path().join("data");
    let log_path = tmp.path().join("server.log");
    let config = tmp.path().join("strongroom.toml");
    let storage = match &store {
        TestStore::Sqlite => String::new(),
        TestStore::Postgres { url } => {
            format!("[storage]\nbackend = \"postgres\"\n[storage.postgres]\nurl = {url:?}\n")
        }
    };

    // 1. init with Shamir shares (real binary): embedded stores by data
    // directory, PostgreSQL through the configuration.
    let mut init = Command::new(BIN);
    init.args(["init", "--shares", "3", "--threshold", "2"]);
    if embedded {
        init.arg("--data-dir").arg(&data);
    } else {
        std::fs::create_dir_all(&data).unwrap();
        std::fs::set_permissions(&data, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .unwrap();
        std::fs::write(&config, format!("data_dir = {data:?}\n{storage}")).unwrap();
        init.arg("--config").arg(&config);
    }
    let out = init.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let shares: Vec<String> = stdout
        .lines()
        .filter_map(|l| {
            l.trim()
                .split_once(": ")
                .filter(|(k, _)| k.starts_with("Share"))
                .map(|(_, v)| v.to_owned())
        })
        .collect();
    assert_eq!(shares.len(), 3, "{stdout}");
    let bootstrap = crate::harness::bootstrap_token(&stdout);
    assert!(
        !stdout.contains("client_secret"),
        "init makes no account, only a bootstrap token: {stdout}"
    );

    // TLS material outside the data directory.
    let tls_home = tmp.path().join("pki");
    std::fs::create_dir_all(&tls_home).unwrap();
    let (cert, key, ca) =
        strongroom::devtls::ensure(&strongroom::datadir::DataDir::new(&tls_home)).unwrap();
    // A payment processor the relay sends cards to.
    let received = crate::relay::Received::default();
    let processor = crate::relay::processor(cert.clone(), key.clone(), received.clone()).await;
    // A supplier codes are bought from (Runa's model).
    let runa = crate::suppliers::Shared::default();
    let tango = std::sync::Arc::new(std::sync::Mutex::new(crate::suppliers::Tango::default()));
    let supplier_port =
        crate::suppliers::suppliers_server(cert, key, runa.clone(), tango, Default::default())
            .await;
    let port = free_port();
    std::fs::write(
        &config,
        format!(
            "data_dir = {:?}\nlisten = \"127.0.0.1:{port}\"\n[tls]\ncert = {:?}\nkey = {:?}\n[log]\nlevel = \"trace\"\n{storage}\n\
             [[relay.route]]\nname = \"processor\"\nupstream = \"https://localhost:{processor}\"\n\
             paths = [\"/v1/charges\"]\nca_file = {ca:?}\nallow_private = true\ntenants = [\"shop\"]\n\
             [suppliers]\nreplenish_every_secs = 0\nreconcile_daily = false\n\
             [[suppliers.supplier]]\nname = \"runa\"\nkind = \"runa\"\ntenant = \"shop\"\n\
             base_url = \"https://localhost:{supplier_port}\"\nca_file = {ca:?}\nrequests_per_sec = 50\n\
             daily_limit = [\"1000.00 GBP\"]\n\
             [[suppliers.supplier.product]]\nsku = \"ACME-GIFT\"\nsupplier_product = \"ACME-UK\"\n\
             min_stock = 1010\ntarget_stock = 1020\n",
            data,
            tls_home.join("tls/server.pem"),
            tls_home.join("tls/server-key.pem")
        ),
    )
    .unwrap();

    // 2. serve with trace logging (real binary).
    let log = std::fs::File::create(&log_path).unwrap();
    let child = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&config)
        .env_remove("RUST_LOG")
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let mut server = ServerProcess(Some(child));
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "server did not start: {}",
            std::fs::read_to_string(&log_path).unwrap()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let url = format!("https://localhost:{port}");

    // 3. unseal through the CLI, shares on stdin.
    let mut unseal = Command::new(BIN)
        .args(["operator", "unseal", "--url", &url, "--ca-cert"])
        .arg(&ca)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(
        unseal.stdin.as_mut().unwrap(),
        "{}\n{}",
        shares[2],
        shares[0]
    )
    .unwrap();
    let unsealed = unseal.wait_with_output().unwrap();
    assert!(
        unsealed.status.success(),
        "{}",
        String::from_utf8_lossy(&unsealed.stderr)
    );
    assert!(String::from_utf8_lossy(&unsealed.stdout).contains("unsealed"));

    // 4. a service principal, then 10,000 codes.
    let http = https_client(&ca);
    let anon = Caller {
        http: http.clone(),
        url: url.clone(),
        token: None,
    };
    let login = |id: String, secret: String| {
        let anon = anon.clone();
        async move {
            let (s, b) = anon
                .post("/v1/auth/token", json!({"grant_type": "client_credentials", "client_id": id, "client_secret": secret}))
                .await;
            assert_eq!(s, StatusCode::OK, "{b}");
            anon.with_token(b["access_token"].as_str().unwrap())
        }
    };
    let (mut first_admin, mut first_officer) =
        crate::harness::bootstrap_first_people(&http, &url, &bootstrap).await;
    let admin = anon.with_token(&first_admin.login(&http, &url).await);
    // The token worked once.
    let (s, body) = anon
        .post(
            "/v1/sys/bootstrap",
            json!({"bootstrap_token": bootstrap, "admin": "again", "security_officer": "twice"}),
        )
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{body}");
    let (s, created) = admin
        .post(
            "/v1/principals",
            json!({"name": "loader", "roles": ["ingest", "fulfilment"], "tenants": ["shop"]}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{created}");
    // The loader can reveal, so a second person (the security officer) approves it.
    assert_eq!(created["pending_approval"], true);
    let officer = anon.with_token(&first_officer.login(&http, &url).await);
    let (s, body) = officer
        .post(
            &format!("/v1/principals/{}/approve", created["id"].as_str().unwrap()),
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{body}");
    let svc_id = created["client_id"].as_str().unwrap().to_owned();
    let svc_secret = created["client_secret"].as_str().unwrap().to_owned();
    let svc = login(svc_id.clone(), svc_secret.clone()).await;

    // A person enrols and logs in: password, TOTP seed, enrolment and
    // recovery codes join the search below.
    let (s, person) = admin
        .post(
            "/v1/principals",
            json!({"name": "night-shift", "kind": "user", "roles": ["auditor"], "tenants": ["shop"]}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{person}");
    let enrolment_code = person["enrolment_code"].as_str().unwrap().to_owned();
    let password = format!("leak check {}", random_code());
    let (s, enrolment) = anon
        .post(
            "/v1/auth/enrol",
            json!({"username": "night-shift", "enrolment_code": enrolment_code, "password": password}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{enrolment}");
    let totp = totp_rs::Totp::from_url(enrolment["otpauth_uri"].as_str().unwrap()).unwrap();
    let recovery_code = enrolment["recovery_codes"][0].as_str().unwrap().to_owned();
    let now_code = || {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        totp.generate(secs).to_string()
    };
    let (s, body) = anon
        .post(
            "/v1/auth/enrol/confirm",
            json!({"username": "night-shift", "enrolment_code": enrolment_code, "totp": now_code()}),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{body}");
    let (s, body) = anon
        .post(
            "/v1/auth/login",
            json!({"username": "night-shift", "password": password, "recovery_code": recovery_code}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let seed: Vec<u8> = totp.secret().as_ref().to_vec();
    let person_secrets: Vec<(String, Vec<u8>)> = vec![
        ("password".into(), password.clone().into_bytes()),
        ("totp seed raw".into(), seed.clone()),
        ("totp seed hex".into(), HEXLOWER.encode(&seed).into_bytes()),
        (
            "totp seed base32".into(),
            totp.secret().to_base32().into_bytes(),
        ),
        ("enrolment code".into(), enrolment_code.clone().into_bytes()),
        ("bootstrap token".into(), bootstrap.clone().into_bytes()),
        ("recovery code".into(), recovery_code.clone().into_bytes()),
    ];

    let codes: Vec<String> = (0..10_000).map(|_| random_code()).collect();
    let mut tokens = Vec::with_capacity(codes.len());
    for chunk in codes.chunks(1000) {
        let items: Vec<_> = chunk
            .iter()
            .map(|c| json!({"class": "voucher_code", "value": c}))
            .collect();
        let (s, body) = svc.post("/v1/secrets/batch", json!({"items": items})).await;
        assert_eq!(s, StatusCode::OK);
        for item in body["items"].as_array().unwrap() {
            tokens.push(
                item["token"]
                    .as_str()
                    .expect("every item stored")
                    .to_owned(),
            );
        }
    }
    // Some through the CLI too, value on stdin.
    let mut cli_codes = Vec::new();
    for _ in 0..3 {
        let code = random_code();
        let mut put = Command::new(BIN)
            .args([
                "secrets",
                "put",
                "--class",
                "voucher_code",
                "--url",
                &url,
                "--client-id",
                &svc_id,
                "--ca-cert",
            ])
            .arg(&ca)
            .env("STRONGROOM_CLIENT_SECRET", &svc_secret)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        writeln!(put.stdin.as_mut().unwrap(), "{code}").unwrap();
        let out = put.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
        assert_eq!(svc.reveal(&token).await.1["value"], code.as_str());
        cli_codes.push(code);
    }
    // A stock manager imports a file of codes and PINs: neither the file nor
    // any code of it may stay anywhere but sealed in the vault.
    let (s, made) = admin
        .post(
            "/v1/principals",
            json!({"name": "stock", "roles": ["stock_manager"], "tenants": ["shop"]}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{made}");
    let stock = login(
        made["client_id"].as_str().unwrap().to_owned(),
        made["client_secret"].as_str().unwrap().to_owned(),
    )
    .await;
    let (s, body) = stock.post("/v1/retailers", json!({"name": "Acme"})).await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    let (s, body) = stock
        .post(
            "/v1/products",
            json!({"retailer": "Acme", "sku": "ACME-GIFT", "name": "Gift", "currency": "GBP", "denominations": [2500]}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    let imported: Vec<(String, String)> =
        (0..1000).map(|_| (random_code(), random_code())).collect();
    let mut file = String::from("sku,code,pin,face_value,currency,serial\n");
    for (i, (code, pin)) in imported.iter().enumerate() {
        file.push_str(&format!("ACME-GIFT,{code},{pin},25.00,GBP,S{i}\n"));
    }
    let (s, report) = stock
        .call_raw(
            reqwest::Method::POST,
            "/v1/imports?retailer=Acme",
            "text/csv",
            &file,
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{report}");
    assert_eq!(report["accepted"], 1000, "{report}");
    let imported: Vec<String> = imported.into_iter().flat_map(|(c, p)| [c, p]).collect();
    // Codes bought from a supplier go straight into the vault; its
    // credential too. Neither may be found anywhere else.
    let (s, body) = officer
        .put_json(
            "/v1/suppliers/runa/credential",
            json!({"credential": crate::suppliers::RUNA_KEY}),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{body}");
    let (s, bought) = stock
        .post(
            "/v1/suppliers/replenish",
            json!({"sku": "ACME-GIFT", "face_value": 2500}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{bought}");
    assert_eq!(bought["purchase"]["codes_received"], 20, "{bought}");
    let (supplier_codes, payout_urls) = {
        let m = runa.lock().unwrap();
        let urls: Vec<String> = m
            .orders
            .values()
            .filter_map(|(_, o)| o["items"][0]["payout"]["url"].as_str().map(str::to_owned))
            .collect();
        (m.codes.clone(), urls)
    };
    assert_eq!((supplier_codes.len(), payout_urls.len()), (20, 20));
    let supplier_secrets: Vec<(String, Vec<u8>)> = [(
        "supplier credential".to_owned(),
        crate::suppliers::RUNA_KEY.as_bytes().to_vec(),
    )]
    .into_iter()
    .chain(
        supplier_codes
            .iter()
            .map(|c| (format!("supplier code {c}"), c.as_bytes().to_vec())),
    )
    .chain(payout_urls.iter().map(|u| {
        let tail = u.rsplit('/').next().unwrap_or_default();
        (format!("payout link {tail}"), tail.as_bytes().to_vec())
    }))
    .collect();

    // The storefront orders 40 of them, by code and by reveal link (each
    // link opened), the archive job moves them to the archive vault, and
    // some are redelivered from there.
    let mut by_code = Vec::new();
    for i in 0..40 {
        let delivery = if i % 2 == 0 { "code" } else { "link" };
        let (s, o) = svc
            .post(
                "/v1/orders",
                json!({"external_ref": format!("leak-{i}"), "sku": "ACME-GIFT", "face_value": 2500,
                       "currency": "GBP", "customer_ref": "c", "delivery": delivery}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{o}");
        if delivery == "link" {
            let page = http.get(o["link"].as_str().unwrap()).send().await.unwrap();
            assert_eq!(page.status(), StatusCode::OK);
        } else {
            by_code.push((o["id"].as_str().unwrap().to_owned(), o["code"].clone()));
        }
    }
    let (s, made) = admin
        .post(
            "/v1/principals",
            json!({"name": "archivist", "roles": ["stock_manager"], "tenants": ["*"]}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{made}");
    let archivist = login(
        made["client_id"].as_str().unwrap().to_owned(),
        made["client_secret"].as_str().unwrap().to_owned(),
    )
    .await;
    let (s, run) = archivist
        .post(
            "/v1/vouchers/archive",
            json!({"older_than_days": 0, "limit": 1000}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{run}");
    assert_eq!(run["archived"], 40, "{run}");
    for (id, code) in by_code.iter().take(5) {
        let (s, again) = svc
            .post(
                &format!("/v1/orders/{id}/redeliver"),
                json!({"reason": "leak check"}),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{again}");
        assert_eq!(&again["code"], code);
    }

    // Cards: numbers and CVVs tokenized, revealed masked, and each CVV used
    // once by the relay (a principal of a dual-controlled custom role).
    let (s, body) = admin
        .put_json("/v1/roles/charges", json!({"permissions": ["cards:relay"]}))
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{body}");
    let (s, body) = officer
        .post(
            "/v1/roles/charges/approve",
            json!({"permissions": ["cards:relay"]}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let (s, made) = admin
        .post(
            "/v1/principals",
            json!({"name": "charge-fn", "roles": ["charges"], "tenants": ["shop"]}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{made}");
    let (s, body) = officer
        .post(
            &format!("/v1/principals/{}/approve", made["id"].as_str().unwrap()),
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{body}");
    let charger = login(
        made["client_id"].as_str().unwrap().to_owned(),
        made["client_secret"].as_str().unwrap().to_owned(),
    )
    .await;
    let cards = [
        ("4929000000006", "0591"),
        ("5454545454545454", "0728"),
        ("4111111111111111", "0946"),
    ];
    let mut card_secrets: Vec<(String, Vec<u8>)> = Vec::new();
    for (pan, cvv) in cards {
        let (s, t) = svc
            .post("/v1/cards", json!({"pan": pan, "expiry_month": 9, "expiry_year": 2031, "cvv": cvv, "holder": "Ada Leak"}))
            .await;
        assert_eq!(s, StatusCode::CREATED, "{t}");
        let token = t["token"].as_str().unwrap();
        let (s, shown) = svc
            .post(
                &format!("/v1/cards/{token}/reveal"),
                json!({"purpose": "leak check"}),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{shown}");
        assert_eq!(shown["masked"], true);
        let (s, charged) = charger
            .post("/v1/relay/processor/v1/charges", json!({"card_token": token, "cvv_token": t["cvv_token"],
                "body": {"source": {"number": "{{ card.pan }}", "cvc": "{{ card.cvv }}", "exp": "{{ card.expiry }}"}}}))
            .await;
        assert_eq!(s, StatusCode::OK, "{charged}");
        card_secrets.push((format!("card number {pan}"), pan.as_bytes().to_vec()));
        card_secrets.push((
            format!("card number {pan} as hex"),
            HEXLOWER.encode(pan.as_bytes()).into_bytes(),
        ));
        // A CVV is a few digits: sought as a quoted string (JSON or Debug
        // output) and as a key's value, where a leak would put it.
        for form in [
            format!("\"{cvv}\""),
            format!("cvv={cvv}"),
            format!("cvv: {cvv}"),
        ] {
            card_secrets.push((format!("CVV {cvv} as {form}"), form.into_bytes()));
        }
    }
    {
        let got = received.lock().unwrap();
        assert_eq!(got.len(), 3, "the processor was charged three times");
        assert_eq!(got[0].1["source"]["cvc"], "0591", "and got the real CVV");
    }

    // Reveals put values into responses; they must not reach the log either.
    for i in (0..10_000).step_by(97) {
        let (s, body) = svc.reveal(&tokens[i]).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(body["value"], codes[i].as_str());
    }

    // 5. search while running (WAL files populated), and after shutdown.
    let root = combine(&[
        Share::parse(&shares[0]).unwrap(),
        Share::parse(&shares[1]).unwrap(),
    ])
    .unwrap();
    let key = root.expose();
    let patterns: Vec<(String, Vec<u8>)> = vec![
        ("root key raw".into(), key.to_vec()),
        ("root key hex".into(), HEXLOWER.encode(key).into_bytes()),
        ("root key HEX".into(), HEXUPPER.encode(key).into_bytes()),
        ("root key base64".into(), BASE64.encode(key).into_bytes()),
        (
            "root key base64url".into(),
            BASE64URL_NOPAD.encode(key).into_bytes(),
        ),
        ("root key base32".into(), BASE32.encode(key).into_bytes()),
    ]
    .into_iter()
    .chain(person_secrets)
    .chain(card_secrets)
    .chain(supplier_secrets)
    .collect();
    let set: HashSet<Vec<u8>> = codes
        .iter()
        .chain(&cli_codes)
        .chain(&imported)
        .map(|c| c.clone().into_bytes())
        .collect();
    // The scanner itself must find what it looks for: plant one code and the
    // root key's hex in a file outside the data directory.
    let planted = tmp.path().join("planted.bin");
    std::fs::write(
        &planted,
        format!("xx{}yy{}", codes[17], HEXLOWER.encode(key)),
    )
    .unwrap();
    assert_eq!(
        find_codes(std::slice::from_ref(&planted), &set, 29, b"GC-").len(),
        1,
        "the code scanner is blind"
    );
    let planted_hex = tmp.path().join("planted-hex.sql");
    std::fs::write(
        &planted_hex,
        format!("'\\x{}'", HEXLOWER.encode(codes[3].as_bytes())),
    )
    .unwrap();
    let hex_set: HashSet<Vec<u8>> = set
        .iter()
        .map(|c| HEXLOWER.encode(c).into_bytes())
        .collect();
    assert_eq!(
        find_codes(&[planted_hex], &hex_set, 58, HEX_PREFIX).len(),
        1,
        "the hex scanner is blind"
    );
    assert_eq!(
        find_patterns(&[planted], &patterns).len(),
        1,
        "the key scanner is blind"
    );
    if embedded {
        let mut wal_seen = Vec::new();
        files_under(&data, &mut wal_seen);
        assert!(
            wal_seen
                .iter()
                .any(|f| f.to_string_lossy().ends_with("vault.db-wal")),
            "{wal_seen:?}"
        );
    }
    let mut more = vec![log_path.clone()];
    more.extend(pg_dump(&store, &tmp.path().join("running.sql")));
    scan(&data, &more, &set, &patterns, embedded, "while running");
    server.stop();
    let mut more = vec![log_path.clone()];
    more.extend(pg_dump(&store, &tmp.path().join("stopped.sql")));
    scan(&data, &more, &set, &patterns, embedded, "after shutdown");

    // The log really was at trace level, and did record the traffic.
    let log_text = std::fs::read_to_string(&log_path).unwrap();
    assert!(
        log_text.contains("TRACE"),
        "the server did not log at trace level"
    );
    for expected in [
        "/v1/secrets/batch",
        "secret.reveal allowed",
        "group commit",
        "rustls",
    ] {
        assert!(
            log_text.contains(expected),
            "the trace log lacks '{expected}'"
        );
    }
}
