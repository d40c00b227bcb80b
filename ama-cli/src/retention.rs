//! `ama retention …`, `ama hold …` and `ama verify`: the operator's side of
//! the engine's retention, legal holds and integrity checks
//! ([`ama_core::retention`]). All of it is audited in the tenant's log.

use std::io::Write;

use ama_core::{
    CountFrom, Direction, HoldScope, RetentionPolicy, RetentionRule, RuleMatch, TenantId,
};

use crate::Usage;
use crate::cli::{Global, HoldCommand, RetentionCommand, RetentionSetArgs, VerifyArgs};
use crate::output::{self, clean};
use crate::unlock;

fn rule(s: &str) -> anyhow::Result<RetentionRule> {
    let bad = || {
        Usage(format!(
            "bad rule {s:?}: use address:A=PERIOD, domain:D=PERIOD, \
             direction:inbound|outbound|internal=PERIOD or query:QUERY=PERIOD"
        ))
    };
    let (m, period) = s.rsplit_once('=').ok_or_else(bad)?;
    let (kind, value) = m.split_once(':').ok_or_else(bad)?;
    let matches = match kind {
        "address" => RuleMatch::Address(value.into()),
        "domain" => RuleMatch::Domain(value.into()),
        "query" if !value.trim().is_empty() => RuleMatch::Query(value.into()),
        "direction" => RuleMatch::Direction(match value {
            "inbound" => Direction::Inbound,
            "outbound" => Direction::Outbound,
            "internal" => Direction::Internal,
            _ => return Err(bad().into()),
        }),
        _ => return Err(bad().into()),
    };
    let period = period
        .parse()
        .map_err(|e| Usage(format!("bad period in rule {s:?}: {e}")))?;
    Ok(RetentionRule { matches, period })
}

fn policy_json(p: &RetentionPolicy) -> serde_json::Value {
    serde_json::json!({
        "default": p.default.to_string(),
        "count_from": match p.count_from { CountFrom::YearEnd => "year-end", _ => "message-date" },
        "rules": p.rules.iter().map(|r| {
            let m = match &r.matches {
                RuleMatch::Address(a) => format!("address:{a}"),
                RuleMatch::Domain(d) => format!("domain:{d}"),
                RuleMatch::Direction(d) => format!("direction:{d:?}").to_lowercase(),
                RuleMatch::Query(q) => format!("query:{q}"),
            };
            format!("{m}={}", r.period)
        }).collect::<Vec<_>>(),
        "minimum": p.minimum.map(|m| m.to_string()),
        "locked": p.locked,
        "four_eyes": p.four_eyes,
    })
}

/// `ama retention …`
pub fn retention(g: &Global, cmd: &RetentionCommand) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match cmd {
        RetentionCommand::Show { tenant } => {
            let archive = unlock::open(g)?;
            let p = archive.retention_policy(&unlock::operator(tenant))?;
            serde_json::to_writer_pretty(&mut out, &policy_json(&p))?;
            writeln!(out)?;
        }
        RetentionCommand::Set(RetentionSetArgs {
            tenant,
            default,
            year_end,
            rule: rules,
            minimum,
            lock,
            four_eyes,
        }) => {
            let rules = rules
                .iter()
                .map(|r| rule(r))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let archive = unlock::open(g)?;
            let policy = RetentionPolicy {
                default: *default,
                count_from: if *year_end {
                    CountFrom::YearEnd
                } else {
                    CountFrom::MessageDate
                },
                rules,
                minimum: *minimum,
                locked: *lock,
                four_eyes: *four_eyes,
            };
            let n = archive.set_retention_policy(&unlock::operator(tenant), policy)?;
            writeln!(
                out,
                "retention policy of {tenant} set; retain-until recomputed for {n} messages"
            )?;
        }
        RetentionCommand::Sweep { tenant, at } => {
            let archive = unlock::open(g)?;
            let r = archive.sweep(tenant, *at)?;
            writeln!(
                out,
                "{tenant}: {} deleted, {} kept by legal holds{}",
                r.deleted.len(),
                r.held.len(),
                if r.resumed > 0 {
                    format!(", purge of {} earlier deletions finished", r.resumed)
                } else {
                    String::new()
                }
            )?;
        }
    }
    Ok(())
}

/// `ama hold …`
pub fn hold(g: &Global, cmd: &HoldCommand) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match cmd {
        HoldCommand::Place {
            tenant,
            name,
            reason,
            query,
            custodian,
            id,
        } => {
            let scope = match (query, custodian, id.is_empty()) {
                (Some(q), None, true) => HoldScope::Query(q.clone()),
                (None, Some(c), true) => HoldScope::Custodian(c.clone()),
                (None, None, false) => HoldScope::ids(id.iter().copied()),
                _ => {
                    return Err(
                        Usage("give exactly one of --query, --custodian or --id".into()).into(),
                    );
                }
            };
            let archive = unlock::open(g)?;
            archive.place_hold(&unlock::operator(tenant), name, scope, reason)?;
            writeln!(out, "hold {} placed on {tenant}", clean(name))?;
        }
        HoldCommand::Release {
            tenant,
            name,
            reason,
        } => {
            let archive = unlock::open(g)?;
            archive.release_hold(&unlock::operator(tenant), name, reason)?;
            writeln!(out, "hold {} released", clean(name))?;
        }
        HoldCommand::List { tenant } => {
            let archive = unlock::open(g)?;
            for h in archive.holds(&unlock::operator(tenant))? {
                let scope = match &h.scope {
                    HoldScope::Query(q) => format!("query {q:?}"),
                    HoldScope::Custodian(c) => format!("custodian {c}"),
                    HoldScope::Ids(ids) => format!("{} messages", ids.len()),
                };
                output::json_line(
                    &mut out,
                    &serde_json::json!({
                        "name": h.name, "scope": scope, "reason": h.reason,
                        "placed_at": output::rfc3339(h.placed_at),
                        "active": h.released.is_none(),
                    }),
                )?;
            }
        }
    }
    Ok(())
}

/// `ama verify`
pub fn verify(g: &Global, args: &VerifyArgs) -> anyhow::Result<()> {
    let archive = unlock::open(g)?;
    let tenants: Vec<TenantId> = match &args.tenant {
        Some(t) => vec![t.clone()],
        None => archive.tenants()?.into_iter().map(|t| t.id).collect(),
    };
    let mut out = std::io::stdout().lock();
    let mut broken = 0usize;
    for t in tenants {
        let r = archive.verify(&unlock::operator(&t))?;
        writeln!(
            out,
            "{t}: {} messages verified, {} deleted with tombstones, {} problems",
            r.verified,
            r.tombstones.len(),
            r.problems.len()
        )?;
        for tomb in &r.tombstones {
            writeln!(
                out,
                "  deleted {} ({}): {}",
                ama_core::MessageId::from_u128(tomb.id),
                output::short_date(tomb.deleted_at),
                clean(&tomb.reason)
            )?;
        }
        for (id, what) in &r.problems {
            let id = id.map(|i| i.to_string()).unwrap_or_else(|| "-".into());
            writeln!(out, "  PROBLEM {id}: {}", clean(what))?;
        }
        broken += r.problems.len();
    }
    if broken > 0 {
        anyhow::bail!("verify found {broken} problem(s)");
    }
    Ok(())
}

/// `ama proof`
pub fn proof(g: &Global, tenant: &TenantId, id: ama_core::MessageId) -> anyhow::Result<()> {
    let archive = unlock::open(g)?;
    let p = archive.proof(&unlock::operator(tenant), id)?;
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, &p)?;
    writeln!(out)?;
    Ok(())
}

/// `ama proof-check`: needs no archive and no key.
pub fn proof_check(proof: &std::path::Path, message: &std::path::Path) -> anyhow::Result<()> {
    use anyhow::Context;
    let p: ama_core::InclusionProof = serde_json::from_slice(
        &std::fs::read(proof).with_context(|| format!("cannot read {}", proof.display()))?,
    )
    .map_err(|e| {
        Usage(format!(
            "{} is not an inclusion proof: {e}",
            proof.display()
        ))
    })?;
    let raw =
        std::fs::read(message).with_context(|| format!("cannot read {}", message.display()))?;
    match ama_core::proof::check(&p, &raw) {
        Ok(()) => {
            writeln!(
                std::io::stdout().lock(),
                "valid: message {} (SHA-256 {}) is leaf {} of {} under root {}",
                p.id,
                p.sha256,
                p.leaf_index,
                p.tree_size,
                p.root
            )?;
            Ok(())
        }
        Err(why) => anyhow::bail!("invalid proof: {why}"),
    }
}
