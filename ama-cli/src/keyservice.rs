//! `ama key-service` — the separate key service — and the node side:
//! opening an archive whose tenant keys are unwrapped by it.
//!
//! The service runs from its own directory with its own passphrase (read
//! like every other secret here: `AMA_PASSPHRASE`, `--passphrase-file` or
//! `--key-file`). A node uses it when `--key-service` is given, or when its
//! data directory holds `key-service.json` (written by
//! `ama init --key-service …`); then no passphrase is needed on the node and
//! its data directory holds no key store. See docs/KEY-SERVICE.md.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ama_core::{Archive, ArchiveOptions, BlobStore, KdfParams, LocalKeyStore, LocalStore};
use ama_keyservice::{KeyServiceServer, RemoteConfigFile, RemoteKeyService, ServerOptions, tls};
use anyhow::Context;

use crate::Usage;
use crate::cli::{Global, KeyServiceCommand, KeyServiceServeArgs};

/// `ama key-service …`
pub fn run(g: &Global, command: &KeyServiceCommand) -> anyhow::Result<()> {
    match command {
        KeyServiceCommand::Init { dir } => init(g, dir),
        KeyServiceCommand::Serve(args) => serve(g, args),
        KeyServiceCommand::RotateMaster {
            dir,
            new_passphrase_file,
            new_key_file,
        } => rotate_master(
            g,
            dir,
            new_passphrase_file.as_deref(),
            new_key_file.as_deref(),
        ),
    }
}

/// The environment variable holding the new passphrase for `rotate-master`.
const NEW_PASSPHRASE_ENV: &str = "AMA_NEW_PASSPHRASE";

fn rotate_master(
    g: &Global,
    dir: &Path,
    new_passphrase_file: Option<&Path>,
    new_key_file: Option<&Path>,
) -> anyhow::Result<()> {
    let new = if let Some(f) = new_key_file {
        ama_core::Unlock::KeyFile(f.to_path_buf())
    } else if let Some(f) = new_passphrase_file {
        crate::unlock::passphrase_from_file(f)?
    } else {
        match std::env::var(NEW_PASSPHRASE_ENV) {
            Ok(p) if !p.is_empty() => ama_core::Unlock::passphrase(p),
            _ => {
                return Err(Usage(format!(
                    "no new secret: set {NEW_PASSPHRASE_ENV}, or pass --new-passphrase-file or --new-key-file"
                ))
                .into());
            }
        }
    };
    if let ama_core::Unlock::Passphrase(p) = &new {
        // Refused before the key store is opened.
        if p.chars().count() < ama_core::keys::MIN_PASSPHRASE_CHARS {
            return Err(ama_core::KeyError::WeakPassphrase {
                min: ama_core::keys::MIN_PASSPHRASE_CHARS,
            }
            .into());
        }
    }
    let path = LocalKeyStore::path_in(dir);
    if !path.exists() {
        anyhow::bail!("{} holds no key service key store", dir.display());
    }
    let store = {
        let unlock = crate::unlock::unlock(g)?;
        LocalKeyStore::open(&path, &unlock)
            .with_context(|| format!("cannot open {}", path.display()))?
    };
    let kdf = if g.kdf_fast {
        KdfParams::insecure_fast()
    } else {
        KdfParams::default()
    };
    store
        .rotate_master(&new, kdf)
        .with_context(|| format!("cannot rotate the master key of {}", path.display()))?;
    writeln!(
        std::io::stdout().lock(),
        "rotated the master key of {}; start the service with the new secret",
        path.display()
    )?;
    Ok(())
}

fn init(g: &Global, dir: &Path) -> anyhow::Result<()> {
    let unlock = crate::unlock::unlock(g)?;
    let kdf = if g.kdf_fast {
        KdfParams::insecure_fast()
    } else {
        KdfParams::default()
    };
    KeyServiceServer::init(dir, &unlock, kdf)
        .with_context(|| format!("cannot create a key service in {}", dir.display()))?;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "created a key service key store in {}",
        LocalKeyStore::path_in(dir).display()
    )?;
    if g.kdf_fast {
        writeln!(
            std::io::stderr().lock(),
            "ama: warning: the key store uses INSECURE fast key derivation; tests and demos only"
        )?;
    }
    writeln!(
        out,
        "next: ama key-service serve --dir {} --listen ADDR --cert FILE --key FILE --client-ca FILE",
        dir.display()
    )?;
    Ok(())
}

fn serve(g: &Global, args: &KeyServiceServeArgs) -> anyhow::Result<()> {
    let server_tls = tls::server_config(
        tls::load_certs(&args.cert)?,
        tls::load_key(&args.key)?,
        tls::load_certs(&args.client_ca)?,
    )?;
    let server = {
        let unlock = crate::unlock::unlock(g)?;
        KeyServiceServer::open(&args.dir, &unlock, server_tls)
            .with_context(|| format!("cannot open the key service in {}", args.dir.display()))?
    };
    let mut options = ServerOptions::default();
    options.max_connections = usize::from(args.max_connections);
    let server = server.with_options(options);
    let listener = std::net::TcpListener::bind(&args.listen)
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = listener.local_addr()?;
    let who = if server.policy().is_restricted() {
        "clients and tenants of clients.json"
    } else {
        "every client with a certificate from --client-ca, every tenant"
    };
    writeln!(
        std::io::stderr().lock(),
        "ama key-service: listening on {addr} (TLS 1.3, client certificates required; {who})"
    )?;
    server.serve(listener);
    Ok(())
}

fn absolute(p: &Path) -> anyhow::Result<PathBuf> {
    std::path::absolute(p).with_context(|| format!("cannot resolve {}", p.display()))
}

/// The key service given on the command line, if any.
fn from_flags(g: &Global) -> anyhow::Result<Option<RemoteConfigFile>> {
    let Some(addr) = &g.key_service else {
        if g.key_service_name.is_some() || g.key_service_region.is_some() {
            return Err(Usage(
                "--key-service-name and --key-service-region need --key-service".into(),
            )
            .into());
        }
        return Ok(None);
    };
    let (Some(ca), Some(cert), Some(key)) = (&g.key_service_ca, &g.client_cert, &g.client_key)
    else {
        return Err(Usage(
            "--key-service needs --key-service-ca, --client-cert and --client-key".into(),
        )
        .into());
    };
    let mut file = RemoteConfigFile::new(addr, absolute(ca)?, absolute(cert)?, absolute(key)?);
    file.server_name = g.key_service_name.clone();
    file.region = g.key_service_region.clone();
    Ok(Some(file))
}

/// Shortest time an archive on a key service keeps a tenant's keys open.
const MIN_KEY_TTL: std::time::Duration = std::time::Duration::from_secs(60);

/// The key service of an existing archive: the flags, else
/// `DATA/key-service.json`; `None` for a local key store.
pub fn configured(g: &Global) -> anyhow::Result<Option<RemoteConfigFile>> {
    if let Some(f) = from_flags(g)? {
        return Ok(Some(f));
    }
    Ok(RemoteConfigFile::load_in(&g.data)?)
}

fn connect(file: &RemoteConfigFile) -> anyhow::Result<Arc<RemoteKeyService>> {
    let cfg = file.to_config()?;
    let keys = RemoteKeyService::connect(cfg)
        .with_context(|| format!("cannot use the key service at {}", file.address))?;
    Ok(Arc::new(keys))
}

fn local_blobs(g: &Global) -> anyhow::Result<Arc<dyn BlobStore>> {
    Ok(Arc::new(LocalStore::open(g.data.join("blobs"))?))
}

/// Opens an archive whose tenant keys the key service unwraps.
pub fn open_archive(g: &Global, remote: &RemoteConfigFile) -> anyhow::Result<Archive> {
    if !g.data.join("catalog.redb").exists() {
        anyhow::bail!(
            "{} is not an ama archive (run `ama init --key-service …` first)",
            g.data.display()
        );
    }
    if LocalKeyStore::path_in(&g.data).exists() {
        anyhow::bail!(
            "the archive in {} has a local key store: its tenant keys are not the key service's",
            g.data.display()
        );
    }
    let keys = connect(remote)?;
    let store = match crate::stores::configured(g)? {
        Some(stores) => stores.store,
        None => local_blobs(g)?,
    };
    // Tenant keys (and what is derived from them) stay in the node's memory
    // no longer than the client caches unwrapped keys, but at least a
    // minute: reopening a tenant costs an unwrap and an index open.
    let ttl = remote.to_config()?.cache_ttl.max(MIN_KEY_TTL);
    let options = ArchiveOptions {
        key_ttl: Some(ttl),
        ..ArchiveOptions::default()
    };
    Archive::open_with(&g.data, keys, store, options)
        .with_context(|| format!("cannot open the archive in {}", g.data.display()))
}

/// For `ama init --key-service …`: the key service to create the archive
/// with, if one was given.
pub fn for_init(g: &Global) -> anyhow::Result<Option<RemoteConfigFile>> {
    if RemoteConfigFile::path_in(&g.data).exists() {
        anyhow::bail!(
            "cannot create an archive in {}: it already holds an archive",
            g.data.display()
        );
    }
    from_flags(g)
}

/// Creates an archive on the key service (checked reachable first) and
/// records it in `DATA/key-service.json`.
pub fn create_archive(g: &Global, remote: &RemoteConfigFile) -> anyhow::Result<Archive> {
    let stores = crate::stores::prepare(g)?;
    let keys = connect(remote)?;
    std::fs::create_dir_all(&g.data)
        .with_context(|| format!("cannot create {}", g.data.display()))?;
    let archive = Archive::create_with(&g.data, keys, local_blobs(g)?, ArchiveOptions::default())
        .with_context(|| format!("cannot create an archive in {}", g.data.display()))?;
    remote
        .save_in(&g.data)
        .context("cannot write key-service.json")?;
    let Some(stores) = stores else {
        return Ok(archive);
    };
    drop(archive);
    crate::stores::install(g, &stores)?;
    crate::unlock::open(g)
}
