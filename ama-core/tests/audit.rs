//! The audit log: one entry per content read or state change, readable by
//! auditors only, and tamper-evident (edit, delete, reorder are reported
//! with the entry's number).

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions
#![allow(clippy::drop_non_drop)] // `drop(call())` marks a result the walk ignores

mod common;

use ama_core::{
    AccessContext, Archive, ArchiveOptions, AuditAction, AuditFilter, DirectoryBind,
    DirectoryConfig, Envelope, Error, Frontend, IdentityOptions, KdfParams, Principal, Role,
    SearchOptions, Source, TenantId, Unlock, UserSpec,
};
use redb::{ReadableTable, TableDefinition};

const AUDIT: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("audit");
const PW: &str = "tulip-orbit-canyon-42";

fn options() -> ArchiveOptions {
    ArchiveOptions {
        kdf: KdfParams::insecure_fast(),
        identity: IdentityOptions {
            password_kdf: KdfParams::insecure_fast(),
            ..Default::default()
        },
        ..Default::default()
    }
}

fn open(dir: &std::path::Path) -> Archive {
    Archive::open(dir, &Unlock::passphrase(common::PASS), options()).unwrap()
}

fn mail(n: usize) -> Vec<u8> {
    format!(
        "From: a{n}@acme.test\r\nTo: b@acme.test\r\nSubject: s{n}\r\nMessage-ID: <{n}@t>\r\n\r\nbody {n}\r\n"
    )
    .into_bytes()
}

/// Entries in the tenant's log (verify counts them, then adds its own).
fn count(a: &Archive, op: &Principal) -> u64 {
    a.verify_audit(op).unwrap().entries
}

#[test]
fn every_read_and_change_writes_exactly_one_entry() {
    let dir = tempfile::tempdir().unwrap();
    let a = Archive::create(dir.path(), &Unlock::passphrase(common::PASS), options()).unwrap();
    let t = common::tenant(&a, "acme");
    let op = Principal::operator(t.clone()).with_context(AccessContext::new(Frontend::Cli));
    let admin = Principal::admin(t.clone());
    let env = Envelope::new(Source::Import).rcpt("b@acme.test");
    let http = AccessContext::new(Frontend::Http).with_source("192.0.2.1");
    assert_eq!(count(&a, &op), 1, "tenant creation is the first entry");

    let id = a.ingest(&t, &mail(0), &env).unwrap().id;
    let victim = a.ingest(&t, &mail(77), &env).unwrap().id;
    let key = std::cell::RefCell::new(None::<ama_core::ApiKey>);
    let session = std::cell::RefCell::new(None::<ama_core::Session>);

    // (name, call): each call must add exactly one entry, success or not.
    type Call<'a> = Box<dyn Fn() + 'a>;
    let calls: Vec<(&str, Call)> = vec![
        (
            "ingest",
            Box::new(|| drop(a.ingest(&t, &mail(1), &env).unwrap())),
        ),
        (
            "ingest_batch",
            Box::new(|| {
                let batch = vec![
                    (mail(2), env.clone()),
                    (mail(3), env.clone()),
                    (vec![], env.clone()),
                ];
                drop(a.ingest_batch(&t, &batch).unwrap())
            }),
        ),
        (
            "ingest duplicate",
            Box::new(|| drop(a.ingest(&t, &mail(1), &env).unwrap())),
        ),
        (
            "search",
            Box::new(|| drop(a.search(&op, "s1", &SearchOptions::default()).unwrap())),
        ),
        (
            "search with a bad query",
            Box::new(|| assert!(a.search(&op, "from:(", &SearchOptions::default()).is_err())),
        ),
        (
            "search refused",
            Box::new(|| assert!(a.search(&admin, "", &SearchOptions::default()).is_err())),
        ),
        ("get", Box::new(|| drop(a.get(&op, id).unwrap()))),
        (
            "get refused",
            Box::new(|| assert!(a.get(&admin, id).is_err())),
        ),
        ("get_raw", Box::new(|| drop(a.get_raw(&op, id).unwrap()))),
        (
            "get_raw invisible",
            Box::new(|| {
                assert!(
                    a.get_raw(&Principal::end_user(t.clone(), ["x@y.z"]), id)
                        .is_err()
                )
            }),
        ),
        (
            "reindex",
            Box::new(|| {
                a.reindex(&t).unwrap();
            }),
        ),
        (
            "add_user",
            Box::new(|| {
                drop(
                    a.add_user(
                        &op,
                        UserSpec {
                            id: "u".into(),
                            roles: vec![Role::EndUser],
                            addresses: vec!["b@acme.test".into()],
                            password: Some(PW.into()),
                            ..Default::default()
                        },
                    )
                    .unwrap(),
                )
            }),
        ),
        (
            "add_user refused",
            Box::new(|| {
                assert!(
                    a.add_user(
                        &Principal::auditor(t.clone()),
                        UserSpec {
                            id: "v".into(),
                            roles: vec![Role::Auditor],
                            ..Default::default()
                        }
                    )
                    .is_err()
                )
            }),
        ),
        (
            "set_password",
            Box::new(|| drop(a.set_password(&op, "u", "another-long-passphrase").unwrap())),
        ),
        (
            "set_password weak",
            Box::new(|| assert!(a.set_password(&op, "u", "short").is_err())),
        ),
        (
            "grant_role",
            Box::new(|| drop(a.grant_role(&op, "u", Role::Auditor).unwrap())),
        ),
        (
            "revoke_role",
            Box::new(|| drop(a.revoke_role(&op, "u", Role::Auditor).unwrap())),
        ),
        (
            "add_address",
            Box::new(|| drop(a.add_address(&op, "u", "c@acme.test").unwrap())),
        ),
        (
            "remove_address",
            Box::new(|| drop(a.remove_address(&op, "u", "c@acme.test").unwrap())),
        ),
        (
            "set_user_active",
            Box::new(|| drop(a.set_user_active(&op, "u", true).unwrap())),
        ),
        (
            "login",
            Box::new(|| {
                *session.borrow_mut() =
                    Some(a.login(&t, "u", "another-long-passphrase", &http).unwrap())
            }),
        ),
        (
            "login failed",
            Box::new(|| assert!(a.login(&t, "u", "wrong-wrong-wrong", &http).is_err())),
        ),
        (
            "logout",
            Box::new(|| {
                a.logout(&session.borrow().as_ref().unwrap().token, &http)
                    .unwrap()
            }),
        ),
        (
            "create_api_key",
            Box::new(|| *key.borrow_mut() = Some(a.create_api_key(&op, "relay").unwrap())),
        ),
        (
            "ingest_as",
            Box::new(|| {
                let p = a
                    .authenticate(
                        key.borrow().as_ref().unwrap().token.as_deref().unwrap(),
                        &http,
                    )
                    .unwrap();
                drop(a.ingest_as(&p, &mail(9), &env).unwrap())
            }),
        ),
        (
            "ingest_as refused",
            Box::new(|| {
                assert!(
                    a.ingest_as(&Principal::auditor(t.clone()), &mail(10), &env)
                        .is_err()
                )
            }),
        ),
        (
            "revoke_api_key",
            Box::new(|| {
                a.revoke_api_key(&op, &key.borrow().as_ref().unwrap().id)
                    .unwrap()
            }),
        ),
        (
            "set_directory",
            Box::new(|| {
                a.set_directory(
                    &op,
                    Some(DirectoryConfig {
                        url: "ldap://127.0.0.1:1".into(),
                        starttls: false,
                        ca_cert_pem: None,
                        bind: DirectoryBind::Template {
                            dn: "uid={user},dc=x".into(),
                        },
                        group_base: None,
                        group_roles: vec![],
                        address_attributes: vec!["mail".into()],
                    }),
                )
                .unwrap()
            }),
        ),
        (
            "set_directory none",
            Box::new(|| a.set_directory(&op, None).unwrap()),
        ),
        (
            "export query",
            Box::new(|| {
                let mut out = Vec::new();
                let sel = ama_core::Selection::Query("s".into());
                drop(
                    a.export(&op, &sel, ama_core::ExportFormat::Mbox, "memory", &mut out)
                        .unwrap(),
                )
            }),
        ),
        (
            "export ids",
            Box::new(|| {
                let mut out = Vec::new();
                let sel = ama_core::Selection::Ids(vec![id]);
                drop(
                    a.export(&op, &sel, ama_core::ExportFormat::Mbox, "memory", &mut out)
                        .unwrap(),
                )
            }),
        ),
        (
            "export refused",
            Box::new(|| {
                let mut out = Vec::new();
                assert!(
                    a.export(
                        &admin,
                        &ama_core::Selection::All,
                        ama_core::ExportFormat::Mbox,
                        "memory",
                        &mut out
                    )
                    .is_err()
                )
            }),
        ),
        (
            "set_retention_policy",
            Box::new(|| {
                a.set_retention_policy(
                    &op,
                    ama_core::RetentionPolicy::from_default("10y".parse().unwrap()),
                )
                .unwrap();
            }),
        ),
        (
            "place_hold",
            Box::new(|| {
                drop(
                    a.place_hold(&op, "h", ama_core::HoldScope::ids([id]), "case")
                        .unwrap(),
                )
            }),
        ),
        (
            "release_hold",
            Box::new(|| a.release_hold(&op, "h", "done").unwrap()),
        ),
        (
            "sweep, nothing due",
            Box::new(|| drop(a.sweep(&t, None).unwrap())),
        ),
        (
            "request_deletion",
            Box::new(|| drop(a.request_deletion(&op, &[victim], "erasure").unwrap())),
        ),
        (
            "request_deletion_matching",
            Box::new(|| drop(a.request_deletion_matching(&op, "s3", "erasure").unwrap())),
        ),
        (
            "request_deletion without a reason",
            Box::new(|| assert!(a.request_deletion(&op, &[victim], " ").is_err())),
        ),
        (
            "request_deletion_matching nothing",
            Box::new(|| {
                assert!(
                    a.request_deletion_matching(&op, "subject:nothing-matches-this", "erasure")
                        .is_err()
                )
            }),
        ),
        (
            "approve_deletion of an unknown request",
            Box::new(|| assert!(a.approve_deletion(&op, "no-such-request").is_err())),
        ),
        ("proof", Box::new(|| drop(a.proof(&op, id).unwrap()))),
        (
            "rotate_tenant_key",
            Box::new(|| drop(a.rotate_tenant_key(&t, Frontend::Cli).unwrap())),
        ),
        ("verify", Box::new(|| drop(a.verify(&op).unwrap()))),
        ("view", Box::new(|| drop(a.view(&op, id).unwrap()))),
        (
            "attachment",
            Box::new(|| assert!(a.attachment(&op, id, 0).is_err())),
        ),
        (
            "audit_entries",
            Box::new(|| drop(a.audit_entries(&op, &AuditFilter::default()).unwrap())),
        ),
        (
            "audit_entries refused",
            Box::new(|| assert!(a.audit_entries(&admin, &AuditFilter::default()).is_err())),
        ),
        (
            "verify_audit",
            Box::new(|| drop(a.verify_audit(&op).unwrap())),
        ),
    ];
    for (name, call) in &calls {
        let before = count(&a, &op);
        call();
        let after = count(&a, &op);
        assert_eq!(
            after,
            before + 2,
            "{name}: wrote {} entries",
            after - before - 1
        );
    }
    // Calls that neither read content nor change state write nothing.
    let before = count(&a, &op);
    a.tenants().unwrap();
    a.tenant(&t).unwrap();
    a.stats(&t).unwrap();
    a.users(&op).unwrap();
    a.api_keys(&op).unwrap();
    a.holds(&op).unwrap();
    a.retention_policy(&op).unwrap();
    a.deletion_requests(&op).unwrap();
    a.authenticate("amas_acme_nope", &http).unwrap_err();
    assert_eq!(count(&a, &op), before + 1);

    // The entries say who, how, what and with which outcome.
    let log = a
        .audit_entries(
            &op,
            &AuditFilter {
                limit: 10_000,
                ..Default::default()
            },
        )
        .unwrap();
    let search = log
        .iter()
        .find(|e| e.action == AuditAction::Search)
        .unwrap();
    assert_eq!(search.detail, "query \"s1\", offset 0");
    assert_eq!(search.actor.frontend, Frontend::Cli);
    assert_eq!(search.messages().len(), 1);
    let refused = log
        .iter()
        .find(|e| e.action == AuditAction::Search && e.outcome.kind() == "denied")
        .unwrap();
    assert_eq!(refused.actor.roles, [Role::Admin]);
    let login = log
        .iter()
        .find(|e| e.action == AuditAction::Login && e.outcome.kind() == "success")
        .unwrap();
    assert_eq!(login.actor.user.as_deref(), Some("u"));
    assert_eq!(login.actor.source.as_deref(), Some("192.0.2.1"));
    let ingest = log
        .iter()
        .find(|e| e.action == AuditAction::Ingest)
        .unwrap();
    assert_eq!(ingest.messages(), [id]);
    // Filters
    let only_logins = a
        .audit_entries(
            &op,
            &AuditFilter {
                action: Some(AuditAction::Login),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(only_logins.len(), 2);
    let report = a.verify_audit(&op).unwrap();
    assert!(report.is_intact(), "{:?}", report.problems);
}

#[test]
fn only_auditors_read_the_log_and_tenants_are_apart() {
    let dir = tempfile::tempdir().unwrap();
    let a = common::create(dir.path());
    let t = common::tenant(&a, "acme");
    let other = common::tenant(&a, "other");
    a.search(
        &Principal::auditor(other.clone()),
        "secret-query",
        &SearchOptions::default(),
    )
    .unwrap();
    for p in [
        Principal::admin(t.clone()),
        Principal::end_user(t.clone(), ["a@b.c"]),
    ] {
        assert!(matches!(
            a.audit_entries(&p, &AuditFilter::default()),
            Err(Error::AccessDenied(_))
        ));
        assert!(matches!(a.verify_audit(&p), Err(Error::AccessDenied(_))));
    }
    let log = a
        .audit_entries(&Principal::auditor(t.clone()), &AuditFilter::default())
        .unwrap();
    assert!(log.iter().all(|e| !e.detail.contains("secret-query")));
    assert_eq!(log[0].action, AuditAction::TenantCreate);
    // the refused reads were recorded in acme's log
    assert_eq!(
        log.iter().filter(|e| e.outcome.kind() == "denied").count(),
        4
    );
}

/// Writes a log of 1 + 6 entries and closes the archive.
fn archive_with_log(dir: &std::path::Path) -> TenantId {
    let a = Archive::create(dir, &Unlock::passphrase(common::PASS), options()).unwrap();
    let t = common::tenant(&a, "acme");
    let au = Principal::auditor(t.clone());
    for q in ["one", "two", "three", "four", "five", "six"] {
        a.search(&au, q, &SearchOptions::default()).unwrap();
    }
    t
}

fn tamper(dir: &std::path::Path, f: impl FnOnce(&mut redb::Table<(&str, u64), &[u8]>)) {
    let db = redb::Database::open(dir.join("catalog.redb")).unwrap();
    let txn = db.begin_write().unwrap();
    {
        let mut t = txn.open_table(AUDIT).unwrap();
        f(&mut t);
    }
    txn.commit().unwrap();
}

fn get(t: &redb::Table<(&str, u64), &[u8]>, seq: u64) -> Vec<u8> {
    t.get(("acme", seq)).unwrap().unwrap().value().to_vec()
}

fn problems(dir: &std::path::Path, t: &TenantId) -> Vec<String> {
    let a = open(dir);
    let r = a.verify_audit(&Principal::auditor(t.clone())).unwrap();
    r.problems.iter().map(|p| p.to_string()).collect()
}

#[test]
fn intact_log_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let t = archive_with_log(dir.path());
    assert_eq!(problems(dir.path(), &t), Vec::<String>::new());
    // ...and stays intact across reopen, with the verify entry appended.
    assert_eq!(problems(dir.path(), &t), Vec::<String>::new());
}

#[test]
fn an_edited_entry_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let t = archive_with_log(dir.path());
    tamper(dir.path(), |tab| {
        let mut v = get(tab, 3);
        let mid = v.len() / 2;
        v[mid] ^= 1;
        tab.insert(("acme", 3), v.as_slice()).unwrap();
    });
    let p = problems(dir.path(), &t);
    assert!(p[0].starts_with("entry 3: fails authentication"), "{p:?}");
}

#[test]
fn a_deleted_entry_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let t = archive_with_log(dir.path());
    tamper(dir.path(), |tab| {
        tab.remove(("acme", 4)).unwrap();
    });
    let p = problems(dir.path(), &t);
    assert!(p[0].starts_with("entry 4: missing"), "{p:?}");
}

#[test]
fn a_deleted_last_entry_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let t = archive_with_log(dir.path());
    tamper(dir.path(), |tab| {
        tab.remove(("acme", 6)).unwrap();
    });
    let p = problems(dir.path(), &t);
    assert!(p[0].starts_with("entry 6: missing"), "{p:?}");
}

#[test]
fn reordered_entries_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let t = archive_with_log(dir.path());
    tamper(dir.path(), |tab| {
        let (two, five) = (get(tab, 2), get(tab, 5));
        tab.insert(("acme", 2), five.as_slice()).unwrap();
        tab.insert(("acme", 5), two.as_slice()).unwrap();
    });
    let p = problems(dir.path(), &t);
    assert!(p[0].starts_with("entry 2: fails authentication"), "{p:?}");
    assert!(p.iter().any(|x| x.starts_with("entry 5:")), "{p:?}");
}

#[test]
fn an_entry_replaced_by_another_tenants_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let t = {
        let a = Archive::create(dir.path(), &Unlock::passphrase(common::PASS), options()).unwrap();
        let t = common::tenant(&a, "acme");
        let o = common::tenant(&a, "other");
        a.search(
            &Principal::auditor(t.clone()),
            "x",
            &SearchOptions::default(),
        )
        .unwrap();
        a.search(&Principal::auditor(o), "y", &SearchOptions::default())
            .unwrap();
        t
    };
    let db = redb::Database::open(dir.path().join("catalog.redb")).unwrap();
    let txn = db.begin_write().unwrap();
    {
        let mut tab = txn.open_table(AUDIT).unwrap();
        let foreign = tab.get(("other", 1)).unwrap().unwrap().value().to_vec();
        tab.insert(("acme", 1), foreign.as_slice()).unwrap();
    }
    txn.commit().unwrap();
    drop(db);
    let p = problems(dir.path(), &t);
    assert!(p[0].starts_with("entry 1: fails authentication"), "{p:?}");
}
