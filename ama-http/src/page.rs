//! The search page: one HTML document, one script and one style sheet,
//! compiled into the binary.
//!
//! Why so plain: no build step, nothing to install, and a Content Security
//! Policy that allows only these two files (`script-src 'self'`, no inline
//! code). The script renders every piece of mail data with `textContent`,
//! never as HTML, so a subject like `<img src=x onerror=…>` stays text.

use axum::http::header;
use axum::response::IntoResponse;

const INDEX: &str = include_str!("../assets/index.html");
const SCRIPT: &str = include_str!("../assets/app.js");
const STYLE: &str = include_str!("../assets/app.css");

pub(crate) async fn index() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], INDEX)
}

pub(crate) async fn script() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        SCRIPT,
    )
}

pub(crate) async fn style() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], STYLE)
}
