//! `stores.json`: which blob stores an archive keeps its blobs in.
//!
//! One small file in the data directory, read by every frontend that opens
//! the archive (the CLI, and any embedder), so that they all write to the
//! same places. It holds **no secret**: S3 credentials come from environment
//! variables named by `credentials_env` (default `AWS`, i.e.
//! `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`); a key that looks like a
//! credential is refused with a message saying where it belongs.
//!
//! ```json
//! {
//!   "version": 1,
//!   "write_quorum": 2,
//!   "stores": [
//!     { "name": "local", "type": "local", "path": "blobs", "region": "eu" },
//!     { "name": "fra", "type": "s3", "url": "s3://ama-eu/prod?endpoint=https://s3.fra.example",
//!       "region": "eu", "credentials_env": "AMA_S3_FRA" },
//!     { "name": "ber", "type": "s3", "url": "s3://ama-eu-2/prod?endpoint=https://s3.ber.example",
//!       "region": "eu", "credentials_env": "AMA_S3_BER", "object_lock": "compliance" }
//!   ]
//! }
//! ```
//!
//! One store is used directly; several are replicated
//! ([`ReplicatedStore`]) with `write_quorum` (default: a majority) and the
//! repair queue in `DATA/replication/`. A relative local `path` is relative
//! to the data directory. Without a `stores.json` an archive keeps its blobs
//! in `DATA/blobs` (the embedded default).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ama_core::store::{BlobStore, LocalStore, Replica, ReplicatedStore, ReplicationOptions};
use ama_core::{Region, StoreError};
use serde::{Deserialize, Serialize};

use crate::{LockMode, S3Config, S3Credentials, S3Store};

/// The file name in the data directory.
pub const FILE: &str = "stores.json";
/// The format version this build reads and writes.
pub const VERSION: u32 = 1;

/// The parsed `stores.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoresConfig {
    /// Format version (1).
    pub version: u32,
    /// Copies that must be durable before a write succeeds (with several
    /// stores; default: a majority).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write_quorum: Option<usize>,
    /// Seconds a failed store is left alone before it is tried again
    /// (default 30).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_secs: Option<u64>,
    /// The stores, at least one.
    pub stores: Vec<StoreSpec>,
}

/// One store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum StoreSpec {
    /// A directory on this machine.
    Local {
        /// Name (`a-z 0-9 -`), recorded in the repair queue.
        name: String,
        /// The directory (relative: to the data directory).
        path: PathBuf,
        /// The region its disk is in.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        region: Option<Region>,
    },
    /// An S3-compatible bucket.
    S3 {
        /// Name (`a-z 0-9 -`), recorded in the repair queue.
        name: String,
        /// `s3://BUCKET[/PREFIX][?endpoint=URL&signing-region=R]`.
        url: String,
        /// The region the bucket is in.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        region: Option<Region>,
        /// Prefix of the credential variables (`<P>_ACCESS_KEY_ID`,
        /// `<P>_SECRET_ACCESS_KEY`); default `AWS`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        credentials_env: Option<String>,
        /// S3 Object Lock (`"compliance"` or `"governance"`): every blob is
        /// locked until its retain-until. The bucket must have been created
        /// with Object Lock. Absent: no locks.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        object_lock: Option<LockMode>,
    },
}

impl StoreSpec {
    fn name(&self) -> &str {
        match self {
            StoreSpec::Local { name, .. } | StoreSpec::S3 { name, .. } => name,
        }
    }
}

fn bad(path: &Path, why: impl std::fmt::Display) -> StoreError {
    StoreError::Config(format!("{}: {why}", path.display()))
}

/// A store error about the file, without repeating "configuration".
fn bad_store(path: &Path, e: StoreError) -> StoreError {
    match e {
        StoreError::Config(m) => bad(path, m),
        e => bad(path, e),
    }
}

/// Words that mark a credential; none belongs in the file.
const SECRET_WORDS: [&str; 5] = ["secret", "password", "access_key", "token", "credentials\""];

fn refuse_secrets(path: &Path, v: &serde_json::Value) -> Result<(), StoreError> {
    match v {
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                let lower = k.to_ascii_lowercase();
                if SECRET_WORDS
                    .iter()
                    .any(|w| lower.contains(w.trim_end_matches('"')))
                    && lower != "credentials_env"
                {
                    return Err(bad(
                        path,
                        format!(
                            "{k:?}: credentials do not belong in {FILE}; set them in the \
                             environment (<credentials_env>_ACCESS_KEY_ID and \
                             <credentials_env>_SECRET_ACCESS_KEY)"
                        ),
                    ));
                }
                refuse_secrets(path, v)?;
            }
            Ok(())
        }
        serde_json::Value::Array(a) => a.iter().try_for_each(|v| refuse_secrets(path, v)),
        _ => Ok(()),
    }
}

impl StoresConfig {
    /// Reads and checks a configuration file.
    pub fn load(path: &Path) -> Result<Self, StoreError> {
        let text = std::fs::read_to_string(path).map_err(|e| bad(path, e))?;
        Self::parse(path, &text)
    }

    /// Parses and checks configuration text (`path` names it in errors).
    pub fn parse(path: &Path, text: &str) -> Result<Self, StoreError> {
        let v: serde_json::Value =
            serde_json::from_str(text).map_err(|e| bad(path, format!("not valid JSON: {e}")))?;
        refuse_secrets(path, &v)?;
        let c: StoresConfig = serde_json::from_value(v).map_err(|e| bad(path, e))?;
        c.validate(path)?;
        Ok(c)
    }

    /// `DATA/stores.json` if the data directory has one.
    pub fn load_in(data_dir: &Path) -> Result<Option<Self>, StoreError> {
        let p = data_dir.join(FILE);
        if p.exists() {
            Self::load(&p).map(Some)
        } else {
            Ok(None)
        }
    }

    fn validate(&self, path: &Path) -> Result<(), StoreError> {
        if self.version != VERSION {
            return Err(bad(
                path,
                format!(
                    "version {} is not supported (this build reads {VERSION})",
                    self.version
                ),
            ));
        }
        let n = self.stores.len();
        if n == 0 {
            return Err(bad(path, "no stores"));
        }
        if let Some(q) = self.write_quorum
            && (q == 0 || q > n)
        {
            return Err(bad(
                path,
                format!("write_quorum {q} is not between 1 and the number of stores ({n})"),
            ));
        }
        let mut seen = std::collections::BTreeSet::new();
        for s in &self.stores {
            if !seen.insert(s.name()) {
                return Err(bad(
                    path,
                    format!("store name {:?} is used twice", s.name()),
                ));
            }
            if let StoreSpec::S3 {
                url,
                region,
                object_lock,
                ..
            } = s
            {
                let c = S3Config::from_url(url).map_err(|e| bad_store(path, e))?;
                if let (Some(a), Some(b)) = (c.object_lock, object_lock)
                    && a != *b
                {
                    return Err(bad(
                        path,
                        format!(
                            "store {:?}: object_lock {b} differs from the URL's {a}",
                            s.name()
                        ),
                    ));
                }
                if let (Some(a), Some(b)) = (&c.data_region, region)
                    && a != b
                {
                    return Err(bad(
                        path,
                        format!(
                            "store {:?}: region {b} differs from the URL's {a}",
                            s.name()
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Writes the configuration to `DATA/stores.json` (atomically: a
    /// temporary file, synced, renamed).
    pub fn save_in(&self, data_dir: &Path) -> Result<(), StoreError> {
        let p = data_dir.join(FILE);
        let io = |source| StoreError::Io {
            key: p.display().to_string(),
            source,
        };
        let text = serde_json::to_string_pretty(self).map_err(|e| bad(&p, e))?;
        let tmp = data_dir.join(format!("{FILE}.tmp"));
        {
            use std::io::Write;
            let mut f = std::fs::File::create(&tmp).map_err(io)?;
            f.write_all(text.as_bytes()).map_err(io)?;
            f.write_all(b"\n").map_err(io)?;
            f.sync_all().map_err(io)?;
        }
        std::fs::rename(&tmp, &p).map_err(io)?;
        Ok(())
    }

    /// Builds the stores (no server is contacted) and, with several,
    /// replicates over them with the repair queue in `DATA/replication/`.
    pub fn open(&self, data_dir: &Path) -> Result<OpenStores, StoreError> {
        let mut replicas = Vec::with_capacity(self.stores.len());
        let mut s3 = Vec::new();
        for spec in &self.stores {
            let store: Arc<dyn BlobStore> = match spec {
                StoreSpec::Local { path, region, .. } => {
                    let root = if path.is_absolute() {
                        path.clone()
                    } else {
                        data_dir.join(path)
                    };
                    // One unavailable replica must not keep the archive
                    // closed: the replicated store works around it.
                    let mut l = match LocalStore::open(&root) {
                        Ok(l) => l,
                        Err(_) if self.stores.len() > 1 => LocalStore::deferred(root),
                        Err(e) => return Err(e),
                    };
                    if let Some(r) = region {
                        l = l.with_region(r.clone());
                    }
                    Arc::new(l)
                }
                StoreSpec::S3 {
                    name,
                    url,
                    region,
                    credentials_env,
                    object_lock,
                } => {
                    let mut c = S3Config::from_url(url)?;
                    if region.is_some() {
                        c.data_region = region.clone();
                    }
                    if object_lock.is_some() {
                        c.object_lock = *object_lock;
                    }
                    let creds =
                        S3Credentials::from_env(credentials_env.as_deref().unwrap_or("AWS"))
                            .map_err(|e| StoreError::Config(format!("store {name:?}: {e}")))?;
                    let s = Arc::new(S3Store::open(c, creds)?);
                    s3.push(s.clone());
                    s
                }
            };
            replicas.push(Replica::new(spec.name(), store)?);
        }
        let store: Arc<dyn BlobStore> = if replicas.len() == 1 {
            replicas.remove(0).store().clone()
        } else {
            let mut o = ReplicationOptions::majority(replicas.len());
            if let Some(q) = self.write_quorum {
                o.write_quorum = q;
            }
            if let Some(s) = self.retry_after_secs {
                o.retry_after = Duration::from_secs(s);
            }
            let r = Arc::new(ReplicatedStore::open(
                replicas,
                o,
                data_dir.join("replication"),
            )?);
            return Ok(OpenStores {
                store: r.clone(),
                replicated: Some(r),
                s3,
            });
        };
        Ok(OpenStores {
            store,
            replicated: None,
            s3,
        })
    }
}

/// The stores a configuration opened.
pub struct OpenStores {
    /// What the archive writes to.
    pub store: Arc<dyn BlobStore>,
    /// The replicated store, when there are several (for its backlog).
    pub replicated: Option<Arc<ReplicatedStore>>,
    /// The S3 stores (to [`S3Store::check`] them).
    pub s3: Vec<Arc<S3Store>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<StoresConfig, StoreError> {
        StoresConfig::parse(Path::new("stores.json"), text)
    }

    #[test]
    fn a_documented_configuration_parses() {
        let c = parse(
            r#"{ "version": 1, "write_quorum": 2, "stores": [
                 { "name": "local", "type": "local", "path": "blobs", "region": "eu" },
                 { "name": "fra", "type": "s3", "url": "s3://ama-eu/prod?endpoint=https://s3.fra.example",
                   "region": "eu", "credentials_env": "AMA_S3_FRA" },
                 { "name": "ber", "type": "s3", "url": "s3://ama-eu-2/prod?endpoint=http://127.0.0.1:9000",
                   "object_lock": "compliance" } ] }"#,
        )
        .unwrap();
        assert_eq!(c.stores.len(), 3);
        assert!(matches!(
            &c.stores[2],
            StoreSpec::S3 {
                object_lock: Some(LockMode::Compliance),
                ..
            }
        ));
        assert_eq!(c.write_quorum, Some(2));
        // Round trip through save/load.
        let d = tempfile::tempdir().unwrap();
        c.save_in(d.path()).unwrap();
        assert_eq!(StoresConfig::load_in(d.path()).unwrap(), Some(c));
        assert_eq!(StoresConfig::load_in(&d.path().join("none")).unwrap(), None);
    }

    #[test]
    fn mistakes_are_named() {
        for (text, why) in [
            ("{", "not valid JSON"),
            (r#"{"version": 2, "stores": []}"#, "version 2"),
            (r#"{"version": 1, "stores": []}"#, "no stores"),
            (
                r#"{"version": 1, "stores": [{"name": "a", "type": "ftp", "path": "x"}]}"#,
                "unknown variant",
            ),
            (
                r#"{"version": 1, "stores": [{"name": "a", "type": "local", "path": "x", "colour": 1}]}"#,
                "unknown field",
            ),
            (
                r#"{"version": 1, "write_quorum": 3, "stores": [{"name": "a", "type": "local", "path": "x"}]}"#,
                "write_quorum 3",
            ),
            (
                r#"{"version": 1, "stores": [{"name": "a", "type": "local", "path": "x"}, {"name": "a", "type": "local", "path": "y"}]}"#,
                "used twice",
            ),
            (
                r#"{"version": 1, "stores": [{"name": "a", "type": "s3", "url": "s3://bkt?endpoint=http://10.1.1.1"}]}"#,
                "loopback",
            ),
            (
                r#"{"version": 1, "stores": [{"name": "a", "type": "s3", "url": "s3://bkt?region=us", "region": "eu"}]}"#,
                "differs",
            ),
            (
                r#"{"version": 1, "stores": [{"name": "a", "type": "s3", "url": "s3://bkt", "object_lock": "forever"}]}"#,
                "unknown variant",
            ),
            (
                r#"{"version": 1, "stores": [{"name": "a", "type": "s3", "url": "s3://bkt?object-lock=governance", "object_lock": "compliance"}]}"#,
                "differs",
            ),
            (
                r#"{"version": 1, "stores": [{"name": "a", "type": "s3", "url": "s3://bkt", "secret_access_key": "x"}]}"#,
                "credentials do not belong",
            ),
            (
                r#"{"version": 1, "stores": [{"name": "a", "type": "s3", "url": "s3://bkt", "Password": "x"}]}"#,
                "credentials do not belong",
            ),
        ] {
            let e = parse(text).unwrap_err().to_string();
            assert!(e.contains(why), "{text}: {e}");
        }
    }

    #[test]
    fn missing_credentials_are_named() {
        let c = parse(
            r#"{"version": 1, "stores": [{"name": "s", "type": "s3", "url": "s3://bkt",
                "credentials_env": "AMA_TEST_NOT_SET_ANYWHERE"}]}"#,
        )
        .unwrap();
        let d = tempfile::tempdir().unwrap();
        let e = c.open(d.path()).err().unwrap().to_string();
        assert!(e.contains("AMA_TEST_NOT_SET_ANYWHERE_ACCESS_KEY_ID"), "{e}");
    }
}
