//! Tango Card's RaaS v2 order API.
//!
//! - OAuth client credentials (`CLIENT_ID:CLIENT_SECRET` in the vault) buy
//!   an access token that lasts about a day; it is cached (in zeroizing
//!   memory) until five minutes before it expires, and dropped at once when
//!   the API answers 401.
//! - `POST /raas/v2/orders` with `externalRefID` (our client reference:
//!   Tango keeps it 90 days per account and answers a repeat with the
//!   original order), `customerIdentifier`, `accountIdentifier`, `utid`,
//!   `amount`; the answer has `referenceOrderID`, `amountCharged` and the
//!   reward's `credentialList` (`label`, `value`, `type`).
//! - Orders are found by reference with `GET /raas/v2/orders?externalRefID=`.
//! - Tango allows about one request a second: the supplier's pace in
//!   configuration should say so.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::{Value, json};
use strongroom_suppliers::{
    Balance, CatalogueItem, CollectedCode, Denominations, Money, OrderStatus, PlacedOrder,
    PurchaseRequest, SupplierConnector, SupplierError,
};
use tokio::sync::Mutex;
use zeroize::Zeroizing;

use crate::CredentialSource;
use crate::money::{from_decimal, to_decimal};
use crate::transport::{Call, Transport, array, decimal_text, text};

/// Tango Card's settings beyond the base URL.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TangoSettings {
    /// The platform customer the account belongs to.
    pub customer: String,
    /// The account orders are paid from.
    pub account: String,
    /// The OAuth token endpoint (default: `{base_url}/oauth/token`).
    #[serde(default)]
    pub token_url: Option<String>,
    /// The OAuth audience, if the token endpoint wants one.
    #[serde(default)]
    pub audience: Option<String>,
}

/// A cached access token.
struct Token {
    value: Zeroizing<String>,
    good_until: Instant,
}

/// The Tango Card connector.
pub struct Tango {
    http: Transport,
    settings: TangoSettings,
    credential: Arc<dyn CredentialSource>,
    token: Mutex<Option<Token>>,
}

/// Tango's error code and message (`{"errors":[{"code","message"}]}` or a
/// flat `{"code","message"}`).
fn refusal(body: &Value) -> Option<(String, String)> {
    let (code, message) = match body.pointer("/errors/0") {
        Some(e) => (text(e, "/code")?, text(e, "/message")),
        None => (text(body, "/code")?, text(body, "/message")),
    };
    Some((
        code.to_owned(),
        message.unwrap_or_default().chars().take(200).collect(),
    ))
}

/// Token lifetimes are trusted for at most a day, and renewed five minutes
/// early.
fn token_life(expires_in: Option<u64>) -> Duration {
    let secs = expires_in.unwrap_or(3600).min(86_400);
    Duration::from_secs(secs.saturating_sub(300).max(30))
}

impl Tango {
    /// A connector over `http`.
    pub fn new(
        http: Transport,
        settings: TangoSettings,
        credential: Arc<dyn CredentialSource>,
    ) -> Self {
        Self {
            http,
            settings,
            credential,
            token: Mutex::new(None),
        }
    }

    /// A valid access token, from the cache or the token endpoint.
    async fn access_token(&self) -> Result<Zeroizing<String>, SupplierError> {
        let mut cached = self.token.lock().await;
        if let Some(t) = cached.as_ref()
            && t.good_until > Instant::now()
        {
            return Ok(t.value.clone());
        }
        let credential = self.credential.credential().await?;
        let (id, secret) = credential.split_once(':').ok_or_else(|| {
            self.http.rejected(
                "credential",
                "the Tango Card credential is CLIENT_ID:CLIENT_SECRET",
            )
        })?;
        let url = match &self.settings.token_url {
            Some(u) => reqwest::Url::parse(u)
                .map_err(|_| self.http.rejected("token_url", "token_url does not parse"))?,
            None => self.http.url("/oauth/token")?,
        };
        let mut form = vec![
            ("grant_type", "client_credentials"),
            ("client_id", id),
            ("client_secret", secret),
        ];
        if let Some(a) = &self.settings.audience {
            form.push(("audience", a));
        }
        let request = self.http.client().post(url).form(&form);
        let (_, body) = self.http.send(Call::Read, request, refusal).await?;
        let value = text(&body, "/access_token")
            .ok_or_else(|| self.http.transient("a token answer without a token", None))?;
        let token = Token {
            value: Zeroizing::new(value.to_owned()),
            good_until: Instant::now()
                + token_life(body.pointer("/expires_in").and_then(Value::as_u64)),
        };
        let value = token.value.clone();
        *cached = Some(token);
        Ok(value)
    }

    /// Sends an authorised request; a 401 drops the cached token and is
    /// retried once with a new one.
    async fn authorised(
        &self,
        call: Call,
        build: impl Fn(&reqwest::Client) -> Result<reqwest::RequestBuilder, SupplierError>,
    ) -> Result<Value, SupplierError> {
        for first in [true, false] {
            let token = self.access_token().await?;
            let request = build(self.http.client())?.bearer_auth(token.as_str());
            match self.http.send(call, request, refusal).await {
                Err(SupplierError::Rejected { code, .. }) if code == "http_401" && first => {
                    *self.token.lock().await = None;
                }
                Ok((_, body)) => {
                    // Tango reports errors with an error status; a 2xx
                    // carrying errors is believed over its status.
                    if body.pointer("/errors/0").is_some()
                        && let Some((code, why)) = refusal(&body)
                    {
                        return Err(self.http.rejected(code, why));
                    }
                    return Ok(body);
                }
                Err(e) => return Err(e),
            }
        }
        Err(self
            .http
            .rejected("http_401", "the access token was refused"))
    }

    fn read_order(&self, body: &Value, face_value: &Money) -> Result<PlacedOrder, SupplierError> {
        let id = text(body, "/referenceOrderID")
            .ok_or_else(|| {
                self.http
                    .ambiguous("an order answer without referenceOrderID")
            })?
            .to_owned();
        let charged = body.pointer("/amountCharged").and_then(|a| {
            let currency = text(a, "/currencyCode")?;
            from_decimal(
                &decimal_text(a.pointer("/total").or(a.pointer("/value"))?)?,
                currency,
            )
        });
        let status = match text(body, "/status").unwrap_or_default() {
            "COMPLETE" => OrderStatus::Complete(vec![self.credentials(body, face_value)?]),
            "PENDING" => OrderStatus::Pending,
            "FAILED" | "CANCELLED" | "REJECTED" => OrderStatus::Failed {
                why: format!(
                    "order {}",
                    text(body, "/status").unwrap_or_default().to_lowercase()
                ),
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
            reference: text(body, "/externalRefID").unwrap_or_default().to_owned(),
            charged,
            status,
        })
    }

    /// The reward's code, PIN, claim URL and expiry, from its credential
    /// list (labels vary by brand: a code is the first text credential that
    /// is not a PIN or a date).
    fn credentials(
        &self,
        body: &Value,
        face_value: &Money,
    ) -> Result<CollectedCode, SupplierError> {
        let list = array(body, "/reward/credentialList");
        let mut code = None;
        let mut pin = None;
        let mut claim_url = None;
        let mut expires_at = None;
        for c in list {
            let label = text(c, "/label").unwrap_or_default().to_ascii_lowercase();
            let kind = text(c, "/type").unwrap_or_default();
            let Some(value) = text(c, "/value") else {
                continue;
            };
            if kind == "url" {
                claim_url.get_or_insert_with(|| Zeroizing::new(value.to_owned()));
            } else if kind == "date" || label.contains("expir") {
                expires_at.get_or_insert_with(|| value.to_owned());
            } else if label.contains("pin") {
                pin.get_or_insert_with(|| Zeroizing::new(value.to_owned()));
            } else {
                code.get_or_insert_with(|| Zeroizing::new(value.to_owned()));
            }
        }
        // A reward that is only a link: the link is the code.
        let code = code.or_else(|| claim_url.clone()).ok_or_else(|| {
            self.http
                .transient("a completed order without credentials", None)
        })?;
        Ok(CollectedCode {
            code,
            pin,
            claim_url,
            expires_at,
            face_value: face_value.clone(),
        })
    }
}

#[async_trait::async_trait]
impl SupplierConnector for Tango {
    fn name(&self) -> &str {
        self.http.name()
    }

    async fn catalogue(&self) -> Result<Vec<CatalogueItem>, SupplierError> {
        let url = self.http.url("/raas/v2/catalogs")?;
        let body = self
            .authorised(Call::Read, |c| Ok(c.get(url.clone())))
            .await?;
        let mut items = Vec::new();
        let brands = array(&body, "/brands");
        for item in brands.iter().flat_map(|b| array(b, "/items")) {
            let (Some(utid), Some(currency)) = (text(item, "/utid"), text(item, "/currencyCode"))
            else {
                continue;
            };
            let amount = |p: &str| {
                item.pointer(p)
                    .and_then(decimal_text)
                    .and_then(|t| from_decimal(&t, currency))
                    .map_or(0, |m| m.amount)
            };
            let denominations = if text(item, "/valueType") == Some("VARIABLE_VALUE") {
                Denominations::Range {
                    min: amount("/minValue"),
                    max: amount("/maxValue"),
                }
            } else {
                Denominations::Fixed(vec![amount("/faceValue")])
            };
            items.push(CatalogueItem {
                product: utid.to_owned(),
                name: text(item, "/rewardName").unwrap_or(utid).to_owned(),
                currency: currency.to_owned(),
                denominations,
            });
        }
        Ok(items)
    }

    async fn place_order(&self, request: &PurchaseRequest) -> Result<PlacedOrder, SupplierError> {
        let amount = to_decimal(&request.face_value)
            .and_then(|a| a.parse::<serde_json::Number>().ok())
            .ok_or_else(|| {
                self.http.rejected(
                    "currency",
                    format!("unknown currency {}", request.face_value.currency),
                )
            })?;
        let body = json!({
            "externalRefID": request.reference,
            "customerIdentifier": self.settings.customer,
            "accountIdentifier": self.settings.account,
            "utid": request.product,
            "amount": amount,
            "sendEmail": false,
        });
        let url = self.http.url("/raas/v2/orders")?;
        let answer = self
            .authorised(Call::Order, |c| Ok(c.post(url.clone()).json(&body)))
            .await?;
        self.read_order(&answer, &request.face_value)
    }

    async fn find_order(
        &self,
        request: &PurchaseRequest,
    ) -> Result<Option<PlacedOrder>, SupplierError> {
        let mut url = self.http.url("/raas/v2/orders")?;
        url.query_pairs_mut()
            .append_pair("externalRefID", &request.reference);
        let body = self
            .authorised(Call::Read, |c| Ok(c.get(url.clone())))
            .await?;
        match body.pointer("/orders/0") {
            Some(order) => self.read_order(order, &request.face_value).map(Some),
            None => Ok(None),
        }
    }

    async fn collect(&self, supplier_order: &str) -> Result<OrderStatus, SupplierError> {
        if !supplier_order
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(self.http.rejected("order_id", "not an order id"));
        }
        let url = self
            .http
            .url(&format!("/raas/v2/orders/{supplier_order}"))?;
        let body = self
            .authorised(Call::Read, |c| Ok(c.get(url.clone())))
            .await?;
        let face_value = body
            .pointer("/amountCharged")
            .and_then(|a| {
                let currency = text(a, "/currencyCode")?;
                from_decimal(&decimal_text(a.pointer("/value")?)?, currency)
            })
            .unwrap_or(Money {
                amount: 0,
                currency: String::new(),
            });
        Ok(self.read_order(&body, &face_value)?.status)
    }

    async fn balance(&self) -> Result<Vec<Balance>, SupplierError> {
        let url = self
            .http
            .url(&format!("/raas/v2/accounts/{}", self.settings.account))?;
        let body = self
            .authorised(Call::Read, |c| Ok(c.get(url.clone())))
            .await?;
        let currency = text(&body, "/currencyCode").unwrap_or_default();
        Ok(body
            .pointer("/currentBalance")
            .and_then(decimal_text)
            .and_then(|t| from_decimal(&t, currency))
            .map(|available| vec![Balance { available }])
            .unwrap_or_default())
    }
}
