//! # ama-ldap: login through a customer's LDAP directory
//!
//! Customers rarely want a second password database: their people already
//! have an account in OpenLDAP, Active Directory or a similar directory. This
//! crate is the [`Authenticator`] that [`ama_core::Archive::login`] calls for
//! a tenant with a [`DirectoryConfig`]: it binds to the directory as the user
//! (so the directory, not ama, checks the password), reads who he is and
//! which groups he belongs to, and hands that back; the core maps groups to
//! roles and addresses to the mail the user may read, at every login.
//!
//! Why it looks the way it does:
//!
//! * **The engine stays free of tokio.** `ldap3` is tokio-based; this crate
//!   runs each login on a small current-thread runtime of its own (on a
//!   separate thread when the caller is itself inside a tokio runtime), so
//!   `ama-core` and its callers only see a blocking call.
//! * **Two ways to find the user**: a DN template
//!   ([`DirectoryBind::Template`], `uid={user},ou=people,…`, the name escaped
//!   for DN use per RFC 4514) or search-then-bind with a service account
//!   ([`DirectoryBind::Search`], the name escaped for filter use per RFC
//!   4515; exactly one entry must match, anything else is a refusal).
//! * **No anonymous binds by accident.** An empty password turns a simple
//!   bind into an *unauthenticated* bind, which many servers accept; it is
//!   refused here before the server is contacted.
//! * **Encrypted transport.** `ldaps://`, or `ldap://` with StartTLS, is
//!   verified by rustls against the configured CA (PEM) or the system's
//!   trust store. Plain `ldap://` is accepted only to a loopback host (a
//!   directory on the same machine): elsewhere it is a configuration error,
//!   never a silent downgrade. No OpenSSL, no native-tls.
//! * **Bounded in time.** Connecting, each operation and the whole login
//!   have timeouts ([`LdapOptions`]), so an unreachable directory is a clear
//!   [`DirectoryError::Unavailable`] within seconds, not a hung login.
//! * **Errors that say what to fix**: a wrong password or an unknown user is
//!   [`DirectoryError::InvalidCredentials`] (LDAP result 49), a directory
//!   that cannot be reached is [`DirectoryError::Unavailable`], a URL,
//!   template, filter or CA that cannot work is [`DirectoryError::Config`]
//!   (also from [`check_config`], before a configuration is stored).
//!
//! ```no_run
//! use std::sync::Arc;
//! use ama_core::{AccessContext, Archive, DirectoryBind, DirectoryConfig, Principal, Role, TenantId};
//! use ama_ldap::LdapAuthenticator;
//!
//! # fn demo(archive: &Archive, acme: TenantId) -> ama_core::Result<()> {
//! archive.set_authenticator(Arc::new(LdapAuthenticator::new()));
//! let config = DirectoryConfig {
//!     url: "ldaps://ldap.acme.example".into(),
//!     starttls: false,
//!     ca_cert_pem: None, // the system's trust store
//!     bind: DirectoryBind::Template { dn: "uid={user},ou=people,dc=acme,dc=example".into() },
//!     group_base: Some("ou=groups,dc=acme,dc=example".into()),
//!     group_roles: vec![
//!         ("cn=staff,ou=groups,dc=acme,dc=example".into(), Role::EndUser),
//!         ("cn=auditors,ou=groups,dc=acme,dc=example".into(), Role::Auditor),
//!     ],
//!     address_attributes: vec!["mail".into(), "proxyAddresses".into()],
//! };
//! ama_ldap::check_config(&config).expect("a usable configuration");
//! archive.set_directory(&Principal::operator(acme.clone()), Some(config))?;
//! let session = archive.login(&acme, "alice", "her directory password", &AccessContext::default())?;
//! # Ok(())
//! # }
//! ```

#![forbid(unsafe_code)]
#![deny(missing_docs)]

#[cfg(feature = "testing")]
pub mod testing;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use ama_core::{Authenticator, DirectoryBind, DirectoryConfig, DirectoryError, DirectoryIdentity};
use ldap3::asn1::{PL, StructureTag};
use ldap3::{
    Ldap, LdapConnAsync, LdapConnSettings, LdapError, LdapResult, ResultEntry, Scope, SearchOptions,
};
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

/// LDAP result code `invalidCredentials` (RFC 4511).
const RC_INVALID_CREDENTIALS: u32 = 49;
/// LDAP result code `sizeLimitExceeded`.
const RC_SIZE_LIMIT: u32 = 4;
/// LDAP result code `noSuchObject`.
const RC_NO_SUCH_OBJECT: u32 = 32;

/// The longest user name sent to a directory.
const MAX_USER_CHARS: usize = 256;

/// Timeouts of a directory login.
#[derive(Debug, Clone)]
pub struct LdapOptions {
    /// TCP connect plus TLS (or StartTLS) handshake.
    pub connect_timeout: Duration,
    /// Each LDAP operation (bind, search).
    pub operation_timeout: Duration,
    /// The whole login, from connecting to the last answer.
    pub total_timeout: Duration,
}

impl Default for LdapOptions {
    /// 5 s to connect, 5 s per operation, 15 s in all.
    fn default() -> Self {
        LdapOptions {
            connect_timeout: Duration::from_secs(5),
            operation_timeout: Duration::from_secs(5),
            total_timeout: Duration::from_secs(15),
        }
    }
}

/// Checks passwords against LDAP directories (see the crate docs).
///
/// One value serves every tenant: the directory comes with each call
/// ([`Authenticator::authenticate`]'s `config`). Each login opens its own
/// connection and closes it; nothing is cached but the system trust store.
#[derive(Debug, Default)]
pub struct LdapAuthenticator {
    options: LdapOptions,
    system_roots: OnceLock<Arc<RootCertStore>>,
}

impl LdapAuthenticator {
    /// An authenticator with the default timeouts.
    pub fn new() -> Self {
        Self::default()
    }

    /// An authenticator with these timeouts.
    pub fn with_options(options: LdapOptions) -> Self {
        LdapAuthenticator {
            options,
            system_roots: OnceLock::new(),
        }
    }

    /// The system's trust store, loaded once.
    fn system_roots(&self) -> Arc<RootCertStore> {
        self.system_roots
            .get_or_init(|| {
                let mut roots = RootCertStore::empty();
                let found = rustls_native_certs::load_native_certs();
                let (_added, _ignored) = roots.add_parsable_certificates(found.certs);
                Arc::new(roots)
            })
            .clone()
    }

    fn tls_config(&self, target: &Target) -> Result<Arc<ClientConfig>, DirectoryError> {
        let roots = match &target.ca {
            Some(certs) => {
                let mut roots = RootCertStore::empty();
                for c in certs {
                    roots.add(c.clone()).map_err(|e| {
                        DirectoryError::Config(format!("the CA certificate is not usable: {e}"))
                    })?;
                }
                Arc::new(roots)
            }
            None => {
                let roots = self.system_roots();
                if roots.is_empty() {
                    return Err(DirectoryError::Config(
                        "no CA certificate is configured for the directory and the system has \
                         no trust store (install ca-certificates or configure the CA)"
                            .into(),
                    ));
                }
                roots
            }
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| DirectoryError::Config(format!("TLS setup: {e}")))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Arc::new(config))
    }

    /// The login itself, on this crate's runtime.
    async fn login(
        &self,
        config: &DirectoryConfig,
        target: &Target,
        user: &str,
        password: &str,
    ) -> Result<DirectoryIdentity, DirectoryError> {
        let mut conn = self.connect(target).await?;
        let result = self
            .login_on(&mut conn, config, target, user, password)
            .await;
        // Best effort: a polite goodbye, bounded like any operation.
        let _ = tokio::time::timeout(self.options.operation_timeout, conn.ldap.unbind()).await;
        result
    }

    async fn connect(&self, target: &Target) -> Result<Conn, DirectoryError> {
        let mut settings = LdapConnSettings::new()
            .set_conn_timeout(self.options.connect_timeout)
            .set_starttls(target.starttls);
        if target.tls {
            settings = settings.set_config(self.tls_config(target)?);
        }
        let url = &target.url;
        let (driver, ldap) = LdapConnAsync::with_settings(settings, url)
            .await
            .map_err(|e| self.connect_error(url, e))?;
        tokio::spawn(async move {
            // Ends with the connection (or the runtime); errors show up as
            // failed operations.
            let _ = driver.drive().await;
        });
        Ok(Conn {
            ldap,
            url: url.clone(),
            timeout: self.options.operation_timeout,
        })
    }

    fn connect_error(&self, url: &str, e: LdapError) -> DirectoryError {
        match e {
            LdapError::Timeout { .. } => DirectoryError::Unavailable(format!(
                "no connection to the directory at {url} within {} s",
                secs(self.options.connect_timeout)
            )),
            LdapError::Rustls { source } => tls_error(url, &source),
            LdapError::Io { source } => {
                if let Some(tls) = source
                    .get_ref()
                    .and_then(|inner| inner.downcast_ref::<rustls::Error>())
                {
                    return tls_error(url, tls);
                }
                DirectoryError::Unavailable(format!(
                    "cannot reach the directory at {url}: {source}"
                ))
            }
            LdapError::DNSName { source } => DirectoryError::Config(format!(
                "the host of {url} cannot be checked against a TLS certificate: {source}"
            )),
            LdapError::LdapResult { result } => DirectoryError::Unavailable(format!(
                "the directory at {url} refused StartTLS: {}",
                describe(&result)
            )),
            LdapError::UrlParsing { .. } | LdapError::UnknownScheme(_) => {
                DirectoryError::Config(format!("unusable directory URL {url}: {e}"))
            }
            other => DirectoryError::Unavailable(format!(
                "cannot connect to the directory at {url}: {other}"
            )),
        }
    }

    async fn login_on(
        &self,
        conn: &mut Conn,
        config: &DirectoryConfig,
        target: &Target,
        user: &str,
        password: &str,
    ) -> Result<DirectoryIdentity, DirectoryError> {
        let mut attrs: Vec<String> = vec!["displayName".into(), "cn".into(), "memberOf".into()];
        for a in &config.address_attributes {
            if !attrs.iter().any(|x| x.eq_ignore_ascii_case(a)) {
                attrs.push(a.clone());
            }
        }
        let (dn, entry) = match &config.bind {
            DirectoryBind::Template { dn } => {
                let dn = dn.replace("{user}", &ldap3::dn_escape(user));
                conn.user_bind(&dn, password).await?;
                let entry = conn.read_entry(&dn, &attrs).await?;
                (dn, entry)
            }
            DirectoryBind::Search {
                service_dn,
                service_password,
                base,
                filter,
            } => {
                conn.service_bind(service_dn, service_password).await?;
                let filter = filter.replace("{user}", &ldap3::ldap_escape(user));
                let Some((dn, entry)) = conn.find_user(base, &filter, &attrs).await? else {
                    return Err(DirectoryError::InvalidCredentials);
                };
                conn.user_bind(&dn, password).await?;
                if target.group_search {
                    // Groups are read with the service account's rights.
                    conn.service_bind(service_dn, service_password).await?;
                }
                (dn, Some(entry))
            }
        };
        let entry = entry.unwrap_or_default();
        let mut groups: Vec<String> = Vec::new();
        for g in entry.values("memberOf") {
            push_unique(&mut groups, g.trim());
        }
        if let Some(base) = config
            .group_base
            .as_deref()
            .filter(|b| !b.trim().is_empty())
        {
            for g in conn.group_search(base, &dn).await? {
                push_unique(&mut groups, g.trim());
            }
        }
        let display_name = entry
            .values("displayName")
            .chain(entry.values("cn"))
            .map(str::trim)
            .find(|v| !v.is_empty())
            .map(str::to_string);
        let mut addresses: Vec<String> = Vec::new();
        for attr in &config.address_attributes {
            for v in entry.values(attr) {
                if let Some(a) = address_value(v) {
                    push_unique(&mut addresses, &a);
                }
            }
        }
        Ok(DirectoryIdentity {
            dn,
            display_name,
            addresses,
            groups,
        })
    }
}

impl Authenticator for LdapAuthenticator {
    fn authenticate(
        &self,
        config: &DirectoryConfig,
        user: &str,
        password: &str,
    ) -> Result<DirectoryIdentity, DirectoryError> {
        // Refused before any traffic: an empty password would be an
        // anonymous ("unauthenticated") bind that many servers accept.
        let user = user.trim();
        if password.is_empty() || user.is_empty() || user.chars().count() > MAX_USER_CHARS {
            return Err(DirectoryError::InvalidCredentials);
        }
        let target = prepare(config)?;
        let total = self.options.total_timeout;
        let job = || -> Result<DirectoryIdentity, DirectoryError> {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| {
                    DirectoryError::Unavailable(format!("cannot start the LDAP client: {e}"))
                })?;
            let login = self.login(config, &target, user, password);
            match rt.block_on(async { tokio::time::timeout(total, login).await }) {
                Ok(r) => r,
                Err(_) => Err(DirectoryError::Unavailable(format!(
                    "the directory at {} did not complete the login within {} s",
                    target.url,
                    secs(total)
                ))),
            }
        };
        if tokio::runtime::Handle::try_current().is_ok() {
            // A runtime cannot be started (or blocked on) inside another
            // one: run on a thread of our own and wait for it.
            std::thread::scope(|s| s.spawn(job).join()).unwrap_or_else(|_| {
                Err(DirectoryError::Unavailable(
                    "the LDAP client failed unexpectedly".into(),
                ))
            })
        } else {
            job()
        }
    }
}

/// Checks that a directory configuration can work, without contacting the
/// directory: the URL (scheme, host, plain `ldap://` only to loopback,
/// StartTLS only with `ldap://`), the CA PEM, the bind template or search
/// filter, and the attribute names. What `ama tenant directory set` runs
/// before storing a configuration.
pub fn check_config(config: &DirectoryConfig) -> Result<(), DirectoryError> {
    prepare(config).map(|_| ())
}

/// A checked configuration, ready to connect.
struct Target {
    url: String,
    tls: bool,
    starttls: bool,
    ca: Option<Vec<CertificateDer<'static>>>,
    group_search: bool,
}

fn prepare(config: &DirectoryConfig) -> Result<Target, DirectoryError> {
    let bad = |why: String| Err(DirectoryError::Config(why));
    let raw = config.url.trim();
    let url = match url::Url::parse(raw) {
        Ok(u) => u,
        Err(e) => return bad(format!("unusable directory URL {raw:?}: {e}")),
    };
    let tls_scheme = match url.scheme() {
        "ldaps" => true,
        "ldap" => false,
        other => {
            return bad(format!(
                "directory URL {raw:?} has scheme {other:?}; use ldaps:// or ldap:// with StartTLS"
            ));
        }
    };
    let host = match url.host() {
        // `ldap` is not a "special" scheme to the URL standard, so an IPv4
        // address arrives as an opaque host name.
        Some(url::Host::Domain(d)) if !d.is_empty() => match d.parse::<IpAddr>() {
            Ok(ip) => Host::Ip(ip),
            Err(_) => Host::Name(d.to_ascii_lowercase()),
        },
        Some(url::Host::Ipv4(ip)) => Host::Ip(IpAddr::V4(ip)),
        Some(url::Host::Ipv6(ip)) => Host::Ip(IpAddr::V6(ip)),
        _ => return bad(format!("directory URL {raw:?} names no host")),
    };
    if !(url.path().is_empty() || url.path() == "/") || url.query().is_some() {
        return bad(format!(
            "directory URL {raw:?} has a path or query; give only scheme, host and port \
             (the DNs are configured separately)"
        ));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return bad(format!("directory URL {raw:?} must not carry credentials"));
    }
    if tls_scheme && config.starttls {
        return bad("StartTLS applies to ldap:// URLs; ldaps:// is TLS already".into());
    }
    let tls = tls_scheme || config.starttls;
    if !tls && !host.is_loopback() {
        return bad(format!(
            "plain ldap:// to {raw:?} would send passwords unencrypted; use ldaps:// or \
             StartTLS (plain LDAP is accepted only to a loopback host)"
        ));
    }
    if tls && matches!(host, Host::Ip(IpAddr::V6(_))) {
        return bad(format!(
            "TLS to an IPv6 literal ({raw:?}) is not supported; use the directory's host name"
        ));
    }
    let ca = match &config.ca_cert_pem {
        Some(pem) if !pem.trim().is_empty() => {
            let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| DirectoryError::Config(format!("the CA certificate PEM: {e}")))?;
            if certs.is_empty() {
                return bad("the CA certificate PEM holds no certificate".into());
            }
            Some(certs)
        }
        _ => None,
    };
    let mut group_search = false;
    match &config.bind {
        DirectoryBind::Template { dn } => {
            if !dn.contains("{user}") || !dn.contains('=') {
                return bad(format!(
                    "bind DN template {dn:?} needs {{user}} where the user name goes \
                     (e.g. uid={{user}},ou=people,dc=example,dc=org)"
                ));
            }
        }
        DirectoryBind::Search {
            service_dn,
            service_password,
            base,
            filter,
        } => {
            if service_dn.trim().is_empty() != service_password.is_empty() {
                return bad(
                    "the service account needs both a DN and a password (or neither, for an \
                     anonymous search)"
                        .into(),
                );
            }
            if base.trim().is_empty() {
                return bad("the user search needs a base DN".into());
            }
            if !filter.contains("{user}") {
                return bad(format!(
                    "search filter {filter:?} needs {{user}} where the user name goes \
                     (e.g. (uid={{user}}))"
                ));
            }
            let probe = filter.replace("{user}", "probe");
            if ldap3::parse_filter(&probe).is_err() {
                return bad(format!(
                    "search filter {filter:?} is not a valid LDAP filter"
                ));
            }
            group_search = config
                .group_base
                .as_deref()
                .is_some_and(|b| !b.trim().is_empty())
                && !service_dn.trim().is_empty();
        }
    }
    for (group, role) in &config.group_roles {
        if !group.contains('=') {
            return bad(format!(
                "group {group:?} (for role {role}) is not a DN (e.g. cn=staff,ou=groups,dc=example,dc=org)"
            ));
        }
    }
    for a in &config.address_attributes {
        let ok = !a.is_empty()
            && a.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == ';')
            && a.starts_with(|c: char| c.is_ascii_alphabetic());
        if !ok {
            return bad(format!("{a:?} is not an attribute name"));
        }
    }
    // What ldap3 connects to: scheme, host and port only.
    let mut clean = format!("{}://{}", url.scheme(), host.url_form());
    if let Some(port) = url.port() {
        clean.push_str(&format!(":{port}"));
    }
    Ok(Target {
        url: clean,
        tls,
        starttls: config.starttls,
        ca,
        group_search,
    })
}

enum Host {
    Name(String),
    Ip(IpAddr),
}

impl Host {
    fn is_loopback(&self) -> bool {
        match self {
            Host::Name(n) => n == "localhost" || n.ends_with(".localhost"),
            Host::Ip(ip) => ip.is_loopback(),
        }
    }

    fn url_form(&self) -> String {
        match self {
            Host::Name(n) => n.clone(),
            Host::Ip(IpAddr::V4(ip)) => ip.to_string(),
            Host::Ip(IpAddr::V6(ip)) => format!("[{ip}]"),
        }
    }
}

fn tls_error(url: &str, e: &rustls::Error) -> DirectoryError {
    match e {
        rustls::Error::InvalidCertificate(why) => DirectoryError::Config(format!(
            "the certificate of the directory at {url} is not trusted ({why:?}); configure the \
             CA that signed it"
        )),
        other => DirectoryError::Unavailable(format!(
            "TLS handshake with the directory at {url} failed: {other}"
        )),
    }
}

fn describe(r: &LdapResult) -> String {
    let text = r.text.trim();
    if text.is_empty() {
        format!("LDAP result {}", r.rc)
    } else {
        format!("LDAP result {} ({text})", r.rc)
    }
}

fn secs(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64())
}

fn push_unique(list: &mut Vec<String>, v: &str) {
    if !v.is_empty() && !list.iter().any(|x| x.eq_ignore_ascii_case(v)) {
        list.push(v.to_string());
    }
}

/// An address from an attribute value: `proxyAddresses` entries carry a
/// type prefix (`SMTP:` primary, `smtp:` secondary, `X500:`, `SIP:`, …);
/// only SMTP ones are addresses. Values without a prefix are taken as is.
fn address_value(v: &str) -> Option<String> {
    let v = v.trim();
    let addr = match v.split_once(':') {
        Some((prefix, rest)) if !prefix.contains('@') => {
            if prefix.eq_ignore_ascii_case("smtp") {
                rest.trim()
            } else {
                return None;
            }
        }
        _ => v,
    };
    (addr.contains('@') && !addr.starts_with('@') && !addr.ends_with('@')).then(|| addr.to_string())
}

/// One connection, with the operation timeout applied to every call.
struct Conn {
    ldap: Ldap,
    url: String,
    timeout: Duration,
}

/// The attributes of one entry, names compared case-insensitively.
#[derive(Default)]
struct Entry {
    attrs: HashMap<String, Vec<String>>,
}

impl Entry {
    fn values(&self, name: &str) -> impl Iterator<Item = &str> {
        self.attrs
            .get(&name.to_ascii_lowercase())
            .into_iter()
            .flatten()
            .map(String::as_str)
    }
}

impl Conn {
    fn op_error(&self, what: &str, e: LdapError) -> DirectoryError {
        match e {
            LdapError::Timeout { .. } => DirectoryError::Unavailable(format!(
                "the directory at {} did not answer the {what} within {} s",
                self.url,
                secs(self.timeout)
            )),
            other => DirectoryError::Unavailable(format!(
                "{what} at the directory {} failed: {other}",
                self.url
            )),
        }
    }

    /// Binds as the user: 49 (or a DN that does not exist) is a refusal.
    async fn user_bind(&mut self, dn: &str, password: &str) -> Result<(), DirectoryError> {
        if password.is_empty() {
            return Err(DirectoryError::InvalidCredentials);
        }
        let r = self
            .ldap
            .with_timeout(self.timeout)
            .simple_bind(dn, password)
            .await
            .map_err(|e| self.op_error("bind", e))?;
        match r.rc {
            0 => Ok(()),
            RC_INVALID_CREDENTIALS | RC_NO_SUCH_OBJECT => Err(DirectoryError::InvalidCredentials),
            // invalidDNSyntax: the escaped name still made no DN.
            34 => Err(DirectoryError::InvalidCredentials),
            _ => Err(DirectoryError::Unavailable(format!(
                "the directory at {} refused the bind: {}",
                self.url,
                describe(&r)
            ))),
        }
    }

    /// Binds as the service account (anonymously when both are empty).
    async fn service_bind(&mut self, dn: &str, password: &str) -> Result<(), DirectoryError> {
        if dn.trim().is_empty() && password.is_empty() {
            return Ok(());
        }
        let r = self
            .ldap
            .with_timeout(self.timeout)
            .simple_bind(dn, password)
            .await
            .map_err(|e| self.op_error("service account bind", e))?;
        match r.rc {
            0 => Ok(()),
            RC_INVALID_CREDENTIALS => Err(DirectoryError::Config(format!(
                "the directory at {} refused the service account {dn:?} (invalid credentials)",
                self.url
            ))),
            _ => Err(DirectoryError::Unavailable(format!(
                "the directory at {} refused the service account {dn:?}: {}",
                self.url,
                describe(&r)
            ))),
        }
    }

    /// The one entry matching `filter` under `base`; `None` when none or
    /// more than one match.
    async fn find_user(
        &mut self,
        base: &str,
        filter: &str,
        attrs: &[String],
    ) -> Result<Option<(String, Entry)>, DirectoryError> {
        let r = self
            .ldap
            .with_timeout(self.timeout)
            .with_search_options(SearchOptions::new().sizelimit(2))
            .search(base, Scope::Subtree, filter, attrs)
            .await
            .map_err(|e| self.op_error("user search", e))?;
        match r.1.rc {
            0 => {}
            RC_SIZE_LIMIT => return Ok(None),
            RC_NO_SUCH_OBJECT => {
                return Err(DirectoryError::Config(format!(
                    "the user search base {base:?} does not exist in the directory at {}",
                    self.url
                )));
            }
            _ => {
                return Err(DirectoryError::Unavailable(format!(
                    "user search at the directory {} failed: {}",
                    self.url,
                    describe(&r.1)
                )));
            }
        }
        let mut found: Vec<(String, Entry)> = r.0.into_iter().filter_map(parse_entry).collect();
        if found.len() == 1 {
            Ok(found.pop())
        } else {
            Ok(None)
        }
    }

    /// The user's own entry (after binding as him); `None` when he may not
    /// read it.
    async fn read_entry(
        &mut self,
        dn: &str,
        attrs: &[String],
    ) -> Result<Option<Entry>, DirectoryError> {
        let r = self
            .ldap
            .with_timeout(self.timeout)
            .search(dn, Scope::Base, "(objectClass=*)", attrs)
            .await
            .map_err(|e| self.op_error("read of the user's entry", e))?;
        match r.1.rc {
            0 | RC_NO_SUCH_OBJECT => {}
            // insufficientAccessRights: roles then come from group search only.
            50 => return Ok(None),
            _ => {
                return Err(DirectoryError::Unavailable(format!(
                    "reading the user's entry at the directory {} failed: {}",
                    self.url,
                    describe(&r.1)
                )));
            }
        }
        Ok(r.0
            .into_iter()
            .filter_map(parse_entry)
            .next()
            .map(|(_, e)| e))
    }

    /// DNs of the `groupOfNames` / `groupOfUniqueNames` under `base` that
    /// name `dn` as a member.
    async fn group_search(&mut self, base: &str, dn: &str) -> Result<Vec<String>, DirectoryError> {
        let d = ldap3::ldap_escape(dn);
        let filter = format!(
            "(|(&(objectClass=groupOfNames)(member={d}))\
               (&(objectClass=groupOfUniqueNames)(uniqueMember={d})))"
        );
        let r = self
            .ldap
            .with_timeout(self.timeout)
            .search(base, Scope::Subtree, &filter, vec!["1.1"])
            .await
            .map_err(|e| self.op_error("group search", e))?;
        match r.1.rc {
            // A size limit still leaves the groups found so far.
            0 | RC_SIZE_LIMIT => {}
            RC_NO_SUCH_OBJECT => {
                return Err(DirectoryError::Config(format!(
                    "the group base {base:?} does not exist in the directory at {}",
                    self.url
                )));
            }
            _ => {
                return Err(DirectoryError::Unavailable(format!(
                    "group search at the directory {} failed: {}",
                    self.url,
                    describe(&r.1)
                )));
            }
        }
        Ok(r.0
            .into_iter()
            .filter_map(parse_entry)
            .map(|(dn, _)| dn)
            .collect())
    }
}

/// A search result entry as DN and attributes, without panicking on a
/// malformed answer (ldap3's `SearchEntry::construct` would): references
/// and anything that is not a well-formed entry are skipped.
fn parse_entry(re: ResultEntry) -> Option<(String, Entry)> {
    if re.is_ref() || re.is_intermediate() {
        return None;
    }
    let StructureTag {
        id: 4,
        payload: PL::C(parts),
        ..
    } = re.0
    else {
        return None;
    };
    let mut parts = parts.into_iter();
    let dn = primitive_string(parts.next()?)?;
    let mut entry = Entry::default();
    if let Some(StructureTag {
        payload: PL::C(list),
        ..
    }) = parts.next()
    {
        for attr in list {
            let PL::C(pair) = attr.payload else { continue };
            let mut pair = pair.into_iter();
            let Some(name) = pair.next().and_then(primitive_string) else {
                continue;
            };
            let Some(StructureTag {
                payload: PL::C(vals),
                ..
            }) = pair.next()
            else {
                continue;
            };
            let values = entry.attrs.entry(name.to_ascii_lowercase()).or_default();
            values.extend(vals.into_iter().filter_map(primitive_string));
        }
    }
    Some((dn, entry))
}

fn primitive_string(t: StructureTag) -> Option<String> {
    match t.payload {
        PL::P(bytes) => String::from_utf8(bytes).ok(),
        PL::C(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ama_core::Role;

    fn config(url: &str) -> DirectoryConfig {
        DirectoryConfig {
            url: url.into(),
            starttls: false,
            ca_cert_pem: None,
            bind: DirectoryBind::Template {
                dn: "uid={user},ou=people,dc=example,dc=test".into(),
            },
            group_base: None,
            group_roles: vec![("cn=staff,dc=example,dc=test".into(), Role::EndUser)],
            address_attributes: vec!["mail".into(), "proxyAddresses".into()],
        }
    }

    fn config_error(c: &DirectoryConfig) -> String {
        match check_config(c) {
            Err(DirectoryError::Config(why)) => why,
            other => panic!("expected a configuration error, got {other:?}"),
        }
    }

    #[test]
    fn plain_ldap_only_to_loopback() {
        for ok in [
            "ldap://127.0.0.1:3890",
            "ldap://localhost",
            "ldap://[::1]:389/",
            "ldaps://ldap.example.org",
            "ldaps://10.0.0.5:636",
        ] {
            assert!(check_config(&config(ok)).is_ok(), "{ok}");
        }
        let why = config_error(&config("ldap://ldap.example.org"));
        assert!(why.contains("unencrypted"), "{why}");
        assert!(config_error(&config("ldap://10.1.2.3:389")).contains("loopback"));
        let mut c = config("ldap://ldap.example.org");
        c.starttls = true;
        assert!(check_config(&c).is_ok());
        c.url = "ldaps://ldap.example.org".into();
        assert!(config_error(&c).contains("StartTLS"));
    }

    #[test]
    fn bad_urls_templates_filters_and_cas_are_config_errors() {
        for bad in [
            "http://ldap.example.org",
            "ldaps://",
            "ldap:foo",
            "ldaps://ldap.example.org/dc=example",
            "ldaps://user:pw@ldap.example.org",
            "not a url",
        ] {
            config_error(&config(bad));
        }
        let mut c = config("ldaps://ldap.example.org");
        c.bind = DirectoryBind::Template {
            dn: "uid=alice,ou=people".into(),
        };
        assert!(config_error(&c).contains("{user}"));
        c.bind = DirectoryBind::Search {
            service_dn: "cn=svc,dc=example,dc=test".into(),
            service_password: String::new(),
            base: "dc=example,dc=test".into(),
            filter: "(uid={user})".into(),
        };
        assert!(config_error(&c).contains("both a DN and a password"));
        c.bind = DirectoryBind::Search {
            service_dn: "cn=svc,dc=example,dc=test".into(),
            service_password: "pw".into(),
            base: "dc=example,dc=test".into(),
            filter: "(uid={user}".into(),
        };
        assert!(config_error(&c).contains("not a valid LDAP filter"));
        let mut c = config("ldaps://ldap.example.org");
        c.ca_cert_pem = Some("-----BEGIN CERTIFICATE-----\nnot base64!\n".into());
        config_error(&c);
        c.ca_cert_pem = Some("just text".into());
        assert!(config_error(&c).contains("no certificate"));
        let mut c = config("ldaps://ldap.example.org");
        c.address_attributes = vec!["mail)(x".into()];
        config_error(&c);
    }

    #[test]
    fn empty_password_or_user_is_refused_without_contacting_the_server() {
        // Port 9 on a TEST-NET address: any traffic would time out, not fail fast.
        let c = config("ldaps://192.0.2.1:9");
        let auth = LdapAuthenticator::new();
        let start = std::time::Instant::now();
        assert_eq!(
            auth.authenticate(&c, "alice", ""),
            Err(DirectoryError::InvalidCredentials)
        );
        assert_eq!(
            auth.authenticate(&c, "  ", "secret"),
            Err(DirectoryError::InvalidCredentials)
        );
        assert!(start.elapsed() < Duration::from_millis(100));
    }

    #[test]
    fn proxy_addresses_keep_only_smtp() {
        assert_eq!(
            address_value("SMTP:Alice@Example.test").as_deref(),
            Some("Alice@Example.test")
        );
        assert_eq!(
            address_value("smtp:a@old.example.test").as_deref(),
            Some("a@old.example.test")
        );
        assert_eq!(address_value("X500:/o=Example/cn=alice"), None);
        assert_eq!(address_value("sip:alice@example.test"), None);
        assert_eq!(
            address_value(" bob@example.test ").as_deref(),
            Some("bob@example.test")
        );
        assert_eq!(address_value("not an address"), None);
    }

    #[test]
    fn user_names_are_escaped_for_dns_and_filters() {
        // RFC 4514: a name cannot add RDNs or attributes to the bind DN.
        assert_eq!(
            ldap3::dn_escape("x,ou=admins+cn=y"),
            "x\\2cou\\3dadmins\\2bcn\\3dy"
        );
        assert_eq!(ldap3::dn_escape(" #lead"), "\\20#lead");
        // RFC 4515: a name cannot widen the search filter.
        assert_eq!(ldap3::ldap_escape("*)(uid=*"), "\\2a\\29\\28uid=\\2a");
        assert_eq!(ldap3::ldap_escape("a\\b\0"), "a\\5cb\\00");
    }
}
