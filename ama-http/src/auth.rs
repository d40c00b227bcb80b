//! Who is calling: the bearer token or the session cookie, turned into an
//! [`ama_core::Principal`] by the engine's one call,
//! `Archive::authenticate`, then rate-limited per principal.
//!
//! Two ways to carry a session, for two kinds of client:
//! * API clients send `Authorization: Bearer <token>` (a session token from
//!   `POST /v1/login`, or an ingest API key). A browser never attaches that
//!   header by itself, so these requests cannot be forged cross-site.
//! * The search page logs in with `"session": "cookie"`: the token goes into
//!   an `HttpOnly`, `SameSite=Strict` cookie (`Secure` over TLS) that the
//!   page's script cannot read. Every state-changing request on a cookie
//!   session must also carry `X-CSRF-Token`, a value derived from the
//!   session token that only a same-origin script can obtain (from the
//!   login answer or `GET /v1/session`).

use std::net::SocketAddr;

use ama_core::{AccessContext, Frontend, Principal};
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, header};
use sha2::{Digest, Sha256};

use crate::problem::{Kind, Problem};
use crate::server::Peer;
use crate::{AppState, blocking};

/// The session cookie's name over TLS (`__Host-`: Secure, host-only, path /).
pub(crate) const COOKIE_TLS: &str = "__Host-ama_session";
/// The session cookie's name on a plain loopback listener.
pub(crate) const COOKIE_PLAIN: &str = "ama_session";
/// The CSRF header of cookie sessions.
pub(crate) const CSRF_HEADER: &str = "x-csrf-token";

/// How the token arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Via {
    /// `Authorization: Bearer`.
    Bearer,
    /// The session cookie.
    Cookie,
}

/// An authenticated request.
pub(crate) struct Authed {
    pub(crate) principal: Principal,
    pub(crate) via: Via,
    pub(crate) token: String,
}

impl Authed {
    /// The CSRF token of this session, for cookie sessions.
    pub(crate) fn csrf(&self) -> Option<String> {
        (self.via == Via::Cookie).then(|| csrf_token(&self.token))
    }
}

/// The CSRF token of a session token: a one-way derivation, so knowing it
/// does not give the session, and only whoever holds the session (or a
/// same-origin script the server handed it to) can produce it.
pub(crate) fn csrf_token(session_token: &str) -> String {
    let d = Sha256::new()
        .chain_update(b"ama/csrf/v1\0")
        .chain_update(session_token.as_bytes())
        .finalize();
    hex(&d[..20])
}

pub(crate) fn hex(b: &[u8]) -> String {
    const H: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(b.len() * 2);
    for x in b {
        s.push(H[(x >> 4) as usize] as char);
        s.push(H[(x & 15) as usize] as char);
    }
    s
}

/// Constant-time comparison of two strings.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// The cookie name for this server.
pub(crate) fn cookie_name(tls: bool) -> &'static str {
    if tls { COOKIE_TLS } else { COOKIE_PLAIN }
}

/// `Set-Cookie` for a new session.
pub(crate) fn set_cookie(tls: bool, token: &str, max_age_secs: i64) -> HeaderValue {
    let secure = if tls { "; Secure" } else { "" };
    let v = format!(
        "{}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
        cookie_name(tls),
        max_age_secs.max(0)
    );
    HeaderValue::from_str(&v).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// `Set-Cookie` that removes the session cookie.
pub(crate) fn clear_cookie(tls: bool) -> HeaderValue {
    set_cookie(tls, "", 0)
}

/// The token in the request, and how it came.
fn token(headers: &HeaderMap, tls: bool) -> Option<(String, Via)> {
    if let Some(v) = headers.get(header::AUTHORIZATION) {
        let v = v.to_str().ok()?;
        let (scheme, rest) = v.split_once(' ')?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return None;
        }
        let t = rest.trim();
        return (!t.is_empty()).then(|| (t.to_string(), Via::Bearer));
    }
    let name = cookie_name(tls);
    for v in headers.get_all(header::COOKIE) {
        let Ok(v) = v.to_str() else { continue };
        for pair in v.split(';') {
            if let Some((k, val)) = pair.trim().split_once('=')
                && k == name
                && !val.is_empty()
            {
                return Some((val.to_string(), Via::Cookie));
            }
        }
    }
    None
}

/// The access context of a request (HTTP, with the peer's address).
pub(crate) fn context(parts: &Parts) -> AccessContext {
    let ctx = AccessContext::new(Frontend::Http);
    match parts.extensions.get::<Peer>() {
        Some(Peer(addr)) => ctx.with_source(addr.ip().to_string()),
        None => ctx,
    }
}

/// The peer's address, if known.
pub(crate) fn peer(parts: &Parts) -> Option<SocketAddr> {
    parts.extensions.get::<Peer>().map(|p| p.0)
}

impl FromRequestParts<AppState> for Authed {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, st: &AppState) -> Result<Self, Problem> {
        let (token, via) = token(&parts.headers, st.tls).ok_or_else(Problem::unauthenticated)?;
        if via == Via::Cookie
            && !matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS)
        {
            let sent = parts
                .headers
                .get(CSRF_HEADER)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            if !same(sent, &csrf_token(&token)) {
                return Err(Problem::new(
                    Kind::CsrfRejected,
                    "a cookie session must send its CSRF token in X-CSRF-Token with this request",
                ));
            }
        }
        let ctx = context(parts);
        let a = st.archive.clone();
        let t = token.clone();
        let principal = blocking(move || a.authenticate(&t, &ctx)).await?;
        let key = match principal.user() {
            Some(u) => format!("u/{}/{u}", principal.tenant()),
            None => format!("t/{}", hex(&Sha256::digest(token.as_bytes())[..12])),
        };
        if let Err(wait) = st.limiter.check(&key) {
            st.metrics.rate_limited();
            return Err(Problem::new(
                Kind::RateLimited,
                "too many requests for this principal; slow down",
            )
            .retry_after(wait.as_secs() + 1));
        }
        Ok(Authed {
            principal,
            via,
            token,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_from_bearer_or_cookie() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=b; ama_session=xyz"),
        );
        assert_eq!(token(&h, false), Some(("xyz".into(), Via::Cookie)));
        assert_eq!(token(&h, true), None, "the TLS cookie has another name");
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer  tok "),
        );
        assert_eq!(token(&h, false), Some(("tok".into(), Via::Bearer)));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert_eq!(token(&h, false), None);
    }

    #[test]
    fn csrf_is_derived_and_compared_in_full() {
        let c = csrf_token("amas_t_secret");
        assert_eq!(c.len(), 40);
        assert_ne!(c, csrf_token("amas_t_other"));
        assert!(same(&c, &c.clone()));
        assert!(!same(&c, &c[..39]));
        assert!(!same("", &c));
    }
}
