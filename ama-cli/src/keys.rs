//! `ama keys rotate-master`, `ama keys rotate-tenant ID`, `ama keys status`
//! and `ama tenant destroy ID`: the key lifecycle.
//!
//! The new master secret of `rotate-master` follows the same rule as the
//! current one: never from an argument. `--new-key-file` wins, then
//! `--new-passphrase-file`, then the environment variable
//! `AMA_NEW_PASSPHRASE`. `tenant destroy` cannot be undone, so it asks for
//! the tenant id to be typed back, unless `--yes` is given; without a
//! terminal to ask on, it refuses without `--yes`.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;

use ama_core::{Frontend, KdfParams, TenantId, TenantKeyState, Unlock};
use anyhow::Context;
use clap::{Args, Subcommand};
use serde::Serialize;

use crate::cli::{Global, JsonArg, TenantDestroyArgs};
use crate::output;
use crate::unlock;

/// The environment variable holding the new passphrase of `rotate-master`.
const NEW_PASSPHRASE_ENV: &str = "AMA_NEW_PASSPHRASE";

/// `ama keys …`
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Replace the master key (new passphrase or key file). The key store is
    /// rewritten atomically; the old passphrase stops working.
    RotateMaster(RotateMasterArgs),
    /// Give a tenant a new key: re-wraps every message key, re-seals the
    /// catalog, rebuilds the index; no message blob is rewritten. Online;
    /// run it again to resume an interrupted rotation.
    RotateTenant(RotateTenantArgs),
    /// Show, per tenant, whether the key store holds its key-encryption key.
    Status(JsonArg),
}

/// `ama keys rotate-master`
#[derive(Debug, Args)]
pub struct RotateMasterArgs {
    /// Read the new passphrase from the first line of FILE (instead of AMA_NEW_PASSPHRASE).
    #[arg(long, value_name = "FILE", conflicts_with = "new_key_file")]
    pub new_passphrase_file: Option<PathBuf>,
    /// Use FILE (exactly 32 random bytes) as the new master key.
    #[arg(long, value_name = "FILE")]
    pub new_key_file: Option<PathBuf>,
}

/// `ama keys rotate-tenant`
#[derive(Debug, Args)]
pub struct RotateTenantArgs {
    /// The tenant.
    #[arg(value_name = "ID")]
    pub id: TenantId,
}

/// Runs a `keys` command.
pub fn run(g: &Global, command: &KeysCommand) -> anyhow::Result<()> {
    match command {
        KeysCommand::RotateMaster(args) => rotate_master(g, args),
        KeysCommand::RotateTenant(args) => rotate_tenant(g, &args.id),
        KeysCommand::Status(args) => status(g, args),
    }
}

fn new_unlock(args: &RotateMasterArgs) -> anyhow::Result<Unlock> {
    if let Some(f) = &args.new_key_file {
        return Ok(Unlock::KeyFile(f.clone()));
    }
    if let Some(f) = &args.new_passphrase_file {
        return unlock::passphrase_from_file(f);
    }
    match std::env::var(NEW_PASSPHRASE_ENV) {
        Ok(p) if !p.is_empty() => Ok(Unlock::passphrase(p)),
        Err(std::env::VarError::NotUnicode(_)) => {
            anyhow::bail!("{NEW_PASSPHRASE_ENV} is not valid UTF-8")
        }
        _ => Err(crate::Usage(format!(
            "no new master secret given: set {NEW_PASSPHRASE_ENV}, or pass \
             --new-passphrase-file or --new-key-file"
        ))
        .into()),
    }
}

fn rotate_master(g: &Global, args: &RotateMasterArgs) -> anyhow::Result<()> {
    // The new secret is checked before the archive is opened.
    let new = new_unlock(args)?;
    let archive = unlock::open(g)?;
    let kdf = if g.kdf_fast {
        KdfParams::insecure_fast()
    } else {
        KdfParams::default()
    };
    let n = archive
        .rotate_master(&new, kdf)
        .context("master key rotation failed; the key store is unchanged")?;
    let path = archive
        .local_key_store()
        .map(|k| k.path().display().to_string())
        .unwrap_or_default();
    writeln!(
        std::io::stdout().lock(),
        "master key rotated: key store {path} rewritten, {n} tenant key(s) re-wrapped; \
         the old passphrase or key file no longer opens it"
    )?;
    Ok(())
}

fn rotate_tenant(g: &Global, id: &TenantId) -> anyhow::Result<()> {
    let archive = unlock::open(g)?;
    let r = archive.rotate_tenant_key(id, Frontend::Cli)?;
    writeln!(
        std::io::stdout().lock(),
        "tenant {} has a new key{}: {} message key(s) re-wrapped, {} value(s) re-sealed; \
         the index is rebuilt under the new key",
        r.tenant,
        if r.resumed {
            " (an interrupted rotation was finished)"
        } else {
            ""
        },
        r.messages,
        r.values
    )?;
    Ok(())
}

/// A line of `ama keys status --json`.
#[derive(Debug, Serialize)]
struct StatusJson<'a> {
    tenant: &'a str,
    /// "active", "destroyed", "format-1" (wrapped under the master key
    /// directly; `rotate-master` or `rotate-tenant` upgrades it) or
    /// "remote" (another key service).
    key: &'static str,
}

fn status(g: &Global, args: &JsonArg) -> anyhow::Result<()> {
    let archive = unlock::open(g)?;
    let mut rows: Vec<(String, &'static str)> = Vec::new();
    for t in archive.tenants()? {
        let state = match archive.local_key_store() {
            None => "remote",
            Some(ks) => match ks.tenant_state(&t.id)? {
                TenantKeyState::Active => "active",
                TenantKeyState::Destroyed => "destroyed",
                _ => "format-1",
            },
        };
        rows.push((t.id.to_string(), state));
    }
    for d in archive.destroyed_tenants()? {
        rows.push((
            d.id.clone(),
            if d.key_destroyed {
                "destroyed"
            } else {
                "destroy-pending"
            },
        ));
    }
    let mut out = std::io::stdout().lock();
    if args.json {
        for (t, k) in &rows {
            output::json_line(&mut out, &StatusJson { tenant: t, key: k })?;
        }
        return Ok(());
    }
    let rows: Vec<Vec<String>> = rows
        .into_iter()
        .map(|(t, k)| vec![t, k.to_string()])
        .collect();
    output::table(&mut out, &["TENANT", "KEY"], &rows)
}

/// `ama tenant destroy ID [--yes]`
pub fn destroy(g: &Global, args: &TenantDestroyArgs) -> anyhow::Result<()> {
    let archive = unlock::open(g)?;
    let id = &args.id;
    let leftovers = archive
        .destroyed_tenants()?
        .into_iter()
        .find(|d| d.id == id.as_str());
    if leftovers.is_none() {
        // Unknown tenants are refused before anything is asked.
        archive.tenant(id)?;
    }
    if !args.yes && leftovers.is_none() {
        let stdin = std::io::stdin();
        if !stdin.is_terminal() {
            return Err(crate::Usage(format!(
                "refusing to destroy tenant {id} without confirmation: \
                 pass --yes (stdin is not a terminal to ask on)"
            ))
            .into());
        }
        let mut err = std::io::stderr().lock();
        write!(
            err,
            "This destroys the key of tenant {id}, then all of its mail, users, audit log \
             and index. Backups of it become unreadable. It cannot be undone.\n\
             Type the tenant id to confirm: "
        )?;
        err.flush()?;
        let mut line = String::new();
        stdin.lock().read_line(&mut line)?;
        if line.trim() != id.as_str() {
            anyhow::bail!("not confirmed; tenant {id} is unchanged");
        }
    }
    let r = archive.destroy_tenant(id, Frontend::Cli)?;
    writeln!(
        std::io::stdout().lock(),
        "tenant {} destroyed{}: key destroyed, {} blob(s) and {} spool file(s) deleted, \
         catalog rows and index removed",
        r.tenant,
        if r.resumed {
            " (an interrupted destruction was finished)"
        } else {
            ""
        },
        r.blobs_deleted,
        r.spool_files_deleted
    )?;
    Ok(())
}
