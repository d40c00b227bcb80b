//! Who may see what. Every read of mail goes through a [`Principal`], and
//! the rules are enforced here, in the core, so the CLI, HTTP, SMTP and
//! Python frontends cannot disagree:
//!
//! - an **auditor** reads all mail of the tenant;
//! - an **end user** reads only mail where one of his addresses is a
//!   sender, a recipient or an envelope recipient — and sees only his own
//!   envelope recipients, never the other Bcc recipients;
//! - an **admin** manages the tenant but reads no mail content (an admin who
//!   must read mail also needs the auditor role);
//! - an **ingest** principal (an API key) only archives mail.
//!
//! A principal also says who acts and through which frontend
//! ([`AccessContext`]): the audit log records it with every access.
//!
//! A principal is bound to one tenant; no call lets it reach another. A
//! message the principal may not see is reported as not found, so its
//! existence does not leak.

use serde::{Deserialize, Serialize};

use crate::audit::AccessContext;
use crate::error::{Error, Result};
use crate::index::Scope;
use crate::message::MessageInfo;
use crate::tenant::TenantId;

/// A role a principal holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Role {
    /// Reads only his own mail.
    EndUser,
    /// Reads all mail of the tenant.
    Auditor,
    /// Manages the tenant; no mail content.
    Admin,
    /// Archives mail and nothing else (API keys).
    Ingest,
}

impl Role {
    /// Stable name: `end-user`, `auditor`, `admin`, `ingest`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Role::EndUser => "end-user",
            Role::Auditor => "auditor",
            Role::Admin => "admin",
            Role::Ingest => "ingest",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Role {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().replace('_', "-").as_str() {
            "end-user" | "enduser" | "user" => Ok(Role::EndUser),
            "auditor" => Ok(Role::Auditor),
            "admin" => Ok(Role::Admin),
            "ingest" => Ok(Role::Ingest),
            other => Err(Error::InvalidArgument(format!(
                "unknown role {other:?} (end-user, auditor, admin or ingest)"
            ))),
        }
    }
}

/// An authenticated identity acting within one tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    tenant: TenantId,
    user: Option<String>,
    roles: Vec<Role>,
    addresses: Vec<String>,
    context: AccessContext,
}

impl Principal {
    /// A principal with explicit parts (what [`crate::Archive::authenticate`]
    /// builds from a session).
    pub(crate) fn new<S: Into<String>>(
        tenant: TenantId,
        user: Option<String>,
        roles: Vec<Role>,
        addresses: impl IntoIterator<Item = S>,
        context: AccessContext,
    ) -> Self {
        Principal {
            tenant,
            user,
            roles,
            addresses: addresses
                .into_iter()
                .map(|a| a.into().trim().to_lowercase())
                .filter(|a| !a.is_empty())
                .collect(),
            context,
        }
    }

    /// The operator of `tenant`: auditor and admin, no user (what the `ama`
    /// command acts as, with access to the data directory and its keys).
    pub fn operator(tenant: TenantId) -> Self {
        Self::new(
            tenant,
            None,
            vec![Role::Admin, Role::Auditor],
            Vec::<String>::new(),
            AccessContext::default(),
        )
    }

    /// An auditor of `tenant` with no user name (embedding programs).
    pub fn auditor(tenant: TenantId) -> Self {
        Self::new(
            tenant,
            None,
            vec![Role::Auditor],
            Vec::<String>::new(),
            AccessContext::default(),
        )
    }

    /// An admin of `tenant`: configuration, no mail content.
    pub fn admin(tenant: TenantId) -> Self {
        Self::new(
            tenant,
            None,
            vec![Role::Admin],
            Vec::<String>::new(),
            AccessContext::default(),
        )
    }

    /// An end user of `tenant` owning `addresses`.
    pub fn end_user<S: Into<String>>(
        tenant: TenantId,
        addresses: impl IntoIterator<Item = S>,
    ) -> Self {
        Self::new(
            tenant,
            None,
            vec![Role::EndUser],
            addresses,
            AccessContext::default(),
        )
    }

    /// The same principal acting through `context` (frontend, source).
    pub fn with_context(mut self, context: AccessContext) -> Self {
        self.context = context;
        self
    }

    /// The user id, `None` for the operator or an embedding program.
    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }

    /// Through which frontend and from where the principal acts.
    pub fn context(&self) -> &AccessContext {
        &self.context
    }

    /// Whether the principal may archive mail (API keys and admins).
    pub fn may_ingest(&self) -> bool {
        self.has(Role::Ingest) || self.has(Role::Admin)
    }

    /// Refuses unless the principal is an admin.
    pub(crate) fn require_admin(&self, what: &str) -> Result<()> {
        if self.has(Role::Admin) {
            Ok(())
        } else {
            Err(Error::AccessDenied(format!("only an admin may {what}")))
        }
    }

    /// Refuses unless the principal is an auditor.
    pub(crate) fn require_auditor(&self, what: &str) -> Result<()> {
        if self.has(Role::Auditor) {
            Ok(())
        } else {
            Err(Error::AccessDenied(format!("only an auditor may {what}")))
        }
    }

    /// The tenant this principal acts in.
    pub fn tenant(&self) -> &TenantId {
        &self.tenant
    }

    /// The principal's roles.
    pub fn roles(&self) -> &[Role] {
        &self.roles
    }

    /// The principal's own addresses (end users).
    pub fn addresses(&self) -> &[String] {
        &self.addresses
    }

    fn has(&self, r: Role) -> bool {
        self.roles.contains(&r)
    }

    /// Whether the principal may manage tenant configuration.
    pub fn is_admin(&self) -> bool {
        self.has(Role::Admin)
    }

    /// The search scope for this principal, or why it may not read mail.
    pub(crate) fn mail_scope(&self) -> Result<Scope<'_>> {
        if self.has(Role::Auditor) {
            Ok(Scope::All)
        } else if self.has(Role::EndUser) {
            Ok(Scope::Parties(&self.addresses))
        } else {
            Err(Error::AccessDenied(
                "this principal may not read mail (an admin also needs the auditor role)".into(),
            ))
        }
    }

    /// Checks that the principal may read `info`, returning it redacted for
    /// this principal, or `NotFound`/`AccessDenied`.
    pub(crate) fn admit(&self, mut info: MessageInfo) -> Result<MessageInfo> {
        match self.mail_scope()? {
            Scope::All => Ok(info),
            Scope::Parties(own) => {
                let parties = crate::index::parties(&info);
                if !parties.iter().any(|p| own.contains(p)) {
                    return Err(Error::NotFound(info.id));
                }
                for d in &mut info.deliveries {
                    d.rcpt_to.retain(|r| own.contains(&r.trim().to_lowercase()));
                }
                Ok(info)
            }
        }
    }
}
