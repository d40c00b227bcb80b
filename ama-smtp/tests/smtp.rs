//! The node over real sockets and real TLS: our line client for protocol
//! edges and malformed input, Python's smtplib and swaks as independent
//! clients. Every accepted message is checked in the archive byte-exact.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

mod common;

use std::collections::HashMap;
use std::process::Command;
use std::time::Duration;

use ama_smtp::ApiKey;
use common::{Client, Node, all, client_config, message, raw, tenant, wait_for};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_mail_from_is_refused_with_530_and_nothing_stored() {
    let mut node = Node::start().await;
    let mut c = Client::plain(node.starttls).await;
    let ehlo = c.cmd("EHLO client.test").await;
    assert!(
        ehlo.contains("STARTTLS") && !ehlo.contains("AUTH"),
        "{ehlo}"
    );
    let r = c.cmd("MAIL FROM:<a@example.org>").await;
    assert_eq!(r, "530 5.7.0 Must issue a STARTTLS command first\r\n");
    // Pushing on regardless stores nothing.
    c.send(b"RCPT TO:<bob@acme.test>\r\nDATA\r\nSubject: x\r\n\r\nplain\r\n.\r\nQUIT\r\n")
        .await;
    let mut replies = String::new();
    for _ in 0..4 {
        replies.push_str(&c.reply().await);
    }
    assert!(!replies.contains("250 2.0.0"), "{replies}");
    node.shutdown().await;
    assert!(all(&node.archive, "acme").is_empty());
    assert_eq!(
        std::fs::read_dir(node.archive.data_dir().join("spool"))
            .unwrap()
            .count(),
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starttls_pipelining_and_tenants_by_recipient_domain() {
    let mut node = Node::start().await;
    let mut c = Client::starttls(node.starttls, &node.ca).await;
    // One write, the whole transaction pipelined (RFC 2920).
    let data = message(1, "bob@acme.test, eve@beta.test");
    let mut batch =
        b"MAIL FROM:<sender@example.org>\r\nRCPT TO:<bob@acme.test>\r\nRCPT TO:<eve@beta.test>\r\nRCPT TO:<x@unknown.test>\r\nDATA\r\n".to_vec();
    c.send(&batch).await;
    let mut replies = Vec::new();
    for _ in 0..5 {
        replies.push(c.reply().await);
    }
    assert!(replies[3].starts_with("550 5.1.1"), "{replies:?}");
    assert!(replies[4].starts_with("354"), "{replies:?}");
    batch = common::dot_stuff(&data);
    batch.extend_from_slice(b".\r\nNOOP\r\n");
    c.send(&batch).await;
    let done = c.reply().await;
    assert!(done.starts_with("250 2.0.0 OK: queued as "), "{done}");
    assert_eq!(c.reply().await, "250 2.0.0 OK\r\n");
    assert!(c.cmd("QUIT").await.starts_with("221"));
    // Archived once in each tenant, byte-exact, with its tenant's recipients.
    for (t, rcpt) in [("acme", "bob@acme.test"), ("beta", "eve@beta.test")] {
        let got = wait_for(&node.archive, t, 1).await;
        assert_eq!(got.len(), 1, "{t}");
        assert_eq!(raw(&node.archive, t, &got[0]), data);
        assert_eq!(got[0].deliveries[0].rcpt_to, vec![rcpt.to_string()]);
        assert_eq!(
            got[0].deliveries[0].mail_from.as_deref(),
            Some("sender@example.org")
        );
    }
    node.shutdown().await;
}

fn python_script(node: &Node) -> String {
    format!(
        r#"
import smtplib, ssl, sys
ctx = ssl.create_default_context(cafile={ca:?})
ctx.minimum_version = ssl.TLSVersion.TLSv1_2
msgs = []
def msg(i, to):
    m = ("From: py@example.org\r\nTo: %s\r\nSubject: python %d\r\nMessage-ID: <py%d@example.org>\r\n\r\nline\r\n.dot line\r\n" % (to, i, i)).encode()
    msgs.append(m)
    return m
# STARTTLS port: plaintext MAIL FROM is refused first.
s = smtplib.SMTP("127.0.0.1", {p1})
s.ehlo("py.test")
code, _ = s.mail("py@example.org")
assert code == 530, code
s.rset()
s.starttls(context=ctx)
s.ehlo("py.test")
assert s.has_extn("pipelining") and s.has_extn("auth") and not s.has_extn("starttls")
r = s.sendmail("py@example.org", ["bob@acme.test"], msg(1, "bob@acme.test"))
assert r == {{}}, r
r = s.sendmail("py@example.org", ["bob@acme.test", "eve@beta.test"], msg(2, "both"))
s.quit()
# Implicit TLS port, AUTH with an API key: every recipient goes to beta.
s = smtplib.SMTP_SSL("localhost", {p2}, context=ctx)
s.ehlo("py.test")
try:
    s.login("beta", "wrong key")
    sys.exit("wrong key accepted")
except smtplib.SMTPAuthenticationError as e:
    assert e.smtp_code == 535
s.login("beta", "secret-api-key")
s.sendmail("py@example.org", ["someone@elsewhere.test"], msg(3, "someone@elsewhere.test"))
s.quit()
print("ok")
"#,
        ca = node.ca_file.display().to_string(),
        p1 = node.starttls.port(),
        p2 = node.implicit.port(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_smtplib_starttls_implicit_tls_and_auth() {
    let mut node = Node::start_with(|c| {
        c.api_keys = vec![ApiKey::new(tenant("beta"), "secret-api-key")];
    })
    .await;
    let script = python_script(&node);
    let out = tokio::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .output()
        .await
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "python: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let acme = wait_for(&node.archive, "acme", 2).await;
    let beta = wait_for(&node.archive, "beta", 2).await;
    assert_eq!(acme.len(), 2);
    assert_eq!(beta.len(), 2);
    let bodies: Vec<String> = beta
        .iter()
        .map(|m| String::from_utf8(raw(&node.archive, "beta", m)).unwrap())
        .collect();
    assert!(bodies.iter().any(|b| b.contains("Subject: python 3\r\n")));
    for b in &bodies {
        // smtplib dot-stuffs; the archive holds the unstuffed original.
        assert!(b.contains("\r\n.dot line\r\n"), "{b}");
    }
    let by_auth = beta
        .iter()
        .find(|m| m.deliveries[0].rcpt_to == ["someone@elsewhere.test"]);
    assert!(by_auth.is_some(), "{beta:?}");
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swaks_starttls_implicit_tls_and_auth() {
    if Command::new("swaks").arg("--version").output().is_err() {
        eprintln!(
            "SKIPPED: swaks is not installed (apt-get install -y swaks libio-socket-ssl-perl libnet-ssleay-perl)"
        );
        return;
    }
    let mut node = Node::start_with(|c| {
        c.api_keys = vec![ApiKey::new(tenant("acme"), "acme-key")];
    })
    .await;
    let body = "From: swaks@example.org\r\nTo: bob@acme.test\r\nSubject: by swaks\r\n\r\nhello\r\n";
    let runs: Vec<Vec<String>> = vec![
        vec![
            "--tls".into(),
            "--server".into(),
            format!("127.0.0.1:{}", node.starttls.port()),
        ],
        vec![
            "--tls-on-connect".into(),
            "--server".into(),
            format!("127.0.0.1:{}", node.implicit.port()),
            "-a".into(),
            "PLAIN".into(),
            "--auth-user".into(),
            "acme".into(),
            "--auth-password".into(),
            "acme-key".into(),
        ],
        vec![
            "--pipeline".into(),
            "--tls".into(),
            "--server".into(),
            format!("127.0.0.1:{}", node.starttls.port()),
        ],
    ];
    for (i, args) in runs.iter().enumerate() {
        let data = body.replace("by swaks", &format!("by swaks {i}"));
        let out = tokio::process::Command::new("swaks")
            .args([
                "--to",
                "bob@acme.test",
                "--from",
                "swaks@example.org",
                "--helo",
                "swaks.test",
            ])
            .args(["--tls-verify", "--tls-ca-path"])
            .arg(&node.ca_file)
            .args(["--data", &data])
            .args(args)
            .output()
            .await
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "swaks {args:?}: {text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(text.contains("250 2.0.0 OK: queued as"), "{text}");
    }
    // Plaintext without --tls: refused.
    let out = tokio::process::Command::new("swaks")
        .args([
            "--to",
            "bob@acme.test",
            "--from",
            "swaks@example.org",
            "--server",
        ])
        .arg(format!("127.0.0.1:{}", node.starttls.port()))
        .output()
        .await
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("530 5.7.0"));
    let got = wait_for(&node.archive, "acme", 3).await;
    assert_eq!(got.len(), 3);
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_input_gets_clear_replies_and_no_panic() {
    let mut node = Node::start_with(|c| {
        c.limits.max_message_size = 1 << 20;
        c.limits.max_line = 1000;
    })
    .await;
    let mut c = Client::starttls(node.starttls, &node.ca).await;
    // Over-long line, NUL, bare LF.
    c.send(format!("NOOP {}\r\n", "x".repeat(100_000)).as_bytes())
        .await;
    assert!(c.reply().await.starts_with("500 5.5.2 Line too long"));
    assert!(c.cmd("NO\0OP").await.starts_with("500 5.5.2"));
    c.send(b"NOOP\n").await;
    assert!(c.reply().await.starts_with("500 5.5.2 Bare LF"));
    assert_eq!(c.cmd("NOOP").await, "250 2.0.0 OK\r\n");

    // 10,000 recipients in one pipelined write: 1000 accepted, the rest 452.
    assert!(c.cmd("MAIL FROM:<a@example.org>").await.starts_with("250"));
    let mut rcpts = String::new();
    for i in 0..10_000 {
        rcpts.push_str(&format!("RCPT TO:<r{i}@acme.test>\r\n"));
    }
    c.send(rcpts.as_bytes()).await;
    let mut counts: HashMap<String, usize> = HashMap::new();
    for _ in 0..10_000 {
        *counts.entry(c.reply().await[..3].to_string()).or_default() += 1;
    }
    assert_eq!(counts.get("250"), Some(&1000), "{counts:?}");
    assert_eq!(counts.get("452"), Some(&9000), "{counts:?}");
    let data = message(7, "many");
    assert!(c.cmd("DATA").await.starts_with("354"));
    c.send(&common::dot_stuff(&data)).await;
    assert!(c.cmd(".").await.starts_with("250 2.0.0"));

    // 20 MiB of DATA against a 1 MiB limit: 552, and the session goes on.
    oversized_data_is_552(&mut c, "big@acme.test", 20).await;

    // Disconnect in the middle of DATA: nothing stored.
    assert!(c.cmd("MAIL FROM:<a@example.org>").await.starts_with("250"));
    assert!(c.cmd("RCPT TO:<cut@acme.test>").await.starts_with("250"));
    assert!(c.cmd("DATA").await.starts_with("354"));
    c.send(b"Subject: cut off\r\n\r\nno terminator").await;
    drop(c);

    // Garbage straight after the TLS handshake.
    let mut g = Client::implicit(node.implicit, client_config(&node.ca, None))
        .await
        .unwrap();
    let _ = g
        .try_send(&[0u8, 0xff, b'\n', b'\r', 0x80].repeat(5000))
        .await;
    drop(g);

    // Garbage instead of a TLS handshake.
    let mut raw_tcp = tokio::net::TcpStream::connect(node.implicit).await.unwrap();
    let _ = tokio::io::AsyncWriteExt::write_all(&mut raw_tcp, b"EHLO not tls\r\n").await;
    drop(raw_tcp);

    node.shutdown().await;
    let got = all(&node.archive, "acme");
    assert_eq!(got.len(), 1, "only the complete message is archived");
    assert_eq!(got[0].deliveries[0].rcpt_to.len(), 1000);
    assert_eq!(raw(&node.archive, "acme", &got[0]), data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bdat_chunking_is_archived_verbatim() {
    let mut node = Node::start().await;
    let mut c = Client::starttls(node.starttls, &node.ca).await;
    let data = message(9, "bob@acme.test");
    let (a, b) = data.split_at(40);
    assert!(c.cmd("MAIL FROM:<a@example.org>").await.starts_with("250"));
    assert!(c.cmd("RCPT TO:<bob@acme.test>").await.starts_with("250"));
    c.send(format!("BDAT {}\r\n", a.len()).as_bytes()).await;
    c.send(a).await;
    assert!(c.reply().await.starts_with("250 2.0.0 40 octets"));
    c.send(format!("BDAT {} LAST\r\n", b.len()).as_bytes())
        .await;
    c.send(b).await;
    assert!(c.reply().await.starts_with("250 2.0.0 OK: queued as"));
    let got = wait_for(&node.archive, "acme", 1).await;
    assert_eq!(raw(&node.archive, "acme", &got[0]), data);
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_limit_per_ip_and_idle_timeout() {
    let mut node = Node::start_with(|c| {
        c.max_connections_per_ip = 2;
        c.idle_timeout = Duration::from_millis(700);
    })
    .await;
    let mut a = Client::plain(node.starttls).await;
    let _b = Client::plain(node.starttls).await;
    let mut third = tokio::net::TcpStream::connect(node.starttls).await.unwrap();
    let mut buf = vec![0u8; 200];
    let n = tokio::io::AsyncReadExt::read(&mut third, &mut buf)
        .await
        .unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("421 4.7.0"));
    // A silent client is told and disconnected.
    let r = a.reply().await;
    assert!(r.starts_with("421 4.4.2"), "{r}");
    assert!(a.closed().await);
    // The slots are free again.
    tokio::time::sleep(Duration::from_millis(900)).await;
    let mut c = Client::plain(node.starttls).await;
    assert_eq!(c.cmd("NOOP").await, "250 2.0.0 OK\r\n");
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_finishes_the_message_in_flight() {
    let mut node = Node::start().await;
    let mut idle = Client::starttls(node.starttls, &node.ca).await;
    let mut c = Client::starttls(node.starttls, &node.ca).await;
    assert!(c.cmd("MAIL FROM:<a@example.org>").await.starts_with("250"));
    assert!(c.cmd("RCPT TO:<bob@acme.test>").await.starts_with("250"));
    assert!(c.cmd("DATA").await.starts_with("354"));
    let data = message(3, "bob@acme.test");
    let stuffed = common::dot_stuff(&data);
    c.send(&stuffed[..20]).await;
    let stop = node.stop_handle();
    stop.send(()).unwrap();
    // The idle session is told at once.
    assert!(idle.reply().await.starts_with("421 4.3.2"));
    // New connections are no longer accepted.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(tokio::net::TcpStream::connect(node.starttls).await.is_err());
    // The message in flight completes and is archived.
    c.send(&stuffed[20..]).await;
    let r = c.cmd(".").await;
    assert!(r.starts_with("250 2.0.0"), "{r}");
    assert!(c.reply().await.starts_with("421 4.3.2"));
    node.shutdown().await;
    let got = all(&node.archive, "acme");
    assert_eq!(got.len(), 1);
    assert_eq!(raw(&node.archive, "acme", &got[0]), data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exchange_journal_report_is_archived_as_the_original() {
    let mut node = Node::start_with(|c| {
        c.journal.tenants.insert(tenant("acme"));
    })
    .await;
    let original = "From: alice@acme.test\r\nTo: bob@acme.test\r\nSubject: Quarterly\r\n\
        Message-ID: <q3@acme.test>\r\n\r\nNumbers inside.\r\n";
    let report = format!(
        "From: MicrosoftExchange@acme.test\r\nTo: journal@acme.test\r\nSubject: Quarterly\r\n\
         X-MS-Journal-Report:\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"jb\"\r\n\r\n\
         --jb\r\nContent-Type: text/plain\r\n\r\nSender: alice@acme.test\r\nSubject: Quarterly\r\n\
         Message-Id: <q3@acme.test>\r\nTo: bob@acme.test\r\nTo: carol@acme.test, Expanded: sales@acme.test\r\n\
         Bcc: hidden@acme.test\r\n\r\n--jb\r\nContent-Type: message/rfc822\r\n\r\n{original}\r\n--jb--\r\n"
    );
    let mut c = Client::starttls(node.starttls, &node.ca).await;
    let r = c
        .mail(
            "MicrosoftExchange@acme.test",
            &["journal@acme.test"],
            report.as_bytes(),
        )
        .await;
    assert!(r.starts_with("250"), "{r}");
    let got = wait_for(&node.archive, "acme", 1).await;
    assert_eq!(got.len(), 1);
    assert_eq!(raw(&node.archive, "acme", &got[0]), original.as_bytes());
    let d = &got[0].deliveries[0];
    assert_eq!(
        d.rcpt_to,
        ["bob@acme.test", "carol@acme.test", "hidden@acme.test"]
    );
    assert_eq!(d.mail_from.as_deref(), Some("alice@acme.test"));
    node.shutdown().await;
}

/// Sends a transaction whose DATA is `mib` MiB of 1 KiB lines, expects
/// `552 5.3.4` (over the size limit) and a session that still works.
async fn oversized_data_is_552(c: &mut Client, rcpt: &str, mib: usize) {
    assert!(c.cmd("MAIL FROM:<a@example.org>").await.starts_with("250"));
    assert!(c.cmd(&format!("RCPT TO:<{rcpt}>")).await.starts_with("250"));
    assert!(c.cmd("DATA").await.starts_with("354"));
    let line = format!("{}\r\n", "y".repeat(1022));
    let chunk = line.repeat(1024); // 1 MiB
    for _ in 0..mib {
        c.send(chunk.as_bytes()).await;
    }
    let r = c.cmd(".").await;
    assert!(r.starts_with("552 5.3.4"), "{r}");
    assert_eq!(c.cmd("NOOP").await, "250 2.0.0 OK\r\n");
}

/// Peak resident memory of this process so far, in KiB (Linux).
fn peak_rss_kib() -> Option<u64> {
    std::fs::read_to_string("/proc/self/status")
        .ok()?
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// A 1 GiB DATA against a 64 MiB limit: `552`, the session goes on, and the
/// node never holds the message (peak memory stays far below 1 GiB).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_gib_of_data_is_refused_in_bounded_memory() {
    let mut node = Node::start_with(|c| {
        c.limits.max_message_size = 64 << 20;
    })
    .await;
    let mut c = Client::starttls(node.starttls, &node.ca).await;
    assert!(c.cmd("EHLO test").await.contains("250"));
    oversized_data_is_552(&mut c, "huge@acme.test", 1024).await;
    let peak = peak_rss_kib();
    eprintln!("peak RSS after a 1 GiB DATA: {peak:?} KiB");
    if let Some(kib) = peak {
        assert!(
            kib < 512 * 1024,
            "peak RSS {kib} KiB: the DATA was buffered"
        );
    }
    assert!(all(&node.archive, "acme").is_empty());
    node.shutdown().await;
}
