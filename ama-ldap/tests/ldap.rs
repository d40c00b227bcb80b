//! Directory login end to end: `ama_core::Archive` with the
//! `LdapAuthenticator` against a real OpenLDAP slapd on loopback (one
//! throwaway server per test, see `ama_ldap::testing`).
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use ama_core::{
    AccessContext, Archive, ArchiveOptions, AuditAction, AuditFilter, Authenticator, DirectoryBind,
    DirectoryConfig, DirectoryError, Envelope, Error, Frontend, IdentityError, IdentityOptions,
    KdfParams, Outcome, Principal, Role, SearchOptions, Source, TenantId, TenantSpec, Unlock,
    UserSource,
};
use ama_ldap::testing::{self, Slapd};
use ama_ldap::{LdapAuthenticator, LdapOptions};

fn slapd() -> Option<Slapd> {
    let s = Slapd::start();
    if s.is_none() {
        eprintln!("SKIPPED: /usr/sbin/slapd is not installed (scripts/test installs slapd)");
    }
    s
}

fn http() -> AccessContext {
    AccessContext::new(Frontend::Http).with_source("192.0.2.7")
}

struct Fixture {
    _dir: tempfile::TempDir,
    archive: Archive,
    acme: TenantId,
    op: Principal,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let options = ArchiveOptions {
        kdf: KdfParams::insecure_fast(),
        identity: IdentityOptions {
            password_kdf: KdfParams::insecure_fast(),
            ..Default::default()
        },
        ..Default::default()
    };
    let archive = Archive::create(
        dir.path(),
        &Unlock::passphrase("correct horse battery staple"),
        options,
    )
    .unwrap();
    let acme = TenantId::new("acme").unwrap();
    archive
        .create_tenant(TenantSpec::new(acme.clone()))
        .unwrap();
    archive.set_authenticator(Arc::new(LdapAuthenticator::new()));
    let op = Principal::operator(acme.clone());
    Fixture {
        _dir: dir,
        archive,
        acme,
        op,
    }
}

fn template() -> DirectoryBind {
    DirectoryBind::Template {
        dn: testing::PEOPLE_TEMPLATE.into(),
    }
}

fn search_bind(service_password: &str) -> DirectoryBind {
    DirectoryBind::Search {
        service_dn: testing::SERVICE_DN.into(),
        service_password: service_password.into(),
        base: testing::SUFFIX.into(),
        filter: "(&(objectClass=inetOrgPerson)(uid={user}))".into(),
    }
}

fn config(url: &str, bind: DirectoryBind) -> DirectoryConfig {
    DirectoryConfig {
        url: url.into(),
        starttls: false,
        ca_cert_pem: None,
        bind,
        group_base: None,
        group_roles: vec![
            (testing::group_dn("staff"), Role::EndUser),
            // Written in another case than the directory's: DNs compare
            // case-insensitively.
            (testing::group_dn("AUDITORS"), Role::Auditor),
            (testing::group_dn("admins"), Role::Admin),
        ],
        address_attributes: vec!["mail".into(), "proxyAddresses".into()],
    }
}

impl Fixture {
    fn use_directory(&self, c: DirectoryConfig) {
        ama_ldap::check_config(&c).unwrap();
        self.archive.set_directory(&self.op, Some(c)).unwrap();
    }

    fn login(&self, user: &str, password: &str) -> ama_core::Result<Principal> {
        let s = self.archive.login(&self.acme, user, password, &http())?;
        self.archive.authenticate(&s.token, &http())
    }

    fn logins(&self) -> Vec<(Option<String>, Outcome)> {
        self.archive
            .audit_entries(
                &self.op,
                &AuditFilter {
                    action: Some(AuditAction::Login),
                    ..Default::default()
                },
            )
            .unwrap()
            .into_iter()
            .map(|e| (e.actor.user, e.outcome))
            .collect()
    }
}

fn sorted<T: Ord + Clone>(v: &[T]) -> Vec<T> {
    let mut v = v.to_vec();
    v.sort();
    v
}

fn role_names(p: &Principal) -> Vec<&'static str> {
    sorted(&p.roles().iter().map(|r| r.as_str()).collect::<Vec<_>>())
}

#[test]
fn correct_password_gives_mapped_roles_and_addresses() {
    let Some(ldap) = slapd() else { return };
    let f = fixture();
    f.use_directory(config(&ldap.url(), template()));

    let alice = f.login("alice", testing::ALICE_PASSWORD).unwrap();
    assert_eq!(alice.user(), Some("alice"));
    assert_eq!(role_names(&alice), ["auditor", "end-user"]);
    // `mail` and the SMTP entries of `proxyAddresses`, lower-cased; the
    // X500 entry is not an address.
    assert_eq!(
        sorted(alice.addresses()),
        [
            "alice.example@example.test",
            "alice@example.test",
            "alice@old.example.test"
        ]
    );
    let users = f.archive.users(&f.op).unwrap();
    assert_eq!(users.len(), 1);
    assert_eq!(users[0].source, UserSource::Directory);
    assert_eq!(users[0].display_name, "Alice Example");
    assert!(!users[0].has_password, "no directory password is kept");

    // Login names are matched by the directory, case-insensitively.
    let again = f.login("ALICE", testing::ALICE_PASSWORD).unwrap();
    assert_eq!(again.user(), Some("alice"));
    assert_eq!(f.archive.users(&f.op).unwrap().len(), 1);
}

#[test]
fn wrong_password_unknown_user_and_groupless_user_are_refused() {
    let Some(ldap) = slapd() else { return };
    let f = fixture();
    f.use_directory(config(&ldap.url(), template()));

    for (user, pw) in [
        ("alice", "not-alices-password"),
        ("alice", ""),
        ("nobody", "whatever-password"),
        // Right password, but no group of hers maps to a role.
        ("carol", testing::CAROL_PASSWORD),
    ] {
        match f.login(user, pw) {
            Err(Error::Unauthenticated(m)) => assert_eq!(m, "wrong user or password", "{user}"),
            other => panic!("{user}/{pw:?}: expected Unauthenticated, got {other:?}"),
        }
    }
    let logins = f.logins();
    assert_eq!(logins.len(), 4);
    assert!(
        matches!(&logins[0].1, Outcome::Denied(why) if why.contains("directory refused")),
        "{logins:?}"
    );
    assert!(
        matches!(&logins[3].1, Outcome::Denied(why) if why.contains("no directory group")),
        "{logins:?}"
    );
    // Four refusals stay below the lockout threshold (five by default).
    assert!(f.login("alice", testing::ALICE_PASSWORD).is_ok());
}

#[test]
fn group_change_in_the_directory_changes_roles_at_next_login() {
    let Some(ldap) = slapd() else { return };
    let f = fixture();
    f.use_directory(config(&ldap.url(), template()));
    let bob_dn = testing::person_dn("bob");

    let first = f
        .archive
        .login(&f.acme, "bob", testing::BOB_PASSWORD, &http())
        .unwrap();
    let bob = f.archive.authenticate(&first.token, &http()).unwrap();
    assert_eq!(role_names(&bob), ["end-user"]);

    ldap.add_member("auditors", &bob_dn);
    let bob = f.login("bob", testing::BOB_PASSWORD).unwrap();
    assert_eq!(role_names(&bob), ["auditor", "end-user"]);
    // The user record changed, so the older session has the new roles too.
    let older = f.archive.authenticate(&first.token, &http()).unwrap();
    assert_eq!(role_names(&older), ["auditor", "end-user"]);

    ldap.remove_member("auditors", &bob_dn);
    ldap.remove_member("staff", &bob_dn);
    assert!(matches!(
        f.login("bob", testing::BOB_PASSWORD),
        Err(Error::Unauthenticated(_))
    ));
    ldap.add_member("staff", &bob_dn);
    assert_eq!(
        role_names(&f.login("bob", testing::BOB_PASSWORD).unwrap()),
        ["end-user"]
    );

    // A password change in the directory takes effect at once.
    ldap.set_password(&bob_dn, "bobs-new-directory-pw");
    assert!(matches!(
        f.login("bob", testing::BOB_PASSWORD),
        Err(Error::Unauthenticated(_))
    ));
    assert!(f.login("bob", "bobs-new-directory-pw").is_ok());
}

#[test]
fn group_search_finds_groups_that_member_of_does_not_list() {
    let Some(ldap) = slapd() else { return };
    let f = fixture();
    // bob is a uniqueMember of cn=admins (a groupOfUniqueNames, which the
    // memberOf overlay does not track): found only by searching the groups.
    f.use_directory(config(&ldap.url(), template()));
    assert_eq!(
        role_names(&f.login("bob", testing::BOB_PASSWORD).unwrap()),
        ["end-user"]
    );
    let mut c = config(&ldap.url(), template());
    c.group_base = Some(testing::GROUP_BASE.into());
    f.use_directory(c.clone());
    assert_eq!(
        role_names(&f.login("bob", testing::BOB_PASSWORD).unwrap()),
        ["admin", "end-user"]
    );
    // And through the service account as well.
    c.bind = search_bind(testing::SERVICE_PASSWORD);
    f.use_directory(c);
    assert_eq!(
        role_names(&f.login("bob", testing::BOB_PASSWORD).unwrap()),
        ["admin", "end-user"]
    );
}

#[test]
fn search_then_bind_with_a_service_account() {
    let Some(ldap) = slapd() else { return };
    let f = fixture();
    f.use_directory(config(&ldap.url(), search_bind(testing::SERVICE_PASSWORD)));

    let alice = f.login("alice", testing::ALICE_PASSWORD).unwrap();
    assert_eq!(role_names(&alice), ["auditor", "end-user"]);
    assert!(
        alice
            .addresses()
            .contains(&"alice@example.test".to_string())
    );
    assert!(matches!(
        f.login("alice", "wrong-password-here"),
        Err(Error::Unauthenticated(_))
    ));
    // Two entries match uid=twin: ambiguous, so refused even with the
    // right password.
    let auth = LdapAuthenticator::new();
    let c = config(&ldap.url(), search_bind(testing::SERVICE_PASSWORD));
    assert_eq!(
        auth.authenticate(&c, "twin", testing::TWIN_PASSWORD),
        Err(DirectoryError::InvalidCredentials)
    );
    // Filter metacharacters in the name are escaped: no wildcard match.
    for user in ["*", "alic*", "alice)(uid=*", "*)(|(uid=*"] {
        assert_eq!(
            auth.authenticate(&c, user, testing::ALICE_PASSWORD),
            Err(DirectoryError::InvalidCredentials),
            "{user}"
        );
    }
    // A rejected service account is the configuration's fault, and says so.
    f.use_directory(config(&ldap.url(), search_bind("not-the-service-password")));
    match f.login("alice", testing::ALICE_PASSWORD) {
        Err(Error::Identity(IdentityError::Directory(m))) => {
            assert!(m.contains("service account"), "{m}")
        }
        other => panic!("expected a directory error, got {other:?}"),
    }
}

#[test]
fn user_names_are_escaped_in_bind_dns() {
    let Some(ldap) = slapd() else { return };
    let auth = LdapAuthenticator::new();
    let c = config(&ldap.url(), template());
    // The comma is escaped (RFC 4514), so the DN names smith's entry...
    let id = auth
        .authenticate(&c, "smith, jr", testing::SMITH_PASSWORD)
        .unwrap();
    assert!(id.dn.starts_with("uid=smith\\2c jr,"), "{}", id.dn);
    assert_eq!(id.addresses, ["smith@example.test"]);
    // ...and a name cannot inject RDNs to bind as someone else.
    assert_eq!(
        auth.authenticate(
            &c,
            "x,ou=services,dc=example,dc=test\u{0}",
            testing::SERVICE_PASSWORD
        ),
        Err(DirectoryError::InvalidCredentials)
    );
    let s = config(&ldap.url(), search_bind(testing::SERVICE_PASSWORD));
    let id = auth
        .authenticate(&s, "smith, jr", testing::SMITH_PASSWORD)
        .unwrap();
    assert_eq!(id.display_name.as_deref(), Some("Smith Junior"));
}

fn mail(from: &str, to: &str, subject: &str) -> Vec<u8> {
    format!(
        "From: {from}\r\nTo: {to}\r\nSubject: {subject}\r\nMessage-ID: <{subject}@example.test>\r\n\r\nbody {subject}\r\n"
    )
    .into_bytes()
}

#[test]
fn end_user_logged_in_through_ldap_sees_only_his_mail() {
    let Some(ldap) = slapd() else { return };
    let f = fixture();
    let env = Envelope::new(Source::Import);
    f.archive
        .ingest(
            &f.acme,
            &mail("ext@other.test", "bob@example.test", "for-bob"),
            &env,
        )
        .unwrap();
    f.archive
        .ingest(
            &f.acme,
            &mail("alice@example.test", "carol@example.test", "not-for-bob"),
            &env,
        )
        .unwrap();
    f.use_directory(config(&ldap.url(), template()));

    let bob = f.login("bob", testing::BOB_PASSWORD).unwrap();
    assert_eq!(bob.addresses(), ["bob@example.test"]);
    let subjects = |p: &Principal| -> Vec<String> {
        let r = f.archive.search(p, "", &SearchOptions::default()).unwrap();
        sorted(
            &r.hits
                .iter()
                .filter_map(|h| h.meta.subject.clone())
                .collect::<Vec<_>>(),
        )
    };
    assert_eq!(subjects(&bob), ["for-bob"]);
    // alice is an auditor through her directory group: she reads both.
    let alice = f.login("alice", testing::ALICE_PASSWORD).unwrap();
    assert_eq!(subjects(&alice), ["for-bob", "not-for-bob"]);
    // The other message is not even there for bob.
    let other = f
        .archive
        .search(&alice, "subject:not-for-bob", &SearchOptions::default())
        .unwrap()
        .hits[0]
        .id;
    assert!(matches!(
        f.archive.get_raw(&bob, other),
        Err(Error::NotFound(_))
    ));
}

#[test]
fn a_directory_that_is_down_or_silent_is_reported_within_the_timeouts() {
    let Some(mut ldap) = slapd() else { return };
    let f = fixture();
    f.use_directory(config(&ldap.url(), template()));
    assert!(f.login("alice", testing::ALICE_PASSWORD).is_ok());
    ldap.kill();
    match f.login("alice", testing::ALICE_PASSWORD) {
        Err(Error::Identity(IdentityError::Directory(m))) => {
            assert!(m.contains("cannot reach the directory"), "{m}")
        }
        other => panic!("expected a directory error, got {other:?}"),
    }
    let logins = f.logins();
    assert!(
        matches!(&logins.last().unwrap().1, Outcome::Failed(m) if m.contains("unavailable")),
        "{logins:?}"
    );

    // A server that accepts connections and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("ldap://{}", silent.local_addr().unwrap());
    let auth = LdapAuthenticator::with_options(LdapOptions {
        connect_timeout: Duration::from_millis(300),
        operation_timeout: Duration::from_millis(300),
        total_timeout: Duration::from_secs(2),
    });
    let start = Instant::now();
    match auth.authenticate(&config(&url, template()), "alice", "pw") {
        Err(DirectoryError::Unavailable(m)) => assert!(m.contains("did not answer"), "{m}"),
        other => panic!("expected Unavailable, got {other:?}"),
    }
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    // StartTLS to the silent server: the connect timeout covers it.
    let mut c = config(&url, template());
    c.starttls = true;
    let start = Instant::now();
    assert!(matches!(
        auth.authenticate(&c, "alice", "pw"),
        Err(DirectoryError::Unavailable(_))
    ));
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn plain_ldap_to_a_remote_host_is_a_configuration_error() {
    let auth = LdapAuthenticator::new();
    // TEST-NET address: refused before any connection is tried.
    let c = config("ldap://192.0.2.10:389", template());
    let start = Instant::now();
    assert!(matches!(
        auth.authenticate(&c, "alice", "pw"),
        Err(DirectoryError::Config(m)) if m.contains("unencrypted")
    ));
    assert!(start.elapsed() < Duration::from_millis(500));
}

#[test]
fn login_works_from_inside_a_tokio_runtime() {
    let Some(ldap) = slapd() else { return };
    let c = config(&ldap.url(), template());
    let auth = LdapAuthenticator::new();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // E.g. an HTTP handler that calls `Archive::login` without spawn_blocking.
    let id = rt
        .block_on(async { auth.authenticate(&c, "alice", testing::ALICE_PASSWORD) })
        .unwrap();
    assert_eq!(id.dn, testing::person_dn("alice"));
}

#[test]
fn ldaps_and_starttls_with_the_configured_ca() {
    let Some(ldap) = Slapd::start_tls() else {
        eprintln!("SKIPPED: /usr/sbin/slapd is not installed (scripts/test installs slapd)");
        return;
    };
    let auth = LdapAuthenticator::new();
    let ca = ldap.ca_pem().unwrap().to_string();
    let ldaps = ldap.ldaps_url().unwrap();

    let mut c = config(&ldaps, template());
    c.ca_cert_pem = Some(ca.clone());
    let id = auth
        .authenticate(&c, "alice", testing::ALICE_PASSWORD)
        .unwrap();
    assert_eq!(id.display_name.as_deref(), Some("Alice Example"));
    assert_eq!(
        auth.authenticate(&c, "alice", "wrong-password-here"),
        Err(DirectoryError::InvalidCredentials)
    );

    // StartTLS on the plain port, to "localhost" (the certificate names it too).
    let mut s = config(
        &ldap.url().replace("127.0.0.1", "localhost"),
        search_bind(testing::SERVICE_PASSWORD),
    );
    s.starttls = true;
    s.ca_cert_pem = Some(ca);
    assert!(auth.authenticate(&s, "bob", testing::BOB_PASSWORD).is_ok());

    // Without the CA (system roots) or with another CA: not trusted.
    let mut untrusted = config(&ldaps, template());
    match auth.authenticate(&untrusted, "alice", testing::ALICE_PASSWORD) {
        Err(DirectoryError::Config(m)) => assert!(m.contains("not trusted"), "{m}"),
        other => panic!("expected a certificate error, got {other:?}"),
    }
    let other_ca = rcgen::generate_simple_self_signed(vec!["ca.example".to_string()])
        .unwrap()
        .cert
        .pem();
    untrusted.ca_cert_pem = Some(other_ca);
    assert!(matches!(
        auth.authenticate(&untrusted, "alice", testing::ALICE_PASSWORD),
        Err(DirectoryError::Config(m)) if m.contains("not trusted")
    ));

    // End to end through the archive, over ldaps://.
    let f = fixture();
    f.use_directory(c);
    let alice = f.login("alice", testing::ALICE_PASSWORD).unwrap();
    assert_eq!(role_names(&alice), ["auditor", "end-user"]);
}
