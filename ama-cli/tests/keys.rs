//! End-to-end tests of `ama keys rotate-master`, `ama keys rotate-tenant`,
//! `ama keys status`, `ama tenant destroy` and `--keystore`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const PASSPHRASE: &str = "correct horse battery";
const NEW_PASSPHRASE: &str = "another long passphrase";

const MAIL: &[u8] = b"From: alice@acme.test\r\nTo: bob@acme.test\r\n\
Subject: quarterly canary\r\nDate: Tue, 1 Oct 2024 10:30:00 +0000\r\n\
Message-ID: <q3@acme.test>\r\n\r\nthe figures\r\n";

struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    /// An archive in `data/` whose key store is `keys/ks.json`, outside it,
    /// with tenants acme (one message) and other (one message).
    fn new() -> Self {
        let f = Fixture {
            dir: tempfile::tempdir().expect("temp dir"),
        };
        f.ok(&["init"]);
        assert!(f.path("keys/ks.json").exists());
        assert!(!f.path("data/keys/keystore.json").exists());
        f.ok(&["tenant", "add", "acme"]);
        f.ok(&["tenant", "add", "other"]);
        let m = f.path("mail.eml");
        std::fs::write(&m, MAIL).expect("write mail");
        let m = m.to_string_lossy().into_owned();
        f.ok(&["import", "--tenant", "acme", &m]);
        f.ok(&["import", "--tenant", "other", &m]);
        f
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn cmd_on(&self, data: &Path, pass: &str) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_ama"));
        c.current_dir(self.dir.path())
            .env("AMA_DATA", data)
            .env("AMA_KEYSTORE", self.path("keys/ks.json"))
            .env("AMA_PASSPHRASE", pass)
            .env("AMA_INSECURE_FAST_KDF", "1")
            .env_remove("AMA_NEW_PASSPHRASE")
            .env_remove("RUST_BACKTRACE")
            .stdin(Stdio::null());
        c
    }

    fn run_with(&self, pass: &str, args: &[&str]) -> Output {
        self.cmd_on(&self.path("data"), pass)
            .args(args)
            .output()
            .expect("run ama")
    }

    fn run(&self, args: &[&str]) -> Output {
        self.run_with(PASSPHRASE, args)
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "ama {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8")
    }
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn hits(out: &str) -> usize {
    out.lines()
        .filter(|l| l.contains("quarterly canary"))
        .count()
}

#[test]
fn rotate_tenant_keeps_the_archive_usable() {
    let f = Fixture::new();
    let status = f.ok(&["keys", "status", "--json"]);
    assert!(
        status.contains(r#"{"tenant":"acme","key":"active"}"#),
        "{status}"
    );
    let out = f.ok(&["keys", "rotate-tenant", "acme"]);
    assert!(
        out.contains("tenant acme has a new key: 1 message key(s) re-wrapped"),
        "{out}"
    );
    assert_eq!(hits(&f.ok(&["search", "--tenant", "acme", "canary"])), 1);
    f.ok(&["verify", "--tenant", "acme"]);
    f.ok(&["audit", "verify", "--tenant", "acme"]);
    let audit = f.ok(&["audit", "list", "--tenant", "acme"]);
    assert!(audit.contains("key-rotation"), "{audit}");
    let o = f.run(&["keys", "rotate-tenant", "nobody"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("does not exist"), "{}", stderr(&o));
}

#[test]
fn rotate_master_retires_the_old_passphrase() {
    let f = Fixture::new();
    // No new secret: a usage error, nothing changes.
    let o = f.run(&["keys", "rotate-master"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("AMA_NEW_PASSPHRASE"));
    // Too short: refused, nothing changes.
    let o = f
        .cmd_on(&f.path("data"), PASSPHRASE)
        .env("AMA_NEW_PASSPHRASE", "short")
        .args(["keys", "rotate-master"])
        .output()
        .expect("run");
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("too short"), "{}", stderr(&o));
    f.ok(&["tenant", "list"]);

    let o = f
        .cmd_on(&f.path("data"), PASSPHRASE)
        .env("AMA_NEW_PASSPHRASE", NEW_PASSPHRASE)
        .args(["keys", "rotate-master"])
        .output()
        .expect("run");
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("master key rotated"));
    let o = f.run(&["tenant", "list"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("wrong passphrase"), "{}", stderr(&o));
    let o = f.run_with(NEW_PASSPHRASE, &["search", "--tenant", "acme", "canary"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(hits(&String::from_utf8_lossy(&o.stdout)), 1);
}

#[test]
fn tenant_destroy_asks_then_shreds_and_a_backup_is_unreadable() {
    let f = Fixture::new();
    // The backup: a copy of the data directory (the key store is elsewhere).
    copy_dir(&f.path("data"), &f.path("backup"));

    // No terminal, no --yes: refused, nothing happens.
    let o = f.run(&["tenant", "destroy", "acme"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--yes"), "{}", stderr(&o));
    assert!(f.ok(&["tenant", "list"]).contains("acme"));
    let o = f.run(&["tenant", "destroy", "nobody", "--yes"]);
    assert_eq!(o.status.code(), Some(1));

    let out = f.ok(&["tenant", "destroy", "acme", "--yes"]);
    assert!(out.contains("tenant acme destroyed"), "{out}");
    let list = f.ok(&["tenant", "list"]);
    assert!(list.contains("acme: destroyed"), "{list}");
    let o = f.run(&["search", "--tenant", "acme", "canary"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("was destroyed"), "{}", stderr(&o));
    // Idempotent.
    f.ok(&["tenant", "destroy", "acme", "--yes"]);
    // The other tenant is untouched.
    assert_eq!(hits(&f.ok(&["search", "--tenant", "other", "canary"])), 1);

    // The backup, with the key store that remains.
    let o = f
        .cmd_on(&f.path("backup"), PASSPHRASE)
        .args(["search", "--tenant", "acme", "canary"])
        .output()
        .expect("run");
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("was destroyed"), "{}", stderr(&o));
    let o = f
        .cmd_on(&f.path("backup"), PASSPHRASE)
        .args(["search", "--tenant", "other", "canary"])
        .output()
        .expect("run");
    assert!(o.status.success(), "{}", stderr(&o));
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read dir") {
        let e = e.expect("entry");
        let dst = to.join(e.file_name());
        if e.file_type().expect("type").is_dir() {
            copy_dir(&e.path(), &dst);
        } else {
            std::fs::copy(e.path(), dst).expect("copy");
        }
    }
}
