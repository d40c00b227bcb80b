//! `GET /v1/tenants/{tenant}/export`: a tenant, a query result or listed
//! messages as one mbox or zip file, streamed.
//!
//! This is the direct way: nothing touches the disk. (Export jobs, which
//! park the file for a later download, are in `jobs`, with the file
//! encrypted under a key held only in memory.) Here the engine runs on a blocking thread and writes into a
//! bounded channel whose other end is the response body, so memory stays
//! bounded and nothing touches the disk. Errors found before the first byte
//! (access, query, an unknown id) are ordinary problem responses; a failure
//! after the download started aborts the response (HTTP/2 stream reset, or
//! HTTP/1.1 chunked body without its end), so a client can never take a
//! truncated export for a complete one. The engine records the export as
//! one audit entry with the ids handed over and the outcome.

use std::io::{self, Write};
use std::pin::Pin;
use std::task::{Context, Poll};

use ama_core::MessageId;
use ama_core::export::{ExportFormat, Selection};
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tokio::sync::mpsc;
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::auth::Authed;
use crate::extract::{ApiPath, ApiQuery};
use crate::problem::{Kind, Problem, ProblemBody};

/// Bytes per chunk handed to the response.
const CHUNK: usize = 64 * 1024;
/// Chunks buffered between the engine and the client.
const QUEUE: usize = 8;
/// Most ids in one `ids` list.
const MAX_IDS: usize = 10_000;

/// Export file format.
#[derive(Debug, Default, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum FormatParam {
    /// One mboxrd file.
    #[default]
    Mbox,
    /// A zip of `.eml` files with manifest.csv and manifest.json.
    Zip,
}

/// What to export.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ExportParams {
    /// File format (default mbox).
    #[param(inline)]
    pub format: Option<FormatParam>,
    /// Export what this query finds (oldest first); without `q`, `ids` and `hold`,
    /// everything the caller may read.
    pub q: Option<String>,
    /// Export exactly these archive ids, comma-separated (at most 10,000).
    pub ids: Option<String>,
    /// Export what the legal hold of this name covers now (auditors).
    pub hold: Option<String>,
}

impl ExportParams {
    /// What to export: at most one of `q`, `ids` and `hold`; none is everything.
    pub(crate) fn selection(&self) -> Result<Selection, Problem> {
        match (&self.q, &self.ids, &self.hold) {
            (None, None, None) => Ok(Selection::All),
            (Some(q), None, None) => Ok(Selection::Query(q.clone())),
            (None, None, Some(h)) => {
                if h.trim().is_empty() {
                    Err(Problem::new(
                        Kind::BadRequest,
                        "hold must name a legal hold",
                    ))
                } else {
                    Ok(Selection::Hold(h.clone()))
                }
            }
            (None, Some(ids), None) => {
                let ids: Vec<MessageId> = ids
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(|s| {
                        s.parse().map_err(|_| {
                            Problem::new(Kind::BadRequest, "ids holds a malformed archive id")
                        })
                    })
                    .collect::<Result<_, _>>()?;
                if ids.is_empty() || ids.len() > MAX_IDS {
                    return Err(Problem::new(
                        Kind::BadRequest,
                        format!("ids must list 1 to {MAX_IDS} archive ids"),
                    ));
                }
                Ok(Selection::Ids(ids))
            }
            _ => Err(Problem::new(
                Kind::BadRequest,
                "give at most one of q, ids and hold",
            )),
        }
    }

    /// The engine's format, the media type and the file extension.
    pub(crate) fn format(&self) -> (ExportFormat, &'static str, &'static str) {
        match self.format.unwrap_or_default() {
            FormatParam::Mbox => (ExportFormat::Mbox, "application/mbox", "mbox"),
            FormatParam::Zip => (ExportFormat::Zip, "application/zip", "zip"),
        }
    }
}

/// Writes into the channel in chunks, blocking when the client is slow.
struct ChannelWriter {
    tx: mpsc::Sender<Result<Bytes, io::Error>>,
    buf: Vec<u8>,
}

impl ChannelWriter {
    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the client went away"))
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send()
    }
}

/// The response body: the first chunk, then chunks from the channel; an
/// error aborts the response.
pub(crate) struct ChannelBody {
    pub(crate) first: Option<Result<Bytes, io::Error>>,
    pub(crate) rx: mpsc::Receiver<Result<Bytes, io::Error>>,
}

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, io::Error>>> {
        if let Some(c) = self.first.take() {
            return Poll::Ready(Some(c.map(http_body::Frame::data)));
        }
        self.rx
            .poll_recv(cx)
            .map(|o| o.map(|r| r.map(http_body::Frame::data)))
    }
}

/// Download an export (mbox or zip) of the tenant, a query or listed messages.
#[utoipa::path(get, path = "/v1/tenants/{tenant}/export", tag = "mail",
    params(("tenant" = String, Path, description = "Tenant id"), ExportParams),
    responses(
        (status = 200, description = "The export, streamed; an aborted transfer is an incomplete export",
         content((Vec<u8> = "application/mbox"), (Vec<u8> = "application/zip"))),
        (status = 400, description = "Invalid query, ids, hold name or parameters", body = ProblemBody, content_type = "application/problem+json"),
        (status = 401, description = "Not authenticated", body = ProblemBody, content_type = "application/problem+json"),
        (status = 403, description = "Role may not read mail (or, for hold, is not an auditor)", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "Not the caller's tenant, or a listed id does not exist for the caller", body = ProblemBody, content_type = "application/problem+json"),
        (status = 429, description = "Rate limited", body = ProblemBody, content_type = "application/problem+json"),
    ),
    security(("bearer" = []), ("cookie" = [])))]
pub(crate) async fn export(
    State(st): State<AppState>,
    a: Authed,
    ApiPath(tenant): ApiPath<String>,
    ApiQuery(p): ApiQuery<ExportParams>,
) -> Result<Response, Problem> {
    if a.principal.tenant().as_str() != tenant {
        return Err(Problem::not_found());
    }
    let selection = p.selection()?;
    let (format, mime, ext) = p.format();
    let destination = match a.principal.context().source.as_deref() {
        Some(s) => format!("HTTP download by {s}"),
        None => "HTTP download".into(),
    };
    let (tx, mut rx) = mpsc::channel::<Result<Bytes, io::Error>>(QUEUE);
    let archive = st.archive.clone();
    let who = a.principal;
    let errors = tx.clone();
    let mut job = tokio::task::spawn_blocking(move || {
        let mut w = ChannelWriter {
            tx,
            buf: Vec::with_capacity(CHUNK),
        };
        let r = archive.export(&who, &selection, format, &destination, &mut w);
        match r {
            Ok(_) => w.flush().map_err(|e| ama_core::Error::Io {
                path: "HTTP download".into(),
                source: e,
            }),
            Err(e) => Err(e),
        }
    });
    // Wait for the first chunk or the end: errors before any byte are problems.
    let mut finished = None;
    let first = tokio::select! {
        chunk = rx.recv() => chunk,
        done = &mut job => {
            finished = Some(done);
            rx.try_recv().ok()
        }
    };
    match finished {
        Some(Ok(Ok(()))) => drop(errors), // everything is queued
        Some(Ok(Err(e))) => {
            if first.is_none() {
                return Err(Problem::from(e));
            }
            eprintln!("ama-http: export aborted: {e}");
            tokio::spawn(async move {
                let _ = errors.send(Err(io::Error::other("export failed"))).await;
            });
        }
        Some(Err(e)) => return Err(Problem::internal(&e)),
        None => {
            // After the first chunk, a failure of the export aborts the body.
            tokio::spawn(async move {
                if let Ok(Err(e)) = job.await {
                    eprintln!("ama-http: export aborted: {e}");
                    let _ = errors.send(Err(io::Error::other("export failed"))).await;
                }
            });
        }
    }
    let mut r = Body::new(ChannelBody { first, rx }).into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(mime));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{tenant}-export.{ext}\""))
    {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(r)
}
