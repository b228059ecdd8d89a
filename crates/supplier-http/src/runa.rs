//! Runa's v2 order API.
//!
//! - `POST /v2/order` with `X-Api-Key`, `X-Idempotency-Key` (our client
//!   reference: Runa keeps it 30 days and answers a repeat with the original
//!   order) and `X-Execution-Mode` (`sync`: the order completes in the
//!   answer; `async`: it is `PROCESSING` and collected later with
//!   `GET /v2/order/{id}`).
//! - Errors may arrive as an HTTP 200 whose body carries a code `RE001` to
//!   `RE999` (RE006 out of stock, RE010 insufficient funds): every answer is
//!   read for one before it is believed.
//! - A completed item carries a payout URL. That URL is itself a credential
//!   (whoever has it has the code): it is fetched (`?format=json` →
//!   `e_code{code,pin,url,expiry_date}`) and then forgotten, never logged or
//!   stored; the code goes to the vault.
//! - Runa is asked whether an order exists by sending the same request under
//!   the same idempotency key: it returns the order it has, and never makes
//!   a second one.

use std::sync::Arc;

use serde::Deserialize;
use serde_json::{Value, json};
use strongroom_suppliers::{
    Balance, CatalogueItem, CollectedCode, Denominations, Money, OrderStatus, PlacedOrder,
    PurchaseRequest, SupplierConnector, SupplierError,
};
use zeroize::Zeroizing;

use crate::CredentialSource;
use crate::money::{from_decimal, to_decimal};
use crate::transport::{Call, Transport, array, decimal_text, text};

/// How orders are executed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExecutionMode {
    /// Completed within the answer.
    #[default]
    Sync,
    /// Accepted at once, collected later.
    Async,
}

impl ExecutionMode {
    fn header(self) -> &'static str {
        match self {
            ExecutionMode::Sync => "sync",
            ExecutionMode::Async => "async",
        }
    }
}

/// Runa's settings beyond the base URL.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunaSettings {
    /// `sync` (default) or `async`.
    #[serde(default)]
    pub execution_mode: ExecutionMode,
    /// Where payout links may point (default: the API's own host and port):
    /// `host` (its scheme's default port), `host:port`, either with a path
    /// prefix (`spend.runa.io/payouts`). A payout link anywhere else is not
    /// fetched: an answer must not make the server call an address of its
    /// choosing.
    #[serde(default)]
    pub payout_hosts: Vec<String>,
}

/// The Runa connector.
pub struct Runa {
    http: Transport,
    settings: RunaSettings,
    credential: Arc<dyn CredentialSource>,
}

/// Runa's error code and message, from an error body or a 200 carrying one.
fn refusal(body: &Value) -> Option<(String, String)> {
    let code = text(body, "/code")
        .or_else(|| text(body, "/error_code"))
        .or_else(|| text(body, "/error/code"))?;
    let message = text(body, "/message")
        .or_else(|| text(body, "/error/message"))
        .unwrap_or_default();
    Some((code.to_owned(), message.chars().take(200).collect()))
}

impl Runa {
    /// A connector over `http`.
    pub fn new(
        http: Transport,
        settings: RunaSettings,
        credential: Arc<dyn CredentialSource>,
    ) -> Self {
        Self {
            http,
            settings,
            credential,
        }
    }

    async fn get(&self, path: &str) -> Result<Value, SupplierError> {
        let key = self.credential.credential().await?;
        let request = self
            .http
            .client()
            .get(self.http.url(path)?)
            .header("X-Api-Key", key.as_str());
        let (_, body) = self.http.send(Call::Read, request, refusal).await?;
        self.refused_in_200(&body)?;
        Ok(body)
    }

    /// An error code in a successful answer is an error.
    fn refused_in_200(&self, body: &Value) -> Result<(), SupplierError> {
        match refusal(body) {
            Some((code, why)) => Err(self.http.rejected(code, why)),
            None => Ok(()),
        }
    }

    async fn order(&self, request: &PurchaseRequest) -> Result<PlacedOrder, SupplierError> {
        let amount = to_decimal(&request.face_value).ok_or_else(|| {
            self.http.rejected(
                "currency",
                format!("unknown currency {}", request.face_value.currency),
            )
        })?;
        let body = json!({
            "payment_method": {"type": "ACCOUNT_BALANCE", "currency": request.face_value.currency},
            "items": [{
                "face_value": amount,
                "distribution_method": {"type": "PAYOUT_LINK"},
                "products": {"type": "SINGLE", "value": request.product},
            }],
        });
        let key = self.credential.credential().await?;
        let call = self
            .http
            .client()
            .post(self.http.url("/v2/order")?)
            .header("X-Api-Key", key.as_str())
            .header("X-Idempotency-Key", &request.reference)
            .header("X-Execution-Mode", self.settings.execution_mode.header())
            .json(&body);
        let (_, answer) = self.http.send(Call::Order, call, refusal).await?;
        self.refused_in_200(&answer)?;
        self.read_order(&answer, &request.reference, &request.face_value)
            .await
    }

    /// An order as Runa describes it; completed items' codes fetched.
    async fn read_order(
        &self,
        body: &Value,
        reference: &str,
        face_value: &Money,
    ) -> Result<PlacedOrder, SupplierError> {
        let id = text(body, "/id")
            .ok_or_else(|| self.http.ambiguous("an order answer without an id"))?
            .to_owned();
        let charged = body
            .pointer("/payment/total_price")
            .and_then(decimal_text)
            .and_then(|t| {
                let currency = text(body, "/payment/currency").unwrap_or(&face_value.currency);
                from_decimal(&t, currency)
            });
        let status = match text(body, "/status").unwrap_or_default() {
            // Placed and paid; a payout that cannot be fetched now is
            // collected later (the order is never placed again for it).
            "COMPLETED" => match self.codes_of(body, face_value).await {
                Ok(codes) => OrderStatus::Complete(codes),
                // Whatever went wrong, the order stands (and is charged):
                // never reported as not bought.
                Err(e) => {
                    tracing::warn!(supplier = self.http.name(), order = %id, error = %e, "codes to collect later");
                    OrderStatus::Pending
                }
            },
            "PROCESSING" | "PENDING" => OrderStatus::Pending,
            "FAILED" | "CANCELLED" => OrderStatus::Failed {
                why: text(body, "/failure_reason")
                    .unwrap_or("the supplier failed the order")
                    .chars()
                    .take(200)
                    .collect(),
            },
            other => {
                return Err(self.http.ambiguous(format!(
                    "order {id} in a state not understood: '{}'",
                    other.chars().take(40).collect::<String>()
                )));
            }
        };
        Ok(PlacedOrder {
            supplier_order: id,
            reference: reference.to_owned(),
            charged,
            status,
        })
    }

    /// Fetches the code behind each item's payout URL.
    async fn codes_of(
        &self,
        body: &Value,
        face_value: &Money,
    ) -> Result<Vec<CollectedCode>, SupplierError> {
        let items = array(body, "/items");
        let mut codes = Vec::with_capacity(items.len());
        for item in items {
            let url = text(item, "/payout/url")
                .map(|u| Zeroizing::new(u.to_owned()))
                .ok_or_else(|| {
                    self.http
                        .transient("a completed item without its payout", None)
                })?;
            codes.push(self.redeem(&url, face_value).await?);
        }
        Ok(codes)
    }

    /// `GET {payout url}?format=json`, over the API's own scheme and
    /// without the API key (payouts live on another host, and the URL is a
    /// bearer link of its own).
    async fn redeem(&self, url: &str, face_value: &Money) -> Result<CollectedCode, SupplierError> {
        let mut parsed = reqwest::Url::parse(url).map_err(|_| {
            self.http
                .transient("a payout URL that does not parse", None)
        })?;
        let base = self.http.url("/")?;
        let allowed = if self.settings.payout_hosts.is_empty() {
            base.host_str() == parsed.host_str()
                && base.port_or_known_default() == parsed.port_or_known_default()
        } else {
            self.settings
                .payout_hosts
                .iter()
                .any(|entry| payout_allowed(entry, &parsed, base.scheme()))
        };
        if parsed.scheme() != base.scheme() || !allowed {
            return Err(self.http.rejected(
                "payout_host",
                "a payout URL on a host not in payout_hosts (or another scheme than the API)",
            ));
        }
        parsed.query_pairs_mut().append_pair("format", "json");
        // Not the API key: the payout URL is a bearer link of its own.
        let request = self.http.client().get(parsed);
        let (_, body) = self.http.send(Call::Read, request, refusal).await?;
        self.refused_in_200(&body)?;
        let code = text(&body, "/e_code/code")
            .ok_or_else(|| self.http.transient("a payout without a code", None))?;
        Ok(CollectedCode {
            code: Zeroizing::new(code.to_owned()),
            pin: text(&body, "/e_code/pin")
                .filter(|p| !p.is_empty())
                .map(|p| Zeroizing::new(p.to_owned())),
            claim_url: text(&body, "/e_code/url")
                .filter(|u| !u.is_empty())
                .map(|u| Zeroizing::new(u.to_owned())),
            expires_at: text(&body, "/e_code/expiry_date")
                .filter(|e| !e.is_empty())
                .map(str::to_owned),
            face_value: face_value.clone(),
        })
    }
}

#[async_trait::async_trait]
impl SupplierConnector for Runa {
    fn name(&self) -> &str {
        self.http.name()
    }

    async fn catalogue(&self) -> Result<Vec<CatalogueItem>, SupplierError> {
        let body = self.get("/v2/product").await?;
        let products = array(&body, "/catalog");
        let mut items = Vec::with_capacity(products.len());
        for p in products {
            let (Some(code), Some(currency)) = (text(p, "/code"), text(p, "/currency")) else {
                continue;
            };
            let amount = |v: &Value| decimal_text(v).and_then(|t| from_decimal(&t, currency));
            let denominations = match text(p, "/denominations/type") {
                Some("open") => Denominations::Range {
                    min: p
                        .pointer("/denominations/minimum_value")
                        .and_then(amount)
                        .map_or(0, |m| m.amount),
                    max: p
                        .pointer("/denominations/maximum_value")
                        .and_then(amount)
                        .map_or(0, |m| m.amount),
                },
                _ => Denominations::Fixed(
                    p.pointer("/denominations/available_list")
                        .and_then(Value::as_array)
                        .map(|l| l.iter().filter_map(amount).map(|m| m.amount).collect())
                        .unwrap_or_default(),
                ),
            };
            items.push(CatalogueItem {
                product: code.to_owned(),
                name: text(p, "/name").unwrap_or(code).to_owned(),
                currency: currency.to_owned(),
                denominations,
            });
        }
        Ok(items)
    }

    async fn place_order(&self, request: &PurchaseRequest) -> Result<PlacedOrder, SupplierError> {
        self.order(request).await
    }

    async fn find_order(
        &self,
        request: &PurchaseRequest,
    ) -> Result<Option<PlacedOrder>, SupplierError> {
        // The same body under the same key: Runa's own record of it.
        self.order(request).await.map(Some)
    }

    async fn collect(&self, supplier_order: &str) -> Result<OrderStatus, SupplierError> {
        if !supplier_order
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(self.http.rejected("order_id", "not an order id"));
        }
        let body = self.get(&format!("/v2/order/{supplier_order}")).await?;
        let currency = text(&body, "/payment/currency")
            .unwrap_or_default()
            .to_owned();
        let face_value = body
            .pointer("/items/0/face_value")
            .and_then(decimal_text)
            .and_then(|t| from_decimal(&t, &currency))
            .unwrap_or(Money {
                amount: 0,
                currency,
            });
        let reference = text(&body, "/external_ref").unwrap_or_default().to_owned();
        Ok(self
            .read_order(&body, &reference, &face_value)
            .await?
            .status)
    }

    async fn balance(&self) -> Result<Vec<Balance>, SupplierError> {
        let body = self.get("/v2/balance").await?;
        Ok(array(&body, "/balances")
            .iter()
            .filter_map(|b| {
                let currency = text(b, "/currency")?;
                let amount = decimal_text(b.pointer("/balance")?)?;
                Some(Balance {
                    available: from_decimal(&amount, currency)?,
                })
            })
            .collect())
    }
}

/// Whether `url` is one `entry` of `payout_hosts` allows: the same host, the
/// same port (the entry's, or the scheme's default), and under the entry's
/// path, if it names one (a whole segment: `/payouts` allows `/payouts/x`,
/// not `/payoutsx`).
fn payout_allowed(entry: &str, url: &reqwest::Url, scheme: &str) -> bool {
    let Ok(allowed) = reqwest::Url::parse(&format!("{scheme}://{}", entry.trim())) else {
        return false;
    };
    let prefix = allowed.path().trim_end_matches('/');
    let path = url.path();
    allowed.host_str() == url.host_str()
        && allowed.port_or_known_default() == url.port_or_known_default()
        && (prefix.is_empty()
            || path == prefix
            || path
                .strip_prefix(prefix)
                .is_some_and(|rest| rest.starts_with('/')))
}

#[cfg(test)]
mod tests {
    #[test]
    fn payout_hosts_bind_host_port_and_path() {
        let url = |u: &str| reqwest::Url::parse(u).unwrap();
        let ok = |entry: &str, u: &str| super::payout_allowed(entry, &url(u), "https");
        assert!(ok("spend.runa.io", "https://spend.runa.io/p/1"));
        assert!(
            !ok("spend.runa.io", "https://spend.runa.io:8443/p/1"),
            "another port"
        );
        assert!(ok("spend.runa.io:8443", "https://spend.runa.io:8443/p/1"));
        assert!(!ok("spend.runa.io", "https://evil.example/p/1"));
        assert!(!ok(
            "spend.runa.io",
            "https://spend.runa.io.evil.example/p/1"
        ));
        assert!(ok(
            "spend.runa.io/payouts",
            "https://spend.runa.io/payouts/abc"
        ));
        assert!(!ok(
            "spend.runa.io/payouts",
            "https://spend.runa.io/payoutsx/abc"
        ));
        assert!(!ok("spend.runa.io/payouts", "https://spend.runa.io/admin"));
    }
}
