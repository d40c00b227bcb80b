//! Archive and tenant administration: `init`, `tenant add`, `tenant list`,
//! `stats` and `reindex`.

use std::io::Write;

use ama_core::{Archive, Tenant, TenantSpec};
use serde::Serialize;
use serde_json::Value;

use crate::cli::{Global, JsonArg, StatsArgs, TenantAddArgs, TenantArg};
use crate::output::{self, clean, human_bytes};
use crate::unlock;

/// `ama init`
pub fn init(g: &Global) -> anyhow::Result<()> {
    let archive = unlock::create(g)?;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "created an empty archive in {}",
        archive.data_dir().display()
    )?;
    if g.kdf_fast && g.key_service.is_none() {
        writeln!(
            std::io::stderr().lock(),
            "ama: warning: the key store uses INSECURE fast key derivation \
             (--kdf-fast / AMA_INSECURE_FAST_KDF); use it for tests and demos only"
        )?;
    }
    writeln!(out, "next: ama tenant add ID")?;
    Ok(())
}

/// `ama tenant add`
pub fn add(g: &Global, args: &TenantAddArgs) -> anyhow::Result<()> {
    let archive = unlock::open(g)?;
    let spec = TenantSpec {
        id: args.id.clone(),
        name: args.name.clone(),
        region: args.region.clone(),
        domains: args.domains.clone(),
        retention: args.retention,
    };
    let t = archive.create_tenant(spec)?;
    writeln!(
        std::io::stdout().lock(),
        "created tenant {} ({}), region {}, retention {}, domains {}",
        t.id,
        clean(&t.name),
        t.region,
        t.retention,
        domains(&t)
    )?;
    Ok(())
}

fn domains(t: &Tenant) -> String {
    if t.domains.is_empty() {
        "-".into()
    } else {
        t.domains.join(",")
    }
}

/// A line of `ama tenant list --json`.
#[derive(Debug, Serialize)]
struct TenantJson<'a> {
    id: &'a str,
    name: &'a str,
    region: String,
    domains: &'a [String],
    retention: String,
    /// RFC 3339 UTC.
    created_at: Value,
}

/// A line of `ama stats --json`.
#[derive(Debug, Serialize)]
struct StatsJson<'a> {
    tenant: &'a str,
    messages: u64,
    raw_bytes: u64,
    stored_bytes: u64,
    duplicates: u64,
    /// Documents in the full-text index (equals `messages` when healthy).
    indexed: u64,
    /// stored_bytes / raw_bytes; null while the tenant is empty.
    ratio: Option<f64>,
}

/// `ama tenant list`
pub fn list(g: &Global, args: &JsonArg) -> anyhow::Result<()> {
    let archive = unlock::open(g)?;
    let tenants = archive.tenants()?;
    let mut out = std::io::stdout().lock();
    if args.json {
        for t in &tenants {
            let v = TenantJson {
                id: t.id.as_str(),
                name: &t.name,
                region: t.region.to_string(),
                domains: &t.domains,
                retention: t.retention.to_string(),
                created_at: output::rfc3339(t.created_at),
            };
            output::json_line(&mut out, &v)?;
        }
        return Ok(());
    }
    if tenants.is_empty() {
        writeln!(
            std::io::stderr().lock(),
            "no tenants yet (create one with: ama tenant add ID)"
        )?;
        return destroyed(&archive, &mut out);
    }
    let rows: Vec<Vec<String>> = tenants
        .iter()
        .map(|t| {
            vec![
                t.id.to_string(),
                clean(&t.name),
                t.region.to_string(),
                domains(t),
                t.retention.to_string(),
            ]
        })
        .collect();
    output::table(
        &mut out,
        &["ID", "NAME", "REGION", "DOMAINS", "RETENTION"],
        &rows,
    )?;
    destroyed(&archive, &mut out)
}

/// The destroyed tenants, after the table (human output only).
fn destroyed(archive: &Archive, out: &mut impl Write) -> anyhow::Result<()> {
    for d in archive.destroyed_tenants()? {
        let how = match (d.key_destroyed, d.has_leftovers()) {
            (_, false) => "destroyed".to_string(),
            (true, true) => format!(
                "key destroyed, data left to purge (run: ama tenant destroy {})",
                d.id
            ),
            (false, true) => format!(
                "destruction interrupted before the key (run: ama tenant destroy {})",
                d.id
            ),
        };
        writeln!(out, "{}: {how}", d.id)?;
    }
    Ok(())
}

/// `ama stats`
pub fn stats(g: &Global, args: &StatsArgs) -> anyhow::Result<()> {
    let archive = unlock::open(g)?;
    let tenants = match &args.tenant {
        Some(id) => vec![archive.tenant(id)?],
        None => archive.tenants()?,
    };
    let mut out = std::io::stdout().lock();
    let mut rows = Vec::new();
    for t in &tenants {
        let s = archive.stats(&t.id)?;
        let indexed = archive.indexed_count(&t.id)?;
        let ratio = (s.raw_bytes > 0).then(|| s.stored_bytes as f64 / s.raw_bytes as f64);
        if args.json {
            let v = StatsJson {
                tenant: t.id.as_str(),
                messages: s.messages,
                raw_bytes: s.raw_bytes,
                stored_bytes: s.stored_bytes,
                duplicates: s.duplicates,
                indexed,
                ratio,
            };
            output::json_line(&mut out, &v)?;
        } else {
            rows.push(vec![
                t.id.to_string(),
                s.messages.to_string(),
                human_bytes(s.raw_bytes),
                human_bytes(s.stored_bytes),
                ratio.map_or_else(|| "-".into(), |r| format!("{r:.2}")),
                s.duplicates.to_string(),
                indexed.to_string(),
            ]);
        }
    }
    if args.json {
        return Ok(());
    }
    if rows.is_empty() {
        writeln!(std::io::stderr().lock(), "no tenants yet")?;
        return Ok(());
    }
    output::table(
        &mut out,
        &[
            "TENANT",
            "MESSAGES",
            "RAW",
            "STORED",
            "RATIO",
            "DUPLICATES",
            "INDEXED",
        ],
        &rows,
    )
}

/// `ama reindex`
pub fn reindex(g: &Global, args: &TenantArg) -> anyhow::Result<()> {
    let archive: Archive = unlock::open(g)?;
    let start = std::time::Instant::now();
    let n = archive.reindex(&args.tenant)?;
    writeln!(
        std::io::stdout().lock(),
        "reindexed {n} messages of tenant {} in {:.1} s",
        args.tenant,
        start.elapsed().as_secs_f64()
    )?;
    Ok(())
}
