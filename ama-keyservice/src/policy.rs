//! Which client may act on which tenant.
//!
//! The CA decides who may talk to the key service at all; `clients.json`
//! in the service's directory narrows that down per client, so a node that
//! serves some tenants cannot unwrap (or destroy) the keys of others:
//!
//! ```json
//! { "format": "ama-keyservice-clients", "version": 1,
//!   "clients": { "node-1.ama.internal": ["acme", "globex"],
//!                "ops.ama.internal": ["*"] } }
//! ```
//!
//! A client is named by a DNS name of its certificate, or by
//! `sha256:<hex>` (the certificate's fingerprint). Without the file every
//! client with a certificate from the CA may act on every tenant.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use ama_core::TenantId;
use serde::Deserialize;

use crate::error::{ServiceError, io_err};
use crate::tls::ClientIdentity;

/// The policy file's name inside the service directory.
pub const POLICY_FILE: &str = "clients.json";
const FORMAT: &str = "ama-keyservice-clients";
const VERSION: u32 = 1;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    format: String,
    version: u32,
    clients: BTreeMap<String, Vec<String>>,
}

#[derive(Debug, Clone)]
enum Tenants {
    All,
    Some(Vec<TenantId>),
}

/// Which client identities may act on which tenants.
#[derive(Debug, Clone)]
pub struct ClientPolicy {
    /// `None`: every authenticated client, every tenant.
    rules: Option<HashMap<String, Tenants>>,
}

impl ClientPolicy {
    /// Every client the CA accepts may act on every tenant.
    pub fn allow_all() -> Self {
        ClientPolicy { rules: None }
    }

    /// Parses a policy (the `clients.json` format); `origin` names it in errors.
    pub fn parse(json: &[u8], origin: &str) -> Result<Self, ServiceError> {
        let bad = |reason: String| ServiceError::Policy {
            path: origin.to_string(),
            reason,
        };
        let file: PolicyFile = serde_json::from_slice(json).map_err(|e| bad(e.to_string()))?;
        if file.format != FORMAT {
            return Err(bad(format!("format {:?} is not {FORMAT:?}", file.format)));
        }
        if file.version != VERSION {
            return Err(bad(format!("unsupported version {}", file.version)));
        }
        let mut rules = HashMap::new();
        for (client, tenants) in file.clients {
            if client.is_empty() {
                return Err(bad("a client name is empty".into()));
            }
            let set = if tenants.iter().any(|t| t == "*") {
                Tenants::All
            } else {
                let ids = tenants
                    .into_iter()
                    .map(|t| {
                        TenantId::new(t.clone()).map_err(|_| {
                            bad(format!(
                                "client {client:?}: {t:?} is not a tenant id or \"*\""
                            ))
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                Tenants::Some(ids)
            };
            rules.insert(client.to_ascii_lowercase(), set);
        }
        Ok(ClientPolicy { rules: Some(rules) })
    }

    /// The file's path inside a service directory.
    pub fn path_in(dir: &Path) -> PathBuf {
        dir.join(POLICY_FILE)
    }

    /// Reads `DIR/clients.json`; [`ClientPolicy::allow_all`] if there is none.
    pub fn load_in(dir: &Path) -> Result<Self, ServiceError> {
        let path = Self::path_in(dir);
        match std::fs::read(&path) {
            Ok(bytes) => Self::parse(&bytes, &path.display().to_string()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::allow_all()),
            Err(e) => Err(io_err(&path)(e)),
        }
    }

    /// Whether the policy restricts anything.
    pub fn is_restricted(&self) -> bool {
        self.rules.is_some()
    }

    /// May `client` act on `tenant`?
    pub fn allows(&self, client: &ClientIdentity, tenant: &TenantId) -> bool {
        let Some(rules) = &self.rules else {
            return true;
        };
        client
            .names
            .iter()
            .map(|n| n.to_ascii_lowercase())
            .chain(std::iter::once(client.fingerprint.clone()))
            .filter_map(|n| rules.get(&n))
            .any(|set| match set {
                Tenants::All => true,
                Tenants::Some(ids) => ids.contains(tenant),
            })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn id(names: &[&str]) -> ClientIdentity {
        ClientIdentity {
            names: names.iter().map(|s| s.to_string()).collect(),
            fingerprint: "sha256:00".into(),
        }
    }

    #[test]
    fn rules() {
        let p = ClientPolicy::parse(
            br#"{"format":"ama-keyservice-clients","version":1,
                 "clients":{"Node-1.test":["acme"],"ops.test":["*"],"sha256:00":["beta"]}}"#,
            "t",
        )
        .unwrap();
        let acme = TenantId::new("acme").unwrap();
        let globex = TenantId::new("globex").unwrap();
        let beta = TenantId::new("beta").unwrap();
        assert!(p.allows(&id(&["node-1.test"]), &acme));
        assert!(!p.allows(&id(&["node-1.test"]), &globex));
        assert!(p.allows(&id(&["ops.test"]), &globex));
        assert!(!p.allows(&id(&["stranger.test"]), &acme));
        // By fingerprint.
        assert!(p.allows(&id(&["stranger.test"]), &beta));
        assert!(ClientPolicy::allow_all().allows(&id(&[]), &acme));
    }

    #[test]
    fn malformed_policies_are_refused() {
        for bad in [
            &br#"{"format":"x","version":1,"clients":{}}"#[..],
            br#"{"format":"ama-keyservice-clients","version":2,"clients":{}}"#,
            br#"{"format":"ama-keyservice-clients","version":1,"clients":{"a":["Bad Id"]}}"#,
            br#"{"format":"ama-keyservice-clients","version":1,"clients":{"":["acme"]}}"#,
            br#"{"format":"ama-keyservice-clients","version":1,"clients":{},"extra":1}"#,
            b"not json",
        ] {
            assert!(matches!(
                ClientPolicy::parse(bad, "t"),
                Err(ServiceError::Policy { .. })
            ));
        }
    }
}
