//! Crash safety with a real crash: a child process ingests messages and
//! reports each receipt after `ingest` returns; the parent kills it with
//! SIGKILL at a random moment, three times, reopening the archive each time.
//! Afterwards every acknowledged message must be readable byte-exact and
//! searchable, and every message the catalog holds must be complete (its
//! blob readable, its index entry present): nothing half-visible.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use ama_core::{Archive, Envelope, MessageId, Principal, SearchOptions, Source, TenantId, Unlock};

fn message(i: u64) -> Vec<u8> {
    format!(
        "From: sender{i}@crash.test\r\nTo: r@crash.test\r\nSubject: crash number{i}\r\n\
         Message-ID: <{i}@crash.test>\r\n\r\n{}\r\n",
        "payload ".repeat((i % 50) as usize)
    )
    .into_bytes()
}

/// The child: ingest until killed, printing `ok <i> <id>` after each durable return.
#[test]
#[ignore = "run by crash_recovery as a child process"]
fn crash_child() {
    let Ok(dir) = std::env::var("AMA_CRASH_DIR") else {
        return;
    };
    let start: u64 = std::env::var("AMA_CRASH_START").unwrap().parse().unwrap();
    let dir = std::path::Path::new(&dir);
    let a = if dir.join("keys").exists() {
        common::reopen(dir)
    } else {
        let a = common::create(dir);
        common::tenant(&a, "crash");
        a
    };
    let t = TenantId::new("crash").unwrap();
    let mut out = std::io::stdout().lock();
    let mut i = start;
    loop {
        if i.is_multiple_of(3) {
            let r = a
                .ingest(&t, &message(i), &Envelope::new(Source::Smtp))
                .unwrap();
            writeln!(out, "ok {i} {}", r.id).unwrap();
            i += 1;
        } else {
            let batch: Vec<(Vec<u8>, Envelope)> = (i..i + 7)
                .map(|j| (message(j), Envelope::new(Source::Smtp)))
                .collect();
            let rs = a.ingest_batch(&t, &batch).unwrap();
            for (j, r) in (i..).zip(rs) {
                writeln!(out, "ok {j} {}", r.unwrap().id).unwrap();
            }
            i += 7;
        }
        out.flush().unwrap();
    }
}

#[test]
fn crash_recovery() {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut acked: Vec<(u64, MessageId)> = Vec::new();
    let mut next = 0u64;
    for round in 0..3 {
        let mut child = Command::new(&exe)
            .args([
                "--ignored",
                "--exact",
                "crash_child",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("AMA_CRASH_DIR", dir.path())
            .env("AMA_CRASH_START", next.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut got = Vec::new();
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let mut parts = line.split_whitespace();
                if parts.next() == Some("ok") {
                    let i: u64 = parts.next().unwrap().parse().unwrap();
                    let id: MessageId = parts.next().unwrap().parse().unwrap();
                    got.push((i, id));
                }
            }
            got
        });
        let mut r = [0u8; 2];
        getrandom::fill(&mut r).unwrap();
        let ms = 700 + u64::from(u16::from_le_bytes(r)) % 1500;
        std::thread::sleep(Duration::from_millis(ms));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let got = reader.join().unwrap();
        eprintln!(
            "round {round}: killed after {ms} ms, {} acknowledged",
            got.len()
        );
        next = got.last().map(|(i, _)| i + 1000).unwrap_or(next + 1000);
        acked.extend(got);
    }
    assert!(!acked.is_empty(), "the child never acknowledged a message");

    let a = common::reopen(dir.path());
    let t = TenantId::new("crash").unwrap();
    let au = Principal::auditor(t.clone());
    for (i, id) in &acked {
        assert_eq!(a.get_raw(&au, *id).unwrap(), message(*i), "message {i}");
        let r = a
            .search(
                &au,
                &format!("subject:number{i}"),
                &SearchOptions::default(),
            )
            .unwrap();
        assert_eq!(
            r.hits.iter().map(|h| h.id).collect::<Vec<_>>(),
            vec![*id],
            "search {i}"
        );
    }
    // Nothing half-visible: every catalog message is indexed and readable.
    let stats = a.stats(&t).unwrap();
    let all = a
        .search(
            &au,
            "",
            &SearchOptions {
                limit: 10_000,
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(all.total as u64, stats.messages);
    assert_eq!(a.indexed_count(&t).unwrap(), stats.messages);
    for h in &all.hits {
        a.get_raw(&au, h.id).unwrap();
    }
    assert!(stats.messages >= acked.len() as u64);
}

/// A second process (here: a second open) of an archive that is in use is
/// refused by the catalog's lock, and must not touch the first one's blob
/// writes in flight on its way (it used to clear `blobs/~tmp/` before it
/// reached the lock). The next open that owns the archive clears them.
#[test]
fn a_refused_second_open_leaves_writes_in_flight_alone() {
    let dir = tempfile::tempdir().unwrap();
    let a = common::create(dir.path());
    let in_flight = dir.path().join("blobs").join("~tmp").join("4242-0");
    std::fs::create_dir_all(in_flight.parent().unwrap()).unwrap();
    std::fs::write(&in_flight, b"being written").unwrap();
    assert!(
        Archive::open(
            dir.path(),
            &Unlock::passphrase(common::PASS),
            common::options()
        )
        .is_err()
    );
    assert!(
        in_flight.exists(),
        "a refused open removed a write in flight"
    );
    drop(a);
    let _b = common::reopen(dir.path());
    assert!(
        !in_flight.exists(),
        "the owning open clears what a crash left"
    );
}
