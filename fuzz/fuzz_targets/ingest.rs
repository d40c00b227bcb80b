//! Fuzzes the whole ingest path: check, parse, hash, compress, encrypt,
//! store, catalog commit and index, with arbitrary bytes as the message.
//!
//! The parser target alone does not cover what happens to parsed metadata
//! afterwards (catalog encoding, index fields built from odd headers). One
//! archive in a temporary directory is shared by every run of the process,
//! created once with cheap KDF parameters. Refusing a message
//! (`Error::Ingest`) is fine; any other error means the archive failed on
//! mail it should have stored or refused, and is reported as a finding by
//! panicking, like a panic inside the engine.

#![no_main]
#![forbid(unsafe_code)]

use std::sync::OnceLock;

use ama_core::{
    Archive, ArchiveOptions, Envelope, Error, KdfParams, Source, TenantId, TenantSpec, Unlock,
};
use libfuzzer_sys::fuzz_target;

/// The shared archive, its tenant, and the directory holding it (kept
/// alive for the whole process).
struct Fixture {
    archive: Archive,
    tenant: TenantId,
    _dir: std::path::PathBuf,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("ama-fuzz-ingest-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let options = ArchiveOptions {
            kdf: KdfParams::insecure_fast(),
            // Like parse_mail: keep inputs in a range the fuzzer can handle.
            max_message_size: 1 << 20,
            ..ArchiveOptions::default()
        };
        let archive = Archive::create(&dir, &Unlock::passphrase("fuzz passphrase"), options)
            .expect("create the fuzz archive");
        let tenant = TenantId::new("fuzz").expect("tenant id");
        archive
            .create_tenant(TenantSpec::new(tenant.clone()))
            .expect("create the fuzz tenant");
        Fixture {
            archive,
            tenant,
            _dir: dir,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    let envelope = Envelope::new(Source::Import).rcpt("fuzz@fuzz.test");
    match f.archive.ingest(&f.tenant, data, &envelope) {
        Ok(_) | Err(Error::Ingest(_)) => {}
        Err(e) => panic!("ingest failed with a non-ingest error: {e} ({e:?})"),
    }
});
