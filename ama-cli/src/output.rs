//! Turning engine values into text and JSON.
//!
//! Header values come from strangers' mail: a subject may hold escape
//! sequences that would reprogram the operator's terminal. Everything shown
//! in human output goes through [`clean`]; JSON output is escaped by
//! serde_json and needs no such care.

use std::io::Write;

use ama_core::message::Mailbox;
use ama_core::{Anomaly, MessageInfo, crypto};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// `value` with control characters replaced, safe to print on a terminal.
pub fn clean(value: &str) -> String {
    value
        .chars()
        .map(|c| if c.is_control() { '\u{fffd}' } else { c })
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

/// One search hit as a flat JSON object (one line of `ama search --json`).
pub fn hit_json(info: &MessageInfo) -> Value {
    let m = &info.meta;
    json!({
        "id": info.id.to_string(),
        "date": rfc3339(m.date),
        "from": first_from(info),
        "to": addresses(&m.to),
        "cc": addresses(&m.cc),
        "subject": m.subject,
        "size": m.size,
        "message_id": m.message_id,
        "attachments": m.attachments.len(),
        "sha256": crypto::hex(&info.sha256),
    })
}

/// Everything the catalog knows about a message (`ama show --info`).
pub fn info_json(info: &MessageInfo) -> Value {
    let m = &info.meta;
    let deliveries: Vec<Value> = info
        .deliveries
        .iter()
        .map(|d| {
            json!({
                "mail_from": d.mail_from,
                "rcpt_to": d.rcpt_to,
                "received_at": rfc3339(d.received_at),
                "source": d.source.to_string(),
            })
        })
        .collect();
    let anomalies: Vec<String> = m.anomalies.iter().map(anomaly_name).collect();
    json!({
        "id": info.id.to_string(),
        "sha256": crypto::hex(&info.sha256),
        "size": m.size,
        "date": rfc3339(m.date),
        "header_date": m.header_date.map(rfc3339),
        "message_id": m.message_id,
        "subject": m.subject,
        "from": m.from,
        "sender": m.sender,
        "to": m.to,
        "cc": m.cc,
        "bcc": m.bcc,
        "reply_to": m.reply_to,
        "in_reply_to": m.in_reply_to,
        "references": m.references,
        "attachments": m.attachments,
        "anomalies": anomalies,
        "deliveries": deliveries,
        "envelope_recipients": info.envelope_recipients(),
    })
}

/// The name of an anomaly, as serde gives it (`NoHeaders`, …).
fn anomaly_name(a: &Anomaly) -> String {
    match serde_json::to_value(a) {
        Ok(Value::String(s)) => s,
        _ => format!("{a:?}"),
    }
}

/// Writes `value` as one line of JSON.
pub fn json_line(out: &mut impl Write, value: &Value) -> anyhow::Result<()> {
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
