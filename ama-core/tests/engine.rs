//! Behaviour of the engine through its public API: query operators, dedup,
//! access rules, tenant isolation, typed errors for bad input, and index
//! recovery.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

mod common;

use ama_core::{
    Archive, CryptoError, Envelope, Error, IngestError, KeyError, MessageId, Principal,
    SearchOptions, Sort, Source, StoreError, TenantId, Unlock,
};
use time::macros::datetime;

fn opts() -> SearchOptions {
    SearchOptions {
        limit: 1000,
        ..Default::default()
    }
}

fn ids(a: &Archive, who: &Principal, q: &str) -> Vec<MessageId> {
    let r = a
        .search(who, q, &opts())
        .unwrap_or_else(|e| panic!("{q}: {e}"));
    assert_eq!(r.total, r.hits.len(), "{q}: total and hits disagree");
    let mut v: Vec<MessageId> = r.hits.into_iter().map(|h| h.id).collect();
    v.sort();
    v
}

fn sorted(mut v: Vec<MessageId>) -> Vec<MessageId> {
    v.sort();
    v
}

/// A small fixture mailbox with one message per feature.
struct Fixture {
    _dir: tempfile::TempDir,
    a: Archive,
    t: TenantId,
    plain: MessageId,
    with_attachment: MessageId,
    big: MessageId,
    old: MessageId,
    cc_msg: MessageId,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let a = common::create(dir.path());
    let t = common::tenant(&a, "acme");
    let ingest = |raw: &str, env: Envelope| a.ingest(&t, raw.as_bytes(), &env).unwrap().id;
    let plain = ingest(
        "From: Alice Example <alice@acme.test>\r\n\
         To: bob@acme.test\r\n\
         Subject: Quarterly report draft\r\n\
         Message-ID: <Q3-Report@acme.test>\r\n\
         Date: Mon, 15 Oct 2001 09:00:00 +0000\r\n\r\n\
         The quarterly figures look strong. Müller agrees.\r\n",
        Envelope::new(Source::Smtp)
            .mail_from("alice@acme.test")
            .rcpt("bob@acme.test"),
    );
    let with_attachment = ingest(
        "From: carol@partner.example\r\n\
         To: alice@acme.test\r\n\
         Subject: Contract\r\n\
         Date: Tue, 16 Oct 2001 10:00:00 +0000\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=XX\r\n\r\n\
         --XX\r\nContent-Type: text/plain\r\n\r\nPlease sign.\r\n\
         --XX\r\nContent-Type: text/plain; name=terms.txt\r\n\
         Content-Disposition: attachment; filename=\"signed-terms.txt\"\r\n\r\n\
         indemnification clause\r\n--XX--\r\n",
        Envelope::new(Source::Smtp),
    );
    let big_body = "lorem ipsum ".repeat(100_000);
    let big = ingest(
        &format!(
            "From: dave@acme.test\r\nTo: alice@acme.test\r\nSubject: Big one\r\n\
             Date: Wed, 17 Oct 2001 10:00:00 +0000\r\n\r\n{big_body}\r\n"
        ),
        Envelope::new(Source::Smtp),
    );
    let old = ingest(
        "From: eve@mail.sub.acme.test\r\nTo: bob@acme.test\r\nSubject: Old news\r\n\
         Date: Fri, 1 Jan 1999 10:00:00 +0000\r\n\r\nancient history\r\n",
        Envelope::new(Source::Import),
    );
    let cc_msg = ingest(
        "From: bob@acme.test\r\nTo: alice@acme.test\r\nCc: Frank Furter <frank@acme.test>\r\n\
         Subject: Lunch\r\nDate: Thu, 18 Oct 2001 10:00:00 +0000\r\n\r\nquarterly lunch?\r\n",
        Envelope::new(Source::Smtp),
    );
    Fixture {
        _dir: dir,
        a,
        t,
        plain,
        with_attachment,
        big,
        old,
        cc_msg,
    }
}

#[test]
fn every_query_operator() {
    let f = fixture();
    let au = Principal::auditor(f.t.clone());
    let q = |s: &str| ids(&f.a, &au, s);
    let all = sorted(vec![f.plain, f.with_attachment, f.big, f.old, f.cc_msg]);

    assert_eq!(q(""), all);
    // free words, case-insensitive, accents folded
    assert_eq!(q("quarterly"), sorted(vec![f.plain, f.cc_msg]));
    assert_eq!(q("QUARTERLY figures"), vec![f.plain]);
    assert_eq!(q("muller"), vec![f.plain]);
    // attachment text is searchable by free words
    assert_eq!(q("indemnification"), vec![f.with_attachment]);
    // phrases
    assert_eq!(q("\"quarterly figures\""), vec![f.plain]);
    assert_eq!(q("\"figures quarterly\""), vec![]);
    // from: exact address, domain, subdomain parent, display name word
    assert_eq!(q("from:alice@acme.test"), vec![f.plain]);
    assert_eq!(q("from:ALICE@ACME.TEST"), vec![f.plain]);
    assert_eq!(q("from:partner.example"), vec![f.with_attachment]);
    assert_eq!(
        q("from:acme.test"),
        sorted(vec![f.plain, f.big, f.old, f.cc_msg])
    );
    assert_eq!(q("from:sub.acme.test"), vec![f.old]);
    assert_eq!(q("from:alice"), vec![f.plain]);
    assert_eq!(q("from:\"Alice Example\""), vec![f.plain]);
    // to: covers To and Cc
    assert_eq!(q("to:frank@acme.test"), vec![f.cc_msg]);
    assert_eq!(
        q("to:alice@acme.test"),
        sorted(vec![f.with_attachment, f.big, f.cc_msg])
    );
    // cc:
    assert_eq!(q("cc:frank@acme.test"), vec![f.cc_msg]);
    assert_eq!(q("cc:furter"), vec![f.cc_msg]);
    assert_eq!(q("cc:alice@acme.test"), vec![]);
    // subject:
    assert_eq!(q("subject:contract"), vec![f.with_attachment]);
    assert_eq!(q("subject:sign"), vec![]);
    // filename: and has:attachment
    assert_eq!(q("filename:signed-terms.txt"), vec![f.with_attachment]);
    assert_eq!(q("filename:terms"), vec![f.with_attachment]);
    assert_eq!(q("has:attachment"), vec![f.with_attachment]);
    // dates: after is inclusive of the day, before exclusive
    assert_eq!(q("before:2000-01-01"), vec![f.old]);
    assert_eq!(
        q("after:2001-10-16 before:2001-10-18"),
        sorted(vec![f.with_attachment, f.big])
    );
    assert_eq!(q("after:2001-10-18"), vec![f.cc_msg]);
    // sizes
    assert_eq!(q("larger:1M"), vec![f.big]);
    assert_eq!(
        q("smaller:1M"),
        sorted(vec![f.plain, f.with_attachment, f.old, f.cc_msg])
    );
    // message-id: with or without brackets, any case
    assert_eq!(q("message-id:<Q3-Report@acme.test>"), vec![f.plain]);
    assert_eq!(q("message-id:q3-report@acme.test"), vec![f.plain]);
    // boolean structure
    assert_eq!(
        q("quarterly OR contract"),
        sorted(vec![f.plain, f.cc_msg, f.with_attachment])
    );
    assert_eq!(q("quarterly -lunch"), vec![f.plain]);
    assert_eq!(q("quarterly AND NOT from:bob@acme.test"), vec![f.plain]);
    assert_eq!(q("-quarterly -has:attachment"), sorted(vec![f.big, f.old]));
    assert_eq!(
        q("(subject:contract OR subject:lunch) from:acme.test"),
        vec![f.cc_msg]
    );
    assert_eq!(
        q("from:bob@acme.test OR from:carol@partner.example subject:lunch"),
        vec![f.cc_msg]
    );
}

#[test]
fn order_paging_and_total() {
    let f = fixture();
    let au = Principal::auditor(f.t.clone());
    let newest: Vec<MessageId> =
        f.a.search(&au, "", &opts())
            .unwrap()
            .hits
            .iter()
            .map(|h| h.id)
            .collect();
    assert_eq!(
        newest,
        vec![f.cc_msg, f.big, f.with_attachment, f.plain, f.old]
    );
    let page =
        f.a.search(
            &au,
            "",
            &SearchOptions {
                limit: 2,
                offset: 2,
                sort: Sort::Oldest,
            },
        )
        .unwrap();
    assert_eq!(page.total, 5);
    assert_eq!(
        page.hits.iter().map(|h| h.id).collect::<Vec<_>>(),
        vec![f.with_attachment, f.big]
    );
    let rel =
        f.a.search(
            &au,
            "quarterly",
            &SearchOptions {
                sort: Sort::Relevance,
                ..opts()
            },
        )
        .unwrap();
    assert_eq!(rel.total, 2);
}

#[test]
fn bad_query_is_a_typed_error_with_position() {
    let f = fixture();
    let au = Principal::auditor(f.t.clone());
    match f.a.search(&au, "subject:x (unclosed", &opts()) {
        Err(Error::Query(e)) => assert_eq!(e.position, 10),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        f.a.search(&au, "after:2001-13-45", &opts()),
        Err(Error::Query(_))
    ));
    assert!(matches!(
        f.a.search(&au, "form:bob", &opts()),
        Err(Error::Query(_))
    ));
    // Paging arguments from outside cannot overflow or panic.
    let deep = SearchOptions {
        offset: usize::MAX,
        limit: usize::MAX,
        sort: Sort::Relevance,
    };
    assert!(matches!(
        f.a.search(&au, "", &deep),
        Err(Error::InvalidArgument(_))
    ));
    let huge_page = SearchOptions {
        limit: usize::MAX,
        ..opts()
    };
    assert_eq!(f.a.search(&au, "", &huge_page).unwrap().total, 5);
    // An empty batch is a no-op.
    assert!(f.a.ingest_batch::<&[u8]>(&f.t, &[]).unwrap().is_empty());
}

#[test]
fn dedup_merges_envelope_and_bcc_recipient_finds_the_mail() {
    let dir = tempfile::tempdir().unwrap();
    let a = common::create(dir.path());
    let t = common::tenant(&a, "acme");
    let raw =
        b"From: boss@acme.test\r\nTo: team@acme.test\r\nSubject: Reorg\r\n\r\nconfidential\r\n";
    let first = a
        .ingest(
            &t,
            raw,
            &Envelope::new(Source::Smtp)
                .mail_from("boss@acme.test")
                .rcpt("team@acme.test"),
        )
        .unwrap();
    assert!(!first.duplicate);
    // The Bcc copy: same bytes, another envelope recipient.
    let second = a
        .ingest(
            &t,
            raw,
            &Envelope::new(Source::Smtp)
                .mail_from("boss@acme.test")
                .rcpt("secret@acme.test"),
        )
        .unwrap();
    assert!(second.duplicate);
    assert_eq!(second.id, first.id);
    assert_eq!(second.sha256, first.sha256);
    let st = a.stats(&t).unwrap();
    assert_eq!((st.messages, st.duplicates), (1, 1));

    let au = Principal::auditor(t.clone());
    assert_eq!(ids(&a, &au, "to:secret@acme.test"), vec![first.id]);
    assert_eq!(ids(&a, &au, ""), vec![first.id]);
    let info = a.get(&au, first.id).unwrap();
    assert_eq!(info.deliveries.len(), 2);
    assert_eq!(
        info.envelope_recipients(),
        vec!["team@acme.test".to_string(), "secret@acme.test".to_string()]
    );

    // The Bcc recipient as an end user finds and reads it, and does not
    // learn the other envelope recipients.
    let secret = Principal::end_user(t.clone(), ["Secret@acme.test"]);
    assert_eq!(ids(&a, &secret, "reorg"), vec![first.id]);
    let seen = a.get(&secret, first.id).unwrap();
    assert_eq!(
        seen.envelope_recipients(),
        vec!["secret@acme.test".to_string()]
    );
    assert_eq!(a.get_raw(&secret, first.id).unwrap(), raw.to_vec());

    // Same bytes in a batch with itself: one stored, one duplicate.
    let raw2 = b"From: x@acme.test\r\nSubject: twice\r\n\r\nbody\r\n";
    let r = a
        .ingest_batch(
            &t,
            &[
                (
                    raw2.as_slice(),
                    Envelope::new(Source::Import).rcpt("a@acme.test"),
                ),
                (
                    raw2.as_slice(),
                    Envelope::new(Source::Import).rcpt("b@acme.test"),
                ),
            ],
        )
        .unwrap();
    let (r0, r1) = (r[0].clone().unwrap(), r[1].clone().unwrap());
    assert!(!r0.duplicate && r1.duplicate && r0.id == r1.id);
    assert_eq!(ids(&a, &au, "to:b@acme.test"), vec![r0.id]);
}

#[test]
fn end_users_see_only_their_own_mail_and_admins_no_mail() {
    let f = fixture();
    let frank = Principal::end_user(f.t.clone(), ["frank@acme.test"]);
    assert_eq!(ids(&f.a, &frank, ""), vec![f.cc_msg]);
    assert_eq!(ids(&f.a, &frank, "quarterly"), vec![f.cc_msg]);
    assert!(matches!(f.a.get(&frank, f.plain), Err(Error::NotFound(_))));
    assert!(matches!(
        f.a.get_raw(&frank, f.plain),
        Err(Error::NotFound(_))
    ));
    f.a.get_raw(&frank, f.cc_msg).unwrap();

    // Envelope sender counts as a party.
    let alice = Principal::end_user(f.t.clone(), ["alice@acme.test"]);
    assert_eq!(
        ids(&f.a, &alice, ""),
        sorted(vec![f.plain, f.with_attachment, f.big, f.cc_msg])
    );
    let nobody = Principal::end_user(f.t.clone(), Vec::<String>::new());
    assert_eq!(ids(&f.a, &nobody, ""), vec![]);

    let admin = Principal::admin(f.t.clone());
    assert!(matches!(
        f.a.search(&admin, "", &opts()),
        Err(Error::AccessDenied(_))
    ));
    assert!(matches!(
        f.a.get_raw(&admin, f.plain),
        Err(Error::AccessDenied(_))
    ));
    // Admins still see configuration.
    f.a.stats(&f.t).unwrap();
}

#[test]
fn two_tenants_with_the_same_mail_stay_apart() {
    let dir = tempfile::tempdir().unwrap();
    let a = common::create(dir.path());
    let t1 = common::tenant(&a, "one");
    let t2 = common::tenant(&a, "two");
    let raw = b"From: a@x.test\r\nTo: b@x.test\r\nSubject: shared newsletter\r\n\r\nhello\r\n";
    let r1 = a.ingest(&t1, raw, &Envelope::new(Source::Smtp)).unwrap();
    let r2 = a.ingest(&t2, raw, &Envelope::new(Source::Smtp)).unwrap();
    assert!(
        !r1.duplicate && !r2.duplicate,
        "dedup must not cross tenants"
    );
    assert_ne!(r1.id, r2.id);
    let (p1, p2) = (
        Principal::auditor(t1.clone()),
        Principal::auditor(t2.clone()),
    );
    assert_eq!(ids(&a, &p1, "newsletter"), vec![r1.id]);
    assert_eq!(ids(&a, &p2, "newsletter"), vec![r2.id]);
    // One tenant's principal cannot reach the other's message by id.
    assert!(matches!(a.get_raw(&p1, r2.id), Err(Error::NotFound(_))));
    assert!(matches!(a.get(&p2, r1.id), Err(Error::NotFound(_))));
    // Only tenant two's mail goes to tenant two.
    let only2 = a
        .ingest(
            &t2,
            b"From: z@x.test\r\n\r\nonly two\r\n",
            &Envelope::new(Source::Smtp),
        )
        .unwrap();
    assert_eq!(ids(&a, &p1, "two"), vec![]);
    assert_eq!(ids(&a, &p2, "two"), vec![only2.id]);
    assert_eq!(a.stats(&t1).unwrap().messages, 1);
    assert_eq!(a.stats(&t2).unwrap().messages, 2);
}

#[test]
fn ingest_refuses_bad_input_with_typed_errors_and_keeps_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let a = Archive::create(
        dir.path(),
        &Unlock::passphrase(common::PASS),
        ama_core::ArchiveOptions {
            max_message_size: 1000,
            ..common::options()
        },
    )
    .unwrap();
    let t = common::tenant(&a, "acme");
    let env = Envelope::new(Source::Http);
    assert!(matches!(
        a.ingest(&t, b"", &env),
        Err(Error::Ingest(IngestError::Empty))
    ));
    let big = format!("From: a@b.c\r\n\r\n{}", "x".repeat(2000));
    assert!(matches!(
        a.ingest(&t, big.as_bytes(), &env),
        Err(Error::Ingest(IngestError::TooLarge { limit: 1000, .. }))
    ));
    assert!(matches!(
        a.ingest(&t, b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR", &env),
        Err(Error::Ingest(IngestError::NotAMessage { .. }))
    ));
    let good = b"From: a@b.c\r\nSubject: fine\r\n\r\nok\r\n";
    let r = a
        .ingest_batch(
            &t,
            &[
                (&b""[..], env.clone()),
                (&good[..], env.clone()),
                (big.as_bytes(), env.clone()),
            ],
        )
        .unwrap();
    assert!(matches!(r[0], Err(IngestError::Empty)));
    assert!(r[1].is_ok());
    assert!(matches!(r[2], Err(IngestError::TooLarge { .. })));
    assert_eq!(a.stats(&t).unwrap().messages, 1);
    // Unknown tenants are a typed error too.
    let ghost = TenantId::new("ghost").unwrap();
    assert!(matches!(
        a.ingest(&ghost, good, &env),
        Err(Error::Tenant(ama_core::TenantError::Unknown(_)))
    ));
    assert!(matches!(
        a.create_tenant(ama_core::TenantSpec::new(t.clone())),
        Err(Error::Tenant(ama_core::TenantError::Exists(_)))
    ));
}

#[test]
fn wrong_passphrase_and_missing_archive_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    drop(common::create(dir.path()));
    let e = Archive::open(
        dir.path(),
        &Unlock::passphrase("not the passphrase"),
        common::options(),
    )
    .unwrap_err();
    assert!(matches!(e, Error::Key(KeyError::WrongPassphrase)), "{e:?}");
    assert!(e.to_string().contains("wrong passphrase"));
    // A refused passphrase leaves no directory behind.
    let fresh = dir.path().join("fresh");
    assert!(matches!(
        Archive::create(&fresh, &Unlock::passphrase("short"), common::options()),
        Err(Error::Key(KeyError::WeakPassphrase { .. }))
    ));
    assert!(!fresh.exists());
    let empty = tempfile::tempdir().unwrap();
    assert!(matches!(
        Archive::open(
            empty.path(),
            &Unlock::passphrase(common::PASS),
            common::options()
        ),
        Err(Error::DataDir { .. })
    ));
    assert!(matches!(
        Archive::create(
            dir.path(),
            &Unlock::passphrase(common::PASS),
            common::options()
        ),
        Err(Error::DataDir { .. })
    ));
}

/// Every blob file of the archive.
fn blob_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    fn walk(p: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        for e in std::fs::read_dir(p).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, out);
            } else {
                out.push(p);
            }
        }
    }
    let mut v = Vec::new();
    walk(&dir.join("blobs"), &mut v);
    v
}

#[test]
fn a_flipped_byte_in_a_blob_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let a = common::create(dir.path());
    let t = common::tenant(&a, "acme");
    let r = a
        .ingest(
            &t,
            b"From: a@b.c\r\nSubject: x\r\n\r\nbody\r\n",
            &Envelope::new(Source::Smtp),
        )
        .unwrap();
    let files = blob_files(dir.path());
    assert_eq!(files.len(), 1);
    let au = Principal::auditor(t.clone());
    for pos in [0usize, 5, 20, 40] {
        let orig = std::fs::read(&files[0]).unwrap();
        let mut bad = orig.clone();
        let p = pos.min(bad.len() - 1);
        bad[p] ^= 0x01;
        std::fs::write(&files[0], &bad).unwrap();
        let e = a.get_raw(&au, r.id).unwrap_err();
        assert!(
            matches!(
                e,
                Error::Crypto(CryptoError::Authentication { .. })
                    | Error::Crypto(CryptoError::Malformed { .. })
                    | Error::Store(StoreError::Corrupt { .. })
            ),
            "flip at {p}: {e:?}"
        );
        std::fs::write(&files[0], &orig).unwrap();
    }
    a.get_raw(&au, r.id).unwrap();
    std::fs::remove_file(&files[0]).unwrap();
    assert!(matches!(
        a.get_raw(&au, r.id),
        Err(Error::Store(StoreError::NotFound { .. }))
    ));
}

#[test]
fn restart_reindex_and_a_lost_index_keep_everything_findable() {
    let dir = tempfile::tempdir().unwrap();
    let id;
    {
        let a = common::create(dir.path());
        let t = common::tenant(&a, "acme");
        id = a
            .ingest(
                &t,
                b"From: a@b.c\r\nSubject: persistent thing\r\n\r\nbody\r\n",
                &Envelope::new(Source::Smtp),
            )
            .unwrap()
            .id;
    }
    let t = TenantId::new("acme").unwrap();
    let au = Principal::auditor(t.clone());
    {
        let a = common::reopen(dir.path());
        assert_eq!(ids(&a, &au, "persistent"), vec![id]);
        assert_eq!(a.reindex(&t).unwrap(), 1);
        assert_eq!(ids(&a, &au, "persistent"), vec![id]);
    }
    // The index is derived data: delete it and it is rebuilt on open.
    std::fs::remove_dir_all(dir.path().join("index")).unwrap();
    {
        let a = common::reopen(dir.path());
        assert_eq!(ids(&a, &au, "persistent"), vec![id]);
        assert_eq!(a.indexed_count(&t).unwrap(), 1);
    }
    // A damaged (or plaintext, pre-encryption) index is replaced and rebuilt.
    let tenant_index = std::fs::read_dir(dir.path().join("index"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    std::fs::write(tenant_index.join("meta.json"), b"{\"not\": \"encrypted\"}").unwrap();
    let a = common::reopen(dir.path());
    assert_eq!(ids(&a, &au, "persistent"), vec![id]);
    assert_eq!(a.indexed_count(&t).unwrap(), 1);
}

#[test]
fn received_at_is_the_date_when_the_header_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let a = common::create(dir.path());
    let t = common::tenant(&a, "acme");
    let env = Envelope::new(Source::Smtp).received_at(datetime!(2020-02-29 12:00 UTC));
    let r = a
        .ingest(&t, b"From: a@b.c\r\nSubject: undated\r\n\r\nx\r\n", &env)
        .unwrap();
    let au = Principal::auditor(t);
    assert_eq!(
        ids(&a, &au, "after:2020-02-29 before:2020-03-01"),
        vec![r.id]
    );
    let info = a.get(&au, r.id).unwrap();
    assert!(info.meta.anomalies.contains(&ama_core::Anomaly::BadDate));
}

#[test]
fn archive_is_send_sync_and_ingests_from_many_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Archive>();
    let dir = tempfile::tempdir().unwrap();
    let a = std::sync::Arc::new(common::create(dir.path()));
    let t = common::tenant(&a, "acme");
    let handles: Vec<_> = (0..4)
        .map(|n| {
            let a = a.clone();
            let t = t.clone();
            std::thread::spawn(move || {
                for i in 0..25 {
                    let raw =
                        format!("From: t{n}@x.test\r\nSubject: thread {n} msg {i}\r\n\r\nb\r\n");
                    a.ingest(&t, raw.as_bytes(), &Envelope::new(Source::Smtp))
                        .unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let au = Principal::auditor(t.clone());
    assert_eq!(a.search(&au, "", &opts()).unwrap().total, 100);
    assert_eq!(a.stats(&t).unwrap().messages, 100);
}

#[test]
fn spool_sealing_is_per_tenant_and_per_entry() {
    let dir = tempfile::tempdir().unwrap();
    let a = common::create(dir.path());
    let t1 = common::tenant(&a, "one");
    let t2 = common::tenant(&a, "two");
    let sealed = a.spool_seal(&t1, "q1", b"From: a@b.c\r\n\r\nx").unwrap();
    assert!(!sealed.windows(5).any(|w| w == b"From:"));
    assert_eq!(
        a.spool_open(&t1, "q1", &sealed).unwrap(),
        b"From: a@b.c\r\n\r\nx"
    );
    assert!(matches!(
        a.spool_open(&t1, "q2", &sealed),
        Err(Error::Crypto(_))
    ));
    assert!(matches!(
        a.spool_open(&t2, "q1", &sealed),
        Err(Error::Crypto(_))
    ));
}

#[test]
fn tenant_for_domain_prefers_the_most_specific_domain_and_sees_new_tenants() {
    let dir = tempfile::tempdir().unwrap();
    let a = common::create(dir.path());
    let mut spec = ama_core::TenantSpec::new(TenantId::new("parent").unwrap());
    spec.domains = vec!["acme.test".into()];
    a.create_tenant(spec).unwrap();
    let find = |d: &str| a.tenant_for_domain(d).unwrap().map(|t| t.id.to_string());
    assert_eq!(find("eu.acme.test").as_deref(), Some("parent"));
    let mut spec = ama_core::TenantSpec::new(TenantId::new("zz-europe").unwrap());
    spec.domains = vec!["EU.acme.test".into()];
    a.create_tenant(spec).unwrap();
    assert_eq!(find("eu.acme.test").as_deref(), Some("zz-europe"));
    assert_eq!(find("mail.eu.acme.test.").as_deref(), Some("zz-europe"));
    assert_eq!(find("ACME.test").as_deref(), Some("parent"));
    assert_eq!(find("notacme.test"), None);
    assert_eq!(find("other.test"), None);
}

#[test]
fn an_import_can_be_stopped_and_keeps_what_it_reported() {
    use ama_core::import::{ImportEvent, ImportOptions, import_paths};
    use std::ops::ControlFlow;
    let dir = tempfile::tempdir().unwrap();
    let a = common::create(dir.path());
    let t = common::tenant(&a, "acme");
    let mail = tempfile::tempdir().unwrap();
    for i in 0..10 {
        std::fs::write(
            mail.path().join(format!("{i:02}.eml")),
            format!("From: a@b.c\r\nSubject: stop test {i}\r\n\r\nbody {i}\r\n"),
        )
        .unwrap();
    }
    let options = ImportOptions {
        batch: 3,
        ..ImportOptions::default()
    };
    let mut reported = 0;
    let summary = import_paths(&a, &t, &[mail.path().to_path_buf()], &options, |ev| {
        assert!(matches!(ev, ImportEvent::Archived { .. }));
        reported += 1;
        if reported == 2 {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    })
    .unwrap();
    // The first batch of three was committed and fully reported; no more.
    assert!(summary.stopped);
    assert_eq!((summary.imported, reported), (3, 3));
    let au = Principal::auditor(t.clone());
    assert_eq!(a.search(&au, "", &opts()).unwrap().total, 3);
    // Without a stop, everything comes in (the first three as duplicates).
    let summary = import_paths(&a, &t, &[mail.path().to_path_buf()], &options, |_| {
        ControlFlow::Continue(())
    })
    .unwrap();
    assert_eq!(
        (summary.imported, summary.duplicates, summary.stopped),
        (7, 3, false)
    );
}
