//! `ama key-service` end to end: the real service process on loopback with
//! test certificates, and archive commands (`init`, `tenant add`, `import`,
//! `search`) that unlock their tenant keys only through it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ama_keyservice::testing::TestPki;

const SERVICE_PASSPHRASE: &str = "the key service passphrase";

const MAIL: &[u8] = b"From: alice@acme.test\r\n\
To: bob@acme.test\r\n\
Subject: quarterly figures\r\n\
Message-ID: <q@acme.test>\r\n\
\r\n\
The numbers are in.\r\n";

fn ama(dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ama"));
    c.current_dir(dir)
        .env("AMA_DATA", dir.join("data"))
        .env("AMA_INSECURE_FAST_KDF", "1")
        .env_remove("AMA_PASSPHRASE")
        .env_remove("AMA_KEY_SERVICE")
        .env_remove("RUST_BACKTRACE");
    c
}

fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "ama failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The service process; killed when dropped. Its stderr (the request log)
/// is collected.
struct Service {
    child: Child,
    log: Arc<Mutex<String>>,
    addr: String,
}

impl Service {
    fn start(dir: &Path, pki: &TestPki) -> Self {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        Self::start_at(dir, pki, &format!("127.0.0.1:{port}"), SERVICE_PASSPHRASE)
    }

    fn start_at(dir: &Path, pki: &TestPki, addr: &str, passphrase: &str) -> Self {
        let addr = addr.to_string();
        let mut child = ama(dir)
            .env("AMA_PASSPHRASE", passphrase)
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
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let mut s = sink.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        let svc = Service { child, log, addr };
        svc.wait_for("listening on");
        svc
    }

    fn wait_for(&self, needle: &str) {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(20) {
            if self.log.lock().unwrap().contains(needle) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("{needle:?} not in the service's log: {}", self.log());
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            files_under(&p, out);
        } else {
            out.push(p);
        }
    }
}

#[test]
fn import_and_search_through_the_key_service() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let pki = TestPki::generate(&dir.join("pki"));
    let node = pki.client("node-1.test", "node-1");

    // The service: its own directory and passphrase.
    let out = ama(dir)
        .env("AMA_PASSPHRASE", SERVICE_PASSPHRASE)
        .args(["key-service", "init", "--dir", "ks"])
        .output()
        .unwrap();
    assert!(ok(out).contains("created a key service key store"));
    // Without a passphrase it does not start.
    let out = ama(dir)
        .args(["key-service", "init", "--dir", "ks2"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let mut svc = Service::start(dir, &pki);

    // The node: no passphrase at all, only the key service.
    let out = ama(dir)
        .args(["init", "--key-service", &svc.addr, "--key-service-ca"])
        .arg(&pki.ca_cert)
        .arg("--client-cert")
        .arg(&node.cert)
        .arg("--client-key")
        .arg(&node.key)
        .output()
        .unwrap();
    ok(out);
    ok(ama(dir).args(["tenant", "add", "acme"]).output().unwrap());
    std::fs::create_dir_all(dir.join("mail")).unwrap();
    std::fs::write(dir.join("mail/q.eml"), MAIL).unwrap();
    let out = ok(ama(dir)
        .args(["import", "--tenant", "acme", "--json", "mail"])
        .output()
        .unwrap());
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["imported"], 1, "{v}");
    let out = ok(ama(dir)
        .args([
            "search",
            "--tenant",
            "acme",
            "--json",
            "--",
            "subject:quarterly",
        ])
        .output()
        .unwrap());
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(out.contains("quarterly figures"), "{out}");

    // A tenant key rotation wraps the new key through the service.
    ok(ama(dir)
        .args(["keys", "rotate-tenant", "acme"])
        .output()
        .unwrap());
    let out = ok(ama(dir)
        .args([
            "search",
            "--tenant",
            "acme",
            "--json",
            "--",
            "subject:quarterly",
        ])
        .output()
        .unwrap());
    assert_eq!(out.lines().count(), 1, "{out}");
    // The node's `keys rotate-master` is the service's business.
    let out = ama(dir)
        .env("AMA_NEW_PASSPHRASE", "whatever new secret")
        .args(["keys", "rotate-master"])
        .output()
        .unwrap();
    assert!(!out.status.success());

    // Every process unwrapped the tenant key at the service, as node-1.
    svc.wait_for("client=node-1.test op=unwrap tenant=acme outcome=ok");
    assert!(
        svc.log()
            .contains("client=node-1.test op=wrap tenant=acme outcome=ok")
    );
    assert!(!svc.log().contains("malformed"), "{}", svc.log());

    // The data directory: the key service's address and file names, no key store.
    let data = dir.join("data");
    assert!(data.join("key-service.json").exists());
    assert!(!data.join("keys").exists());
    let mut files = Vec::new();
    files_under(&data, &mut files);
    for f in &files {
        let bytes = std::fs::read(f).unwrap();
        for needle in [&b"ama-keystore"[..], b"argon2id"] {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle),
                "{} looks like a key store",
                f.display()
            );
        }
    }

    // A certificate from another CA, given on the command line: refused.
    let rogue = pki.foreign_client("node-1.test", "rogue");
    let out = ama(dir)
        .args([
            "search",
            "--tenant",
            "acme",
            "--key-service",
            &svc.addr,
            "--key-service-ca",
        ])
        .arg(&pki.ca_cert)
        .arg("--client-cert")
        .arg(&rogue.cert)
        .arg("--client-key")
        .arg(&rogue.key)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("refused"), "{err}");

    // --key-service without the certificate files is a usage error.
    let out = ama(dir)
        .args(["search", "--tenant", "acme", "--key-service", &svc.addr])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));

    // The service down: the node cannot read anything.
    let _ = svc.child.kill();
    let _ = svc.child.wait();
    let out = ama(dir)
        .args(["search", "--tenant", "acme", "--", "subject:quarterly"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unreachable"), "{err}");
    assert!(!err.contains("panicked"), "{err}");

    // A new master secret for the service; the old one no longer opens it.
    let new_pass = "a brand new service passphrase";
    ok(ama(dir)
        .env("AMA_PASSPHRASE", SERVICE_PASSPHRASE)
        .env("AMA_NEW_PASSPHRASE", new_pass)
        .args(["key-service", "rotate-master", "--dir", "ks"])
        .output()
        .unwrap());
    let out = ama(dir)
        .env("AMA_PASSPHRASE", SERVICE_PASSPHRASE)
        .args([
            "key-service",
            "serve",
            "--dir",
            "ks",
            "--listen",
            &svc.addr,
            "--cert",
        ])
        .arg(&pki.server.cert)
        .arg("--key")
        .arg(&pki.server.key)
        .arg("--client-ca")
        .arg(&pki.ca_cert)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("wrong passphrase"));
    let svc = Service::start_at(dir, &pki, &svc.addr, new_pass);
    let out = ok(ama(dir)
        .args([
            "search",
            "--tenant",
            "acme",
            "--json",
            "--",
            "subject:quarterly",
        ])
        .output()
        .unwrap());
    assert_eq!(out.lines().count(), 1, "{out}");
    // A new passphrase that is too short is refused before anything changes.
    let out = ama(dir)
        .env("AMA_PASSPHRASE", new_pass)
        .env("AMA_NEW_PASSPHRASE", "short")
        .args(["key-service", "rotate-master", "--dir", "ks"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));

    // Crypto-shredding through the service: afterwards the tenant's key is
    // gone, and even a copy of the data directory from before is unreadable.
    let backup = dir.join("data-backup");
    copy_dir(&dir.join("data"), &backup);
    ok(ama(dir)
        .args(["tenant", "destroy", "acme", "--yes"])
        .output()
        .unwrap());
    svc.wait_for("op=destroy tenant=acme outcome=ok");
    let out = ama(dir)
        .env("AMA_DATA", &backup)
        .args(["search", "--tenant", "acme", "--", "subject:quarterly"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("destroyed"), "{err}");
    drop(svc);
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.path().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
}
