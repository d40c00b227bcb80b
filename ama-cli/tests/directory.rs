//! `ama tenant directory set|show|test|clear` against a real OpenLDAP slapd
//! on loopback (`ama_ldap::testing`), run as an operator's script would.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Output};

use ama_ldap::testing::{self, Slapd};
use serde_json::Value;

struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Self {
        let f = Fixture {
            dir: tempfile::tempdir().unwrap(),
        };
        f.ok(&["init"], &[]);
        f.ok(&["tenant", "add", "acme"], &[]);
        f
    }

    fn run(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_ama"))
            .current_dir(self.dir.path())
            .env("AMA_DATA", self.dir.path().join("data"))
            .env("AMA_PASSPHRASE", "correct horse battery")
            .env("AMA_INSECURE_FAST_KDF", "1")
            .env_remove("AMA_LDAP_SERVICE_PASSWORD")
            .env_remove("AMA_LDAP_TEST_PASSWORD")
            .envs(env.iter().copied())
            .args(args)
            .output()
            .unwrap()
    }

    fn ok(&self, args: &[&str], env: &[(&str, &str)]) -> String {
        let out = self.run(args, env);
        assert!(
            out.status.success(),
            "ama {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn fails(&self, args: &[&str], env: &[(&str, &str)], code: i32) -> String {
        let out = self.run(args, env);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(code), "ama {args:?}: {err}");
        assert!(err.starts_with("ama: "), "{err}");
        assert!(!err.contains("panicked"), "{err}");
        err
    }
}

/// Every byte of every file under `dir`.
fn all_bytes(dir: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(all_bytes(&p));
        } else {
            out.extend(std::fs::read(&p).unwrap());
        }
    }
    out
}

#[test]
fn set_show_test_and_clear_a_directory() {
    let Some(ldap) = Slapd::start() else {
        eprintln!("SKIPPED: /usr/sbin/slapd is not installed (scripts/test installs slapd)");
        return;
    };
    let f = Fixture::new();
    let staff = format!("{}=end-user", testing::group_dn("staff"));
    let auditors = format!("{}=auditor", testing::group_dn("auditors"));
    let admins = format!("{}=admin", testing::group_dn("admins"));
    let url = ldap.url();
    let out = f.ok(
        &[
            "tenant",
            "directory",
            "set",
            "--tenant",
            "acme",
            "--url",
            &url,
            "--search-base",
            testing::SUFFIX,
            "--search-filter",
            "(uid={user})",
            "--service-dn",
            testing::SERVICE_DN,
            "--group-base",
            testing::GROUP_BASE,
            "--group-role",
            &staff,
            "--group-role",
            &auditors,
            "--group-role",
            &admins,
        ],
        &[("AMA_LDAP_SERVICE_PASSWORD", testing::SERVICE_PASSWORD)],
    );
    assert!(out.contains("now log in through the directory"), "{out}");

    let shown = f.ok(&["tenant", "directory", "show", "--tenant", "acme"], &[]);
    assert!(shown.contains(&url), "{shown}");
    assert!(shown.contains("(password set)"), "{shown}");
    assert!(!shown.contains(testing::SERVICE_PASSWORD), "{shown}");
    let j: Value = serde_json::from_str(&f.ok(
        &["tenant", "directory", "show", "--tenant", "acme", "--json"],
        &[],
    ))
    .unwrap();
    assert_eq!(j["bind"], "search");
    assert_eq!(j["service_dn"], testing::SERVICE_DN);
    assert_eq!(j["group_roles"][1]["role"], "auditor");
    assert_eq!(
        j["address_attributes"],
        serde_json::json!(["mail", "proxyAddresses"])
    );
    assert!(!j.to_string().contains(testing::SERVICE_PASSWORD));
    // The service password is stored, but sealed: not in any file.
    let data = all_bytes(&f.dir.path().join("data"));
    assert!(
        !data
            .windows(testing::SERVICE_PASSWORD.len())
            .any(|w| w == testing::SERVICE_PASSWORD.as_bytes()),
        "the service password is in the data directory in plain text"
    );

    let out = f.ok(
        &["tenant", "directory", "test", "--tenant", "acme", "bob"],
        &[("AMA_LDAP_TEST_PASSWORD", testing::BOB_PASSWORD)],
    );
    assert!(out.contains(&testing::person_dn("bob")), "{out}");
    assert!(out.contains("bob@example.test"), "{out}");
    assert!(out.contains("roles:     end-user, admin"), "{out}");
    let err = f.fails(
        &["tenant", "directory", "test", "--tenant", "acme", "bob"],
        &[("AMA_LDAP_TEST_PASSWORD", "not-bobs-password")],
        1,
    );
    assert!(err.contains("invalid credentials"), "{err}");

    let out = f.ok(&["tenant", "directory", "clear", "--tenant", "acme"], &[]);
    assert!(out.contains("directory removed"), "{out}");
    let out = f.run(&["tenant", "directory", "show", "--tenant", "acme"], &[]);
    assert!(out.stdout.is_empty());
    assert!(String::from_utf8_lossy(&out.stderr).contains("has no directory"));
}

#[test]
fn unusable_directory_settings_are_refused_before_they_are_stored() {
    let f = Fixture::new();
    let set = |extra: &[&str], env: &[(&str, &str)]| -> String {
        let mut args = vec!["tenant", "directory", "set", "--tenant", "acme"];
        args.extend_from_slice(extra);
        f.fails(&args, env, 2)
    };
    let role = "cn=staff,ou=groups,dc=example,dc=test=end-user";
    let template = "uid={user},ou=people,dc=example,dc=test";
    let err = set(
        &[
            "--url",
            "ldap://ldap.example.test",
            "--bind-dn",
            template,
            "--group-role",
            role,
        ],
        &[],
    );
    assert!(err.contains("unencrypted"), "{err}");
    let err = set(
        &[
            "--url",
            "ldaps://ldap.example.test",
            "--bind-dn",
            "uid=alice,dc=example,dc=test",
            "--group-role",
            role,
        ],
        &[],
    );
    assert!(err.contains("{user}"), "{err}");
    let err = set(
        &[
            "--url",
            "ldaps://ldap.example.test",
            "--bind-dn",
            template,
            "--group-role",
            "staff=end-user",
        ],
        &[],
    );
    assert!(err.contains("GROUP-DN=ROLE"), "{err}");
    let err = set(
        &[
            "--url",
            "ldaps://ldap.example.test",
            "--bind-dn",
            template,
            "--group-role",
            "cn=staff,dc=example,dc=test=superuser",
        ],
        &[],
    );
    assert!(err.contains("unknown role"), "{err}");
    let err = set(
        &[
            "--url",
            "ldaps://ldap.example.test",
            "--search-base",
            "dc=example,dc=test",
            "--search-filter",
            "(uid={user})",
            "--service-dn",
            "cn=svc,dc=example,dc=test",
            "--group-role",
            role,
        ],
        &[],
    );
    assert!(err.contains("AMA_LDAP_SERVICE_PASSWORD"), "{err}");
    let err = set(
        &["--url", "ldaps://ldap.example.test", "--group-role", role],
        &[],
    );
    assert!(err.contains("--bind-dn"), "{err}");
    // Nothing was stored.
    let out = f.run(&["tenant", "directory", "show", "--tenant", "acme"], &[]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("has no directory"));
}
