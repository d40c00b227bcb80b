//! `ama serve --demo`: the README's first command. On the first start it
//! creates an archive in the data directory with a tenant `demo` (mail
//! domain example.com), imports the sample mail (`examples/mail`, or
//! `--demo-mail DIR`), and adds a user `demo` (auditor and admin). On every
//! start it gives that user a fresh random password and prints it with the
//! URL, so the printed login always works and no password is ever stored
//! anywhere but as its argon2id hash.
//!
//! Without AMA_PASSPHRASE, --passphrase-file or --key-file the demo uses a
//! fixed, published passphrase and says so: a demo archive is not for real
//! mail.

use std::ops::ControlFlow;
use std::path::Path;

use ama_core::import::{ImportOptions, import_paths};
use ama_core::{
    AccessContext, Archive, ArchiveOptions, Error, Frontend, IdentityError, KdfParams, KeyError,
    Principal, Role, TenantError, TenantId, TenantSpec, Unlock, UserSpec,
};
use anyhow::Context;

use crate::cli::Global;
use crate::unlock;

/// The demo tenant.
pub const TENANT: &str = "demo";
/// The demo user.
pub const USER: &str = "demo";
/// The passphrase of a demo archive when none is given.
pub const PASSPHRASE: &str = "demo passphrase - not for real mail";

/// The login to print.
pub struct Login {
    /// Tenant id.
    pub tenant: String,
    /// User id.
    pub user: String,
    /// The fresh password.
    pub password: String,
}

/// Opens the demo archive, creating it (tenant, sample mail) on the first
/// start, and sets a fresh password for the demo user.
pub fn prepare(g: &Global, mail: &Path) -> anyhow::Result<(Archive, Login)> {
    let how = match unlock::unlock(g) {
        Ok(u) => u,
        Err(e)
            if matches!(
                e.downcast_ref::<Error>(),
                Some(Error::Key(KeyError::Missing))
            ) || matches!(e.downcast_ref::<KeyError>(), Some(KeyError::Missing)) =>
        {
            eprintln!(
                "ama demo: no AMA_PASSPHRASE given: using the demo passphrase {PASSPHRASE:?} \
                 (a demo archive is not for real mail)"
            );
            Unlock::passphrase(PASSPHRASE)
        }
        Err(e) => return Err(e),
    };
    let first = !g.data.join("keys").join("keystore.json").exists();
    let archive = if first {
        eprintln!("ama demo: creating a demo archive in {}", g.data.display());
        let options = ArchiveOptions {
            kdf: if g.kdf_fast {
                KdfParams::insecure_fast()
            } else {
                KdfParams::default()
            },
            ..ArchiveOptions::default()
        };
        Archive::create(&g.data, &how, options)
            .with_context(|| format!("cannot create an archive in {}", g.data.display()))?
    } else {
        Archive::open(&g.data, &how, ArchiveOptions::default())
            .with_context(|| format!("cannot open the archive in {}", g.data.display()))?
    };
    // Like every other way the CLI opens an archive: directory users log in over LDAP.
    archive.set_authenticator(std::sync::Arc::new(ama_ldap::LdapAuthenticator::new()));
    let tenant = TenantId::new(TENANT)?;
    match archive.tenant(&tenant) {
        Ok(_) => {}
        Err(Error::Tenant(TenantError::Unknown(_))) => {
            let mut spec = TenantSpec::new(tenant.clone());
            spec.name = Some("Demo Corp".into());
            spec.domains = vec!["example.com".into()];
            archive.create_tenant(spec)?;
            import_samples(&archive, &tenant, mail)?;
        }
        Err(e) => return Err(e.into()),
    }
    let op = Principal::operator(tenant.clone()).with_context(AccessContext::new(Frontend::Cli));
    let password = fresh_password()?;
    match archive.user(&op, USER) {
        Ok(_) => {
            archive.set_password(&op, USER, &password)?;
            archive.set_user_active(&op, USER, true)?;
        }
        Err(Error::Identity(IdentityError::UnknownUser(_))) => {
            archive.add_user(
                &op,
                UserSpec {
                    id: USER.into(),
                    display_name: Some("Demo auditor".into()),
                    addresses: vec![],
                    roles: vec![Role::Auditor, Role::Admin],
                    password: Some(password.clone()),
                },
            )?;
        }
        Err(e) => return Err(e.into()),
    }
    Ok((
        archive,
        Login {
            tenant: TENANT.into(),
            user: USER.into(),
            password,
        },
    ))
}

fn import_samples(archive: &Archive, tenant: &TenantId, mail: &Path) -> anyhow::Result<()> {
    if !mail.exists() {
        eprintln!(
            "ama demo: no sample mail at {} (run from the repository root, or give --demo-mail DIR); \
             the demo archive starts empty",
            mail.display()
        );
        return Ok(());
    }
    let s = import_paths(
        archive,
        tenant,
        &[mail.to_path_buf()],
        &ImportOptions::default(),
        |_| ControlFlow::Continue(()),
    )?;
    eprintln!(
        "ama demo: imported {} sample messages from {} ({} refused)",
        s.imported,
        mail.display(),
        s.refused
    );
    Ok(())
}

/// Four groups of four characters from an alphabet without look-alikes:
/// 80 random bits.
fn fresh_password() -> anyhow::Result<String> {
    const ALPHABET: &[u8; 32] = b"abcdefghijkmnpqrstuvwxyz23456789";
    let mut b = [0u8; 16];
    ama_core::crypto::random_fill(&mut b)?;
    let mut s = String::with_capacity(19);
    for (i, x) in b.iter().enumerate() {
        if i > 0 && i % 4 == 0 {
            s.push('-');
        }
        s.push(ALPHABET[(*x & 31) as usize] as char);
    }
    Ok(s)
}
