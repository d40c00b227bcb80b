//! Acceptance test of issue 6: a real Postfix (the Debian package) in front
//! of the archive node, the way sites deploy it — `always_bcc` sends a copy
//! of every message to an archive address, `relayhost` sends it over
//! mandatory TLS to the ama node on loopback. Each message must then be in
//! the archive tenant that owns the Bcc address's domain, byte-identical to
//! what was submitted apart from the trace headers Postfix prepends.
//!
//! Why a real Postfix: our own client and swaks test the protocol, but the
//! node exists to sit behind production MTAs; their pipelining, STARTTLS
//! policy, `BODY=8BITMIME` and header handling are what matter here.
//!
//! The Postfix instance is throwaway: its own `main.cf`/`master.cf`, queue,
//! data directory and log file in a temp dir, listening on a free loopback
//! port (`postfix -c DIR`), so it never touches a machine-wide Postfix. It
//! is stopped by a guard, also when the test fails. Needs root (Postfix runs
//! its daemons as the `postfix` user); says SKIPPED when Postfix is not
//! installed (scripts/test installs it) or the test is not run as root.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use ama_core::MessageInfo;
use common::{Client, Node, all, raw};

const POSTFIX: &str = "/usr/sbin/postfix";
/// Headers a relay may prepend (RFC 5321 trace fields and Postfix's own).
const TRACE: [&str; 4] = ["received", "return-path", "x-original-to", "delivered-to"];
const SENDER: &str = "alice@sender.test";

/// A running throwaway Postfix; stopped on drop.
struct Postfix {
    dir: PathBuf,
    port: u16,
}

impl Postfix {
    fn config(&self) -> PathBuf {
        self.dir.join("etc")
    }

    fn maillog(&self) -> String {
        std::fs::read_to_string(self.dir.join("maillog")).unwrap_or_default()
    }

    /// Writes the configuration and starts Postfix; `relay` is the ama
    /// node's STARTTLS port, `ca` the node's certificate (PEM).
    fn start(dir: &Path, relay: u16, ca: &Path) -> Postfix {
        let d = dir.display();
        for sub in ["etc", "queue", "data"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        // The postfix user must reach its data directory through the temp dir.
        run(Command::new("chmod").arg("755").arg(dir));
        run(Command::new("chown").arg("postfix").arg(dir.join("data")));
        let port = free_port();
        let main_cf = format!(
            "compatibility_level = 3.6
queue_directory = {d}/queue
data_directory = {d}/data
maillog_file = {d}/maillog
maillog_file_prefixes = {d}
myhostname = relay.example.test
mydomain = example.test
myorigin = example.test
mydestination =
alias_maps =
alias_database =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_peername_lookup = no
smtp_dns_support_level = disabled
# Leave the submitted headers alone (no canonicalisation of addresses).
local_header_rewrite_clients =
# The site's own users (corp.test) are delivered elsewhere - dropped here;
# the archive copy goes to the relay host.
transport_maps = inline:{{ corp.test=discard: }}
always_bcc = archive@acme.test
relayhost = [127.0.0.1]:{relay}
smtp_tls_security_level = encrypt
smtp_tls_CAfile = {ca}
smtp_tls_loglevel = 1
",
            ca = ca.display()
        );
        std::fs::write(dir.join("etc/main.cf"), main_cf).unwrap();
        let master_cf = format!(
            "127.0.0.1:{port} inet n - n - - smtpd
pickup    unix  n - n 60 1 pickup
cleanup   unix  n - n - 0 cleanup
qmgr      unix  n - n 300 1 qmgr
tlsmgr    unix  - - n 1000? 1 tlsmgr
rewrite   unix  - - n - - trivial-rewrite
bounce    unix  - - n - 0 bounce
defer     unix  - - n - 0 bounce
trace     unix  - - n - 0 bounce
verify    unix  - - n - 1 verify
flush     unix  n - n 1000? 0 flush
proxymap  unix  - - n - - proxymap
smtp      unix  - - n - - smtp
relay     unix  - - n - - smtp
showq     unix  n - n - - showq
error     unix  - - n - - error
retry     unix  - - n - - error
discard   unix  - - n - - discard
local     unix  - n n - - local
anvil     unix  - - n - 1 anvil
scache    unix  - - n - 1 scache
postlog   unix-dgram n - n - 1 postlogd
"
        );
        std::fs::write(dir.join("etc/master.cf"), master_cf).unwrap();
        let pf = Postfix {
            dir: dir.to_path_buf(),
            port,
        };
        // Creates the queue directories with their owners, then starts.
        let ok = Command::new(POSTFIX)
            .arg("-c")
            .arg(pf.config())
            .arg("start")
            .status()
            .unwrap()
            .success();
        assert!(ok, "postfix start failed:\n{}", pf.maillog());
        pf
    }
}

impl Drop for Postfix {
    fn drop(&mut self) {
        let _ = Command::new(POSTFIX)
            .arg("-c")
            .arg(self.config())
            .arg("stop")
            .status();
        if std::thread::panicking() {
            eprintln!("--- postfix maillog ---\n{}", self.maillog());
        }
    }
}

fn run(cmd: &mut Command) {
    let st = cmd.status().unwrap();
    assert!(st.success(), "{cmd:?}: {st}");
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

/// Three messages a mail server would see: plain, with a dot-leading line
/// and a folded header, and 8-bit UTF-8 (relayed with `BODY=8BITMIME`, so
/// Postfix must not convert it). Each has its own Message-ID and Date so
/// Postfix adds neither.
fn messages() -> Vec<Vec<u8>> {
    let pid = std::process::id();
    let head = |i: usize, extra: &str| {
        format!(
            "From: Alice <{SENDER}>\r\nTo: Bob <bob@corp.test>\r\nSubject: relayed {i}\r\n\
             Date: Tue, 4 Mar 2025 10:0{i}:00 +0100\r\nMessage-ID: <pf{i}.{pid}@sender.test>\r\n{extra}"
        )
    };
    vec![
        format!("{}\r\nHello Bob,\r\nfirst message.\r\n", head(1, "")),
        format!(
            "{}X-Folded: one\r\n\ttwo\r\n\r\n.a line starting with a dot\r\n..two dots\r\n\r\n-- \r\nAlice\r\n",
            head(2, "")
        ),
        format!(
            "{}\r\nGrüße aus Köln — 8 bit: ÄÖÜ ß €\r\n{}\r\n",
            head(
                3,
                "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\
                 Content-Transfer-Encoding: 8bit\r\n"
            ),
            "x".repeat(900)
        ),
    ]
    .into_iter()
    .map(String::into_bytes)
    .collect()
}

/// Checks that `prefix` is nothing but whole trace header fields, at least
/// one of them Postfix's `Received:`.
fn check_trace_prefix(prefix: &[u8]) {
    let text = std::str::from_utf8(prefix).expect("trace headers are ASCII");
    assert!(text.is_empty() || text.ends_with("\r\n"), "{text:?}");
    let mut fields: Vec<String> = Vec::new();
    for line in text.split_terminator("\r\n") {
        if line.starts_with([' ', '\t']) {
            let last = fields.last_mut().expect("continuation line first");
            last.push_str(line);
        } else {
            fields.push(line.to_string());
        }
    }
    let mut received = false;
    for f in &fields {
        let (name, value) = f.split_once(':').expect("a header field");
        let name = name.to_ascii_lowercase();
        assert!(TRACE.contains(&name.as_str()), "not a trace header: {f}");
        if name == "received" && value.contains("by relay.example.test") {
            received = true;
        }
    }
    assert!(received, "no Received: from the relay in {text:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postfix_always_bcc_relays_byte_identical_copies_to_the_archive() {
    if !Path::new(POSTFIX).exists() {
        println!("SKIPPED: postfix not installed (scripts/test installs it)");
        return;
    }
    if !is_root() {
        println!("SKIPPED: postfix needs root to run its daemons as the postfix user");
        return;
    }
    let mut node = Node::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let pf = Postfix::start(tmp.path(), node.starttls.port(), &node.ca_file);
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], pf.port));
    let deadline = Instant::now() + Duration::from_secs(15);
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        assert!(Instant::now() < deadline, "postfix does not listen");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let sent = messages();
    let mut c = Client::plain(addr).await;
    let r = c.cmd("EHLO submitter.test").await;
    assert!(r.starts_with("250"), "{r}");
    for m in &sent {
        let r = c.mail(SENDER, &["bob@corp.test"], m).await;
        assert!(r.starts_with("250"), "postfix refused: {r}");
    }
    assert!(c.cmd("QUIT").await.starts_with("221"));

    // Bounded wait for Postfix to relay all three to the node.
    let deadline = Instant::now() + Duration::from_secs(60);
    let got: Vec<MessageInfo> = loop {
        let got = all(&node.archive, "acme");
        if got.len() >= sent.len() {
            break got;
        }
        assert!(
            Instant::now() < deadline,
            "only {} of {} messages archived after 60 s",
            got.len(),
            sent.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(got.len(), sent.len(), "each message archived once");
    assert!(
        all(&node.archive, "beta").is_empty(),
        "nothing for other tenants"
    );
    let archived: Vec<Vec<u8>> = got.iter().map(|m| raw(&node.archive, "acme", m)).collect();
    for m in &sent {
        let id = &m[m.windows(12).position(|w| w == b"Message-ID: ").unwrap()..];
        let id = &id[..id.iter().position(|&b| b == b'\r').unwrap()];
        let (info, bytes) = got
            .iter()
            .zip(&archived)
            .find(|(_, a)| a.windows(id.len()).any(|w| w == id))
            .unwrap_or_else(|| panic!("{} not archived", String::from_utf8_lossy(id)));
        assert!(
            bytes.ends_with(m),
            "archived copy differs from the submitted message:\n{}",
            String::from_utf8_lossy(bytes)
        );
        check_trace_prefix(&bytes[..bytes.len() - m.len()]);
        // The envelope is the Bcc copy's: only the archive address.
        let d = &info.deliveries[0];
        assert_eq!(d.rcpt_to, ["archive@acme.test"]);
        assert_eq!(d.mail_from.as_deref(), Some(SENDER));
    }
    let log = pf.maillog();
    assert!(
        log.contains(&format!(
            "Trusted TLS connection established to 127.0.0.1[127.0.0.1]:{}",
            node.starttls.port()
        )),
        "relay did not use TLS verified against the node's certificate:\n{log}"
    );
    drop(pf);
    node.shutdown().await;
    println!("relayed through Postfix in {:.1?}", started.elapsed());
}
