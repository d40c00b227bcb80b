//! Harness for the SMTP/LMTP state machine (`ama_smtp::proto`), shared by the
//! `smtp` fuzz target and `ama-smtp/tests/fuzz_regressions.rs`.
//!
//! Input: byte 0 picks the session (SMTP or LMTP, implicit TLS or not,
//! STARTTLS/AUTH offered, AUTH required), byte 1 seeds how the rest is cut
//! into reads, and the rest is what the client sends. The listener is played
//! by a deterministic driver: a recipient containing `bad` is refused, the
//! password `key` is good, delivery answers depend on the message length.
//!
//! Besides "never panics, never hangs", it checks what the machine promises:
//! no message is handed out before TLS (nor before AUTH when required), no
//! message is larger than the limit or has no or too many recipients, no
//! reply carries a CR or LF inside a line (no reply injection), nothing
//! happens after `Close`, and, unless STARTTLS discarded pipelined input,
//! the same bytes cut into different reads give the same replies and
//! messages. Every delivered message also goes through the journal-report
//! parser, as the listener does.

use ama_smtp::proto::{Delivery, Event, Limits, Message, Mode, Session, SessionConfig};

/// Limits small enough for the fuzzer to hit every one of them.
fn limits() -> Limits {
    Limits {
        max_line: 128,
        max_commands: 200,
        max_errors: 10,
        max_recipients: 3,
        max_message_size: 256,
    }
}

#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    replies: Vec<Vec<u8>>,
    messages: Vec<Message>,
    closed: bool,
    starttls: bool,
}

/// Runs one input; `Err` names the broken promise.
pub fn run(data: &[u8]) -> Result<(), String> {
    let (flags, seed, stream) = match data {
        [f, s, rest @ ..] => (*f, *s, rest),
        _ => return Ok(()),
    };
    let cfg = SessionConfig {
        hostname: "archive.fuzz".into(),
        mode: if flags & 1 == 0 {
            Mode::Smtp
        } else {
            Mode::Lmtp
        },
        limits: limits(),
        starttls: flags & 4 != 0,
        auth: flags & 8 != 0,
        require_auth: flags & 16 != 0,
    };
    let tls = flags & 2 != 0;

    let whole = drive(&cfg, tls, std::iter::once(stream))?;
    let split = drive(&cfg, tls, Chunks::new(stream, seed))?;
    if !whole.starttls && !split.starttls && whole != split {
        return Err(format!(
            "the same bytes in other reads gave another result:\n whole: {whole:?}\n split: {split:?}"
        ));
    }
    Ok(())
}

fn drive<'a>(
    cfg: &SessionConfig,
    tls: bool,
    reads: impl Iterator<Item = &'a [u8]>,
) -> Result<Outcome, String> {
    let mut s = Session::new(cfg.clone(), tls);
    let mut out = Outcome {
        replies: Vec::new(),
        messages: Vec::new(),
        closed: false,
        starttls: false,
    };
    pump(&mut s, cfg, &mut out)?;
    for read in reads {
        s.feed(read);
        pump(&mut s, cfg, &mut out)?;
    }
    s.disconnected();
    if s.poll().is_some() {
        return Err("an event after the client disconnected".into());
    }
    Ok(out)
}

fn pump(s: &mut Session, cfg: &SessionConfig, out: &mut Outcome) -> Result<(), String> {
    while let Some(e) = s.poll() {
        if out.closed {
            return Err(format!("event after Close: {e:?}"));
        }
        match e {
            Event::Reply(r) => {
                if !(200..600).contains(&r.code) {
                    return Err(format!("reply code {} out of range", r.code));
                }
                if r.lines.iter().any(|l| l.contains(['\r', '\n'])) {
                    return Err(format!("CR or LF inside a reply line: {r:?}"));
                }
                out.replies.push(r.to_bytes());
            }
            Event::StartTls => out.starttls = true,
            Event::Auth { secret, .. } => s.auth_result(secret == "key"),
            Event::Rcpt(addr) => {
                let refusal = addr
                    .contains("bad")
                    .then(|| ama_smtp::proto::Reply::new(550, "5.1.1", "no such tenant"));
                s.rcpt_result(refusal);
            }
            Event::Message(m) => {
                if !s.is_tls() {
                    return Err("a message was accepted without TLS".into());
                }
                if cfg.require_auth && !s.is_authenticated() {
                    return Err("a message was accepted without AUTH".into());
                }
                if m.data.len() as u64 > cfg.limits.max_message_size {
                    return Err(format!(
                        "a message of {} bytes passed the limit",
                        m.data.len()
                    ));
                }
                if m.rcpt_to.is_empty() || m.rcpt_to.len() > cfg.limits.max_recipients {
                    return Err(format!("a message with {} recipients", m.rcpt_to.len()));
                }
                if m.rcpt_to.iter().any(|r| r.contains("bad")) {
                    return Err("a refused recipient was kept".into());
                }
                // The listener looks for an Exchange journal report in every message.
                let _ = ama_smtp::journal::parse_report(&m.data);
                let answer = match m.data.len() % 3 {
                    0 => Delivery::Queued(format!("Q{}", out.messages.len())),
                    1 => Delivery::TempFail("try later".into()),
                    _ => Delivery::Reject("not mail".into()),
                };
                out.messages.push(m);
                s.message_result(answer);
            }
            Event::Close => out.closed = true,
        }
    }
    Ok(())
}

/// The stream cut into reads of 1 to 16 bytes, lengths from a xorshift
/// generator seeded by `seed` (seed 0: one byte at a time).
struct Chunks<'a> {
    rest: &'a [u8],
    state: u32,
}

impl<'a> Chunks<'a> {
    fn new(rest: &'a [u8], seed: u8) -> Self {
        Chunks {
            rest,
            state: u32::from(seed),
        }
    }
}

impl<'a> Iterator for Chunks<'a> {
    type Item = &'a [u8];
    fn next(&mut self) -> Option<&'a [u8]> {
        if self.rest.is_empty() {
            return None;
        }
        let n = if self.state == 0 {
            1
        } else {
            self.state ^= self.state << 13;
            self.state ^= self.state >> 17;
            self.state ^= self.state << 5;
            (self.state % 16) as usize + 1
        };
        let (head, tail) = self.rest.split_at(n.min(self.rest.len()));
        self.rest = tail;
        Some(head)
    }
}
