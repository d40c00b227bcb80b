//! Getting the master secret and opening the archive.
//!
//! The secret never comes from an argument (it would be visible in `ps` and
//! shell history): a key file (`--key-file`) wins, then a passphrase file
//! (`--passphrase-file`), then the environment variable `AMA_PASSPHRASE`.
//! An explicit option beats the environment, so a stray exported variable
//! cannot silently override what the operator typed.

use std::path::Path;

use ama_core::{Archive, ArchiveOptions, KdfParams, KeyError, Unlock};
use anyhow::Context;

use crate::cli::Global;

/// The environment variable holding the passphrase.
const PASSPHRASE_ENV: &str = "AMA_PASSPHRASE";

/// How to unlock the key store, from the options and the environment.
pub fn unlock(g: &Global) -> anyhow::Result<Unlock> {
    if let Some(f) = &g.key_file {
        return Ok(Unlock::KeyFile(f.clone()));
    }
    if let Some(f) = &g.passphrase_file {
        return passphrase_from_file(f);
    }
    match std::env::var(PASSPHRASE_ENV) {
        Ok(p) if !p.is_empty() => Ok(Unlock::passphrase(p)),
        Err(std::env::VarError::NotUnicode(_)) => {
            anyhow::bail!("{PASSPHRASE_ENV} is not valid UTF-8")
        }
        _ => Err(KeyError::Missing.into()),
    }
}

/// The first line of `path`, without its line ending. The string is moved
/// (not copied) into the zeroizing [`Unlock`].
pub fn passphrase_from_file(path: &Path) -> anyhow::Result<Unlock> {
    let mut text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read passphrase file {}", path.display()))?;
    let end = text.find('\n').unwrap_or(text.len());
    text.truncate(end);
    if text.ends_with('\r') {
        text.pop();
    }
    if text.is_empty() {
        anyhow::bail!(
            "passphrase file {} is empty (its first line holds the passphrase)",
            path.display()
        );
    }
    Ok(Unlock::passphrase(text))
}

/// Opens the archive in the data directory: through its key service
/// (`--key-service` or `DATA/key-service.json`), else its local key store.
pub fn open(g: &Global) -> anyhow::Result<Archive> {
    let archive = match crate::keyservice::configured(g)? {
        Some(remote) => crate::keyservice::open_archive(g, &remote)?,
        None => open_local(g)?,
    };
    // Users of tenants with a directory log in over LDAP (serve, and the CLI).
    archive.set_authenticator(std::sync::Arc::new(ama_ldap::LdapAuthenticator::new()));
    Ok(archive)
}

fn open_local(g: &Global) -> anyhow::Result<Archive> {
    let unlock = unlock(g)?;
    let options = ArchiveOptions {
        keystore: g.keystore.clone(),
        ..ArchiveOptions::default()
    };
    // The blob stores of DATA/stores.json (or --stores), else DATA/blobs.
    match crate::stores::configured(g)? {
        Some(stores) => Archive::open_with_store(&g.data, &unlock, stores.store, options),
        None => Archive::open(&g.data, &unlock, options),
    }
    .with_context(|| format!("cannot open the archive in {}", g.data.display()))
}

/// Creates a new archive in the data directory (on the key service, with
/// `--key-service`).
pub fn create(g: &Global) -> anyhow::Result<Archive> {
    if let Some(remote) = crate::keyservice::for_init(g)? {
        return crate::keyservice::create_archive(g, &remote);
    }
    let unlock = unlock(g)?;
    let kdf = if g.kdf_fast {
        KdfParams::insecure_fast()
    } else {
        KdfParams::default()
    };
    let options = ArchiveOptions {
        kdf,
        keystore: g.keystore.clone(),
        ..ArchiveOptions::default()
    };
    // A store configuration is checked before anything is created.
    let stores = crate::stores::prepare(g)?;
    let archive = Archive::create(&g.data, &unlock, options)
        .with_context(|| format!("cannot create an archive in {}", g.data.display()))?;
    let Some(stores) = stores else {
        return Ok(archive);
    };
    drop(archive);
    crate::stores::install(g, &stores)?;
    open(g)
}

/// The operator of `tenant` acting through the CLI: admin and auditor, no
/// user name (whoever holds the data directory's secret is the operator).
pub fn operator(tenant: &ama_core::TenantId) -> ama_core::Principal {
    ama_core::Principal::operator(tenant.clone())
        .with_context(ama_core::AccessContext::new(ama_core::Frontend::Cli))
}
