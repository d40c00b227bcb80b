//! Embedding ama in a Rust program: what a mail server or a hosted archive
//! service does with the engine. Run with `cargo run -p ama-core --example embed`.

use ama_core::{
    Archive, ArchiveOptions, Envelope, KdfParams, Principal, SearchOptions, Source, TenantId,
    TenantSpec, Unlock,
};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::temp_dir().join(format!("ama-embed-{}", std::process::id()));
    let options = ArchiveOptions {
        // Demo only: real archives keep the default argon2id cost.
        kdf: KdfParams::insecure_fast(),
        ..Default::default()
    };
    let archive = Archive::create(&dir, &Unlock::passphrase("demo passphrase"), options)?;

    let acme = TenantId::new("acme")?;
    let mut spec = TenantSpec::new(acme.clone());
    spec.name = Some("ACME Corp".into());
    spec.domains = vec!["acme.example".into()];
    archive.create_tenant(spec)?;

    // A journaled message: the Bcc recipient is only in the envelope.
    let raw = b"From: ceo@acme.example\r\nTo: cfo@acme.example\r\nSubject: Q3 forecast\r\n\
Date: Mon, 05 Oct 2026 09:00:00 +0000\r\n\r\nNumbers attached next week.\r\n";
    let env = Envelope::new(Source::Smtp)
        .mail_from("ceo@acme.example")
        .rcpt("cfo@acme.example")
        .rcpt("auditor@acme.example");
    let receipt = archive.ingest(&acme, raw, &env)?;
    println!("archived {} sha256={}", receipt.id, receipt.sha256_hex());

    let auditor = Principal::auditor(acme.clone());
    let hits = archive.search(&auditor, "subject:forecast", &SearchOptions::default())?;
    println!("auditor finds {} message(s)", hits.total);

    let bcc = Principal::end_user(acme.clone(), ["auditor@acme.example"]);
    println!(
        "the Bcc recipient finds {} message(s)",
        archive
            .search(&bcc, "forecast", &SearchOptions::default())?
            .total
    );
    let outsider = Principal::end_user(acme, ["intern@acme.example"]);
    println!(
        "an unrelated user finds {} message(s)",
        archive
            .search(&outsider, "forecast", &SearchOptions::default())?
            .total
    );

    assert_eq!(archive.get_raw(&auditor, receipt.id)?, raw.to_vec());
    println!("raw bytes round-trip exactly");
    drop(archive);
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
