//! Microsoft Exchange / Microsoft 365 envelope journal reports.
//!
//! Why: with journaling, Exchange does not send the archive the original
//! message but a *report* about it: a `multipart/mixed` message carrying the
//! header `X-MS-Journal-Report`, whose first part is the envelope (plain
//! text lines `Sender:`, `Subject:`, `Message-Id:`, then one `To:`, `Cc:`,
//! `Bcc:` or — in the Exchange 2007 format — `Recipient:` line per
//! recipient, members of expanded distribution lists written as
//! `To: member@x, Expanded: list@x`) and whose second part is the original
//! as `message/rfc822`. Archiving the report as-is would lose the Bcc and
//! list recipients (they are not in the original's headers) and would make
//! the archive hold reports instead of mail. So, for tenants that enable
//! it, the node archives the embedded original, byte-exact, with the
//! recipients the report lists as its envelope.

use std::collections::HashSet;

use ama_core::TenantId;
use mail_parser::{MessageParser, PartType};

/// Which tenants' journal reports are unpacked.
#[derive(Debug, Clone, Default)]
pub struct JournalPolicy {
    /// Every tenant.
    pub all: bool,
    /// These tenants.
    pub tenants: HashSet<TenantId>,
}

impl JournalPolicy {
    /// Whether reports for `tenant` are unpacked.
    pub fn enabled_for(&self, tenant: &TenantId) -> bool {
        self.all || self.tenants.contains(tenant)
    }
}

/// What a journal report says about the original message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The original's sender (`Sender:` line).
    pub sender: Option<String>,
    /// Every recipient listed (To, Cc, Bcc, Recipient; list members
    /// included), in order, without duplicates.
    pub recipients: Vec<String>,
    /// The original message, exactly as embedded.
    pub original: Vec<u8>,
}

/// The report in `raw`, if `raw` is an Exchange envelope journal report
/// with an embedded original; `None` for any other message.
///
/// Never panics: mail-parser 0.11 can panic on crafted MIME (the debug
/// assertion the `parse_mail` fuzz target found is reachable from here too);
/// a message it cannot parse is not treated as a report and is archived as
/// it came.
pub fn parse_report(raw: &[u8]) -> Option<Report> {
    std::panic::catch_unwind(|| parse_unguarded(raw)).unwrap_or(None)
}

fn parse_unguarded(raw: &[u8]) -> Option<Report> {
    let msg = MessageParser::default().parse(raw)?;
    msg.header_raw("X-MS-Journal-Report")?;
    let mut envelope_text: Option<String> = None;
    let mut original: Option<Vec<u8>> = None;
    for part in msg.parts.iter().skip(1) {
        match &part.body {
            PartType::Text(t) if envelope_text.is_none() => envelope_text = Some(t.to_string()),
            PartType::Message(m) if original.is_none() => {
                original = Some(m.raw_message().to_vec());
            }
            _ => {}
        }
    }
    let text = envelope_text?;
    let original = original.filter(|o| !o.is_empty())?;
    let mut sender = None;
    let mut recipients: Vec<String> = Vec::new();
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let key = key.trim().to_ascii_lowercase();
        let first = value.split(',').next().map(clean).unwrap_or_default();
        if first.is_empty() {
            continue;
        }
        match key.as_str() {
            "sender" | "from" if sender.is_none() => sender = Some(first),
            "to" | "cc" | "bcc" | "recipient"
                if !recipients.iter().any(|r| r.eq_ignore_ascii_case(&first)) =>
            {
                recipients.push(first);
            }
            _ => {}
        }
    }
    if recipients.is_empty() {
        return None;
    }
    Some(Report {
        sender,
        recipients,
        original,
    })
}

fn clean(s: &str) -> String {
    let s = s.trim();
    let s = match (s.rfind('<'), s.rfind('>')) {
        (Some(a), Some(b)) if a < b => &s[a + 1..b],
        _ => s,
    };
    s.trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found with the `smtp` fuzz target's harness: MIME that trips a debug
    /// assertion in mail-parser (the `parse_mail` finding), sent as a journal
    /// report, panicked in `parse_report` (so in the SMTP session) instead of
    /// being archived as it came.
    #[test]
    fn mime_that_panics_the_parser_is_not_a_report() {
        let raw = b"X-MS-Journal-Report: x\r\n\
Content-Type:multipart;boundary==_2d98f6c3ddf4b54299ae2604b2717254\r\n\r\n\
--=_2d98f6c3ddf4b54299ae2604b2717254Content-Type: message/rfc822;\r\n\r\n\
Content-Type:message/rfc822\r\n\r\n\r\n\
--=_2d98f6c3ddf4b54299ae2604b2717254--\r\n";
        assert_eq!(parse_report(raw), None);
    }

    pub(crate) const ORIGINAL: &str = "From: alice@contoso.test\r\nTo: bob@contoso.test\r\n\
        Subject: Quarterly\r\nMessage-ID: <q3@contoso.test>\r\n\r\nNumbers inside.\r\n";

    fn report(original: &str) -> String {
        format!(
            "From: MicrosoftExchange@contoso.test\r\nTo: journal@archive.test\r\n\
             Subject: Quarterly\r\nX-MS-Journal-Report:\r\nMIME-Version: 1.0\r\n\
             Content-Type: multipart/mixed; boundary=\"jb\"\r\n\r\n\
             --jb\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n\
             Sender: alice@contoso.test\r\nSubject: Quarterly\r\n\
             Message-Id: <q3@contoso.test>\r\nTo: bob@contoso.test\r\n\
             To: carol@contoso.test, Expanded: sales@contoso.test\r\n\
             Cc: <dave@contoso.test>\r\nBcc: eve@contoso.test\r\n\r\n\
             --jb\r\nContent-Type: message/rfc822\r\n\r\n{original}\r\n--jb--\r\n"
        )
    }

    #[test]
    fn exchange_report_yields_original_and_all_recipients() {
        let r = parse_report(report(ORIGINAL).as_bytes()).unwrap();
        assert_eq!(r.sender.as_deref(), Some("alice@contoso.test"));
        assert_eq!(
            r.recipients,
            [
                "bob@contoso.test",
                "carol@contoso.test",
                "dave@contoso.test",
                "eve@contoso.test"
            ]
        );
        assert_eq!(String::from_utf8_lossy(&r.original), ORIGINAL);
    }

    #[test]
    fn ordinary_mail_is_not_a_report() {
        assert_eq!(parse_report(ORIGINAL.as_bytes()), None);
        assert_eq!(parse_report(b""), None);
        let no_header = report(ORIGINAL).replace("X-MS-Journal-Report:\r\n", "");
        assert_eq!(parse_report(no_header.as_bytes()), None);
    }
}
