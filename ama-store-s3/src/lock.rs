//! S3 Object Lock: write-once (WORM) blobs whose lock follows the engine's
//! retain-until.
//!
//! Why it is here and not in `object_store`: `object_store` 0.14 cannot send
//! the object-lock headers or the `?retention` and `?versions` sub-resources.
//! Rather than a second S3 client, these few requests are built by hand,
//! signed with `object_store`'s own SigV4 signer ([`AwsAuthorizer`]) and sent
//! with the same `reqwest` it uses:
//!
//! * `PUT ?retention` (PutObjectRetention) locks the current version of a
//!   blob in the configured [`LockMode`] until a date. The engine calls it
//!   before the message is acknowledged and again whenever the message's
//!   retain-until grows. A lock is never shortened: S3 refuses that in
//!   compliance mode anyway, and a refusal for an earlier date than the one
//!   in force is answered as success (the blob is locked at least as long).
//! * `GET ?retention` (GetObjectRetention) says until when a blob is locked.
//! * A bucket with Object Lock is versioned: a plain DELETE only adds a
//!   delete marker and the locked data stays. So a delete lists the key's
//!   versions (`GET ?versions&prefix=`) and deletes each by version id; the
//!   store refuses while a lock holds, which is reported as
//!   [`StoreError::Locked`] with the lock's date (nothing is deleted then).
//! * `GET ?object-lock` on the bucket checks that the bucket was created
//!   with Object Lock (it cannot be turned on for an existing bucket).
//!
//! Every request is retried like `object_store`'s (transport errors, 5xx,
//! 429) with the store's [`Retry`] policy.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ama_core::StoreError;
use base64::Engine as _;
use bytes::Bytes;
use http::{Method, StatusCode};
use md5::Digest as _;
use object_store::aws::{AwsAuthorizer, AwsCredential};
use object_store::client::{HttpClient, HttpRequest, HttpRequestBody};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::Retry;

/// The S3 Object Lock retention mode of the blobs ama writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LockMode {
    /// Nobody, the bucket owner and the root account included, can delete a
    /// locked version or shorten its lock before the date (SEC 17a-4(f)).
    Compliance,
    /// Users with `s3:BypassGovernanceRetention` can remove the lock; ama
    /// never does. For trying out a configuration before compliance mode.
    Governance,
}

impl LockMode {
    /// The S3 name (`COMPLIANCE`, `GOVERNANCE`).
    pub fn as_s3(self) -> &'static str {
        match self {
            LockMode::Compliance => "COMPLIANCE",
            LockMode::Governance => "GOVERNANCE",
        }
    }
}

impl std::str::FromStr for LockMode {
    type Err = StoreError;
    fn from_str(s: &str) -> Result<Self, StoreError> {
        match s.to_ascii_lowercase().as_str() {
            "compliance" => Ok(LockMode::Compliance),
            "governance" => Ok(LockMode::Governance),
            _ => Err(StoreError::Config(format!(
                "object lock mode {s:?}: use compliance or governance"
            ))),
        }
    }
}

impl std::fmt::Display for LockMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LockMode::Compliance => "compliance",
            LockMode::Governance => "governance",
        })
    }
}

/// Signed raw requests to one bucket.
pub(crate) struct Raw {
    http: HttpClient,
    credential: AwsCredential,
    signing_region: String,
    /// `http://127.0.0.1:8333/bucket` (path style) or
    /// `https://bucket.s3.REGION.amazonaws.com`.
    base: String,
    retry: Retry,
    describe: String,
}

impl std::fmt::Debug for Raw {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Raw")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

/// An answer: status and body.
struct Answer {
    status: StatusCode,
    body: Bytes,
}

impl Answer {
    /// The S3 error code in an error body (`<Code>AccessDenied</Code>`).
    fn code(&self) -> String {
        xml_values(&self.body, "Code")
            .into_iter()
            .next()
            .unwrap_or_default()
    }

    fn describe(&self) -> String {
        let code = self.code();
        if code.is_empty() {
            format!("HTTP {}", self.status)
        } else {
            format!("HTTP {} {code}", self.status)
        }
    }
}

/// Parameters for [`Raw::new`].
pub(crate) struct RawConfig<'a> {
    pub endpoint: Option<&'a str>,
    pub bucket: &'a str,
    pub signing_region: &'a str,
    pub key_id: &'a str,
    pub secret: &'a str,
    pub token: Option<&'a str>,
    pub retry: Retry,
    pub request_timeout: Duration,
    pub connect_timeout: Duration,
    pub describe: String,
}

impl Raw {
    pub(crate) fn new(c: RawConfig<'_>) -> Result<Raw, StoreError> {
        let client = reqwest::Client::builder()
            .timeout(c.request_timeout)
            .connect_timeout(c.connect_timeout)
            .build()
            .map_err(|e| StoreError::Config(format!("HTTP client for object lock: {e}")))?;
        let base = match c.endpoint {
            Some(e) => format!("{}/{}", e.trim_end_matches('/'), c.bucket),
            None => format!("https://{}.s3.{}.amazonaws.com", c.bucket, c.signing_region),
        };
        Ok(Raw {
            http: HttpClient::new(client),
            credential: AwsCredential {
                key_id: c.key_id.to_string(),
                secret_key: c.secret.to_string(),
                token: c.token.map(str::to_string),
            },
            signing_region: c.signing_region.to_string(),
            base,
            retry: c.retry,
            describe: c.describe,
        })
    }

    fn backend(&self, key: &str, reason: impl Into<String>) -> StoreError {
        StoreError::Backend {
            store: self.describe.clone(),
            key: key.to_string(),
            reason: reason.into(),
        }
    }

    /// Sends one signed request, retrying transport errors, 5xx and 429.
    async fn send(
        &self,
        method: Method,
        url: &str,
        headers: &[(&'static str, String)],
        body: Bytes,
        what: &str,
    ) -> Result<Answer, StoreError> {
        let started = Instant::now();
        let mut backoff = self.retry.init_backoff;
        let mut attempt = 0;
        loop {
            let mut b = http::Request::builder().method(method.clone()).uri(url);
            for (k, v) in headers {
                b = b.header(*k, v);
            }
            let mut req: HttpRequest = b
                .body(HttpRequestBody::from(body.clone()))
                .map_err(|e| self.backend(what, format!("bad request: {e}")))?;
            AwsAuthorizer::new(&self.credential, "s3", &self.signing_region)
                .try_authorize(&mut req, None)
                .map_err(|e| self.backend(what, format!("signing: {e}")))?;
            let outcome = match self.http.execute(req).await {
                Ok(resp) => {
                    let status = resp.status();
                    match resp.into_body().bytes().await {
                        Ok(body) => Ok(Answer { status, body }),
                        Err(e) => Err(e.to_string()),
                    }
                }
                Err(e) => Err(e.to_string()),
            };
            let retry = match &outcome {
                Ok(a) => a.status.is_server_error() || a.status == StatusCode::TOO_MANY_REQUESTS,
                Err(_) => true,
            };
            if !retry
                || attempt >= self.retry.max_retries
                || started.elapsed() + backoff > self.retry.timeout
            {
                return match outcome {
                    Ok(a) if a.status == StatusCode::UNAUTHORIZED => Err(self.denied()),
                    Ok(a) => Ok(a),
                    Err(e) => Err(self.backend(what, e)),
                };
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(self.retry.max_backoff);
            attempt += 1;
        }
    }

    fn denied(&self) -> StoreError {
        StoreError::Denied {
            store: self.describe.clone(),
            reason: "the access key or secret was rejected, or the key may not use object lock \
                     on this bucket (HTTP 401/403)"
                .into(),
        }
    }

    fn url(&self, path: &str, query: &str) -> String {
        if path.is_empty() {
            format!("{}/?{query}", self.base)
        } else {
            format!("{}/{path}?{query}", self.base)
        }
    }

    /// Whether the bucket was created with Object Lock.
    pub(crate) async fn bucket_lock_enabled(&self) -> Result<bool, StoreError> {
        let a = self
            .send(
                Method::GET,
                &self.url("", "object-lock"),
                &[],
                Bytes::new(),
                "(bucket object lock)",
            )
            .await?;
        match a.status {
            s if s.is_success() => Ok(xml_values(&a.body, "ObjectLockEnabled")
                .iter()
                .any(|v| v == "Enabled")),
            StatusCode::NOT_FOUND if a.code() == "NoSuchBucket" => Err(StoreError::Config(
                format!("bucket of {} does not exist", self.describe),
            )),
            StatusCode::NOT_FOUND | StatusCode::BAD_REQUEST => Ok(false),
            StatusCode::FORBIDDEN => Err(self.denied()),
            _ => Err(self.backend("(bucket object lock)", a.describe())),
        }
    }

    /// Creates the bucket, with Object Lock (and so versioning) if `lock`.
    pub(crate) async fn create_bucket(&self, lock: bool) -> Result<(), StoreError> {
        let mut headers = Vec::new();
        if lock {
            headers.push(("x-amz-bucket-object-lock-enabled", "true".to_string()));
        }
        let url = self.base.clone();
        let a = self
            .send(Method::PUT, &url, &headers, Bytes::new(), "(create bucket)")
            .await?;
        if a.status.is_success() {
            Ok(())
        } else {
            Err(self.backend("(create bucket)", a.describe()))
        }
    }

    /// The lock date of `path` (a version, or the current one), if locked.
    pub(crate) async fn retention(
        &self,
        path: &str,
        version: Option<&str>,
    ) -> Result<Option<i64>, StoreError> {
        let query = match version {
            Some(v) => format!("retention&versionId={}", query_escape(v)),
            None => "retention".to_string(),
        };
        let a = self
            .send(
                Method::GET,
                &self.url(path, &query),
                &[],
                Bytes::new(),
                path,
            )
            .await?;
        match a.status {
            s if s.is_success() => {
                let Some(date) = xml_values(&a.body, "RetainUntilDate").into_iter().next() else {
                    return Ok(None);
                };
                OffsetDateTime::parse(&date, &Rfc3339)
                    .map(|t| Some(t.unix_timestamp()))
                    .map_err(|e| self.backend(path, format!("retain-until date {date:?}: {e}")))
            }
            // No such key, or no lock on it.
            StatusCode::NOT_FOUND => Ok(None),
            StatusCode::BAD_REQUEST if a.code() == "InvalidRequest" => Ok(None),
            StatusCode::FORBIDDEN => Err(self.denied()),
            _ => Err(self.backend(path, format!("reading the lock: {}", a.describe()))),
        }
    }

    /// Locks the current version of `path` until `until` (never shorter).
    pub(crate) async fn set_retention(
        &self,
        path: &str,
        mode: LockMode,
        until: i64,
    ) -> Result<(), StoreError> {
        let now = OffsetDateTime::now_utc().unix_timestamp();
        if until <= now {
            return Ok(()); // a date in the past locks nothing (and S3 refuses it)
        }
        let date = OffsetDateTime::from_unix_timestamp(until)
            .ok()
            .and_then(|t| t.format(&Rfc3339).ok())
            .ok_or_else(|| self.backend(path, format!("retain-until {until} is out of range")))?;
        let body = format!(
            "<Retention xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Mode>{}</Mode>\
             <RetainUntilDate>{date}</RetainUntilDate></Retention>",
            mode.as_s3()
        );
        let md5 =
            base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(body.as_bytes()));
        let headers = [
            ("content-md5", md5),
            ("content-type", "application/xml".to_string()),
        ];
        let a = self
            .send(
                Method::PUT,
                &self.url(path, "retention"),
                &headers,
                Bytes::from(body),
                path,
            )
            .await?;
        match a.status {
            s if s.is_success() => Ok(()),
            StatusCode::NOT_FOUND => Err(StoreError::NotFound {
                key: path.to_string(),
            }),
            // Refused: fine if the lock in force already lasts as long.
            StatusCode::FORBIDDEN => match self.retention(path, None).await? {
                Some(cur) if cur >= until => Ok(()),
                _ => Err(self.denied()),
            },
            StatusCode::BAD_REQUEST => Err(StoreError::Config(format!(
                "{} refused to lock {path} ({}): was the bucket created with Object Lock?",
                self.describe,
                a.describe()
            ))),
            _ => Err(self.backend(path, format!("locking: {}", a.describe()))),
        }
    }

    /// Deletes every version (and delete marker) of `path`. A version the
    /// store refuses to delete because it is locked stops the deletion with
    /// [`StoreError::Locked`].
    pub(crate) async fn delete_all_versions(&self, path: &str) -> Result<(), StoreError> {
        // Each round deletes what one listing shows (up to 1,000 versions);
        // a key has one version in the normal case.
        for _ in 0..100 {
            let query = format!("versions&prefix={}", query_escape(path));
            let a = self
                .send(Method::GET, &self.url("", &query), &[], Bytes::new(), path)
                .await?;
            if !a.status.is_success() {
                return Err(match a.status {
                    StatusCode::FORBIDDEN => self.denied(),
                    _ => self.backend(path, format!("listing versions: {}", a.describe())),
                });
            }
            let versions: Vec<String> = list_versions(&a.body)
                .into_iter()
                .filter(|(k, _)| k == path)
                .map(|(_, v)| v)
                .collect();
            if versions.is_empty() {
                return Ok(());
            }
            for v in &versions {
                let url = self.url(path, &format!("versionId={}", query_escape(v)));
                let a = self
                    .send(Method::DELETE, &url, &[], Bytes::new(), path)
                    .await?;
                match a.status {
                    s if s.is_success() || s == StatusCode::NOT_FOUND => {}
                    StatusCode::FORBIDDEN => {
                        let now = OffsetDateTime::now_utc().unix_timestamp();
                        return Err(match self.retention(path, Some(v)).await? {
                            Some(until) if until > now => StoreError::Locked {
                                store: self.describe.clone(),
                                key: path.to_string(),
                                until,
                            },
                            _ => self.denied(),
                        });
                    }
                    _ => {
                        return Err(
                            self.backend(path, format!("deleting version {v}: {}", a.describe()))
                        );
                    }
                }
            }
        }
        Err(self.backend(path, "versions keep appearing while deleting them"))
    }
}

/// Percent-encodes a query value (keys are `[A-Za-z0-9._/-]`; version ids
/// are opaque).
fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The text of every `<name>` element.
fn xml_values(xml: &[u8], name: &str) -> Vec<String> {
    let mut out = Vec::new();
    each_element(xml, |path, text| {
        if path.last().is_some_and(|n| n == name) {
            out.push(text.to_string());
        }
    });
    out
}

/// `(Key, VersionId)` of every `<Version>` and `<DeleteMarker>` in a
/// ListObjectVersions answer.
fn list_versions(xml: &[u8]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut cur: (Option<String>, Option<String>) = (None, None);
    let mut depth_entry = None;
    each_element_events(xml, |ev| match ev {
        Ev::Start(path) => {
            if path.len() == 2 && (path[1] == "Version" || path[1] == "DeleteMarker") {
                depth_entry = Some(2);
                cur = (None, None);
            }
        }
        Ev::Text(path, text) => {
            if depth_entry.is_some() && path.len() == 3 {
                match path[2].as_str() {
                    "Key" => cur.0 = Some(text.to_string()),
                    "VersionId" => cur.1 = Some(text.to_string()),
                    _ => {}
                }
            }
        }
        Ev::End(len) => {
            if len == 2
                && depth_entry.take().is_some()
                && let (Some(k), Some(v)) = cur.clone()
            {
                out.push((k, v));
            }
        }
    });
    out
}

enum Ev<'a> {
    Start(&'a [String]),
    Text(&'a [String], &'a str),
    End(usize),
}

fn each_element(xml: &[u8], mut f: impl FnMut(&[String], &str)) {
    each_element_events(xml, |ev| {
        if let Ev::Text(path, text) = ev {
            f(path, text)
        }
    });
}

/// Walks an XML document: element starts (with the path of local names),
/// text, and ends (with the depth before the end). Stops at the first
/// malformed byte (an S3 answer is trusted to be well formed; a broken one
/// yields what was read so far).
fn each_element_events(xml: &[u8], mut f: impl FnMut(Ev<'_>)) {
    use quick_xml::events::Event;
    let mut r = quick_xml::Reader::from_reader(xml);
    let mut buf = Vec::new();
    let mut path: Vec<String> = Vec::new();
    loop {
        match r.read_event_into(&mut buf) {
            Ok(Event::Start(e)) => {
                path.push(String::from_utf8_lossy(e.local_name().as_ref()).into_owned());
                f(Ev::Start(&path));
            }
            Ok(Event::Empty(e)) => {
                path.push(String::from_utf8_lossy(e.local_name().as_ref()).into_owned());
                f(Ev::Start(&path));
                f(Ev::End(path.len()));
                path.pop();
            }
            Ok(Event::Text(t)) => {
                if let Ok(text) = t.decode() {
                    let text = text.trim();
                    if !text.is_empty() {
                        f(Ev::Text(&path, text));
                    }
                }
            }
            Ok(Event::End(_)) => {
                f(Ev::End(path.len()));
                path.pop();
            }
            Ok(Event::Eof) | Err(_) => break,
            Ok(_) => {}
        }
        buf.clear();
    }
}

/// The object-lock side of an [`S3Store`](crate::S3Store).
#[derive(Debug)]
pub(crate) struct Lock {
    pub raw: Arc<Raw>,
    pub mode: LockMode,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_read_from_a_listing() {
        let xml = br#"<?xml version="1.0" encoding="UTF-8"?>
<ListVersionsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>locked</Name>
<Prefix>t/a/b</Prefix><IsTruncated>false</IsTruncated>
<DeleteMarker><Key>t/a/b</Key><VersionId>m1</VersionId><IsLatest>true</IsLatest></DeleteMarker>
<Version><Key>t/a/b</Key><VersionId>v1</VersionId><Size>1</Size><Owner><ID>x</ID></Owner></Version>
<Version><Key>t/a/bc</Key><VersionId>v2</VersionId></Version>
</ListVersionsResult>"#;
        assert_eq!(
            list_versions(xml),
            vec![
                ("t/a/b".to_string(), "m1".to_string()),
                ("t/a/b".to_string(), "v1".to_string()),
                ("t/a/bc".to_string(), "v2".to_string())
            ]
        );
        assert!(list_versions(b"<not xml").is_empty());
        let err = br#"<Error><Code>AccessDenied</Code><Message>Access Denied.</Message></Error>"#;
        assert_eq!(xml_values(err, "Code"), vec!["AccessDenied".to_string()]);
    }

    #[test]
    fn modes_parse() {
        assert_eq!(
            "compliance".parse::<LockMode>().unwrap(),
            LockMode::Compliance
        );
        assert_eq!(
            "GOVERNANCE".parse::<LockMode>().unwrap(),
            LockMode::Governance
        );
        assert!("legal".parse::<LockMode>().is_err());
        assert_eq!(query_escape("a/b c"), "a%2Fb%20c");
    }
}
