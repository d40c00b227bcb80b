//! Reading one message for display: its metadata with the decoded text and
//! header lines, and one attachment's decoded bytes — what a search page or
//! an API client shows, without handing it the raw MIME to take apart.
//!
//! Why in the engine: the access check, the authenticity check of the blob
//! and the audit entry must be the same as for [`Archive::get_raw`], so both
//! calls read through the same principal-checked path and record exactly
//! one entry each (`view`, `download`). The text is the one the index was
//! built from ([`crate::parse::parse`]): HTML-only mail is converted to
//! text, never handed out as HTML.

use mail_parser::MessageParser;

use crate::access::Principal;
use crate::archive::Archive;
use crate::audit::AuditAction;
use crate::error::{Error, Result};
use crate::message::{AttachmentInfo, MessageId, MessageInfo};
use crate::parse;

/// Longest header value kept in a [`MessageView`], in bytes.
const MAX_HEADER_VALUE: usize = 16 * 1024;
/// Most header lines kept in a [`MessageView`].
const MAX_HEADERS: usize = 500;

/// A message as shown to a reader.
#[derive(Debug, Clone)]
pub struct MessageView {
    /// Metadata and deliveries, redacted for the principal as by [`Archive::get`].
    pub info: MessageInfo,
    /// The top-level header lines in order: name and value, unfolded, as
    /// they are in the message (encoded words not decoded).
    pub headers: Vec<(String, String)>,
    /// The decoded text of the text parts (HTML converted to text).
    pub text: String,
    /// Whether `text` was cut at [`parse::MAX_INDEXED_TEXT`] bytes.
    pub text_truncated: bool,
}

/// One attachment's decoded content.
#[derive(Debug, Clone)]
pub struct Attachment {
    /// Its position among the message's attachments, from 0.
    pub index: usize,
    /// Name, media type and size, as in [`crate::MessageMeta::attachments`].
    pub info: AttachmentInfo,
    /// The decoded bytes (text parts as UTF-8; attached messages as their raw bytes).
    pub bytes: Vec<u8>,
}

impl Archive {
    /// The message `id` for display, if the principal may read it. Records
    /// one `view` audit entry.
    pub fn view(&self, who: &Principal, id: MessageId) -> Result<MessageView> {
        let info = self.get(who, id)?;
        let state = self.state(who.tenant())?;
        let raw = self.get_raw_in(&state, who, id)?;
        let parsed = parse::parse(&raw, info.meta.date);
        let text_truncated = parsed.text.body.len() >= parse::MAX_INDEXED_TEXT;
        Ok(MessageView {
            headers: header_lines(&raw),
            text: parsed.text.body,
            text_truncated,
            info,
        })
    }

    /// Attachment `index` (from 0, in the order of
    /// [`crate::MessageMeta::attachments`]) of message `id`, decoded, if the
    /// principal may read the message; `NotFound` when there is no such
    /// attachment. Records one `download` audit entry.
    pub fn attachment(&self, who: &Principal, id: MessageId, index: usize) -> Result<Attachment> {
        self.audited_read(
            who,
            AuditAction::Download,
            format!("attachment {index}"),
            |state| {
                let raw = self.get_raw_in(state, who, id)?;
                let info = parse::parse(&raw, 0)
                    .meta
                    .attachments
                    .into_iter()
                    .nth(index)
                    .ok_or(Error::NotFound(id))?;
                let bytes = attachment_bytes(&raw, index).ok_or(Error::NotFound(id))?;
                Ok(Attachment { index, info, bytes })
            },
            |_| vec![id],
        )
    }
}

/// The decoded bytes of attachment `index`, in the order [`parse::parse`]
/// lists attachments.
fn attachment_bytes(raw: &[u8], index: usize) -> Option<Vec<u8>> {
    let (start, _) = parse::header_start(raw)?;
    std::panic::catch_unwind(|| {
        let msg = MessageParser::default().parse(&raw[start..])?;
        msg.attachments().nth(index).map(|p| p.contents().to_vec())
    })
    .ok()
    .flatten()
}

/// The top-level header lines, unfolded.
fn header_lines(raw: &[u8]) -> Vec<(String, String)> {
    let Some((start, _)) = parse::header_start(raw) else {
        return Vec::new();
    };
    std::panic::catch_unwind(|| {
        let Some(msg) = MessageParser::default().parse(&raw[start..]) else {
            return Vec::new();
        };
        msg.headers_raw()
            .take(MAX_HEADERS)
            .map(|(name, value)| (name.to_string(), unfold(value)))
            .collect()
    })
    .unwrap_or_default()
}

fn unfold(value: &str) -> String {
    let mut out = String::with_capacity(value.len().min(MAX_HEADER_VALUE));
    for line in value.split('\n') {
        let line = line.trim_end_matches('\r');
        let part = line.trim_start_matches([' ', '\t']);
        if part.is_empty() {
            continue;
        }
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(part);
        if out.len() >= MAX_HEADER_VALUE {
            let mut cut = MAX_HEADER_VALUE;
            while !out.is_char_boundary(cut) {
                cut -= 1;
            }
            out.truncate(cut);
            break;
        }
    }
    out.trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAIL: &[u8] = b"From x@y Mon Jan  1 00:00:00 2001\r\n\
From: a@b.test\r\nSubject: =?utf-8?q?hi?=\r\n folded\r\n\
MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n\
--b\r\nContent-Type: text/plain\r\n\r\nbody\r\n\
--b\r\nContent-Type: application/octet-stream; name=\"../../etc/passwd\"\r\n\
Content-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=\"../../etc/passwd\"\r\n\r\n\
AAEC/w==\r\n--b--\r\n";

    #[test]
    fn headers_are_unfolded_and_attachments_decoded() {
        let h = header_lines(MAIL);
        assert_eq!(h[0], ("From".into(), "a@b.test".into()));
        assert_eq!(h[1], ("Subject".into(), "=?utf-8?q?hi?= folded".into()));
        assert_eq!(attachment_bytes(MAIL, 0), Some(vec![0, 1, 2, 255]));
        assert_eq!(attachment_bytes(MAIL, 1), None);
        let meta = parse::parse(MAIL, 0).meta;
        assert_eq!(
            meta.attachments[0].name.as_deref(),
            Some("../../etc/passwd")
        );
    }
}
