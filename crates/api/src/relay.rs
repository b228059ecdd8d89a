//! The detokenizing relay: the vault calls the payment processor itself, so
//! the gateway never holds a card number or CVV.
//!
//! # What it will reach
//! Only configured routes (`[[relay.route]]`): an HTTPS base URL, the
//! methods and paths allowed under it, headers to add (the processor's API
//! key, read from a file). It is no open proxy:
//! - the path must match one of the route's (`/v1/charges`, or a prefix
//!   `/v1/charges/*`), and `..` never appears in it;
//! - redirects are never followed (a 3xx is an error);
//! - names resolve through a resolver that refuses loopback, private,
//!   link-local, CGNAT and unique-local addresses unless the route says
//!   `allow_private = true`, and the check is made on the addresses actually
//!   connected to, so DNS cannot rebind a public name to an inside one.
//!
//! # What it sends and returns
//! Placeholders in the request body — `{{ card.pan }}`, `{{ card.cvv }}`,
//! `{{ card.expiry }}` (MM/YY), `{{ card.expiry_month }}`,
//! `{{ card.expiry_year }}`, `{{ card.holder }}` — are replaced by the real
//! values inside this process. The upstream's answer is decoded by its
//! content type and scrubbed of the card before it comes back (see
//! [`crate::relay_mask`]).

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use serde::Deserialize;
use serde_json::Value;
use strongroom_vault::cards::RelayCard;
use zeroize::Zeroizing;

/// Largest upstream answer read, bytes.
pub const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

/// One `[[relay.route]]`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RelayRoute {
    /// Name in `POST /v1/relay/{name}/…` (letters, digits, `-`, `_`).
    pub name: String,
    /// `https://processor.example.com` (a base; paths are appended).
    pub upstream: String,
    /// Paths allowed: exact (`/v1/charges`) or a prefix (`/v1/charges/*`).
    pub paths: Vec<String>,
    /// Upstream methods allowed (`POST`, `PUT`, `PATCH`, `GET`, `DELETE`);
    /// default `["POST"]`.
    #[serde(default = "default_methods")]
    pub methods: Vec<String>,
    /// Tenants whose cards may go this way (`*`: all); the processor's
    /// credentials belong to these.
    pub tenants: Vec<String>,
    /// Headers added to every call.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Headers whose values are read from files (API keys): never in the
    /// configuration in clear, never logged.
    #[serde(default)]
    pub header_files: BTreeMap<String, PathBuf>,
    /// PEM file of the CAs trusted for the upstream.
    pub ca_file: PathBuf,
    /// Allow loopback and private addresses (a processor inside your
    /// network, or a test); default no.
    #[serde(default)]
    pub allow_private: bool,
    /// Seconds an upstream call may take.
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
}

fn default_timeout() -> u64 {
    30
}

fn default_methods() -> Vec<String> {
    vec!["POST".into()]
}

/// The methods a route may allow.
const METHODS: [&str; 5] = ["POST", "PUT", "PATCH", "GET", "DELETE"];

/// Why the relay could not be set up or used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RelayError {
    /// A route cannot work as configured.
    #[error("relay route '{route}': {why}")]
    Config {
        /// The route.
        route: String,
        /// Why.
        why: String,
    },
}

/// A route ready to call.
pub struct PreparedRoute {
    /// Its configuration.
    pub route: RelayRoute,
    base: reqwest::Url,
    client: reqwest::Client,
    headers: reqwest::header::HeaderMap,
}

impl std::fmt::Debug for PreparedRoute {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PreparedRoute({})", self.route.name)
    }
}

/// The configured routes.
#[derive(Debug, Default)]
pub struct Relay {
    routes: HashMap<String, Arc<PreparedRoute>>,
}

impl Relay {
    /// Checks and prepares every route (reading header files now, so a
    /// missing key fails at start, not at the first payment).
    pub fn new(routes: &[RelayRoute]) -> Result<Self, RelayError> {
        let mut prepared = HashMap::new();
        for route in routes {
            let p = PreparedRoute::new(route)?;
            if prepared.insert(route.name.clone(), Arc::new(p)).is_some() {
                return Err(RelayError::Config {
                    route: route.name.clone(),
                    why: "two routes have this name".into(),
                });
            }
        }
        Ok(Self { routes: prepared })
    }

    /// The route called `name`.
    pub fn route(&self, name: &str) -> Option<Arc<PreparedRoute>> {
        self.routes.get(name).cloned()
    }
}

impl PreparedRoute {
    fn new(route: &RelayRoute) -> Result<Self, RelayError> {
        let bad = |why: String| RelayError::Config {
            route: route.name.clone(),
            why,
        };
        if route.name.is_empty()
            || route.name.len() > 40
            || !route
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(bad(
                "name must be 1 to 40 letters, digits, '-' or '_'".into()
            ));
        }
        if route.methods.is_empty() || route.methods.iter().any(|m| !METHODS.contains(&m.as_str()))
        {
            return Err(bad(format!(
                "methods must be some of {}",
                METHODS.join(", ")
            )));
        }
        let base = reqwest::Url::parse(&route.upstream)
            .map_err(|e| bad(format!("upstream '{}': {e}", route.upstream)))?;
        if base.scheme() != "https" || base.host_str().is_none() {
            return Err(bad("upstream must be an https:// URL".into()));
        }
        if !base.username().is_empty() || base.password().is_some() {
            return Err(bad("credentials go in header_files, not in the URL".into()));
        }
        if route.paths.is_empty()
            || route
                .paths
                .iter()
                .any(|p| !p.starts_with('/') || p.contains("..") || p.contains('?'))
        {
            return Err(bad(
                "paths must be absolute (/v1/charges or /v1/charges/*)".into()
            ));
        }
        if route.tenants.is_empty() {
            return Err(bad(
                "tenants must name the tenants whose cards use this route ('*' for all)".into(),
            ));
        }
        if !(1..=120).contains(&route.timeout_secs) {
            return Err(bad("timeout_secs must be 1 to 120".into()));
        }
        let mut headers = reqwest::header::HeaderMap::new();
        let mut add = |name: &str, value: &str, sensitive: bool| -> Result<(), RelayError> {
            let name = reqwest::header::HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| bad(format!("'{name}' is no header name")))?;
            let mut value = reqwest::header::HeaderValue::from_str(value)
                .map_err(|_| bad(format!("the value of header {name} is not valid")))?;
            value.set_sensitive(sensitive);
            headers.insert(name, value);
            Ok(())
        };
        for (name, value) in &route.headers {
            add(name, value, false)?;
        }
        for (name, file) in &route.header_files {
            let text = Zeroizing::new(
                std::fs::read_to_string(file)
                    .map_err(|e| bad(format!("header file {}: {e}", file.display())))?,
            );
            add(name, text.trim(), true)?;
        }
        let tls =
            strongroom_watch::tls::client_config(&route.ca_file).map_err(|e| bad(e.to_string()))?;
        let client = reqwest::Client::builder()
            .user_agent(concat!("strongroom-relay/", env!("CARGO_PKG_VERSION")))
            .tls_backend_preconfigured(tls)
            .redirect(reqwest::redirect::Policy::none())
            // A proxy from the environment would be the address connected
            // to, and the resolver's guard would check the proxy instead.
            .no_proxy()
            .timeout(Duration::from_secs(route.timeout_secs))
            .dns_resolver(Arc::new(GuardedResolver {
                allow_private: route.allow_private,
            }))
            .build()
            .map_err(|e| bad(format!("client: {e}")))?;
        Ok(Self {
            route: route.clone(),
            base,
            client,
            headers,
        })
    }

    /// Whether `path` (starting with `/`) is one of the route's. Only
    /// plain path characters are accepted — no `%` (nothing is decoded
    /// twice), no `\`, no control characters — and no `.` or `..` segment,
    /// so the path checked is the path sent.
    /// Whether the route allows calling its upstream with `method`.
    pub fn allows_method(&self, method: &str) -> bool {
        self.route.methods.iter().any(|m| m == method)
    }

    /// Whether the route allows `path` (plain characters, no dot segments).
    pub fn allows(&self, path: &str) -> bool {
        let plain = path
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~/".contains(&b));
        let dotted = path.split('/').any(|seg| seg == "." || seg == "..");
        if !plain || dotted || path.contains("//") {
            return false;
        }
        self.route.paths.iter().any(|p| match p.strip_suffix('*') {
            Some(prefix) => path.starts_with(prefix) && path.len() > prefix.len(),
            None => path == p,
        })
    }

    /// Sends `body` to `path`; the upstream's status and body (read up to
    /// [`MAX_RESPONSE_BYTES`]).
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        body: &Value,
    ) -> Result<UpstreamAnswer, String> {
        if !self.allows_method(method) {
            return Err("that method is not one this route allows".into());
        }
        let method = reqwest::Method::from_bytes(method.as_bytes())
            .map_err(|_| "not an HTTP method".to_owned())?;
        let mut url = self.base.clone();
        let wanted = format!("{}{path}", self.base.path().trim_end_matches('/'));
        url.set_path(&wanted);
        // Belt and braces: the URL must say exactly the path allowed.
        if url.path() != wanted || url.host_str() != self.base.host_str() {
            return Err("the path does not stay under the route".into());
        }
        // An IP literal is never resolved: check it here.
        if let Some(host) = url.host_str()
            && let Ok(ip) = host.trim_matches(['[', ']']).parse::<IpAddr>()
            && !self.route.allow_private
            && is_private(ip)
        {
            return Err("the upstream is a private address".into());
        }
        let bytes = serde_json::to_vec(body).map_err(|_| "the body could not be encoded")?;
        // The one copy of the filled-in body goes to the HTTP client, which
        // zeroes it when the last reference (a retry's included) is gone.
        let bytes = bytes::Bytes::from_owner(Zeroizing::new(bytes));
        let request = self
            .client
            .request(method, url)
            .headers(self.headers.clone());
        // A GET or DELETE without a body sends none.
        let request = if body.is_null() {
            request
        } else {
            request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(bytes)
        };
        let response = request.send().await.map_err(|e| {
            if is_refused_address(&e) {
                "the upstream resolves only to private addresses".to_owned()
            } else {
                format!("upstream unreachable: {}", e.without_url())
            }
        })?;
        let status = response.status().as_u16();
        if response.status().is_redirection() {
            return Err(format!(
                "the upstream redirected ({status}); redirects are not followed"
            ));
        }
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        // The answer may echo the card: zeroed once read and masked.
        let mut out = Zeroizing::new(Vec::new());
        let mut response = response;
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| format!("upstream answer: {}", e.without_url()))?
        {
            if out.len() + chunk.len() > MAX_RESPONSE_BYTES {
                return Err("the upstream answer is larger than 1 MiB".into());
            }
            out.extend_from_slice(&chunk);
        }
        Ok(UpstreamAnswer {
            status,
            content_type,
            body: out,
        })
    }
}

/// What the upstream answered, before masking.
#[derive(Debug)]
pub struct UpstreamAnswer {
    /// HTTP status.
    pub status: u16,
    /// Its `content-type`, if it gave one.
    pub content_type: Option<String>,
    /// The body, zeroed when dropped (it may echo the card).
    pub body: Zeroizing<Vec<u8>>,
}

fn is_refused_address(e: &reqwest::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if s.to_string().contains(PRIVATE_REFUSED) {
            return true;
        }
        source = s.source();
    }
    false
}

const PRIVATE_REFUSED: &str = "resolves only to private addresses";

/// Resolves names, dropping addresses a relay must not reach.
struct GuardedResolver {
    allow_private: bool,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_private = self.allow_private;
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|a| allow_private || !is_private(a.ip()))
                .collect();
            if found.is_empty() {
                return Err(format!("{host} {PRIVATE_REFUSED}").into());
            }
            Ok(Box::new(found.into_iter()) as Addrs)
        })
    }
}

/// Addresses that are not the public internet.
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_broadcast()
                || v4.is_multicast()
                || a == 0
                || a >= 240
                || (a == 100 && (64..128).contains(&b))
                || (a == 192 && b == 0 && c == 0)
                || (a == 198 && (b == 18 || b == 19))
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_private(IpAddr::V4(v4));
            }
            let s = v6.segments();
            let [first, second, ..] = s;
            // Addresses that carry an IPv4 one inside: judged by it.
            let embedded = |hi: u16, lo: u16| {
                let [h1, h2] = hi.to_be_bytes();
                let [l1, l2] = lo.to_be_bytes();
                is_private(IpAddr::V4(std::net::Ipv4Addr::new(h1, h2, l1, l2)))
            };
            if s[..6] == [0; 6] {
                // IPv4-compatible ::a.b.c.d (deprecated, still routable in places).
                return v6.is_loopback() || v6.is_unspecified() || embedded(s[6], s[7]);
            }
            if first == 0x0064 && second == 0xff9b {
                // NAT64 (64:ff9b::/96 and 64:ff9b:1::/48).
                return embedded(s[6], s[7]);
            }
            if first == 0x2002 {
                // 6to4: the IPv4 address in the next 32 bits.
                return embedded(second, s[2]);
            }
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || first == 0x2001 && second == 0x0000
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || (first & 0xffc0) == 0xfec0
        }
    }
}

/// Zeroes every string of a JSON value (a filled-in body held the card)
/// before it is dropped.
pub fn zeroize_strings(value: &mut Value) {
    use zeroize::Zeroize;
    match value {
        Value::String(s) => s.zeroize(),
        Value::Array(items) => items.iter_mut().for_each(zeroize_strings),
        Value::Object(map) => map.values_mut().for_each(zeroize_strings),
        _ => {}
    }
}

/// Replaces the card placeholders of `body`. A placeholder must be a whole
/// string value (`"{{ card.pan }}"`, not `"x{{ card.pan }}"`): glued to
/// other text, a card number could come back in an echoed field in a form
/// no mask recognises. An unknown placeholder, one inside other text, or
/// `{{ card.cvv }}` without a CVV is an error (the processor must never
/// receive a literal placeholder).
pub fn substitute(body: &mut Value, card: &RelayCard) -> Result<(), String> {
    match body {
        Value::String(s) if s.contains("{{") || s.contains("}}") => {
            let whole = s.trim();
            let is_whole = whole.starts_with("{{")
                && whole.ends_with("}}")
                && whole.matches("{{").count() == 1;
            if !is_whole {
                return Err("a placeholder must be a whole value, e.g. \"{{ card.pan }}\"".into());
            }
            *s = fill(whole, card)?;
            Ok(())
        }
        Value::Array(items) => items.iter_mut().try_for_each(|v| substitute(v, card)),
        Value::Object(map) => map.values_mut().try_for_each(|v| substitute(v, card)),
        _ => Ok(()),
    }
}

fn fill(text: &str, card: &RelayCard) -> Result<String, String> {
    let mut out = String::with_capacity(text.len() + 16);
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        out.push_str(rest.get(..start).unwrap_or_default());
        let after = rest.get(start + 2..).unwrap_or_default();
        let Some(end) = after.find("}}") else {
            return Err("a '{{' without its '}}'".into());
        };
        let name = after.get(..end).unwrap_or_default().trim();
        let value: String = match name {
            "card.pan" => card.pan.to_string(),
            "card.cvv" => card
                .cvv
                .as_ref()
                .map(|c| c.to_string())
                .ok_or("{{ card.cvv }} needs a cvv_token")?,
            "card.expiry" => format!("{:02}/{:02}", card.expiry_month, card.expiry_year % 100),
            "card.expiry_month" => format!("{:02}", card.expiry_month),
            "card.expiry_year" => card.expiry_year.to_string(),
            "card.holder" => card.holder.clone().unwrap_or_default(),
            other => return Err(format!("unknown placeholder '{{{{ {other} }}}}'")),
        };
        out.push_str(&value);
        rest = after.get(end + 2..).unwrap_or_default();
    }
    out.push_str(rest);
    Ok(out)
}

/// Text as the caller may see it: the card (number in any grouping, CVV,
/// holder, expiry) replaced and any other card number masked; see
/// [`crate::relay_mask`], which decodes an answer before scrubbing it.
pub fn redact(text: &str, card: &RelayCard) -> String {
    crate::relay_mask::scrub_text(text, card)
}

/// `text` with every maximal run of ASCII digits passed through `map`.
fn map_digit_runs(text: &str, map: impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut run = String::new();
    let flush = |run: &mut String, out: &mut String| {
        match map(run) {
            Some(replaced) => out.push_str(&replaced),
            None => out.push_str(run),
        }
        run.clear();
    };
    for c in text.chars() {
        if c.is_ascii_digit() {
            run.push(c);
        } else {
            flush(&mut run, &mut out);
            out.push(c);
        }
    }
    flush(&mut run, &mut out);
    out
}

/// `text` with every run of digits equal to `digits` replaced.
pub(crate) fn replace_digit_run(text: &str, digits: &str, with: &str) -> String {
    map_digit_runs(text, |run| (run == digits).then(|| with.to_owned()))
}

/// `text` with every run of 12 to 19 digits that passes Luhn — a card
/// number — masked to BIN and last four, and every longer run that holds
/// one masked whole.
pub fn mask_pans(text: &str) -> String {
    map_digit_runs(text, |run| {
        if (12..=19).contains(&run.len()) && strongroom_cards::pan::luhn_valid(run) {
            Some(strongroom_cards::pan::mask(run))
        } else if run.len() > 19 && holds_card_number(run) {
            Some("*".repeat(run.len()))
        } else {
            None
        }
    })
}

/// Whether some 12 to 19 digits of `run` pass Luhn (a card number glued
/// to other digits).
fn holds_card_number(run: &str) -> bool {
    (12..=19).any(|len| {
        (0..=run.len().saturating_sub(len)).any(|start| {
            run.get(start..start + len)
                .is_some_and(strongroom_cards::pan::luhn_valid)
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn card(cvv: Option<&str>) -> RelayCard {
        RelayCard {
            tenant: "acme".into(),
            pan: Zeroizing::new("4111111111111111".into()),
            expiry_month: 3,
            expiry_year: 2030,
            holder: Some("Ada".into()),
            cvv: cvv.map(|c| Zeroizing::new(c.to_owned())),
        }
    }

    #[test]
    fn a_filled_in_body_is_zeroed_string_by_string() {
        let mut body = serde_json::json!({"source": {"number": "4111111111111111", "cvc": "123"},
                                          "list": ["4111111111111111"], "amount": 1999});
        zeroize_strings(&mut body);
        assert_eq!(
            body,
            serde_json::json!({"source": {"number": "", "cvc": ""}, "list": [""], "amount": 1999})
        );
    }

    #[test]
    fn placeholders_become_the_card_and_unknown_ones_are_refused() {
        let mut body = json!({"source": {"number": "{{ card.pan }}", "cvc": "{{card.cvv}}",
            "exp": "{{ card.expiry }}", "name": "{{ card.holder }}"}, "amount": 1000,
            "items": ["{{ card.expiry_month }}", "{{ card.expiry_year }}"]});
        substitute(&mut body, &card(Some("123"))).unwrap();
        assert_eq!(body["source"]["number"], "4111111111111111");
        assert_eq!(body["source"]["cvc"], "123");
        assert_eq!(body["source"]["exp"], "03/30");
        assert_eq!(
            (&body["items"][0], &body["items"][1]),
            (&json!("03"), &json!("2030"))
        );
        assert_eq!(body["amount"], 1000);
        let mut no_cvv = json!({"cvc": "{{ card.cvv }}"});
        assert!(substitute(&mut no_cvv, &card(None)).is_err());
        let mut unknown = json!({"x": "{{ card.secret_key }}"});
        assert!(substitute(&mut unknown, &card(None)).is_err());
        let mut open = json!({"x": "{{ card.pan"});
        assert!(substitute(&mut open, &card(None)).is_err());
    }

    #[test]
    fn placeholders_glued_to_text_are_refused() {
        for glued in [
            "1{{ card.pan }}",
            "{{ card.pan }}0000",
            "x {{ card.cvv }}",
            "{{ card.pan }}{{ card.cvv }}",
        ] {
            let mut body = json!({"description": glued});
            assert!(
                substitute(&mut body, &card(Some("123"))).is_err(),
                "{glued}"
            );
        }
        let mut spaced = json!({"n": "  {{ card.pan }} "});
        substitute(&mut spaced, &card(None)).unwrap();
        assert_eq!(spaced["n"], "4111111111111111");
    }

    #[test]
    fn the_card_and_its_cvv_never_come_back_in_any_form() {
        let c = card(Some("737"));
        let answer = r#"{"a":"4111111111111111","b":"4111 1111 1111 1111","c":"4111-1111-1111-1111",
            "d":"ref14111111111111111","cvc":"737","amount":7370}"#;
        let shown = redact(answer, &c);
        for leak in [
            "4111111111111111",
            "4111 1111 1111 1111",
            "4111-1111-1111-1111",
            "\"737\"",
        ] {
            assert!(!shown.contains(leak), "{leak} in {shown}");
        }
        assert!(shown.contains("7370"), "other numbers stay: {shown}");
    }

    #[test]
    fn card_numbers_in_answers_are_masked_other_numbers_are_not() {
        let text = r#"{"card":"4111111111111111","id":"ch_123456789012","amount":123456789012345}"#;
        let masked = mask_pans(text);
        assert!(masked.contains("411111******1111"), "{masked}");
        assert!(!masked.contains("4111111111111111"));
        assert!(masked.contains("ch_123456789012"), "not Luhn-valid: kept");
    }

    #[test]
    fn inside_addresses_are_private() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:10.0.0.1",
        ] {
            assert!(is_private(ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "8.8.8.8",
            "2606:4700::1111",
            "100.128.0.1",
            "64:ff9b::808:808",
            "2002:808:808::1",
        ] {
            assert!(!is_private(ip.parse().unwrap()), "{ip}");
        }
    }
}
