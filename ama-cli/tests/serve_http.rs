//! `ama serve` with the HTTP API: the `--demo` first start (archive, tenant,
//! sample mail, a user with a printed password), logging in and searching
//! over HTTP while SMTP runs in the same process, a graceful stop on
//! SIGTERM, a second start (a new password; the old one no longer works),
//! and the refusal of plain HTTP off loopback. Plain HTTP on 127.0.0.1 with
//! a hand-written HTTP/1.1 client keeps this test free of TLS libraries; the
//! TLS side is tested in ama-http.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

fn ama(data: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ama"));
    c.env("AMA_DATA", data)
        .env_remove("AMA_PASSPHRASE")
        .env("AMA_INSECURE_FAST_KDF", "1");
    c
}

/// A running `ama serve --demo`: its HTTP address, the printed password and
/// the rest of its stderr.
struct Node {
    child: Child,
    addr: SocketAddr,
    password: String,
    lines: mpsc::Receiver<String>,
}

fn start_demo(data: &Path) -> Node {
    let mail = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/mail");
    let mut child = ama(data)
        .args(["serve", "--demo", "--demo-mail"])
        .arg(&mail)
        .args([
            "--http",
            "127.0.0.1:0",
            "--insecure-http",
            "--smtp",
            "127.0.0.1:0",
        ])
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            eprintln!("[ama] {line}");
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut addr = None;
    let mut password = None;
    while addr.is_none() || password.is_none() {
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("ama serve --demo did not print its address and login");
        if let Some(rest) = line.strip_prefix("ama: HTTP API and search page on ") {
            addr = Some(rest.split_whitespace().next().unwrap().parse().unwrap());
        }
        if let Some(rest) = line.trim_start().strip_prefix("password: ") {
            password = Some(rest.split_whitespace().next().unwrap().to_string());
        }
    }
    Node {
        child,
        addr: addr.unwrap(),
        password: password.unwrap(),
        lines: rx,
    }
}

impl Node {
    fn stop(mut self) {
        let pid = self.child.id().to_string();
        assert!(
            Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .unwrap()
                .success()
        );
        let status = self.child.wait().unwrap();
        assert!(status.success(), "ama serve exited with {status}");
        let rest: Vec<String> = self.lines.try_iter().collect();
        assert!(rest.iter().any(|l| l == "ama: stopped"), "{rest:?}");
    }
}

/// One HTTP/1.1 request; the status and the body.
fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{auth}\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out[9..12].parse().unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap();
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    (status, body)
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    loop {
        let (size, rest) = s.split_once("\r\n").unwrap();
        let n = usize::from_str_radix(size.trim(), 16).unwrap();
        if n == 0 {
            return out;
        }
        out.push_str(&rest[..n]);
        s = &rest[n + 2..];
    }
}

fn login(addr: SocketAddr, password: &str) -> (u16, serde_json::Value) {
    let body =
        serde_json::json!({"tenant": "demo", "user": "demo", "password": password}).to_string();
    let (status, text) = http(addr, "POST", "/v1/login", None, &body);
    (status, serde_json::from_str(&text).unwrap())
}

#[test]
fn demo_serves_the_api_and_the_page_beside_smtp() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("demo-data");
    let node = start_demo(&data);
    let addr = node.addr;

    let (status, text) = http(addr, "GET", "/healthz", None, "");
    assert_eq!((status, text.as_str()), (200, "ok\n"));
    let (status, page) = http(addr, "GET", "/", None, "");
    assert_eq!(status, 200);
    assert!(page.contains("/assets/app.js"));

    let (status, v) = login(addr, &node.password);
    assert_eq!(status, 200, "{v}");
    let token = v["token"].as_str().unwrap().to_string();
    let (status, text) = http(addr, "GET", "/v1/tenants/demo/search?q=", Some(&token), "");
    assert_eq!(status, 200, "{text}");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert!(
        v["total"].as_u64().unwrap() >= 5,
        "the sample mail is imported: {v}"
    );
    let (status, text) = http(
        addr,
        "GET",
        "/v1/tenants/demo/search?q=from:alice@example.com",
        Some(&token),
        "",
    );
    assert_eq!(status, 200);
    assert!(
        serde_json::from_str::<serde_json::Value>(&text).unwrap()["total"]
            .as_u64()
            .unwrap()
            >= 1
    );
    // Metrics: the server's own and the SMTP spool's depth, nothing personal.
    let (status, metrics) = http(addr, "GET", "/metrics", None, "");
    assert_eq!(status, 200);
    assert!(
        metrics.contains("ama_search_duration_seconds_count 2"),
        "{metrics}"
    );
    assert!(metrics.contains("ama_smtp_spool_messages 0"), "{metrics}");
    assert!(
        metrics.contains("ama_smtp_spool_failed_messages 0"),
        "{metrics}"
    );
    assert!(!metrics.contains("alice"));
    let old_password = node.password.clone();
    node.stop();

    // Second start: the archive is there; a new password, the old one is dead.
    let node = start_demo(&data);
    assert_ne!(node.password, old_password);
    assert_eq!(login(node.addr, &old_password).0, 401);
    let (status, v) = login(node.addr, &node.password);
    assert_eq!(status, 200);
    let token = v["token"].as_str().unwrap().to_string();
    let (_, text) = http(
        node.addr,
        "GET",
        "/v1/tenants/demo/search",
        Some(&token),
        "",
    );
    let total = serde_json::from_str::<serde_json::Value>(&text).unwrap()["total"].clone();
    assert!(
        total.as_u64().unwrap() >= 5,
        "nothing imported twice or lost: {total}"
    );
    node.stop();
}

#[test]
fn plain_http_is_refused_off_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let out = ama(dir.path())
        .args(["serve", "--http", "0.0.0.0:0", "--insecure-http"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("loopback"), "{err}");
    assert!(!dir.path().join("keys").exists(), "nothing was created");
}
