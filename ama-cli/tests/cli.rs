//! End-to-end tests of the `ama` binary: each test runs the built binary in
//! its own temporary directory, with a passphrase from the environment and
//! the insecure fast key derivation, as an operator's script would.

use std::path::PathBuf;
use std::process::{Command, Output};

use serde_json::Value;

const PASSPHRASE: &str = "correct horse battery";

/// A message with CRLF line ends and bytes that are not UTF-8 (Latin-1 in
/// the body, a stray 0xFF): `show` must give back exactly these bytes.
const ALICE: &[u8] = b"From: Alice Example <alice@acme.test>\r\n\
To: bob@acme.test, carol@acme.test\r\n\
Subject: Q3 numbers\r\n\
Date: Tue, 1 Oct 2024 10:30:00 +0000\r\n\
Message-ID: <q3@acme.test>\r\n\
Content-Type: text/plain; charset=iso-8859-1\r\n\
\r\n\
Gr\xfc\xdfe, the quarterly figures are attached \xff.\r\n";

const DAVE: &[u8] = b"From: dave@acme.test\n\
To: erin@acme.test\n\
Subject: lunch on friday\n\
Date: Wed, 2 Oct 2024 12:00:00 +0000\n\
Message-ID: <lunch@acme.test>\n\
\n\
Pizza?\n";

/// An archive in a temporary directory, and a way to run `ama` against it.
struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    /// A temporary directory with nothing in it yet.
    fn empty() -> Self {
        Fixture {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    /// An initialised archive with tenant `acme`.
    fn with_tenant() -> Self {
        let f = Fixture::empty();
        f.ok(&["init"]);
        f.ok(&["tenant", "add", "acme"]);
        f
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn write(&self, rel: &str, bytes: &[u8]) -> PathBuf {
        let p = self.path(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("create dir");
        std::fs::write(&p, bytes).expect("write test file");
        p
    }

    /// `ama` with the archive in `data/` and the test passphrase.
    fn cmd(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_ama"));
        c.current_dir(self.dir.path())
            .env("AMA_DATA", self.path("data"))
            .env("AMA_PASSPHRASE", PASSPHRASE)
            .env("AMA_INSECURE_FAST_KDF", "1")
            .env_remove("RUST_BACKTRACE");
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().expect("run ama")
    }

    /// Runs and asserts success; returns stdout as text.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "ama {args:?} failed: {}\n{}",
            out.status,
            stderr(&out)
        );
        String::from_utf8(out.stdout).expect("stdout is UTF-8")
    }

    /// Runs and asserts failure with `code`; returns stderr as text.
    fn fails(&self, args: &[&str], code: i32) -> String {
        let out = self.run(args);
        assert_eq!(
            out.status.code(),
            Some(code),
            "ama {args:?}: expected exit code {code}\nstdout: {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            stderr(&out)
        );
        let err = stderr(&out);
        assert!(err.starts_with("ama: "), "error not prefixed: {err}");
        assert!(!err.contains("panicked"), "{err}");
        err
    }

    /// `ama import --json` of `paths`, parsed.
    fn import_json(&self, paths: &[&str]) -> Value {
        let mut args = vec!["import", "--tenant", "acme", "--json"];
        args.extend_from_slice(paths);
        serde_json::from_str(&self.ok(&args)).expect("import --json prints one JSON object")
    }

    /// `ama search --json` lines, parsed.
    fn search_json(&self, query: &[&str]) -> Vec<Value> {
        let mut args = vec!["search", "--tenant", "acme", "--json", "--"];
        args.extend_from_slice(query);
        self.ok(&args)
            .lines()
            .map(|l| serde_json::from_str(l).expect("a JSON object per line"))
            .collect()
    }
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn init_tenant_add_and_list() {
    let f = Fixture::empty();
    let out = f.ok(&["init"]);
    assert!(out.contains(&f.path("data").display().to_string()), "{out}");
    assert!(f.path("data/keys/keystore.json").exists());

    let err = f.fails(&["init"], 1);
    assert!(err.contains("already holds an archive"), "{err}");

    f.ok(&[
        "tenant",
        "add",
        "acme",
        "--name",
        "Acme Corp",
        "--region",
        "us",
        "--domain",
        "acme.test",
        "--domain",
        "Mail.Acme.TEST",
        "--retention",
        "7y",
    ]);
    f.ok(&["tenant", "add", "globex"]);
    let err = f.fails(&["tenant", "add", "acme"], 1);
    assert!(err.contains("exists already"), "{err}");
    let err = f.fails(&["tenant", "add", "Not_Valid"], 2);
    assert!(err.contains("invalid tenant id"), "{err}");
    let err = f.fails(&["tenant", "add", "x", "--retention", "5w"], 2);
    assert!(err.contains("retention"), "{err}");

    let table = f.ok(&["tenant", "list"]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "{table}");
    assert!(lines[0].starts_with("ID"), "{table}");
    for want in ["acme", "Acme Corp", "us", "acme.test,mail.acme.test", "7y"] {
        assert!(lines[1].contains(want), "{want} missing in {table}");
    }
    assert!(lines[2].contains("globex") && lines[2].contains("10y"));

    let json: Vec<Value> = f
        .ok(&["tenant", "list", "--json"])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(json.len(), 2);
    assert_eq!(json[0]["id"], "acme");
    assert_eq!(json[0]["name"], "Acme Corp");
    assert_eq!(json[0]["region"], "us");
    assert_eq!(json[0]["retention"], "7y");
    assert_eq!(
        json[0]["domains"],
        serde_json::json!(["acme.test", "mail.acme.test"])
    );
    assert_eq!(json[1]["name"], "globex");
}

#[test]
fn import_directory_reports_duplicates_and_refusals() {
    let f = Fixture::with_tenant();
    f.write("mail/a.eml", ALICE);
    f.write("mail/b.eml", ALICE); // same bytes: a duplicate
    f.write("mail/c.eml", DAVE);
    f.write("mail/empty.eml", b"");
    let mut junk = vec![0u8, 1, 2, 0xff, 0xfe, 0x7f, 0];
    junk.extend((0..=255u8).cycle().take(700));
    f.write("mail/sub/junk.bin", &junk);

    let r = f.import_json(&["mail"]);
    assert_eq!(r["imported"], 2, "{r}");
    assert_eq!(r["duplicates"], 1, "{r}");
    assert_eq!(r["bytes"], 2 * ALICE.len() + DAVE.len(), "{r}");
    assert!(r["seconds"].as_f64().unwrap() >= 0.0);

    let refused = r["refused"].as_array().unwrap();
    assert_eq!(refused.len(), 2, "{r}");
    // Paths are reported as the walker met them: relative to what was given.
    let reason = |path: &str| {
        refused
            .iter()
            .find(|x| x["path"] == path)
            .unwrap_or_else(|| panic!("{path} not refused: {r}"))["error"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(reason("mail/empty.eml"), "empty message");
    assert!(
        reason("mail/sub/junk.bin").contains("not an e-mail message"),
        "{r}"
    );

    let msgs = r["messages"].as_array().unwrap();
    assert_eq!(msgs.len(), 3, "{r}");
    let by_path = |path: &str| {
        msgs.iter()
            .find(|m| m["path"] == path)
            .unwrap_or_else(|| panic!("{path} missing: {r}"))
            .clone()
    };
    let (ma, mb, mc) = (
        by_path("mail/a.eml"),
        by_path("mail/b.eml"),
        by_path("mail/c.eml"),
    );
    assert_eq!(ma["id"], mb["id"]);
    assert_ne!(ma["id"], mc["id"]);
    assert_eq!(ma["duplicate"], false);
    assert_eq!(mb["duplicate"], true);
    assert_eq!(mc["duplicate"], false);
    assert_eq!(ma["sha256"], mb["sha256"]);
    assert_eq!(ma["sha256"].as_str().unwrap().len(), 64);
    assert_eq!(ma["id"].as_str().unwrap().len(), 26);

    // Byte-exact round trip, CRLF and non-UTF-8 bytes included.
    let id = ma["id"].as_str().unwrap();
    let out = f.run(&["show", "--tenant", "acme", id]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(out.stdout, ALICE);
    let out = f.run(&["show", "--tenant", "acme", mc["id"].as_str().unwrap()]);
    assert_eq!(out.stdout, DAVE);

    // --info: the metadata, including both deliveries.
    let info: Value =
        serde_json::from_str(&f.ok(&["show", "--tenant", "acme", "--info", id])).unwrap();
    assert_eq!(info["id"], id);
    assert_eq!(info["subject"], "Q3 numbers");
    assert_eq!(info["size"], ALICE.len());
    assert_eq!(info["deliveries"].as_array().unwrap().len(), 2);
    assert_eq!(info["deliveries"][0]["source"], "import");

    // The same import again, human summary: everything is a duplicate now.
    let out = f.ok(&["import", "--tenant", "acme", "mail"]);
    assert!(out.starts_with("imported 0 ("), "{out}");
    assert!(out.contains("duplicates 3, refused 2"), "{out}");
    assert!(out.contains("mail/empty.eml: empty message"), "{out}");
    assert!(
        out.contains("mail/sub/junk.bin: not an e-mail message"),
        "{out}"
    );

    // Counters agree.
    let stats: Value =
        serde_json::from_str(&f.ok(&["stats", "--json", "--tenant", "acme"])).unwrap();
    assert_eq!(stats["tenant"], "acme");
    assert_eq!(stats["messages"], 2);
    assert_eq!(stats["duplicates"], 4);
    assert_eq!(stats["indexed"], 2);
    assert_eq!(stats["raw_bytes"], ALICE.len() + DAVE.len());
    let table = f.ok(&["stats"]);
    assert!(table.lines().nth(1).unwrap().starts_with("acme"), "{table}");
    assert!(
        f.ok(&["reindex", "--tenant", "acme"])
            .contains("reindexed 2 messages")
    );
    assert_eq!(f.search_json(&[]).len(), 2);
}

#[test]
fn import_mbox_gives_numbered_origins() {
    let f = Fixture::with_tenant();
    f.write(
        "inbox.mbox",
        b"From alice@acme.test Mon Jan  1 00:00:00 2024\n\
From: carol@acme.test\nSubject: first of the box\n\nhello\n\n\
From bob@acme.test Mon Jan  1 00:00:00 2024\n\
From: dave@acme.test\nSubject: second of the box\n\n>From the start\n",
    );
    let r = f.import_json(&["inbox.mbox"]);
    assert_eq!(r["imported"], 2, "{r}");
    let paths: Vec<&str> = r["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["inbox.mbox#1", "inbox.mbox#2"]);
    let hits = f.search_json(&["subject:second"]);
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0]["from"], "dave@acme.test");
}

#[test]
fn search_json_and_human_output() {
    let f = Fixture::with_tenant();
    f.write("mail/a.eml", ALICE);
    f.write("mail/d.eml", DAVE);
    f.import_json(&["mail"]);

    let hits = f.search_json(&["from:alice@acme.test", "quarterly"]);
    assert_eq!(hits.len(), 1);
    let h = &hits[0];
    for key in [
        "id",
        "date",
        "from",
        "to",
        "subject",
        "size",
        "message_id",
        "attachments",
    ] {
        assert!(h.get(key).is_some(), "{key} missing in {h}");
    }
    assert_eq!(h["date"], "2024-10-01T10:30:00Z");
    assert_eq!(h["from"], "alice@acme.test");
    assert_eq!(
        h["to"],
        serde_json::json!(["bob@acme.test", "carol@acme.test"])
    );
    assert_eq!(h["subject"], "Q3 numbers");
    assert_eq!(h["size"], ALICE.len());
    assert_eq!(h["message_id"], "q3@acme.test");
    assert_eq!(h["attachments"], 0);

    // Order, paging and sort.
    let all = f.search_json(&[]);
    assert_eq!(all[0]["subject"], "lunch on friday");
    assert_eq!(all[1]["subject"], "Q3 numbers");
    let out = f.ok(&[
        "search", "--tenant", "acme", "--json", "--sort", "oldest", "--limit", "1",
    ]);
    assert_eq!(out.lines().count(), 1);
    assert!(out.contains("Q3 numbers"));

    let out = f.run(&["search", "--tenant", "acme", "quarterly"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout.clone()).unwrap();
    let line = text.lines().next().unwrap();
    assert!(line.starts_with("2024-10-01 10:30"), "{text}");
    assert!(line.contains("alice@acme.test") && line.contains("Q3 numbers"));
    assert!(line.ends_with(h["id"].as_str().unwrap()), "{line}");
    assert_eq!(stderr(&out).trim(), "1 of 1 messages");

    // A negation after `--`.
    let hits = f.search_json(&["-quarterly"]);
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0]["subject"], "lunch on friday");
}

#[test]
fn search_count_prints_only_the_total() {
    let f = Fixture::with_tenant();
    f.write("mail/a.eml", ALICE);
    f.write("mail/d.eml", DAVE);
    f.import_json(&["mail"]);

    let count = |q: &[&str]| {
        let mut args = vec!["search", "--tenant", "acme", "--count", "--"];
        args.extend_from_slice(q);
        f.ok(&args)
    };
    assert_eq!(count(&[]), "2\n");
    assert_eq!(count(&["quarterly"]), "1\n");
    assert_eq!(count(&["-quarterly"]), "1\n");
    assert_eq!(count(&["nosuchwordanywhere"]), "0\n");
    // Only the number on stdout, and no "N of M messages" footer.
    let out = f.run(&[
        "search",
        "--tenant",
        "acme",
        "--count",
        "from:alice@acme.test",
    ]);
    assert!(out.status.success());
    assert_eq!(String::from_utf8(out.stdout.clone()).unwrap(), "1\n");
    assert_eq!(stderr(&out).trim(), "");

    // A page option or --json makes no sense with --count: a usage error.
    for extra in [
        &["--json"][..],
        &["--limit", "5"],
        &["--offset", "1"],
        &["--sort", "oldest"],
    ] {
        let mut args = vec!["search", "--tenant", "acme", "--count"];
        args.extend_from_slice(extra);
        args.push("quarterly");
        let err = f.fails(&args, 2);
        assert!(err.contains("cannot be used with"), "{extra:?}: {err}");
    }
    // A bad query is still exit code 2 with the position.
    let err = f.fails(&["search", "--tenant", "acme", "--count", "form:bob"], 2);
    assert!(err.contains("unknown field 'form' at position 0"), "{err}");
}

#[test]
fn bad_query_exits_2_with_the_position() {
    let f = Fixture::with_tenant();
    let err = f.fails(&["search", "--tenant", "acme", "form:bob"], 2);
    assert!(err.contains("unknown field 'form' at position 0"), "{err}");
    let err = f.fails(
        &["search", "--tenant", "acme", "invoice", "(a", "OR", "b"],
        2,
    );
    assert!(err.contains("at position 8"), "{err}");
}

#[test]
fn wrong_or_missing_passphrase() {
    let f = Fixture::with_tenant();
    let out = f
        .cmd()
        .env("AMA_PASSPHRASE", "not the passphrase")
        .args(["tenant", "list"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("wrong passphrase"),
        "{}",
        stderr(&out)
    );

    let out = f
        .cmd()
        .env_remove("AMA_PASSPHRASE")
        .args(["tenant", "list"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains(
            "no passphrase given: set AMA_PASSPHRASE, or pass --passphrase-file or --key-file"
        ),
        "{}",
        stderr(&out)
    );

    // The same passphrase from a file (first line; the newline is not part of it).
    f.write("pass.txt", format!("{PASSPHRASE}\nignored\n").as_bytes());
    let out = f
        .cmd()
        .env_remove("AMA_PASSPHRASE")
        .args(["--passphrase-file", "pass.txt", "tenant", "list"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("acme"));
}

#[test]
fn key_file_archive() {
    let f = Fixture::empty();
    f.write("master.key", &[7u8; 32]);
    let run = |args: &[&str]| {
        f.cmd()
            .env_remove("AMA_PASSPHRASE")
            .args(["--key-file", "master.key"])
            .args(args)
            .output()
            .unwrap()
    };
    assert!(run(&["init"]).status.success());
    assert!(run(&["tenant", "add", "acme"]).status.success());
    let out = run(&["tenant", "list"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("acme"));
    // A passphrase does not open a key-file archive.
    let err = f.fails(&["tenant", "list"], 1);
    assert!(err.contains("key file"), "{err}");
}

#[test]
fn unknown_tenant_missing_paths_and_bad_ids() {
    let f = Fixture::with_tenant();
    f.write("a.eml", ALICE);
    for args in [
        &["search", "--tenant", "nope", "x"][..],
        &["import", "--tenant", "nope", "a.eml"],
        &["show", "--tenant", "nope", "01JD3ZZZZZZZZZZZZZZZZZZZZZ"],
        &["stats", "--tenant", "nope"],
        &["reindex", "--tenant", "nope"],
    ] {
        let err = f.fails(args, 1);
        assert!(
            err.contains("tenant \"nope\" does not exist"),
            "{args:?}: {err}"
        );
    }
    let err = f.fails(&["search", "--tenant", "../etc", "x"], 2);
    assert!(err.contains("invalid tenant id"), "{err}");

    let err = f.fails(&["import", "--tenant", "acme", "a.eml", "missing-dir"], 1);
    assert!(
        err.contains("missing-dir: no such file or directory"),
        "{err}"
    );
    // Nothing was imported from the existing path either.
    assert!(f.search_json(&[]).is_empty());

    let err = f.fails(&["show", "--tenant", "acme", "not-an-id"], 2);
    assert!(err.contains("invalid message id"), "{err}");
    let err = f.fails(
        &["show", "--tenant", "acme", "01JD3ZZZZZZZZZZZZZZZZZZZZZ"],
        1,
    );
    assert!(err.contains("not found"), "{err}");
}

#[test]
fn small_batches_give_the_same_result() {
    let f = Fixture::with_tenant();
    for i in 0..7 {
        f.write(
            &format!("mail/{i}.eml"),
            format!("From: u{i}@acme.test\nSubject: number {i}\n\nbody {i}\n").as_bytes(),
        );
    }
    f.write("mail/7.eml", b"");
    let out = f.ok(&[
        "import", "--tenant", "acme", "--json", "--batch", "2", "mail",
    ]);
    let r: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(r["imported"], 7, "{r}");
    assert_eq!(r["refused"].as_array().unwrap().len(), 1, "{r}");
    // Walk order is kept across batches.
    let paths: Vec<&str> = r["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["path"].as_str().unwrap())
        .collect();
    let want: Vec<String> = (0..7).map(|i| format!("mail/{i}.eml")).collect();
    assert_eq!(paths, want);
    assert_eq!(f.search_json(&[]).len(), 7);
    f.fails(&["import", "--tenant", "acme", "--batch", "0", "mail"], 2);
}

#[test]
fn a_failing_store_stops_the_import_with_a_report() {
    let f = Fixture::with_tenant();
    f.write("mail/a.eml", ALICE);
    // Make the blob store unwritable in a way that holds even for root: a
    // file where the local store keeps its tenant directories (`blobs/t`).
    let t = f.path("data/blobs/t");
    if t.is_dir() {
        std::fs::remove_dir_all(&t).unwrap();
    }
    std::fs::write(&t, b"in the way").unwrap();
    let out = f.run(&["import", "--tenant", "acme", "--json", "mail"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "the import should fail (has the local store layout changed?): {}",
        stderr(&out)
    );
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["imported"], 0, "{r}");
    assert!(r["error"].as_str().unwrap().contains("blob store"), "{r}");
    let err = stderr(&out);
    assert!(
        err.starts_with("ama: import stopped after archiving 0 new messages"),
        "{err}"
    );
}

#[test]
fn users_api_keys_and_the_audit_log() {
    let f = Fixture::with_tenant();
    f.write("in/alice.eml", ALICE);
    f.import_json(&["in"]);
    // a user with a password from the environment (never argv)
    let out = f
        .cmd()
        .args([
            "user",
            "add",
            "--tenant",
            "acme",
            "bob",
            "--name",
            "Bob B",
            "--address",
            "Bob@Acme.test",
            "--role",
            "end-user",
        ])
        .env("AMA_USER_PASSWORD", "tulip-orbit-canyon-42")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("bob@acme.test"));
    // a weak password is refused with the reason (exit 1), and nothing is added
    let weak = f
        .cmd()
        .args([
            "user",
            "add",
            "--tenant",
            "acme",
            "carol",
            "--role",
            "auditor",
            "--password-stdin",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(b"password1234\n")?;
            c.wait_with_output()
        })
        .unwrap();
    assert_eq!(weak.status.code(), Some(1));
    assert!(stderr(&weak).contains("commonly used"), "{}", stderr(&weak));
    // a missing password for set-password is a usage error
    f.fails(&["user", "set-password", "--tenant", "acme", "bob"], 2);
    f.ok(&["user", "grant", "--tenant", "acme", "bob", "auditor"]);
    f.ok(&["user", "disable", "--tenant", "acme", "bob"]);
    let users: Vec<Value> = f
        .ok(&["user", "list", "--tenant", "acme", "--json"])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(users.len(), 1);
    assert_eq!(users[0]["id"], "bob");
    assert_eq!(
        users[0]["roles"],
        serde_json::json!(["end-user", "auditor"])
    );
    assert_eq!(users[0]["active"], false);
    f.fails(
        &["user", "grant", "--tenant", "acme", "bob", "superuser"],
        2,
    );
    f.fails(&["user", "disable", "--tenant", "acme", "nobody"], 1);
    // API keys: the token is printed once, the list has none
    let token = f.ok(&["api-key", "create", "--tenant", "acme", "relay"]);
    assert!(token.trim().starts_with("amak_acme_"), "{token}");
    let keys = f.ok(&["api-key", "list", "--tenant", "acme", "--json"]);
    assert!(!keys.contains(token.trim()));
    // the audit log has it all, with the CLI as frontend
    f.search_json(&["subject:q3"]);
    let log: Vec<Value> = f
        .ok(&["audit", "list", "--tenant", "acme", "--json"])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let actions: Vec<&str> = log.iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(actions[0], "tenant-create");
    assert!(actions.contains(&"ingest"));
    assert!(actions.contains(&"api-key-change"));
    let search = log.iter().find(|e| e["action"] == "search").unwrap();
    assert_eq!(search["frontend"], "cli");
    assert_eq!(search["detail"], "query \"subject:q3\", offset 0");
    assert_eq!(search["messages"].as_array().unwrap().len(), 1);
    let user_changes = f.ok(&[
        "audit",
        "list",
        "--tenant",
        "acme",
        "--action",
        "user-change",
    ]);
    assert_eq!(user_changes.lines().count(), 5, "{user_changes}"); // add, weak add, grant, disable, unknown
    assert!(user_changes.contains("denied") || user_changes.contains("failed"));
    f.fails(
        &["audit", "list", "--tenant", "acme", "--action", "nonsense"],
        2,
    );
    f.fails(
        &["audit", "list", "--tenant", "acme", "--since", "yesterday"],
        2,
    );
    assert_eq!(
        f.ok(&["audit", "list", "--tenant", "acme", "--since", "2999-01-01"]),
        ""
    );
    let verify = f.ok(&["audit", "verify", "--tenant", "acme"]);
    assert!(verify.contains("chain intact"), "{verify}");
}

#[test]
fn audit_verify_names_a_tampered_entry() {
    use redb::ReadableTable;
    const AUDIT: redb::TableDefinition<(&str, u64), &[u8]> = redb::TableDefinition::new("audit");
    let f = Fixture::with_tenant();
    for q in ["a", "b", "c", "d"] {
        f.search_json(&[q]);
    }
    f.ok(&["audit", "verify", "--tenant", "acme"]);
    {
        let db = redb::Database::open(f.path("data/catalog.redb")).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut t = txn.open_table(AUDIT).unwrap();
            let mut v = t.get(("acme", 2)).unwrap().unwrap().value().to_vec();
            let last = v.len() - 1;
            v[last] ^= 0x40;
            t.insert(("acme", 2), v.as_slice()).unwrap();
        }
        txn.commit().unwrap();
    }
    let out = f.run(&["audit", "verify", "--tenant", "acme"]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("entry 2: fails authentication"), "{text}");
    assert!(
        stderr(&out).contains("broken at entry 2"),
        "{}",
        stderr(&out)
    );
    let json = f.run(&["audit", "verify", "--tenant", "acme", "--json"]);
    let v: Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(v["intact"], false);
    assert_eq!(v["problems"][0]["seq"], 2);
}

#[test]
fn retention_holds_sweep_and_verify() {
    let f = Fixture::with_tenant();
    f.write("in/alice.eml", ALICE); // dated 2024-10-01
    f.write("in/dave.eml", DAVE); // dated 2024-10-02
    f.import_json(&["in"]);
    f.ok(&[
        "retention",
        "set",
        "--tenant",
        "acme",
        "--default",
        "1y",
        "--year-end",
        "--rule",
        "domain:nowhere.test=10y",
    ]);
    let shown: Value =
        serde_json::from_str(&f.ok(&["retention", "show", "--tenant", "acme"])).unwrap();
    assert_eq!(shown["count_from"], "year-end");
    assert_eq!(shown["rules"][0], "domain:nowhere.test=10y");
    f.fails(
        &[
            "retention",
            "set",
            "--tenant",
            "acme",
            "--default",
            "1y",
            "--rule",
            "color:red=1y",
        ],
        2,
    );
    f.ok(&[
        "hold",
        "place",
        "--tenant",
        "acme",
        "case-1",
        "--reason",
        "lawsuit",
        "--custodian",
        "erin@acme.test",
    ]);
    f.fails(
        &[
            "hold", "place", "--tenant", "acme", "case-2", "--reason", "x",
        ],
        2,
    );
    // 2024 mail kept one year from the year's end: due on 2026-01-01.
    let before = f.ok(&[
        "retention",
        "sweep",
        "--tenant",
        "acme",
        "--at",
        "2025-12-31",
    ]);
    assert!(before.contains("0 deleted"), "{before}");
    let after = f.ok(&[
        "retention",
        "sweep",
        "--tenant",
        "acme",
        "--at",
        "2026-01-01",
    ]);
    assert!(
        after.contains("1 deleted, 1 kept by legal holds"),
        "{after}"
    );
    assert_eq!(f.search_json(&[]).len(), 1);
    let v = f.ok(&["verify", "--tenant", "acme"]);
    assert!(
        v.contains("1 messages verified, 1 deleted with tombstones, 0 problems"),
        "{v}"
    );
    assert!(v.contains("retention expired"), "{v}");
    let holds = f.ok(&["hold", "list", "--tenant", "acme"]);
    assert!(holds.contains("\"active\":true"), "{holds}");
    f.ok(&[
        "hold", "release", "--tenant", "acme", "case-1", "--reason", "settled",
    ]);
}

#[test]
fn proofs_are_checked_without_the_archive() {
    let f = Fixture::with_tenant();
    f.write("in/alice.eml", ALICE);
    f.write("in/dave.eml", DAVE);
    f.import_json(&["in"]);
    let hit = &f.search_json(&["subject:q3"])[0];
    let id = hit["id"].as_str().unwrap().to_string();
    let proof = f.ok(&["proof", "--tenant", "acme", &id]);
    f.write("proof.json", proof.as_bytes());
    // proof-check needs no passphrase and no data directory
    let out = Command::new(env!("CARGO_BIN_EXE_ama"))
        .current_dir(f.dir.path())
        .args([
            "proof-check",
            "--proof",
            "proof.json",
            "--message",
            "in/alice.eml",
        ])
        .env_remove("AMA_PASSPHRASE")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("valid:"));
    let bad = f.fails(
        &[
            "proof-check",
            "--proof",
            "proof.json",
            "--message",
            "in/dave.eml",
        ],
        1,
    );
    assert!(bad.contains("SHA-256 differs"), "{bad}");
    // The documented Python procedure agrees (docs/PROOFS.md).
    let doc =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/PROOFS.md")).unwrap();
    let script = doc
        .split("```python\n")
        .nth(1)
        .unwrap()
        .split("```")
        .next()
        .unwrap();
    f.write("check.py", script.as_bytes());
    match Command::new("python3")
        .current_dir(f.dir.path())
        .args(["check.py", "proof.json", "in/alice.eml"])
        .output()
    {
        Ok(o) => {
            assert!(o.status.success(), "{}", stderr(&o));
            assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "valid");
            let o = Command::new("python3")
                .current_dir(f.dir.path())
                .args(["check.py", "proof.json", "in/dave.eml"])
                .output()
                .unwrap();
            assert!(!o.status.success());
        }
        Err(_) => eprintln!("SKIPPED: the Python check (no python3)"),
    }
}

#[test]
fn four_eyes_deletion_by_query_and_a_hold_export() {
    let f = Fixture::with_tenant();
    f.write("in/alice.eml", ALICE);
    f.write("in/dave.eml", DAVE);
    f.import_json(&["in"]);
    f.ok(&[
        "retention",
        "set",
        "--tenant",
        "acme",
        "--default",
        "10y",
        "--four-eyes",
        "--rule",
        "query:subject:lunch=1y",
    ]);
    let shown: Value =
        serde_json::from_str(&f.ok(&["retention", "show", "--tenant", "acme"])).unwrap();
    assert_eq!(shown["rules"][0], "query:subject:lunch=1y");
    for u in ["ann", "ben"] {
        let out = f
            .cmd()
            .args(["user", "add", "--tenant", "acme", u, "--role", "auditor"])
            .env("AMA_USER_PASSWORD", "tulip-orbit-canyon-42")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let as_user = |u: &str, args: &[&str]| -> Output {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--as", u]);
        f.cmd()
            .args(&all)
            .env("AMA_USER_PASSWORD", "tulip-orbit-canyon-42")
            .output()
            .unwrap()
    };
    // Bad input is a usage error: no selection, an unparsable query.
    f.fails(
        &["deletion", "request", "--tenant", "acme", "--reason", "x"],
        2,
    );
    f.fails(
        &[
            "deletion", "request", "--tenant", "acme", "--reason", "x", "--query", "from:(",
        ],
        2,
    );
    let req = as_user(
        "ann",
        &[
            "deletion",
            "request",
            "--tenant",
            "acme",
            "--reason",
            "gdpr erasure",
            "--query",
            "from:dave@acme.test",
        ],
    );
    assert!(req.status.success(), "{}", stderr(&req));
    let text = String::from_utf8_lossy(&req.stdout).to_string();
    assert!(text.contains("waits for a second auditor"), "{text}");
    let list = as_user("ben", &["deletion", "list", "--tenant", "acme"]);
    let pending: Value = serde_json::from_str(
        String::from_utf8_lossy(&list.stdout)
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(pending["requested_by"], "ann");
    let id = pending["id"].as_str().unwrap().to_string();
    // The requester cannot approve her own request; the operator cannot either.
    let own = as_user("ann", &["deletion", "approve", "--tenant", "acme", &id]);
    assert_eq!(own.status.code(), Some(1), "{}", stderr(&own));
    assert!(stderr(&own).contains("four-eyes"), "{}", stderr(&own));
    f.fails(&["deletion", "approve", "--tenant", "acme", &id], 1);
    // A wrong password is refused.
    let wrong = f
        .cmd()
        .args([
            "deletion", "approve", "--tenant", "acme", &id, "--as", "ben",
        ])
        .env("AMA_USER_PASSWORD", "not-bens-password-at-all")
        .output()
        .unwrap();
    assert!(!wrong.status.success());
    let ok = as_user("ben", &["deletion", "approve", "--tenant", "acme", &id]);
    assert!(ok.status.success(), "{}", stderr(&ok));
    let text = String::from_utf8_lossy(&ok.stdout).to_string();
    assert!(text.contains("1 deleted, 0 kept back"), "{text}");
    assert_eq!(f.search_json(&[]).len(), 1);

    // A hold exported by name: exactly the held mail.
    f.ok(&[
        "hold",
        "place",
        "--tenant",
        "acme",
        "q3",
        "--reason",
        "audit",
        "--query",
        "subject:q3",
    ]);
    f.ok(&[
        "export", "--tenant", "acme", "--hold", "q3", "--format", "mbox", "--out", "q3.mbox",
    ]);
    let mbox = std::fs::read(f.path("q3.mbox")).unwrap();
    assert!(mbox.windows(10).any(|w| w == b"Q3 numbers"));
    assert!(!mbox.windows(5).any(|w| w == b"lunch"));
    f.fails(
        &[
            "export", "--tenant", "acme", "--hold", "q3", "--query", "x", "--format", "mbox",
            "--out", "x.mbox",
        ],
        2,
    );
}

/// `ama serve` sweeps on its own: mail past its retain-until is deleted
/// by the node's schedule, with no `ama retention sweep` run by hand.
#[test]
fn serve_sweeps_expired_mail_on_its_schedule() {
    use std::io::{BufRead, BufReader};
    let f = Fixture::with_tenant();
    f.write("in/alice.eml", ALICE); // 2024: past a one-day retention
    f.import_json(&["in"]);
    f.ok(&["retention", "set", "--tenant", "acme", "--default", "1d"]);
    f.fails(
        &["serve", "--http", "127.0.0.1:0", "--sweep-every", "5w"],
        2,
    );
    let mut child = f
        .cmd()
        .args([
            "serve",
            "--http",
            "127.0.0.1:0",
            "--insecure-http",
            "--sweep-every",
            "1s",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut swept = None;
    while std::time::Instant::now() < deadline {
        match rx.recv_timeout(std::time::Duration::from_secs(1)) {
            Ok(l) if l.contains("retention sweep of acme") => {
                swept = Some(l);
                break;
            }
            _ => {}
        }
    }
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = child.wait().unwrap();
    let swept = swept.expect("no retention sweep within 60 s");
    assert!(swept.contains("1 deleted"), "{swept}");
    assert!(status.success(), "{status}");
    assert!(f.search_json(&[]).is_empty());
    let v = f.ok(&["verify", "--tenant", "acme"]);
    assert!(v.contains("1 deleted with tombstones, 0 problems"), "{v}");
}
