//! The SMTP/LMTP protocol as an I/O-free state machine.
//!
//! Why I/O-free: every protocol rule (what is allowed before TLS, how DATA
//! ends, what each limit answers) can then be tested line by line without a
//! socket, and the listener is left with moving bytes. The machine never
//! blocks and never panics on input: the listener [`Session::feed`]s it what
//! it read and [`Session::poll`]s events (replies to write, a TLS upgrade, a
//! credential or recipient to check, a message to make durable). While an
//! answer is outstanding (`Auth`, `Rcpt`, `Message`) the machine processes
//! nothing further, so pipelined replies stay in order.
//!
//! Memory is bounded: a command line longer than [`Limits::max_line`] is
//! answered `500` and skipped without being kept, and message data past
//! [`Limits::max_message_size`] is counted, not stored, until the end of
//! DATA, which is then answered `552`. The end of DATA is only
//! `CRLF . CRLF`; a bare LF never ends a message (no SMTP smuggling) and is
//! kept byte-exact in the stored message, as is everything else.

use std::collections::VecDeque;
use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

/// SMTP (port 25/587/465) or LMTP (one reply per recipient after DATA).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// RFC 5321 SMTP with ESMTP extensions.
    Smtp,
    /// RFC 2033 LMTP: `LHLO`, one DATA reply per accepted recipient.
    Lmtp,
}

/// Protocol limits. Every one is enforced with a reply, never a panic.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Longest command line in bytes, CRLF included (AUTH needs room).
    pub max_line: usize,
    /// Most commands in one session before `421` and close.
    pub max_commands: u32,
    /// Most syntax/protocol errors in one session before `421` and close.
    pub max_errors: u32,
    /// Most recipients of one message; more get `452 4.5.3`.
    pub max_recipients: usize,
    /// Largest message in bytes (advertised with `SIZE`); more gets `552`.
    pub max_message_size: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_line: 4096,
            max_commands: 100_000,
            max_errors: 20,
            max_recipients: 1000,
            max_message_size: 64 * 1024 * 1024,
        }
    }
}

/// What the session offers, fixed when it starts.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Name in the greeting and the EHLO reply.
    pub hostname: String,
    /// SMTP or LMTP.
    pub mode: Mode,
    /// Limits.
    pub limits: Limits,
    /// Whether `STARTTLS` is offered (a TLS configuration exists).
    pub starttls: bool,
    /// Whether `AUTH PLAIN LOGIN` is offered (after TLS only).
    pub auth: bool,
    /// Whether `MAIL FROM` needs a successful AUTH or an identified client
    /// certificate.
    pub require_auth: bool,
}

/// One SMTP reply: a code, an enhanced status code and text lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The three-digit code.
    pub code: u16,
    /// The enhanced status code (`2.0.0`), empty for none.
    pub status: &'static str,
    /// One or more lines of text.
    pub lines: Vec<String>,
}

impl Reply {
    /// A one-line reply.
    pub fn new(code: u16, status: &'static str, text: impl Into<String>) -> Self {
        Reply {
            code,
            status,
            lines: vec![text.into()],
        }
    }

    /// The reply on the wire, CRLF-terminated, multi-line as `250-…`.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let n = self.lines.len().max(1);
        for i in 0..n {
            let text = self.lines.get(i).map(String::as_str).unwrap_or("");
            let sep = if i + 1 == n { ' ' } else { '-' };
            let line = if self.status.is_empty() {
                format!("{}{sep}{text}\r\n", self.code)
            } else {
                format!("{}{sep}{} {text}\r\n", self.code, self.status)
            };
            out.extend_from_slice(line.as_bytes());
        }
        out
    }

    /// Whether the code is 2xx or 3xx.
    pub fn is_positive(&self) -> bool {
        self.code < 400
    }

    /// The reply for a connection refused by a connection limit.
    pub fn too_many_connections() -> Self {
        Reply::new(421, "4.7.0", "Too many connections, try again later")
    }

    /// The reply sent to idle sessions when the node shuts down.
    pub fn shutting_down() -> Self {
        Reply::new(421, "4.3.2", "Service shutting down, try again later")
    }

    /// The reply for a client that was silent too long.
    pub fn timeout() -> Self {
        Reply::new(421, "4.4.2", "Timeout exceeded, closing connection")
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.to_bytes()))
    }
}

/// A message whose data is complete: the listener must make it durable and
/// answer with [`Session::message_result`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The reverse path; empty for the null sender `<>`.
    pub mail_from: String,
    /// Accepted recipients, in order.
    pub rcpt_to: Vec<String>,
    /// The message exactly as sent (dot-unstuffed for DATA, verbatim for BDAT).
    pub data: Vec<u8>,
}

/// What the listener must do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Write this reply.
    Reply(Reply),
    /// The `220` for STARTTLS has been emitted: write it, then run the TLS
    /// handshake. Buffered plaintext input has been discarded.
    StartTls,
    /// Check these credentials; answer with [`Session::auth_result`].
    Auth {
        /// Authorization identity (PLAIN) or empty.
        authzid: String,
        /// User name.
        user: String,
        /// Password (for ama: the API key).
        secret: String,
    },
    /// May mail for this recipient be accepted? Answer with
    /// [`Session::rcpt_result`].
    Rcpt(String),
    /// Make this message durable; answer with [`Session::message_result`].
    Message(Message),
    /// Write pending replies and close the connection.
    Close,
}

/// The outcome of making a message durable, for [`Session::message_result`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// Durable under this queue id: `250`.
    Queued(String),
    /// A temporary failure (disk, archive): `451`, the client retries.
    TempFail(String),
    /// Refused for good (e.g. not a mail message): `554`.
    Reject(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    /// Reading command lines.
    Command,
    /// Skipping the rest of an over-long command line.
    SkipLine,
    /// Reading DATA until CRLF.CRLF.
    Data,
    /// Reading a BDAT chunk of this many more bytes.
    Chunk { left: u64, last: bool },
    /// AUTH PLAIN waiting for the initial response.
    AuthPlain,
    /// AUTH LOGIN waiting for the user name.
    AuthLoginUser,
    /// AUTH LOGIN waiting for the password.
    AuthLoginPass(String),
    /// An answer from the listener is outstanding.
    Waiting(Wait),
    /// QUIT, a fatal limit or `421`: nothing more is read.
    Closed,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Wait {
    Auth,
    Rcpt(String),
    Message { rcpts: usize },
}

#[derive(Debug, Default)]
struct Txn {
    mail_from: String,
    rcpt_to: Vec<String>,
    data: Vec<u8>,
    /// Bytes seen, including those dropped past the size limit.
    seen: u64,
    too_big: bool,
    /// BDAT was used: DATA is no longer allowed.
    chunking: bool,
    /// A BDAT chunk failed: the rest of the transaction is refused.
    failed: bool,
}

/// One SMTP/LMTP session's protocol state.
#[derive(Debug)]
pub struct Session {
    cfg: SessionConfig,
    tls: bool,
    authenticated: bool,
    helo: Option<String>,
    txn: Option<Txn>,
    phase: Phase,
    input: Vec<u8>,
    events: VecDeque<Event>,
    commands: u32,
    errors: u32,
    /// DATA: the last byte appended was CR (so an LF there ends a line).
    data_prev_cr: bool,
    /// DATA: at the start of a line (after CRLF).
    data_line_start: bool,
}

/// Suggested size of one read from the network.
const READ_HINT: usize = 64 * 1024;

impl Session {
    /// A new session; the first event is the `220` greeting. `tls` is true
    /// on an implicit-TLS port.
    pub fn new(cfg: SessionConfig, tls: bool) -> Self {
        let mut s = Session {
            cfg,
            tls,
            authenticated: false,
            helo: None,
            txn: None,
            phase: Phase::Command,
            input: Vec::new(),
            events: VecDeque::new(),
            commands: 0,
            errors: 0,
            data_prev_cr: false,
            data_line_start: true,
        };
        let proto = match s.cfg.mode {
            Mode::Smtp => "ESMTP",
            Mode::Lmtp => "LMTP",
        };
        let greeting = format!("{} {proto} ama archive node", s.cfg.hostname);
        s.reply(Reply::new(220, "", greeting));
        s
    }

    /// Whether the session runs over TLS.
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// Whether the session is closed (QUIT or a fatal error).
    pub fn is_closed(&self) -> bool {
        self.phase == Phase::Closed
    }

    /// Whether the session is between messages (no transaction, no DATA,
    /// no pending answer): a safe moment to close it at shutdown.
    pub fn is_idle(&self) -> bool {
        self.phase == Phase::Command && self.txn.is_none() && self.input.is_empty()
    }

    /// Marks the client identified by other means (a client certificate
    /// mapped to a tenant): `require_auth` is satisfied.
    pub fn set_authenticated(&mut self) {
        self.authenticated = true;
    }

    /// Whether AUTH succeeded or the client was identified otherwise.
    pub fn is_authenticated(&self) -> bool {
        self.authenticated
    }

    /// How many bytes the listener should read next (a hint for chunk sizes).
    pub fn read_hint(&self) -> usize {
        READ_HINT
    }

    /// Appends bytes read from the client.
    pub fn feed(&mut self, bytes: &[u8]) {
        if self.phase == Phase::Closed {
            return;
        }
        self.input.extend_from_slice(bytes);
    }

    /// Whether unprocessed input is buffered (used to decide when to flush
    /// pipelined replies: only when nothing more can be answered).
    pub fn has_buffered_input(&self) -> bool {
        !self.input.is_empty()
    }

    /// The next event, or `None` when more input (or an outstanding answer)
    /// is needed.
    pub fn poll(&mut self) -> Option<Event> {
        loop {
            if let Some(e) = self.events.pop_front() {
                return Some(e);
            }
            if !self.step() {
                return None;
            }
        }
    }

    /// The client disconnected: what is pending is dropped. Returns whether
    /// a message was being received (its data was not terminated and it is
    /// not stored).
    pub fn disconnected(&mut self) -> bool {
        let mid_message = matches!(self.phase, Phase::Data | Phase::Chunk { .. })
            || self.txn.as_ref().is_some_and(|t| t.chunking);
        self.phase = Phase::Closed;
        self.txn = None;
        self.input.clear();
        mid_message
    }

    /// Answers an [`Event::Auth`]: `true` if the credentials are good.
    pub fn auth_result(&mut self, ok: bool) {
        if self.phase != Phase::Waiting(Wait::Auth) {
            return;
        }
        self.phase = Phase::Command;
        if ok {
            self.authenticated = true;
            self.reply(Reply::new(235, "2.7.0", "Authentication successful"));
        } else {
            self.error(Reply::new(
                535,
                "5.7.8",
                "Authentication credentials invalid",
            ));
        }
    }

    /// Answers an [`Event::Rcpt`]: `None` accepts, `Some(reply)` refuses.
    pub fn rcpt_result(&mut self, refusal: Option<Reply>) {
        let Phase::Waiting(Wait::Rcpt(addr)) = &self.phase else {
            return;
        };
        let addr = addr.clone();
        self.phase = Phase::Command;
        match refusal {
            None => {
                if let Some(t) = self.txn.as_mut() {
                    t.rcpt_to.push(addr);
                }
                self.reply(Reply::new(250, "2.1.5", "OK"));
            }
            Some(r) => self.reply(r),
        }
    }

    /// Answers an [`Event::Message`].
    pub fn message_result(&mut self, result: Delivery) {
        let Phase::Waiting(Wait::Message { rcpts }) = self.phase else {
            return;
        };
        self.phase = Phase::Command;
        self.txn = None;
        let reply = match result {
            Delivery::Queued(id) => Reply::new(250, "2.0.0", format!("OK: queued as {id}")),
            Delivery::TempFail(why) => Reply::new(451, "4.3.0", why),
            Delivery::Reject(why) => Reply::new(554, "5.6.0", why),
        };
        let n = match self.cfg.mode {
            Mode::Smtp => 1,
            Mode::Lmtp => rcpts.max(1),
        };
        for _ in 0..n {
            self.reply(reply.clone());
        }
    }

    fn reply(&mut self, r: Reply) {
        self.events.push_back(Event::Reply(r));
    }

    /// A reply that counts as a client error; too many close the session.
    fn error(&mut self, r: Reply) {
        self.reply(r);
        self.errors += 1;
        if self.errors >= self.cfg.limits.max_errors {
            self.close_with(Reply::new(
                421,
                "4.7.0",
                "Too many errors, closing connection",
            ));
        }
    }

    fn close_with(&mut self, r: Reply) {
        self.reply(r);
        self.events.push_back(Event::Close);
        self.phase = Phase::Closed;
        self.input.clear();
        self.txn = None;
    }

    /// One unit of work on the buffered input; false when nothing can be done.
    fn step(&mut self) -> bool {
        match self.phase.clone() {
            Phase::Closed | Phase::Waiting(_) => false,
            Phase::SkipLine => match memchr(b'\n', &self.input) {
                Some(i) => {
                    self.input.drain(..=i);
                    self.phase = Phase::Command;
                    true
                }
                None => {
                    self.input.clear();
                    false
                }
            },
            Phase::Data => self.step_data(),
            Phase::Chunk { left, last } => self.step_chunk(left, last),
            Phase::Command | Phase::AuthPlain | Phase::AuthLoginUser | Phase::AuthLoginPass(_) => {
                let Some(line) = self.take_line() else {
                    return false;
                };
                match line {
                    Line::TooLong { complete } => {
                        self.phase = if complete {
                            Phase::Command
                        } else {
                            Phase::SkipLine
                        };
                        self.error(Reply::new(500, "5.5.2", "Line too long"));
                    }
                    Line::Bad(why) => {
                        self.phase = Phase::Command;
                        self.error(Reply::new(500, "5.5.2", why));
                    }
                    Line::Ok(text) => match self.phase.clone() {
                        Phase::AuthPlain => {
                            self.phase = Phase::Command;
                            self.auth_plain(&text);
                        }
                        Phase::AuthLoginUser => {
                            self.phase = Phase::Command;
                            if let Some(user) = self.auth_b64(&text) {
                                self.phase = Phase::AuthLoginPass(user);
                                self.reply(Reply::new(334, "", "UGFzc3dvcmQ6"));
                            }
                        }
                        Phase::AuthLoginPass(user) => {
                            self.phase = Phase::Command;
                            if let Some(secret) = self.auth_b64(&text) {
                                self.phase = Phase::Waiting(Wait::Auth);
                                self.events.push_back(Event::Auth {
                                    authzid: String::new(),
                                    user,
                                    secret,
                                });
                            }
                        }
                        _ => self.command(&text),
                    },
                }
                true
            }
        }
    }

    /// The next command line without its line end, if complete.
    fn take_line(&mut self) -> Option<Line> {
        let max = self.cfg.limits.max_line;
        let Some(i) = memchr(b'\n', &self.input) else {
            if self.input.len() >= max {
                self.input.clear();
                return Some(Line::TooLong { complete: false });
            }
            return None;
        };
        if i + 1 > max {
            self.input.drain(..=i);
            return Some(Line::TooLong { complete: true });
        }
        let raw: Vec<u8> = self.input.drain(..=i).collect();
        let body = &raw[..raw.len() - 1];
        let Some(body) = body.strip_suffix(b"\r") else {
            return Some(Line::Bad(
                "Bare LF in command line; lines must end with CRLF",
            ));
        };
        if body.contains(&0) {
            return Some(Line::Bad("NUL character in command line"));
        }
        if body.contains(&b'\r') {
            return Some(Line::Bad("Bare CR in command line"));
        }
        match std::str::from_utf8(body) {
            Ok(s) => Some(Line::Ok(s.to_string())),
            Err(_) => Some(Line::Bad("Command line is not valid UTF-8")),
        }
    }

    fn command(&mut self, line: &str) {
        self.commands += 1;
        if self.commands > self.cfg.limits.max_commands {
            self.close_with(Reply::new(
                421,
                "4.7.0",
                "Too many commands, closing connection",
            ));
            return;
        }
        let (verb, arg) = match line.find(' ') {
            Some(i) => (&line[..i], line[i + 1..].trim()),
            None => (line, ""),
        };
        let verb = verb.to_ascii_uppercase();
        match verb.as_str() {
            "EHLO" if self.cfg.mode == Mode::Smtp => self.ehlo(arg, true),
            "LHLO" if self.cfg.mode == Mode::Lmtp => self.ehlo(arg, true),
            "HELO" if self.cfg.mode == Mode::Smtp => self.ehlo(arg, false),
            "STARTTLS" => self.starttls(arg),
            "AUTH" => self.auth(arg),
            "MAIL" => self.mail(arg),
            "RCPT" => self.rcpt(arg),
            "DATA" => self.data(arg),
            "BDAT" => self.bdat(arg),
            "RSET" => {
                if arg.is_empty() {
                    self.txn = None;
                    self.reply(Reply::new(250, "2.0.0", "OK"));
                } else {
                    self.error(Reply::new(501, "5.5.4", "Syntax: RSET"));
                }
            }
            "NOOP" => self.reply(Reply::new(250, "2.0.0", "OK")),
            "QUIT" => self.close_with(Reply::new(221, "2.0.0", "Bye")),
            "VRFY" | "EXPN" => self.reply(Reply::new(
                502,
                "5.5.1",
                format!("{verb} command is disabled"),
            )),
            "HELP" => self.reply(Reply::new(
                214,
                "2.0.0",
                "See RFC 5321; this is an archive node",
            )),
            _ => self.error(Reply::new(500, "5.5.2", "Command not recognized")),
        }
    }

    fn ehlo(&mut self, arg: &str, extended: bool) {
        if arg.is_empty() || arg.contains(' ') && !extended {
            self.error(Reply::new(501, "5.5.4", "Syntax: EHLO hostname"));
            return;
        }
        let host = arg.split(' ').next().unwrap_or(arg).to_string();
        self.txn = None;
        self.helo = Some(host.clone());
        if !extended {
            self.reply(Reply::new(250, "", self.cfg.hostname.clone()));
            return;
        }
        let mut lines = vec![
            format!("{} greets {host}", self.cfg.hostname),
            "PIPELINING".into(),
            format!("SIZE {}", self.cfg.limits.max_message_size),
            "8BITMIME".into(),
            "SMTPUTF8".into(),
            "ENHANCEDSTATUSCODES".into(),
            "CHUNKING".into(),
        ];
        if !self.tls && self.cfg.starttls {
            lines.push("STARTTLS".into());
        }
        if self.tls && self.cfg.auth && !self.authenticated {
            lines.push("AUTH PLAIN LOGIN".into());
        }
        self.events.push_back(Event::Reply(Reply {
            code: 250,
            status: "",
            lines,
        }));
    }

    fn starttls(&mut self, arg: &str) {
        if !arg.is_empty() {
            self.error(Reply::new(501, "5.5.4", "Syntax: STARTTLS"));
        } else if self.tls {
            self.error(Reply::new(503, "5.5.1", "TLS already active"));
        } else if !self.cfg.starttls {
            self.error(Reply::new(454, "4.7.0", "TLS not available"));
        } else {
            self.reply(Reply::new(220, "2.0.0", "Ready to start TLS"));
            self.events.push_back(Event::StartTls);
            // RFC 3207: forget everything, including pipelined plaintext.
            self.input.clear();
            self.tls = true;
            self.helo = None;
            self.txn = None;
        }
    }

    fn auth(&mut self, arg: &str) {
        if !self.cfg.auth {
            self.error(Reply::new(502, "5.5.1", "AUTH not available"));
            return;
        }
        if !self.tls {
            self.error(Reply::new(
                538,
                "5.7.11",
                "Encryption required for requested authentication mechanism",
            ));
            return;
        }
        if self.helo.is_none() {
            self.error(Reply::new(503, "5.5.1", "Send EHLO first"));
            return;
        }
        if self.authenticated {
            self.error(Reply::new(503, "5.5.1", "Already authenticated"));
            return;
        }
        if self.txn.is_some() {
            self.error(Reply::new(
                503,
                "5.5.1",
                "AUTH not allowed during a transaction",
            ));
            return;
        }
        let mut parts = arg.split_ascii_whitespace();
        let mech = parts.next().unwrap_or("").to_ascii_uppercase();
        let initial = parts.next();
        if parts.next().is_some() {
            self.error(Reply::new(
                501,
                "5.5.4",
                "Syntax: AUTH mechanism [initial-response]",
            ));
            return;
        }
        match (mech.as_str(), initial) {
            ("PLAIN", Some(i)) => self.auth_plain(i),
            ("PLAIN", None) => {
                self.phase = Phase::AuthPlain;
                self.reply(Reply::new(334, "", ""));
            }
            ("LOGIN", None) => {
                self.phase = Phase::AuthLoginUser;
                self.reply(Reply::new(334, "", "VXNlcm5hbWU6"));
            }
            ("LOGIN", Some(u)) => {
                if let Some(user) = self.auth_b64(u) {
                    self.phase = Phase::AuthLoginPass(user);
                    self.reply(Reply::new(334, "", "UGFzc3dvcmQ6"));
                }
            }
            _ => self.error(Reply::new(
                504,
                "5.5.4",
                "Unrecognized authentication mechanism",
            )),
        }
    }

    /// Decodes one base64 AUTH response; `*` cancels. Replies on failure.
    fn auth_b64(&mut self, text: &str) -> Option<String> {
        if text.trim() == "*" {
            self.error(Reply::new(501, "5.0.0", "Authentication cancelled"));
            return None;
        }
        match B64
            .decode(text.trim())
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
        {
            Some(s) => Some(s),
            None => {
                self.error(Reply::new(501, "5.5.2", "Cannot decode AUTH response"));
                None
            }
        }
    }

    fn auth_plain(&mut self, text: &str) {
        let text = if text == "=" { "" } else { text };
        let Some(decoded) = self.auth_b64(text) else {
            return;
        };
        let mut parts = decoded.split('\0');
        match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some(z), Some(u), Some(p), None) => {
                self.phase = Phase::Waiting(Wait::Auth);
                self.events.push_back(Event::Auth {
                    authzid: z.to_string(),
                    user: u.to_string(),
                    secret: p.to_string(),
                });
            }
            _ => self.error(Reply::new(501, "5.5.2", "Malformed AUTH PLAIN response")),
        }
    }

    fn mail(&mut self, arg: &str) {
        if !self.tls {
            self.error(Reply::new(
                530,
                "5.7.0",
                "Must issue a STARTTLS command first",
            ));
            return;
        }
        if self.helo.is_none() {
            self.error(Reply::new(503, "5.5.1", "Send EHLO/HELO first"));
            return;
        }
        if self.cfg.require_auth && !self.authenticated {
            self.error(Reply::new(530, "5.7.0", "Authentication required"));
            return;
        }
        if self.txn.is_some() {
            self.error(Reply::new(503, "5.5.1", "Nested MAIL command"));
            return;
        }
        let Some(rest) = strip_prefix_ci(arg, "FROM:") else {
            self.error(Reply::new(501, "5.5.4", "Syntax: MAIL FROM:<address>"));
            return;
        };
        let Some((addr, params)) = parse_path(rest) else {
            self.error(Reply::new(501, "5.1.7", "Bad sender address syntax"));
            return;
        };
        for p in params.split_ascii_whitespace() {
            let (k, v) = match p.find('=') {
                Some(i) => (&p[..i], Some(&p[i + 1..])),
                None => (p, None),
            };
            match (k.to_ascii_uppercase().as_str(), v) {
                ("SIZE", Some(v)) => match v.parse::<u64>() {
                    Ok(n) if n > self.cfg.limits.max_message_size => {
                        self.reply(Reply::new(
                            552,
                            "5.3.4",
                            "Message size exceeds fixed maximum message size",
                        ));
                        return;
                    }
                    Ok(_) => {}
                    Err(_) => {
                        self.error(Reply::new(501, "5.5.4", "Bad SIZE parameter"));
                        return;
                    }
                },
                ("BODY", Some(v))
                    if v.eq_ignore_ascii_case("7BIT") || v.eq_ignore_ascii_case("8BITMIME") => {}
                ("SMTPUTF8", None) => {}
                ("AUTH", Some(_)) => {} // RFC 4954 AUTH=<>: informational
                _ => {
                    self.error(Reply::new(
                        555,
                        "5.5.4",
                        format!("Unsupported parameter {k}"),
                    ));
                    return;
                }
            }
        }
        self.txn = Some(Txn {
            mail_from: addr,
            ..Txn::default()
        });
        self.reply(Reply::new(250, "2.1.0", "OK"));
    }

    fn rcpt(&mut self, arg: &str) {
        let Some(txn) = self.txn.as_ref() else {
            self.error(Reply::new(503, "5.5.1", "Need MAIL before RCPT"));
            return;
        };
        if txn.chunking {
            self.error(Reply::new(503, "5.5.1", "RCPT not allowed after BDAT"));
            return;
        }
        let n = txn.rcpt_to.len();
        let Some(rest) = strip_prefix_ci(arg, "TO:") else {
            self.error(Reply::new(501, "5.5.4", "Syntax: RCPT TO:<address>"));
            return;
        };
        let Some((addr, params)) = parse_path(rest) else {
            self.error(Reply::new(501, "5.1.3", "Bad recipient address syntax"));
            return;
        };
        if addr.is_empty() || (!addr.contains('@') && !addr.eq_ignore_ascii_case("postmaster")) {
            self.error(Reply::new(501, "5.1.3", "Bad recipient address syntax"));
            return;
        }
        if !params.trim().is_empty() {
            self.error(Reply::new(555, "5.5.4", "RCPT parameters not supported"));
            return;
        }
        if n >= self.cfg.limits.max_recipients {
            self.reply(Reply::new(452, "4.5.3", "Too many recipients"));
            return;
        }
        self.phase = Phase::Waiting(Wait::Rcpt(addr.clone()));
        self.events.push_back(Event::Rcpt(addr));
    }

    fn data(&mut self, arg: &str) {
        if !arg.is_empty() {
            self.error(Reply::new(501, "5.5.4", "Syntax: DATA"));
            return;
        }
        match self.txn.as_ref() {
            None => self.error(Reply::new(503, "5.5.1", "Need MAIL command")),
            Some(t) if t.chunking => {
                self.error(Reply::new(503, "5.5.1", "DATA not allowed after BDAT"))
            }
            Some(t) if t.rcpt_to.is_empty() => self.error(Reply::new(
                503,
                "5.5.1",
                "Need RCPT command (no valid recipients)",
            )),
            Some(_) => {
                self.phase = Phase::Data;
                self.data_prev_cr = false;
                self.data_line_start = true;
                self.reply(Reply::new(354, "", "End data with <CR><LF>.<CR><LF>"));
            }
        }
    }

    fn bdat(&mut self, arg: &str) {
        let mut parts = arg.split_ascii_whitespace();
        let size = parts.next().and_then(|s| s.parse::<u64>().ok());
        let last = match parts.next() {
            None => false,
            Some(l) if l.eq_ignore_ascii_case("LAST") => true,
            Some(_) => {
                // Cannot know how many bytes follow: the session is out of sync.
                self.close_with(Reply::new(501, "5.5.4", "Syntax: BDAT size [LAST]"));
                return;
            }
        };
        let Some(size) = size.filter(|_| parts.next().is_none()) else {
            self.close_with(Reply::new(501, "5.5.4", "Syntax: BDAT size [LAST]"));
            return;
        };
        match self.txn.as_mut() {
            Some(t) if !t.rcpt_to.is_empty() => t.chunking = true,
            _ => {
                // The chunk must still be read and thrown away.
                self.txn = None;
            }
        }
        self.phase = Phase::Chunk { left: size, last };
        // A zero-length chunk completes at once.
    }

    /// Appends message bytes, or only counts them past the size limit.
    fn append(&mut self, bytes: &[u8]) {
        let max = self.cfg.limits.max_message_size;
        if let Some(t) = self.txn.as_mut() {
            t.seen = t.seen.saturating_add(bytes.len() as u64);
            if t.seen > max {
                t.too_big = true;
                t.data = Vec::new();
            } else if !t.failed {
                t.data.extend_from_slice(bytes);
            }
        }
    }

    fn step_data(&mut self) -> bool {
        if self.input.is_empty() {
            return false;
        }
        if self.data_line_start && self.input[0] == b'.' {
            if self.input.len() < 3 && b"\r\n".starts_with(&self.input[1..]) {
                return false; // "." or ".\r": need more input to decide
            }
            if self.input.starts_with(b".\r\n") {
                self.input.drain(..3);
                self.finish_message();
                return true;
            }
            self.input.drain(..1); // dot-unstuffing
            self.data_line_start = false;
            self.data_prev_cr = false;
            return true;
        }
        let (n, end) = match memchr(b'\n', &self.input) {
            Some(i) => (i + 1, true),
            None => (self.input.len(), false),
        };
        let chunk: Vec<u8> = self.input.drain(..n).collect();
        if end {
            let cr = if n >= 2 {
                chunk[n - 2] == b'\r'
            } else {
                self.data_prev_cr
            };
            self.data_line_start = cr;
            self.data_prev_cr = false;
        } else {
            self.data_line_start = false;
            self.data_prev_cr = chunk.last() == Some(&b'\r');
        }
        self.append(&chunk);
        true
    }

    fn finish_message(&mut self) {
        let Some(t) = self.txn.take() else {
            self.phase = Phase::Command;
            return;
        };
        if t.too_big {
            self.phase = Phase::Command;
            self.reply(Reply::new(
                552,
                "5.3.4",
                "Message size exceeds fixed maximum message size",
            ));
            return;
        }
        if t.failed {
            self.phase = Phase::Command;
            self.reply(Reply::new(554, "5.5.0", "Transaction failed"));
            return;
        }
        let rcpts = t.rcpt_to.len();
        self.phase = Phase::Waiting(Wait::Message { rcpts });
        self.events.push_back(Event::Message(Message {
            mail_from: t.mail_from,
            rcpt_to: t.rcpt_to,
            data: t.data,
        }));
    }

    fn step_chunk(&mut self, left: u64, last: bool) -> bool {
        if left > 0 {
            if self.input.is_empty() {
                return false;
            }
            let n = usize::try_from(left)
                .unwrap_or(usize::MAX)
                .min(self.input.len());
            let chunk: Vec<u8> = self.input.drain(..n).collect();
            self.append(&chunk);
            self.phase = Phase::Chunk {
                left: left - n as u64,
                last,
            };
            return true;
        }
        // The chunk is complete.
        let Some(t) = self.txn.as_mut() else {
            self.phase = Phase::Command;
            self.error(Reply::new(503, "5.5.1", "Need MAIL and RCPT before BDAT"));
            return true;
        };
        if last {
            self.finish_message();
        } else {
            self.phase = Phase::Command;
            if t.too_big && !t.failed {
                t.failed = true;
                self.reply(Reply::new(
                    552,
                    "5.3.4",
                    "Message size exceeds fixed maximum message size",
                ));
            } else if t.failed {
                self.reply(Reply::new(554, "5.5.0", "Transaction failed"));
            } else {
                let seen = t.seen;
                self.reply(Reply::new(250, "2.0.0", format!("{seen} octets received")));
            }
        }
        true
    }
}

enum Line {
    Ok(String),
    TooLong { complete: bool },
    Bad(&'static str),
}

fn memchr(needle: u8, hay: &[u8]) -> Option<usize> {
    hay.iter().position(|&b| b == needle)
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| s[prefix.len()..].trim_start())
}

/// `<addr> params` → (addr without brackets, params). Source routes
/// (`<@a,@b:user@c>`) are reduced to the mailbox, as RFC 5321 allows.
fn parse_path(s: &str) -> Option<(String, &str)> {
    let s = s.trim_start();
    let rest = s.strip_prefix('<')?;
    let end = rest.find('>')?;
    let mut addr = &rest[..end];
    let params = &rest[end + 1..];
    if !params.is_empty() && !params.starts_with(' ') {
        return None;
    }
    if addr.starts_with('@') {
        addr = &addr[addr.find(':')? + 1..];
    }
    if addr.len() > 320
        || addr
            .chars()
            .any(|c| c.is_control() || c == ' ' || c == '<' || c == '>')
    {
        return None;
    }
    if !addr.is_empty() {
        let at = addr.rfind('@');
        if let Some(at) = at
            && (at == 0 || at + 1 == addr.len())
        {
            return None;
        }
    }
    Some((addr.to_string(), params))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> SessionConfig {
        SessionConfig {
            hostname: "archive.test".into(),
            mode: Mode::Smtp,
            limits: Limits {
                max_line: 512,
                max_commands: 1000,
                max_errors: 50,
                max_recipients: 3,
                max_message_size: 100,
            },
            starttls: true,
            auth: true,
            require_auth: false,
        }
    }

    /// A driver answering like a permissive listener: recipients at
    /// `bad.test` are refused, the secret `key` is good, every message is
    /// queued as `Q<n>`.
    struct Driver {
        s: Session,
        out: String,
        messages: Vec<Message>,
        tls_upgrades: usize,
        closed: bool,
    }

    impl Driver {
        fn new(cfg: SessionConfig, tls: bool) -> Self {
            let mut d = Driver {
                s: Session::new(cfg, tls),
                out: String::new(),
                messages: Vec::new(),
                tls_upgrades: 0,
                closed: false,
            };
            d.pump();
            assert!(d.take().starts_with("220 archive.test ESMTP"));
            d
        }
        fn tls() -> Self {
            let mut d = Driver::new(cfg(), true);
            d.send("EHLO client.test\r\n");
            d.take();
            d
        }
        fn pump(&mut self) {
            while let Some(e) = self.s.poll() {
                match e {
                    Event::Reply(r) => self.out.push_str(&r.to_string()),
                    Event::StartTls => self.tls_upgrades += 1,
                    Event::Auth { secret, .. } => self.s.auth_result(secret == "key"),
                    Event::Rcpt(a) => self.s.rcpt_result(
                        a.ends_with("@bad.test")
                            .then(|| Reply::new(550, "5.1.1", "no tenant")),
                    ),
                    Event::Message(m) => {
                        self.messages.push(m);
                        let id = format!("Q{}", self.messages.len());
                        self.s.message_result(Delivery::Queued(id));
                    }
                    Event::Close => self.closed = true,
                }
            }
        }
        fn send(&mut self, input: &str) -> &mut Self {
            self.send_bytes(input.as_bytes())
        }
        fn send_bytes(&mut self, input: &[u8]) -> &mut Self {
            self.s.feed(input);
            self.pump();
            self
        }
        fn take(&mut self) -> String {
            std::mem::take(&mut self.out)
        }
        fn codes(&mut self) -> Vec<u16> {
            self.take()
                .lines()
                .filter(|l| l.as_bytes().get(3) == Some(&b' '))
                .filter_map(|l| l[..3].parse().ok())
                .collect()
        }
    }

    #[test]
    fn greeting_and_ehlo_before_tls_offer_starttls_not_auth() {
        let mut d = Driver::new(cfg(), false);
        d.send("EHLO c.test\r\n");
        let r = d.take();
        assert!(r.starts_with("250-archive.test greets c.test\r\n"), "{r}");
        for ext in [
            "PIPELINING",
            "SIZE 100",
            "8BITMIME",
            "SMTPUTF8",
            "CHUNKING",
            "STARTTLS",
        ] {
            assert!(r.contains(ext), "{ext} missing in {r}");
        }
        assert!(!r.contains("AUTH"), "{r}");
        assert!(r.ends_with("\r\n") && r.lines().last().unwrap().starts_with("250 "));
    }

    #[test]
    fn mail_before_starttls_is_530() {
        let mut d = Driver::new(cfg(), false);
        d.send("EHLO c.test\r\nMAIL FROM:<a@b.test>\r\n");
        let r = d.take();
        assert!(
            r.ends_with("530 5.7.0 Must issue a STARTTLS command first\r\n"),
            "{r}"
        );
        // Still refused without EHLO.
        d.send("RSET\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<x@y.test>\r\nDATA\r\n");
        assert_eq!(d.codes(), vec![250, 530, 503, 503]);
        assert!(d.messages.is_empty());
    }

    #[test]
    fn starttls_discards_pipelined_plaintext_and_resets() {
        let mut d = Driver::new(cfg(), false);
        d.send("EHLO c.test\r\nSTARTTLS\r\nMAIL FROM:<evil@x.test>\r\n");
        assert_eq!(d.codes(), vec![250, 220]);
        assert_eq!(d.tls_upgrades, 1);
        assert!(d.s.is_tls());
        // The injected MAIL was thrown away; EHLO is needed again.
        d.send("MAIL FROM:<a@b.test>\r\n");
        assert_eq!(d.codes(), vec![503]);
        d.send("EHLO c.test\r\n");
        let r = d.take();
        assert!(
            !r.contains("STARTTLS") && r.contains("AUTH PLAIN LOGIN"),
            "{r}"
        );
        d.send("STARTTLS\r\n");
        assert_eq!(d.codes(), vec![503]);
    }

    #[test]
    fn full_transaction_with_dot_unstuffing() {
        let mut d = Driver::tls();
        d.send("MAIL FROM:<a@b.test> SIZE=50 BODY=8BITMIME SMTPUTF8\r\n");
        d.send("RCPT TO:<x@y.test>\r\nRCPT TO:<z@y.test>\r\nDATA\r\n");
        assert_eq!(d.codes(), vec![250, 250, 250, 354]);
        d.send("Subject: hi\r\n\r\n..leading dot\r\n.\r");
        assert!(d.messages.is_empty());
        d.send("\nQUIT\r\n");
        assert_eq!(d.codes(), vec![250, 221]);
        assert!(d.closed);
        let m = &d.messages[0];
        assert_eq!(m.mail_from, "a@b.test");
        assert_eq!(m.rcpt_to, vec!["x@y.test", "z@y.test"]);
        assert_eq!(m.data, b"Subject: hi\r\n\r\n.leading dot\r\n");
    }

    #[test]
    fn queue_id_is_in_the_250() {
        let mut d = Driver::tls();
        d.send("MAIL FROM:<>\r\nRCPT TO:<x@y.test>\r\nDATA\r\nx\r\n.\r\n");
        let r = d.take();
        assert!(r.ends_with("250 2.0.0 OK: queued as Q1\r\n"), "{r}");
        assert_eq!(d.messages[0].mail_from, "");
    }

    #[test]
    fn data_split_byte_by_byte_is_the_same() {
        let mut d = Driver::tls();
        d.send("MAIL FROM:<a@b.test>\r\nRCPT TO:<x@y.test>\r\nDATA\r\n");
        d.take();
        for b in b"A\r\n..\r\n.. x\r\n\r\n.\r\n" {
            d.send_bytes(&[*b]);
        }
        assert_eq!(d.messages[0].data, b"A\r\n.\r\n. x\r\n\r\n");
    }

    #[test]
    fn bare_lf_dot_does_not_end_data() {
        let mut d = Driver::tls();
        d.send("MAIL FROM:<a@b.test>\r\nRCPT TO:<x@y.test>\r\nDATA\r\n");
        d.take();
        d.send("a\n.\nMAIL FROM:<smuggled@x.test>\n\r\n.\r\n");
        assert_eq!(d.codes(), vec![250]);
        assert_eq!(d.messages.len(), 1);
        assert_eq!(
            d.messages[0].data,
            b"a\n.\nMAIL FROM:<smuggled@x.test>\n\r\n"
        );
    }

    #[test]
    fn bare_lf_and_nul_in_commands_are_refused() {
        let mut d = Driver::tls();
        d.send("NOOP\n");
        d.send("NO\0OP\r\n");
        d.send("NOOP\rX\r\n");
        d.send_bytes(b"NOOP \xff\r\n");
        let r = d.take();
        assert_eq!(r.matches("500 5.5.2").count(), 4, "{r}");
        assert!(r.contains("Bare LF") && r.contains("NUL"), "{r}");
    }

    #[test]
    fn over_long_line_is_500_and_skipped() {
        let mut d = Driver::tls();
        let long = format!("NOOP {}\r\nNOOP\r\n", "x".repeat(2000));
        d.send(&long);
        assert_eq!(d.codes(), vec![500, 250]);
        // Without any line end, memory stays bounded by the line limit.
        for _ in 0..100 {
            d.send(&"y".repeat(1000));
            assert!(d.s.input.len() < 1024);
        }
        d.send("\r\nNOOP\r\n");
        assert_eq!(d.codes(), vec![500, 250]);
    }

    #[test]
    fn recipient_limit_is_452_and_refusals_pass_through() {
        let mut d = Driver::tls();
        d.send("MAIL FROM:<a@b.test>\r\n");
        d.send("RCPT TO:<r@bad.test>\r\n");
        for i in 0..5 {
            d.send(&format!("RCPT TO:<r{i}@y.test>\r\n"));
        }
        assert_eq!(d.codes(), vec![250, 550, 250, 250, 250, 452, 452]);
        d.send("DATA\r\nx\r\n.\r\n");
        assert_eq!(d.messages[0].rcpt_to.len(), 3);
    }

    #[test]
    fn ten_thousand_recipients_do_not_close_the_session() {
        let mut c = cfg();
        c.limits.max_commands = 100_000;
        c.limits.max_recipients = 1000;
        let mut d = Driver::new(c, true);
        d.send("EHLO c\r\nMAIL FROM:<a@b.test>\r\n");
        let mut input = String::new();
        for i in 0..10_000 {
            input.push_str(&format!("RCPT TO:<r{i}@y.test>\r\n"));
        }
        d.send(&input);
        let codes = d.codes();
        assert_eq!(codes.iter().filter(|c| **c == 452).count(), 9000);
        d.send("DATA\r\nx\r\n.\r\n");
        assert_eq!(d.messages[0].rcpt_to.len(), 1000);
    }

    #[test]
    fn message_size_limit_from_size_param_and_from_data() {
        let mut d = Driver::tls();
        d.send("MAIL FROM:<a@b.test> SIZE=101\r\n");
        assert_eq!(d.codes(), vec![552]);
        d.send("MAIL FROM:<a@b.test>\r\nRCPT TO:<x@y.test>\r\nDATA\r\n");
        d.take();
        for _ in 0..1000 {
            d.send(&"z".repeat(99));
            d.send("\r\n");
        }
        d.send(".\r\n");
        let r = d.take();
        assert!(r.contains("552 5.3.4"), "{r}");
        assert!(d.messages.is_empty());
        // The session goes on.
        d.send("MAIL FROM:<a@b.test>\r\n");
        assert_eq!(d.codes(), vec![250]);
    }

    #[test]
    fn bdat_chunks_are_verbatim() {
        let mut d = Driver::tls();
        d.send("MAIL FROM:<a@b.test>\r\nRCPT TO:<x@y.test>\r\n");
        d.send("BDAT 6\r\n.\r\nabcBDAT 3 LAST\r\n\r\n.");
        let r = d.take();
        assert!(r.contains("250 2.0.0 6 octets received"), "{r}");
        assert!(r.ends_with("queued as Q1\r\n"), "{r}");
        assert_eq!(d.messages[0].data, b".\r\nabc\r\n.");
        d.send("BDAT 0 LAST\r\n");
        assert_eq!(d.codes(), vec![503]);
    }

    #[test]
    fn bdat_over_limit_and_protocol_errors() {
        let mut d = Driver::tls();
        d.send("MAIL FROM:<a@b.test>\r\nRCPT TO:<x@y.test>\r\nBDAT 80\r\n");
        d.send(&"a".repeat(80));
        d.send("BDAT 80\r\n");
        d.send(&"a".repeat(80));
        d.send("DATA\r\nBDAT 5 LAST\r\nabcde");
        assert_eq!(d.codes(), vec![250, 250, 250, 552, 503, 552]);
        assert!(d.messages.is_empty());
        d.send("BDAT x\r\n");
        assert_eq!(d.codes(), vec![501]);
        assert!(d.closed);
    }

    #[test]
    fn auth_only_after_tls_and_both_mechanisms() {
        let mut d = Driver::new(cfg(), false);
        d.send("EHLO c\r\nAUTH PLAIN AGEAa2V5\r\n");
        assert_eq!(d.codes(), vec![250, 538]);

        let mut d = Driver::tls();
        d.send("AUTH PLAIN AGEAd3Jvbmc=\r\n"); // \0a\0wrong
        assert_eq!(d.codes(), vec![535]);
        d.send("AUTH PLAIN\r\nAGEAa2V5\r\n"); // \0a\0key
        assert_eq!(d.codes(), vec![334, 235]);
        assert!(d.s.is_authenticated());
        d.send("AUTH PLAIN AGEAa2V5\r\n");
        assert_eq!(d.codes(), vec![503]);

        let mut d = Driver::tls();
        d.send("AUTH LOGIN\r\n");
        assert!(d.take().starts_with("334 VXNlcm5hbWU6"));
        d.send("YQ==\r\n");
        assert!(d.take().starts_with("334 UGFzc3dvcmQ6"));
        d.send("a2V5\r\n");
        assert_eq!(d.codes(), vec![235]);

        let mut d = Driver::tls();
        d.send("AUTH LOGIN\r\n*\r\nAUTH CRAM-MD5\r\nAUTH PLAIN !!!\r\n");
        assert_eq!(d.codes(), vec![334, 501, 504, 501]);
    }

    #[test]
    fn require_auth_blocks_mail() {
        let mut c = cfg();
        c.require_auth = true;
        let mut d = Driver::new(c, true);
        d.send("EHLO c\r\nMAIL FROM:<a@b.test>\r\n");
        assert_eq!(d.codes(), vec![250, 530]);
        d.send("AUTH PLAIN AGEAa2V5\r\nMAIL FROM:<a@b.test>\r\n");
        assert_eq!(d.codes(), vec![235, 250]);
    }

    #[test]
    fn sequencing_errors() {
        let mut d = Driver::new(cfg(), true);
        d.send("MAIL FROM:<a@b.test>\r\n");
        d.send("EHLO c\r\nRCPT TO:<x@y.test>\r\nDATA\r\n");
        d.send("MAIL FROM:<a@b.test>\r\nMAIL FROM:<a@b.test>\r\nDATA\r\n");
        d.send("RSET\r\nRCPT TO:<x@y.test>\r\n");
        assert_eq!(d.codes(), vec![503, 250, 503, 503, 250, 503, 503, 250, 503]);
    }

    #[test]
    fn syntax_errors_and_misc_commands() {
        let mut d = Driver::tls();
        d.send("MAIL FROM:a@b.test\r\nMAIL TO:<a@b>\r\nMAIL FROM:<a@b.test> FOO=1\r\n");
        d.send("MAIL FROM:<a@b.test>\r\nRCPT TO:<>\r\nRCPT TO:<@x.test>\r\nRCPT TO:<x@y.test> NOTIFY=NEVER\r\n");
        d.send("VRFY root\r\nEXPN list\r\nNOOP\r\nHELP\r\nFOO\r\nRSET x\r\nDATA x\r\nHELO\r\n");
        assert_eq!(
            d.codes(),
            vec![
                501, 501, 555, 250, 501, 501, 555, 502, 502, 250, 214, 500, 501, 501, 501
            ]
        );
    }

    #[test]
    fn source_route_is_reduced_to_mailbox() {
        let mut d = Driver::tls();
        d.send("MAIL FROM:<@relay.test:a@b.test>\r\nRCPT TO:<x@y.test>\r\nDATA\r\nx\r\n.\r\n");
        assert_eq!(d.messages[0].mail_from, "a@b.test");
    }

    #[test]
    fn too_many_errors_and_commands_close() {
        let mut c = cfg();
        c.limits.max_errors = 3;
        let mut d = Driver::new(c, true);
        d.send("X\r\nY\r\nZ\r\nNOOP\r\n");
        assert_eq!(d.codes(), vec![500, 500, 500, 421]);
        assert!(d.closed && d.s.is_closed());

        let mut c = cfg();
        c.limits.max_commands = 3;
        let mut d = Driver::new(c, true);
        d.send("NOOP\r\nNOOP\r\nNOOP\r\nNOOP\r\nNOOP\r\n");
        assert_eq!(d.codes(), vec![250, 250, 250, 421]);
    }

    #[test]
    fn disconnect_mid_data_stores_nothing() {
        let mut d = Driver::tls();
        d.send("MAIL FROM:<a@b.test>\r\nRCPT TO:<x@y.test>\r\nDATA\r\npartial\r\n");
        d.take();
        assert!(d.s.disconnected());
        assert!(d.messages.is_empty());
        d.send(".\r\n");
        assert!(d.messages.is_empty() && d.take().is_empty());
    }

    #[test]
    fn pipelined_replies_come_in_order_with_temp_failure() {
        let mut s = Session::new(cfg(), true);
        s.feed(
            b"EHLO c\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<x@y.test>\r\nDATA\r\nx\r\n.\r\nNOOP\r\n",
        );
        let mut seen = Vec::new();
        while let Some(e) = s.poll() {
            match e {
                Event::Reply(r) => seen.push(r.code),
                Event::Rcpt(_) => s.rcpt_result(None),
                Event::Message(_) => {
                    // Nothing after DATA is answered until the message is.
                    assert!(s.poll().is_none());
                    s.message_result(Delivery::TempFail("spool unavailable".into()));
                }
                e => panic!("{e:?}"),
            }
        }
        assert_eq!(seen, vec![220, 250, 250, 250, 354, 451, 250]);
    }

    #[test]
    fn lmtp_answers_per_recipient() {
        let mut c = cfg();
        c.mode = Mode::Lmtp;
        let mut s = Session::new(c, true);
        s.feed(b"EHLO c\r\nLHLO c\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<x@y.test>\r\nRCPT TO:<z@y.test>\r\nDATA\r\nx\r\n.\r\n");
        let mut seen = Vec::new();
        while let Some(e) = s.poll() {
            match e {
                Event::Reply(r) => seen.push(r.code),
                Event::Rcpt(_) => s.rcpt_result(None),
                Event::Message(_) => s.message_result(Delivery::Queued("Q".into())),
                e => panic!("{e:?}"),
            }
        }
        assert_eq!(seen, vec![220, 500, 250, 250, 250, 250, 354, 250, 250]);
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        // A deterministic pseudo-random byte soup, in every phase.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for round in 0..300 {
            let mut d = Driver::new(cfg(), round % 2 == 0);
            let prefix: &[u8] = match round % 4 {
                0 => b"EHLO c\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<x@y.test>\r\nDATA\r\n",
                1 => b"EHLO c\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<x@y.test>\r\nBDAT 20\r\n",
                2 => b"EHLO c\r\nAUTH LOGIN\r\n",
                _ => b"",
            };
            d.send_bytes(prefix);
            for _ in 0..50 {
                let mut buf = Vec::new();
                for _ in 0..(x % 64) {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let b = match x % 8 {
                        0 => b'\r',
                        1 => b'\n',
                        2 => b'.',
                        3 => b' ',
                        _ => (x >> 8) as u8,
                    };
                    buf.push(b);
                }
                d.send_bytes(&buf);
            }
            d.s.disconnected();
        }
    }

    #[test]
    fn reply_rendering() {
        let r = Reply {
            code: 250,
            status: "",
            lines: vec!["a".into(), "b".into()],
        };
        assert_eq!(r.to_bytes(), b"250-a\r\n250 b\r\n");
        assert_eq!(
            Reply::new(550, "5.1.1", "no").to_bytes(),
            b"550 5.1.1 no\r\n"
        );
    }
}
