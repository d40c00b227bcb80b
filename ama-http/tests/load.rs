//! Load benchmark (not a test; `#[ignore]`d): search requests per second
//! and latency percentiles with 50 concurrent HTTPS clients on the
//! enron-inbox corpus, the clients sharing the machine with the server.
//!
//! ```sh
//! cargo test --release -p ama-http --test load -- --ignored --nocapture
//! ```
//!
//! The archive is built once in `target/bench-http-enron` (about a minute
//! in a release build) and reused. Each client has its own TLS connection
//! and sends a fixed mix of queries (first page of 25, newest first) for the
//! measured time. The per-principal rate limit is lifted for the run (all
//! clients act as one auditor); everything else is the default, including
//! the durable audit entry every search writes. A second round measures
//! with `durable_read_audit` off to show what that fsync costs.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ama_core::import::{ImportOptions, import_paths};
use ama_core::{
    Archive, ArchiveOptions, IdentityOptions, KdfParams, Principal, Role, TenantId, TenantSpec,
    Unlock, UserSpec,
};
use ama_http::{HttpConfig, Rate, Transport};

const CLIENTS: usize = 50;
const MEASURE: Duration = Duration::from_secs(20);
const WARMUP: Duration = Duration::from_secs(3);
const QUERIES: &[&str] = &[
    "energy",
    "from:jeff.dasovich@enron.com",
    "\"natural gas\"",
    "after:2001-10-01 before:2001-11-01",
    "subject:meeting -has:attachment",
    "california power",
    "",
];

fn corpus() -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus/enron-inbox");
    p.is_dir().then_some(p)
}

fn options(durable_read_audit: bool) -> ArchiveOptions {
    ArchiveOptions {
        kdf: KdfParams::insecure_fast(),
        identity: IdentityOptions {
            password_kdf: KdfParams::insecure_fast(),
            ..Default::default()
        },
        durable_read_audit,
        ..Default::default()
    }
}

/// Opens (building on first use) the enron archive with a user `bench`.
fn archive(corpus: &Path, durable_read_audit: bool) -> Archive {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench-http-enron");
    let unlock = Unlock::passphrase("http load bench");
    if dir.join("keys/keystore.json").exists() {
        return Archive::open(&dir, &unlock, options(durable_read_audit)).unwrap();
    }
    let _ = std::fs::remove_dir_all(&dir);
    let a = Archive::create(&dir, &unlock, options(durable_read_audit)).unwrap();
    let t = TenantId::new("enron").unwrap();
    a.create_tenant(TenantSpec::new(t.clone())).unwrap();
    let started = Instant::now();
    let s = import_paths(
        &a,
        &t,
        &[corpus.to_path_buf()],
        &ImportOptions::default(),
        |_| std::ops::ControlFlow::Continue(()),
    )
    .unwrap();
    eprintln!(
        "built the archive: {} messages in {:.1} s",
        s.imported,
        started.elapsed().as_secs_f64()
    );
    a.add_user(
        &Principal::operator(t),
        UserSpec {
            id: "bench".into(),
            display_name: None,
            addresses: vec![],
            roles: vec![Role::Auditor],
            password: Some(common::PW.into()),
        },
    )
    .unwrap();
    a
}

struct Round {
    requests: usize,
    errors: usize,
    seconds: f64,
    latencies: Vec<Duration>,
}

async fn round(durable_read_audit: bool, corpus: &Path) -> Round {
    let c = corpus.to_path_buf();
    let archive = Arc::new(
        tokio::task::spawn_blocking(move || archive(&c, durable_read_audit))
            .await
            .unwrap(),
    );
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let cert_pem = ck.cert.pem();
    let tls = common::server_tls(&cert_pem, &ck.signing_key.serialize_pem());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!(
        "https://localhost:{}",
        listener.local_addr().unwrap().port()
    );
    let config = HttpConfig {
        rate: Rate::new(1e9, 1e9),
        ..Default::default()
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(ama_http::serve(
        listener,
        Transport::Tls(tls),
        archive.clone(),
        config,
        async {
            let _ = stopped.await;
        },
    ));
    let login = common::client(&cert_pem, true)
        .post(format!("{base}/v1/login"))
        .json(&serde_json::json!({"tenant": "enron", "user": "bench", "password": common::PW}))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 200);
    let token: String = login.json::<serde_json::Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .into();
    let start = Instant::now() + WARMUP;
    let end = start + MEASURE;
    let mut tasks = Vec::new();
    for i in 0..CLIENTS {
        let client = common::client(&cert_pem, true);
        let base = base.clone();
        let token = token.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0;
            let mut n = i;
            loop {
                let q = QUERIES[n % QUERIES.len()];
                n += 1;
                let t0 = Instant::now();
                if t0 >= end {
                    break;
                }
                let r = client
                    .get(format!("{base}/v1/tenants/enron/search"))
                    .query(&[("q", q), ("per_page", "25")])
                    .bearer_auth(&token)
                    .send()
                    .await;
                let ok = match r {
                    Ok(r) => r.status() == 200 && r.bytes().await.is_ok(),
                    Err(_) => false,
                };
                let t1 = Instant::now();
                if t0 >= start && t1 <= end {
                    if ok {
                        lat.push(t1 - t0);
                    } else {
                        errors += 1;
                    }
                }
            }
            (lat, errors)
        }));
    }
    let mut latencies = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await.unwrap();
        latencies.extend(l);
        errors += e;
    }
    let _ = stop.send(());
    server.await.unwrap().unwrap();
    latencies.sort();
    Round {
        requests: latencies.len(),
        errors,
        seconds: MEASURE.as_secs_f64(),
        latencies,
    }
}

fn pct(l: &[Duration], p: f64) -> f64 {
    if l.is_empty() {
        return f64::NAN;
    }
    let i = ((l.len() as f64 * p).ceil() as usize).clamp(1, l.len()) - 1;
    l[i].as_secs_f64() * 1000.0
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "benchmark: run with --release -- --ignored --nocapture"]
async fn search_load_50_clients() {
    let Some(corpus) = corpus() else {
        eprintln!("SKIPPED: ../shared/corpus/enron-inbox is absent");
        return;
    };
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    eprintln!("load average before: {}", load.trim());
    for durable in [true, false] {
        let r = round(durable, &corpus).await;
        println!(
            "durable_read_audit={durable}: {CLIENTS} clients, {:.0} s: {} searches, {:.0}/s, \
             errors {}, latency p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            r.seconds,
            r.requests,
            r.requests as f64 / r.seconds,
            r.errors,
            pct(&r.latencies, 0.50),
            pct(&r.latencies, 0.90),
            pct(&r.latencies, 0.99),
            pct(&r.latencies, 1.0),
        );
        assert_eq!(r.errors, 0);
    }
}
