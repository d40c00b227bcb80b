//! `ama user …`, `ama api-key …` and `ama audit …`: the operator's side of
//! the engine's identity and audit calls. The operator acts as
//! [`ama_core::Principal::operator`] (admin and auditor) through the CLI
//! frontend, so everything done here lands in the tenant's audit log.
//!
//! Passwords never come from the command line (they would show in `ps` and
//! the shell history): `--password-stdin` reads the first line of standard
//! input, otherwise `AMA_USER_PASSWORD` is used.

use std::io::{BufRead, Write};

use ama_core::{AuditEntry, AuditFilter, Principal, User, UserSpec};
use serde::Serialize;

use crate::Usage;
use crate::cli::{
    ApiKeyCommand, AuditCommand, AuditListArgs, Global, UserAddArgs, UserCommand, UserIdArgs,
    UserPasswordArgs,
};
use crate::output::{self, clean};
use crate::unlock;

pub(crate) fn password(from_stdin: bool) -> anyhow::Result<zeroize::Zeroizing<String>> {
    if from_stdin {
        let mut line = zeroize::Zeroizing::new(String::new());
        std::io::stdin().lock().read_line(&mut line)?;
        let p = line.trim_end_matches(['\r', '\n']).to_string();
        return Ok(zeroize::Zeroizing::new(p));
    }
    match std::env::var("AMA_USER_PASSWORD") {
        Ok(p) if !p.is_empty() => Ok(zeroize::Zeroizing::new(p)),
        _ => Err(
            Usage("no password given: use --password-stdin or set AMA_USER_PASSWORD".into()).into(),
        ),
    }
}

#[derive(Serialize)]
struct UserJson<'a> {
    id: &'a str,
    display_name: &'a str,
    addresses: &'a [String],
    roles: Vec<&'static str>,
    active: bool,
    source: &'static str,
    has_password: bool,
    last_login: Option<serde_json::Value>,
}

impl<'a> UserJson<'a> {
    fn new(u: &'a User) -> Self {
        UserJson {
            id: &u.id,
            display_name: &u.display_name,
            addresses: &u.addresses,
            roles: u.roles.iter().map(|r| r.as_str()).collect(),
            active: u.active,
            source: match u.source {
                ama_core::UserSource::Local => "local",
                _ => "directory",
            },
            has_password: u.has_password,
            last_login: u.last_login.map(output::rfc3339),
        }
    }
}

fn print_user(u: &User) -> anyhow::Result<()> {
    writeln!(
        std::io::stdout().lock(),
        "user {} ({}): roles {}, addresses {}, {}",
        clean(&u.id),
        clean(&u.display_name),
        roles(u),
        if u.addresses.is_empty() {
            "-".into()
        } else {
            clean(&u.addresses.join(", "))
        },
        if u.active { "active" } else { "disabled" }
    )?;
    Ok(())
}

fn roles(u: &User) -> String {
    u.roles
        .iter()
        .map(|r| r.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

/// `ama user …`
pub fn user(g: &Global, cmd: &UserCommand) -> anyhow::Result<()> {
    // Read a password before unlocking, so a missing one needs no passphrase.
    let pw = match cmd {
        UserCommand::Add(a)
            if a.password_stdin || std::env::var_os("AMA_USER_PASSWORD").is_some() =>
        {
            Some(password(a.password_stdin)?)
        }
        UserCommand::SetPassword(a) => Some(password(a.password_stdin)?),
        _ => None,
    };
    let archive = unlock::open(g)?;
    match cmd {
        UserCommand::Add(UserAddArgs {
            tenant,
            id,
            name,
            address,
            role,
            ..
        }) => {
            let who = unlock::operator(tenant);
            let u = archive.add_user(
                &who,
                UserSpec {
                    id: id.clone(),
                    display_name: name.clone(),
                    addresses: address.clone(),
                    roles: role.clone(),
                    password: pw.as_ref().map(|p| p.to_string()),
                },
            )?;
            print_user(&u)?;
            if !u.has_password {
                writeln!(
                    std::io::stderr().lock(),
                    "ama: note: no password set; the user cannot log in locally until \
                     `ama user set-password` (or logs in through the tenant's directory)"
                )?;
            }
        }
        UserCommand::List { tenant, json } => {
            let who = unlock::operator(tenant);
            let users = archive.users(&who)?;
            let mut out = std::io::stdout().lock();
            if *json {
                for u in &users {
                    output::json_line(&mut out, &UserJson::new(u))?;
                }
            } else {
                let rows: Vec<Vec<String>> = users
                    .iter()
                    .map(|u| {
                        vec![
                            clean(&u.id),
                            clean(&u.display_name),
                            roles(u),
                            clean(&u.addresses.join(",")),
                            if u.active { "active" } else { "disabled" }.into(),
                        ]
                    })
                    .collect();
                output::table(
                    &mut out,
                    &["ID", "NAME", "ROLES", "ADDRESSES", "STATE"],
                    &rows,
                )?;
            }
        }
        UserCommand::SetPassword(UserPasswordArgs { user, .. }) => {
            let who = unlock::operator(&user.tenant);
            let pw = pw.ok_or_else(|| Usage("no password given".into()))?;
            let u = archive.set_password(&who, &user.id, &pw)?;
            writeln!(std::io::stdout().lock(), "password of {} set", clean(&u.id))?;
        }
        UserCommand::Disable(UserIdArgs { tenant, id }) => {
            print_user(&archive.set_user_active(&unlock::operator(tenant), id, false)?)?
        }
        UserCommand::Enable(UserIdArgs { tenant, id }) => {
            print_user(&archive.set_user_active(&unlock::operator(tenant), id, true)?)?
        }
        UserCommand::Grant { user, role } => {
            print_user(&archive.grant_role(&unlock::operator(&user.tenant), &user.id, *role)?)?
        }
        UserCommand::Revoke { user, role } => {
            print_user(&archive.revoke_role(&unlock::operator(&user.tenant), &user.id, *role)?)?
        }
        UserCommand::AddAddress { user, address } => {
            print_user(&archive.add_address(&unlock::operator(&user.tenant), &user.id, address)?)?
        }
        UserCommand::RemoveAddress { user, address } => print_user(&archive.remove_address(
            &unlock::operator(&user.tenant),
            &user.id,
            address,
        )?)?,
    }
    Ok(())
}

/// `ama api-key …`
pub fn api_key(g: &Global, cmd: &ApiKeyCommand) -> anyhow::Result<()> {
    let archive = unlock::open(g)?;
    let mut out = std::io::stdout().lock();
    match cmd {
        ApiKeyCommand::Create { tenant, name } => {
            let k = archive.create_api_key(&unlock::operator(tenant), name)?;
            writeln!(
                std::io::stderr().lock(),
                "created API key {} ({}) for ingest into {}; the token is shown once:",
                k.id,
                clean(&k.name),
                k.tenant
            )?;
            writeln!(out, "{}", k.token.as_deref().unwrap_or_default())?;
        }
        ApiKeyCommand::List { tenant, json } => {
            let keys = archive.api_keys(&unlock::operator(tenant))?;
            if *json {
                for k in &keys {
                    output::json_line(
                        &mut out,
                        &serde_json::json!({
                            "id": k.id, "name": k.name, "created_at": output::rfc3339(k.created_at)
                        }),
                    )?;
                }
            } else {
                let rows: Vec<Vec<String>> = keys
                    .iter()
                    .map(|k| {
                        vec![
                            k.id.clone(),
                            clean(&k.name),
                            output::short_date(k.created_at),
                        ]
                    })
                    .collect();
                output::table(&mut out, &["ID", "NAME", "CREATED"], &rows)?;
            }
        }
        ApiKeyCommand::Revoke { tenant, id } => {
            archive.revoke_api_key(&unlock::operator(tenant), id)?;
            writeln!(out, "API key {id} revoked")?;
        }
    }
    Ok(())
}

#[derive(Serialize)]
struct EntryJson<'a> {
    seq: u64,
    at: serde_json::Value,
    user: Option<&'a str>,
    roles: Vec<&'static str>,
    frontend: &'static str,
    source: Option<&'a str>,
    action: &'static str,
    detail: &'a str,
    messages: Vec<String>,
    outcome: &'static str,
    reason: Option<&'a str>,
    prev_hash: String,
}

impl<'a> EntryJson<'a> {
    fn new(e: &'a AuditEntry) -> Self {
        let reason = match &e.outcome {
            ama_core::Outcome::Denied(r) | ama_core::Outcome::Failed(r) => Some(r.as_str()),
            _ => None,
        };
        EntryJson {
            seq: e.seq,
            at: serde_json::Value::String(
                e.at()
                    .format(&time::format_description::well_known::Rfc3339)
                    .unwrap_or_default(),
            ),
            user: e.actor.user.as_deref(),
            roles: e.actor.roles.iter().map(|r| r.as_str()).collect(),
            frontend: e.actor.frontend.as_str(),
            source: e.actor.source.as_deref(),
            action: e.action.as_str(),
            detail: &e.detail,
            messages: e.messages().iter().map(|m| m.to_string()).collect(),
            outcome: e.outcome.kind(),
            reason,
            prev_hash: ama_core::crypto::hex(&e.prev_hash),
        }
    }
}

/// `ama audit …`
pub fn audit(g: &Global, cmd: &AuditCommand) -> anyhow::Result<()> {
    let archive = unlock::open(g)?;
    match cmd {
        AuditCommand::List(args) => list(&archive, args),
        AuditCommand::Verify { tenant, json } => {
            let who = unlock::operator(tenant);
            let report = archive.verify_audit(&who)?;
            let mut out = std::io::stdout().lock();
            if *json {
                output::json_line(
                    &mut out,
                    &serde_json::json!({
                        "tenant": tenant.as_str(),
                        "entries": report.entries,
                        "intact": report.is_intact(),
                        "head_hash": ama_core::crypto::hex(&report.head_hash),
                        "problems": report.problems.iter().map(|p| serde_json::json!({
                            "seq": p.seq, "reason": p.reason
                        })).collect::<Vec<_>>(),
                    }),
                )?;
            } else if report.is_intact() {
                writeln!(
                    out,
                    "audit log of {tenant}: {} entries, chain intact, head {}",
                    report.entries,
                    ama_core::crypto::hex(&report.head_hash)
                )?;
            } else {
                for p in &report.problems {
                    writeln!(out, "{p}")?;
                }
            }
            match report.first_broken() {
                None => Ok(()),
                Some(p) => Err(anyhow::anyhow!(
                    "the audit log of {tenant} is broken at {p} ({} problem(s) in all)",
                    report.problems.len()
                )),
            }
        }
    }
}

fn list(archive: &ama_core::Archive, args: &AuditListArgs) -> anyhow::Result<()> {
    let who: Principal = unlock::operator(&args.tenant);
    let filter = AuditFilter {
        since: args.since,
        action: args.action,
        from_seq: 0,
        limit: args.limit as usize,
    };
    let entries = archive.audit_entries(&who, &filter)?;
    let mut out = std::io::stdout().lock();
    for e in &entries {
        if args.json {
            output::json_line(&mut out, &EntryJson::new(e))?;
        } else {
            let n = e.messages().len();
            writeln!(
                out,
                "{:>6}  {}  {:<14} {:<8} {}  {}{}",
                e.seq,
                e.at()
                    .format(&time::format_description::well_known::Rfc3339)
                    .unwrap_or_default(),
                e.action.as_str(),
                e.outcome.kind(),
                clean(&e.actor.to_string()),
                clean(&e.detail),
                if n > 0 {
                    format!(" [{n} message(s)]")
                } else {
                    String::new()
                }
            )?;
        }
    }
    Ok(())
}
