//! # ama-store-s3: S3-compatible object storage as an ama [`BlobStore`]
//!
//! When one machine is not enough, blobs belong in object storage that
//! already scales (AWS S3, MinIO, Ceph, SeaweedFS), not in a home-made
//! cluster. This crate puts the engine's encrypted blobs there with the
//! `object_store` crate, behind the same small, synchronous [`BlobStore`]
//! contract as the local store, checked by the same conformance suite.
//!
//! Why it looks the way it does:
//!
//! * **The engine stays free of tokio.** `ama-core` is synchronous; this
//!   crate owns a small tokio runtime of its own and blocks on it, so a
//!   caller never needs an async context (and may be inside another runtime:
//!   the work runs on this crate's threads, never the caller's).
//! * **Durable when `put` returns**: S3 acknowledges a PUT (or the completion
//!   of a multipart upload) only once the object is stored.
//! * **Nothing to learn from names.** Keys are the engine's opaque
//!   [`BlobKey`]s (`t/<random tenant storage id>/<time bucket>/<message
//!   id>`) under an optional fixed prefix; neither reveals a tenant name, an
//!   address or a subject. Every object body is ciphertext.
//! * **Credentials never sit in a configuration file**: [`S3Credentials`]
//!   come from environment variables (or the embedding program), are zeroized
//!   on drop, and are redacted in `Debug`.
//! * **Plain HTTP only on loopback.** An `http://` endpoint is refused unless
//!   it is a loopback address (a test server on this machine).
//! * **Write-once when asked** (`object_lock`, docs/WORM.md): with S3 Object
//!   Lock every blob is locked until the message's retain-until, and a locked
//!   blob's delete is [`StoreError::Locked`] (module `lock`).
//! * **Typed errors**: a missing blob is [`StoreError::NotFound`], rejected
//!   credentials are [`StoreError::Denied`] with a message saying what to
//!   check, anything else after retries (exponential backoff with jitter,
//!   bounded in time) is [`StoreError::Backend`].
//!
//! ```no_run
//! use ama_core::{BlobKey, BlobStore};
//! use ama_store_s3::{S3Config, S3Credentials, S3Store};
//!
//! # fn main() -> Result<(), ama_core::StoreError> {
//! let config = S3Config::from_url("s3://archive/ama?endpoint=http://127.0.0.1:8333")?;
//! let store = S3Store::open(config, S3Credentials::from_env("AWS")?)?;
//! store.check()?; // reachable, bucket exists, credentials accepted
//! let key = BlobKey::parse("t/0123abcd/00000/000/01HZX")?;
//! store.put(&key, b"ciphertext")?;
//! assert_eq!(store.get(&key)?, b"ciphertext");
//! # Ok(())
//! # }
//! ```

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod config;
mod lock;
#[cfg(feature = "testing")]
pub mod testing;

use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use ama_core::store::{BlobKey, BlobStore};
use ama_core::{Region, StoreError};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path;
use object_store::{
    BackoffConfig, ClientOptions, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig,
    WriteMultipart,
};
use zeroize::Zeroizing;

pub use lock::LockMode;

/// Smallest multipart part S3 accepts (except the last one).
pub const MIN_PART_SIZE: usize = 5 * 1024 * 1024;

/// How requests are retried: exponential backoff with jitter, bounded by a
/// number of retries and a total time.
#[derive(Debug, Clone)]
pub struct Retry {
    /// Retries after the first attempt (0: none).
    pub max_retries: usize,
    /// First backoff.
    pub init_backoff: Duration,
    /// Longest backoff.
    pub max_backoff: Duration,
    /// No retry starts after this long since the first attempt.
    pub timeout: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            max_retries: 5,
            init_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            timeout: Duration::from_secs(60),
        }
    }
}

/// Where and how to store blobs. No secrets: those are [`S3Credentials`].
#[derive(Debug, Clone)]
pub struct S3Config {
    /// The bucket.
    pub bucket: String,
    /// A fixed key prefix inside the bucket (`""` for none), e.g. to share a
    /// bucket between archives. Segments of `A-Z a-z 0-9 . _ -`.
    pub prefix: String,
    /// The endpoint URL for S3-compatible servers (`https://s3.example`,
    /// `http://127.0.0.1:8333`); `None` for AWS itself. Requests are
    /// path-style (`endpoint/bucket/key`) when an endpoint is given.
    pub endpoint: Option<String>,
    /// The signing region (`us-east-1` for most S3-compatible servers).
    pub signing_region: String,
    /// The ama region the data lives in (checked against each tenant's
    /// region before a write); `None` leaves the store untagged.
    pub data_region: Option<Region>,
    /// Blobs of at least this many bytes are uploaded in parts.
    pub multipart_threshold: usize,
    /// Size of each part of a multipart upload (at least [`MIN_PART_SIZE`]).
    pub part_size: usize,
    /// Requests `put_many` keeps in flight.
    pub concurrency: usize,
    /// Retry policy.
    pub retry: Retry,
    /// Timeout of one request.
    pub request_timeout: Duration,
    /// Timeout to connect.
    pub connect_timeout: Duration,
    /// S3 Object Lock: lock every blob in this mode until its retain-until
    /// (the bucket must have been created with Object Lock); `None`: no
    /// locks, deletes are plain.
    pub object_lock: Option<LockMode>,
}

impl S3Config {
    /// A configuration for `bucket` with the defaults: no prefix, AWS,
    /// signing region `us-east-1`, multipart from 16 MiB in 8 MiB parts, 16
    /// requests in flight, 5 retries within 60 s.
    pub fn new(bucket: impl Into<String>) -> Self {
        S3Config {
            bucket: bucket.into(),
            prefix: String::new(),
            endpoint: None,
            signing_region: "us-east-1".into(),
            data_region: None,
            multipart_threshold: 16 * 1024 * 1024,
            part_size: 8 * 1024 * 1024,
            concurrency: 16,
            retry: Retry::default(),
            request_timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(5),
            object_lock: None,
        }
    }

    /// Parses `s3://BUCKET[/PREFIX][?endpoint=URL&signing-region=R&region=R&object-lock=MODE]`
    /// (`region` is the ama data region, e.g. `eu`; `object-lock` is
    /// `compliance` or `governance`).
    pub fn from_url(url: &str) -> Result<Self, StoreError> {
        let bad = |why: &str| StoreError::Config(format!("store URL {url:?}: {why}"));
        let u = url::Url::parse(url).map_err(|e| bad(&e.to_string()))?;
        if u.scheme() != "s3" {
            return Err(bad("use s3://BUCKET[/PREFIX][?endpoint=URL]"));
        }
        if !u.username().is_empty() || u.password().is_some() {
            return Err(bad(
                "credentials do not belong in the URL; set them in the environment",
            ));
        }
        let bucket = u
            .host_str()
            .filter(|b| !b.is_empty())
            .ok_or_else(|| bad("no bucket"))?;
        let mut c = S3Config::new(bucket);
        c.prefix = u.path().trim_matches('/').to_string();
        for (k, v) in u.query_pairs() {
            match &*k {
                "endpoint" => c.endpoint = Some(v.into_owned()),
                "signing-region" => c.signing_region = v.into_owned(),
                "region" => {
                    c.data_region = Some(v.parse().map_err(|e| bad(&format!("{e}")))?);
                }
                "object-lock" => {
                    c.object_lock = Some(v.parse().map_err(|e| bad(&format!("{e}")))?);
                }
                other => return Err(bad(&format!("unknown option {other:?}"))),
            }
        }
        c.validate()?;
        Ok(c)
    }

    /// Checks the configuration; says what is wrong.
    pub fn validate(&self) -> Result<(), StoreError> {
        let bad = |why: String| Err(StoreError::Config(why));
        let b = &self.bucket;
        if b.len() < 3
            || b.len() > 63
            || !b
                .bytes()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-' || c == b'.')
        {
            return bad(format!(
                "bucket name {b:?}: use 3-63 characters a-z, 0-9, '-' and '.'"
            ));
        }
        if !self.prefix.is_empty() && BlobKey::parse(&self.prefix).is_err() {
            return bad(format!(
                "prefix {:?}: use segments of A-Z a-z 0-9 . _ - separated by '/'",
                self.prefix
            ));
        }
        if let Some(e) = &self.endpoint {
            endpoint_allows_http(e)?;
        }
        if self.part_size < MIN_PART_SIZE {
            return bad(format!(
                "part size {} is below the S3 minimum of {MIN_PART_SIZE} bytes",
                self.part_size
            ));
        }
        if self.concurrency == 0 {
            return bad("concurrency must be at least 1".into());
        }
        Ok(())
    }

    fn describe(&self) -> String {
        let mut s = format!("s3://{}", self.bucket);
        if !self.prefix.is_empty() {
            s.push('/');
            s.push_str(&self.prefix);
        }
        if let Some(e) = &self.endpoint {
            s.push_str(" at ");
            s.push_str(e);
        }
        if let Some(m) = self.object_lock {
            s.push_str(&format!(" (object lock: {m})"));
        }
        s
    }
}

/// Whether the endpoint is plain HTTP (allowed only on loopback); an error
/// for a malformed endpoint or plain HTTP to another host.
fn endpoint_allows_http(endpoint: &str) -> Result<bool, StoreError> {
    let bad = |why: &str| StoreError::Config(format!("endpoint {endpoint:?}: {why}"));
    let u = url::Url::parse(endpoint).map_err(|e| bad(&e.to_string()))?;
    match u.scheme() {
        "https" => Ok(false),
        "http" => {
            let loopback = match u.host() {
                Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
                Some(url::Host::Ipv4(a)) => IpAddr::V4(a).is_loopback(),
                Some(url::Host::Ipv6(a)) => IpAddr::V6(a).is_loopback(),
                None => false,
            };
            if loopback {
                Ok(true)
            } else {
                Err(bad(
                    "plain http is only allowed to a loopback address; use https (mail must not cross a network unencrypted)",
                ))
            }
        }
        _ => Err(bad("use an https:// (or, on loopback, http://) URL")),
    }
}

/// An access key and secret. Zeroized on drop; `Debug` shows only the key id.
pub struct S3Credentials {
    access_key_id: String,
    secret_access_key: Zeroizing<String>,
    session_token: Option<Zeroizing<String>>,
    source: String,
}

impl std::fmt::Debug for S3Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl S3Credentials {
    /// Credentials given by the embedding program.
    pub fn new(access_key_id: impl Into<String>, secret_access_key: impl Into<String>) -> Self {
        S3Credentials {
            access_key_id: access_key_id.into(),
            secret_access_key: Zeroizing::new(secret_access_key.into()),
            session_token: None,
            source: "given by the program".into(),
        }
    }

    /// Reads `<PREFIX>_ACCESS_KEY_ID`, `<PREFIX>_SECRET_ACCESS_KEY` and,
    /// if set, `<PREFIX>_SESSION_TOKEN` (prefix `AWS`: the usual AWS names).
    pub fn from_env(prefix: &str) -> Result<Self, StoreError> {
        let valid = !prefix.is_empty()
            && prefix
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
        if !valid {
            return Err(StoreError::Config(format!(
                "credential variable prefix {prefix:?}: use A-Z, 0-9 and '_'"
            )));
        }
        let var = |name: &str| -> Result<Option<String>, StoreError> {
            match std::env::var(name) {
                Ok(v) if !v.is_empty() => Ok(Some(v)),
                Ok(_) | Err(std::env::VarError::NotPresent) => Ok(None),
                Err(std::env::VarError::NotUnicode(_)) => Err(StoreError::Config(format!(
                    "environment variable {name} is not valid UTF-8"
                ))),
            }
        };
        let id_var = format!("{prefix}_ACCESS_KEY_ID");
        let secret_var = format!("{prefix}_SECRET_ACCESS_KEY");
        let (Some(id), Some(secret)) = (var(&id_var)?, var(&secret_var)?) else {
            return Err(StoreError::Config(format!(
                "no S3 credentials: set {id_var} and {secret_var}"
            )));
        };
        Ok(S3Credentials {
            access_key_id: id,
            secret_access_key: Zeroizing::new(secret),
            session_token: var(&format!("{prefix}_SESSION_TOKEN"))?.map(Zeroizing::new),
            source: format!("{id_var}/{secret_var}"),
        })
    }
}

/// Blobs as objects in an S3-compatible bucket.
pub struct S3Store {
    runtime: Option<tokio::runtime::Runtime>,
    lock: Option<lock::Lock>,
    s3: Arc<AmazonS3>,
    config: S3Config,
    describe: String,
    credential_source: String,
}

impl std::fmt::Debug for S3Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Store")
            .field("store", &self.describe)
            .finish_non_exhaustive()
    }
}

impl S3Store {
    /// Builds the client. Does not contact the server (a replica that is
    /// down must not stop an archive from opening); [`S3Store::check`] does.
    pub fn open(config: S3Config, credentials: S3Credentials) -> Result<Self, StoreError> {
        config.validate()?;
        // One TLS implementation for the whole program (ring, as the SMTP and
        // HTTP frontends use); a provider installed earlier is kept.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let allow_http = match &config.endpoint {
            Some(e) => endpoint_allows_http(e)?,
            None => false,
        };
        let mut b = AmazonS3Builder::new()
            .with_bucket_name(&config.bucket)
            .with_region(&config.signing_region)
            .with_access_key_id(&credentials.access_key_id)
            .with_secret_access_key(credentials.secret_access_key.as_str())
            .with_retry(RetryConfig {
                backoff: BackoffConfig {
                    init_backoff: config.retry.init_backoff,
                    max_backoff: config.retry.max_backoff,
                    base: 2.0,
                },
                max_retries: config.retry.max_retries,
                retry_timeout: config.retry.timeout,
            })
            .with_client_options(
                ClientOptions::new()
                    .with_allow_http(allow_http)
                    .with_timeout(config.request_timeout)
                    .with_connect_timeout(config.connect_timeout),
            );
        if let Some(t) = &credentials.session_token {
            b = b.with_token(t.as_str());
        }
        if let Some(e) = &config.endpoint {
            b = b.with_endpoint(e).with_virtual_hosted_style_request(false);
        }
        let s3 = b.build().map_err(|e| StoreError::Config(e.to_string()))?;
        let raw = lock::Raw::new(lock::RawConfig {
            endpoint: config.endpoint.as_deref(),
            bucket: &config.bucket,
            signing_region: &config.signing_region,
            key_id: &credentials.access_key_id,
            secret: &credentials.secret_access_key,
            token: credentials.session_token.as_ref().map(|t| t.as_str()),
            retry: config.retry.clone(),
            request_timeout: config.request_timeout,
            connect_timeout: config.connect_timeout,
            describe: config.describe(),
        })?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("ama-s3")
            .enable_all()
            .build()
            .map_err(|e| StoreError::Backend {
                store: config.describe(),
                key: "runtime".into(),
                reason: format!("cannot start the I/O runtime: {e}"),
            })?;
        Ok(S3Store {
            runtime: Some(runtime),
            lock: config.object_lock.map(|mode| lock::Lock {
                raw: Arc::new(raw),
                mode,
            }),
            s3: Arc::new(s3),
            describe: config.describe(),
            credential_source: credentials.source.clone(),
            config,
        })
    }

    /// Contacts the server: the bucket exists and the credentials may list
    /// it, and with `object_lock` the bucket has Object Lock. A clear error
    /// otherwise (wrong secret, unknown bucket, no server, no lock).
    pub fn check(&self) -> Result<(), StoreError> {
        let s3 = self.s3.clone();
        let prefix =
            (!self.config.prefix.is_empty()).then(|| Path::from(self.config.prefix.as_str()));
        self.run(async move { s3.list_with_delimiter(prefix.as_ref()).await })?
            .map(|_| ())
            .map_err(|e| match self.map_err("(bucket listing)", e) {
                StoreError::NotFound { .. } => StoreError::Config(format!(
                    "bucket {:?} does not exist at {}",
                    self.config.bucket, self.describe
                )),
                other => other,
            })?;
        if let Some(l) = &self.lock {
            let raw = l.raw.clone();
            if !self.run(async move { raw.bucket_lock_enabled().await })?? {
                return Err(StoreError::Config(format!(
                    "object lock is configured for {}, but bucket {:?} was not created with \
                     Object Lock (it cannot be turned on later: create a bucket with \
                     x-amz-bucket-object-lock-enabled: true)",
                    self.describe, self.config.bucket
                )));
            }
        }
        Ok(())
    }

    /// Creates the bucket, with Object Lock when the configuration asks for
    /// it (which also turns on versioning). For setting up test servers and
    /// new deployments; an existing bucket is an error from the server.
    pub fn create_bucket(&self) -> Result<(), StoreError> {
        let raw = match &self.lock {
            Some(l) => l.raw.clone(),
            None => return Err(StoreError::Config(
                "create_bucket is for buckets with object lock; create plain buckets with the provider's tools".into(),
            )),
        };
        self.run(async move { raw.create_bucket(true).await })?
    }

    /// The configuration in force.
    pub fn config(&self) -> &S3Config {
        &self.config
    }

    fn path(&self, key: &BlobKey) -> Result<Path, StoreError> {
        let full = if self.config.prefix.is_empty() {
            key.as_str().to_string()
        } else {
            format!("{}/{}", self.config.prefix, key.as_str())
        };
        Path::parse(&full).map_err(|_| StoreError::InvalidKey(key.to_string()))
    }

    /// Runs `fut` on this store's runtime and waits for it from any thread,
    /// including one of another tokio runtime.
    fn run<F, T>(&self, fut: F) -> Result<T, StoreError>
    where
        F: Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        let lost = || StoreError::Backend {
            store: self.describe.clone(),
            key: "runtime".into(),
            reason: "the I/O task ended without an answer".into(),
        };
        let rt = self.runtime.as_ref().ok_or_else(lost)?;
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        rt.spawn(async move {
            let _ = tx.send(fut.await);
        });
        rx.recv().map_err(|_| lost())
    }

    fn map_err(&self, key: &str, e: object_store::Error) -> StoreError {
        map_err(&self.describe, &self.credential_source, key, e)
    }
}

fn map_err(store: &str, creds: &str, key: &str, e: object_store::Error) -> StoreError {
    use object_store::Error as E;
    let denied = || StoreError::Denied {
        store: store.to_string(),
        reason: format!(
            "the access key or secret was rejected, or the key may not use this bucket (HTTP 401/403); check {creds}"
        ),
    };
    match e {
        E::NotFound { .. } => StoreError::NotFound {
            key: key.to_string(),
        },
        E::PermissionDenied { .. } | E::Unauthenticated { .. } => denied(),
        other => {
            let text = error_chain(&other);
            if text.contains("403 Forbidden")
                || text.contains("401 Unauthorized")
                || text.contains("SignatureDoesNotMatch")
                || text.contains("InvalidAccessKeyId")
                || text.contains("AccessDenied")
            {
                denied()
            } else {
                StoreError::Backend {
                    store: store.to_string(),
                    key: key.to_string(),
                    reason: text,
                }
            }
        }
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !out.contains(&t) {
            out.push_str(": ");
            out.push_str(&t);
        }
        cur = c.source();
    }
    out
}

async fn put_one(
    s3: Arc<AmazonS3>,
    path: Path,
    data: Bytes,
    threshold: usize,
    part_size: usize,
) -> object_store::Result<()> {
    if data.len() < threshold {
        s3.put(&path, PutPayload::from(data)).await?;
        return Ok(());
    }
    let upload = s3.put_multipart(&path).await?;
    let mut w = WriteMultipart::new_with_chunk_size(upload, part_size);
    w.put(data);
    // `finish` aborts the upload on error, so no parts are left behind.
    w.finish().await?;
    Ok(())
}

impl BlobStore for S3Store {
    fn put(&self, key: &BlobKey, data: &[u8]) -> Result<(), StoreError> {
        let path = self.path(key)?;
        let s3 = self.s3.clone();
        let data = Bytes::copy_from_slice(data);
        let (t, p) = (self.config.multipart_threshold, self.config.part_size);
        self.run(put_one(s3, path, data, t, p))?
            .map_err(|e| self.map_err(key.as_str(), e))
    }

    fn put_many(&self, items: &[(BlobKey, Vec<u8>)]) -> Result<(), StoreError> {
        let mut jobs = Vec::with_capacity(items.len());
        for (k, v) in items {
            jobs.push((k.to_string(), self.path(k)?, Bytes::copy_from_slice(v)));
        }
        let s3 = self.s3.clone();
        let (t, p) = (self.config.multipart_threshold, self.config.part_size);
        let concurrency = self.config.concurrency;
        let result = self.run(async move {
            futures::stream::iter(jobs)
                .map(|(key, path, data)| {
                    let s3 = s3.clone();
                    async move { put_one(s3, path, data, t, p).await.map_err(|e| (key, e)) }
                })
                .buffer_unordered(concurrency)
                .try_collect::<Vec<()>>()
                .await
        })?;
        result.map(|_| ()).map_err(|(key, e)| self.map_err(&key, e))
    }

    fn get(&self, key: &BlobKey) -> Result<Vec<u8>, StoreError> {
        let path = self.path(key)?;
        let s3 = self.s3.clone();
        self.run(async move { s3.get(&path).await?.bytes().await })?
            .map(|b| b.to_vec())
            .map_err(|e| self.map_err(key.as_str(), e))
    }

    /// With object lock, every version of the blob is deleted (a plain
    /// delete in a versioned bucket would only hide it behind a marker), and
    /// a version still locked is [`StoreError::Locked`].
    fn delete(&self, key: &BlobKey) -> Result<(), StoreError> {
        let path = self.path(key)?;
        if let Some(l) = &self.lock {
            let raw = l.raw.clone();
            let p = path.to_string();
            return self.run(async move { raw.delete_all_versions(&p).await })?;
        }
        let s3 = self.s3.clone();
        match self.run(async move { s3.delete(&path).await })? {
            Ok(()) => Ok(()),
            Err(e) => match self.map_err(key.as_str(), e) {
                StoreError::NotFound { .. } => Ok(()),
                other => Err(other),
            },
        }
    }

    fn list(&self, prefix: &str) -> Result<Vec<BlobKey>, StoreError> {
        // object_store lists by whole path segments: list the deepest
        // directory the prefix names completely, then filter by the rest.
        let dir = match prefix.rfind('/') {
            Some(i) => &prefix[..i],
            None => "",
        };
        if !dir.is_empty() {
            BlobKey::parse(dir)?;
        }
        let base = match (self.config.prefix.is_empty(), dir.is_empty()) {
            (true, true) => None,
            (true, false) => Some(dir.to_string()),
            (false, true) => Some(self.config.prefix.clone()),
            (false, false) => Some(format!("{}/{dir}", self.config.prefix)),
        };
        let strip = if self.config.prefix.is_empty() {
            String::new()
        } else {
            format!("{}/", self.config.prefix)
        };
        let s3 = self.s3.clone();
        let metas = self
            .run(async move {
                let p = base.map(|b| Path::from(b.as_str()));
                s3.list(p.as_ref()).try_collect::<Vec<_>>().await
            })?
            .map_err(|e| self.map_err(prefix, e))?;
        let mut out: Vec<BlobKey> = metas
            .iter()
            .filter_map(|m| {
                let full = m.location.as_ref();
                let rel = full.strip_prefix(strip.as_str())?;
                rel.starts_with(prefix)
                    .then(|| BlobKey::parse(rel).ok())
                    .flatten()
            })
            .collect();
        out.sort();
        Ok(out)
    }

    fn describe(&self) -> String {
        self.describe.clone()
    }

    fn region(&self) -> Option<Region> {
        self.config.data_region.clone()
    }

    fn object_lock(&self) -> bool {
        self.lock.is_some()
    }

    fn set_retention(&self, key: &BlobKey, until: i64) -> Result<(), StoreError> {
        self.set_retention_many(&[(key.clone(), until)])
    }

    fn set_retention_many(&self, items: &[(BlobKey, i64)]) -> Result<(), StoreError> {
        let Some(l) = &self.lock else {
            return Err(StoreError::Unsupported {
                store: self.describe.clone(),
                what: "write-once retention (object_lock is not configured)".into(),
            });
        };
        let mut jobs = Vec::with_capacity(items.len());
        for (k, until) in items {
            jobs.push((self.path(k)?.to_string(), *until));
        }
        let (raw, mode, concurrency) = (l.raw.clone(), l.mode, self.config.concurrency);
        self.run(async move {
            futures::stream::iter(jobs)
                .map(|(path, until)| {
                    let raw = raw.clone();
                    async move { raw.set_retention(&path, mode, until).await }
                })
                .buffer_unordered(concurrency)
                .try_collect::<Vec<()>>()
                .await
        })?
        .map(|_| ())
    }

    fn retention(&self, key: &BlobKey) -> Result<Option<i64>, StoreError> {
        let Some(l) = &self.lock else {
            return Ok(None);
        };
        let raw = l.raw.clone();
        let path = self.path(key)?.to_string();
        self.run(async move { raw.retention(&path, None).await })?
    }
}

impl Drop for S3Store {
    /// Stops the runtime without waiting, so dropping the store is also
    /// safe inside another runtime's async context.
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let c = S3Config::from_url(
            "s3://archive/eu/ama?endpoint=http://127.0.0.1:8333&region=eu&signing-region=eu-central-1",
        )
        .unwrap();
        assert_eq!(c.bucket, "archive");
        assert_eq!(c.prefix, "eu/ama");
        assert_eq!(c.endpoint.as_deref(), Some("http://127.0.0.1:8333"));
        assert_eq!(c.data_region, Some(Region::Eu));
        assert_eq!(c.signing_region, "eu-central-1");
        assert_eq!(c.describe(), "s3://archive/eu/ama at http://127.0.0.1:8333");
        assert_eq!(c.object_lock, None);
        let c = S3Config::from_url("s3://archive?object-lock=compliance").unwrap();
        assert_eq!(c.object_lock, Some(LockMode::Compliance));
        let c = S3Config::from_url("s3://archive").unwrap();
        assert_eq!(c.prefix, "");
        assert_eq!(c.endpoint, None);
        for (bad, why) in [
            ("http://archive", "use s3://"),
            ("s3://user:pw@archive", "credentials do not belong"),
            ("s3://archive?endpoint=http://10.0.0.5:8333", "loopback"),
            ("s3://archive?endpoint=http://s3.example.com", "loopback"),
            ("s3://archive?endpoint=ftp://127.0.0.1", "https://"),
            ("s3://archive?foo=1", "unknown option"),
            ("s3://archive/a//b", "prefix"),
            ("s3://Archive_1", "bucket name"),
            ("s3://archive?region=EU%20West", "region"),
            (
                "s3://archive?object-lock=forever",
                "compliance or governance",
            ),
        ] {
            let e = S3Config::from_url(bad).unwrap_err().to_string();
            assert!(e.contains(why), "{bad}: {e}");
        }
        for ok in [
            "s3://archive?endpoint=http://localhost:9000",
            "s3://archive?endpoint=http://[::1]:9000",
            "s3://archive?endpoint=https://s3.example.com",
        ] {
            S3Config::from_url(ok).unwrap();
        }
    }

    #[test]
    fn credentials_are_not_printed() {
        let c = S3Credentials::new("AKIDEXAMPLE", "very-secret-value");
        let shown = format!("{c:?}");
        assert!(shown.contains("AKIDEXAMPLE"));
        assert!(!shown.contains("very-secret-value"));
        assert!(S3Credentials::from_env("bad prefix").is_err());
        let e = S3Credentials::from_env("AMA_TEST_SURELY_UNSET")
            .unwrap_err()
            .to_string();
        assert!(e.contains("AMA_TEST_SURELY_UNSET_SECRET_ACCESS_KEY"), "{e}");
    }

    #[test]
    fn part_size_below_the_s3_minimum_is_refused() {
        let mut c = S3Config::new("archive");
        c.part_size = 1024;
        assert!(S3Store::open(c, S3Credentials::new("a", "b")).is_err());
    }
}
