//! Users, logins, lockout, sessions and API keys, through the public API.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

mod common;

use std::time::Duration;

use ama_core::{
    AccessContext, ArchiveOptions, AuditAction, AuditFilter, Envelope, Error, Frontend,
    IdentityError, IdentityOptions, KdfParams, Principal, Role, SearchOptions, Source, TenantId,
    Unlock, UserSpec,
};

const GOOD_PW: &str = "tulip-orbit-canyon-42";

fn options(identity: IdentityOptions) -> ArchiveOptions {
    ArchiveOptions {
        kdf: KdfParams::insecure_fast(),
        identity: IdentityOptions {
            password_kdf: KdfParams::insecure_fast(),
            ..identity
        },
        ..Default::default()
    }
}

fn http() -> AccessContext {
    AccessContext::new(Frontend::Http).with_source("192.0.2.7")
}

fn spec(id: &str, roles: &[Role], addrs: &[&str]) -> UserSpec {
    UserSpec {
        id: id.into(),
        display_name: None,
        addresses: addrs.iter().map(|s| s.to_string()).collect(),
        roles: roles.to_vec(),
        password: Some(GOOD_PW.into()),
    }
}

fn mail(from: &str, to: &str, subject: &str) -> Vec<u8> {
    format!("From: {from}\r\nTo: {to}\r\nSubject: {subject}\r\nMessage-ID: <{subject}@t>\r\n\r\nbody {subject}\r\n")
        .into_bytes()
}

struct Fixture {
    _dir: tempfile::TempDir,
    archive: ama_core::Archive,
    acme: TenantId,
    op: Principal,
}

fn fixture(identity: IdentityOptions) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let archive = ama_core::Archive::create(
        dir.path(),
        &Unlock::passphrase(common::PASS),
        options(identity),
    )
    .unwrap();
    let acme = common::tenant(&archive, "acme");
    let env = Envelope::new(Source::Import);
    for (f, t, s) in [
        ("alice@acme.test", "bob@acme.test", "alpha"),
        ("bob@acme.test", "carol@acme.test", "beta"),
        ("carol@acme.test", "dave@acme.test", "gamma"),
    ] {
        archive.ingest(&acme, &mail(f, t, s), &env).unwrap();
    }
    let op = Principal::operator(acme.clone());
    Fixture {
        _dir: dir,
        archive,
        acme,
        op,
    }
}

#[test]
fn end_user_logged_in_locally_sees_only_his_mail() {
    let f = fixture(IdentityOptions::default());
    f.archive
        .add_user(&f.op, spec("bob", &[Role::EndUser], &["Bob@Acme.test"]))
        .unwrap();
    let s = f.archive.login(&f.acme, "bob", GOOD_PW, &http()).unwrap();
    assert!(s.token.starts_with("amas_acme_"));
    let bob = f.archive.authenticate(&s.token, &http()).unwrap();
    assert_eq!(bob.user(), Some("bob"));
    assert_eq!(bob.context().frontend, Frontend::Http);
    let r = f
        .archive
        .search(&bob, "", &SearchOptions::default())
        .unwrap();
    let mut subjects: Vec<String> = r
        .hits
        .iter()
        .filter_map(|h| h.meta.subject.clone())
        .collect();
    subjects.sort();
    assert_eq!(subjects, ["alpha", "beta"]);
    // carol's mail to dave is invisible: not found, not "denied".
    let all = f
        .archive
        .search(&f.op, "subject:gamma", &SearchOptions::default())
        .unwrap();
    let gamma = all.hits[0].id;
    assert!(matches!(
        f.archive.get_raw(&bob, gamma),
        Err(Error::NotFound(_))
    ));
    // Login names are case-insensitive.
    assert!(f.archive.login(&f.acme, "BOB", GOOD_PW, &http()).is_ok());
}

#[test]
fn admin_without_auditor_role_is_refused_mail_content() {
    let f = fixture(IdentityOptions::default());
    f.archive
        .add_user(&f.op, spec("root", &[Role::Admin], &[]))
        .unwrap();
    let s = f.archive.login(&f.acme, "root", GOOD_PW, &http()).unwrap();
    let root = f.archive.authenticate(&s.token, &http()).unwrap();
    let any = f
        .archive
        .search(&f.op, "", &SearchOptions::default())
        .unwrap()
        .hits[0]
        .id;
    assert!(matches!(
        f.archive.search(&root, "", &SearchOptions::default()),
        Err(Error::AccessDenied(_))
    ));
    assert!(matches!(
        f.archive.get(&root, any),
        Err(Error::AccessDenied(_))
    ));
    assert!(matches!(
        f.archive.get_raw(&root, any),
        Err(Error::AccessDenied(_))
    ));
    // ...but may manage users, and with the auditor role reads everything.
    f.archive.grant_role(&root, "root", Role::Auditor).unwrap();
    let root = f.archive.authenticate(&s.token, &http()).unwrap();
    assert_eq!(
        f.archive
            .search(&root, "", &SearchOptions::default())
            .unwrap()
            .total,
        3
    );
}

#[test]
fn disabled_user_and_expired_or_revoked_tokens_are_refused() {
    let f = fixture(IdentityOptions {
        session_ttl_secs: 2,
        ..Default::default()
    });
    f.archive
        .add_user(&f.op, spec("eve", &[Role::Auditor], &[]))
        .unwrap();
    // revoked (logout)
    let s = f.archive.login(&f.acme, "eve", GOOD_PW, &http()).unwrap();
    f.archive.authenticate(&s.token, &http()).unwrap();
    f.archive.logout(&s.token, &http()).unwrap();
    assert!(matches!(
        f.archive.authenticate(&s.token, &http()),
        Err(Error::Unauthenticated(_))
    ));
    // disabled: the live session stops working, and no new login
    let s = f.archive.login(&f.acme, "eve", GOOD_PW, &http()).unwrap();
    f.archive.set_user_active(&f.op, "eve", false).unwrap();
    assert!(matches!(
        f.archive.authenticate(&s.token, &http()),
        Err(Error::Unauthenticated(_))
    ));
    assert!(matches!(
        f.archive.login(&f.acme, "eve", GOOD_PW, &http()),
        Err(Error::Unauthenticated(_))
    ));
    f.archive.set_user_active(&f.op, "eve", true).unwrap();
    // expired
    let s = f.archive.login(&f.acme, "eve", GOOD_PW, &http()).unwrap();
    f.archive.authenticate(&s.token, &http()).unwrap();
    std::thread::sleep(Duration::from_millis(2100));
    assert!(matches!(
        f.archive.authenticate(&s.token, &http()),
        Err(Error::Unauthenticated(_))
    ));
    // forged and foreign tokens
    let mut forged = s.token.clone();
    forged.pop();
    forged.push('0');
    for bad in [
        forged.as_str(),
        "",
        "amas_other_00",
        "Bearer x",
        "amas_nosuch_0000000000000000000000000000000000000000000000000000000000000000",
    ] {
        assert!(
            matches!(
                f.archive.authenticate(bad, &http()),
                Err(Error::Unauthenticated(_))
            ),
            "{bad}"
        );
    }
}

#[test]
fn idle_sessions_expire() {
    let f = fixture(IdentityOptions {
        session_idle_secs: 1,
        ..Default::default()
    });
    f.archive
        .add_user(&f.op, spec("ida", &[Role::Auditor], &[]))
        .unwrap();
    let s = f.archive.login(&f.acme, "ida", GOOD_PW, &http()).unwrap();
    std::thread::sleep(Duration::from_millis(1100));
    assert!(matches!(
        f.archive.authenticate(&s.token, &http()),
        Err(Error::Unauthenticated(_))
    ));
}

#[test]
fn lockout_engages_after_configured_failures_and_is_audited() {
    let f = fixture(IdentityOptions {
        max_failures: 3,
        lockout_base_secs: 60,
        ..Default::default()
    });
    f.archive
        .add_user(&f.op, spec("mallory", &[Role::EndUser], &["m@acme.test"]))
        .unwrap();
    // Different source addresses, so only the per-user lock engages.
    for i in 0..3 {
        let ctx = AccessContext::new(Frontend::Http).with_source(format!("198.51.100.{i}"));
        assert!(matches!(
            f.archive
                .login(&f.acme, "mallory", "wrong-password-xyz", &ctx),
            Err(Error::Unauthenticated(_))
        ));
    }
    // Now even the right password is refused while the lock lasts.
    match f.archive.login(&f.acme, "mallory", GOOD_PW, &http()) {
        Err(Error::LockedOut { retry_after_secs }) => {
            assert!((50..=60).contains(&retry_after_secs), "{retry_after_secs}")
        }
        other => panic!("expected lockout, got {other:?}"),
    }
    let log = f
        .archive
        .audit_entries(
            &f.op,
            &AuditFilter {
                action: Some(AuditAction::Login),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(log.len(), 4);
    assert!(
        log.iter()
            .all(|e| e.actor.user.as_deref() == Some("mallory"))
    );
    assert!(
        log[2].outcome.to_string().contains("locked out for 60 s"),
        "{}",
        log[2].outcome
    );
    assert!(
        log[3]
            .outcome
            .to_string()
            .contains("too many failed logins")
    );
    assert_eq!(log[3].actor.source.as_deref(), Some("192.0.2.7"));
    // An admin resetting the password lifts the lock.
    f.archive
        .set_password(&f.op, "mallory", "another-long-passphrase-7")
        .unwrap();
    f.archive
        .login(&f.acme, "mallory", "another-long-passphrase-7", &http())
        .unwrap();
}

#[test]
fn lockout_per_source_address() {
    let f = fixture(IdentityOptions {
        max_failures: 2,
        ..Default::default()
    });
    f.archive
        .add_user(&f.op, spec("sam", &[Role::EndUser], &["s@acme.test"]))
        .unwrap();
    let attacker = AccessContext::new(Frontend::Http).with_source("203.0.113.9");
    // Spraying unknown users from one address locks that address.
    for u in ["u1", "u2"] {
        assert!(matches!(
            f.archive.login(&f.acme, u, "whatever-password", &attacker),
            Err(Error::Unauthenticated(_))
        ));
    }
    assert!(matches!(
        f.archive.login(&f.acme, "sam", GOOD_PW, &attacker),
        Err(Error::LockedOut { .. })
    ));
    // Another address is unaffected.
    f.archive.login(&f.acme, "sam", GOOD_PW, &http()).unwrap();
}

#[test]
fn weak_passwords_are_refused_with_a_reason() {
    let f = fixture(IdentityOptions::default());
    let cases = [
        ("short", "at least 12"),
        ("password1234", "commonly used"),
        ("zzzzzzzzzzzzzzzz", "single character"),
        ("longusername.x", "user id"),
    ];
    for (pw, why) in cases {
        let mut s = spec("longusername.x", &[Role::EndUser], &[]);
        s.password = Some(pw.into());
        match f.archive.add_user(&f.op, s) {
            Err(Error::Identity(IdentityError::WeakPassword(reason))) => {
                assert!(reason.contains(why), "{pw}: {reason}")
            }
            other => panic!("{pw}: {other:?}"),
        }
    }
    f.archive
        .add_user(&f.op, spec("longusername.x", &[Role::EndUser], &[]))
        .unwrap();
    assert!(matches!(
        f.archive
            .set_password(&f.op, "longusername.x", "qwerty123456"),
        Err(Error::Identity(IdentityError::WeakPassword(_)))
    ));
}

#[test]
fn unknown_user_and_wrong_password_look_the_same() {
    let f = fixture(IdentityOptions::default());
    f.archive
        .add_user(&f.op, spec("zoe", &[Role::EndUser], &[]))
        .unwrap();
    let msg = |r: Result<ama_core::Session, Error>| r.unwrap_err().to_string();
    let a = msg(f.archive.login(&f.acme, "zoe", "not-her-password", &http()));
    let b = msg(f
        .archive
        .login(&f.acme, "nobody", "not-her-password", &http()));
    let c = msg(f
        .archive
        .login(&TenantId::new("nosuch").unwrap(), "zoe", GOOD_PW, &http()));
    assert_eq!(a, b);
    assert_eq!(b, c);
}

#[test]
fn user_management_is_for_admins() {
    let f = fixture(IdentityOptions::default());
    f.archive
        .add_user(&f.op, spec("aud", &[Role::Auditor], &[]))
        .unwrap();
    let s = f.archive.login(&f.acme, "aud", GOOD_PW, &http()).unwrap();
    let aud = f.archive.authenticate(&s.token, &http()).unwrap();
    assert!(matches!(
        f.archive.add_user(&aud, spec("x1", &[Role::Auditor], &[])),
        Err(Error::AccessDenied(_))
    ));
    assert!(matches!(
        f.archive.grant_role(&aud, "aud", Role::Admin),
        Err(Error::AccessDenied(_))
    ));
    assert!(matches!(f.archive.users(&aud), Err(Error::AccessDenied(_))));
    assert!(matches!(
        f.archive
            .add_user(&f.op, spec("aud", &[Role::Auditor], &[])),
        Err(Error::Identity(IdentityError::UserExists(_)))
    ));
    assert!(matches!(
        f.archive
            .add_user(&f.op, spec("bad id", &[Role::Auditor], &[])),
        Err(Error::Identity(IdentityError::InvalidUserId(_)))
    ));
    let u = f
        .archive
        .add_address(&f.op, "aud", "Aud@Acme.Test")
        .unwrap();
    assert_eq!(u.addresses, ["aud@acme.test"]);
    assert!(matches!(
        f.archive.revoke_role(&f.op, "aud", Role::Auditor),
        Err(Error::Identity(IdentityError::NoRoles(_)))
    ));
    let ids: Vec<String> = f
        .archive
        .users(&f.op)
        .unwrap()
        .into_iter()
        .map(|u| u.id)
        .collect();
    assert_eq!(ids, ["aud"]);
}

#[test]
fn api_keys_ingest_only_into_their_tenant() {
    let f = fixture(IdentityOptions::default());
    let other = common::tenant(&f.archive, "other");
    let key = f.archive.create_api_key(&f.op, "mta relay").unwrap();
    let token = key.token.clone().unwrap();
    let p = f.archive.authenticate(&token, &http()).unwrap();
    assert_eq!(p.tenant(), &f.acme);
    assert!(p.may_ingest());
    let env = Envelope::new(Source::Http);
    let r = f
        .archive
        .ingest_as(&p, &mail("x@acme.test", "y@acme.test", "viakey"), &env)
        .unwrap();
    // ingest only: no reading, not even what it ingested
    assert!(matches!(
        f.archive.search(&p, "", &SearchOptions::default()),
        Err(Error::AccessDenied(_))
    ));
    assert!(matches!(
        f.archive.get_raw(&p, r.id),
        Err(Error::AccessDenied(_))
    ));
    // an end user may not ingest
    let eu = Principal::end_user(f.acme.clone(), ["x@acme.test"]);
    assert!(matches!(
        f.archive.ingest_as(&eu, b"Subject: x\r\n\r\nx", &env),
        Err(Error::AccessDenied(_))
    ));
    // the other tenant never sees it
    assert_eq!(
        f.archive
            .search(&Principal::auditor(other), "", &SearchOptions::default())
            .unwrap()
            .total,
        0
    );
    // listing shows no token; revocation works
    let listed = f.archive.api_keys(&f.op).unwrap();
    assert_eq!(listed.len(), 1);
    assert!(listed[0].token.is_none());
    f.archive.revoke_api_key(&f.op, &key.id).unwrap();
    assert!(matches!(
        f.archive.authenticate(&token, &http()),
        Err(Error::Unauthenticated(_))
    ));
}

#[test]
fn password_hashes_are_upgraded_at_login() {
    let dir = tempfile::tempdir().unwrap();
    let weak = IdentityOptions::default();
    {
        let a = ama_core::Archive::create(
            dir.path(),
            &Unlock::passphrase(common::PASS),
            options(weak.clone()),
        )
        .unwrap();
        let t = common::tenant(&a, "acme");
        a.add_user(&Principal::operator(t), spec("u", &[Role::EndUser], &[]))
            .unwrap();
    }
    // Reopen with stronger parameters: the login still works (old params
    // are stored with the hash), and works again after the upgrade.
    let strong = ArchiveOptions {
        kdf: KdfParams::insecure_fast(),
        identity: IdentityOptions {
            password_kdf: KdfParams {
                m_cost: 1024,
                t_cost: 2,
                p_cost: 1,
            },
            ..weak
        },
        ..Default::default()
    };
    let a = ama_core::Archive::open(dir.path(), &Unlock::passphrase(common::PASS), strong).unwrap();
    let t = TenantId::new("acme").unwrap();
    a.login(&t, "u", GOOD_PW, &http()).unwrap();
    a.login(&t, "u", GOOD_PW, &http()).unwrap();
    assert!(a.login(&t, "u", "wrong-password-abc", &http()).is_err());
}
