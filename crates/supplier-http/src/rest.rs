//! A retailer's own simple API, described in configuration instead of code:
//! where to send an order (a path and a JSON body template), where to find
//! one by our reference, and JSON pointers (RFC 6901) to the code, PIN,
//! expiry, claim URL, order id, amount charged and error code in the
//! answers.
//!
//! Templates may use `{reference}`, `{product}`, `{face_value}` (decimal,
//! `25.00`), `{face_value_minor}` (`2500`) and `{currency}`. Orders are
//! synchronous: the code is in the answer. An error code found at
//! `error_pointer` makes any answer, HTTP 200 included, a refusal.

use std::sync::Arc;

use serde::Deserialize;
use serde_json::Value;
use strongroom_suppliers::{
    Balance, CatalogueItem, CollectedCode, Money, OrderStatus, PlacedOrder, PurchaseRequest,
    SupplierConnector, SupplierError,
};
use zeroize::Zeroizing;

use crate::CredentialSource;
use crate::money::{from_decimal, to_decimal};
use crate::transport::{Call, Transport};

fn authorization() -> String {
    "Authorization".into()
}

fn bearer() -> String {
    "Bearer ".into()
}

/// How to speak to the retailer's API.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestSettings {
    /// Path orders are POSTed to, e.g. `/api/v1/codes`.
    pub order_path: String,
    /// The JSON body of an order, with placeholders.
    pub order_body: Value,
    /// Path to GET an order by reference, e.g.
    /// `/api/v1/codes?reference={reference}` (404 or an empty answer: no
    /// such order). Without it an unclear outcome stays unsettled for
    /// reconciliation.
    #[serde(default)]
    pub find_path: Option<String>,
    /// Path to GET the balance.
    #[serde(default)]
    pub balance_path: Option<String>,
    /// Pointer to the balance (decimal) in that answer.
    #[serde(default)]
    pub balance_pointer: Option<String>,
    /// Currency of the balance.
    #[serde(default)]
    pub balance_currency: Option<String>,
    /// Header carrying the credential (default `Authorization`).
    #[serde(default = "authorization")]
    pub auth_header: String,
    /// Put before the credential (default `Bearer `).
    #[serde(default = "bearer")]
    pub auth_prefix: String,
    /// Pointer to the code, e.g. `/data/code`.
    pub code_pointer: String,
    /// Pointer to the PIN.
    #[serde(default)]
    pub pin_pointer: Option<String>,
    /// Pointer to the expiry (ISO 8601 date or RFC 3339 time).
    #[serde(default)]
    pub expiry_pointer: Option<String>,
    /// Pointer to a claim URL (a credential: kept in the vault).
    #[serde(default)]
    pub claim_url_pointer: Option<String>,
    /// Pointer to the retailer's order id.
    #[serde(default)]
    pub order_id_pointer: Option<String>,
    /// Pointer to the amount charged (decimal, in the code's currency).
    #[serde(default)]
    pub charged_pointer: Option<String>,
    /// Pointer to an error code: present and not empty, the answer is a
    /// refusal whatever its HTTP status.
    #[serde(default)]
    pub error_pointer: Option<String>,
    /// Pointer to the error's message.
    #[serde(default)]
    pub error_message_pointer: Option<String>,
}

/// The configurable REST connector.
pub struct Rest {
    http: Transport,
    settings: RestSettings,
    credential: Arc<dyn CredentialSource>,
}

/// A pointer's value as text (strings as they are, numbers written out).
fn at(body: &Value, pointer: Option<&str>) -> Option<String> {
    let v = body.pointer(pointer?)?;
    match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

impl Rest {
    /// A connector over `http`. Pointers must start with `/`.
    pub fn new(
        http: Transport,
        settings: RestSettings,
        credential: Arc<dyn CredentialSource>,
    ) -> Result<Self, crate::SetupError> {
        let pointers = [
            Some(&settings.code_pointer),
            settings.pin_pointer.as_ref(),
            settings.expiry_pointer.as_ref(),
            settings.claim_url_pointer.as_ref(),
            settings.order_id_pointer.as_ref(),
            settings.charged_pointer.as_ref(),
            settings.error_pointer.as_ref(),
            settings.error_message_pointer.as_ref(),
            settings.balance_pointer.as_ref(),
        ];
        let paths = [
            Some(&settings.order_path),
            settings.find_path.as_ref(),
            settings.balance_path.as_ref(),
        ];
        if pointers.into_iter().flatten().any(|p| !p.starts_with('/'))
            || paths.into_iter().flatten().any(|p| !p.starts_with('/'))
        {
            return Err(crate::SetupError {
                supplier: http.name().to_owned(),
                why: "paths and JSON pointers start with '/'".into(),
            });
        }
        Ok(Self {
            http,
            settings,
            credential,
        })
    }

    /// The template's placeholders filled in for `request`. Every value is
    /// ours (references are `[a-z0-9-]`, products checked at start-up).
    fn fill(&self, template: &str, request: &PurchaseRequest) -> Result<String, SupplierError> {
        let decimal = to_decimal(&request.face_value).ok_or_else(|| {
            self.http.rejected(
                "currency",
                format!("unknown currency {}", request.face_value.currency),
            )
        })?;
        Ok(template
            .replace("{reference}", &request.reference)
            .replace("{product}", &request.product)
            .replace("{face_value_minor}", &request.face_value.amount.to_string())
            .replace("{face_value}", &decimal)
            .replace("{currency}", &request.face_value.currency))
    }

    fn fill_json(
        &self,
        template: &Value,
        request: &PurchaseRequest,
    ) -> Result<Value, SupplierError> {
        Ok(match template {
            Value::String(s) => Value::String(self.fill(s, request)?),
            Value::Array(items) => Value::Array(
                items
                    .iter()
                    .map(|i| self.fill_json(i, request))
                    .collect::<Result<_, _>>()?,
            ),
            Value::Object(map) => Value::Object(
                map.iter()
                    .map(|(k, v)| Ok((k.clone(), self.fill_json(v, request)?)))
                    .collect::<Result<_, SupplierError>>()?,
            ),
            other => other.clone(),
        })
    }

    async fn authorised(
        &self,
        call: Call,
        request: reqwest::RequestBuilder,
    ) -> Result<(u16, Value), SupplierError> {
        let credential = self.credential.credential().await?;
        let value = Zeroizing::new(format!(
            "{}{}",
            self.settings.auth_prefix,
            credential.as_str()
        ));
        let request = request.header(self.settings.auth_header.as_str(), value.as_str());
        let (status, body) = self.http.send(call, request, |_| None).await?;
        if let Some(code) = at(&body, self.settings.error_pointer.as_deref()) {
            let why = at(&body, self.settings.error_message_pointer.as_deref())
                .unwrap_or_default()
                .chars()
                .take(200)
                .collect::<String>();
            return Err(self.http.rejected(code, why));
        }
        Ok((status, body))
    }

    fn read_order(
        &self,
        body: &Value,
        request: &PurchaseRequest,
    ) -> Result<PlacedOrder, SupplierError> {
        let s = &self.settings;
        let code = at(body, Some(&s.code_pointer))
            .ok_or_else(|| self.http.ambiguous("an order answer without a code"))?;
        let currency = &request.face_value.currency;
        Ok(PlacedOrder {
            supplier_order: at(body, s.order_id_pointer.as_deref())
                .unwrap_or_else(|| request.reference.clone()),
            reference: request.reference.clone(),
            charged: at(body, s.charged_pointer.as_deref())
                .and_then(|t| from_decimal(&t, currency)),
            status: OrderStatus::Complete(vec![CollectedCode {
                code: Zeroizing::new(code),
                pin: at(body, s.pin_pointer.as_deref()).map(Zeroizing::new),
                claim_url: at(body, s.claim_url_pointer.as_deref()).map(Zeroizing::new),
                expires_at: at(body, s.expiry_pointer.as_deref()),
                face_value: request.face_value.clone(),
            }]),
        })
    }
}

#[async_trait::async_trait]
impl SupplierConnector for Rest {
    fn name(&self) -> &str {
        self.http.name()
    }

    /// A retailer's own API seldom lists itself: the products are the ones
    /// configured.
    async fn catalogue(&self) -> Result<Vec<CatalogueItem>, SupplierError> {
        Ok(Vec::new())
    }

    async fn place_order(&self, request: &PurchaseRequest) -> Result<PlacedOrder, SupplierError> {
        let body = self.fill_json(&self.settings.order_body, request)?;
        let url = self
            .http
            .url(&self.fill(&self.settings.order_path, request)?)?;
        let call = self.http.client().post(url).json(&body);
        let (_, answer) = self.authorised(Call::Order, call).await?;
        self.read_order(&answer, request)
    }

    async fn find_order(
        &self,
        request: &PurchaseRequest,
    ) -> Result<Option<PlacedOrder>, SupplierError> {
        let Some(path) = &self.settings.find_path else {
            return Err(self
                .http
                .ambiguous("no find_path configured to look the order up"));
        };
        let url = self.http.url(&self.fill(path, request)?)?;
        match self
            .authorised(Call::Read, self.http.client().get(url))
            .await
        {
            Ok((_, body)) if body.is_null() => Ok(None),
            Ok((_, body)) => self.read_order(&body, request).map(Some),
            Err(SupplierError::Rejected { code, .. }) if code == "http_404" => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn collect(&self, _supplier_order: &str) -> Result<OrderStatus, SupplierError> {
        Err(self
            .http
            .rejected("unsupported", "this connector's orders complete at once"))
    }

    async fn balance(&self) -> Result<Vec<Balance>, SupplierError> {
        let (Some(path), Some(currency)) =
            (&self.settings.balance_path, &self.settings.balance_currency)
        else {
            return Ok(Vec::new());
        };
        let url = self.http.url(path)?;
        let (_, body) = self
            .authorised(Call::Read, self.http.client().get(url))
            .await?;
        Ok(at(&body, self.settings.balance_pointer.as_deref())
            .and_then(|t| from_decimal(&t, currency))
            .map(|available: Money| vec![Balance { available }])
            .unwrap_or_default())
    }
}
