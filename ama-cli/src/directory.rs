//! `ama tenant directory …`: a tenant's LDAP directory for logins.
//!
//! `set` checks the configuration with [`ama_ldap::check_config`] before
//! storing it (a plain `ldap://` URL to another host, a template without
//! `{user}` or an unreadable CA are refused here, not at the first login);
//! `show` prints it without the service account's password; `clear`
//! removes it; `test` binds as one user and shows what the directory says
//! about him and which roles that maps to, without logging him in.
//!
//! The service account's password never comes from the command line (it
//! would show in `ps` and the shell history): `--service-password-stdin`
//! reads the first line of standard input, otherwise
//! `AMA_LDAP_SERVICE_PASSWORD` is used. `test` reads the user's password the
//! same way (`--password-stdin` or `AMA_LDAP_TEST_PASSWORD`).

use std::io::{BufRead, Write};
use std::path::PathBuf;

use ama_core::{Authenticator, DirectoryBind, DirectoryConfig, Role, TenantId};
use anyhow::Context;
use clap::{Args, Subcommand};
use serde::Serialize;

use crate::Usage;
use crate::cli::Global;
use crate::output::{self, clean};
use crate::unlock;

/// `ama tenant directory …`
#[derive(Debug, Subcommand)]
pub enum DirectoryCommand {
    /// Log the tenant's users in through an LDAP directory (replaces any previous setting).
    Set(DirectorySetArgs),
    /// Show the tenant's directory settings (without the service password).
    Show {
        /// The tenant.
        #[arg(long, value_name = "ID")]
        tenant: TenantId,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Stop logging in through the directory (directory users can no longer log in).
    Clear {
        /// The tenant.
        #[arg(long, value_name = "ID")]
        tenant: TenantId,
    },
    /// Bind as USER and show what the directory says and which roles that gives (no login).
    Test {
        /// The tenant.
        #[arg(long, value_name = "ID")]
        tenant: TenantId,
        /// The user's login name.
        #[arg(value_name = "USER")]
        user: String,
        /// Read the password from the first line of standard input (else AMA_LDAP_TEST_PASSWORD).
        #[arg(long)]
        password_stdin: bool,
    },
}

/// `ama tenant directory set`
#[derive(Debug, Args)]
pub struct DirectorySetArgs {
    /// The tenant.
    #[arg(long, value_name = "ID")]
    pub tenant: TenantId,
    /// ldaps://host[:port], or ldap://host[:port] with --starttls (plain ldap:// only to loopback).
    #[arg(long, value_name = "URL")]
    pub url: String,
    /// Upgrade an ldap:// connection with StartTLS.
    #[arg(long)]
    pub starttls: bool,
    /// PEM file of the CA that signed the directory's certificate (default: system trust store).
    #[arg(long, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// Bind directly as this DN, {user} replaced by the login name
    /// (e.g. "uid={user},ou=people,dc=example,dc=org").
    #[arg(long, value_name = "TEMPLATE", conflicts_with_all = ["search_base", "search_filter", "service_dn"])]
    pub bind_dn: Option<String>,
    /// Search-then-bind: where to search for the user.
    #[arg(long, value_name = "DN", requires = "search_filter")]
    pub search_base: Option<String>,
    /// Search-then-bind: filter with {user} (e.g. "(uid={user})" or "(sAMAccountName={user})").
    #[arg(long, value_name = "FILTER", requires = "search_base")]
    pub search_filter: Option<String>,
    /// Search-then-bind: the service account's DN (password from
    /// --service-password-stdin or AMA_LDAP_SERVICE_PASSWORD; none: anonymous search).
    #[arg(long, value_name = "DN", requires = "search_base")]
    pub service_dn: Option<String>,
    /// Read the service account's password from the first line of standard input.
    #[arg(long, requires = "service_dn")]
    pub service_password_stdin: bool,
    /// Also search this subtree for groups (groupOfNames/groupOfUniqueNames) naming the user.
    #[arg(long, value_name = "DN")]
    pub group_base: Option<String>,
    /// GROUP-DN=ROLE: members of the group get the role (end-user, auditor, admin; repeatable).
    #[arg(long = "group-role", value_name = "GROUP-DN=ROLE", required = true)]
    pub group_roles: Vec<String>,
    /// Attribute holding the user's addresses (repeatable; default: mail and proxyAddresses).
    #[arg(long = "address-attribute", value_name = "ATTR")]
    pub address_attributes: Vec<String>,
}

fn secret(from_stdin: bool, env: &str, flag: &str) -> anyhow::Result<String> {
    if from_stdin {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        return Ok(line.trim_end_matches(['\r', '\n']).to_string());
    }
    match std::env::var(env) {
        Ok(p) if !p.is_empty() => Ok(p),
        _ => Err(Usage(format!("no password given: use {flag} or set {env}")).into()),
    }
}

/// `DN=ROLE`, split at the last `=` (DNs contain `=` themselves).
fn group_role(s: &str) -> anyhow::Result<(String, Role)> {
    let (dn, role) = s
        .rsplit_once('=')
        .filter(|(dn, _)| dn.contains('='))
        .ok_or_else(|| {
            Usage(format!(
                "--group-role {s:?}: expected GROUP-DN=ROLE, e.g. \
                 cn=staff,ou=groups,dc=example,dc=org=end-user"
            ))
        })?;
    let role: Role = role
        .parse()
        .map_err(|e: ama_core::Error| Usage(format!("--group-role {s:?}: {e}")))?;
    Ok((dn.trim().to_string(), role))
}

fn config_from(args: &DirectorySetArgs) -> anyhow::Result<DirectoryConfig> {
    let bind = match (&args.bind_dn, &args.search_base, &args.search_filter) {
        (Some(dn), None, None) => DirectoryBind::Template { dn: dn.clone() },
        (None, Some(base), Some(filter)) => {
            let (service_dn, service_password) = match &args.service_dn {
                Some(dn) => (
                    dn.clone(),
                    secret(
                        args.service_password_stdin,
                        "AMA_LDAP_SERVICE_PASSWORD",
                        "--service-password-stdin",
                    )?,
                ),
                None => (String::new(), String::new()),
            };
            DirectoryBind::Search {
                service_dn,
                service_password,
                base: base.clone(),
                filter: filter.clone(),
            }
        }
        _ => {
            return Err(Usage(
                "say how users bind: --bind-dn TEMPLATE, or --search-base and --search-filter \
                 (with --service-dn)"
                    .into(),
            )
            .into());
        }
    };
    let ca_cert_pem = match &args.ca_file {
        Some(p) => Some(
            std::fs::read_to_string(p)
                .with_context(|| format!("cannot read the CA file {}", p.display()))?,
        ),
        None => None,
    };
    let address_attributes = if args.address_attributes.is_empty() {
        vec!["mail".into(), "proxyAddresses".into()]
    } else {
        args.address_attributes.clone()
    };
    Ok(DirectoryConfig {
        url: args.url.trim().to_string(),
        starttls: args.starttls,
        ca_cert_pem,
        bind,
        group_base: args.group_base.clone().filter(|b| !b.trim().is_empty()),
        group_roles: args
            .group_roles
            .iter()
            .map(|s| group_role(s))
            .collect::<anyhow::Result<_>>()?,
        address_attributes,
    })
}

/// A directory configuration as `show --json` prints it (no password).
#[derive(Serialize)]
struct DirectoryJson<'a> {
    url: &'a str,
    starttls: bool,
    /// Whether a CA is configured (else the system trust store is used).
    ca_configured: bool,
    bind: &'static str,
    bind_dn_template: Option<&'a str>,
    search_base: Option<&'a str>,
    search_filter: Option<&'a str>,
    service_dn: Option<&'a str>,
    group_base: Option<&'a str>,
    group_roles: Vec<GroupRoleJson<'a>>,
    address_attributes: &'a [String],
}

#[derive(Serialize)]
struct GroupRoleJson<'a> {
    group: &'a str,
    role: &'static str,
}

impl<'a> DirectoryJson<'a> {
    fn new(c: &'a DirectoryConfig) -> Self {
        let (bind, template, base, filter, service) = match &c.bind {
            DirectoryBind::Template { dn } => ("template", Some(dn.as_str()), None, None, None),
            DirectoryBind::Search {
                service_dn,
                base,
                filter,
                ..
            } => (
                "search",
                None,
                Some(base.as_str()),
                Some(filter.as_str()),
                Some(service_dn.as_str()).filter(|s| !s.is_empty()),
            ),
        };
        DirectoryJson {
            url: &c.url,
            starttls: c.starttls,
            ca_configured: c.ca_cert_pem.is_some(),
            bind,
            bind_dn_template: template,
            search_base: base,
            search_filter: filter,
            service_dn: service,
            group_base: c.group_base.as_deref(),
            group_roles: c
                .group_roles
                .iter()
                .map(|(g, r)| GroupRoleJson {
                    group: g,
                    role: r.as_str(),
                })
                .collect(),
            address_attributes: &c.address_attributes,
        }
    }
}

fn print_config(out: &mut impl Write, c: &DirectoryConfig) -> anyhow::Result<()> {
    let j = DirectoryJson::new(c);
    writeln!(out, "url:            {}", clean(j.url))?;
    writeln!(
        out,
        "tls:            {}",
        if j.starttls {
            "StartTLS"
        } else if j.url.starts_with("ldaps:") {
            "ldaps"
        } else {
            "none (loopback only)"
        }
    )?;
    writeln!(
        out,
        "trusted CA:     {}",
        if j.ca_configured {
            "configured"
        } else {
            "system trust store"
        }
    )?;
    match &c.bind {
        DirectoryBind::Template { dn } => writeln!(out, "bind:           as {}", clean(dn))?,
        DirectoryBind::Search {
            service_dn,
            base,
            filter,
            ..
        } => {
            writeln!(
                out,
                "bind:           search {} under {}, then bind as the entry found",
                clean(filter),
                clean(base)
            )?;
            writeln!(
                out,
                "service:        {}",
                if service_dn.is_empty() {
                    "anonymous".into()
                } else {
                    format!("{} (password set)", clean(service_dn))
                }
            )?;
        }
    }
    writeln!(
        out,
        "group search:   {}",
        j.group_base.map_or("- (memberOf only)".into(), clean)
    )?;
    for g in &j.group_roles {
        writeln!(out, "group role:     {} = {}", clean(g.group), g.role)?;
    }
    writeln!(
        out,
        "addresses from: {}",
        clean(&j.address_attributes.join(", "))
    )?;
    Ok(())
}

/// `ama tenant directory …`
pub fn run(g: &Global, cmd: &DirectoryCommand) -> anyhow::Result<()> {
    match cmd {
        DirectoryCommand::Set(args) => {
            let config = config_from(args)?;
            ama_ldap::check_config(&config).map_err(|e| Usage(e.to_string()))?;
            let archive = unlock::open(g)?;
            archive.set_directory(&unlock::operator(&args.tenant), Some(config.clone()))?;
            let mut out = std::io::stdout().lock();
            writeln!(
                out,
                "tenant {}: users without a local password now log in through the directory",
                args.tenant
            )?;
            print_config(&mut out, &config)
        }
        DirectoryCommand::Show { tenant, json } => {
            let archive = unlock::open(g)?;
            let config = archive.directory(&unlock::operator(tenant))?;
            let mut out = std::io::stdout().lock();
            match (config, json) {
                (Some(c), true) => output::json_line(&mut out, &DirectoryJson::new(&c)),
                (None, true) => output::json_line(&mut out, &serde_json::Value::Null),
                (Some(c), false) => print_config(&mut out, &c),
                (None, false) => {
                    writeln!(
                        std::io::stderr().lock(),
                        "tenant {tenant} has no directory (users log in with local passwords)"
                    )?;
                    Ok(())
                }
            }
        }
        DirectoryCommand::Clear { tenant } => {
            let archive = unlock::open(g)?;
            archive.set_directory(&unlock::operator(tenant), None)?;
            writeln!(
                std::io::stdout().lock(),
                "tenant {tenant}: directory removed; only local passwords log in"
            )?;
            Ok(())
        }
        DirectoryCommand::Test {
            tenant,
            user,
            password_stdin,
        } => {
            let password = secret(
                *password_stdin,
                "AMA_LDAP_TEST_PASSWORD",
                "--password-stdin",
            )?;
            let archive = unlock::open(g)?;
            let config = archive
                .directory(&unlock::operator(tenant))?
                .ok_or_else(|| {
                    Usage(format!(
                        "tenant {tenant} has no directory (set one with: ama tenant directory set)"
                    ))
                })?;
            let id = ama_ldap::LdapAuthenticator::new()
                .authenticate(&config, user, &password)
                .with_context(|| format!("the directory refused or failed for {user:?}"))?;
            let mut roles: Vec<&str> = Vec::new();
            for (group, role) in &config.group_roles {
                if id.groups.iter().any(|g| g.eq_ignore_ascii_case(group))
                    && !roles.contains(&role.as_str())
                {
                    roles.push(role.as_str());
                }
            }
            let mut out = std::io::stdout().lock();
            writeln!(out, "dn:        {}", clean(&id.dn))?;
            writeln!(
                out,
                "name:      {}",
                clean(id.display_name.as_deref().unwrap_or("-"))
            )?;
            writeln!(out, "addresses: {}", list(&id.addresses))?;
            writeln!(out, "groups:    {}", list(&id.groups))?;
            writeln!(
                out,
                "roles:     {}",
                if roles.is_empty() {
                    "none: this user cannot log in (no group maps to a role)".into()
                } else {
                    roles.join(", ")
                }
            )?;
            Ok(())
        }
    }
}

fn list(v: &[String]) -> String {
    if v.is_empty() {
        "-".into()
    } else {
        clean(&v.join("; "))
    }
}
