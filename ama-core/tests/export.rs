//! Export: mbox and zip exports give back the exact ingested bytes (read
//! back with independent readers: the zip crate, Python's `mailbox` module,
//! our own mbox importer), select exactly what was asked, obey the access
//! rules, and fail with a typed error when the destination fails.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

mod common;

use std::collections::{HashMap, HashSet};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use ama_core::export::{ExportSink, ExportedMessage};
use ama_core::import::{ImportEvent, ImportOptions, import_paths};
use ama_core::{
    Archive, AuditAction, AuditEntry, AuditFilter, Envelope, Error, ExportAction, ExportError,
    ExportFormat, ExportSummary, MessageId, Outcome, Principal, SearchOptions, Selection, Source,
    TenantId,
};
use sha2::{Digest, Sha256};

fn sha(b: &[u8]) -> [u8; 32] {
    Sha256::digest(b).into()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A small tenant: mail between alice, bob and carol, with the awkward
/// cases for mbox: `From ` lines at several quoting depths, CRLF line ends,
/// a message starting with an mbox `From ` line, one without a final line
/// end, a blank-line ending.
struct Small {
    _dir: tempfile::TempDir,
    a: Archive,
    t: TenantId,
    ids: HashMap<&'static str, MessageId>,
    raw: HashMap<&'static str, Vec<u8>>,
}

const MAILS: &[(&str, &[u8])] = &[
    (
        "alice-to-bob",
        b"From: Alice <alice@acme.test>\nTo: bob@acme.test\nSubject: =cmd|' /C calc'!A0\nDate: Tue, 1 Oct 2024 10:30:00 +0000\n\nFrom the top.\n>From quoted once\n>>From quoted twice\n> From not quoted\nFromage\n",
    ),
    (
        "bob-to-alice",
        b"From: bob@acme.test\r\nTo: alice@acme.test\r\nSubject: re: numbers\r\nDate: Wed, 2 Oct 2024 09:00:00 +0200\r\n\r\nFrom here on, CRLF.\r\n\r\n",
    ),
    (
        "mbox-line-first",
        b"From alice@acme.test Thu Oct  3 10:00:00 2024\nFrom: alice@acme.test\nTo: carol@acme.test\nSubject: starts with a From line\nDate: Thu, 3 Oct 2024 10:00:00 +0000\n\nhi carol\n",
    ),
    (
        "no-final-newline",
        b"From: carol@acme.test\nTo: alice@acme.test\nSubject: no line end\nDate: Fri, 4 Oct 2024 08:00:00 +0000\n\nthe last line has no end",
    ),
    (
        "dave-to-erin",
        b"From: dave@other.test\nTo: erin@other.test\nSubject: elsewhere\nDate: Sat, 5 Oct 2024 08:00:00 +0000\n\nnothing for alice\n",
    ),
];

fn small() -> Small {
    let dir = tempfile::tempdir().unwrap();
    let a = common::create(dir.path());
    let t = common::tenant(&a, "acme");
    let mut ids = HashMap::new();
    let mut raw = HashMap::new();
    for (name, bytes) in MAILS {
        let env = Envelope::new(Source::Smtp).mail_from("relay@acme.test");
        ids.insert(*name, a.ingest(&t, bytes, &env).unwrap().id);
        raw.insert(*name, bytes.to_vec());
    }
    Small {
        _dir: dir,
        a,
        t,
        ids,
        raw,
    }
}

/// Every entry of a zip, by name.
fn unzip(bytes: &[u8]) -> HashMap<String, Vec<u8>> {
    let mut z = zip::ZipArchive::new(io::Cursor::new(bytes)).unwrap();
    let mut out = HashMap::new();
    for i in 0..z.len() {
        let mut f = z.by_index(i).unwrap();
        let mut v = Vec::new();
        f.read_to_end(&mut v).unwrap();
        out.insert(f.name().unwrap().to_string(), v);
    }
    out
}

/// The messages of a zip export (entries under `messages/`).
fn zip_messages(entries: &HashMap<String, Vec<u8>>) -> HashMap<String, Vec<u8>> {
    entries
        .iter()
        .filter(|(k, _)| k.starts_with("messages/"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Our own mboxrd reader, independent of the exporter's code: split on
/// `From ` lines, drop the blank separator line, unquote one `>`.
fn read_mboxrd(bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut msgs: Vec<Vec<u8>> = Vec::new();
    for line in bytes.split_inclusive(|&b| b == b'\n') {
        if line.starts_with(b"From ") {
            msgs.push(Vec::new());
            continue;
        }
        let cur = msgs.last_mut().expect("mbox starts with a From line");
        let q = line.iter().take_while(|&&b| b == b'>').count();
        if q > 0 && line[q..].starts_with(b"From ") {
            cur.extend_from_slice(&line[1..]);
        } else {
            cur.extend_from_slice(line);
        }
    }
    for m in &mut msgs {
        assert!(m.ends_with(b"\n\n") || m == b"\n", "no separator line");
        m.pop();
    }
    msgs
}

fn export(
    a: &Archive,
    who: &Principal,
    sel: &Selection,
    f: ExportFormat,
) -> (Vec<u8>, ExportSummary) {
    let mut out = Vec::new();
    let s = a.export(who, sel, f, "test buffer", &mut out).unwrap();
    (out, s)
}

fn python3() -> Option<&'static str> {
    let ok = Command::new("python3")
        .args(["-c", "import mailbox"])
        .output()
        .is_ok_and(|o| o.status.success());
    if ok {
        Some("python3")
    } else {
        eprintln!("SKIPPED (Python part): python3 with the mailbox module is not installed");
        None
    }
}

/// Reads an mbox with Python's `mailbox.mbox` and writes each message's
/// bytes, after undoing the mboxrd quoting (Python's mbox reader returns
/// the quoted lines as they are in the file), to one output file as
/// `<length>\n<bytes>` records.
const PY_READ_MBOX: &str = r#"
import mailbox, re, sys
mbox, out = sys.argv[1], sys.argv[2]
unquote = re.compile(rb'^>(>*From )', re.M)
box = mailbox.mbox(mbox, create=False)
with open(out, 'wb') as f:
    for n, key in enumerate(box.iterkeys()):
        raw = unquote.sub(rb'\1', box.get_bytes(key))
        if n < 100:
            # The separator line must decode too (get_message reads it as ASCII).
            box.get_message(key).get_from()
        f.write(b'%d\n' % len(raw))
        f.write(raw)
"#;

fn python_read_mbox(py: &str, mbox: &Path) -> Vec<Vec<u8>> {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("messages");
    let o = Command::new(py)
        .args(["-c", PY_READ_MBOX])
        .arg(mbox)
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "python: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let all = std::fs::read(&out).unwrap();
    let mut rest = all.as_slice();
    let mut msgs = Vec::new();
    while !rest.is_empty() {
        let nl = rest.iter().position(|&b| b == b'\n').unwrap();
        let len: usize = std::str::from_utf8(&rest[..nl]).unwrap().parse().unwrap();
        msgs.push(rest[nl + 1..nl + 1 + len].to_vec());
        rest = &rest[nl + 1 + len..];
    }
    msgs
}

/// A minimal RFC 4180 reader (quoted cells, `""` escapes, CRLF records).
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut cell = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                cell.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => cell.push(c),
            (false, '"') => quoted = true,
            (false, ',') => row.push(std::mem::take(&mut cell)),
            (false, '\r') => {}
            (false, '\n') => {
                row.push(std::mem::take(&mut cell));
                rows.push(std::mem::take(&mut row));
            }
            (false, c) => cell.push(c),
        }
    }
    rows
}

// ----- (a) the whole spamassassin folder ------------------------------------

#[test]
fn spamassassin_exports_byte_identical_as_zip_and_mbox() {
    let Some(corpus) = common::corpus() else {
        return;
    };
    let folder = corpus.join("spamassassin");
    let dir = tempfile::tempdir().unwrap();
    let a = common::create(&dir.path().join("data"));
    let t = common::tenant(&a, "sa");
    let auditor = Principal::auditor(t.clone());

    // The originals, by digest (the folder holds byte-identical duplicates,
    // which the archive stores once). Its SOURCES.tsv is archived as a
    // text-only message too; it is an original like any other.
    let mut originals: HashMap<[u8; 32], PathBuf> = HashMap::new();
    import_paths(&a, &t, &[folder], &ImportOptions::default(), |ev| {
        match ev {
            ImportEvent::Archived {
                origin, receipt, ..
            } => {
                originals.insert(receipt.sha256, PathBuf::from(origin));
            }
            ImportEvent::Refused { origin, error } => {
                assert!(!origin.ends_with(".eml"), "{origin} refused: {error}");
            }
        }
        std::ops::ControlFlow::Continue(())
    })
    .unwrap();
    assert!(originals.len() > 5_000, "only {} messages", originals.len());
    let total = a.stats(&t).unwrap().messages;

    // zip, written to a file as the CLI does.
    let zip_path = dir.path().join("sa.zip");
    let file = io::BufWriter::new(std::fs::File::create(&zip_path).unwrap());
    let zs = a
        .export(&auditor, &Selection::All, ExportFormat::Zip, "sa.zip", file)
        .unwrap();
    assert_eq!(zs.exported, total);
    assert_eq!(zs.selected, total);
    assert!(zs.vanished.is_empty() && zs.newline_added.is_empty());
    let entries = unzip(&std::fs::read(&zip_path).unwrap());
    let msgs = zip_messages(&entries);
    assert_eq!(msgs.len() as u64, total);
    let mut seen = HashSet::new();
    for (name, bytes) in &msgs {
        let d = sha(bytes);
        let orig = originals
            .get(&d)
            .unwrap_or_else(|| panic!("{name}: not the bytes of any original"));
        assert!(
            *bytes == std::fs::read(orig).unwrap(),
            "{name} differs from {orig:?}"
        );
        seen.insert(d);
    }
    assert_eq!(seen.len(), originals.len(), "every original is in the zip");

    // manifest.json: one row per message, matching the entry and the catalog.
    let manifest: serde_json::Value = serde_json::from_slice(&entries["manifest.json"]).unwrap();
    assert_eq!(manifest["format"], "ama-export");
    assert_eq!(manifest["tenant"], "sa");
    let rows = manifest["messages"].as_array().unwrap();
    // The catalog's view, in one search (a `get` per message would write
    // an audit entry each).
    let all = a
        .search(
            &auditor,
            "",
            &SearchOptions {
                limit: 10_000,
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(all.total as u64, total);
    let infos: HashMap<MessageId, ama_core::MessageInfo> =
        all.hits.into_iter().map(|i| (i.id, i)).collect();
    assert_eq!(rows.len() as u64, total);
    for r in rows {
        let path = r["path"].as_str().unwrap();
        let bytes = &msgs[path];
        assert_eq!(r["sha256"].as_str().unwrap(), hex(&sha(bytes)), "{path}");
        assert_eq!(r["size"].as_u64().unwrap(), bytes.len() as u64, "{path}");
        let id: MessageId = r["id"].as_str().unwrap().parse().unwrap();
        assert_eq!(path, format!("messages/{id}.eml"));
        let info = &infos[&id];
        assert_eq!(info.sha256, sha(bytes));
        assert_eq!(
            r["subject"].as_str().unwrap(),
            info.meta.subject.clone().unwrap_or_default()
        );
        let date = time::OffsetDateTime::parse(
            r["date"].as_str().unwrap(),
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap();
        assert_eq!(date.unix_timestamp(), info.meta.date, "{path}");
        let from: Vec<String> = info.meta.from.iter().map(|m| m.to_string()).collect();
        assert_eq!(r["from"].as_str().unwrap(), from.join(", "));
    }
    // manifest.csv: the same rows, in the same order.
    let csv = parse_csv(std::str::from_utf8(&entries["manifest.csv"]).unwrap());
    assert_eq!(
        csv[0],
        [
            "id", "sha256", "date", "from", "to", "subject", "size", "path"
        ]
    );
    assert_eq!(csv.len() - 1, rows.len());
    for (c, j) in csv[1..].iter().zip(rows) {
        for (i, key) in ["id", "sha256", "date", "from", "to", "subject"]
            .iter()
            .enumerate()
        {
            let want = j[*key].as_str().unwrap();
            let got = c[i]
                .strip_prefix('\'')
                .filter(|_| want.starts_with(['=', '+', '-', '@', '\t', '\r']));
            assert_eq!(got.unwrap_or(&c[i]), want, "{key} of {}", c[0]);
        }
        assert_eq!(c[6], j["size"].as_u64().unwrap().to_string());
        assert_eq!(c[7], j["path"].as_str().unwrap());
    }

    // mbox.
    let mbox_path = dir.path().join("sa.mbox");
    let file = io::BufWriter::new(std::fs::File::create(&mbox_path).unwrap());
    let ms = a
        .export(
            &auditor,
            &Selection::All,
            ExportFormat::Mbox,
            "sa.mbox",
            file,
        )
        .unwrap();
    assert_eq!(ms.exported, total);
    // The corpus holds exactly one message without a final line end; mbox
    // cannot represent that, so the exporter adds one and says so.
    assert_eq!(ms.newline_added.len(), 1, "{:?}", ms.newline_added);
    let no_newline = a.get(&auditor, ms.newline_added[0]).unwrap().sha256;
    let check = |reader: &str, back: Vec<Vec<u8>>| {
        assert_eq!(back.len() as u64, total, "{reader}: message count");
        let mut seen = HashSet::new();
        for (i, m) in back.iter().enumerate() {
            let (d, bytes) = match originals.get(&sha(m)) {
                Some(_) => (sha(m), m.as_slice()),
                // The one message that got a line end appended.
                None => {
                    let trimmed = m.strip_suffix(b"\n").unwrap();
                    assert_eq!(
                        sha(trimmed),
                        no_newline,
                        "{reader}: message {i} is not an original"
                    );
                    (no_newline, trimmed)
                }
            };
            assert!(
                bytes == std::fs::read(&originals[&d]).unwrap(),
                "{reader}: message {i} differs"
            );
            seen.insert(d);
        }
        assert_eq!(
            seen.len(),
            originals.len(),
            "{reader}: every original is in the mbox"
        );
    };
    let mbox = std::fs::read(&mbox_path).unwrap();
    check("own mboxrd reader", read_mboxrd(&mbox));
    drop(mbox);
    if let Some(py) = python3() {
        check("python mailbox.mbox", python_read_mbox(py, &mbox_path));
    }
}

// ----- mbox edge cases ---------------------------------------------------------

#[test]
fn mbox_quotes_from_lines_and_reports_a_missing_final_newline() {
    let s = small();
    let auditor = Principal::auditor(s.t.clone());
    let (out, summary) = export(&s.a, &auditor, &Selection::All, ExportFormat::Mbox);
    assert_eq!(summary.exported, 5);
    assert_eq!(summary.newline_added, vec![s.ids["no-final-newline"]]);
    let text = String::from_utf8(out.clone()).unwrap();
    // Separator lines: envelope sender and the message date, asctime, UTC.
    assert!(
        text.starts_with("From relay@acme.test Tue Oct  1 10:30:00 2024\n"),
        "{text}"
    );
    assert!(text.contains("\nFrom relay@acme.test Wed Oct  2 07:00:00 2024\n"));
    // Quoting: one more '>' on every ^>*From line, nothing else touched.
    assert!(text.contains(
        "\n>From the top.\n>>From quoted once\n>>>From quoted twice\n> From not quoted\nFromage\n"
    ));
    assert!(text.contains("\n>From alice@acme.test Thu Oct  3 10:00:00 2024\nFrom: alice"));
    assert!(text.contains("\n>From here on, CRLF.\r\n\r\n\n"));
    assert!(text.contains("the last line has no end\n\n"));
    assert_eq!(text.lines().filter(|l| l.starts_with("From ")).count(), 5);

    let back = read_mboxrd(&out);
    let mut want: Vec<Vec<u8>> = MAILS
        .iter()
        .map(|(name, raw)| {
            let mut v = raw.to_vec();
            if *name == "no-final-newline" {
                v.push(b'\n');
            }
            v
        })
        .collect();
    let mut got = back.clone();
    want.sort();
    got.sort();
    assert_eq!(got, want);

    if let Some(py) = python3() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.mbox");
        std::fs::write(&p, &out).unwrap();
        let mut py_back = python_read_mbox(py, &p);
        py_back.sort();
        assert_eq!(py_back, want, "python reads the same bytes");
    }

    // ama's own mbox importer reads the export back to the same messages:
    // in another tenant, every digest is the original's, except the one
    // message that got a line end.
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("export.mbox");
    std::fs::write(&p, &out).unwrap();
    let t2 = common::tenant(&s.a, "again");
    let mut back = HashSet::new();
    import_paths(&s.a, &t2, &[p], &ImportOptions::default(), |ev| {
        if let ImportEvent::Archived { receipt, .. } = ev {
            back.insert(receipt.sha256);
        }
        std::ops::ControlFlow::Continue(())
    })
    .unwrap();
    let want: HashSet<[u8; 32]> = want.iter().map(|m| sha(m)).collect();
    assert_eq!(back, want);
    assert!(back.contains(&sha(&s.raw["alice-to-bob"])));
}

#[test]
fn zip_entries_are_the_ingested_bytes_and_csv_cells_are_defused() {
    let s = small();
    let auditor = Principal::auditor(s.t.clone());
    let (out, summary) = export(&s.a, &auditor, &Selection::All, ExportFormat::Zip);
    assert_eq!(summary.exported, 5);
    assert!(summary.newline_added.is_empty());
    let entries = unzip(&out);
    assert_eq!(entries.len(), 7);
    for (name, id) in &s.ids {
        assert_eq!(
            entries[&format!("messages/{id}.eml")],
            s.raw[name],
            "{name}"
        );
    }
    let csv = String::from_utf8(entries["manifest.csv"].clone()).unwrap();
    // A subject that a spreadsheet would run as a formula is prefixed with '.
    assert!(csv.contains("\"'=cmd|' /C calc'!A0\""), "{csv}");
    let json: serde_json::Value = serde_json::from_slice(&entries["manifest.json"]).unwrap();
    let subjects: Vec<&str> = json["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["subject"].as_str().unwrap())
        .collect();
    assert!(
        subjects.contains(&"=cmd|' /C calc'!A0"),
        "JSON keeps the value"
    );
    let row = json["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == s.ids["bob-to-alice"].to_string())
        .unwrap();
    assert_eq!(row["date"], "2024-10-02T07:00:00Z");
    assert_eq!(row["from"], "bob@acme.test");
    assert_eq!(row["to"], "alice@acme.test");
    assert_eq!(row["size"], s.raw["bob-to-alice"].len());
    assert_eq!(row["sha256"], hex(&sha(&s.raw["bob-to-alice"])));
}

// ----- (b) selections -----------------------------------------------------------

fn exported_ids(out: &[u8]) -> Vec<MessageId> {
    let json: serde_json::Value = serde_json::from_slice(&unzip(out)["manifest.json"]).unwrap();
    json["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().parse().unwrap())
        .collect()
}

#[test]
fn query_and_id_exports_contain_exactly_the_selection() {
    let s = small();
    let auditor = Principal::auditor(s.t.clone());
    let (out, _) = export(
        &s.a,
        &auditor,
        &Selection::Query("from:alice@acme.test".into()),
        ExportFormat::Zip,
    );
    // Oldest first.
    assert_eq!(
        exported_ids(&out),
        vec![s.ids["alice-to-bob"], s.ids["mbox-line-first"]]
    );
    let (out, summary) = export(
        &s.a,
        &auditor,
        &Selection::Query("subject:nothing-matches-this".into()),
        ExportFormat::Zip,
    );
    assert_eq!(summary.exported, 0);
    assert!(exported_ids(&out).is_empty());

    // Ids: in the given order, repeats dropped.
    let pick = vec![
        s.ids["dave-to-erin"],
        s.ids["alice-to-bob"],
        s.ids["dave-to-erin"],
    ];
    let (out, summary) = export(&s.a, &auditor, &Selection::Ids(pick), ExportFormat::Zip);
    assert_eq!(summary.selected, 2);
    assert_eq!(
        exported_ids(&out),
        vec![s.ids["dave-to-erin"], s.ids["alice-to-bob"]]
    );
    let (out, _) = export(
        &s.a,
        &auditor,
        &Selection::Ids(vec![s.ids["bob-to-alice"]]),
        ExportFormat::Mbox,
    );
    assert_eq!(read_mboxrd(&out), vec![s.raw["bob-to-alice"].clone()]);

    // An unknown id fails before anything is written.
    let mut out = Vec::new();
    let unknown = MessageId::generate().unwrap();
    let err =
        s.a.export(
            &auditor,
            &Selection::Ids(vec![s.ids["alice-to-bob"], unknown]),
            ExportFormat::Mbox,
            "x",
            &mut out,
        )
        .unwrap_err();
    assert!(matches!(err, Error::NotFound(id) if id == unknown), "{err}");
    assert!(out.is_empty());

    // A malformed query is a query error, nothing written.
    let err =
        s.a.export(
            &auditor,
            &Selection::Query("from:".into()),
            ExportFormat::Zip,
            "x",
            &mut out,
        )
        .unwrap_err();
    assert!(matches!(err, Error::Query(_)), "{err}");
    assert!(out.is_empty());
}

#[test]
fn a_selection_larger_than_one_id_page_is_listed_completely() {
    let dir = tempfile::tempdir().unwrap();
    let a = common::create(dir.path());
    let t = common::tenant(&a, "many");
    let mut batch = Vec::new();
    for i in 0..2_345 {
        // Many share a date: paging must not lose or repeat ties.
        let raw = format!(
            "From: n{i}@many.test\nTo: x@many.test\nSubject: {i}\nDate: Tue, 1 Oct 2024 10:{:02}:00 +0000\n\nbody {i}\n",
            i % 7
        );
        batch.push((raw.into_bytes(), Envelope::new(Source::Import)));
    }
    let items: Vec<(&[u8], Envelope)> = batch
        .iter()
        .map(|(r, e)| (r.as_slice(), e.clone()))
        .collect();
    for r in a.ingest_batch(&t, &items).unwrap() {
        r.unwrap();
    }
    let auditor = Principal::auditor(t);
    let (out, summary) = export(&a, &auditor, &Selection::All, ExportFormat::Mbox);
    assert_eq!(summary.exported, 2_345);
    let mut back = read_mboxrd(&out);
    back.sort();
    let mut want: Vec<Vec<u8>> = batch.into_iter().map(|(r, _)| r).collect();
    want.sort();
    assert_eq!(back, want);
}

// ----- (c) access -----------------------------------------------------------------

#[test]
fn an_end_user_exports_only_his_mail_and_an_admin_is_refused() {
    let s = small();
    let carol = Principal::end_user(s.t.clone(), ["carol@acme.test"]);
    let (out, summary) = export(&s.a, &carol, &Selection::All, ExportFormat::Zip);
    let mut got = exported_ids(&out);
    got.sort();
    let mut want = vec![s.ids["mbox-line-first"], s.ids["no-final-newline"]];
    want.sort();
    assert_eq!(got, want);
    assert_eq!(summary.exported, 2);
    // A query cannot widen it.
    let (out, _) = export(
        &s.a,
        &carol,
        &Selection::Query("from:alice@acme.test".into()),
        ExportFormat::Zip,
    );
    assert_eq!(exported_ids(&out), vec![s.ids["mbox-line-first"]]);
    // Nor can naming someone else's message: it does not exist for him.
    let mut out = Vec::new();
    let err =
        s.a.export(
            &carol,
            &Selection::Ids(vec![s.ids["dave-to-erin"]]),
            ExportFormat::Mbox,
            "x",
            &mut out,
        )
        .unwrap_err();
    assert!(matches!(err, Error::NotFound(_)), "{err}");
    assert!(out.is_empty());

    let admin = Principal::admin(s.t.clone());
    for sel in [Selection::All, Selection::Ids(vec![s.ids["alice-to-bob"]])] {
        let err =
            s.a.export(&admin, &sel, ExportFormat::Zip, "x", &mut out)
                .unwrap_err();
        assert!(matches!(err, Error::AccessDenied(_)), "{err}");
        assert!(out.is_empty());
    }

    // A principal of another tenant sees nothing of this one.
    let other = common::tenant(&s.a, "other");
    let (_, summary) = export(
        &s.a,
        &Principal::auditor(other),
        &Selection::All,
        ExportFormat::Mbox,
    );
    assert_eq!(summary.exported, 0);
}

// ----- the audit entry ----------------------------------------------------------

fn export_entries(a: &Archive, t: &TenantId) -> Vec<AuditEntry> {
    let filter = AuditFilter {
        action: Some(AuditAction::Export),
        ..Default::default()
    };
    a.audit_entries(&Principal::auditor(t.clone()), &filter)
        .unwrap()
}

#[test]
fn every_export_is_one_audit_entry_with_its_messages_and_outcome() {
    let s = small();
    let carol = Principal::end_user(s.t.clone(), ["carol@acme.test"]);
    let (_, summary) = export(&s.a, &carol, &Selection::All, ExportFormat::Mbox);
    let entries = export_entries(&s.a, &s.t);
    assert_eq!(entries.len(), 1);
    let e = &entries[0];
    assert_eq!(e.outcome, Outcome::Success);
    assert_eq!(e.actor.roles, carol.roles());
    let mut got = e.messages();
    got.sort();
    let mut want = vec![s.ids["mbox-line-first"], s.ids["no-final-newline"]];
    want.sort();
    assert_eq!(got, want);
    assert_eq!(summary.exported, 2);
    assert!(e.detail.contains("all messages"), "{}", e.detail);
    assert!(e.detail.contains("mbox to test buffer"), "{}", e.detail);

    // Refused: recorded as denied, with no messages.
    let admin = Principal::admin(s.t.clone());
    let mut out = Vec::new();
    s.a.export(
        &admin,
        &Selection::All,
        ExportFormat::Zip,
        "x.zip",
        &mut out,
    )
    .unwrap_err();
    let entries = export_entries(&s.a, &s.t);
    assert_eq!(entries.len(), 2);
    assert!(
        matches!(entries[1].outcome, Outcome::Denied(_)),
        "{:?}",
        entries[1]
    );
    assert!(entries[1].messages().is_empty());

    // Failed halfway: recorded as failed, naming what was handed over.
    let auditor = Principal::auditor(s.t.clone());
    let w = FailingWriter {
        budget: 0,
        written: 0,
    };
    s.a.export(
        &auditor,
        &Selection::All,
        ExportFormat::Mbox,
        "full disk",
        w,
    )
    .unwrap_err();
    let entries = export_entries(&s.a, &s.t);
    assert_eq!(entries.len(), 3);
    assert!(
        matches!(&entries[2].outcome, Outcome::Failed(why) if why.contains("failed after")),
        "{:?}",
        entries[2]
    );

    // A restore is recorded under its own action.
    let mut sink = Refuses {
        seen: vec![],
        finished: false,
    };
    let _ = s.a.export_to(
        &auditor,
        &Selection::All,
        ExportAction::Restore,
        "imaps://u@h/INBOX",
        &mut sink,
    );
    let restores =
        s.a.audit_entries(
            &auditor,
            &AuditFilter {
                action: Some(AuditAction::Restore),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(restores.len(), 1);
    assert_eq!(restores[0].messages(), sink.seen);
    assert!(restores[0].detail.contains("imaps://u@h/INBOX"));
}

// ----- (d) a failing destination -------------------------------------------------

/// Accepts `budget` bytes, then fails like a full disk.
struct FailingWriter {
    budget: usize,
    written: usize,
}

impl Write for FailingWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.written >= self.budget {
            return Err(io::Error::new(
                io::ErrorKind::StorageFull,
                "disk full (test)",
            ));
        }
        let n = buf.len().min(self.budget - self.written);
        self.written += n;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        if self.written >= self.budget {
            return Err(io::Error::new(
                io::ErrorKind::StorageFull,
                "disk full (test)",
            ));
        }
        Ok(())
    }
}

#[test]
fn a_destination_failing_halfway_gives_a_typed_error() {
    let s = small();
    let auditor = Principal::auditor(s.t.clone());
    let (full_mbox, _) = export(&s.a, &auditor, &Selection::All, ExportFormat::Mbox);
    let (full_zip, _) = export(&s.a, &auditor, &Selection::All, ExportFormat::Zip);
    for (format, full) in [
        (ExportFormat::Mbox, full_mbox.len()),
        (ExportFormat::Zip, full_zip.len()),
    ] {
        for budget in [0, full / 2, full - 1] {
            let w = FailingWriter { budget, written: 0 };
            let err =
                s.a.export(&auditor, &Selection::All, format, "failing", w)
                    .unwrap_err();
            match &err {
                Error::Export(ExportError::Destination {
                    exported,
                    selected,
                    source,
                }) => {
                    assert_eq!(*selected, 5);
                    assert!(*exported <= 5, "{format} {budget}: {exported}");
                    assert_eq!(source.kind(), io::ErrorKind::StorageFull);
                }
                other => panic!("{format} with {budget} bytes: unexpected {other:?}"),
            }
            assert!(err.to_string().contains("failed after"), "{err}");
        }
    }
}

/// A sink that refuses the third message: the export stops there and
/// `finish` is never called.
struct Refuses {
    seen: Vec<MessageId>,
    finished: bool,
}

impl ExportSink for Refuses {
    fn message(&mut self, m: &ExportedMessage<'_>) -> io::Result<()> {
        assert_eq!(m.position as usize, self.seen.len());
        assert_eq!(m.selected, 5);
        assert_eq!(sha(m.raw), m.info.sha256);
        if self.seen.len() == 2 {
            return Err(io::Error::other("mailbox full"));
        }
        self.seen.push(m.info.id);
        Ok(())
    }
    fn finish(&mut self) -> io::Result<()> {
        self.finished = true;
        Ok(())
    }
}

#[test]
fn a_sink_error_stops_the_export_and_skips_finish() {
    let s = small();
    let auditor = Principal::auditor(s.t.clone());
    let mut sink = Refuses {
        seen: vec![],
        finished: false,
    };
    let err =
        s.a.export_to(
            &auditor,
            &Selection::All,
            ExportAction::Restore,
            "imap://test",
            &mut sink,
        )
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Export(ExportError::Destination {
                exported: 2,
                selected: 5,
                ..
            })
        ),
        "{err:?}"
    );
    assert_eq!(sink.seen.len(), 2);
    assert!(!sink.finished);
}

#[test]
fn a_legal_hold_exports_what_it_covers() {
    let s = small();
    let op = Principal::operator(s.t.clone());
    let auditor = Principal::auditor(s.t.clone());
    s.a.place_hold(
        &op,
        "matter-7",
        ama_core::HoldScope::Custodian("carol@acme.test".into()),
        "subpoena",
    )
    .unwrap();
    let (out, summary) = export(
        &s.a,
        &auditor,
        &Selection::Hold("matter-7".into()),
        ExportFormat::Zip,
    );
    assert_eq!(summary.exported, 2);
    let mut want = vec![s.ids["mbox-line-first"], s.ids["no-final-newline"]];
    want.sort();
    assert_eq!(exported_ids(&out), want);
    let zip = zip_messages(&unzip(&out));
    for name in ["mbox-line-first", "no-final-newline"] {
        assert!(
            zip.values().any(|b| *b == s.raw[name]),
            "{name} not byte-exact"
        );
    }
    // No such hold: a clear error, nothing written.
    let mut out = Vec::new();
    let err =
        s.a.export(
            &auditor,
            &Selection::Hold("nope".into()),
            ExportFormat::Zip,
            "x",
            &mut out,
        )
        .unwrap_err();
    assert!(
        matches!(&err, Error::InvalidArgument(m) if m.contains("nope")),
        "{err}"
    );
    assert!(out.is_empty());
    // Holds are for auditors.
    let bob = Principal::end_user(s.t.clone(), ["bob@acme.test"]);
    let err =
        s.a.export(
            &bob,
            &Selection::Hold("matter-7".into()),
            ExportFormat::Zip,
            "x",
            &mut out,
        )
        .unwrap_err();
    assert!(matches!(err, Error::AccessDenied(_)), "{err}");
}
