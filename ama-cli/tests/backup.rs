//! `ama backup init|run|status` and `ama restore-from-backup`, end to end:
//! an archive whose key store lives outside the data directory is backed
//! up, the data directory is deleted, and the restore (with `--keystore`)
//! gives back every message byte-identical and searchable. The backup
//! directory holds no plaintext token and no key store.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

const PASSPHRASE: &str = "correct horse battery";
const TOKENS: [&str; 3] = ["xylophonecanary", "quartzbodyword", "marmaladetoken"];

fn mail(i: usize) -> Vec<u8> {
    format!(
        "From: alice@acme.test\r\nTo: bob@acme.test\r\nSubject: {} report {i}\r\n\
         Message-ID: <{i}.cli-backup@acme.test>\r\n\r\nThe {} of item {i}, see {}.\r\n",
        TOKENS[0], TOKENS[1], TOKENS[2]
    )
    .into_bytes()
}

struct Fx {
    dir: tempfile::TempDir,
}

impl Fx {
    /// A new archive (key store in `secrets/`) with the tenant `acme`.
    fn with_acme() -> Fx {
        let fx = Fx {
            dir: tempfile::tempdir().expect("temp dir"),
        };
        fx.ok(&["init"]);
        fx.ok(&["tenant", "add", "acme"]);
        fx
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// `ama` on `data` (or `AMA_DATA` = `data`), key store in `secrets/`.
    fn run_in(&self, data: &str, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_ama"))
            .current_dir(self.dir.path())
            .env("AMA_DATA", self.path(data))
            .env("AMA_KEYSTORE", self.path("secrets/keystore.json"))
            .env("AMA_PASSPHRASE", PASSPHRASE)
            .env("AMA_INSECURE_FAST_KDF", "1")
            .env_remove("AMA_STORES")
            .env_remove("RUST_BACKTRACE")
            .args(args)
            .output()
            .expect("run ama")
    }

    fn ok_in(&self, data: &str, args: &[&str]) -> Vec<u8> {
        let out = self.run_in(data, args);
        assert!(
            out.status.success(),
            "ama {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    fn ok(&self, args: &[&str]) -> Vec<u8> {
        self.ok_in("data", args)
    }

    fn json(&self, args: &[&str]) -> Value {
        serde_json::from_slice(&self.ok(args)).expect("JSON output")
    }

    /// Runs, expects exit code `code`, returns stderr.
    fn fails(&self, data: &str, args: &[&str], code: i32) -> String {
        let out = self.run_in(data, args);
        assert_eq!(out.status.code(), Some(code), "ama {args:?}: {out:?}");
        String::from_utf8_lossy(&out.stderr).into_owned()
    }
}

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).expect("read dir") {
        let p = e.expect("entry").path();
        if p.is_dir() {
            files_under(&p, out);
        } else {
            out.push(p);
        }
    }
}

#[test]
fn backup_then_lose_the_data_directory_then_restore() {
    let fx = Fx::with_acme();
    std::fs::create_dir_all(fx.path("mail")).expect("mkdir");
    for i in 0..5 {
        std::fs::write(fx.path(&format!("mail/{i}.eml")), mail(i)).expect("write");
    }
    let imported = fx.json(&["import", "--tenant", "acme", "--json", "mail"]);
    let ids: Vec<(String, String)> = imported["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| {
            (
                m["path"].as_str().expect("path").to_string(),
                m["id"].as_str().expect("id").to_string(),
            )
        })
        .collect();
    assert_eq!(ids.len(), 5);

    // No target yet; a target inside the data directory is refused.
    let e = fx.fails("data", &["backup", "run"], 2);
    assert!(e.contains("no backup target"), "{e}");
    let e = fx.fails("data", &["backup", "init", "--to", "data/copy"], 2);
    assert!(e.contains("overlaps the data directory"), "{e}");
    let e = fx.fails(
        "data",
        &["backup", "init", "--to", "backup", "--keep", "0"],
        2,
    );
    assert!(e.contains("keep"), "{e}");

    fx.ok(&["backup", "init", "--to", "backup", "--keep", "3"]);
    let r1 = fx.json(&["backup", "run", "--json"]);
    assert_eq!(r1["blobs_copied"], 5);
    assert_eq!(r1["snapshot"]["id"], 1);
    let r2 = fx.json(&["backup", "run", "--json"]);
    assert_eq!(
        (r2["blobs_copied"].as_u64(), r2["blobs_present"].as_u64()),
        (Some(0), Some(5))
    );
    let st = fx.json(&["backup", "status", "--json"]);
    assert_eq!(st["blobs_behind"], 0);
    assert_eq!(st["last"]["id"], 2);
    let text = String::from_utf8(fx.ok(&["backup", "status"])).expect("utf-8");
    assert!(text.contains("blobs behind      0"), "{text}");

    // Canary scan of the backup directory.
    let mut files = Vec::new();
    files_under(&fx.path("backup"), &mut files);
    assert!(files.len() >= 5 + 6);
    for f in &files {
        assert!(!f.ends_with("keystore.json"));
        let bytes = std::fs::read(f).expect("read");
        for t in TOKENS {
            assert!(
                !bytes.windows(t.len()).any(|w| w == t.as_bytes()),
                "{t} in {}",
                f.display()
            );
        }
    }

    // An unsupported backup.json is refused rather than guessed at.
    let cfg = std::fs::read_to_string(fx.path("data/backup.json")).expect("backup.json");
    std::fs::write(
        fx.path("data/backup.json"),
        cfg.replace("\"version\": 1", "\"version\": 9"),
    )
    .expect("write");
    let e = fx.fails("data", &["backup", "status"], 1);
    assert!(e.contains("not supported"), "{e}");

    std::fs::remove_dir_all(fx.path("data")).expect("lose the data directory");

    // Into an existing archive: refused. Without the key store: no archive.
    let backup = fx.path("backup");
    let backup = backup.to_str().expect("path");
    let e = Command::new(env!("CARGO_BIN_EXE_ama"))
        .current_dir(fx.dir.path())
        .env("AMA_PASSPHRASE", PASSPHRASE)
        .args(["restore-from-backup", "--from", backup, "--to", "nokeys"])
        .output()
        .expect("run ama");
    assert_eq!(e.status.code(), Some(1));
    let err = String::from_utf8_lossy(&e.stderr);
    assert!(err.contains("does not open with the keys given"), "{err}");

    fx.ok_in(
        "restored",
        &["restore-from-backup", "--from", backup, "--to", "restored"],
    );
    let e = fx.fails(
        "restored",
        &["restore-from-backup", "--from", backup, "--to", "restored"],
        2,
    );
    assert!(e.contains("already holds an archive"), "{e}");

    for (path, id) in &ids {
        let raw = fx.ok_in("restored", &["show", "--tenant", "acme", id]);
        assert_eq!(
            raw,
            std::fs::read(fx.path(path)).expect("original"),
            "{path}"
        );
    }
    assert_eq!(hits(&fx, "restored", "subject:xylophonecanary"), 5);
    fx.ok_in("restored", &["verify"]);
    // Point in time: snapshot 1 restores as well.
    fx.ok_in(
        "then",
        &[
            "restore-from-backup",
            "--from",
            backup,
            "--to",
            "then",
            "--snapshot",
            "1",
        ],
    );
    let e = fx.fails(
        "other",
        &[
            "restore-from-backup",
            "--from",
            backup,
            "--to",
            "other",
            "--snapshot",
            "7",
        ],
        1,
    );
    assert!(e.contains("snapshot 7 is not on the backup target"), "{e}");
}

/// The key service process (`ama key-service serve`), killed when dropped.
struct KeyService {
    child: std::process::Child,
    addr: String,
}

impl Drop for KeyService {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn restore_through_the_key_service() {
    use std::io::{BufRead, BufReader};

    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path();
    let pki = ama_keyservice::testing::TestPki::generate(&dir.join("pki"));
    let node = pki.client("node-1.test", "node-1");
    let ama = |data: &str| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_ama"));
        c.current_dir(dir)
            .env("AMA_DATA", dir.join(data))
            .env("AMA_INSECURE_FAST_KDF", "1")
            .env_remove("AMA_PASSPHRASE")
            .env_remove("AMA_KEYSTORE")
            .env_remove("AMA_KEY_SERVICE")
            .env_remove("AMA_STORES")
            .env_remove("RUST_BACKTRACE");
        c
    };
    let ok = |out: Output| {
        assert!(
            out.status.success(),
            "ama failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    };
    ok(ama("data")
        .env("AMA_PASSPHRASE", "the key service passphrase")
        .args(["key-service", "init", "--dir", "ks"])
        .output()
        .expect("run"));
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let addr = format!("127.0.0.1:{port}");
    let mut child = ama("data")
        .env("AMA_PASSPHRASE", "the key service passphrase")
        .args([
            "key-service",
            "serve",
            "--dir",
            "ks",
            "--listen",
            &addr,
            "--cert",
        ])
        .arg(&pki.server.cert)
        .arg("--key")
        .arg(&pki.server.key)
        .arg("--client-ca")
        .arg(&pki.ca_cert)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start the key service");
    let stderr = child.stderr.take().expect("stderr");
    let svc = KeyService { child, addr };
    let mut lines = BufReader::new(stderr).lines();
    loop {
        let line = lines
            .next()
            .expect("the key service ended before listening")
            .expect("log line");
        if line.contains("listening on") {
            break;
        }
    }
    std::thread::spawn(move || for _ in lines {});
    let with_service = |c: &mut Command| {
        c.args(["--key-service", &svc.addr, "--key-service-ca"])
            .arg(&pki.ca_cert)
            .arg("--client-cert")
            .arg(&node.cert)
            .arg("--client-key")
            .arg(&node.key);
    };

    let mut init = ama("data");
    init.arg("init");
    with_service(&mut init);
    ok(init.output().expect("run"));
    ok(ama("data")
        .args(["tenant", "add", "acme"])
        .output()
        .expect("run"));
    std::fs::create_dir_all(dir.join("mail")).expect("mkdir");
    std::fs::write(dir.join("mail/m.eml"), mail(1)).expect("write");
    let imported: Value = serde_json::from_slice(&ok(ama("data")
        .args(["import", "--tenant", "acme", "--json", "mail"])
        .output()
        .expect("run")))
    .expect("JSON");
    let id = imported["messages"][0]["id"]
        .as_str()
        .expect("id")
        .to_string();
    let backup = dir.join("backup");
    let backup = backup.to_str().expect("path");
    ok(ama("data")
        .args(["backup", "run", "--to", backup])
        .output()
        .expect("run"));
    std::fs::remove_dir_all(dir.join("data")).expect("lose the data directory");

    // Without the key service: the restored archive does not open.
    let out = ama("nokeys")
        .args(["restore-from-backup", "--from", backup, "--to", "nokeys"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));

    let mut restore = ama("restored");
    restore.args(["restore-from-backup", "--from", backup, "--to", "restored"]);
    with_service(&mut restore);
    ok(restore.output().expect("run"));
    // The service settings are recorded: later commands need no flag.
    assert!(dir.join("restored/key-service.json").exists());
    let raw = ok(ama("restored")
        .args(["show", "--tenant", "acme", &id])
        .output()
        .expect("run"));
    assert_eq!(raw, mail(1));
    ok(ama("restored").args(["verify"]).output().expect("run"));
}

/// Counts `ama search --json` hits on `data` (one JSON line per hit).
fn hits(fx: &Fx, data: &str, query: &str) -> usize {
    let out = fx.ok_in(data, &["search", "--tenant", "acme", "--json", query]);
    String::from_utf8(out)
        .expect("utf-8")
        .lines()
        .filter(|l| serde_json::from_str::<Value>(l).is_ok_and(|v| v.get("id").is_some()))
        .count()
}

#[test]
fn restore_until_a_moment_between_two_runs() {
    let fx = Fx::with_acme();
    let import = |batch: &str, range: std::ops::Range<usize>| {
        std::fs::create_dir_all(fx.path(batch)).expect("mkdir");
        for i in range {
            std::fs::write(fx.path(&format!("{batch}/{i}.eml")), mail(i)).expect("write");
        }
        fx.ok(&["import", "--tenant", "acme", batch]);
    };
    import("one", 0..2);
    fx.ok(&["backup", "init", "--to", "backup"]);
    fx.ok(&["backup", "run"]);
    import("two", 2..5);
    let st = String::from_utf8(fx.ok(&["backup", "status"])).expect("utf-8");
    assert!(!st.contains("journal behind    0 rows"), "{st}");
    std::thread::sleep(std::time::Duration::from_millis(20));
    let moment = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .expect("format");
    std::thread::sleep(std::time::Duration::from_millis(20));
    import("three", 5..6);
    let r = String::from_utf8(fx.ok(&["backup", "run"])).expect("utf-8");
    assert!(!r.contains("journal rows      0"), "{r}");
    let st = String::from_utf8(fx.ok(&["backup", "status"])).expect("utf-8");
    assert!(st.contains("journal behind    0 rows"), "{st}");
    std::fs::remove_dir_all(fx.path("data")).expect("lose the data directory");

    let backup = fx.path("backup");
    let backup = backup.to_str().expect("path");
    let out = fx.run_in(
        "then",
        &[
            "restore-from-backup",
            "--from",
            backup,
            "--to",
            "then",
            "--until",
            &moment,
        ],
    );
    assert!(out.status.success(), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("restored snapshot 1 + "), "{err}");
    assert_eq!(hits(&fx, "then", "subject:xylophonecanary"), 5);
    fx.ok_in("then", &["verify"]);

    let e = fx.fails(
        "early",
        &[
            "restore-from-backup",
            "--from",
            backup,
            "--to",
            "early",
            "--until",
            "1990-01-01",
        ],
        1,
    );
    assert!(
        e.contains("no snapshot on the backup target is from 1990-01-01"),
        "{e}"
    );
    let e = fx.fails(
        "both",
        &[
            "restore-from-backup",
            "--from",
            backup,
            "--to",
            "both",
            "--until",
            &moment,
            "--snapshot",
            "1",
        ],
        2,
    );
    assert!(e.contains("cannot be used with"), "{e}");
}
