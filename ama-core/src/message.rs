//! What a message is to the engine: its opaque [`MessageId`], the SMTP-style
//! [`Envelope`] it arrived with, the [`Receipt`] ingest hands back, and the
//! parsed [`MessageMeta`] that is stored (encrypted) in the catalog and shown
//! in search results.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::crypto;

/// An archive-wide opaque message id: 48 bits of milliseconds since the Unix
/// epoch followed by 80 random bits, written as 26 Crockford base32
/// characters (`01JD3…`). It reveals nothing but roughly when the message was
/// archived, sorts by archive time, and needs no coordination between nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MessageId(u128);

const CROCKFORD: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

impl MessageId {
    /// A new id for a message archived now.
    pub fn generate() -> Result<Self, crate::CryptoError> {
        let ms = (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as u128;
        let mut rnd = [0u8; 10];
        crypto::random_fill(&mut rnd)?;
        let mut r: u128 = 0;
        for b in rnd {
            r = (r << 8) | b as u128;
        }
        Ok(MessageId(((ms & ((1 << 48) - 1)) << 80) | r))
    }

    /// The id as a number (catalog key).
    pub fn as_u128(self) -> u128 {
        self.0
    }

    /// An id from its numeric form.
    pub fn from_u128(v: u128) -> Self {
        MessageId(v)
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = [0u8; 26];
        let mut v = self.0;
        for slot in buf.iter_mut().rev() {
            *slot = CROCKFORD[(v & 31) as usize];
            v >>= 5;
        }
        // 26 * 5 = 130 bits: the first character carries only 3 bits.
        f.write_str(std::str::from_utf8(&buf).map_err(|_| fmt::Error)?)
    }
}

/// Why a string is not a [`MessageId`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid message id {0:?}: expected 26 characters of Crockford base32")]
pub struct InvalidMessageId(pub String);

impl FromStr for MessageId {
    type Err = InvalidMessageId;
    fn from_str(s: &str) -> Result<Self, InvalidMessageId> {
        let bad = || InvalidMessageId(s.chars().take(64).collect());
        if s.len() != 26 {
            return Err(bad());
        }
        let mut v: u128 = 0;
        for (i, c) in s.bytes().enumerate() {
            let d = match c.to_ascii_uppercase() {
                b'O' => 0,
                b'I' | b'L' => 1,
                u => CROCKFORD.iter().position(|&x| x == u).ok_or_else(bad)? as u128,
            };
            if i == 0 && d > 7 {
                return Err(bad());
            }
            v = (v << 5) | d;
        }
        Ok(MessageId(v))
    }
}

/// How a message reached the archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// The SMTP archive node.
    Smtp,
    /// The HTTP API.
    Http,
    /// `ama import` or a library import.
    Import,
    /// The Python package.
    Python,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Source::Smtp => "smtp",
            Source::Http => "http",
            Source::Import => "import",
            Source::Python => "python",
        })
    }
}

/// The delivery envelope: who handed the message over, to whom, when, and
/// how. Envelope recipients matter: a Bcc recipient appears only here, and
/// must still find the mail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// SMTP `MAIL FROM` (reverse path); `None` for the null sender or imports.
    pub mail_from: Option<String>,
    /// Every SMTP `RCPT TO`.
    pub rcpt_to: Vec<String>,
    /// When the archive received it.
    pub received_at: OffsetDateTime,
    /// Through which frontend.
    pub source: Source,
}

impl Envelope {
    /// An envelope received now from `source`, with no addresses.
    pub fn new(source: Source) -> Self {
        Envelope {
            mail_from: None,
            rcpt_to: Vec::new(),
            received_at: OffsetDateTime::now_utc(),
            source,
        }
    }

    /// Sets `MAIL FROM`.
    pub fn mail_from(mut self, addr: impl Into<String>) -> Self {
        self.mail_from = Some(addr.into());
        self
    }

    /// Adds a `RCPT TO`.
    pub fn rcpt(mut self, addr: impl Into<String>) -> Self {
        self.rcpt_to.push(addr.into());
        self
    }

    /// Sets the reception time.
    pub fn received_at(mut self, t: OffsetDateTime) -> Self {
        self.received_at = t;
        self
    }
}

/// What ingest returns once the message is durable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// The archive id (for a duplicate: the id of the copy already stored).
    pub id: MessageId,
    /// SHA-256 of the exact raw bytes, for proofs.
    pub sha256: [u8; 32],
    /// True when the same bytes were already archived in this tenant; the
    /// new envelope recipients were merged into the stored message.
    pub duplicate: bool,
}

impl Receipt {
    /// The SHA-256 as lower-case hex.
    pub fn sha256_hex(&self) -> String {
        crypto::hex(&self.sha256)
    }
}

/// A mailbox from an address header: display name and address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mailbox {
    /// Display name, decoded.
    pub name: Option<String>,
    /// The address as written (may be empty for a group or a broken header).
    pub address: String,
}

impl fmt::Display for Mailbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.name {
            Some(n) if !n.is_empty() => write!(f, "{n} <{}>", self.address),
            _ => f.write_str(&self.address),
        }
    }
}

/// An attachment's description (the content stays in the blob).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachmentInfo {
    /// File name, decoded, if the part has one.
    pub name: Option<String>,
    /// MIME type, e.g. `application/pdf`.
    pub mime_type: String,
    /// Decoded size in bytes.
    pub size: u64,
}

/// Something odd about a message. Such mail is archived anyway; the flag
/// says why it may look incomplete.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Anomaly {
    /// No header section could be found before the body.
    NoHeaders,
    /// The header section starts after blank lines.
    LeadingBlankLines,
    /// No `From` header.
    MissingFrom,
    /// No `Date`, or one that could not be read; the reception time is used.
    BadDate,
    /// No `Message-ID`.
    MissingMessageId,
    /// A part could not be decoded with its declared encoding or charset.
    EncodingProblem,
    /// The message contains NUL bytes.
    NulBytes,
    /// The MIME parser failed on this message; it is archived as body text.
    ParserFailure,
}

impl Anomaly {
    /// A stable snake_case name (`missing_from`), for JSON, Python and logs.
    pub fn as_str(&self) -> &'static str {
        match self {
            Anomaly::NoHeaders => "no_headers",
            Anomaly::LeadingBlankLines => "leading_blank_lines",
            Anomaly::MissingFrom => "missing_from",
            Anomaly::BadDate => "bad_date",
            Anomaly::MissingMessageId => "missing_message_id",
            Anomaly::EncodingProblem => "encoding_problem",
            Anomaly::NulBytes => "nul_bytes",
            Anomaly::ParserFailure => "parser_failure",
        }
    }
}

impl fmt::Display for Anomaly {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Parsed metadata of a message, as stored (encrypted) in the catalog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageMeta {
    /// `Message-ID`, without angle brackets.
    pub message_id: Option<String>,
    /// `From`.
    pub from: Vec<Mailbox>,
    /// `Sender`.
    pub sender: Vec<Mailbox>,
    /// `To`.
    pub to: Vec<Mailbox>,
    /// `Cc`.
    pub cc: Vec<Mailbox>,
    /// `Bcc` (rarely present in delivered mail; journaling adds it).
    pub bcc: Vec<Mailbox>,
    /// `Reply-To`.
    pub reply_to: Vec<Mailbox>,
    /// `Subject`, decoded.
    pub subject: Option<String>,
    /// The date used for sorting and `after:`/`before:`: the `Date` header,
    /// or the reception time when it is missing or invalid (Unix seconds).
    pub date: i64,
    /// The `Date` header as read, if valid (Unix seconds).
    pub header_date: Option<i64>,
    /// `In-Reply-To` ids.
    pub in_reply_to: Vec<String>,
    /// `References` ids.
    pub references: Vec<String>,
    /// Attachments.
    pub attachments: Vec<AttachmentInfo>,
    /// Raw size in bytes.
    pub size: u64,
    /// What was odd about it.
    pub anomalies: Vec<Anomaly>,
}

impl MessageMeta {
    /// The effective date as a timestamp.
    pub fn date_time(&self) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(self.date).unwrap_or(OffsetDateTime::UNIX_EPOCH)
    }
}

/// A stored delivery of a message (one per ingest of the same bytes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// `MAIL FROM` of this delivery.
    pub mail_from: Option<String>,
    /// `RCPT TO` of this delivery.
    pub rcpt_to: Vec<String>,
    /// When it was received (Unix seconds).
    pub received_at: i64,
    /// Through which frontend.
    pub source: Source,
}

/// Everything the catalog knows about a message: what [`crate::Archive::get`]
/// returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageInfo {
    /// The archive id.
    pub id: MessageId,
    /// SHA-256 of the raw bytes.
    pub sha256: [u8; 32],
    /// Parsed metadata.
    pub meta: MessageMeta,
    /// Every delivery, first first.
    pub deliveries: Vec<Delivery>,
}

impl MessageInfo {
    /// All envelope recipients across deliveries, de-duplicated.
    pub fn envelope_recipients(&self) -> Vec<String> {
        let mut v: Vec<String> = Vec::new();
        for d in &self.deliveries {
            for r in &d.rcpt_to {
                if !v.iter().any(|x| x.eq_ignore_ascii_case(r)) {
                    v.push(r.clone());
                }
            }
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_id_text_round_trip() {
        for _ in 0..100 {
            let id = MessageId::generate().unwrap();
            let s = id.to_string();
            assert_eq!(s.len(), 26);
            assert_eq!(s.parse::<MessageId>().unwrap(), id);
            assert_eq!(s.to_lowercase().parse::<MessageId>().unwrap(), id);
        }
        assert_eq!(MessageId::from_u128(u128::MAX).to_string().len(), 26);
        for bad in [
            "",
            "x",
            "8ZZZZZZZZZZZZZZZZZZZZZZZZZ",
            "0000000000000000000000000U",
            "ü",
        ] {
            assert!(bad.parse::<MessageId>().is_err(), "{bad}");
        }
    }

    #[test]
    fn ids_sort_by_time() {
        let a = MessageId::generate().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = MessageId::generate().unwrap();
        assert!(a < b);
    }
}
