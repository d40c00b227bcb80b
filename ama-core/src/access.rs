//! Who may see what. Every read of mail goes through a [`Principal`], and
//! the rules are enforced here, in the core, so the CLI, HTTP, SMTP and
//! Python frontends cannot disagree:
//!
//! - an **auditor** reads all mail of the tenant;
//! - an **end user** reads only mail where one of his addresses is a
//!   sender, a recipient or an envelope recipient — and sees only his own
//!   envelope recipients, never the other Bcc recipients;
//! - an **admin** manages the tenant but reads no mail content (an admin who
//!   must read mail also needs the auditor role).
//!
//! A principal is bound to one tenant; no call lets it reach another. A
//! message the principal may not see is reported as not found, so its
//! existence does not leak.

use crate::error::{Error, Result};
use crate::index::Scope;
use crate::message::MessageInfo;
use crate::tenant::TenantId;

/// A role a principal holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Role {
    /// Reads only his own mail.
    EndUser,
    /// Reads all mail of the tenant.
    Auditor,
    /// Manages the tenant; no mail content.
    Admin,
}

/// An authenticated identity acting within one tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    tenant: TenantId,
    roles: Vec<Role>,
    addresses: Vec<String>,
}

impl Principal {
    /// An auditor of `tenant` (what the `ama` operator CLI acts as).
    pub fn auditor(tenant: TenantId) -> Self {
        Principal {
            tenant,
            roles: vec![Role::Auditor],
            addresses: vec![],
        }
    }

    /// An admin of `tenant`: configuration, no mail content.
    pub fn admin(tenant: TenantId) -> Self {
        Principal {
            tenant,
            roles: vec![Role::Admin],
            addresses: vec![],
        }
    }

    /// An end user of `tenant` owning `addresses`.
    pub fn end_user<S: Into<String>>(
        tenant: TenantId,
        addresses: impl IntoIterator<Item = S>,
    ) -> Self {
        Principal {
            tenant,
            roles: vec![Role::EndUser],
            addresses: addresses
                .into_iter()
                .map(|a| a.into().trim().to_lowercase())
                .filter(|a| !a.is_empty())
                .collect(),
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
                "this role manages the tenant but may not read mail (the auditor role is needed)"
                    .into(),
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
