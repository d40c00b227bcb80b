//! `ama export` and `ama restore` end to end: the built binary against an
//! archive in a temporary directory, and for restore a real Dovecot IMAP
//! server started by the test on loopback (SKIPPED when it is not
//! installed; `scripts/test` installs it and creates its mail user).

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use std::collections::HashMap;
use std::io::Read;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use sha2::{Digest, Sha256};

const PASSPHRASE: &str = "correct horse battery";

/// The awkward cases: CRLF (IMAP's canonical form), LF, a `From ` line in
/// the body, an mbox `From ` line first, no final line end, 8-bit bytes.
const MAILS: &[(&str, &[u8])] = &[
    (
        "crlf.eml",
        b"From: Alice <alice@acme.test>\r\nTo: bob@acme.test\r\nSubject: Q3 numbers\r\nDate: Tue, 1 Oct 2024 10:30:00 +0000\r\nMessage-ID: <q3@acme.test>\r\n\r\nGr\xfc\xdfe,\r\nFrom the top: figures attached.\r\n",
    ),
    (
        "lf.eml",
        b"From: bob@acme.test\nTo: alice@acme.test\nSubject: re: Q3 numbers\nDate: Wed, 2 Oct 2024 09:00:00 +0200\n\n>From a quoted line\nthanks\n",
    ),
    (
        "mbox-line.eml",
        b"From carol@acme.test Thu Oct  3 10:00:00 2024\nFrom: carol@acme.test\nTo: alice@acme.test\nSubject: lunch\nDate: Thu, 3 Oct 2024 10:00:00 +0000\n\npizza?\n",
    ),
    (
        "no-newline.eml",
        b"From: dave@acme.test\r\nTo: alice@acme.test\r\nSubject: no line end\r\nDate: Fri, 4 Oct 2024 08:00:00 +0000\r\n\r\nthe end",
    ),
];

struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    /// An archive with tenant `acme` holding [`MAILS`].
    fn new() -> Self {
        let f = Fixture {
            dir: tempfile::tempdir().unwrap(),
        };
        // Readable by the test's Dovecot processes (they run as other users).
        std::fs::set_permissions(f.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        f.ok(&["init"]);
        f.ok(&["tenant", "add", "acme"]);
        for (name, raw) in MAILS {
            std::fs::create_dir_all(f.path("in")).unwrap();
            std::fs::write(f.path("in").join(name), raw).unwrap();
        }
        f.ok(&["import", "--tenant", "acme", "in"]);
        f
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
            .env_remove("AMA_IMAP_PASSWORD")
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
            "ama {args:?} failed: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn fails(&self, args: &[&str], code: i32) -> String {
        let out = self.run(args);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(code), "ama {args:?}: {err}");
        assert!(err.starts_with("ama: "), "{err}");
        assert!(!err.contains("panicked"), "{err}");
        err
    }

    /// `ama search --json` ids of a query.
    fn ids(&self, query: &str) -> Vec<String> {
        self.ok(&["search", "--tenant", "acme", "--json", "--", query])
            .lines()
            .map(|l| {
                let v: Value = serde_json::from_str(l).unwrap();
                v["id"].as_str().unwrap().to_string()
            })
            .collect()
    }
}

fn sha_hex(b: &[u8]) -> String {
    Sha256::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

fn unzip(path: &Path) -> HashMap<String, Vec<u8>> {
    let mut z = zip::ZipArchive::new(std::fs::File::open(path).unwrap()).unwrap();
    (0..z.len())
        .map(|i| {
            let mut f = z.by_index(i).unwrap();
            let mut v = Vec::new();
            f.read_to_end(&mut v).unwrap();
            (f.name().unwrap().to_string(), v)
        })
        .collect()
}

fn originals() -> HashMap<String, &'static [u8]> {
    MAILS.iter().map(|(_, raw)| (sha_hex(raw), *raw)).collect()
}

#[test]
fn export_zip_and_mbox_files() {
    let f = Fixture::new();
    let out = f.ok(&[
        "export", "--tenant", "acme", "--format", "zip", "--out", "all.zip", "--json",
    ]);
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["exported"], 4);
    assert_eq!(report["selected"], 4);
    let zip_path = f.path("all.zip");
    let bytes = std::fs::read(&zip_path).unwrap();
    assert_eq!(
        report["sha256"],
        sha_hex(&bytes),
        "the summary names the file's digest"
    );
    assert_eq!(report["file_bytes"], bytes.len());
    assert!(!f.path("all.zip.partial").exists());
    let mode = std::fs::metadata(&zip_path).unwrap().permissions().mode();
    assert_eq!(
        mode & 0o777,
        0o600,
        "plaintext mail is readable by its owner only"
    );
    let entries = unzip(&zip_path);
    let want = originals();
    let mut found = 0;
    for (name, data) in &entries {
        if name.starts_with("messages/") {
            assert_eq!(want[&sha_hex(data)], data.as_slice(), "{name}");
            found += 1;
        }
    }
    assert_eq!(found, 4);
    assert!(entries.contains_key("manifest.csv") && entries.contains_key("manifest.json"));

    // The same as mbox: human summary, the one message without a final
    // line end is named.
    let out = f.ok(&[
        "export", "--tenant", "acme", "--format", "mbox", "--out", "all.mbox",
    ]);
    assert!(out.starts_with("exported 4 messages"), "{out}");
    let no_newline = f.ids("subject:\"no line end\"");
    assert!(
        out.contains("line break") && out.contains(&no_newline[0]),
        "{out}"
    );
    let mbox = std::fs::read(f.path("all.mbox")).unwrap();
    assert!(out.contains(&format!("sha256 {}", sha_hex(&mbox))), "{out}");
    let text = String::from_utf8_lossy(&mbox);
    assert_eq!(text.lines().filter(|l| l.starts_with("From ")).count(), 4);
    assert!(text.contains("\n>>From a quoted line\n"));
    assert!(text.contains("\n>From carol@acme.test Thu Oct  3 10:00:00 2024\n"));
}

#[test]
fn export_selects_by_query_and_ids() {
    let f = Fixture::new();
    let out = f.ok(&[
        "export",
        "--tenant",
        "acme",
        "--query",
        "from:bob@acme.test",
        "--format",
        "zip",
        "--out",
        "bob.zip",
        "--json",
    ]);
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["exported"], 1);
    let entries = unzip(&f.path("bob.zip"));
    let lf = MAILS[1].1;
    let bob = f.ids("from:bob@acme.test");
    assert_eq!(entries[&format!("messages/{}.eml", bob[0])], lf);

    // A query starting with '-' is a query, not an option.
    let out = f.ok(&[
        "export",
        "--tenant",
        "acme",
        "--query",
        "-from:bob@acme.test",
        "--format",
        "mbox",
        "--out",
        "not-bob.mbox",
        "--json",
    ]);
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["exported"], 3);

    let two = f.ids("to:alice@acme.test");
    assert_eq!(two.len(), 3);
    let out = f.ok(&[
        "export", "--tenant", "acme", "--ids", &two[0], &two[1], "--format", "zip", "--out",
        "two.zip", "--json",
    ]);
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["exported"], 2);
    let manifest: Value =
        serde_json::from_slice(&unzip(&f.path("two.zip"))["manifest.json"]).unwrap();
    let got: Vec<&str> = manifest["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(got, [two[0].as_str(), two[1].as_str()]);
}

#[test]
fn export_refuses_what_it_must() {
    let f = Fixture::new();
    std::fs::write(f.path("taken.zip"), b"precious").unwrap();
    let err = f.fails(
        &[
            "export",
            "--tenant",
            "acme",
            "--format",
            "zip",
            "--out",
            "taken.zip",
        ],
        2,
    );
    assert!(err.contains("--force"), "{err}");
    assert_eq!(std::fs::read(f.path("taken.zip")).unwrap(), b"precious");
    f.ok(&[
        "export",
        "--tenant",
        "acme",
        "--format",
        "zip",
        "--out",
        "taken.zip",
        "--force",
    ]);
    assert_eq!(unzip(&f.path("taken.zip")).len(), 6);

    // Plaintext never goes into the data directory.
    let err = f.fails(
        &[
            "export",
            "--tenant",
            "acme",
            "--format",
            "mbox",
            "--out",
            "data/x.mbox",
        ],
        2,
    );
    assert!(err.contains("data directory"), "{err}");
    assert!(!f.path("data/x.mbox").exists() && !f.path("data/x.mbox.partial").exists());

    // A left-over partial file is not silently reused.
    std::fs::write(f.path("p.mbox.partial"), b"old").unwrap();
    let err = f.fails(
        &[
            "export", "--tenant", "acme", "--format", "mbox", "--out", "p.mbox",
        ],
        2,
    );
    assert!(err.contains("p.mbox.partial exists"), "{err}");

    // Bad queries and ids are usage errors; an unknown id fails before any
    // file is written.
    let err = f.fails(
        &[
            "export", "--tenant", "acme", "--query", "from:", "--format", "zip", "--out", "q.zip",
        ],
        2,
    );
    assert!(err.contains("bad query"), "{err}");
    f.fails(
        &[
            "export", "--tenant", "acme", "--ids", "nope", "--format", "zip", "--out", "q.zip",
        ],
        2,
    );
    let err = f.fails(
        &[
            "export",
            "--tenant",
            "acme",
            "--ids",
            "01JD3ZZZZZZZZZZZZZZZZZZZZZ",
            "--format",
            "zip",
            "--out",
            "q.zip",
        ],
        1,
    );
    assert!(err.contains("not found"), "{err}");
    assert!(!f.path("q.zip").exists() && !f.path("q.zip.partial").exists());
    let err = f.fails(
        &[
            "export", "--tenant", "nobody", "--format", "zip", "--out", "q.zip",
        ],
        1,
    );
    assert!(err.contains("does not exist"), "{err}");
    assert!(!f.path("q.zip.partial").exists());
}

// ----- restore to a real Dovecot ----------------------------------------------

/// The unprivileged system user that owns the test mail store
/// (`scripts/test` creates it).
const MAIL_USER: &str = "ama-imap";

/// A Dovecot started for one test: plain IMAP and IMAPS on loopback ports,
/// one user `alice` with a password, Maildir storage in a temp directory.
struct Dovecot {
    child: Child,
    dir: tempfile::TempDir,
    imap_port: u16,
    imaps_port: u16,
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn id_of(user: &str, flag: &str) -> Option<u32> {
    let out = Command::new("id").args([flag, user]).output().ok()?;
    if !out.status.success() {
        return None;
    }
    String::from_utf8(out.stdout).ok()?.trim().parse().ok()
}

impl Dovecot {
    /// Starts Dovecot, or says why it cannot (SKIPPED).
    fn start() -> Option<Dovecot> {
        let bin = ["/usr/sbin/dovecot", "/usr/local/sbin/dovecot"]
            .into_iter()
            .find(|p| Path::new(p).exists());
        let Some(bin) = bin else {
            eprintln!("SKIPPED: dovecot is not installed (Debian package dovecot-imapd)");
            return None;
        };
        let (Some(uid), Some(gid)) = (id_of(MAIL_USER, "-u"), id_of(MAIL_USER, "-g")) else {
            eprintln!(
                "SKIPPED: no system user {MAIL_USER} for the test mail store (scripts/test creates it)"
            );
            return None;
        };
        if current_uid() != Some(0) {
            eprintln!("SKIPPED: the Dovecot test runs Dovecot's master process as root");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
        for sub in ["run", "state", "home"] {
            std::fs::create_dir(d.join(sub)).unwrap();
        }
        std::os::unix::fs::chown(d.join("home"), Some(uid), Some(gid)).unwrap();
        let (_, cert, key) = ama_smtp::tls::CertKey::self_signed_localhost().unwrap();
        std::fs::write(d.join("cert.pem"), &cert).unwrap();
        std::fs::write(d.join("key.pem"), &key).unwrap();
        std::fs::write(d.join("passwd"), "alice:{PLAIN}imap-test-password\n").unwrap();
        let (imap_port, imaps_port) = (free_port(), free_port());
        let p = d.display();
        let conf = format!(
            r#"base_dir = {p}/run
state_dir = {p}/state
log_path = {p}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = yes
ssl_cert = <{p}/cert.pem
ssl_key = <{p}/key.pem
disable_plaintext_auth = no
auth_mechanisms = plain
default_login_user = dovenull
default_internal_user = dovecot
first_valid_uid = {uid}
last_valid_uid = {uid}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {p}/passwd
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={p}/home/%u
}}
mail_location = maildir:~/Maildir
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {imap_port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {imaps_port}
    ssl = yes
  }}
}}
"#
        );
        std::fs::write(d.join("dovecot.conf"), conf).unwrap();
        let child = Command::new(bin)
            .args(["-F", "-c"])
            .arg(d.join("dovecot.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let dc = Dovecot {
            child,
            dir,
            imap_port,
            imaps_port,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", imaps_port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "dovecot did not start: {}",
                std::fs::read_to_string(dc.dir.path().join("dovecot.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(dc)
    }

    fn ca(&self) -> PathBuf {
        self.dir.path().join("cert.pem")
    }

    /// Every message of `folder` (modified UTF-7 name), fetched with
    /// BODY.PEEK[] by Python's imaplib over the plain loopback listener:
    /// (INTERNALDATE as Unix seconds, bytes).
    fn fetch_all(&self, folder: &str) -> Vec<(i64, Vec<u8>)> {
        const PY: &str = r#"
import imaplib, sys, time, re
port, folder, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]
m = imaplib.IMAP4('127.0.0.1', port)
m.login('alice', 'imap-test-password')
typ, _ = m.select('"%s"' % folder, readonly=True)
assert typ == 'OK', typ
typ, data = m.fetch('1:*', '(INTERNALDATE BODY.PEEK[])')
assert typ == 'OK', typ
with open(out, 'wb') as f:
    for item in data:
        if isinstance(item, tuple):
            secs = int(time.mktime(imaplib.Internaldate2tuple(item[0])))
            f.write(b'%d %d\n' % (secs, len(item[1])))
            f.write(item[1])
m.logout()
"#;
        let out = self.dir.path().join("fetched");
        let o = Command::new("python3")
            .args(["-c", PY, &self.imap_port.to_string(), folder])
            .arg(&out)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let all = std::fs::read(&out).unwrap();
        let mut rest = all.as_slice();
        let mut msgs = Vec::new();
        while !rest.is_empty() {
            let nl = rest.iter().position(|&b| b == b'\n').unwrap();
            let head = std::str::from_utf8(&rest[..nl]).unwrap();
            let (secs, len) = head.split_once(' ').unwrap();
            let len: usize = len.parse().unwrap();
            msgs.push((secs.parse().unwrap(), rest[nl + 1..nl + 1 + len].to_vec()));
            rest = &rest[nl + 1 + len..];
        }
        msgs
    }
}

/// The uid the test runs as.
fn current_uid() -> Option<u32> {
    let out = Command::new("id").arg("-u").output().ok()?;
    String::from_utf8(out.stdout).ok()?.trim().parse().ok()
}

fn python3() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import imaplib"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("SKIPPED: python3 (imaplib) is needed to read the folder back");
    }
    ok
}

/// What IMAP makes of a message: every line ends in CRLF (a bare LF or CR
/// becomes CRLF), as RFC 3501 requires on the wire and as Dovecot stores
/// and returns it. A message already in this form is returned unchanged.
fn imap_canonical(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len() + raw.len() / 20);
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            b'\r' if raw.get(i + 1) == Some(&b'\n') => {
                out.extend_from_slice(b"\r\n");
                i += 2;
                continue;
            }
            b'\r' | b'\n' => out.extend_from_slice(b"\r\n"),
            b => out.push(b),
        }
        i += 1;
    }
    out
}

/// Message date of each original (from the zip manifest), by SHA-256.
fn dates_by_digest(f: &Fixture) -> HashMap<String, i64> {
    f.ok(&[
        "export",
        "--tenant",
        "acme",
        "--format",
        "zip",
        "--out",
        "dates.zip",
        "--force",
    ]);
    let manifest: Value =
        serde_json::from_slice(&unzip(&f.path("dates.zip"))["manifest.json"]).unwrap();
    manifest["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let date = time::OffsetDateTime::parse(
                m["date"].as_str().unwrap(),
                &time::format_description::well_known::Rfc3339,
            )
            .unwrap();
            (
                m["sha256"].as_str().unwrap().to_string(),
                date.unix_timestamp(),
            )
        })
        .collect()
}

#[test]
fn restore_appends_byte_identical_messages_to_a_real_dovecot() {
    let Some(dc) = Dovecot::start() else {
        return;
    };
    if !python3() {
        return;
    }
    let f = Fixture::new();
    // Some real mail too: the first 150 files of the SpamAssassin ham.
    let corpus =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus/spamassassin/easy-ham-1");
    let mut corpus_files: Vec<PathBuf> = match std::fs::read_dir(&corpus) {
        Ok(rd) => rd.map(|e| e.unwrap().path()).collect(),
        Err(_) => {
            eprintln!(
                "note: {} is absent; restoring the fixtures only",
                corpus.display()
            );
            Vec::new()
        }
    };
    corpus_files.sort();
    corpus_files.truncate(150);
    if !corpus_files.is_empty() {
        std::fs::create_dir_all(f.path("corpus")).unwrap();
        for p in &corpus_files {
            std::fs::copy(p, f.path("corpus").join(p.file_name().unwrap())).unwrap();
        }
        f.ok(&["import", "--tenant", "acme", "corpus"]);
    }
    let mut originals: HashMap<String, Vec<u8>> = MAILS
        .iter()
        .map(|(_, r)| (sha_hex(r), r.to_vec()))
        .collect();
    for p in &corpus_files {
        let raw = std::fs::read(p).unwrap();
        originals.insert(sha_hex(&raw), raw);
    }
    let dates = dates_by_digest(&f);
    assert_eq!(dates.len(), originals.len());

    // Everything, over TLS (trusting the test's CA), into a folder with a
    // non-ASCII name that does not exist yet.
    let url = format!("imaps://alice@localhost:{}/Entwürfe", dc.imaps_port);
    let ca = dc.ca().display().to_string();
    let out = f
        .cmd()
        .env("AMA_IMAP_PASSWORD", "imap-test-password")
        .args([
            "restore",
            "--tenant",
            "acme",
            "--imap",
            &url,
            "--imap-ca",
            &ca,
            "--json",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["restored"], originals.len());
    assert_eq!(report["folder_created"], true);
    assert!(!String::from_utf8_lossy(&out.stdout).contains("imap-test-password"));

    let fetched = dc.fetch_all("Entw&APw-rfe");
    assert_eq!(fetched.len(), originals.len());
    let by_canonical: HashMap<Vec<u8>, &String> = originals
        .iter()
        .map(|(d, raw)| (imap_canonical(raw), d))
        .collect();
    let mut exact = 0;
    for (i, (internal, body)) in fetched.iter().enumerate() {
        let digest = by_canonical
            .get(body)
            .unwrap_or_else(|| panic!("fetched message {i} is not an original (in IMAP form)"));
        if originals[*digest] == *body {
            exact += 1;
        }
        assert_eq!(
            *internal, dates[*digest],
            "INTERNALDATE of message {i} is its date"
        );
    }
    // Messages already in IMAP's CRLF form come back byte for byte; the
    // fixtures hold two (with 8-bit bytes, and without a final line end).
    let canonical = originals
        .values()
        .filter(|r| imap_canonical(r) == **r)
        .count();
    assert!(canonical >= 2);
    assert_eq!(exact, canonical);

    // One listed message, into INBOX over plain IMAP on loopback.
    let lf = f.ids("from:bob@acme.test");
    let url = format!("imap://alice@127.0.0.1:{}/INBOX", dc.imap_port);
    let out = f
        .cmd()
        .env("AMA_IMAP_PASSWORD", "imap-test-password")
        .args([
            "restore", "--tenant", "acme", "--ids", &lf[0], "--imap", &url,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.starts_with("restored 1 messages"), "{stdout}");
    let inbox = dc.fetch_all("INBOX");
    assert_eq!(inbox.len(), 1);
    assert_eq!(inbox[0].1, imap_canonical(MAILS[1].1));

    // Refusals: a server certificate nobody trusts, a wrong password, no
    // password, plain IMAP off loopback. Nothing is appended.
    let tls_url = format!("imaps://alice@localhost:{}/INBOX", dc.imaps_port);
    let run = |env: Option<&str>, args: &[&str]| {
        let mut c = f.cmd();
        if let Some(pw) = env {
            c.env("AMA_IMAP_PASSWORD", pw);
        }
        c.args(args).output().unwrap()
    };
    let o = run(
        Some("imap-test-password"),
        &["restore", "--tenant", "acme", "--imap", &tls_url],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("TLS"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let o = run(
        Some("wrong"),
        &["restore", "--tenant", "acme", "--imap", &url],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("login"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let o = run(None, &["restore", "--tenant", "acme", "--imap", &url]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("AMA_IMAP_PASSWORD"));
    let o = run(
        Some("imap-test-password"),
        &[
            "restore",
            "--tenant",
            "acme",
            "--imap",
            "imap://alice@192.0.2.1/INBOX",
        ],
    );
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(dc.fetch_all("INBOX").len(), 1);
}
