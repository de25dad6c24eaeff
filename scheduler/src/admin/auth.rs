//! Who may act: the router's [`Access`] mode, and the checks every action passes before it runs.
//!
//! Reading is open to whoever reaches the router. Actions (run now, pause, resume, reload) are
//! POST only and pass two checks:
//! 1. **Same origin.** A request that a browser marks as sent from another site (`Sec-Fetch-Site`
//!    other than `same-origin`/`none`, or without that header an `Origin` that is not this host)
//!    is refused, so a page elsewhere cannot make an operator's browser act, even on a trusted
//!    router.
//! 2. **Access.** Read-only (the default) refuses every action; with a bearer token, the request
//!    must carry `Authorization: Bearer <token>` (the scheme name in any case, as RFC 7235 says);
//!    trusted accepts it.
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
            Access::Token(expected) => match bearer(headers) {
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
            },
        }
    }
}

/// What a request's `Authorization` header says about the token, without acting on anything:
/// `/api/access` answers it so the page can tell a refused token at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TokenCheck {
    /// The router takes no token (read-only or trusted), so none is checked.
    NotUsed,
    /// The request carries none.
    Missing,
    /// The request carries the configured token.
    Accepted,
    /// The request carries another token (or the configured one is empty).
    Refused,
}

impl TokenCheck {
    /// How the API spells it.
    pub(super) fn name(self) -> &'static str {
        match self {
            TokenCheck::NotUsed => "not_used",
            TokenCheck::Missing => "missing",
            TokenCheck::Accepted => "accepted",
            TokenCheck::Refused => "refused",
        }
    }
}

impl Access {
    /// Checks the token a request carries, as [`check`](Self::check) would for an action.
    pub(super) fn check_token(&self, headers: &HeaderMap) -> TokenCheck {
        let Access::Token(expected) = self else {
            return TokenCheck::NotUsed;
        };
        match bearer(headers) {
            None | Some("") => TokenCheck::Missing,
            Some(given)
                if !expected.is_empty() && same_bytes(given.as_bytes(), expected.as_bytes()) =>
            {
                TokenCheck::Accepted
            }
            Some(_) => TokenCheck::Refused,
        }
    }
}

/// The token of `Authorization: Bearer <token>`, trimmed; the scheme name is case-insensitive
/// (RFC 7235 section 2.1), so `bearer` and `BEARER` are read too. `None` without that header or
/// with another scheme.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim_start().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
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
    fn the_scheme_name_is_read_in_any_case() {
        let access = Access::Token("s3cret".into());
        for accepted in [
            "bearer s3cret",
            "BEARER s3cret",
            "BeArEr   s3cret ",
            "Bearer s3cret",
        ] {
            let mut map = HeaderMap::new();
            map.insert("authorization", HeaderValue::from_str(accepted).unwrap());
            assert!(access.check(&map).is_ok(), "{accepted}");
            assert_eq!(access.check_token(&map), TokenCheck::Accepted, "{accepted}");
        }
        for (refused, check) in [
            ("bearers3cret", TokenCheck::Missing),
            ("Bearerx s3cret", TokenCheck::Missing),
            ("bearer s3cre", TokenCheck::Refused),
        ] {
            let mut map = HeaderMap::new();
            map.insert("authorization", HeaderValue::from_str(refused).unwrap());
            assert!(access.check(&map).is_err(), "{refused}");
            assert_eq!(access.check_token(&map), check, "{refused}");
        }
        assert_eq!(access.check_token(&HeaderMap::new()), TokenCheck::Missing);
        assert_eq!(
            Access::Trusted.check_token(&headers(&[("authorization", "Bearer x")])),
            TokenCheck::NotUsed
        );
        assert_eq!(
            Access::Token("".into()).check_token(&headers(&[("authorization", "Bearer x")])),
            TokenCheck::Refused
        );
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
