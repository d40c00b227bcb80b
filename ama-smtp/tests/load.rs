//! Load measurement (ignored by default; run with
//! `cargo test --release -p ama-smtp --test load -- --ignored --nocapture`):
//! 50 concurrent TLS connections send messages of the enron-inbox corpus
//! (../shared/corpus/enron-inbox; synthetic messages when it is absent) to
//! a node on loopback with fsync on; prints messages/s and the p50/p99 time
//! from the end of DATA to the `250`. AMA_LOAD_MESSAGES sets how many
//! (default 5000).

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

mod common;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use common::{Client, Node};

const CONNECTIONS: usize = 50;

fn corpus(n: usize) -> Vec<Vec<u8>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus/enron-inbox");
    let mut out = Vec::new();
    let mut stack = vec![root];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        let mut entries: Vec<_> = rd.map(|e| e.unwrap().path()).collect();
        entries.sort();
        for p in entries {
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|e| e == "eml") && out.len() < n {
                let bytes = std::fs::read(&p).unwrap();
                // SMTP needs CRLF lines; the corpus may be LF.
                let text = String::from_utf8_lossy(&bytes)
                    .replace("\r\n", "\n")
                    .replace('\n', "\r\n");
                out.push(text.into_bytes());
            }
        }
    }
    if out.is_empty() {
        eprintln!("corpus absent: synthetic messages");
        out = (0..n)
            .map(|i| common::message(i, "bob@acme.test"))
            .collect();
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "load measurement, run by hand"]
async fn load_50_tls_connections() {
    let n: usize = std::env::var("AMA_LOAD_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5000);
    let msgs = Arc::new(corpus(n));
    let mut node = Node::start_with(|c| c.max_connections_per_ip = 200).await;
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for k in 0..CONNECTIONS {
        let (msgs, lat, ca, addr) = (
            msgs.clone(),
            latencies.clone(),
            node.ca.clone(),
            node.starttls,
        );
        tasks.push(tokio::spawn(async move {
            let mut c = Client::starttls(addr, &ca).await;
            for i in (k..msgs.len()).step_by(CONNECTIONS) {
                c.send(b"MAIL FROM:<load@example.org>\r\nRCPT TO:<bob@acme.test>\r\nDATA\r\n")
                    .await;
                for _ in 0..3 {
                    c.reply().await;
                }
                let mut data = common::dot_stuff(&msgs[i]);
                if !data.ends_with(b"\r\n") {
                    data.extend_from_slice(b"\r\n");
                }
                data.extend_from_slice(b".\r\n");
                let t = Instant::now();
                c.send(&data).await;
                let r = c.reply().await;
                assert!(r.starts_with("250"), "{r}");
                lat.lock().unwrap().push(t.elapsed());
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let elapsed = start.elapsed();
    let mut lat = latencies.lock().unwrap().clone();
    lat.sort();
    let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
    let bytes: usize = msgs.iter().map(Vec::len).sum();
    println!(
        "{} messages ({:.1} MiB) over {CONNECTIONS} TLS connections in {:.2?}: {:.0} messages/s accepted; DATA-to-250 p50 {:.1?} p99 {:.1?}",
        lat.len(),
        bytes as f64 / 1048576.0,
        elapsed,
        lat.len() as f64 / elapsed.as_secs_f64(),
        pct(0.50),
        pct(0.99)
    );
    let t = Instant::now();
    node.shutdown().await;
    println!(
        "spool drained into the archive {:.2?} after the last 250",
        t.elapsed()
    );
}
