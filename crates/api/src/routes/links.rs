//! `GET /v/{link}`: the small page a customer opens to see their code.
//!
//! The link is the only credential, so the page is careful with it and
//! with the code: never cached (`no-store`), no referrer sent anywhere
//! (`Referrer-Policy: no-referrer`, and the page loads nothing and links
//! nowhere), no scripts or framing allowed (CSP), not indexed. A `HEAD`
//! request (link previews, scanners) reveals nothing and uses no view.
//! Expired, used-up and unknown links each get a page that says so plainly.

use axum::extract::{Path, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use strongroom_vault::rfc3339;
use strongroom_vouchers::{LinkPage, LinkRefusal, Orders};

use crate::ApiState;
use crate::context::Ctx;

/// Every page's security headers.
const PAGE_HEADERS: [(&str, &str); 7] = [
    ("cache-control", "no-store, max-age=0"),
    ("pragma", "no-cache"),
    ("referrer-policy", "no-referrer"),
    (
        "content-security-policy",
        "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    ),
    ("x-frame-options", "DENY"),
    ("x-content-type-options", "nosniff"),
    ("x-robots-tag", "noindex, nofollow"),
];

/// Text made safe to place in HTML.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta name=\"referrer\" content=\"no-referrer\">\
         <title>{title}</title><style>\
         body{{font-family:system-ui,sans-serif;max-width:34em;margin:3em auto;padding:0 1em;color:#222}}\
         .code{{font-family:ui-monospace,monospace;font-size:1.6em;letter-spacing:.05em;\
         padding:.6em;border:1px solid #999;border-radius:.3em;word-break:break-all;user-select:all}}\
         .note{{color:#555;font-size:.9em}}</style></head>\
         <body><h1>{title}</h1>{body}</body></html>\n"
    );
    let mut response = (status, html).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    for (name, value) in PAGE_HEADERS {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

fn shown(p: &LinkPage) -> Result<String, StatusCode> {
    let text = |b: &strongroom_vault::SecretBytes| {
        std::str::from_utf8(b.expose())
            .map(escape)
            .map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)
    };
    let pin = match &p.pin {
        Some(pin) => format!("<p>PIN</p><p class=\"code\" id=\"pin\">{}</p>", text(pin)?),
        None => String::new(),
    };
    Ok(format!(
        "<p>{} &middot; {}</p><p>Your code</p><p class=\"code\" id=\"code\">{}</p>{pin}\
         <p class=\"note\">Keep it safe: anyone who has the code can spend it. \
         This link can be opened {} more time(s) and works until {}.</p>",
        escape(&p.sku),
        escape(&strongroom_vouchers::money::display(
            p.face_value,
            &p.currency
        )),
        text(&p.code)?,
        p.views_left,
        rfc3339(p.expires_at),
    ))
}

/// `GET /v/{link}`: shows the code of the order the link was made for.
#[utoipa::path(
    get,
    path = "/v/{link}",
    tag = "orders",
    params(("link" = String, Path, description = "The reveal link, as `POST /v1/orders` returned it")),
    responses(
        (status = 200, description = "A page showing the code (each view counts; HEAD does not)", content_type = "text/html", body = String),
        (status = 404, description = "A page saying the link is not valid", content_type = "text/html", body = String),
        (status = 410, description = "A page saying the link has expired, been used up or been replaced by a newer one", content_type = "text/html", body = String),
        (status = 503, description = "A page asking to try again later (the vault is sealed or unavailable)", content_type = "text/html", body = String)
    )
)]
pub async fn open(
    State(state): State<ApiState>,
    Ctx(ctx): Ctx,
    method: Method,
    Path(link): Path<String>,
) -> Response {
    if method == Method::HEAD {
        return page(StatusCode::OK, "Your voucher", "");
    }
    let orders = Orders::new(state.vault.clone(), state.config.orders.clone());
    let refused = |status, title, text: &str| page(status, title, &format!("<p>{text}</p>"));
    match orders
        .open_link(&ctx, &link, |placer| state.freezes.is_frozen(placer))
        .await
    {
        Ok(p) => match shown(&p) {
            Ok(body) => page(StatusCode::OK, "Your voucher", &body),
            Err(status) => refused(status, "Something went wrong", "Please try again later."),
        },
        Err(LinkRefusal::Invalid) => refused(
            StatusCode::NOT_FOUND,
            "This link is not valid",
            "Check that you copied the whole link, or ask the shop for a new one.",
        ),
        Err(LinkRefusal::Expired) => refused(
            StatusCode::GONE,
            "This link has expired",
            "The code can no longer be shown here. Please contact the shop's customer support.",
        ),
        Err(LinkRefusal::UsedUp) => refused(
            StatusCode::GONE,
            "This link has been used up",
            "It has been opened as many times as allowed. Please contact the shop's customer support.",
        ),
        Err(LinkRefusal::Replaced) => refused(
            StatusCode::GONE,
            "This link has been replaced",
            "A newer link was sent for this voucher; please use that one.",
        ),
        // The customer is not told why: the shop's credential is frozen
        // while a security officer looks into an alert.
        Err(LinkRefusal::Unavailable | LinkRefusal::Held) => refused(
            StatusCode::SERVICE_UNAVAILABLE,
            "Please try again later",
            "The voucher service is not available at the moment.",
        ),
    }
}
