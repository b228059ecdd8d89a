//! The authorisation matrix: every operation of the published API, called by
//! every built-in role, with no token, with an expired token and from the
//! wrong tenant, gets exactly the status this one table says.
//!
//! The operations come from the OpenAPI document, which is built from the
//! same handlers as the router: an endpoint added without a row here fails
//! the test, as does a row for an endpoint that no longer exists.

use std::collections::{BTreeSet, HashMap};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::harness::{Caller, Harness, on_each_backend, random_code, test_api_config};

/// The built-in roles, each a service principal of its own.
const ROLES: [&str; 7] = [
    "ingest",
    "fulfilment",
    "security_officer",
    "admin",
    "auditor",
    "support",
    "stock_manager",
];

/// Who may call an operation.
#[derive(Clone, Copy)]
enum Who {
    /// Anyone, token or not: the answer is `ok` for every caller.
    Public,
    /// Any authenticated principal.
    AnyPrincipal,
    /// Principals holding one of these roles; the others get `refused`.
    Roles(&'static [&'static str]),
}

/// What the path's `{…}` names, made fresh for every call so that one
/// caller's success does not change the next caller's answer.
#[derive(Clone, Copy)]
enum Target {
    Nothing,
    /// A secret of tenant `dev`.
    Secret,
    /// An ingest service of tenant `dev`.
    Service,
    /// A fulfilment service of tenant `dev`, waiting for approval.
    PendingPrincipal,
    /// A person of tenant `dev`.
    Person,
    /// A name no role has yet.
    NewRoleName,
    /// A custom role whose definition waits for approval.
    PendingRole,
    /// A retailer of tenant `dev` (its id).
    Retailer,
    /// A product of tenant `dev` (its SKU).
    Product,
    /// A product of tenant `dev` with one voucher of 25.00 in stock (its SKU).
    StockedProduct,
    /// A delivered order of tenant `dev` (its id).
    Order,
    /// A reveal link of a delivered order of tenant `dev`.
    Link,
    /// The voucher of a delivered order of tenant `dev` (its id).
    Voucher,
    /// A delivered order of tenant `dev` whose re-opening support asked for.
    ReopenAsked,
    /// An import of tenant `dev` (its id).
    Import,
    /// An open alert of tenant `dev` (its id).
    Alert,
    /// An ingest service of tenant `dev`, frozen.
    FrozenService,
    /// A card of tenant `dev` (its PAN token).
    Card,
    /// A relay route's name (and a path under it).
    RelayRoute,
    /// A name or id nothing has (no supplier or purchase exists here).
    Unknown,
}

struct Row {
    method: Method,
    path: &'static str,
    target: Target,
    body: Option<fn(Option<&str>) -> Value>,
    who: Who,
    /// The status of a caller who may.
    ok: u16,
    /// The status of a principal whose roles do not allow it.
    refused: u16,
    /// The status of a principal with the first allowed role, bound to
    /// another tenant than the target's.
    wrong_tenant: u16,
    /// A success seals the vault (the server is restarted after it).
    seals: bool,
    /// A CSV body instead of a JSON one.
    csv: Option<&'static str>,
}

const fn row(method: Method, path: &'static str, who: Who, ok: u16) -> Row {
    Row {
        method,
        path,
        target: Target::Nothing,
        body: None,
        who,
        ok,
        refused: 403,
        wrong_tenant: ok,
        seals: false,
        csv: None,
    }
}

impl Row {
    const fn on(mut self, target: Target) -> Self {
        self.target = target;
        self
    }
    const fn body(mut self, body: fn(Option<&str>) -> Value) -> Self {
        self.body = Some(body);
        self
    }
    const fn wrong_tenant(mut self, status: u16) -> Self {
        self.wrong_tenant = status;
        self
    }
    const fn csv(mut self, csv: &'static str) -> Self {
        self.csv = Some(csv);
        self
    }
    const fn seals(mut self) -> Self {
        self.seals = true;
        self
    }
}

const ANYONE: Who = Who::Public;
const SIGNED_IN: Who = Who::AnyPrincipal;
const TOKENIZERS: Who = Who::Roles(&["ingest", "stock_manager"]);
const FULFIL: Who = Who::Roles(&["fulfilment"]);
const OFFICER: Who = Who::Roles(&["security_officer"]);
const ADMIN: Who = Who::Roles(&["admin"]);
const AUDITOR: Who = Who::Roles(&["auditor"]);
const METADATA: Who = Who::Roles(&[
    "ingest",
    "fulfilment",
    "security_officer",
    "auditor",
    "support",
]);
const SEALERS: Who = Who::Roles(&["admin", "security_officer"]);
const ROLE_READERS: Who = Who::Roles(&["admin", "security_officer"]);
const STOCK: Who = Who::Roles(&["stock_manager"]);
const CATALOG_READERS: Who = Who::Roles(&["stock_manager", "support", "fulfilment"]);
const SUPPORT: Who = Who::Roles(&["support"]);
const ORDER_READERS: Who = Who::Roles(&["fulfilment", "support", "stock_manager"]);
const ALERT_READERS: Who = Who::Roles(&["security_officer", "auditor"]);
const CARD_READERS: Who = Who::Roles(&["fulfilment", "support"]);
const NOBODY: Who = Who::Roles(&[]);
const BUYERS: Who = Who::Roles(&["stock_manager", "security_officer"]);
const RISK_SCORERS: Who = Who::Roles(&["ingest"]);

fn table() -> Vec<Row> {
    use Method as M;
    use Target::*;
    vec![
        row(M::GET, "/v1/sys/health", ANYONE, 200),
        row(M::GET, "/v1/sys/seal-status", ANYONE, 200),
        row(M::GET, "/v1/openapi.json", ANYONE, 200),
        row(M::POST, "/v1/sys/unseal", ANYONE, 200).body(|_| json!({"reset": true})),
        row(M::POST, "/v1/sys/bootstrap", ANYONE, 401).body(|_| {
            json!({"bootstrap_token": "srbt_not-this-one", "admin": "ada", "security_officer": "bob"})
        }),
        row(M::POST, "/v1/auth/token", ANYONE, 401).body(|_| {
            json!({"grant_type": "client_credentials", "client_id": "srci_nobody", "client_secret": "wrong"})
        }),
        row(M::POST, "/v1/auth/login", ANYONE, 401).body(|_| {
            json!({"username": "nobody", "password": "not the password", "totp": "000000"})
        }),
        row(M::POST, "/v1/auth/enrol", ANYONE, 401).body(|_| {
            json!({"username": "nobody", "enrolment_code": "sren_wrong", "password": "a long enough passphrase"})
        }),
        row(M::POST, "/v1/auth/enrol/confirm", ANYONE, 401).body(|_| {
            json!({"username": "nobody", "enrolment_code": "sren_wrong", "totp": "000000"})
        }),
        row(M::GET, "/v1/auth/whoami", SIGNED_IN, 200),
        // Step-up is for people; every caller here is a service.
        row(M::POST, "/v1/auth/step-up", SIGNED_IN, 400).body(|_| json!({"totp": "000000"})),
        row(M::POST, "/v1/secrets", TOKENIZERS, 201)
            .body(|_| json!({"tenant": "dev", "class": "voucher_code", "value": random_code()}))
            .wrong_tenant(403),
        row(M::POST, "/v1/secrets/batch", TOKENIZERS, 200)
            .body(|_| {
                json!({"items": [{"tenant": "dev", "class": "voucher_code", "value": random_code()}]})
            })
            .wrong_tenant(200),
        row(M::POST, "/v1/secrets/{token}/reveal", FULFIL, 200)
            .on(Secret)
            .body(|_| json!({"purpose": "matrix"}))
            .wrong_tenant(404),
        row(M::POST, "/v1/cards", TOKENIZERS, 201)
            .body(|_| json!({"tenant": "dev", "pan": "4111111111111111", "expiry_month": 12, "expiry_year": 2031}))
            .wrong_tenant(403),
        // Masked for those who may reveal, in full or masked.
        row(M::POST, "/v1/cards/{token}/reveal", CARD_READERS, 200)
            .on(Card)
            .body(|_| json!({"purpose": "matrix"}))
            .wrong_tenant(404),
        row(M::POST, "/v1/risk/score", RISK_SCORERS, 200)
            .body(|_| json!({"tenant": "dev", "fingerprint": format!("{:064x}", 42), "amount": 1999,
                             "currency": "GBP", "customer_ref": "matrix"}))
            .wrong_tenant(403),
        // No built-in role relays cards (a dual-controlled custom role does,
        // relay.rs); no route is configured here.
        row(M::POST, "/v1/relay/{route}/{path}", NOBODY, 404)
            .on(RelayRoute)
            .body(|_| json!({"card_token": "5555555555554440", "body": {}}))
            .wrong_tenant(403),
        row(M::GET, "/v1/secrets/{token}", METADATA, 200)
            .on(Secret)
            .wrong_tenant(404),
        row(M::DELETE, "/v1/secrets/{token}", OFFICER, 204)
            .on(Secret)
            .wrong_tenant(404),
        row(M::POST, "/v1/secrets/{token}/reactivate", OFFICER, 200)
            .on(Secret)
            .body(|_| json!({"window_secs": 60, "reason": "matrix"}))
            .wrong_tenant(404),
        row(M::POST, "/v1/keys/rotate", OFFICER, 200)
            .body(|_| json!({"tenant": "dev", "class": "generic"}))
            .wrong_tenant(403),
        row(M::POST, "/v1/principals", ADMIN, 201)
            .body(|_| {
                json!({"name": format!("made-{}", random_code()), "roles": ["ingest"], "tenants": ["dev"]})
            })
            .wrong_tenant(403),
        row(M::GET, "/v1/principals", ADMIN, 200),
        row(M::DELETE, "/v1/principals/{id}", ADMIN, 204)
            .on(Service)
            .wrong_tenant(404),
        row(M::POST, "/v1/principals/{id}/approve", OFFICER, 204)
            .on(PendingPrincipal)
            .wrong_tenant(404),
        row(M::POST, "/v1/principals/{id}/unlock", ADMIN, 204)
            .on(Person)
            .wrong_tenant(404),
        row(M::POST, "/v1/principals/{id}/rotate-secret", ADMIN, 200)
            .on(Service)
            .body(|_| json!({"overlap_secs": 0}))
            .wrong_tenant(404),
        row(M::GET, "/v1/roles", ROLE_READERS, 200),
        row(M::PUT, "/v1/roles/{name}", ADMIN, 201)
            .on(NewRoleName)
            .body(|_| json!({"permissions": ["secrets:tokenize"]}))
            .wrong_tenant(403),
        row(M::POST, "/v1/roles/{name}/approve", OFFICER, 200)
            .on(PendingRole)
            .body(|_| json!({"permissions": ["secrets:reveal"]}))
            .wrong_tenant(403),
        row(M::GET, "/v1/audit/verify", AUDITOR, 200),
        row(M::GET, "/v1/audit/checkpoint", AUDITOR, 200),
        // A caller bound to another tenant reads that tenant's records only.
        row(M::GET, "/v1/audit", AUDITOR, 200),
        row(M::GET, "/v1/audit/export", AUDITOR, 200),
        row(M::GET, "/v1/vouchers/{id}/history", AUDITOR, 200)
            .on(Voucher)
            .wrong_tenant(404),
        // A caller bound to another tenant sees that tenant's alerts only.
        row(M::GET, "/v1/alerts", ALERT_READERS, 200),
        row(M::POST, "/v1/alerts/{id}/acknowledge", OFFICER, 200)
            .on(Alert)
            .body(|_| json!({"note": "matrix"}))
            .wrong_tenant(404),
        row(M::POST, "/v1/principals/{id}/freeze", OFFICER, 204)
            .on(Service)
            .body(|_| json!({"reason": "matrix"}))
            .wrong_tenant(404),
        row(M::POST, "/v1/principals/{id}/unfreeze", OFFICER, 204)
            .on(FrozenService)
            .body(|_| json!({"reason": "matrix"}))
            .wrong_tenant(404),
        row(M::POST, "/v1/retailers", STOCK, 201)
            .body(|_| json!({"tenant": "dev", "name": format!("retailer {}", random_code())}))
            .wrong_tenant(403),
        row(M::GET, "/v1/retailers", CATALOG_READERS, 200),
        row(M::POST, "/v1/products", STOCK, 201)
            .on(Retailer)
            .body(|retailer| {
                json!({"tenant": "dev", "retailer": retailer, "sku": format!("SKU-{}", random_code()),
                       "name": "Gift card", "currency": "GBP", "denominations": [1000, 2500]})
            })
            .wrong_tenant(403),
        row(M::GET, "/v1/products", CATALOG_READERS, 200),
        row(M::GET, "/v1/stock", CATALOG_READERS, 200),
        row(M::POST, "/v1/imports?retailer={id}", STOCK, 201)
            .on(Retailer)
            .csv("sku,code,face_value,currency\n")
            .wrong_tenant(404),
        row(M::POST, "/v1/imports/{id}/void", STOCK, 200)
            .on(Import)
            .body(|_| json!({"tenant": "dev", "reason": "matrix"}))
            .wrong_tenant(403),
        row(M::GET, "/v1/products/{sku}", CATALOG_READERS, 200)
            .on(Product)
            .wrong_tenant(404),
        row(M::POST, "/v1/orders", FULFIL, 201)
            .on(StockedProduct)
            .body(|sku| {
                json!({"tenant": "dev", "external_ref": random_code(), "sku": sku, "face_value": 2500,
                       "currency": "GBP", "customer_ref": "matrix", "delivery": "link"})
            })
            .wrong_tenant(403),
        row(M::GET, "/v1/orders", ORDER_READERS, 200),
        row(M::GET, "/v1/orders/{id}", ORDER_READERS, 200)
            .on(Order)
            .wrong_tenant(404),
        // A delivered order cannot be cancelled: allowed callers get 409.
        row(M::POST, "/v1/orders/{id}/cancel", FULFIL, 409)
            .on(Order)
            .body(|_| json!({"reason": "matrix"}))
            .wrong_tenant(404),
        row(M::GET, "/v/{link}", ANYONE, 200).on(Link),
        row(M::POST, "/v1/orders/{id}/redeliver", FULFIL, 200)
            .on(Order)
            .body(|_| json!({"reason": "matrix"}))
            .wrong_tenant(404),
        row(M::POST, "/v1/orders/{id}/reopen", SUPPORT, 202)
            .on(Order)
            .body(|_| json!({"reason": "matrix"}))
            .wrong_tenant(404),
        row(M::POST, "/v1/orders/{id}/reopen/approve", OFFICER, 200)
            .on(ReopenAsked)
            .wrong_tenant(404),
        // Archiving spans every tenant, so only stock managers bound to `*`
        // may (orders.rs shows one succeed); this one is bound to `dev`.
        row(M::POST, "/v1/vouchers/archive", STOCK, 403)
            .body(|_| json!({"older_than_days": 0}))
            .wrong_tenant(403),
        // No supplier is configured here (suppliers.rs buys for real).
        row(M::GET, "/v1/suppliers", BUYERS, 200),
        row(M::PUT, "/v1/suppliers/{name}/credential", OFFICER, 404)
            .on(Unknown)
            .body(|_| json!({"credential": "matrix-key"}))
            .wrong_tenant(404),
        row(M::GET, "/v1/suppliers/replenishment", STOCK, 200),
        row(M::POST, "/v1/suppliers/replenish", STOCK, 404)
            .body(|_| json!({"tenant": "dev", "sku": "NOT-KEPT", "face_value": 2500}))
            .wrong_tenant(403),
        row(M::POST, "/v1/suppliers/reconcile", STOCK, 200)
            .body(|_| json!({"day": "2026-01-01"}))
            .wrong_tenant(200),
        row(M::GET, "/v1/purchases", BUYERS, 200),
        row(M::GET, "/v1/purchases/{id}", BUYERS, 404)
            .on(Unknown)
            .wrong_tenant(404),
        row(M::POST, "/v1/purchases/{id}/approve", OFFICER, 404)
            .on(Unknown)
            .wrong_tenant(404),
        row(M::POST, "/v1/purchases/{id}/decline", OFFICER, 404)
            .on(Unknown)
            .body(|_| json!({"reason": "matrix"}))
            .wrong_tenant(404),
        // Last: a success seals the vault, and the server is restarted.
        row(M::POST, "/v1/sys/seal", SEALERS, 204).seals(),
    ]
}

/// The callers of one run.
struct Callers {
    by_role: HashMap<&'static str, (String, String)>,
    elsewhere: HashMap<&'static str, (String, String)>,
    expired_token: String,
    tokens: HashMap<String, String>,
}

impl Callers {
    async fn make(h: &Harness) -> Self {
        let mut by_role = HashMap::new();
        let mut elsewhere = HashMap::new();
        for role in ROLES {
            // Operators are bound to every tenant, services to `dev`.
            let home = if matches!(role, "admin" | "security_officer") {
                "*"
            } else {
                "dev"
            };
            by_role.insert(role, credentials(h, &format!("m-{role}"), role, home).await);
            elsewhere.insert(
                role,
                credentials(h, &format!("m-{role}-elsewhere"), role, "elsewhere").await,
            );
        }
        // A token that expires: issued now, used after the clock moves on.
        let (id, secret) = credentials(h, "m-expiring", "ingest", "dev").await;
        let expired_token = h.login(&id, &secret).await.token.unwrap();
        h.clock
            .advance_secs(i64::try_from(h.api_config.token_ttl_secs).unwrap() + 1);
        Callers {
            by_role,
            elsewhere,
            expired_token,
            tokens: HashMap::new(),
        }
    }

    async fn caller(&mut self, h: &Harness, who: &str) -> Caller {
        match who {
            "no token" => h.anonymous(),
            "expired token" => h.anonymous().with_token(&self.expired_token),
            _ => {
                if let Some(token) = self.tokens.get(who) {
                    return h.anonymous().with_token(token);
                }
                let (id, secret) = match who.strip_prefix("elsewhere:") {
                    Some(role) => &self.elsewhere[role],
                    None => &self.by_role[who],
                };
                let caller = h.login(id, secret).await;
                self.tokens
                    .insert(who.to_owned(), caller.token.clone().unwrap());
                caller
            }
        }
    }
}

/// Creates a service with one role through the API (approved if needed)
/// and returns its client id and secret.
async fn credentials(h: &Harness, name: &str, role: &str, tenant: &str) -> (String, String) {
    let (status, body) = h
        .admin()
        .await
        .post(
            "/v1/principals",
            json!({"name": name, "roles": [role], "tenants": [tenant]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    if body["pending_approval"] == true {
        let id = body["id"].as_str().unwrap();
        let (status, resp) = h
            .approver()
            .await
            .post(&format!("/v1/principals/{id}/approve"), json!({}))
            .await;
        assert_eq!(status, StatusCode::NO_CONTENT, "{resp}");
    }
    (
        body["client_id"].as_str().unwrap().to_owned(),
        body["client_secret"].as_str().unwrap().to_owned(),
    )
}

/// Makes a fresh target and returns the name that goes into the path (or
/// the body). `stock` manages the catalogue of `dev`.
async fn make_target(
    h: &Harness,
    target: Target,
    stock: &Caller,
    shop: &Caller,
    support: &Caller,
) -> Option<String> {
    let admin = h.admin().await;
    let retailer = || async {
        let (status, body) = stock
            .post(
                "/v1/retailers",
                json!({"tenant": "dev", "name": format!("r {}", random_code())}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["id"].as_str().unwrap().to_owned()
    };
    let create = |roles: Value, kind: &'static str| {
        let admin = admin.clone();
        async move {
            let (status, body) = admin
                .post(
                    "/v1/principals",
                    json!({"name": format!("t-{}", random_code()), "kind": kind, "roles": roles, "tenants": ["dev"]}),
                )
                .await;
            assert_eq!(status, StatusCode::CREATED, "{body}");
            body["id"].as_str().unwrap().to_owned()
        }
    };
    let role_name = || format!("r-{}", random_code().to_lowercase().replace('-', ""));
    Some(match target {
        Target::Nothing => return None,
        Target::Unknown => return Some("not-configured".into()),
        Target::Secret => h.service().await.put(&random_code()).await,
        Target::RelayRoute => "processor".to_owned(),
        Target::Card => {
            let (status, body) = h
                .service()
                .await
                .post(
                    "/v1/cards",
                    json!({"pan": "4111111111111111", "expiry_month": 12, "expiry_year": 2031}),
                )
                .await;
            assert_eq!(status, StatusCode::CREATED, "{body}");
            body["token"].as_str().unwrap().to_owned()
        }
        Target::Service => create(json!(["ingest"]), "service").await,
        Target::FrozenService => {
            let id = create(json!(["ingest"]), "service").await;
            let frozen = h
                .server
                .vault
                .stores()
                .central
                .freeze_principal(strongroom_store::FreezeRecord {
                    principal_id: id.clone(),
                    frozen_at: crate::harness::now_ms(),
                    alert_id: String::new(),
                    frozen_by: "matrix".into(),
                    reason: "matrix".into(),
                })
                .await
                .unwrap();
            assert!(frozen);
            id
        }
        Target::Alert => {
            let id = strongroom_crypto::random::token("al_").unwrap();
            h.server
                .vault
                .stores()
                .central
                .insert_alert(strongroom_store::AlertRecord {
                    id: id.clone(),
                    created_at: crate::harness::now_ms(),
                    detector: "denied_burst".into(),
                    severity: "high".into(),
                    subject: "addr:192.0.2.1".into(),
                    tenant: Some("dev".into()),
                    summary: "matrix".into(),
                    details: "{}".into(),
                    audit_seq: 1,
                    status: "open".into(),
                    acknowledged_by: String::new(),
                    acknowledged_at: 0,
                    note: String::new(),
                    froze: false,
                })
                .await
                .unwrap();
            id
        }
        Target::PendingPrincipal => create(json!(["fulfilment"]), "service").await,
        Target::Person => create(json!(["auditor"]), "user").await,
        Target::NewRoleName => role_name(),
        Target::PendingRole => {
            let name = role_name();
            let (status, body) = admin
                .put_json(
                    &format!("/v1/roles/{name}"),
                    json!({"permissions": ["secrets:reveal"]}),
                )
                .await;
            assert_eq!(status, StatusCode::ACCEPTED, "{body}");
            name
        }
        Target::Retailer => retailer().await,
        Target::StockedProduct => stocked_product(stock, &retailer().await).await,
        Target::Import => {
            let r = retailer().await;
            let csv = "sku,code,face_value,currency\n";
            let (status, body) = stock
                .call_raw(
                    Method::POST,
                    &format!("/v1/imports?retailer={r}"),
                    "text/csv",
                    csv,
                )
                .await;
            assert_eq!(status, StatusCode::CREATED, "{body}");
            body["import_id"].as_str().unwrap().to_owned()
        }
        Target::Order | Target::Link | Target::ReopenAsked | Target::Voucher => {
            let sku = stocked_product(stock, &retailer().await).await;
            let (status, body) = shop
                .post(
                    "/v1/orders",
                    json!({"tenant": "dev", "external_ref": random_code(), "sku": sku, "face_value": 2500,
                           "currency": "GBP", "customer_ref": "matrix", "delivery": "link"}),
                )
                .await;
            assert_eq!(status, StatusCode::CREATED, "{body}");
            let id = body["id"].as_str().unwrap().to_owned();
            if matches!(target, Target::ReopenAsked) {
                let (status, asked) = support
                    .post(
                        &format!("/v1/orders/{id}/reopen"),
                        json!({"reason": "matrix"}),
                    )
                    .await;
                assert_eq!(status, StatusCode::ACCEPTED, "{asked}");
                id
            } else if matches!(target, Target::Order) {
                id
            } else if matches!(target, Target::Voucher) {
                body["voucher_id"].as_str().unwrap().to_owned()
            } else {
                let link = body["link"].as_str().unwrap();
                link.rsplit_once("/v/").unwrap().1.to_owned()
            }
        }
        Target::Product => {
            let sku = format!("SKU-{}", random_code());
            let (status, body) = stock
                .post(
                    "/v1/products",
                    json!({"tenant": "dev", "retailer": retailer().await, "sku": sku,
                           "name": "Gift card", "currency": "GBP", "denominations": [2500]}),
                )
                .await;
            assert_eq!(status, StatusCode::CREATED, "{body}");
            sku
        }
    })
}

/// A new product of `retailer` with one voucher of 25.00 in stock.
async fn stocked_product(stock: &Caller, retailer: &str) -> String {
    let sku = format!("SKU-{}", random_code());
    let (status, body) = stock
        .post(
            "/v1/products",
            json!({"tenant": "dev", "retailer": retailer, "sku": sku,
                   "name": "Gift card", "currency": "GBP", "denominations": [2500]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let csv = format!(
        "sku,code,face_value,currency\n{sku},{},25.00,GBP\n",
        random_code()
    );
    let (status, body) = stock
        .call_raw(
            Method::POST,
            &format!("/v1/imports?retailer={retailer}"),
            "text/csv",
            &csv,
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    sku
}

fn path_for(template: &str, target: Option<&str>) -> String {
    match target {
        None => template.to_owned(),
        Some(t) => template
            .replace("{token}", t)
            .replace("{id}", t)
            .replace("{name}", t)
            .replace("{sku}", t)
            .replace("{link}", t)
            .replace("{route}", t)
            .replace("{path}", "v1/charges"),
    }
}

/// The callers of the matrix and what each should get for `row`.
fn expectations(row: &Row) -> Vec<(String, u16)> {
    let mut out = Vec::new();
    let authenticated_ok = |status: u16| match row.who {
        Who::Public => row.ok,
        _ => status,
    };
    out.push(("no token".to_owned(), authenticated_ok(401)));
    out.push(("expired token".to_owned(), authenticated_ok(401)));
    for role in ROLES {
        let status = match row.who {
            Who::Public | Who::AnyPrincipal => row.ok,
            Who::Roles(allowed) if allowed.contains(&role) => row.ok,
            Who::Roles(_) => row.refused,
        };
        out.push((role.to_owned(), status));
    }
    let first_allowed = match row.who {
        // No role may: someone without it, bound elsewhere.
        Who::Roles(allowed) => allowed.first().copied().unwrap_or("ingest"),
        _ => "ingest",
    };
    let status = match row.who {
        Who::Public | Who::AnyPrincipal => row.ok,
        Who::Roles(_) => row.wrong_tenant,
    };
    out.push((format!("elsewhere:{first_allowed}"), status));
    out
}

on_each_backend! {
async fn every_endpoint_answers_every_caller_as_the_table_says(store) {
    // The matrix sends a few hundred requests from one address at once.
    let mut config = test_api_config();
    config.rate_limits.per_address = strongroom_api::ratelimit::Rate::new(100_000, 100_000);
    config.rate_limits.per_principal = strongroom_api::ratelimit::Rate::new(100_000, 100_000);
    let mut h = Harness::dev_with(store, config).await;

    // One row per operation of the published document, and no other.
    let doc = strongroom_api::openapi();
    let documented: BTreeSet<(String, String)> = doc
        .paths
        .paths
        .iter()
        .flat_map(|(path, item)| {
            let methods = [
                ("GET", item.get.is_some()),
                ("POST", item.post.is_some()),
                ("PUT", item.put.is_some()),
                ("DELETE", item.delete.is_some()),
                ("PATCH", item.patch.is_some()),
            ];
            methods
                .into_iter()
                .filter(|(_, present)| *present)
                .map(|(m, _)| (m.to_owned(), path.clone()))
                .collect::<Vec<_>>()
        })
        .collect();
    let rows = table();
    let tabled: BTreeSet<(String, String)> = rows
        .iter()
        .map(|r| {
            let path = r.path.split('?').next().unwrap_or(r.path);
            (r.method.to_string(), path.to_owned())
        })
        .collect();
    let missing: Vec<_> = documented.difference(&tabled).collect();
    let stale: Vec<_> = tabled.difference(&documented).collect();
    assert!(missing.is_empty(), "endpoints without a row in the authorisation matrix: {missing:?}");
    assert!(stale.is_empty(), "rows for endpoints that do not exist: {stale:?}");
    assert_eq!(rows.len(), tabled.len(), "an endpoint has two rows");

    let mut callers = Callers::make(&h).await;
    let stock = h.principal("m-fixtures", &["stock_manager"], &["dev"]).await;
    let shop = h.principal("m-shop", &["fulfilment"], &["dev"]).await;
    let support = h.principal("m-asker", &["support"], &["dev"]).await;
    let mut wrong = Vec::new();
    for row in &rows {
        for (who, expected) in expectations(row) {
            let target = make_target(&h, row.target, &stock, &shop, &support).await;
            let path = path_for(row.path, target.as_deref());
            assert!(!path.contains('{'), "{path}: a path parameter the table does not fill");
            let caller = callers.caller(&h, &who).await;
            let (status, body) = match row.csv {
                Some(csv) => caller.call_raw(row.method.clone(), &path, "text/csv", csv).await,
                None => {
                    caller
                        .call(row.method.clone(), &path, row.body.map(|b| b(target.as_deref())))
                        .await
                }
            };
            if status.as_u16() != expected {
                wrong.push(format!(
                    "{} {} as {who}: expected {expected}, got {status} {body}",
                    row.method, row.path
                ));
            }
            if row.seals && status.is_success() {
                h = h.restart().await;
                callers.tokens.clear();
            }
        }
    }
    assert!(wrong.is_empty(), "{} cells differ:\n{}", wrong.len(), wrong.join("\n"));
}
}
