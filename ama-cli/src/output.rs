//! Turning engine values into text and JSON.
//!
//! Header values come from strangers' mail: a subject may hold escape
//! sequences that would reprogram the operator's terminal. Everything shown
//! in human output goes through [`clean`]; JSON output is escaped by
//! serde_json and needs no such care.

use std::io::Write;

use ama_core::message::Mailbox;
use ama_core::{Anomaly, AttachmentInfo, MessageInfo, crypto};
use serde::Serialize;
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// `value` with control characters (escape sequences, newlines) and
/// bidirectional overrides (which can make text read backwards) replaced,
/// safe to print on a terminal, one line.
pub fn clean(value: &str) -> String {
    value
        .chars()
        .map(|c| {
            let bidi = matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
            if c.is_control() || bidi {
                '\u{fffd}'
            } else {
                c
            }
        })
        .collect()
}

/// `value` cut to `width` characters (with `…`) and padded to exactly `width`.
pub fn fit(value: &str, width: usize) -> String {
    let n = value.chars().count();
    if n > width {
        let mut s: String = value.chars().take(width.saturating_sub(1)).collect();
        s.push('…');
        s
    } else {
        format!("{value}{}", " ".repeat(width - n))
    }
}

/// A Unix timestamp as RFC 3339 in UTC, or `null` if it is out of range.
pub fn rfc3339(ts: i64) -> Value {
    OffsetDateTime::from_unix_timestamp(ts)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .map_or(Value::Null, Value::String)
}

/// A Unix timestamp as `YYYY-MM-DD HH:MM` UTC.
pub fn short_date(ts: i64) -> String {
    let fmt = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]");
    OffsetDateTime::from_unix_timestamp(ts)
        .ok()
        .and_then(|t| t.format(&fmt).ok())
        .unwrap_or_else(|| format!("@{ts}"))
}

/// The sender to show: the first From address, or its display form when
/// the address is empty (a group or a broken header).
pub fn first_from(info: &MessageInfo) -> String {
    match info.meta.from.first() {
        Some(m) if !m.address.is_empty() => m.address.clone(),
        Some(m) => m.to_string(),
        None => String::new(),
    }
}

fn addresses(list: &[Mailbox]) -> Vec<&str> {
    list.iter()
        .map(|m| m.address.as_str())
        .filter(|a| !a.is_empty())
        .collect()
}

/// One search hit (one line of `ama search --json`).
#[derive(Debug, Serialize)]
pub struct Hit<'a> {
    id: String,
    /// Message date, RFC 3339 UTC.
    date: Value,
    from: String,
    to: Vec<&'a str>,
    cc: Vec<&'a str>,
    subject: Option<&'a str>,
    size: u64,
    message_id: Option<&'a str>,
    /// Number of attachments.
    attachments: usize,
    sha256: String,
}

impl<'a> Hit<'a> {
    /// The hit for `info`.
    pub fn new(info: &'a MessageInfo) -> Self {
        let m = &info.meta;
        Hit {
            id: info.id.to_string(),
            date: rfc3339(m.date),
            from: first_from(info),
            to: addresses(&m.to),
            cc: addresses(&m.cc),
            subject: m.subject.as_deref(),
            size: m.size,
            message_id: m.message_id.as_deref(),
            attachments: m.attachments.len(),
            sha256: crypto::hex(&info.sha256),
        }
    }
}

/// Everything the catalog knows about a message (`ama show --info`).
#[derive(Debug, Serialize)]
pub struct Info<'a> {
    id: String,
    sha256: String,
    size: u64,
    date: Value,
    header_date: Value,
    message_id: Option<&'a str>,
    subject: Option<&'a str>,
    from: &'a [Mailbox],
    sender: &'a [Mailbox],
    to: &'a [Mailbox],
    cc: &'a [Mailbox],
    bcc: &'a [Mailbox],
    reply_to: &'a [Mailbox],
    in_reply_to: &'a [String],
    references: &'a [String],
    attachments: &'a [AttachmentInfo],
    anomalies: Vec<String>,
    envelope_recipients: Vec<String>,
    deliveries: Vec<DeliveryJson<'a>>,
}

/// A delivery with a readable time.
#[derive(Debug, Serialize)]
struct DeliveryJson<'a> {
    received_at: Value,
    source: String,
    mail_from: Option<&'a str>,
    rcpt_to: &'a [String],
}

impl<'a> Info<'a> {
    /// The metadata of `info`.
    pub fn new(info: &'a MessageInfo) -> Self {
        let m = &info.meta;
        Info {
            id: info.id.to_string(),
            sha256: crypto::hex(&info.sha256),
            size: m.size,
            date: rfc3339(m.date),
            header_date: m.header_date.map_or(Value::Null, rfc3339),
            message_id: m.message_id.as_deref(),
            subject: m.subject.as_deref(),
            from: &m.from,
            sender: &m.sender,
            to: &m.to,
            cc: &m.cc,
            bcc: &m.bcc,
            reply_to: &m.reply_to,
            in_reply_to: &m.in_reply_to,
            references: &m.references,
            attachments: &m.attachments,
            anomalies: m.anomalies.iter().map(anomaly_name).collect(),
            envelope_recipients: info.envelope_recipients(),
            deliveries: info
                .deliveries
                .iter()
                .map(|d| DeliveryJson {
                    received_at: rfc3339(d.received_at),
                    source: d.source.to_string(),
                    mail_from: d.mail_from.as_deref(),
                    rcpt_to: &d.rcpt_to,
                })
                .collect(),
        }
    }
}

/// The name of an anomaly, as serde gives it (`NoHeaders`, …).
fn anomaly_name(a: &Anomaly) -> String {
    match serde_json::to_value(a) {
        Ok(Value::String(s)) => s,
        _ => format!("{a:?}"),
    }
}

/// Writes `value` as one line of JSON.
pub fn json_line(out: &mut impl Write, value: &impl Serialize) -> anyhow::Result<()> {
    serde_json::to_writer(&mut *out, value)?;
    out.write_all(b"\n")?;
    Ok(())
}

/// Bytes for people: `512 B`, `1.5 KiB`, `3.2 MiB`, …
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// A plain text table: a header row and left-aligned columns, two spaces apart.
pub fn table(out: &mut impl Write, header: &[&str], rows: &[Vec<String>]) -> anyhow::Result<()> {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| -> String {
        let last = cells.len().saturating_sub(1);
        let mut s = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i == last {
                s.push_str(cell);
            } else {
                s.push_str(&fit(cell, *w));
                s.push_str("  ");
            }
        }
        s
    };
    writeln!(out, "{}", line(header.to_vec()))?;
    for row in rows {
        writeln!(out, "{}", line(row.iter().map(String::as_str).collect()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_defuses_terminal_escapes() {
        assert_eq!(
            clean("a\u{1b}[2Jb\nc\u{202e}d"),
            "a\u{fffd}[2Jb\u{fffd}c\u{fffd}d"
        );
        assert_eq!(clean("Grüße"), "Grüße");
    }

    #[test]
    fn fit_pads_and_cuts() {
        assert_eq!(fit("abc", 5), "abc  ");
        assert_eq!(fit("abcdef", 4), "abc…");
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(short_date(1_727_778_600), "2024-10-01 10:30");
        assert_eq!(rfc3339(0), Value::String("1970-01-01T00:00:00Z".into()));
    }
}
