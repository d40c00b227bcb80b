//! `ama retention …`, `ama hold …`, `ama deletion …` and `ama verify`: the
//! operator's side of the engine's retention, legal holds, deletion requests
//! and integrity checks ([`ama_core::retention`]). All of it is audited in
//! the tenant's log.

use std::io::Write;

use ama_core::{
    AccessContext, Archive, CountFrom, DeletionOutcome, Direction, Frontend, HoldScope, Principal,
    RetentionPolicy, RetentionRule, RuleMatch, TenantId,
};

use crate::Usage;
use crate::cli::{
    AsUser, DeletionCommand, Global, HoldCommand, RetentionCommand, RetentionSetArgs, VerifyArgs,
};
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
                "{tenant}: {} deleted, {} kept by legal holds{}{}",
                r.deleted.len(),
                r.held.len(),
                if r.locked.is_empty() {
                    String::new()
                } else {
                    format!(
                        ", {} kept by write-once storage locks (latest until {})",
                        r.locked.len(),
                        r.locked.iter().map(|(_, u)| *u).max().unwrap_or_default()
                    )
                },
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

/// Who acts for `ama deletion …`: the named user after a login (the
/// session is ended again afterwards), or the operator.
struct Acting {
    who: Principal,
    token: Option<String>,
}

impl Acting {
    fn new(archive: &Archive, tenant: &TenantId, as_user: &AsUser) -> anyhow::Result<Self> {
        let Some(user) = &as_user.user else {
            return Ok(Acting {
                who: unlock::operator(tenant),
                token: None,
            });
        };
        let password = crate::users::password(as_user.password_stdin)?;
        let ctx = AccessContext::new(Frontend::Cli);
        let session = archive.login(tenant, user, &password, &ctx)?;
        let who = archive.authenticate(&session.token, &ctx)?;
        Ok(Acting {
            who,
            token: Some(session.token),
        })
    }

    fn end(self, archive: &Archive) -> anyhow::Result<()> {
        if let Some(t) = self.token {
            archive.logout(&t, &AccessContext::new(Frontend::Cli))?;
        }
        Ok(())
    }
}

fn print_outcome(out: &mut impl Write, o: &DeletionOutcome) -> anyhow::Result<()> {
    match o {
        DeletionOutcome::Pending { request } => writeln!(
            out,
            "deletion request {request} recorded; it waits for a second auditor \
             (ama deletion approve {request})"
        )?,
        DeletionOutcome::Done { deleted, kept } => {
            writeln!(out, "{} deleted, {} kept back", deleted.len(), kept.len())?;
            for id in deleted {
                writeln!(out, "  deleted {id}")?;
            }
            for (id, why) in kept {
                writeln!(out, "  kept {id}: {}", clean(why))?;
            }
        }
    }
    Ok(())
}

/// `ama deletion …`
pub fn deletion(g: &Global, cmd: &DeletionCommand) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match cmd {
        DeletionCommand::Request {
            tenant,
            reason,
            query,
            ids,
            who,
        } => {
            if reason.trim().is_empty() {
                return Err(Usage("a deletion needs a --reason".into()).into());
            }
            if let Some(q) = query
                && let Err(e) = ama_core::query::parse(q)
            {
                return Err(Usage(format!("bad query: {e}")).into());
            }
            if query.is_none() && ids.is_empty() {
                return Err(Usage("give --query or --ids".into()).into());
            }
            let archive = unlock::open(g)?;
            let acting = Acting::new(&archive, tenant, who)?;
            let outcome = match query {
                Some(q) => archive.request_deletion_matching(&acting.who, q, reason),
                None => archive.request_deletion(&acting.who, ids, reason),
            };
            acting.end(&archive)?;
            print_outcome(&mut out, &outcome?)?;
        }
        DeletionCommand::List { tenant, who } => {
            let archive = unlock::open(g)?;
            let acting = Acting::new(&archive, tenant, who)?;
            let reqs = archive.deletion_requests(&acting.who);
            acting.end(&archive)?;
            for r in reqs? {
                output::json_line(
                    &mut out,
                    &serde_json::json!({
                        "id": r.id,
                        "requested_by": r.requested_by,
                        "reason": r.reason,
                        "ids": r.ids.iter().map(|i| ama_core::MessageId::from_u128(*i).to_string()).collect::<Vec<_>>(),
                    }),
                )?;
            }
        }
        DeletionCommand::Approve {
            tenant,
            request,
            who,
        } => {
            let archive = unlock::open(g)?;
            let acting = Acting::new(&archive, tenant, who)?;
            let outcome = archive.approve_deletion(&acting.who, request);
            acting.end(&archive)?;
            print_outcome(&mut out, &outcome?)?;
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
