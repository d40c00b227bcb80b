//! Parsing raw mail into what the archive stores and indexes, with the
//! mail-parser crate (RFC 5322 + MIME, encoded words, charsets, never
//! panics).
//!
//! The rule is "archive first, judge later": anything that looks like an
//! Internet message is accepted, and what is odd about it is recorded as
//! [`Anomaly`] flags. Only input that is empty, over the size limit, or not
//! a message at all (no header field where the header section should start)
//! is refused, with an [`IngestError`].
//!
//! The raw bytes are never changed. For parsing only, a leading mbox `From `
//! line and leading blank lines are skipped, so such files still yield their
//! headers.

use mail_parser::{Address, MessageParser, MimeHeaders, PartType};

use crate::error::IngestError;
use crate::message::{Anomaly, AttachmentInfo, Mailbox, MessageMeta};

/// Text of a message that goes into the full-text index but not into the
/// catalog (it is re-extracted from the blob when needed).
#[derive(Debug, Default, Clone)]
pub struct MessageText {
    /// Text of the text/plain parts, or of text/html converted to text.
    pub body: String,
    /// Text of text-like attachments and of attached messages.
    pub attachments: String,
}

/// A parsed message.
#[derive(Debug, Clone)]
pub struct Parsed {
    /// Metadata for the catalog.
    pub meta: MessageMeta,
    /// Text for the index.
    pub text: MessageText,
}

/// At most this much text per message goes into the index (body and
/// attachments each): enough for any real mail, bounded for hostile mail.
pub const MAX_INDEXED_TEXT: usize = 2 * 1024 * 1024;

/// Checks that `raw` can be archived: not empty, not over `limit`, and a message.
pub fn check(raw: &[u8], limit: u64) -> Result<(), IngestError> {
    if raw.len() as u64 > limit {
        return Err(IngestError::TooLarge {
            size: raw.len() as u64,
            limit,
        });
    }
    if raw.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(IngestError::Empty);
    }
    if let (None, Some(what)) = (header_start(raw), binary_kind(raw)) {
        return Err(IngestError::NotAMessage {
            reason: format!("the data is {what}"),
        });
    }
    Ok(())
}

/// Where the header section starts (after an mbox `From ` line and blank
/// lines), and whether blank lines were skipped. `None` when the first line
/// there is not a header field: text without a header is still archived
/// (flagged [`Anomaly::NoHeaders`]); binary data is refused by [`check`].
pub(crate) fn header_start(raw: &[u8]) -> Option<(usize, bool)> {
    let mut pos = 0;
    if raw.starts_with(b"From ") {
        pos = next_line(raw, 0);
    }
    let mut skipped_blank = false;
    while pos < raw.len() {
        let end = next_line(raw, pos);
        let line = trim_eol(&raw[pos..end]);
        if line.iter().all(|b| *b == b' ' || *b == b'\t') {
            skipped_blank = true;
            pos = end;
            continue;
        }
        return is_header_line(line).then_some((pos, skipped_blank));
    }
    None
}

/// Why `raw` is binary data rather than a (possibly malformed) message, if it is.
fn binary_kind(raw: &[u8]) -> Option<&'static str> {
    const MAGIC: &[(&[u8], &str)] = &[
        (
            b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1",
            "an Outlook .msg or other OLE2 file; convert it to .eml (RFC 5322) first",
        ),
        (b"%PDF-", "a PDF document"),
        (b"PK\x03\x04", "a ZIP archive"),
        (b"\x89PNG", "a PNG image"),
        (b"GIF8", "a GIF image"),
        (b"\xff\xd8\xff", "a JPEG image"),
        (b"\x1f\x8b", "gzip-compressed data; decompress it first"),
        (
            b"\x28\xb5\x2f\xfd",
            "zstd-compressed data; decompress it first",
        ),
    ];
    if let Some((_, what)) = MAGIC.iter().find(|(m, _)| raw.starts_with(m)) {
        return Some(what);
    }
    let head = &raw[..raw.len().min(1024)];
    let controls = head
        .iter()
        .filter(|&&b| {
            b == 0 || b == 0x7f || (b < 0x20 && !matches!(b, b'\t' | b'\n' | b'\r' | 0x0c | 0x1b))
        })
        .count();
    (head.contains(&0) || controls * 10 > head.len())
        .then_some("binary data (NUL or control bytes)")
}

fn next_line(raw: &[u8], pos: usize) -> usize {
    match raw[pos..].iter().position(|&b| b == b'\n') {
        Some(i) => pos + i + 1,
        None => raw.len(),
    }
}

fn trim_eol(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// RFC 5322 field-name: printable ASCII except colon, then a colon (space
/// before the colon is tolerated, as old mailers wrote `Subject :`).
fn is_header_line(line: &[u8]) -> bool {
    let Some(colon) = line.iter().position(|&b| b == b':') else {
        return false;
    };
    let mut name = &line[..colon];
    while let Some(n) = name.strip_suffix(b" ").or_else(|| name.strip_suffix(b"\t")) {
        name = n;
    }
    !name.is_empty() && name.len() <= 76 && name.iter().all(|&b| (33..=126).contains(&b))
}

/// Parses `raw` (which must have passed [`check`]). `received_at` is the
/// fallback date (Unix seconds).
///
/// Never panics: should the MIME parser panic on some input (fuzzing found a
/// debug assertion in mail-parser), the message is still archived, as a
/// body-only message flagged [`Anomaly::ParserFailure`].
pub fn parse(raw: &[u8], received_at: i64) -> Parsed {
    std::panic::catch_unwind(|| parse_unguarded(raw, received_at)).unwrap_or_else(|_| Parsed {
        meta: empty_meta(raw.len() as u64, received_at, vec![Anomaly::ParserFailure]),
        text: MessageText {
            body: lossy_capped(raw),
            attachments: String::new(),
        },
    })
}

fn parse_unguarded(raw: &[u8], received_at: i64) -> Parsed {
    let mut anomalies = Vec::new();
    let (start, skipped_blank) = match header_start(raw) {
        Some(v) => v,
        None => {
            anomalies.push(Anomaly::NoHeaders);
            return Parsed {
                meta: empty_meta(raw.len() as u64, received_at, anomalies),
                text: MessageText {
                    body: lossy_capped(raw),
                    attachments: String::new(),
                },
            };
        }
    };
    if skipped_blank {
        anomalies.push(Anomaly::LeadingBlankLines);
    }
    if raw.contains(&0) {
        anomalies.push(Anomaly::NulBytes);
    }
    let parser = MessageParser::default();
    let Some(msg) = parser.parse(&raw[start..]) else {
        anomalies.push(Anomaly::NoHeaders);
        return Parsed {
            meta: empty_meta(raw.len() as u64, received_at, anomalies),
            text: MessageText {
                body: lossy_capped(&raw[start..]),
                attachments: String::new(),
            },
        };
    };

    let from = mailboxes(msg.from());
    if from.is_empty() {
        anomalies.push(Anomaly::MissingFrom);
    }
    let header_date = msg
        .date()
        .filter(|d| d.is_valid() && (1970..=9999).contains(&d.year))
        .map(|d| d.to_timestamp());
    if header_date.is_none() {
        anomalies.push(Anomaly::BadDate);
    }
    let message_id = msg.message_id().map(clean_id).filter(|s| !s.is_empty());
    if message_id.is_none() {
        anomalies.push(Anomaly::MissingMessageId);
    }
    if msg.parts.iter().any(|p| p.is_encoding_problem) {
        anomalies.push(Anomaly::EncodingProblem);
    }

    let mut text = MessageText::default();
    for i in 0..msg.text_body_count() {
        if let Some(t) = msg.body_text(i) {
            push_capped(&mut text.body, &t);
        }
    }
    let mut attachments = Vec::new();
    for part in msg.attachments() {
        let mime_type = part
            .content_type()
            .map(|ct| match ct.subtype() {
                Some(sub) => format!("{}/{}", ct.ctype(), sub),
                None => ct.ctype().to_string(),
            })
            .unwrap_or_else(|| "application/octet-stream".into())
            .to_ascii_lowercase();
        let name = part.attachment_name().map(str::to_string).or_else(|| {
            // An attached message is named by its subject.
            match &part.body {
                PartType::Message(m) => m.subject().map(|s| format!("{s}.eml")),
                _ => None,
            }
        });
        attachments.push(AttachmentInfo {
            name,
            mime_type,
            size: part.len() as u64,
        });
        match &part.body {
            PartType::Text(t) => push_capped(&mut text.attachments, t),
            PartType::Html(h) => push_capped(
                &mut text.attachments,
                &mail_parser::decoders::html::html_to_text(h),
            ),
            PartType::Message(m) => {
                if let Some(s) = m.subject() {
                    push_capped(&mut text.attachments, s);
                }
                for a in [m.from(), m.to(), m.cc()].into_iter().flatten() {
                    for mb in mailboxes(Some(a)) {
                        push_capped(&mut text.attachments, &mb.to_string());
                    }
                }
                for i in 0..m.text_body_count() {
                    if let Some(t) = m.body_text(i) {
                        push_capped(&mut text.attachments, &t);
                    }
                }
            }
            _ => {}
        }
    }

    let meta = MessageMeta {
        message_id,
        from,
        sender: mailboxes(msg.sender()),
        to: mailboxes(msg.to()),
        cc: mailboxes(msg.cc()),
        bcc: mailboxes(msg.bcc()),
        reply_to: mailboxes(msg.reply_to()),
        subject: msg.subject().map(str::to_string),
        date: header_date.unwrap_or(received_at),
        header_date,
        in_reply_to: id_list(msg.in_reply_to()),
        references: id_list(msg.references()),
        attachments,
        size: raw.len() as u64,
        anomalies,
    };
    Parsed { meta, text }
}

fn empty_meta(size: u64, received_at: i64, anomalies: Vec<Anomaly>) -> MessageMeta {
    MessageMeta {
        message_id: None,
        from: vec![],
        sender: vec![],
        to: vec![],
        cc: vec![],
        bcc: vec![],
        reply_to: vec![],
        subject: None,
        date: received_at,
        header_date: None,
        in_reply_to: vec![],
        references: vec![],
        attachments: vec![],
        size,
        anomalies,
    }
}

fn mailboxes(a: Option<&Address<'_>>) -> Vec<Mailbox> {
    let Some(a) = a else { return vec![] };
    a.iter()
        .filter_map(|addr| {
            let address = addr.address().unwrap_or("").trim().to_string();
            let name = addr
                .name()
                .map(|n| n.trim().to_string())
                .filter(|n| !n.is_empty());
            if address.is_empty() && name.is_none() {
                None
            } else {
                Some(Mailbox { name, address })
            }
        })
        .collect()
}

fn clean_id(s: &str) -> String {
    let s = s.trim();
    let s = s.strip_prefix('<').unwrap_or(s);
    s.strip_suffix('>').unwrap_or(s).trim().to_string()
}

fn id_list(v: &mail_parser::HeaderValue<'_>) -> Vec<String> {
    if let Some(list) = v.as_text_list() {
        list.iter().map(|s| clean_id(s)).collect()
    } else if let Some(t) = v.as_text() {
        vec![clean_id(t)]
    } else {
        vec![]
    }
}

fn push_capped(buf: &mut String, s: &str) {
    if buf.len() >= MAX_INDEXED_TEXT {
        return;
    }
    if !buf.is_empty() {
        buf.push('\n');
    }
    let room = MAX_INDEXED_TEXT - buf.len();
    if s.len() <= room {
        buf.push_str(s);
    } else {
        let mut cut = room;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        buf.push_str(&s[..cut]);
    }
}

fn lossy_capped(raw: &[u8]) -> String {
    let mut s = String::new();
    push_capped(&mut s, &String::from_utf8_lossy(raw));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: u64 = 1 << 20;

    #[test]
    fn refuses_empty_large_and_non_messages() {
        assert_eq!(check(b"", LIMIT), Err(IngestError::Empty));
        assert_eq!(check(b" \r\n\n", LIMIT), Err(IngestError::Empty));
        assert!(matches!(
            check(&vec![b'a'; 2000], 1000),
            Err(IngestError::TooLarge {
                size: 2000,
                limit: 1000
            })
        ));
        for junk in [
            &b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR"[..],
            b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n",
            b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1\0\0",
            b"\x01\x02\x03\x04 binary \x05\x06\x07\x08\x0e\x0f",
        ] {
            assert!(
                matches!(check(junk, LIMIT), Err(IngestError::NotAMessage { .. })),
                "{junk:?}"
            );
        }
    }

    #[test]
    fn text_without_headers_is_archived_and_flagged() {
        for text in [
            &b"hello world, this is not mail\n"[..],
            b": no name\n",
            b"a\n",
            b"From someone\n\nbody only",
        ] {
            check(text, LIMIT).unwrap();
            let p = parse(text, 7);
            assert!(p.meta.anomalies.contains(&Anomaly::NoHeaders), "{text:?}");
            assert_eq!(p.meta.date, 7);
        }
        assert!(parse(b"hello world\n", 0).text.body.contains("hello world"));
    }

    #[test]
    fn obsolete_space_before_colon_is_a_header() {
        let raw = b"To    : Mary Smith <mary@x.test>\nSubject : hi\n\nbody";
        check(raw, LIMIT).unwrap();
        assert!(!parse(raw, 0).meta.anomalies.contains(&Anomaly::NoHeaders));
    }

    #[test]
    fn accepts_leading_blank_line_and_mbox_from_line() {
        let raw = b"\nDate: Mon, 2 Apr 2001 10:00:00 -0700\nFrom: a@b.c\nSubject: hi\n\nbody";
        check(raw, LIMIT).unwrap();
        let p = parse(raw, 5);
        assert_eq!(p.meta.subject.as_deref(), Some("hi"));
        assert!(p.meta.anomalies.contains(&Anomaly::LeadingBlankLines));
        let raw = b"From x@y Mon Jan  1 00:00:00 2001\nFrom: a@b.c\nSubject: yo\n\nb";
        check(raw, LIMIT).unwrap();
        assert_eq!(parse(raw, 5).meta.subject.as_deref(), Some("yo"));
    }

    #[test]
    fn extracts_fields_and_decodes() {
        let raw = concat!(
            "From: =?utf-8?q?J=C3=BCrgen_M=C3=BCller?= <jm@example.de>\r\n",
            "To: a@example.com, \"B\" <b@example.com>\r\n",
            "Cc: c@example.com\r\n",
            "Subject: =?iso-8859-1?q?Gr=FC=DFe?=\r\n",
            "Message-ID: <abc@host>\r\n",
            "In-Reply-To: <x@y>\r\n",
            "Date: Tue, 3 Apr 2001 10:00:00 +0000\r\n",
            "MIME-Version: 1.0\r\n",
            "Content-Type: multipart/mixed; boundary=b\r\n\r\n",
            "--b\r\nContent-Type: text/html\r\n\r\n<p>Hello <b>world</b></p>\r\n",
            "--b\r\nContent-Type: text/plain; name=notes.txt\r\nContent-Disposition: attachment; filename=notes.txt\r\n\r\nattached words\r\n",
            "--b--\r\n"
        );
        let p = parse(raw.as_bytes(), 0);
        let m = &p.meta;
        assert_eq!(m.from[0].name.as_deref(), Some("Jürgen Müller"));
        assert_eq!(m.from[0].address, "jm@example.de");
        assert_eq!(m.to.len(), 2);
        assert_eq!(m.subject.as_deref(), Some("Grüße"));
        assert_eq!(m.message_id.as_deref(), Some("abc@host"));
        assert_eq!(m.in_reply_to, vec!["x@y".to_string()]);
        assert_eq!(m.date, 986292000);
        assert_eq!(m.attachments.len(), 1);
        assert_eq!(m.attachments[0].name.as_deref(), Some("notes.txt"));
        assert!(p.text.body.contains("Hello"), "{:?}", p.text.body);
        assert!(!p.text.body.contains("<b>"));
        assert!(p.text.attachments.contains("attached words"));
        assert!(m.anomalies.is_empty(), "{:?}", m.anomalies);
    }

    /// Every input the fuzzers found is replayed: each must pass `check` or
    /// be refused, and `parse` must not panic.
    #[test]
    fn fuzz_regressions_do_not_panic() {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/regressions/parse_mail");
        let mut n = 0;
        for e in std::fs::read_dir(&dir).unwrap() {
            let raw = std::fs::read(e.unwrap().path()).unwrap();
            if check(&raw, LIMIT).is_ok() {
                parse(&raw, 0);
            }
            n += 1;
        }
        assert!(n >= 1, "no regression inputs in {}", dir.display());
    }

    #[test]
    fn bad_date_falls_back_to_reception() {
        let p = parse(b"From: a@b.c\nDate: yesterday-ish\n\nx", 1234);
        assert_eq!(p.meta.date, 1234);
        assert_eq!(p.meta.header_date, None);
        assert!(p.meta.anomalies.contains(&Anomaly::BadDate));
        assert!(p.meta.anomalies.contains(&Anomaly::MissingMessageId));
    }
}
