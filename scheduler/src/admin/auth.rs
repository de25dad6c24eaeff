//! Who may act: the router's [`Access`] mode, and the checks every action passes before it runs.
//!
//! Reading is open to whoever reaches the router. Actions (run now, pause, resume, reload) are
//! POST only and pass two checks:
//! 1. **Same origin.** A request that a browser marks as sent from another site (`Sec-Fetch-Site`
//!    other than `same-origin`/`none`, or without that header an `Origin` that is not this host)
//!    is refused, so a page elsewhere cannot make an operator's browser act, even on a trusted
//!    router.
//! 2. **Access.** Read-only (the default) refuses every action; with a bearer token, the request
//!    must carry `Authorization: Bearer <token>`; trusted accepts it.
//!
//! The dashboard keeps the token the operator types in `sessionStorage` and sends it in that
//! header. No cookie is involved, so a forged cross-site request has nothing to ride on.

use axum::http::{header, HeaderMap, StatusCode};

use super::error::ApiError;

/// Whether and how the router accepts actions.
#[derive(Clone)]
pub(super) enum Access {
    /// Actions are refused.
    ReadOnly,
    /// Actions need this bearer token.
    Token(Box<str>),
    /// Actions are accepted from the same origin without a token.
    Trusted,
}

impl Access {
    /// How the API reports the mode (`GET /api/access`).
    pub(super) fn name(&self) -> &'static str {
        match self {
            Access::ReadOnly => "read_only",
            Access::Token(_) => "token",
            Access::Trusted => "trusted",
        }
    }

    /// `Ok` when a request with these headers may act.
    pub(super) fn check(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        same_origin(headers)?;
        match self {
            Access::Trusted => Ok(()),
            Access::ReadOnly => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "read_only",
                "actions are disabled: this admin API is read-only (the application can enable \
                 them with AdminConfig::bearer_token)",
            )),
            Access::Token(expected) if expected.is_empty() => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "no_token_configured",
                "actions are disabled: the configured admin token is empty",
            )),
            Access::Token(expected) => {
                let given = headers
                    .get(header::AUTHORIZATION)
                    .and_then(|value| value.to_str().ok())
                    .and_then(|value| value.strip_prefix("Bearer "))
                    .map(str::trim);
                match given {
                    None | Some("") => Err(ApiError::new(
                        StatusCode::UNAUTHORIZED,
                        "token_required",
                        "this action needs the admin token (header `Authorization: Bearer <token>`)",
                    )),
                    Some(given) if same_bytes(given.as_bytes(), expected.as_bytes()) => Ok(()),
                    Some(_) => Err(ApiError::new(
                        StatusCode::UNAUTHORIZED,
                        "wrong_token",
                        "the admin token is wrong",
                    )),
                }
            }
        }
    }
}

/// Refuses what a browser says came from another site. `Sec-Fetch-Site`, which pages cannot set,
/// decides when present (so a proxy that rewrites `Host` does not matter); otherwise `Origin` must
/// name this host.
fn same_origin(headers: &HeaderMap) -> Result<(), ApiError> {
    let refuse = |why: String| {
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "cross_site",
            format!("cross-site request refused: {why}"),
        ))
    };
    let text = |name| {
        headers
            .get(name)
            .map(|v| v.to_str().unwrap_or("(not text)"))
    };
    if let Some(site) = text(header::HeaderName::from_static("sec-fetch-site")) {
        return match site {
            "same-origin" | "none" => Ok(()),
            _ => refuse(format!("Sec-Fetch-Site is '{site}'")),
        };
    }
    if let Some(origin) = text(header::ORIGIN) {
        let host = text(header::HOST).unwrap_or("");
        let authority = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"));
        if host.is_empty() || authority != Some(host) {
            return refuse(format!("Origin '{origin}' is not this host ('{host}')"));
        }
    }
    Ok(())
}

/// Compares in time that depends on the lengths only, not on where the bytes differ.
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn a_token_is_needed_and_must_match() {
        let access = Access::Token("s3cret".into());
        assert!(access
            .check(&headers(&[("authorization", "Bearer s3cret")]))
            .is_ok());
        for refused in [
            &[][..],
            &[("authorization", "Bearer s3cre")],
            &[("authorization", "Bearer ")],
            &[("authorization", "Basic s3cret")],
        ] {
            assert!(access.check(&headers(refused)).is_err(), "{refused:?}");
        }
        assert!(Access::Token("".into())
            .check(&headers(&[("authorization", "Bearer ")]))
            .is_err());
    }

    #[test]
    fn cross_site_requests_are_refused_even_when_trusted() {
        let trusted = Access::Trusted;
        assert!(trusted.check(&headers(&[])).is_ok());
        assert!(trusted
            .check(&headers(&[
                ("sec-fetch-site", "same-origin"),
                ("origin", "http://127.0.0.1:8080"),
                ("host", "127.0.0.1:8080"),
            ]))
            .is_ok());
        assert!(trusted
            .check(&headers(&[("sec-fetch-site", "cross-site")]))
            .is_err());
        assert!(trusted
            .check(&headers(&[
                ("origin", "http://evil.example"),
                ("host", "127.0.0.1:8080")
            ]))
            .is_err());
        assert!(trusted.check(&headers(&[("origin", "null")])).is_err());
        // Behind a proxy that rewrites Host, the browser's own word decides.
        assert!(trusted
            .check(&headers(&[
                ("sec-fetch-site", "same-origin"),
                ("origin", "https://ops.example.com"),
                ("host", "127.0.0.1:8080"),
            ]))
            .is_ok());
        assert!(trusted
            .check(&headers(&[("sec-fetch-site", "same-site")]))
            .is_err());
    }

    #[test]
    fn read_only_refuses_everything() {
        assert!(Access::ReadOnly
            .check(&headers(&[("authorization", "Bearer x")]))
            .is_err());
    }

    #[test]
    fn bytes_compare() {
        assert!(same_bytes(b"abc", b"abc"));
        assert!(!same_bytes(b"abc", b"abd"));
        assert!(!same_bytes(b"abc", b"ab"));
    }
}
