//! Users, logins, sessions and API keys: how a person or a machine becomes a
//! [`Principal`].
//!
//! Everything a frontend needs is one call: [`Archive::login`] (user +
//! password → [`Session`]) and then [`Archive::authenticate`] (session token
//! or API key → `Principal`) on every request. The rules live here so that
//! HTTP, Python and the CLI enforce the same ones:
//!
//! - **Users per tenant** with roles (end user, auditor, admin; several at
//!   once), their own addresses (the mail an end user may see), and a state
//!   (active/disabled). Admins manage users; only auditors read all mail.
//! - **Local passwords** are hashed with argon2id; the parameters are stored
//!   with each hash and upgraded at the next successful login when the
//!   archive's parameters changed. The policy refuses short passwords, the
//!   user id, and a built-in list of common passwords. Verification compares
//!   in constant time, and an unknown user costs the same hash as a known
//!   one, so timing does not tell which users exist.
//! - **Lockout**: after `max_failures` failed logins in a row, per user
//!   (kept in the catalog) and per source address (kept in memory), logins
//!   are refused for a delay that doubles with each further failure.
//! - **Directory login** (LDAP): a tenant may name a directory; its users
//!   log in with their directory password through an [`Authenticator`] (the
//!   `ama-ldap` crate implements one), their groups mapped to roles and
//!   their `mail` attributes to addresses at every login.
//! - **Sessions** are random tokens stored only as their SHA-256, expiring
//!   after a lifetime and after idle time, revocable ([`Archive::logout`]).
//!   **API keys** are scoped to one tenant and to ingest only.
//!
//! Every login, logout and change here writes one audit entry (see
//! [`crate::audit`]). Records are sealed with the tenant's `identity`
//! subkey; users are keyed by a keyed hash of their id, credentials by the
//! hash of the token, so the catalog's keys reveal neither.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use time::OffsetDateTime;
use zeroize::Zeroizing;

use crate::access::{Principal, Role};
use crate::archive::{Archive, TenantState};
use crate::audit::{AccessContext, AuditAction, AuditActor, Outcome};
use crate::catalog::{self, HashedTable, TenantTable, WriteTxn};
use crate::crypto;
use crate::error::{Error, IdentityError, Result};
use crate::keys::KdfParams;
use crate::message::{Envelope, Receipt};
use crate::tenant::TenantId;

/// Login and session rules of an archive.
#[derive(Debug, Clone)]
pub struct IdentityOptions {
    /// argon2id cost of new password hashes.
    pub password_kdf: KdfParams,
    /// Shortest accepted password, in characters.
    pub min_password_chars: usize,
    /// Failed logins in a row (per user, per source address) before lockout.
    pub max_failures: u32,
    /// First lockout delay in seconds; doubles with each further failure.
    pub lockout_base_secs: u64,
    /// Longest lockout delay in seconds.
    pub lockout_max_secs: u64,
    /// Lifetime of a session in seconds.
    pub session_ttl_secs: u64,
    /// A session unused for this long (seconds) expires.
    pub session_idle_secs: u64,
}

impl Default for IdentityOptions {
    /// argon2id 19 MiB × 2 passes (OWASP's minimum), 12-character passwords,
    /// 5 failures then 30 s doubling up to 1 h, 8 h sessions, 30 min idle.
    fn default() -> Self {
        IdentityOptions {
            password_kdf: KdfParams {
                m_cost: 19 * 1024,
                t_cost: 2,
                p_cost: 1,
            },
            min_password_chars: 12,
            max_failures: 5,
            lockout_base_secs: 30,
            lockout_max_secs: 3600,
            session_ttl_secs: 8 * 3600,
            session_idle_secs: 30 * 60,
        }
    }
}

/// Where a user's identity comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum UserSource {
    /// Created in the archive, with a local password.
    Local,
    /// Created at first login from the tenant's directory; roles and
    /// addresses are refreshed from it at every login.
    Directory,
}

/// A user as shown to admins (no password material).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// The login name.
    pub id: String,
    /// Display name.
    pub display_name: String,
    /// The user's own mail addresses (what an end user may read).
    pub addresses: Vec<String>,
    /// Roles held.
    pub roles: Vec<Role>,
    /// Whether the user may log in.
    pub active: bool,
    /// Local or from the directory.
    pub source: UserSource,
    /// Whether a local password is set.
    pub has_password: bool,
    /// Last successful login (Unix seconds).
    pub last_login: Option<i64>,
}

/// What [`Archive::add_user`] creates.
#[derive(Debug, Clone, Default)]
pub struct UserSpec {
    /// The login name: 1–100 characters of letters, digits and `._@+-`.
    pub id: String,
    /// Display name (defaults to the id).
    pub display_name: Option<String>,
    /// The user's own mail addresses.
    pub addresses: Vec<String>,
    /// Roles (at least one).
    pub roles: Vec<Role>,
    /// Initial password (checked against the policy); without one the user
    /// cannot log in locally until one is set.
    pub password: Option<String>,
}

/// A logged-in session. The token is shown once and stored only as a hash.
#[derive(Clone)]
pub struct Session {
    /// The bearer token (`amas_<tenant>_<secret>`).
    pub token: String,
    /// The tenant.
    pub tenant: TenantId,
    /// The user id.
    pub user: String,
    /// Roles at login.
    pub roles: Vec<Role>,
    /// When the session ends at the latest.
    pub expires_at: OffsetDateTime,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("tenant", &self.tenant)
            .field("user", &self.user)
            .field("roles", &self.roles)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// An API key for machine ingest. The token is shown once.
#[derive(Clone)]
pub struct ApiKey {
    /// The bearer token (`amak_<tenant>_<secret>`); `None` when listed.
    pub token: Option<String>,
    /// Short public id (for revocation).
    pub id: String,
    /// The tenant it may ingest into.
    pub tenant: TenantId,
    /// What it is for.
    pub name: String,
    /// When it was created (Unix seconds).
    pub created_at: i64,
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKey")
            .field("id", &self.id)
            .field("tenant", &self.tenant)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// How to reach and read a tenant's directory. Stored sealed in the catalog
/// (it may hold a service account's password).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectoryConfig {
    /// `ldap://host:port` (with `starttls`) or `ldaps://host:port`.
    pub url: String,
    /// Upgrade `ldap://` with StartTLS.
    pub starttls: bool,
    /// PEM of the CA that signed the directory's certificate (system roots when `None`).
    pub ca_cert_pem: Option<String>,
    /// How to find and bind as the user.
    pub bind: DirectoryBind,
    /// Where groups live (search for groups naming the user as `member` or
    /// `uniqueMember`); `None` reads only the user's `memberOf`.
    pub group_base: Option<String>,
    /// Group DN (case-insensitive) → role granted to its members.
    pub group_roles: Vec<(String, Role)>,
    /// Attributes holding the user's addresses.
    pub address_attributes: Vec<String>,
}

impl std::fmt::Debug for DirectoryConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirectoryConfig")
            .field("url", &self.url)
            .field("starttls", &self.starttls)
            .field("bind", &self.bind)
            .field("group_base", &self.group_base)
            .field("group_roles", &self.group_roles)
            .field("address_attributes", &self.address_attributes)
            .finish_non_exhaustive()
    }
}

/// How a directory login binds.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum DirectoryBind {
    /// Bind directly as the DN made from a template with `{user}`
    /// (e.g. `uid={user},ou=people,dc=example,dc=org`).
    Template {
        /// The DN template.
        dn: String,
    },
    /// Bind as a service account, search the user, then bind as him.
    Search {
        /// Service account DN.
        service_dn: String,
        /// Service account password.
        service_password: String,
        /// Where to search.
        base: String,
        /// Filter with `{user}` (e.g. `(uid={user})`).
        filter: String,
    },
}

impl std::fmt::Debug for DirectoryBind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DirectoryBind::Template { dn } => f.debug_struct("Template").field("dn", dn).finish(),
            DirectoryBind::Search {
                service_dn,
                base,
                filter,
                ..
            } => f
                .debug_struct("Search")
                .field("service_dn", service_dn)
                .field("base", base)
                .field("filter", filter)
                .finish_non_exhaustive(),
        }
    }
}

/// Who a directory says a user is.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DirectoryIdentity {
    /// The user's DN.
    pub dn: String,
    /// Display name (`displayName` or `cn`).
    pub display_name: Option<String>,
    /// Addresses from the configured attributes (`smtp:` prefixes removed).
    pub addresses: Vec<String>,
    /// DNs of the groups the user is a member of.
    pub groups: Vec<String>,
}

/// Why a directory refused or failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DirectoryError {
    /// Wrong password or no such user.
    #[error("invalid credentials")]
    InvalidCredentials,
    /// The directory cannot be reached or answered with an error.
    #[error("directory unavailable: {0}")]
    Unavailable(String),
    /// The configuration is unusable (bad URL, bad CA, bad template).
    #[error("directory configuration: {0}")]
    Config(String),
}

/// Verifies a password against a customer's directory.
///
/// Contract: `authenticate` returns `Ok` only when the directory accepted
/// exactly this user and password (an empty password is never accepted:
/// LDAP treats it as an anonymous bind); it never caches a password; it
/// returns within the directory's timeouts. Implementations are `Send +
/// Sync` and may block.
pub trait Authenticator: Send + Sync {
    /// Checks `user`/`password` against the directory of `config`.
    fn authenticate(
        &self,
        config: &DirectoryConfig,
        user: &str,
        password: &str,
    ) -> std::result::Result<DirectoryIdentity, DirectoryError>;
}

// ----- stored records ---------------------------------------------------------

#[derive(Clone, Serialize, Deserialize)]
struct PasswordHash {
    params: KdfParams,
    salt: [u8; 16],
    hash: [u8; 32],
}

#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct UserRecord {
    id: String,
    display_name: String,
    addresses: Vec<String>,
    roles: Vec<Role>,
    active: bool,
    source: UserSource,
    password: Option<PasswordHash>,
    failures: u32,
    locked_until: i64,
    created_at: i64,
    last_login: Option<i64>,
}

impl UserRecord {
    fn view(&self) -> User {
        User {
            id: self.id.clone(),
            display_name: self.display_name.clone(),
            addresses: self.addresses.clone(),
            roles: self.roles.clone(),
            active: self.active,
            source: self.source,
            has_password: self.password.is_some(),
            last_login: self.last_login,
        }
    }
}

#[derive(Clone, Serialize, Deserialize)]
pub(crate) enum Credential {
    Session {
        user_key: [u8; 32],
        created: i64,
        last_used: i64,
        expires: i64,
    },
    ApiKey {
        id: String,
        name: String,
        created: i64,
    },
}

/// In-memory state: per-source failures and the directory connector.
#[derive(Default)]
pub(crate) struct IdentityRuntime {
    sources: Mutex<HashMap<(TenantId, String), (u32, i64)>>,
    authenticator: RwLock<Option<Arc<dyn Authenticator>>>,
}

const COMMON_PASSWORDS: &[&str] = &[
    "password",
    "password1",
    "password12",
    "password123",
    "password1234",
    "password12345",
    "passwordpassword",
    "123456789012",
    "1234567890123",
    "12345678901234",
    "qwertyuiop12",
    "qwertyuiop123",
    "qwertyuiopasdf",
    "qwerty123456",
    "1q2w3e4r5t6y",
    "1qaz2wsx3edc",
    "zaq12wsxcde3",
    "iloveyou1234",
    "letmein12345",
    "welcome12345",
    "welcome123456",
    "administrator",
    "admin1234567",
    "adminadmin12",
    "changeme1234",
    "trustno11234",
    "abcdefghijkl",
    "abc123456789",
    "monkey123456",
    "football1234",
    "baseball1234",
    "sunshine1234",
    "princess1234",
    "superman1234",
    "dragon123456",
    "starwars1234",
    "passw0rd1234",
    "p@ssw0rd1234",
    "p@ssword1234",
    "correcthorsebatterystaple",
    "correct horse battery staple",
    "summer2024!!",
    "winter2024!!",
    "spring2025!!",
    "autumn2025!!",
    "sommer2024!!",
    "passwort1234",
    "passwort12345",
    "hallo1234567",
    "geheim123456",
    "qwertzuiop12",
    "asdfghjkl123",
    "000000000000",
    "111111111111",
    "123123123123",
    "987654321098",
    "letmeinplease",
    "masterpassword",
];

fn now() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp()
}

/// The user id inside a user record's plaintext (for re-keying the users
/// table when the tenant key is rotated: its keys are keyed hashes of ids).
pub(crate) fn user_id_of(plain: &[u8]) -> Result<String> {
    let rec: UserRecord = catalog::decode_value(plain, "user record")?;
    Ok(rec.id)
}

/// The user table key of a user id under an identity key.
pub(crate) fn user_key_with(identity: &crate::crypto::SecretKey, id: &str) -> [u8; 32] {
    crypto::keyed_hash(identity, id.to_lowercase().as_bytes())
}

pub(crate) fn user_aad(tenant: &TenantId, key: &[u8]) -> Vec<u8> {
    format!("ama/user/v1|{tenant}|{}", crypto::hex(key)).into_bytes()
}

pub(crate) fn credential_aad(tenant: &TenantId, key: &[u8]) -> Vec<u8> {
    format!("ama/credential/v1|{tenant}|{}", crypto::hex(key)).into_bytes()
}

pub(crate) fn directory_aad(tenant: &TenantId) -> Vec<u8> {
    format!("ama/directory/v1|{tenant}").into_bytes()
}

/// Checks a user id's form.
fn check_user_id(id: &str) -> Result<String> {
    let id = id.trim();
    let ok = !id.is_empty()
        && id.chars().count() <= 100
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._@+-".contains(c));
    if ok {
        Ok(id.to_string())
    } else {
        Err(IdentityError::InvalidUserId(id.chars().take(100).collect()).into())
    }
}

fn normalize_address(a: &str) -> Result<String> {
    let a = a.trim().to_lowercase();
    let ok = a.len() <= 254
        && a.split_once('@').is_some_and(|(l, d)| {
            !l.is_empty() && !d.is_empty() && !a.chars().any(|c| c.is_whitespace() || c == '<')
        });
    if ok {
        Ok(a)
    } else {
        Err(IdentityError::InvalidAddress(a.chars().take(100).collect()).into())
    }
}

/// Checks a password against the policy, saying why it is refused.
pub fn check_password_policy(opts: &IdentityOptions, user: &str, password: &str) -> Result<()> {
    let weak = |why: String| Err(IdentityError::WeakPassword(why).into());
    let n = password.chars().count();
    if n < opts.min_password_chars {
        return weak(format!(
            "it has {n} characters; at least {} are required",
            opts.min_password_chars
        ));
    }
    if n > 1024 {
        return weak("it is longer than 1024 characters".into());
    }
    let lower = password.to_lowercase();
    if lower == user.to_lowercase() {
        return weak("it is the same as the user id".into());
    }
    if COMMON_PASSWORDS.contains(&lower.as_str()) {
        return weak("it is on the list of commonly used passwords".into());
    }
    let mut chars = lower.chars();
    if let Some(first) = chars.next()
        && chars.all(|c| c == first)
    {
        return weak("it repeats a single character".into());
    }
    Ok(())
}

fn hash_password(params: KdfParams, salt: &[u8; 16], password: &str) -> Result<[u8; 32]> {
    let p = argon2::Params::new(params.m_cost, params.t_cost, params.p_cost, Some(32))
        .map_err(|e| IdentityError::PasswordHash(e.to_string()))?;
    let a2 = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, p);
    let mut out = Zeroizing::new([0u8; 32]);
    a2.hash_password_into(password.as_bytes(), salt, out.as_mut())
        .map_err(|e| IdentityError::PasswordHash(e.to_string()))?;
    Ok(*out)
}

fn new_password_hash(params: KdfParams, password: &str) -> Result<PasswordHash> {
    let mut salt = [0u8; 16];
    crypto::random_fill(&mut salt)?;
    Ok(PasswordHash {
        params,
        salt,
        hash: hash_password(params, &salt, password)?,
    })
}

fn verify_password(stored: &PasswordHash, password: &str) -> Result<bool> {
    let h = hash_password(stored.params, &stored.salt, password)?;
    Ok(bool::from(h.ct_eq(&stored.hash)))
}

fn new_token(kind: &str, tenant: &TenantId) -> Result<String> {
    let mut secret = Zeroizing::new([0u8; 32]);
    crypto::random_fill(secret.as_mut())?;
    Ok(format!("{kind}_{tenant}_{}", crypto::hex(secret.as_ref())))
}

/// The tenant a token claims (not yet checked).
fn token_tenant(token: &str) -> Option<TenantId> {
    let mut parts = token.splitn(3, '_');
    let kind = parts.next()?;
    let tenant = parts.next()?;
    let secret = parts.next()?;
    if !(kind == "amas" || kind == "amak") || secret.len() != 64 {
        return None;
    }
    TenantId::new(tenant).ok()
}

fn lockout_delay(opts: &IdentityOptions, failures: u32) -> Option<u64> {
    if failures < opts.max_failures.max(1) {
        return None;
    }
    let extra = (failures - opts.max_failures.max(1)).min(30);
    Some(
        opts.lockout_base_secs
            .saturating_mul(1u64 << extra)
            .min(opts.lockout_max_secs),
    )
}

const BAD_LOGIN: &str = "wrong user or password";
const BAD_TOKEN: &str = "invalid, expired or revoked token";

impl Archive {
    fn identity_opts(&self) -> &IdentityOptions {
        &self.options().identity
    }

    /// Installs the connector used for tenants with a directory configured
    /// (e.g. `ama_ldap::LdapAuthenticator`).
    pub fn set_authenticator(&self, auth: Arc<dyn Authenticator>) {
        if let Ok(mut a) = self.identity_runtime().authenticator.write() {
            *a = Some(auth);
        }
    }

    fn user_key(state: &TenantState, id: &str) -> [u8; 32] {
        user_key_with(&state.keys.identity, id)
    }

    fn load_user(
        txn: &impl HashedRead,
        state: &TenantState,
        key: &[u8; 32],
    ) -> Result<Option<UserRecord>> {
        let tenant = &state.record.tenant.id;
        match txn.get(HashedTable::Users, tenant.as_str(), key)? {
            None => Ok(None),
            Some(sealed) => {
                let plain = crypto::open(
                    &state.keys.identity,
                    &user_aad(tenant, key),
                    &sealed,
                    "user record",
                )?;
                Ok(Some(catalog::decode_value(&plain, "user record")?))
            }
        }
    }

    fn store_user(txn: &mut WriteTxn, state: &TenantState, rec: &UserRecord) -> Result<()> {
        let tenant = &state.record.tenant.id;
        let key = Self::user_key(state, &rec.id);
        let sealed = crypto::seal(
            &state.keys.identity,
            &user_aad(tenant, &key),
            &catalog::encode_value(rec)?,
        )?;
        txn.put_hashed(HashedTable::Users, tenant.as_str(), &key, &sealed)
    }

    fn store_credential(
        txn: &mut WriteTxn,
        state: &TenantState,
        token_hash: &[u8; 32],
        cred: &Credential,
    ) -> Result<()> {
        let tenant = &state.record.tenant.id;
        let sealed = crypto::seal(
            &state.keys.identity,
            &credential_aad(tenant, token_hash),
            &catalog::encode_value(cred)?,
        )?;
        txn.put_hashed(
            HashedTable::Credentials,
            tenant.as_str(),
            token_hash,
            &sealed,
        )
    }

    fn open_credential(state: &TenantState, key: &[u8], sealed: &[u8]) -> Result<Credential> {
        let tenant = &state.record.tenant.id;
        let plain = crypto::open(
            &state.keys.identity,
            &credential_aad(tenant, key),
            sealed,
            "credential record",
        )?;
        catalog::decode_value(&plain, "credential record")
    }

    /// Runs a state change for `who` in one transaction with its audit
    /// entry; a refused or failed change is rolled back and still recorded.
    pub(crate) fn audited_change<T>(
        &self,
        who: &Principal,
        action: AuditAction,
        detail: String,
        change: impl FnOnce(&mut WriteTxn, &TenantState) -> Result<T>,
    ) -> Result<T> {
        let state = self.state(who.tenant())?;
        let mut txn = self.catalog().write()?;
        match change(&mut txn, &state) {
            Ok(v) => {
                self.append_audit(
                    &mut txn,
                    &state,
                    AuditActor::of(who),
                    action,
                    detail,
                    &[],
                    Outcome::Success,
                )?;
                txn.commit()?;
                Ok(v)
            }
            Err(e) => {
                drop(txn);
                let r: Result<()> = Err(e);
                let outcome = Outcome::of(&r);
                let mut txn = self.catalog().write()?;
                self.append_audit(
                    &mut txn,
                    &state,
                    AuditActor::of(who),
                    action,
                    detail,
                    &[],
                    outcome,
                )?;
                txn.commit()?;
                match r {
                    Err(e) => Err(e),
                    Ok(()) => unreachable!("r was built from an error"),
                }
            }
        }
    }

    // ----- users -------------------------------------------------------------

    /// Adds a user (admins only).
    pub fn add_user(&self, who: &Principal, spec: UserSpec) -> Result<User> {
        let detail = format!("add user {}", spec.id.chars().take(100).collect::<String>());
        self.audited_change(who, AuditAction::UserChange, detail, |txn, state| {
            who.require_admin("add users")?;
            let id = check_user_id(&spec.id)?;
            if spec.roles.is_empty() {
                return Err(IdentityError::NoRoles(id).into());
            }
            let addresses = spec
                .addresses
                .iter()
                .map(|a| normalize_address(a))
                .collect::<Result<Vec<_>>>()?;
            let key = Self::user_key(state, &id);
            if Self::load_user(txn, state, &key)?.is_some() {
                return Err(IdentityError::UserExists(id).into());
            }
            let password = match &spec.password {
                Some(p) => {
                    check_password_policy(self.identity_opts(), &id, p)?;
                    Some(new_password_hash(self.identity_opts().password_kdf, p)?)
                }
                None => None,
            };
            let mut roles = spec.roles.clone();
            roles.dedup();
            let rec = UserRecord {
                display_name: spec
                    .display_name
                    .clone()
                    .filter(|d| !d.trim().is_empty())
                    .unwrap_or_else(|| id.clone()),
                id,
                addresses,
                roles,
                active: true,
                source: UserSource::Local,
                password,
                failures: 0,
                locked_until: 0,
                created_at: now(),
                last_login: None,
            };
            Self::store_user(txn, state, &rec)?;
            Ok(rec.view())
        })
    }

    /// Every user of the principal's tenant (admins only), by id.
    pub fn users(&self, who: &Principal) -> Result<Vec<User>> {
        who.require_admin("list users")?;
        let state = self.state(who.tenant())?;
        let rtxn = self.catalog().read()?;
        let tenant = &state.record.tenant.id;
        let mut out = Vec::new();
        for (key, sealed) in rtxn.hashed_all(HashedTable::Users, tenant.as_str())? {
            let plain = crypto::open(
                &state.keys.identity,
                &user_aad(tenant, &key),
                &sealed,
                "user record",
            )?;
            let rec: UserRecord = catalog::decode_value(&plain, "user record")?;
            out.push(rec.view());
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    /// One user (admins only).
    pub fn user(&self, who: &Principal, id: &str) -> Result<User> {
        who.require_admin("read users")?;
        let state = self.state(who.tenant())?;
        let rtxn = self.catalog().read()?;
        Self::load_user(&rtxn, &state, &Self::user_key(&state, id))?
            .map(|r| r.view())
            .ok_or_else(|| IdentityError::UnknownUser(id.chars().take(100).collect()).into())
    }

    fn change_user(
        &self,
        who: &Principal,
        id: &str,
        what: String,
        f: impl FnOnce(&mut UserRecord) -> Result<()>,
    ) -> Result<User> {
        let detail = format!("user {}: {what}", id.chars().take(100).collect::<String>());
        self.audited_change(who, AuditAction::UserChange, detail, |txn, state| {
            who.require_admin("change users")?;
            let key = Self::user_key(state, id);
            let mut rec = Self::load_user(txn, state, &key)?
                .ok_or_else(|| IdentityError::UnknownUser(id.chars().take(100).collect()))?;
            f(&mut rec)?;
            Self::store_user(txn, state, &rec)?;
            Ok(rec.view())
        })
    }

    /// Sets a user's local password (admins only; checked against the
    /// policy). Clears a lockout.
    pub fn set_password(&self, who: &Principal, id: &str, password: &str) -> Result<User> {
        let opts = self.identity_opts().clone();
        self.change_user(who, id, "password set".into(), |rec| {
            check_password_policy(&opts, &rec.id, password)?;
            rec.password = Some(new_password_hash(opts.password_kdf, password)?);
            rec.failures = 0;
            rec.locked_until = 0;
            Ok(())
        })
    }

    /// Enables or disables a user (admins only). Disabling ends his sessions
    /// at their next use.
    pub fn set_user_active(&self, who: &Principal, id: &str, active: bool) -> Result<User> {
        let what = if active { "enabled" } else { "disabled" };
        self.change_user(who, id, what.into(), |rec| {
            rec.active = active;
            if active {
                rec.failures = 0;
                rec.locked_until = 0;
            }
            Ok(())
        })
    }

    /// Grants a role (admins only).
    pub fn grant_role(&self, who: &Principal, id: &str, role: Role) -> Result<User> {
        self.change_user(who, id, format!("role {role} granted"), |rec| {
            if !rec.roles.contains(&role) {
                rec.roles.push(role);
            }
            Ok(())
        })
    }

    /// Revokes a role (admins only; a user keeps at least one role).
    pub fn revoke_role(&self, who: &Principal, id: &str, role: Role) -> Result<User> {
        self.change_user(who, id, format!("role {role} revoked"), |rec| {
            if rec.roles == [role] {
                return Err(IdentityError::NoRoles(rec.id.clone()).into());
            }
            rec.roles.retain(|r| *r != role);
            Ok(())
        })
    }

    /// Adds one of the user's own addresses (admins only).
    pub fn add_address(&self, who: &Principal, id: &str, address: &str) -> Result<User> {
        let a = normalize_address(address);
        self.change_user(who, id, "address added".into(), |rec| {
            let a = a?;
            if !rec.addresses.contains(&a) {
                rec.addresses.push(a);
            }
            Ok(())
        })
    }

    /// Removes one of the user's addresses (admins only).
    pub fn remove_address(&self, who: &Principal, id: &str, address: &str) -> Result<User> {
        let a = address.trim().to_lowercase();
        self.change_user(who, id, "address removed".into(), |rec| {
            rec.addresses.retain(|x| *x != a);
            Ok(())
        })
    }

    // ----- directory -----------------------------------------------------------

    /// Sets (or with `None` removes) the tenant's directory for logins
    /// (admins only).
    pub fn set_directory(&self, who: &Principal, config: Option<DirectoryConfig>) -> Result<()> {
        let detail = match &config {
            Some(c) => format!("directory set to {}", c.url),
            None => "directory removed".into(),
        };
        self.audited_change(who, AuditAction::DirectoryChange, detail, |txn, state| {
            who.require_admin("configure the directory")?;
            let tenant = &state.record.tenant.id;
            match &config {
                Some(c) => {
                    if !(c.url.starts_with("ldap://") || c.url.starts_with("ldaps://")) {
                        return Err(IdentityError::Directory(format!(
                            "URL {:?} is neither ldap:// nor ldaps://",
                            c.url
                        ))
                        .into());
                    }
                    let sealed = crypto::seal(
                        &state.keys.identity,
                        &directory_aad(tenant),
                        &catalog::encode_value(c)?,
                    )?;
                    txn.put_tenant_value(TenantTable::Directory, tenant.as_str(), &sealed)
                }
                None => txn.remove_tenant_value(TenantTable::Directory, tenant.as_str()),
            }
        })
    }

    /// The tenant's directory configuration (admins only).
    pub fn directory(&self, who: &Principal) -> Result<Option<DirectoryConfig>> {
        who.require_admin("read the directory configuration")?;
        let state = self.state(who.tenant())?;
        let rtxn = self.catalog().read()?;
        Self::load_directory(&rtxn, &state)
    }

    fn load_directory(
        txn: &impl HashedRead,
        state: &TenantState,
    ) -> Result<Option<DirectoryConfig>> {
        let tenant = &state.record.tenant.id;
        match txn.tenant_value(TenantTable::Directory, tenant.as_str())? {
            None => Ok(None),
            Some(sealed) => {
                let plain = crypto::open(
                    &state.keys.identity,
                    &directory_aad(tenant),
                    &sealed,
                    "directory configuration",
                )?;
                Ok(Some(catalog::decode_value(
                    &plain,
                    "directory configuration",
                )?))
            }
        }
    }

    // ----- login -------------------------------------------------------------

    /// Logs `user` in with a password: local users against their argon2id
    /// hash, others against the tenant's directory. Returns a session whose
    /// token [`Archive::authenticate`] turns into a principal.
    ///
    /// Refusals are [`Error::Unauthenticated`] with one message whatever was
    /// wrong (unknown user, wrong password, disabled), or
    /// [`Error::LockedOut`] while a lockout lasts. Every attempt on an
    /// existing tenant writes one `login` audit entry.
    pub fn login(
        &self,
        tenant: &TenantId,
        user: &str,
        password: &str,
        ctx: &AccessContext,
    ) -> Result<Session> {
        let state = match self.state(tenant) {
            Ok(s) => s,
            Err(Error::Tenant(_)) => return Err(Error::Unauthenticated(BAD_LOGIN.into())),
            Err(e) => return Err(e),
        };
        let opts = self.identity_opts().clone();
        let actor = AuditActor::anonymous(user, ctx);
        let t = now();
        let record = |archive: &Archive, outcome: Outcome, user_update: Option<&UserRecord>| {
            let mut txn = archive.catalog().write()?;
            if let Some(rec) = user_update {
                Self::store_user(&mut txn, &state, rec)?;
            }
            archive.append_audit(
                &mut txn,
                &state,
                actor.clone(),
                AuditAction::Login,
                String::new(),
                &[],
                outcome,
            )?;
            txn.commit()
        };

        // Lockout by source address.
        let source_key = ctx.source.clone().map(|s| (tenant.clone(), s));
        if let Some(k) = &source_key {
            let locked = self
                .identity_runtime()
                .sources
                .lock()
                .ok()
                .and_then(|m| m.get(k).copied())
                .filter(|(_, until)| *until > t);
            if let Some((_, until)) = locked {
                let e = Error::LockedOut {
                    retry_after_secs: (until - t) as u64,
                };
                record(self, Outcome::Denied(format!("{e} (source address)")), None)?;
                return Err(e);
            }
        }

        let id = user.trim();
        let key = Self::user_key(&state, id);
        let (existing, directory) = {
            let rtxn = self.catalog().read()?;
            (
                Self::load_user(&rtxn, &state, &key)?,
                Self::load_directory(&rtxn, &state)?,
            )
        };
        if let Some(rec) = existing.as_ref().filter(|r| r.locked_until > t) {
            let e = Error::LockedOut {
                retry_after_secs: (rec.locked_until - t) as u64,
            };
            record(self, Outcome::Denied(e.to_string()), None)?;
            return Err(e);
        }

        // Verify: local hash, directory, or a dummy hash for unknown users.
        enum Verdict {
            Local,
            Directory(DirectoryIdentity),
            Refused(String),
        }
        let local_hash = existing.as_ref().and_then(|r| r.password.clone());
        let verdict = if password.is_empty() {
            Verdict::Refused("empty password".into())
        } else if let Some(h) = &local_hash {
            if verify_password(h, password)? {
                Verdict::Local
            } else {
                Verdict::Refused("wrong password".into())
            }
        } else if let Some(cfg) = &directory {
            let auth = self
                .identity_runtime()
                .authenticator
                .read()
                .ok()
                .and_then(|a| a.clone());
            match auth {
                None => {
                    let e = IdentityError::Directory(
                        "this tenant logs in through a directory, but this process has no \
                         directory connector"
                            .into(),
                    );
                    record(self, Outcome::Failed(e.to_string()), None)?;
                    return Err(e.into());
                }
                Some(auth) => match auth.authenticate(cfg, id, password) {
                    Ok(identity) => Verdict::Directory(identity),
                    Err(DirectoryError::InvalidCredentials) => {
                        Verdict::Refused("directory refused the credentials".into())
                    }
                    Err(e) => {
                        let e = IdentityError::Directory(e.to_string());
                        record(self, Outcome::Failed(e.to_string()), None)?;
                        return Err(e.into());
                    }
                },
            }
        } else {
            // Same work as a real check, so timing does not reveal the user.
            let _ = hash_password(opts.password_kdf, &[0; 16], password)?;
            Verdict::Refused(if existing.is_some() {
                "no password set".into()
            } else {
                "unknown user".into()
            })
        };

        match verdict {
            Verdict::Refused(why) => {
                let mut note = String::new();
                let mut update = None;
                if let Some(mut rec) = existing {
                    rec.failures = rec.failures.saturating_add(1);
                    if let Some(d) = lockout_delay(&opts, rec.failures) {
                        rec.locked_until = t + d as i64;
                        note = format!("; user locked out for {d} s");
                    }
                    update = Some(rec);
                }
                if let Some(k) = source_key
                    && let Ok(mut m) = self.identity_runtime().sources.lock()
                {
                    let e = m.entry(k).or_insert((0, 0));
                    e.0 = e.0.saturating_add(1);
                    if let Some(d) = lockout_delay(&opts, e.0) {
                        e.1 = t + d as i64;
                        note.push_str(&format!("; source address locked out for {d} s"));
                    }
                }
                record(
                    self,
                    Outcome::Denied(format!("{why}{note}")),
                    update.as_ref(),
                )?;
                Err(Error::Unauthenticated(BAD_LOGIN.into()))
            }
            Verdict::Local | Verdict::Directory(_) => {
                let mut rec = match (&verdict, existing) {
                    (Verdict::Directory(d), existing) => {
                        self.directory_user(existing, id, d, directory.as_ref())
                    }
                    (_, Some(rec)) => rec,
                    (_, None) => {
                        return Err(IdentityError::UnknownUser(id.to_string()).into());
                    }
                };
                if !rec.active {
                    record(self, Outcome::Denied("user is disabled".into()), None)?;
                    return Err(Error::Unauthenticated(BAD_LOGIN.into()));
                }
                if rec.roles.is_empty() {
                    record(
                        self,
                        Outcome::Denied("no directory group maps to a role".into()),
                        Some(&rec),
                    )?;
                    return Err(Error::Unauthenticated(BAD_LOGIN.into()));
                }
                if let (Verdict::Local, Some(h)) = (&verdict, &rec.password)
                    && h.params != opts.password_kdf
                {
                    rec.password = Some(new_password_hash(opts.password_kdf, password)?);
                }
                rec.failures = 0;
                rec.locked_until = 0;
                rec.last_login = Some(t);
                if let Some(k) = &source_key
                    && let Ok(mut m) = self.identity_runtime().sources.lock()
                {
                    m.remove(k);
                }
                let token = new_token("amas", tenant)?;
                let token_hash = crypto::sha256(token.as_bytes());
                let expires = t + opts.session_ttl_secs as i64;
                let cred = Credential::Session {
                    user_key: Self::user_key(&state, &rec.id),
                    created: t,
                    last_used: t,
                    expires,
                };
                let mut txn = self.catalog().write()?;
                Self::store_user(&mut txn, &state, &rec)?;
                Self::store_credential(&mut txn, &state, &token_hash, &cred)?;
                let actor = AuditActor {
                    user: Some(rec.id.clone()),
                    roles: rec.roles.clone(),
                    ..actor.clone()
                };
                self.append_audit(
                    &mut txn,
                    &state,
                    actor,
                    AuditAction::Login,
                    match verdict {
                        Verdict::Directory(_) => "directory".into(),
                        _ => "local".into(),
                    },
                    &[],
                    Outcome::Success,
                )?;
                txn.commit()?;
                Ok(Session {
                    token,
                    tenant: tenant.clone(),
                    user: rec.id.clone(),
                    roles: rec.roles.clone(),
                    expires_at: OffsetDateTime::from_unix_timestamp(expires)
                        .unwrap_or(OffsetDateTime::UNIX_EPOCH),
                })
            }
        }
    }

    /// The user record after a directory login: roles and addresses from
    /// the directory replace what was there (a group change takes effect at
    /// the next login); a local disable stays in force.
    fn directory_user(
        &self,
        existing: Option<UserRecord>,
        id: &str,
        d: &DirectoryIdentity,
        cfg: Option<&DirectoryConfig>,
    ) -> UserRecord {
        let mut roles: Vec<Role> = Vec::new();
        if let Some(cfg) = cfg {
            for (group, role) in &cfg.group_roles {
                if d.groups.iter().any(|g| g.eq_ignore_ascii_case(group)) && !roles.contains(role) {
                    roles.push(*role);
                }
            }
        }
        let addresses: Vec<String> = d
            .addresses
            .iter()
            .filter_map(|a| normalize_address(a).ok())
            .collect();
        let display = d.display_name.clone().unwrap_or_else(|| id.to_string());
        match existing {
            Some(mut rec) => {
                rec.roles = roles;
                rec.addresses = addresses;
                rec.display_name = display;
                rec
            }
            None => UserRecord {
                id: id.to_string(),
                display_name: display,
                addresses,
                roles,
                active: true,
                source: UserSource::Directory,
                password: None,
                failures: 0,
                locked_until: 0,
                created_at: now(),
                last_login: None,
            },
        }
    }

    /// Turns a session token or API key into the principal it stands for,
    /// acting through `ctx`. The one call every frontend makes per request.
    ///
    /// A session is refused once expired, idle too long, logged out, or
    /// when its user was disabled; its roles and addresses are the user's
    /// current ones. An API key yields an ingest-only principal.
    pub fn authenticate(&self, token: &str, ctx: &AccessContext) -> Result<Principal> {
        let bad = || Error::Unauthenticated(BAD_TOKEN.into());
        let tenant = token_tenant(token).ok_or_else(bad)?;
        let state = match self.state(&tenant) {
            Ok(s) => s,
            Err(Error::Tenant(_)) => return Err(bad()),
            Err(e) => return Err(e),
        };
        let token_hash = crypto::sha256(token.as_bytes());
        let rtxn = self.catalog().read()?;
        let sealed = rtxn
            .hashed(HashedTable::Credentials, tenant.as_str(), &token_hash)?
            .ok_or_else(bad)?;
        let cred = Self::open_credential(&state, &token_hash, &sealed)?;
        let t = now();
        match cred {
            Credential::ApiKey { name, .. } => {
                if !token.starts_with("amak_") {
                    return Err(bad());
                }
                Ok(Principal::new(
                    tenant,
                    Some(format!("api-key:{name}")),
                    vec![Role::Ingest],
                    Vec::<String>::new(),
                    ctx.clone(),
                ))
            }
            Credential::Session {
                user_key,
                created,
                last_used,
                expires,
            } => {
                let opts = self.identity_opts();
                if !token.starts_with("amas_")
                    || t >= expires
                    || t - last_used >= opts.session_idle_secs as i64
                {
                    return Err(bad());
                }
                let rec = Self::load_user(&rtxn, &state, &user_key)?
                    .filter(|r| r.active)
                    .ok_or_else(bad)?;
                drop(rtxn);
                if t - last_used >= 60 {
                    // Keep the idle clock; losing this in a crash only
                    // shortens the idle window.
                    let mut txn = self.catalog().write()?;
                    let cred = Credential::Session {
                        user_key,
                        created,
                        last_used: t,
                        expires,
                    };
                    Self::store_credential(&mut txn, &state, &token_hash, &cred)?;
                    txn.commit_lazy()?;
                }
                Ok(Principal::new(
                    tenant,
                    Some(rec.id),
                    rec.roles,
                    rec.addresses,
                    ctx.clone(),
                ))
            }
        }
    }

    /// Ends a session (its token no longer authenticates). One `logout`
    /// audit entry.
    pub fn logout(&self, token: &str, ctx: &AccessContext) -> Result<()> {
        let who = self.authenticate(token, ctx)?;
        let token_hash = crypto::sha256(token.as_bytes());
        self.audited_change(&who, AuditAction::Logout, String::new(), |txn, state| {
            txn.remove_hashed(
                HashedTable::Credentials,
                state.record.tenant.id.as_str(),
                &token_hash,
            )
        })
    }

    // ----- API keys ----------------------------------------------------------

    /// Creates an ingest-only API key for the principal's tenant (admins
    /// only). The token is in the result and nowhere else.
    pub fn create_api_key(&self, who: &Principal, name: &str) -> Result<ApiKey> {
        let name: String = name.trim().chars().take(100).collect();
        let detail = format!("create API key {name:?}");
        self.audited_change(who, AuditAction::ApiKeyChange, detail, |txn, state| {
            who.require_admin("create API keys")?;
            if name.is_empty() {
                return Err(Error::InvalidArgument("an API key needs a name".into()));
            }
            let token = new_token("amak", who.tenant())?;
            let token_hash = crypto::sha256(token.as_bytes());
            let id = crypto::hex(&token_hash[..6]);
            let created = now();
            Self::store_credential(
                txn,
                state,
                &token_hash,
                &Credential::ApiKey {
                    id: id.clone(),
                    name: name.clone(),
                    created,
                },
            )?;
            Ok(ApiKey {
                token: Some(token),
                id,
                tenant: who.tenant().clone(),
                name: name.clone(),
                created_at: created,
            })
        })
    }

    /// The tenant's API keys, without their tokens (admins only).
    pub fn api_keys(&self, who: &Principal) -> Result<Vec<ApiKey>> {
        who.require_admin("list API keys")?;
        let state = self.state(who.tenant())?;
        let rtxn = self.catalog().read()?;
        let mut out = Vec::new();
        for (key, sealed) in rtxn.hashed_all(HashedTable::Credentials, who.tenant().as_str())? {
            if let Credential::ApiKey { id, name, created } =
                Self::open_credential(&state, &key, &sealed)?
            {
                out.push(ApiKey {
                    token: None,
                    id,
                    tenant: who.tenant().clone(),
                    name,
                    created_at: created,
                });
            }
        }
        out.sort_by_key(|a| a.created_at);
        Ok(out)
    }

    /// Revokes an API key by its id (admins only).
    pub fn revoke_api_key(&self, who: &Principal, id: &str) -> Result<()> {
        let detail = format!("revoke API key {}", id.chars().take(40).collect::<String>());
        self.audited_change(who, AuditAction::ApiKeyChange, detail, |txn, state| {
            who.require_admin("revoke API keys")?;
            let tenant = who.tenant().as_str();
            let mut found = None;
            for (key, sealed) in txn.hashed_all(HashedTable::Credentials, tenant)? {
                if let Credential::ApiKey { id: kid, .. } =
                    Self::open_credential(state, &key, &sealed)?
                    && kid == id
                {
                    found = Some(key);
                }
            }
            let key = found.ok_or_else(|| IdentityError::UnknownApiKey(id.into()))?;
            txn.remove_hashed(HashedTable::Credentials, tenant, &key)
        })
    }

    /// Archives one message on behalf of `who` (an API key or an admin):
    /// the HTTP ingest path. Audited like every ingest; a refusal too.
    pub fn ingest_as(&self, who: &Principal, raw: &[u8], envelope: &Envelope) -> Result<Receipt> {
        if !who.may_ingest() {
            let state = self.state(who.tenant())?;
            let e = Error::AccessDenied("this principal may not ingest mail".into());
            self.audit_now(
                &state,
                AuditActor::of(who),
                AuditAction::Ingest,
                String::new(),
                &[],
                Outcome::Denied(e.to_string()),
            )?;
            return Err(e);
        }
        let mut r = self.ingest_batch_by(
            AuditActor::of(who),
            who.tenant(),
            &[(raw, envelope.clone())],
        )?;
        match r.pop() {
            Some(Ok(receipt)) => Ok(receipt),
            Some(Err(e)) => Err(e.into()),
            None => Err(Error::InvalidArgument("empty batch".into())),
        }
    }
}

/// Reads shared by read and write transactions.
pub(crate) trait HashedRead {
    fn get(&self, table: HashedTable, tenant: &str, key: &[u8]) -> Result<Option<Vec<u8>>>;
    fn tenant_value(&self, table: TenantTable, tenant: &str) -> Result<Option<Vec<u8>>>;
}

impl HashedRead for catalog::ReadTxn {
    fn get(&self, table: HashedTable, tenant: &str, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.hashed(table, tenant, key)
    }
    fn tenant_value(&self, table: TenantTable, tenant: &str) -> Result<Option<Vec<u8>>> {
        catalog::ReadTxn::tenant_value(self, table, tenant)
    }
}

impl HashedRead for WriteTxn {
    fn get(&self, table: HashedTable, tenant: &str, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.hashed(table, tenant, key)
    }
    fn tenant_value(&self, table: TenantTable, tenant: &str) -> Result<Option<Vec<u8>>> {
        WriteTxn::tenant_value(self, table, tenant)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_reasons() {
        let o = IdentityOptions::default();
        let why = |p: &str| match check_password_policy(&o, "alice.smith", p) {
            Err(Error::Identity(IdentityError::WeakPassword(w))) => w,
            other => panic!("{other:?}"),
        };
        assert!(why("short").contains("at least 12"));
        assert!(why("Password1234").contains("commonly used"));
        assert!(why("aaaaaaaaaaaaaaa").contains("single character"));
        let long_id = "alice.smith.longname";
        assert!(matches!(
            check_password_policy(&o, long_id, "ALICE.SMITH.LONGNAME"),
            Err(Error::Identity(IdentityError::WeakPassword(w))) if w.contains("user id")
        ));
        assert!(check_password_policy(&o, "alice", "tulip-orbit-canyon-42").is_ok());
    }

    #[test]
    fn lockout_doubles_and_caps() {
        let o = IdentityOptions {
            max_failures: 3,
            lockout_base_secs: 10,
            lockout_max_secs: 35,
            ..Default::default()
        };
        assert_eq!(lockout_delay(&o, 2), None);
        assert_eq!(lockout_delay(&o, 3), Some(10));
        assert_eq!(lockout_delay(&o, 4), Some(20));
        assert_eq!(lockout_delay(&o, 5), Some(35));
        assert_eq!(lockout_delay(&o, 500), Some(35));
    }

    #[test]
    fn tokens_name_their_tenant_and_nothing_else_parses() {
        let t = TenantId::new("acme").unwrap();
        let tok = new_token("amas", &t).unwrap();
        assert_eq!(token_tenant(&tok), Some(t));
        for bad in ["", "amas_acme", "amas_acme_short", "xxxx_acme_", "amas__00"] {
            assert_eq!(token_tenant(bad), None, "{bad}");
        }
    }

    #[test]
    fn password_hash_round_trip() {
        let h = new_password_hash(KdfParams::insecure_fast(), "tulip-orbit-canyon-42").unwrap();
        assert!(verify_password(&h, "tulip-orbit-canyon-42").unwrap());
        assert!(!verify_password(&h, "tulip-orbit-canyon-43").unwrap());
    }
}
