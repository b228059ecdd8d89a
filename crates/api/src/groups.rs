//! Route groups: `strongroom serve --only tokenize,relay` serves just those
//! routes, so a small deployed function (a payment gateway's tokenize or
//! relay step) exposes the least surface. Health, seal status, the OpenAPI
//! document and getting an access token are always served: a function must
//! be probed and must authenticate.

use axum::extract::{MatchedPath, Request};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// A group of routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RouteGroup {
    /// Storing secrets and cards.
    Tokenize,
    /// Revealing secrets and cards.
    Reveal,
    /// The detokenizing relay.
    Relay,
    /// Risk scoring of card payments.
    Risk,
    /// Reading, deleting and re-opening secrets.
    Secrets,
    /// People's logins, step-up and enrolment.
    People,
    /// Principals, roles, keys, seal and unseal, bootstrap.
    Admin,
    /// The audit log and alerts.
    Audit,
    /// Catalogue, imports, stock, orders and reveal links.
    Vouchers,
}

impl RouteGroup {
    /// Every group, by name.
    pub const ALL: [(&'static str, RouteGroup); 9] = [
        ("tokenize", RouteGroup::Tokenize),
        ("reveal", RouteGroup::Reveal),
        ("relay", RouteGroup::Relay),
        ("risk", RouteGroup::Risk),
        ("secrets", RouteGroup::Secrets),
        ("people", RouteGroup::People),
        ("admin", RouteGroup::Admin),
        ("audit", RouteGroup::Audit),
        ("vouchers", RouteGroup::Vouchers),
    ];

    /// Parses a group name.
    pub fn parse(name: &str) -> Result<Self, String> {
        Self::ALL
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, g)| *g)
            .ok_or_else(|| {
                let names: Vec<&str> = Self::ALL.iter().map(|(n, _)| *n).collect();
                format!(
                    "unknown route group '{name}'; groups are: {}",
                    names.join(", ")
                )
            })
    }

    /// The group of a route (`None`: always served).
    pub fn of(_method: &Method, route: &str) -> Option<Self> {
        use RouteGroup::*;
        let always = [
            "/v1/sys/health",
            "/v1/sys/seal-status",
            "/v1/openapi.json",
            "/v1/auth/token",
            "/v1/auth/whoami",
        ];
        if always.contains(&route) {
            return None;
        }
        Some(match route {
            "/v1/secrets" | "/v1/secrets/batch" | "/v1/cards" => Tokenize,
            "/v1/secrets/{token}/reveal" | "/v1/cards/{token}/reveal" => Reveal,
            r if r.starts_with("/v1/relay/") => Relay,
            "/v1/risk/score" => Risk,
            r if r.starts_with("/v1/secrets/") => Secrets,
            r if r.starts_with("/v1/auth/") => People,
            r if r.starts_with("/v1/audit") || r.starts_with("/v1/alerts") => Audit,
            r if r.starts_with("/v1/principals")
                || r.starts_with("/v1/roles")
                || r.starts_with("/v1/keys")
                || r.starts_with("/v1/sys/") =>
            {
                Admin
            }
            _ => Vouchers,
        })
    }
}

/// Refuses, as if it did not exist, every route outside `groups`.
pub async fn only_groups(
    axum::extract::State(groups): axum::extract::State<std::sync::Arc<[RouteGroup]>>,
    req: Request,
    next: Next,
) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned());
    let served = match &route {
        Some(route) => RouteGroup::of(req.method(), route).is_none_or(|g| groups.contains(&g)),
        None => true,
    };
    if served {
        next.run(req).await
    } else {
        crate::ApiError::new(
            axum::http::StatusCode::NOT_FOUND,
            "request.no_route",
            "no such endpoint on this server (it serves only some route groups)",
        )
        .into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_has_its_group() {
        let post = Method::POST;
        assert_eq!(
            RouteGroup::of(&post, "/v1/cards"),
            Some(RouteGroup::Tokenize)
        );
        assert_eq!(
            RouteGroup::of(&post, "/v1/secrets/{token}/reveal"),
            Some(RouteGroup::Reveal)
        );
        assert_eq!(
            RouteGroup::of(&post, "/v1/relay/{route}/{*path}"),
            Some(RouteGroup::Relay)
        );
        assert_eq!(
            RouteGroup::of(&Method::GET, "/v1/secrets/{token}"),
            Some(RouteGroup::Secrets)
        );
        assert_eq!(
            RouteGroup::of(&post, "/v1/auth/login"),
            Some(RouteGroup::People)
        );
        assert_eq!(RouteGroup::of(&post, "/v1/auth/token"), None);
        assert_eq!(
            RouteGroup::of(&post, "/v1/risk/score"),
            Some(RouteGroup::Risk)
        );
        assert_eq!(
            RouteGroup::of(&Method::GET, "/v1/alerts"),
            Some(RouteGroup::Audit)
        );
        assert_eq!(
            RouteGroup::of(&post, "/v1/sys/seal"),
            Some(RouteGroup::Admin)
        );
        assert_eq!(
            RouteGroup::of(&post, "/v1/orders"),
            Some(RouteGroup::Vouchers)
        );
        assert!(RouteGroup::parse("tokenize").is_ok());
        assert!(
            RouteGroup::parse("everything")
                .unwrap_err()
                .contains("groups are")
        );
    }
}
