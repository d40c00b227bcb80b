//! The wire protocol, version 1: one request, one response, repeated on a
//! TLS connection. Binary and length-prefixed, so that key bytes are never
//! formatted into text (and can be zeroized), and so that the size of every
//! frame is known and bounded before it is read.
//!
//! ```text
//! request  = version:u8 (1) | op:u8 | tenant_len:u16 BE | payload_len:u32 BE
//!            | tenant (ASCII tenant id) | payload
//! response = version:u8 (1) | status:u8 (0 = ok, else an ErrorCode) | len:u32 BE
//!            | body (ok: the payload; error: a UTF-8 message)
//! ```
//!
//! | op | tenant | request payload | ok payload |
//! | --- | --- | --- | --- |
//! | 1 wrap | required | the 32-byte tenant key | the wrapped key |
//! | 2 unwrap | required | a wrapped key (1–4096 bytes) | the 32-byte tenant key |
//! | 3 destroy | required | empty | empty |
//! | 4 health | empty | empty | `ok` |
//!
//! A frame with another version or a length over the limits cannot be
//! skipped safely: it is answered with an error and the connection is
//! closed. Any other malformed frame (unknown op, bad tenant id, wrong
//! payload size) is answered with an error and the connection stays usable.
//! The decoding here is I/O-free apart from `Read`/`Write`, and is tested
//! on byte slices.

use std::io::{self, Read, Write};

use ama_core::TenantId;
use ama_core::crypto::KEY_LEN;
use zeroize::Zeroizing;

/// The protocol version this build speaks.
pub const VERSION: u8 = 1;
/// Bytes of a request header.
pub const REQUEST_HEADER: usize = 8;
/// Bytes of a response header.
pub const RESPONSE_HEADER: usize = 6;
/// Longest tenant id on the wire (a [`TenantId`] has at most 63 characters).
pub const MAX_TENANT: usize = 63;
/// Largest request payload (a wrapped key is about 60 bytes).
pub const MAX_PAYLOAD: usize = 4096;
/// Largest response body.
pub const MAX_RESPONSE: usize = 8192;

/// What a request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Op {
    /// Wrap a tenant key under the service's key for that tenant.
    Wrap = 1,
    /// Unwrap a wrapped tenant key.
    Unwrap = 2,
    /// Destroy a tenant's key for good (crypto-shredding).
    Destroy = 3,
    /// Is the service up? (No tenant, no key.)
    Health = 4,
}

impl Op {
    fn from_u8(b: u8) -> Option<Op> {
        Some(match b {
            1 => Op::Wrap,
            2 => Op::Unwrap,
            3 => Op::Destroy,
            4 => Op::Health,
            _ => return None,
        })
    }

    /// The name used in logs.
    pub fn name(self) -> &'static str {
        match self {
            Op::Wrap => "wrap",
            Op::Unwrap => "unwrap",
            Op::Destroy => "destroy",
            Op::Health => "health",
        }
    }
}

/// Why a request failed, as sent in a response's status byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorCode {
    /// The frame is malformed (truncated, wrong payload size for the op).
    Malformed = 1,
    /// The frame has a protocol version this service does not speak.
    UnsupportedVersion = 2,
    /// A length in the header is over the limits.
    TooLarge = 3,
    /// The op byte is unknown.
    UnknownOp = 4,
    /// The tenant id is not a valid tenant id.
    BadTenant = 5,
    /// This client may not act on this tenant.
    Forbidden = 6,
    /// The tenant's key was destroyed.
    TenantDestroyed = 7,
    /// The wrapped key did not authenticate (altered, or another tenant's).
    UnwrapFailed = 8,
    /// The service failed; details are in its log, not on the wire.
    Internal = 9,
}

impl ErrorCode {
    /// The code for a status byte (`None` for 0 = ok or an unknown code).
    pub fn from_u8(b: u8) -> Option<ErrorCode> {
        Some(match b {
            1 => ErrorCode::Malformed,
            2 => ErrorCode::UnsupportedVersion,
            3 => ErrorCode::TooLarge,
            4 => ErrorCode::UnknownOp,
            5 => ErrorCode::BadTenant,
            6 => ErrorCode::Forbidden,
            7 => ErrorCode::TenantDestroyed,
            8 => ErrorCode::UnwrapFailed,
            9 => ErrorCode::Internal,
            _ => return None,
        })
    }

    /// The name used in logs.
    pub fn name(self) -> &'static str {
        match self {
            ErrorCode::Malformed => "malformed",
            ErrorCode::UnsupportedVersion => "unsupported-version",
            ErrorCode::TooLarge => "too-large",
            ErrorCode::UnknownOp => "unknown-op",
            ErrorCode::BadTenant => "bad-tenant",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::TenantDestroyed => "tenant-destroyed",
            ErrorCode::UnwrapFailed => "unwrap-failed",
            ErrorCode::Internal => "internal",
        }
    }
}

/// A decoded, validated request.
pub struct Request {
    /// The operation.
    pub op: Op,
    /// The tenant (`None` only for [`Op::Health`]).
    pub tenant: Option<TenantId>,
    /// The payload (a key or a wrapped key), zeroized on drop.
    pub payload: Zeroizing<Vec<u8>>,
}

/// A frame the server could not accept.
#[derive(Debug)]
pub struct BadFrame {
    /// What to answer.
    pub code: ErrorCode,
    /// A message for the client (never holds payload bytes).
    pub message: String,
    /// The connection cannot continue (framing is lost).
    pub fatal: bool,
    /// The op, when it was readable (for the log).
    pub op: Option<Op>,
}

/// Reading a request failed.
#[derive(Debug)]
pub enum ReadError {
    /// The peer closed the connection between frames.
    Closed,
    /// The connection failed or timed out: nothing can be answered.
    Io(io::Error),
    /// The frame is malformed: answer with an error.
    Bad(BadFrame),
}

fn bad(code: ErrorCode, message: impl Into<String>, fatal: bool, op: Option<Op>) -> ReadError {
    ReadError::Bad(BadFrame {
        code,
        message: message.into(),
        fatal,
        op,
    })
}

/// Encodes a request frame.
pub fn encode_request(op: Op, tenant: &str, payload: &[u8]) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(Vec::with_capacity(
        REQUEST_HEADER + tenant.len() + payload.len(),
    ));
    out.push(VERSION);
    out.push(op as u8);
    out.extend_from_slice(&(tenant.len() as u16).to_be_bytes());
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(tenant.as_bytes());
    out.extend_from_slice(payload);
    out
}

/// Reads `buf.len()` bytes; `Ok(false)` if the stream ended before the first byte.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<bool> {
    let mut done = 0;
    while done < buf.len() {
        match r.read(&mut buf[done..]) {
            Ok(0) if done == 0 => return Ok(false),
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            // Between frames, a peer that went away without a TLS
            // close_notify (its process ended) is just gone.
            Err(e) if done == 0 && e.kind() == io::ErrorKind::UnexpectedEof => return Ok(false),
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// Reads and validates one request frame.
pub fn read_request(r: &mut impl Read) -> Result<Request, ReadError> {
    let mut hdr = [0u8; REQUEST_HEADER];
    match read_full(r, &mut hdr) {
        Ok(true) => {}
        Ok(false) => return Err(ReadError::Closed),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
            return Err(bad(
                ErrorCode::Malformed,
                "truncated frame header",
                true,
                None,
            ));
        }
        Err(e) => return Err(ReadError::Io(e)),
    }
    if hdr[0] != VERSION {
        return Err(bad(
            ErrorCode::UnsupportedVersion,
            format!(
                "protocol version {} is not supported (this service speaks {VERSION})",
                hdr[0]
            ),
            true,
            None,
        ));
    }
    let op = Op::from_u8(hdr[1]);
    let tenant_len = usize::from(u16::from_be_bytes([hdr[2], hdr[3]]));
    let payload_len = u32::from_be_bytes([hdr[4], hdr[5], hdr[6], hdr[7]]) as usize;
    if tenant_len > MAX_TENANT || payload_len > MAX_PAYLOAD {
        return Err(bad(
            ErrorCode::TooLarge,
            format!(
                "frame too large: tenant {tenant_len} bytes (max {MAX_TENANT}), \
                 payload {payload_len} bytes (max {MAX_PAYLOAD})"
            ),
            true,
            op,
        ));
    }
    let mut body = Zeroizing::new(vec![0u8; tenant_len + payload_len]);
    match read_full(r, &mut body) {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
            return Err(bad(ErrorCode::Malformed, "truncated frame body", true, op));
        }
        Err(e) => return Err(ReadError::Io(e)),
    }
    let Some(op) = op else {
        return Err(bad(
            ErrorCode::UnknownOp,
            format!("unknown op {}", hdr[1]),
            false,
            None,
        ));
    };
    let payload = Zeroizing::new(body[tenant_len..].to_vec());
    if op == Op::Health {
        if tenant_len != 0 || payload_len != 0 {
            return Err(bad(
                ErrorCode::Malformed,
                "health takes no tenant and no payload",
                false,
                Some(op),
            ));
        }
        return Ok(Request {
            op,
            tenant: None,
            payload,
        });
    }
    let tenant = std::str::from_utf8(&body[..tenant_len])
        .ok()
        .and_then(|t| TenantId::new(t).ok())
        .ok_or_else(|| {
            bad(
                ErrorCode::BadTenant,
                "the tenant is not a valid tenant id",
                false,
                Some(op),
            )
        })?;
    let size_ok = match op {
        Op::Wrap => payload_len == KEY_LEN,
        Op::Unwrap => payload_len > 0,
        Op::Destroy | Op::Health => payload_len == 0,
    };
    if !size_ok {
        let want = match op {
            Op::Wrap => "exactly 32 bytes",
            Op::Unwrap => "1 to 4096 bytes",
            _ => "no payload",
        };
        return Err(bad(
            ErrorCode::Malformed,
            format!("{} takes {want}, got {payload_len}", op.name()),
            false,
            Some(op),
        ));
    }
    Ok(Request {
        op,
        tenant: Some(tenant),
        payload,
    })
}

/// Writes a successful response.
pub fn write_ok(w: &mut impl Write, body: &[u8]) -> io::Result<()> {
    write_response(w, 0, body)
}

/// Writes an error response.
pub fn write_error(w: &mut impl Write, code: ErrorCode, message: &str) -> io::Result<()> {
    let mut m = message.as_bytes();
    if m.len() > MAX_RESPONSE {
        m = &m[..MAX_RESPONSE];
    }
    write_response(w, code as u8, m)
}

fn write_response(w: &mut impl Write, status: u8, body: &[u8]) -> io::Result<()> {
    let mut out = Zeroizing::new(Vec::with_capacity(RESPONSE_HEADER + body.len()));
    out.push(VERSION);
    out.push(status);
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(body);
    w.write_all(&out)?;
    w.flush()
}

/// A response as the client reads it.
pub enum Response {
    /// Success with its payload (zeroized on drop).
    Ok(Zeroizing<Vec<u8>>),
    /// An error: its code (`None` if this client does not know it) and message.
    Err {
        /// The code.
        code: Option<ErrorCode>,
        /// The raw status byte.
        status: u8,
        /// The service's message.
        message: String,
    },
}

/// Why a response could not be read.
#[derive(Debug)]
pub enum ResponseError {
    /// The connection failed, timed out or was closed.
    Io(io::Error),
    /// The response is not a version-1 frame within the limits.
    Protocol(String),
}

/// Reads one response frame.
pub fn read_response(r: &mut impl Read) -> Result<Response, ResponseError> {
    let mut hdr = [0u8; RESPONSE_HEADER];
    match read_full(r, &mut hdr) {
        Ok(true) => {}
        Ok(false) => {
            return Err(ResponseError::Io(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the service closed the connection",
            )));
        }
        Err(e) => return Err(ResponseError::Io(e)),
    }
    if hdr[0] != VERSION {
        return Err(ResponseError::Protocol(format!(
            "response has protocol version {} (this client speaks {VERSION})",
            hdr[0]
        )));
    }
    let len = u32::from_be_bytes([hdr[2], hdr[3], hdr[4], hdr[5]]) as usize;
    if len > MAX_RESPONSE {
        return Err(ResponseError::Protocol(format!(
            "response of {len} bytes is over the limit of {MAX_RESPONSE}"
        )));
    }
    let mut body = Zeroizing::new(vec![0u8; len]);
    read_full(r, &mut body).map_err(ResponseError::Io)?;
    if hdr[1] == 0 {
        return Ok(Response::Ok(body));
    }
    Ok(Response::Err {
        code: ErrorCode::from_u8(hdr[1]),
        status: hdr[1],
        message: String::from_utf8_lossy(&body).into_owned(),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn decode(bytes: &[u8]) -> Result<Request, ReadError> {
        read_request(&mut &bytes[..])
    }

    fn bad_code(bytes: &[u8]) -> (ErrorCode, bool) {
        match decode(bytes) {
            Err(ReadError::Bad(b)) => (b.code, b.fatal),
            Err(e) => panic!("expected a bad frame, got {e:?}"),
            Ok(_) => panic!("expected a bad frame, got a request"),
        }
    }

    #[test]
    fn round_trip() {
        let f = encode_request(Op::Unwrap, "acme", b"wrapped");
        let r = decode(&f).unwrap();
        assert_eq!(r.op, Op::Unwrap);
        assert_eq!(r.tenant.unwrap().as_str(), "acme");
        assert_eq!(&r.payload[..], b"wrapped");
        let r = decode(&encode_request(Op::Health, "", b"")).unwrap();
        assert!(r.tenant.is_none());
        assert!(matches!(decode(b""), Err(ReadError::Closed)));
    }

    #[test]
    fn malformed_frames_are_typed() {
        let mut f = encode_request(Op::Wrap, "acme", &[0u8; 32]).to_vec();
        f[0] = 2;
        assert_eq!(bad_code(&f), (ErrorCode::UnsupportedVersion, true));
        let mut f = encode_request(Op::Unwrap, "acme", b"x").to_vec();
        f[4..8].copy_from_slice(&(u32::MAX).to_be_bytes());
        assert_eq!(bad_code(&f), (ErrorCode::TooLarge, true));
        let mut f = encode_request(Op::Unwrap, "acme", b"x").to_vec();
        f[2..4].copy_from_slice(&64u16.to_be_bytes());
        assert_eq!(bad_code(&f), (ErrorCode::TooLarge, true));
        let mut f = encode_request(Op::Unwrap, "acme", b"x").to_vec();
        f[1] = 99;
        assert_eq!(bad_code(&f), (ErrorCode::UnknownOp, false));
        assert_eq!(
            bad_code(&encode_request(Op::Unwrap, "ACME/../x", b"x")),
            (ErrorCode::BadTenant, false)
        );
        assert_eq!(
            bad_code(&encode_request(Op::Wrap, "acme", &[0u8; 31])),
            (ErrorCode::Malformed, false)
        );
        assert_eq!(
            bad_code(&encode_request(Op::Unwrap, "acme", b"")),
            (ErrorCode::Malformed, false)
        );
        assert_eq!(
            bad_code(&encode_request(Op::Destroy, "acme", b"x")),
            (ErrorCode::Malformed, false)
        );
        assert_eq!(
            bad_code(&encode_request(Op::Health, "acme", b"")),
            (ErrorCode::Malformed, false)
        );
        // Truncated header and body.
        assert_eq!(bad_code(&[1, 2, 0]), (ErrorCode::Malformed, true));
        let f = encode_request(Op::Unwrap, "acme", b"wrapped");
        assert_eq!(bad_code(&f[..f.len() - 1]), (ErrorCode::Malformed, true));
    }

    #[test]
    fn responses() {
        let mut buf = Vec::new();
        write_ok(&mut buf, b"abc").unwrap();
        write_error(&mut buf, ErrorCode::Forbidden, "no").unwrap();
        let mut r = &buf[..];
        assert!(matches!(read_response(&mut r).unwrap(), Response::Ok(b) if &b[..] == b"abc"));
        assert!(matches!(
            read_response(&mut r).unwrap(),
            Response::Err { code: Some(ErrorCode::Forbidden), message, .. } if message == "no"
        ));
        let mut big = vec![1u8, 0];
        big.extend_from_slice(&(u32::MAX).to_be_bytes());
        assert!(matches!(
            read_response(&mut &big[..]),
            Err(ResponseError::Protocol(_))
        ));
        assert!(matches!(
            read_response(&mut &[9u8, 0, 0, 0, 0, 0][..]),
            Err(ResponseError::Protocol(_))
        ));
    }
}
