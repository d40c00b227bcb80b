//! Retention policies, legal holds, sweeps, deletion requests and verify.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use ama_core::retention::{add_period, year_end};
use ama_core::store::{BlobKey, BlobStore, MemoryStore};
use ama_core::{
    Archive, CountFrom, DeletionOutcome, Direction, Envelope, Error, HoldScope, KdfParams,
    LocalKeyStore, MessageId, Principal, RetentionPolicy, RetentionRule, RuleMatch, SearchOptions,
    Source, StoreError, TenantId, TenantSpec, Unlock,
};
use time::macros::datetime;

fn ts(t: time::OffsetDateTime) -> i64 {
    t.unix_timestamp()
}

fn r(s: &str) -> ama_core::Retention {
    s.parse().unwrap()
}

#[test]
fn gobd_year_end_arithmetic() {
    // Any day of 2020 kept 10 years from the year's end may go on 1 Jan 2031.
    for d in [
        datetime!(2020-01-01 00:00 UTC),
        datetime!(2020-02-29 12:00 UTC),
        datetime!(2020-12-31 23:59:59 UTC),
    ] {
        assert_eq!(
            add_period(year_end(ts(d)), r("10y")),
            ts(datetime!(2031-01-01 00:00 UTC))
        );
    }
    // 31 December is the last day of its own year, not the next.
    assert_eq!(
        year_end(ts(datetime!(2023-12-31 23:00 UTC))),
        ts(datetime!(2024-01-01 00:00 UTC))
    );
    // From the message date: 29 February + 1 year is clamped to 28 February,
    // + 4 years is 29 February again; months clamp to the month's end.
    assert_eq!(
        add_period(ts(datetime!(2020-02-29 08:00 UTC)), r("1y")),
        ts(datetime!(2021-02-28 08:00 UTC))
    );
    assert_eq!(
        add_period(ts(datetime!(2020-02-29 08:00 UTC)), r("4y")),
        ts(datetime!(2024-02-29 08:00 UTC))
    );
    assert_eq!(
        add_period(ts(datetime!(2023-01-31 00:00 UTC)), r("1m")),
        ts(datetime!(2023-02-28 00:00 UTC))
    );
    assert_eq!(
        add_period(ts(datetime!(2024-01-31 00:00 UTC)), r("1m")),
        ts(datetime!(2024-02-29 00:00 UTC))
    );
    assert_eq!(
        add_period(ts(datetime!(2023-12-31 00:00 UTC)), r("90d")),
        ts(datetime!(2024-03-30 00:00 UTC))
    );
    assert_eq!(
        add_period(ts(datetime!(2023-11-30 10:00 UTC)), r("3m")),
        ts(datetime!(2024-02-29 10:00 UTC))
    );
}

fn mail(from: &str, to: &str, subject: &str, date: &str) -> Vec<u8> {
    format!("From: {from}\r\nTo: {to}\r\nSubject: {subject}\r\nDate: {date}\r\nMessage-ID: <{subject}@t>\r\n\r\nbody of {subject}\r\n")
        .into_bytes()
}

struct Fx {
    _dir: tempfile::TempDir,
    a: Archive,
    t: TenantId,
    op: Principal,
}

fn fixture() -> Fx {
    let dir = tempfile::tempdir().unwrap();
    let a = common::create(dir.path());
    let t = TenantId::new("acme").unwrap();
    let mut spec = TenantSpec::new(t.clone());
    spec.domains = vec!["acme.test".into()];
    spec.retention = r("6y");
    a.create_tenant(spec).unwrap();
    let op = Principal::operator(t.clone());
    Fx {
        _dir: dir,
        a,
        t,
        op,
    }
}

fn ingest(f: &Fx, from: &str, to: &str, subject: &str, date: &str) -> MessageId {
    f.a.ingest(
        &f.t,
        &mail(from, to, subject, date),
        &Envelope::new(Source::Import),
    )
    .unwrap()
    .id
}

#[test]
fn retain_until_follows_rules_and_is_recomputed_on_change() {
    let f = fixture();
    let inbound = ingest(
        &f,
        "x@outside.test",
        "bob@acme.test",
        "in",
        "Tue, 3 Mar 2020 10:00:00 +0000",
    );
    let outbound = ingest(
        &f,
        "bob@acme.test",
        "x@outside.test",
        "out",
        "Tue, 3 Mar 2020 10:00:00 +0000",
    );
    let legal = ingest(
        &f,
        "counsel@law.test",
        "bob@acme.test",
        "legal",
        "Tue, 3 Mar 2020 10:00:00 +0000",
    );
    // Default policy: the tenant's 6 years from the message date.
    assert_eq!(
        f.a.retain_until(&f.op, inbound).unwrap(),
        ts(datetime!(2026-03-03 10:00 UTC))
    );
    let policy = RetentionPolicy {
        default: r("6y"),
        count_from: CountFrom::YearEnd,
        rules: vec![
            RetentionRule {
                matches: RuleMatch::Domain("law.test".into()),
                period: r("10y"),
            },
            RetentionRule {
                matches: RuleMatch::Direction(Direction::Outbound),
                period: r("8y"),
            },
        ],
        minimum: None,
        locked: false,
        four_eyes: false,
    };
    assert_eq!(f.a.set_retention_policy(&f.op, policy).unwrap(), 3);
    assert_eq!(
        f.a.retain_until(&f.op, inbound).unwrap(),
        ts(datetime!(2027-01-01 00:00 UTC))
    );
    assert_eq!(
        f.a.retain_until(&f.op, outbound).unwrap(),
        ts(datetime!(2029-01-01 00:00 UTC))
    );
    assert_eq!(
        f.a.retain_until(&f.op, legal).unwrap(),
        ts(datetime!(2031-01-01 00:00 UTC))
    );
    // New mail follows the new policy at ingest.
    let later = ingest(
        &f,
        "bob@acme.test",
        "x@outside.test",
        "later",
        "Fri, 31 Dec 2021 23:00:00 +0000",
    );
    assert_eq!(
        f.a.retain_until(&f.op, later).unwrap(),
        ts(datetime!(2030-01-01 00:00 UTC))
    );
    // Only admins change it; auditors read dates; the change is audited.
    assert!(matches!(
        f.a.set_retention_policy(
            &Principal::auditor(f.t.clone()),
            RetentionPolicy::from_default(r("1y"))
        ),
        Err(Error::AccessDenied(_))
    ));
    let log =
        f.a.audit_entries(
            &f.op,
            &ama_core::AuditFilter {
                action: Some(ama_core::AuditAction::PolicyChange),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(log.len(), 2);
    assert_eq!(log[0].outcome.kind(), "success");
    assert_eq!(log[1].outcome.kind(), "denied");
}

#[test]
fn query_rules_apply_at_ingest_and_when_the_policy_changes() {
    let f = fixture();
    let before = ingest(
        &f,
        "shop@vendor.test",
        "bob@acme.test",
        "Invoice 17",
        "Tue, 3 Mar 2020 10:00:00 +0000",
    );
    let chat = ingest(
        &f,
        "friend@vendor.test",
        "bob@acme.test",
        "lunch",
        "Tue, 3 Mar 2020 11:00:00 +0000",
    );
    let policy = |q: &str| RetentionPolicy {
        default: r("1y"),
        count_from: CountFrom::YearEnd,
        rules: vec![
            RetentionRule {
                matches: RuleMatch::Domain("law.test".into()),
                period: r("3y"),
            },
            RetentionRule {
                matches: RuleMatch::Query(q.into()),
                period: r("10y"),
            },
        ],
        minimum: None,
        locked: false,
        four_eyes: false,
    };
    // A rule whose query does not parse is refused, naming the rule.
    match f.a.set_retention_policy(&f.op, policy("subject:(")) {
        Err(Error::InvalidArgument(m)) => assert!(m.contains("rule 2"), "{m}"),
        other => panic!("want InvalidArgument, got {other:?}"),
    }
    // Recomputed over what is stored: the query finds the invoice only.
    f.a.set_retention_policy(&f.op, policy("subject:invoice"))
        .unwrap();
    assert_eq!(
        f.a.retain_until(&f.op, before).unwrap(),
        ts(datetime!(2031-01-01 00:00 UTC))
    );
    assert_eq!(
        f.a.retain_until(&f.op, chat).unwrap(),
        ts(datetime!(2022-01-01 00:00 UTC))
    );
    // At ingest, in a batch of several: only the matching message gets 10y,
    // also when the word is only in the body.
    let batch = [
        mail(
            "a@vendor.test",
            "bob@acme.test",
            "Invoice 18",
            "Wed, 4 Mar 2020 10:00:00 +0000",
        ),
        mail(
            "b@vendor.test",
            "bob@acme.test",
            "hello",
            "Wed, 4 Mar 2020 10:00:00 +0000",
        ),
        b"From: c@vendor.test\r\nTo: bob@acme.test\r\nSubject: see body\r\n\
          Date: Wed, 4 Mar 2020 10:00:00 +0000\r\nMessage-ID: <sb@t>\r\n\r\n\
          the invoice is attached\r\n"
            .to_vec(),
    ];
    let items: Vec<(&[u8], Envelope)> = batch
        .iter()
        .map(|m| (m.as_slice(), Envelope::new(Source::Import)))
        .collect();
    let got: Vec<MessageId> =
        f.a.ingest_batch(&f.t, &items)
            .unwrap()
            .into_iter()
            .map(|r| r.unwrap().id)
            .collect();
    assert_eq!(
        f.a.retain_until(&f.op, got[0]).unwrap(),
        ts(datetime!(2031-01-01 00:00 UTC))
    );
    assert_eq!(
        f.a.retain_until(&f.op, got[1]).unwrap(),
        ts(datetime!(2022-01-01 00:00 UTC))
    );
    // The rule is on the subject only: a body mention does not count.
    assert_eq!(
        f.a.retain_until(&f.op, got[2]).unwrap(),
        ts(datetime!(2022-01-01 00:00 UTC))
    );
    // A query on any field finds the body mention too.
    f.a.set_retention_policy(&f.op, policy("invoice")).unwrap();
    assert_eq!(
        f.a.retain_until(&f.op, got[2]).unwrap(),
        ts(datetime!(2031-01-01 00:00 UTC))
    );
    assert_eq!(
        f.a.retention_policy(&f.op).unwrap().rules[1].matches,
        RuleMatch::Query("invoice".into())
    );
}

#[test]
fn locked_policy_refuses_to_shorten_and_minimum_only_rises() {
    let f = fixture();
    ingest(
        &f,
        "x@outside.test",
        "bob@acme.test",
        "m",
        "Tue, 3 Mar 2020 10:00:00 +0000",
    );
    let mut p = RetentionPolicy::from_default(r("7y"));
    p.minimum = Some(r("6y"));
    f.a.set_retention_policy(&f.op, p.clone()).unwrap();
    let mut lower_min = p.clone();
    lower_min.minimum = Some(r("5y"));
    assert!(
        matches!(f.a.set_retention_policy(&f.op, lower_min), Err(Error::AccessDenied(m)) if m.contains("minimum"))
    );
    p.locked = true;
    f.a.set_retention_policy(&f.op, p.clone()).unwrap();
    let mut shorter = p.clone();
    shorter.default = r("6y");
    assert!(
        matches!(f.a.set_retention_policy(&f.op, shorter), Err(Error::AccessDenied(m)) if m.contains("shorten"))
    );
    let mut unlocked = p.clone();
    unlocked.locked = false;
    assert!(
        matches!(f.a.set_retention_policy(&f.op, unlocked), Err(Error::AccessDenied(m)) if m.contains("lock"))
    );
    // Longer is fine.
    let mut longer = p;
    longer.default = r("10y");
    f.a.set_retention_policy(&f.op, longer).unwrap();
}

#[test]
fn sweep_deletes_expired_mail_except_held_and_verify_reports_tombstones() {
    let f = fixture();
    let old = ingest(
        &f,
        "x@outside.test",
        "bob@acme.test",
        "old",
        "Mon, 2 Jan 2012 10:00:00 +0000",
    );
    let held = ingest(
        &f,
        "carol@acme.test",
        "x@outside.test",
        "held",
        "Mon, 2 Jan 2012 10:00:00 +0000",
    );
    let fresh = ingest(
        &f,
        "x@outside.test",
        "bob@acme.test",
        "fresh",
        "Mon, 2 Jan 2023 10:00:00 +0000",
    );
    let storage = |id: MessageId| f.a.get_raw(&f.op, id);
    f.a.place_hold(
        &f.op,
        "case-17",
        HoldScope::Custodian("carol@acme.test".into()),
        "litigation 17",
    )
    .unwrap();
    let at = Some(datetime!(2026-06-01 00:00 UTC));
    let report = f.a.sweep(&f.t, at).unwrap();
    assert_eq!(report.deleted, [old]);
    assert_eq!(report.held, [held]);
    // Gone from search, get_raw, get and the blob store; the rest intact.
    assert!(matches!(storage(old), Err(Error::NotFound(_))));
    assert!(matches!(f.a.get(&f.op, old), Err(Error::NotFound(_))));
    assert_eq!(
        f.a.search(&f.op, "subject:old", &SearchOptions::default())
            .unwrap()
            .total,
        0
    );
    assert_eq!(
        f.a.search(&f.op, "", &SearchOptions::default())
            .unwrap()
            .total,
        2
    );
    storage(held).unwrap();
    storage(fresh).unwrap();
    let blobs_dir = f._dir.path().join("blobs");
    let mut names = Vec::new();
    walk(&blobs_dir, &mut names);
    assert!(
        !names.iter().any(|n| n.ends_with(&old.to_string())),
        "blob of {old} still stored"
    );
    assert_eq!(f.a.stats(&f.t).unwrap().messages, 2);
    // Re-running deletes nothing twice.
    let again = f.a.sweep(&f.t, at).unwrap();
    assert!(again.deleted.is_empty());
    // Releasing the hold lets the next sweep take it.
    f.a.release_hold(&f.op, "case-17", "settled").unwrap();
    assert_eq!(f.a.sweep(&f.t, at).unwrap().deleted, [held]);
    // verify passes and reports the tombstones (no content: id, digest, reason).
    let v = f.a.verify(&f.op).unwrap();
    assert!(v.is_clean(), "{:?}", v.problems);
    assert_eq!(v.verified, 1);
    assert_eq!(v.tombstones.len(), 2);
    assert!(v.tombstones.iter().all(|t| t.reason == "retention expired"));
    // The same bytes ingested again are a new message, not a dangling duplicate.
    let back = ingest(
        &f,
        "x@outside.test",
        "bob@acme.test",
        "old",
        "Mon, 2 Jan 2012 10:00:00 +0000",
    );
    assert_ne!(back, old);
    storage(back).unwrap();
}

fn walk(dir: &std::path::Path, out: &mut Vec<String>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            walk(&p, out);
        } else {
            out.push(p.display().to_string());
        }
    }
}

/// A memory store whose deletes fail while `broken` is set: a sweep
/// interrupted between the logical deletion and the purge.
struct FlakyStore {
    inner: MemoryStore,
    broken: AtomicBool,
}

impl BlobStore for FlakyStore {
    fn put(&self, k: &BlobKey, d: &[u8]) -> Result<(), StoreError> {
        self.inner.put(k, d)
    }
    fn get(&self, k: &BlobKey) -> Result<Vec<u8>, StoreError> {
        self.inner.get(k)
    }
    fn delete(&self, k: &BlobKey) -> Result<(), StoreError> {
        if self.broken.load(Ordering::SeqCst) {
            return Err(StoreError::Io {
                key: k.to_string(),
                source: std::io::Error::other("store down"),
            });
        }
        self.inner.delete(k)
    }
    fn list(&self, p: &str) -> Result<Vec<BlobKey>, StoreError> {
        self.inner.list(p)
    }
    fn describe(&self) -> String {
        "flaky".into()
    }
}

#[test]
fn an_interrupted_sweep_is_finished_by_the_next_and_deletes_each_message_once() {
    let dir = tempfile::tempdir().unwrap();
    let ks = LocalKeyStore::create(
        &LocalKeyStore::path_in(dir.path()),
        &Unlock::passphrase(common::PASS),
        KdfParams::insecure_fast(),
    )
    .unwrap();
    let store = Arc::new(FlakyStore {
        inner: MemoryStore::new(),
        broken: AtomicBool::new(false),
    });
    let a = Archive::open_with(dir.path(), Arc::new(ks), store.clone(), common::options()).unwrap();
    let t = common::tenant(&a, "acme");
    let op = Principal::operator(t.clone());
    let mut ids = Vec::new();
    for i in 0..5 {
        let raw = mail(
            "x@y.test",
            "z@y.test",
            &format!("m{i}"),
            "Mon, 2 Jan 2012 10:00:00 +0000",
        );
        ids.push(
            a.ingest(&t, &raw, &Envelope::new(Source::Import))
                .unwrap()
                .id,
        );
    }
    store.broken.store(true, Ordering::SeqCst);
    let at = Some(datetime!(2030-01-01 00:00 UTC));
    assert!(matches!(a.sweep(&t, at), Err(Error::Store(_))));
    // Logically deleted already: invisible, data keys gone, blobs still there.
    assert!(matches!(a.get_raw(&op, ids[0]), Err(Error::NotFound(_))));
    assert_eq!(store.inner.list("t/").unwrap().len(), 5);
    store.broken.store(false, Ordering::SeqCst);
    let r = a.sweep(&t, at).unwrap();
    assert_eq!(r.resumed, 5);
    assert!(r.deleted.is_empty());
    assert_eq!(store.inner.list("t/").unwrap().len(), 0);
    let v = a.verify(&op).unwrap();
    assert!(v.is_clean(), "{:?}", v.problems);
    assert_eq!(v.tombstones.len(), 5);
    let deletions = a
        .audit_entries(
            &op,
            &ama_core::AuditFilter {
                action: Some(ama_core::AuditAction::Deletion),
                ..Default::default()
            },
        )
        .unwrap();
    // The interrupted run's deletion (5 messages), then the run that
    // finished its purge.
    assert_eq!(deletions.len(), 2);
    assert_eq!(deletions[0].messages().len(), 5);
    assert!(
        deletions[1].detail.contains("5 purges finished"),
        "{}",
        deletions[1].detail
    );
}

#[test]
fn four_eyes_deletion_needs_two_different_auditors_and_reports_what_was_kept() {
    use ama_core::{AccessContext, Frontend, IdentityOptions, Role, UserSpec};
    let dir = tempfile::tempdir().unwrap();
    let opts = ama_core::ArchiveOptions {
        identity: IdentityOptions {
            password_kdf: KdfParams::insecure_fast(),
            ..Default::default()
        },
        ..common::options()
    };
    let a = Archive::create(dir.path(), &Unlock::passphrase(common::PASS), opts).unwrap();
    let t = common::tenant(&a, "acme");
    let op = Principal::operator(t.clone());
    let pw = "tulip-orbit-canyon-42";
    for u in ["ann", "ben"] {
        a.add_user(
            &op,
            UserSpec {
                id: u.into(),
                roles: vec![Role::Auditor],
                password: Some(pw.into()),
                ..Default::default()
            },
        )
        .unwrap();
    }
    let ctx = AccessContext::new(Frontend::Library);
    let ann = a
        .authenticate(&a.login(&t, "ann", pw, &ctx).unwrap().token, &ctx)
        .unwrap();
    let ben = a
        .authenticate(&a.login(&t, "ben", pw, &ctx).unwrap().token, &ctx)
        .unwrap();
    let env = Envelope::new(Source::Import);
    let gone = a
        .ingest(
            &t,
            &mail(
                "p@x.test",
                "q@x.test",
                "gdpr",
                "Mon, 2 Jan 2023 10:00:00 +0000",
            ),
            &env,
        )
        .unwrap()
        .id;
    let held = a
        .ingest(
            &t,
            &mail(
                "p@x.test",
                "q@x.test",
                "held",
                "Mon, 2 Jan 2023 10:00:00 +0000",
            ),
            &env,
        )
        .unwrap()
        .id;
    let mut p = RetentionPolicy::from_default(r("10y"));
    p.four_eyes = true;
    a.set_retention_policy(&op, p).unwrap();
    a.place_hold(&ann, "h", HoldScope::ids([held]), "keep")
        .unwrap();
    let req = match a
        .request_deletion(&ann, &[gone, held], "erasure request 42")
        .unwrap()
    {
        DeletionOutcome::Pending { request } => request,
        other => panic!("{other:?}"),
    };
    a.get_raw(&op, gone).unwrap(); // nothing deleted yet
    assert!(
        matches!(a.approve_deletion(&ann, &req), Err(Error::AccessDenied(m)) if m.contains("second"))
    );
    assert!(matches!(
        a.approve_deletion(&Principal::end_user(t.clone(), ["q@x.test"]), &req),
        Err(Error::AccessDenied(_))
    ));
    // The operator (no named user) is nobody's second pair of eyes.
    assert!(
        matches!(a.approve_deletion(&op, &req), Err(Error::AccessDenied(m)) if m.contains("four-eyes"))
    );
    a.get_raw(&op, gone).unwrap();
    match a.approve_deletion(&ben, &req).unwrap() {
        DeletionOutcome::Done { deleted, kept } => {
            assert_eq!(deleted, [gone]);
            assert_eq!(kept.len(), 1);
            assert_eq!(kept[0].0, held);
            assert!(kept[0].1.contains("legal hold"), "{}", kept[0].1);
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(a.get_raw(&op, gone), Err(Error::NotFound(_))));
    assert!(a.deletion_requests(&op).unwrap().is_empty());
    let v = a.verify(&op).unwrap();
    assert!(v.is_clean(), "{:?}", v.problems);
    assert_eq!(v.tombstones[0].reason, "erasure request 42");
    assert_eq!(v.tombstones[0].by.as_deref(), Some("ben"));
}

#[test]
fn verify_names_a_flipped_blob_and_a_removed_catalog_entry() {
    let dir = tempfile::tempdir().unwrap();
    let (t, ids) = {
        let a = common::create(dir.path());
        let t = common::tenant(&a, "acme");
        let ids: Vec<MessageId> = (0..3)
            .map(|i| {
                let raw = mail(
                    "x@y.test",
                    "z@y.test",
                    &format!("v{i}"),
                    "Mon, 2 Jan 2023 10:00:00 +0000",
                );
                a.ingest(&t, &raw, &Envelope::new(Source::Import))
                    .unwrap()
                    .id
            })
            .collect();
        assert!(a.verify(&Principal::auditor(t.clone())).unwrap().is_clean());
        (t, ids)
    };
    // Flip one byte of message 0's blob.
    let mut files = Vec::new();
    walk(&dir.path().join("blobs"), &mut files);
    let f0 = files
        .iter()
        .find(|p| p.ends_with(&ids[0].to_string()))
        .unwrap();
    let mut b = std::fs::read(f0).unwrap();
    let n = b.len() - 3;
    b[n] ^= 1;
    std::fs::write(f0, b).unwrap();
    // Remove message 1's catalog record.
    {
        const MESSAGES: redb::TableDefinition<(&str, u128), &[u8]> =
            redb::TableDefinition::new("messages");
        let db = redb::Database::open(dir.path().join("catalog.redb")).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(MESSAGES)
            .unwrap()
            .remove(("acme", ids[1].as_u128()))
            .unwrap();
        txn.commit().unwrap();
    }
    let a = common::reopen(dir.path());
    let v = a.verify(&Principal::auditor(t)).unwrap();
    assert_eq!(v.verified, 1);
    assert_eq!(v.problems.len(), 2, "{:?}", v.problems);
    assert_eq!(v.problems[0].0, Some(ids[0]));
    assert!(
        v.problems[0].1.contains("authentication"),
        "{}",
        v.problems[0].1
    );
    assert_eq!(v.problems[1].0, Some(ids[1]));
    assert!(
        v.problems[1].1.contains("without a tombstone"),
        "{}",
        v.problems[1].1
    );
}

#[test]
fn inclusion_proofs_check_against_the_bytes_and_survive_deletions() {
    let f = fixture();
    let mut raws = Vec::new();
    for i in 0..7 {
        let raw = mail(
            "x@y.test",
            "bob@acme.test",
            &format!("p{i}"),
            "Mon, 2 Jan 2012 10:00:00 +0000",
        );
        let id =
            f.a.ingest(&f.t, &raw, &Envelope::new(Source::Import))
                .unwrap()
                .id;
        raws.push((id, raw));
    }
    for (id, raw) in &raws {
        let p = f.a.proof(&f.op, *id).unwrap();
        assert_eq!(p.tree_size, 7);
        ama_core::proof::check(&p, raw).unwrap();
        // Other bytes, a forged root or a moved leaf fail.
        let mut bad = raw.clone();
        bad[0] ^= 1;
        assert!(ama_core::proof::check(&p, &bad).is_err());
        let mut forged = p.clone();
        forged.root = "0".repeat(64);
        assert!(ama_core::proof::check(&forged, raw).is_err());
        let mut moved = p.clone();
        moved.leaf_index = (moved.leaf_index + 1) % 7;
        assert!(ama_core::proof::check(&moved, raw).is_err());
    }
    // The log keeps deleted messages' leaves: proofs of the rest still hold
    // against the same root.
    let root = f.a.proof(&f.op, raws[0].0).unwrap().root;
    f.a.sweep(&f.t, Some(datetime!(2030-01-01 00:00 UTC)))
        .unwrap();
    assert!(matches!(
        f.a.get_raw(&f.op, raws[0].0),
        Err(Error::NotFound(_))
    ));
    assert_eq!(f.a.proof(&f.op, raws[0].0).unwrap().root, root);
    // End users get no proofs.
    assert!(matches!(
        f.a.proof(
            &Principal::end_user(f.t.clone(), ["bob@acme.test"]),
            raws[0].0
        ),
        Err(Error::AccessDenied(_))
    ));
}

#[test]
fn a_deletion_by_query_deletes_what_it_finds_and_keeps_held_mail() {
    let f = fixture();
    let a1 = ingest(
        &f,
        "x@spam.test",
        "bob@acme.test",
        "offer one",
        "Mon, 2 Jan 2023 10:00:00 +0000",
    );
    let a2 = ingest(
        &f,
        "x@spam.test",
        "bob@acme.test",
        "offer two",
        "Mon, 2 Jan 2023 11:00:00 +0000",
    );
    let keep = ingest(
        &f,
        "boss@acme.test",
        "bob@acme.test",
        "offer review",
        "Mon, 2 Jan 2023 12:00:00 +0000",
    );
    f.a.place_hold(&f.op, "case-1", HoldScope::ids([a2]), "litigation")
        .unwrap();
    let au = Principal::auditor(f.t.clone());
    // Bad input: a query that does not parse, one that finds nothing, no reason.
    assert!(
        f.a.request_deletion_matching(&au, "from:(", "gdpr")
            .is_err()
    );
    assert!(matches!(
        f.a.request_deletion_matching(&au, "from:nobody@none.test", "gdpr"),
        Err(Error::InvalidArgument(m)) if m.contains("finds no message")
    ));
    assert!(matches!(
        f.a.request_deletion_matching(&au, "from:x@spam.test", "  "),
        Err(Error::InvalidArgument(_))
    ));
    // End users may not delete.
    let eve = Principal::end_user(f.t.clone(), ["bob@acme.test"]);
    assert!(matches!(
        f.a.request_deletion_matching(&eve, "from:x@spam.test", "gdpr"),
        Err(Error::AccessDenied(_))
    ));
    match f
        .a
        .request_deletion_matching(&au, "from:x@spam.test", "gdpr erasure")
        .unwrap()
    {
        DeletionOutcome::Done { deleted, kept } => {
            assert_eq!(deleted, vec![a1]);
            assert_eq!(kept.len(), 1);
            assert_eq!(kept[0].0, a2);
            assert!(kept[0].1.contains("case-1"), "{}", kept[0].1);
        }
        other => panic!("want Done, got {other:?}"),
    }
    assert!(f.a.get_raw(&au, a1).is_err());
    assert!(f.a.get_raw(&au, keep).is_ok());
    // The query is kept with the reason, in the tombstone.
    let report = f.a.verify(&au).unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
    assert_eq!(report.tombstones.len(), 1);
    assert!(report.tombstones[0].reason.contains("from:x@spam.test"));
}

#[test]
fn a_hold_by_query_keeps_every_match_from_a_sweep() {
    let f = fixture();
    let n = 120;
    let env = Envelope::new(Source::Import);
    let items: Vec<(Vec<u8>, Envelope)> = (0..n)
        .map(|i| {
            (
                mail(
                    "x@old.test",
                    "bob@acme.test",
                    &format!("ancient{i}"),
                    "Mon, 2 Jan 1995 10:00:00 +0000",
                ),
                env.clone(),
            )
        })
        .collect();
    for r in f.a.ingest_batch(&f.t, &items).unwrap() {
        r.unwrap();
    }
    f.a.place_hold(
        &f.op,
        "all-old",
        HoldScope::Query("from:x@old.test".into()),
        "case",
    )
    .unwrap();
    let report = f.a.sweep(&f.t, None).unwrap();
    assert!(report.deleted.is_empty());
    assert_eq!(report.held.len(), n);
}
