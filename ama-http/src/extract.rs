//! Extractors whose refusals are problem details: JSON bodies, query
//! strings and path segments. axum's own rejections answer in plain text;
//! these answer like every other error of the API.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use serde::de::DeserializeOwned;

use crate::problem::{Kind, Problem};

/// A JSON request body (`Content-Type: application/json`).
pub(crate) struct ApiJson<T>(pub(crate) T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Problem> {
        let json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|m| {
                let m = m.trim().to_ascii_lowercase();
                m == "application/json" || (m.starts_with("application/") && m.ends_with("+json"))
            });
        if !json {
            return Err(Problem::new(
                Kind::UnsupportedMediaType,
                "send the body as application/json",
            ));
        }
        let bytes = body(req, state).await?;
        let value: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|e| Problem::new(Kind::BadRequest, format!("invalid JSON body: {e}")))?;
        // serde would also fill a struct from an array of its fields in
        // order; the API only takes objects.
        if !value.is_object() {
            return Err(Problem::new(
                Kind::BadRequest,
                "invalid JSON body: expected an object",
            ));
        }
        serde_json::from_value(value)
            .map(ApiJson)
            .map_err(|e| Problem::new(Kind::BadRequest, format!("invalid JSON body: {e}")))
    }
}

/// The whole request body, within the route's body limit.
pub(crate) async fn body<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, Problem> {
    Bytes::from_request(req, state).await.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Problem::new(Kind::PayloadTooLarge, "the request body is over the limit")
        } else {
            Problem::new(Kind::BadRequest, "the request body could not be read")
        }
    })
}

/// A query string.
pub(crate) struct ApiQuery<T>(pub(crate) T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Problem> {
        let q = parts.uri.query().unwrap_or("");
        serde_urlencoded::from_str(q)
            .map(ApiQuery)
            .map_err(|e| Problem::new(Kind::BadRequest, format!("invalid query parameters: {e}")))
    }
}

/// Path parameters; a segment that does not fit is "not found".
pub(crate) struct ApiPath<T>(pub(crate) T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Problem> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| ApiPath(p.0))
            .map_err(|_| Problem::not_found())
    }
}
