//! Engine values → plain Python values (the shapes `_ama.pyi` declares).
//!
//! Timestamps cross as Unix seconds (`int`); the Python side turns them into
//! timezone-aware `datetime`s. Mailboxes are `(name, address)` tuples,
//! attachments `(name, mime_type, size)`, deliveries
//! `(mail_from, rcpt_to, received_at, source)`. A message is a tuple of the
//! fields of `ama.Hit`, in order.

use ama_core::{Mailbox, MessageInfo, Receipt, Tenant, TenantStats};
use pyo3::prelude::*;
use pyo3::types::PyTuple;

/// `(name, address)`.
pub(crate) type MailboxTuple = (Option<String>, String);

fn mailboxes(v: Vec<Mailbox>) -> Vec<MailboxTuple> {
    v.into_iter().map(|m| (m.name, m.address)).collect()
}

/// A message's metadata as a tuple in the field order of `ama.Hit`: `(id,
/// date, subject, from_, sender, to, cc, bcc, reply_to, message_id,
/// header_date, in_reply_to, references, attachments, size, anomalies,
/// sha256, deliveries)`. A tuple, not a dict: a page of hits is converted
/// while holding the GIL, so this is kept lean.
pub(crate) fn info<'py>(py: Python<'py>, info: MessageInfo) -> PyResult<Bound<'py, PyTuple>> {
    let m = info.meta;
    let attachments: Vec<(Option<String>, String, u64)> = m
        .attachments
        .into_iter()
        .map(|a| (a.name, a.mime_type, a.size))
        .collect();
    let anomalies: Vec<String> = m.anomalies.iter().map(|a| a.as_str().to_string()).collect();
    let deliveries: Vec<(Option<String>, Vec<String>, i64, String)> = info
        .deliveries
        .into_iter()
        .map(|x| (x.mail_from, x.rcpt_to, x.received_at, x.source.to_string()))
        .collect();
    let fields: [Bound<'py, PyAny>; 18] = [
        info.id.to_string().into_pyobject(py)?.into_any(),
        m.date.into_pyobject(py)?.into_any(),
        m.subject.into_pyobject(py)?.into_any(),
        mailboxes(m.from).into_pyobject(py)?.into_any(),
        mailboxes(m.sender).into_pyobject(py)?.into_any(),
        mailboxes(m.to).into_pyobject(py)?.into_any(),
        mailboxes(m.cc).into_pyobject(py)?.into_any(),
        mailboxes(m.bcc).into_pyobject(py)?.into_any(),
        mailboxes(m.reply_to).into_pyobject(py)?.into_any(),
        m.message_id.into_pyobject(py)?.into_any(),
        m.header_date.into_pyobject(py)?.into_any(),
        m.in_reply_to.into_pyobject(py)?.into_any(),
        m.references.into_pyobject(py)?.into_any(),
        attachments.into_pyobject(py)?.into_any(),
        m.size.into_pyobject(py)?.into_any(),
        anomalies.into_pyobject(py)?.into_any(),
        ama_core::crypto::hex(&info.sha256)
            .into_pyobject(py)?
            .into_any(),
        deliveries.into_pyobject(py)?.into_any(),
    ];
    PyTuple::new(py, fields)
}

/// `(id, sha256 hex, duplicate)`.
pub(crate) type ReceiptTuple = (String, String, bool);

pub(crate) fn receipt(r: &Receipt) -> ReceiptTuple {
    (r.id.to_string(), r.sha256_hex(), r.duplicate)
}

/// `(id, name, region, domains, retention, created_at)`.
pub(crate) type TenantTuple = (String, String, String, Vec<String>, String, i64);

pub(crate) fn tenant(t: Tenant) -> TenantTuple {
    (
        t.id.to_string(),
        t.name,
        t.region.to_string(),
        t.domains,
        t.retention.to_string(),
        t.created_at,
    )
}

/// `(messages, raw_bytes, stored_bytes, duplicates)`.
pub(crate) type StatsTuple = (u64, u64, u64, u64);

pub(crate) fn stats(s: TenantStats) -> StatsTuple {
    (s.messages, s.raw_bytes, s.stored_bytes, s.duplicates)
}
