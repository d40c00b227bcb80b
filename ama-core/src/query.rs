//! The search query language of the archive: a lexer and a recursive-descent
//! parser that turn what a user types (`from:alice "quarterly report" -has:attachment`)
//! into a [`Query`] tree that the search engine evaluates.
//!
//! The language itself is documented for users in `docs/SEARCH.md`. This module
//! only parses: it does no I/O and knows nothing about the index. It is kept
//! separate so that every front end (CLI, HTTP, Python) accepts exactly the same
//! language and reports mistakes the same way, as a [`QueryError`] naming the
//! 0-based *character* offset where the problem starts.
//!
//! Summary of the grammar (lowest precedence first):
//!
//! ```text
//! query    := and_expr EOF                       (only whitespace => Query::All)
//! and_expr := or_expr ( ["AND"] or_expr )*       (adjacent terms are ANDed)
//! or_expr  := unary ( "OR" unary )*              (OR binds tighter than AND)
//! unary    := ( "-" | "NOT" ) unary | primary
//! primary  := "(" and_expr ")" | word | phrase | field ":" ( word | phrase )
//! ```
//!
//! Parsing is hostile-input safe: input is capped at 10,000
//! characters and nesting (parentheses and negations together) at 64
//! levels, so no input can panic or overflow the stack.
//!
//! For [`Field::MessageId`], both [`Query::Word`] and [`Query::Phrase`] carry
//! the bare message id (one pair of surrounding `<` `>` removed) and mean an
//! exact, case-insensitive match.

use time::{Date, Month};

/// Longest accepted query, in characters.
const MAX_INPUT_CHARS: usize = 10_000;

/// Deepest accepted nesting of parentheses and negations.
const MAX_DEPTH: usize = 64;

/// A field a term or phrase is matched against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Field {
    /// No prefix: subject, body text, text-like attachments, addresses,
    /// display names and attachment file names.
    Any,
    /// `from:` — From and Sender headers and the envelope MAIL FROM.
    From,
    /// `to:` — To, Cc and Bcc headers and every envelope RCPT TO.
    To,
    /// `cc:` — the Cc header.
    Cc,
    /// `subject:` — the Subject header.
    Subject,
    /// `filename:` — attachment file names.
    Filename,
    /// `message-id:` / `msgid:` — exact Message-ID, without angle brackets.
    MessageId,
}

/// Parsed query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Query {
    /// The empty query (only whitespace): matches everything.
    All,
    /// A bare word, possibly field-prefixed: `hello`, `from:alice@example.com`,
    /// `subject:invoice`.
    Word {
        /// Field the word is matched against.
        field: Field,
        /// The word as typed (without the field prefix).
        text: String,
    },
    /// A double-quoted phrase: `"quarterly report"`, `from:"Jeff Skilling"`.
    Phrase {
        /// Field the phrase is matched against.
        field: Field,
        /// Phrase text without the quotes, with `\"` and `\\` unescaped.
        text: String,
    },
    /// `has:attachment` (also `has:attachments`).
    HasAttachment,
    /// `after:YYYY-MM-DD`: message date >= that day 00:00 UTC.
    After(Date),
    /// `before:YYYY-MM-DD`: message date < that day 00:00 UTC.
    Before(Date),
    /// `larger:N[K|M|G][B]`: message size in bytes > N (binary units).
    Larger(u64),
    /// `smaller:N[K|M|G][B]`: message size in bytes < N (binary units).
    Smaller(u64),
    /// All children must match.
    And(Vec<Query>),
    /// At least one child must match.
    Or(Vec<Query>),
    /// The child must not match.
    Not(Box<Query>),
}

impl Field {
    /// The prefix that selects this field in the query language (`from`,
    /// `message-id`, …); `None` for [`Field::Any`].
    pub fn prefix(self) -> Option<&'static str> {
        match self {
            Field::Any => None,
            Field::From => Some("from"),
            Field::To => Some("to"),
            Field::Cc => Some("cc"),
            Field::Subject => Some("subject"),
            Field::Filename => Some("filename"),
            Field::MessageId => Some("message-id"),
        }
    }
}

/// Prints the query in the query language, in a canonical form that
/// [`parse`] turns back into the same tree: for every `q` that `parse`
/// returns, `parse(&q.to_string()) == Ok(q)` (checked by a property test and
/// by the `query` fuzz target). Field prefixes are lower case, `And` is
/// implicit (a space), `Or` is ` OR `, negation is `-`, and parentheses are
/// added only where precedence needs them (an `And` inside an `Or` or under
/// a negation). Trees `parse` never returns (an `And` with one child, a bare
/// word `AND`, …) print on a best-effort basis.
impl std::fmt::Display for Query {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Query::All => Ok(()),
            Query::Word { field, text } => {
                if let Some(p) = field.prefix() {
                    write!(f, "{p}:")?;
                }
                if *field == Field::MessageId {
                    // `parse` removes one pair of angle brackets: add one.
                    write!(f, "<{text}>")
                } else {
                    f.write_str(text)
                }
            }
            Query::Phrase { field, text } => {
                if let Some(p) = field.prefix() {
                    write!(f, "{p}:")?;
                }
                f.write_str("\"")?;
                if *field == Field::MessageId {
                    f.write_str("<")?;
                }
                for c in text.chars() {
                    if matches!(c, '"' | '\\') {
                        f.write_str("\\")?;
                    }
                    write!(f, "{c}")?;
                }
                if *field == Field::MessageId {
                    f.write_str(">")?;
                }
                f.write_str("\"")
            }
            Query::HasAttachment => f.write_str("has:attachment"),
            Query::After(d) => write!(f, "after:{}", Iso(*d)),
            Query::Before(d) => write!(f, "before:{}", Iso(*d)),
            Query::Larger(n) => write!(f, "larger:{n}"),
            Query::Smaller(n) => write!(f, "smaller:{n}"),
            Query::And(children) => {
                for (i, c) in children.iter().enumerate() {
                    if i > 0 {
                        f.write_str(" ")?;
                    }
                    match c {
                        Query::And(_) => write!(f, "({c})")?,
                        _ => write!(f, "{c}")?,
                    }
                }
                Ok(())
            }
            Query::Or(children) => {
                for (i, c) in children.iter().enumerate() {
                    if i > 0 {
                        f.write_str(" OR ")?;
                    }
                    match c {
                        Query::And(_) | Query::Or(_) => write!(f, "({c})")?,
                        _ => write!(f, "{c}")?,
                    }
                }
                Ok(())
            }
            Query::Not(inner) => match **inner {
                Query::And(_) | Query::Or(_) => write!(f, "-({inner})"),
                _ => write!(f, "-{inner}"),
            },
        }
    }
}

/// A date as `YYYY-MM-DD` (what `after:`/`before:` accept).
struct Iso(Date);

impl std::fmt::Display for Iso {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let d = self.0;
        write!(
            f,
            "{:04}-{:02}-{:02}",
            d.year(),
            u8::from(d.month()),
            d.day()
        )
    }
}

/// Why a query could not be parsed. `position` is the 0-based CHARACTER
/// offset (not byte) in the query string where the problem starts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} at position {position}")]
#[non_exhaustive]
pub struct QueryError {
    /// 0-based character offset in the query where the problem starts.
    pub position: usize,
    /// Human-readable description of the problem.
    pub message: String,
}

impl QueryError {
    fn new(position: usize, message: impl Into<String>) -> Self {
        Self {
            position,
            message: message.into(),
        }
    }
}

/// Parse a query string.
///
/// Whitespace-only input yields [`Query::All`]. A single term is returned as
/// itself; `And`/`Or` nodes always have at least two children and are
/// flattened (no `And` directly inside an `And`, no `Or` directly inside an
/// `Or`).
///
/// # Errors
///
/// Returns a [`QueryError`] with the character position of the first problem:
/// unbalanced parentheses or quotes, empty groups or phrases, dangling
/// operators, unknown field prefixes, invalid field values, input longer than
/// 10,000 characters or nested deeper than 64 levels.
pub fn parse(input: &str) -> Result<Query, QueryError> {
    if input.chars().nth(MAX_INPUT_CHARS).is_some() {
        return Err(QueryError::new(
            MAX_INPUT_CHARS,
            format!("query is too long (more than {MAX_INPUT_CHARS} characters)"),
        ));
    }
    if input.chars().all(char::is_whitespace) {
        return Ok(Query::All);
    }
    let chars: Vec<char> = input.chars().collect();
    let mut parser = Parser {
        lexer: Lexer {
            chars: &chars,
            pos: 0,
        },
        peeked: None,
        depth: 0,
    };
    let query = parser.parse_and()?;
    match parser.next()? {
        Tok::Eof(_) => Ok(query),
        Tok::RParen(p) => Err(QueryError::new(p, "unmatched ')'")),
        other => Err(QueryError::new(other.position(), "unexpected input")),
    }
}

// ---------------------------------------------------------------------------
// Lexer
// ---------------------------------------------------------------------------

/// A token; every variant but `Term` carries its character position.
#[derive(Debug)]
enum Tok {
    LParen(usize),
    RParen(usize),
    Minus(usize),
    Not(usize),
    And(usize),
    Or(usize),
    /// A complete term (word, phrase or field:value), already validated.
    Term(Query, usize),
    Eof(usize),
}

impl Tok {
    fn position(&self) -> usize {
        match self {
            Tok::LParen(p)
            | Tok::RParen(p)
            | Tok::Minus(p)
            | Tok::Not(p)
            | Tok::And(p)
            | Tok::Or(p)
            | Tok::Term(_, p)
            | Tok::Eof(p) => *p,
        }
    }
}

/// What a field prefix means.
#[derive(Debug, Clone, Copy)]
enum Prefix {
    Text(Field),
    Has,
    After,
    Before,
    Larger,
    Smaller,
}

fn lookup_prefix(name: &str) -> Option<Prefix> {
    const TABLE: &[(&str, Prefix)] = &[
        ("from", Prefix::Text(Field::From)),
        ("to", Prefix::Text(Field::To)),
        ("cc", Prefix::Text(Field::Cc)),
        ("subject", Prefix::Text(Field::Subject)),
        ("filename", Prefix::Text(Field::Filename)),
        ("message-id", Prefix::Text(Field::MessageId)),
        ("msgid", Prefix::Text(Field::MessageId)),
        ("has", Prefix::Has),
        ("after", Prefix::After),
        ("before", Prefix::Before),
        ("larger", Prefix::Larger),
        ("smaller", Prefix::Smaller),
    ];
    TABLE
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|&(_, p)| p)
}

/// A field name is an ASCII letter followed by ASCII letters or hyphens.
fn is_field_name(name: &str) -> bool {
    let mut it = name.chars();
    matches!(it.next(), Some(c) if c.is_ascii_alphabetic())
        && it.all(|c| c.is_ascii_alphabetic() || c == '-')
}

fn is_word_char(c: char) -> bool {
    !c.is_whitespace() && !matches!(c, '(' | ')' | '"')
}

struct Lexer<'a> {
    chars: &'a [char],
    pos: usize,
}

impl Lexer<'_> {
    fn peek_char(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn next_token(&mut self) -> Result<Tok, QueryError> {
        while self.peek_char().is_some_and(char::is_whitespace) {
            self.pos += 1;
        }
        let start = self.pos;
        let Some(c) = self.peek_char() else {
            return Ok(Tok::Eof(start));
        };
        match c {
            '(' => {
                self.pos += 1;
                Ok(Tok::LParen(start))
            }
            ')' => {
                self.pos += 1;
                Ok(Tok::RParen(start))
            }
            '"' => {
                let text = self.lex_phrase()?;
                Ok(Tok::Term(
                    Query::Phrase {
                        field: Field::Any,
                        text,
                    },
                    start,
                ))
            }
            '-' => match self.chars.get(start + 1) {
                Some(&n) if !n.is_whitespace() && n != ')' => {
                    self.pos += 1;
                    Ok(Tok::Minus(start))
                }
                _ => Err(QueryError::new(
                    start,
                    "'-' must be followed by a search term",
                )),
            },
            _ => self.lex_word(),
        }
    }

    /// Lex a double-quoted phrase starting at the current position (a `"`).
    fn lex_phrase(&mut self) -> Result<String, QueryError> {
        let start = self.pos;
        self.pos += 1;
        let mut text = String::new();
        loop {
            let Some(c) = self.peek_char() else {
                return Err(QueryError::new(start, "unterminated quote"));
            };
            self.pos += 1;
            match c {
                '"' => break,
                '\\' => match self.peek_char() {
                    Some(n @ ('"' | '\\')) => {
                        text.push(n);
                        self.pos += 1;
                    }
                    _ => text.push('\\'),
                },
                _ => text.push(c),
            }
        }
        if text.trim().is_empty() {
            return Err(QueryError::new(start, "empty phrase"));
        }
        Ok(text)
    }

    /// Lex a word, a keyword or a `field:value` term.
    fn lex_word(&mut self) -> Result<Tok, QueryError> {
        let start = self.pos;
        while self.peek_char().is_some_and(is_word_char) {
            self.pos += 1;
        }
        let word: String = self.chars[start..self.pos].iter().collect();
        match word.as_str() {
            "AND" => return Ok(Tok::And(start)),
            "OR" => return Ok(Tok::Or(start)),
            "NOT" => return Ok(Tok::Not(start)),
            _ => {}
        }
        if let Some(colon) = word.find(':') {
            let name = &word[..colon];
            if is_field_name(name) {
                // `name` is ASCII, so its byte length is its character count.
                let value_pos = start + colon + 1;
                let value = &word[colon + 1..];
                let prefix = lookup_prefix(name);
                let unknown = || QueryError::new(start, format!("unknown field '{name}'"));
                if !value.is_empty() {
                    let prefix = prefix.ok_or_else(unknown)?;
                    let term = build_term(prefix, name, value, false, value_pos)?;
                    return Ok(Tok::Term(term, start));
                }
                if self.peek_char() == Some('"') {
                    let prefix = prefix.ok_or_else(unknown)?;
                    let text = self.lex_phrase()?;
                    let term = build_term(prefix, name, &text, true, value_pos + 1)?;
                    return Ok(Tok::Term(term, start));
                }
                if prefix.is_some() {
                    return Err(QueryError::new(
                        value_pos,
                        format!("missing value after '{name}:'"),
                    ));
                }
                // An unknown name with nothing after the colon (`Re:`) is a word.
            }
        }
        Ok(Tok::Term(
            Query::Word {
                field: Field::Any,
                text: word,
            },
            start,
        ))
    }
}

/// Turn a field prefix and its value into a term, validating the value.
fn build_term(
    prefix: Prefix,
    name: &str,
    value: &str,
    quoted: bool,
    value_pos: usize,
) -> Result<Query, QueryError> {
    match prefix {
        Prefix::Text(field) => {
            let mut text = value;
            if field == Field::MessageId {
                if let Some(inner) = text.strip_prefix('<').and_then(|t| t.strip_suffix('>')) {
                    text = inner;
                }
                if text.trim().is_empty() {
                    return Err(QueryError::new(
                        value_pos,
                        format!("missing value after '{name}:'"),
                    ));
                }
            }
            let text = text.to_owned();
            Ok(if quoted {
                Query::Phrase { field, text }
            } else {
                Query::Word { field, text }
            })
        }
        Prefix::Has => {
            if value.eq_ignore_ascii_case("attachment") || value.eq_ignore_ascii_case("attachments")
            {
                Ok(Query::HasAttachment)
            } else {
                Err(QueryError::new(
                    value_pos,
                    format!("unsupported value '{value}' for 'has:' (expected 'attachment')"),
                ))
            }
        }
        Prefix::After | Prefix::Before => {
            let date = parse_date(value).map_err(|m| QueryError::new(value_pos, m))?;
            Ok(if matches!(prefix, Prefix::After) {
                Query::After(date)
            } else {
                Query::Before(date)
            })
        }
        Prefix::Larger | Prefix::Smaller => {
            let size = parse_size(value).map_err(|m| QueryError::new(value_pos, m))?;
            Ok(if matches!(prefix, Prefix::Larger) {
                Query::Larger(size)
            } else {
                Query::Smaller(size)
            })
        }
    }
}

/// Parse `YYYY-MM-DD` into a calendar date.
fn parse_date(s: &str) -> Result<Date, String> {
    let b = s.as_bytes();
    let shape_ok = b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit());
    if !shape_ok {
        return Err(format!(
            "expected a date in the form YYYY-MM-DD, found '{s}'"
        ));
    }
    let invalid = || format!("'{s}' is not a valid calendar date (expected YYYY-MM-DD)");
    let year: i32 = s[0..4].parse().map_err(|_| invalid())?;
    let month: u8 = s[5..7].parse().map_err(|_| invalid())?;
    let day: u8 = s[8..10].parse().map_err(|_| invalid())?;
    let month = Month::try_from(month).map_err(|_| invalid())?;
    Date::from_calendar_date(year, month, day).map_err(|_| invalid())
}

/// Parse `N[K|M|G][B]` (binary units, case-insensitive) into bytes.
fn parse_size(s: &str) -> Result<u64, String> {
    let bad = || format!("expected a size like 1024, 100K, 5M or 1G, found '{s}'");
    let too_large = || format!("size '{s}' is too large");
    let digits_end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    if digits_end == 0 {
        return Err(bad());
    }
    let number: u64 = s[..digits_end].parse().map_err(|_| too_large())?;
    let mut rest = &s[digits_end..];
    let multiplier: u64 = match rest.chars().next() {
        Some('k' | 'K') => 1 << 10,
        Some('m' | 'M') => 1 << 20,
        Some('g' | 'G') => 1 << 30,
        _ => 1,
    };
    if multiplier != 1 {
        rest = &rest[1..];
    }
    if !(rest.is_empty() || rest.eq_ignore_ascii_case("b")) {
        return Err(bad());
    }
    number.checked_mul(multiplier).ok_or_else(too_large)
}

// ---------------------------------------------------------------------------
// Parser
// ---------------------------------------------------------------------------

/// The operator an operand is expected after, for error messages.
#[derive(Debug, Clone, Copy)]
struct Op {
    name: &'static str,
    pos: usize,
}

/// A copyable view of the next token, to decide without borrowing it.
#[derive(Debug, Clone, Copy)]
enum Kind {
    RParen,
    Minus(usize),
    Not(usize),
    And(usize),
    Or(usize),
    Eof,
    Other,
}

struct Parser<'a> {
    lexer: Lexer<'a>,
    peeked: Option<Tok>,
    depth: usize,
}

impl Parser<'_> {
    fn next(&mut self) -> Result<Tok, QueryError> {
        match self.peeked.take() {
            Some(t) => Ok(t),
            None => self.lexer.next_token(),
        }
    }

    fn peek_kind(&mut self) -> Result<Kind, QueryError> {
        let tok = match self.peeked.take() {
            Some(t) => t,
            None => self.lexer.next_token()?,
        };
        let kind = match tok {
            Tok::RParen(_) => Kind::RParen,
            Tok::Minus(p) => Kind::Minus(p),
            Tok::Not(p) => Kind::Not(p),
            Tok::And(p) => Kind::And(p),
            Tok::Or(p) => Kind::Or(p),
            Tok::Eof(_) => Kind::Eof,
            Tok::LParen(_) | Tok::Term(..) => Kind::Other,
        };
        self.peeked = Some(tok);
        Ok(kind)
    }

    /// Enter one nesting level (a parenthesis or a negation) at `pos`.
    fn enter(&mut self, pos: usize) -> Result<(), QueryError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(QueryError::new(
                pos,
                format!("query is nested too deeply (more than {MAX_DEPTH} levels)"),
            ));
        }
        Ok(())
    }

    /// `and_expr := or_expr ( ["AND"] or_expr )*`, up to `)` or the end.
    fn parse_and(&mut self) -> Result<Query, QueryError> {
        let mut items = Vec::new();
        loop {
            let ctx = match self.peek_kind()? {
                Kind::Eof | Kind::RParen => break,
                Kind::And(p) => {
                    if items.is_empty() {
                        return Err(misplaced("AND", p));
                    }
                    self.next()?;
                    Some(Op {
                        name: "AND",
                        pos: p,
                    })
                }
                _ => None,
            };
            items.push(self.parse_or(ctx)?);
        }
        Ok(combine(items, true))
    }

    /// `or_expr := unary ( "OR" unary )*`.
    fn parse_or(&mut self, ctx: Option<Op>) -> Result<Query, QueryError> {
        let mut items = vec![self.parse_unary(ctx)?];
        while let Kind::Or(p) = self.peek_kind()? {
            self.next()?;
            items.push(self.parse_unary(Some(Op { name: "OR", pos: p }))?);
        }
        Ok(combine(items, false))
    }

    /// `unary := ( "-" | "NOT" ) unary | primary`, iteratively.
    fn parse_unary(&mut self, ctx: Option<Op>) -> Result<Query, QueryError> {
        let mut ctx = ctx;
        let mut negations = 0usize;
        loop {
            let op = match self.peek_kind()? {
                Kind::Minus(p) => Op { name: "-", pos: p },
                Kind::Not(p) => Op {
                    name: "NOT",
                    pos: p,
                },
                _ => break,
            };
            self.next()?;
            self.enter(op.pos)?;
            negations += 1;
            ctx = Some(op);
        }
        let mut query = self.parse_primary(ctx)?;
        self.depth -= negations;
        for _ in 0..negations {
            query = Query::Not(Box::new(query));
        }
        Ok(query)
    }

    /// `primary := "(" and_expr ")" | term`.
    fn parse_primary(&mut self, ctx: Option<Op>) -> Result<Query, QueryError> {
        match self.next()? {
            Tok::Term(query, _) => Ok(query),
            Tok::LParen(open) => {
                self.enter(open)?;
                if let Kind::RParen = self.peek_kind()? {
                    return Err(QueryError::new(open, "empty group '()'"));
                }
                let inner = self.parse_and()?;
                match self.next()? {
                    Tok::RParen(_) => {}
                    _ => return Err(QueryError::new(open, "unclosed '('")),
                }
                self.depth -= 1;
                Ok(inner)
            }
            Tok::And(p) => Err(misplaced("AND", p)),
            Tok::Or(p) => Err(misplaced("OR", p)),
            tok @ (Tok::Eof(_) | Tok::RParen(_)) => match ctx {
                Some(op) => Err(QueryError::new(
                    op.pos,
                    format!("'{}' must be followed by a search term", op.name),
                )),
                None if matches!(tok, Tok::RParen(_)) => {
                    Err(QueryError::new(tok.position(), "unmatched ')'"))
                }
                None => Err(QueryError::new(tok.position(), "expected a search term")),
            },
            // Negations are consumed by `parse_unary`; kept for totality.
            tok @ (Tok::Minus(_) | Tok::Not(_)) => {
                Err(QueryError::new(tok.position(), "unexpected negation"))
            }
        }
    }
}

fn misplaced(name: &str, pos: usize) -> QueryError {
    QueryError::new(pos, format!("'{name}' must stand between two search terms"))
}

/// Build an `And` (`and == true`) or `Or` of `items`, flattening children of
/// the same kind and collapsing a single child to itself.
fn combine(items: Vec<Query>, and: bool) -> Query {
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        match item {
            Query::And(children) if and => out.extend(children),
            Query::Or(children) if !and => out.extend(children),
            other => out.push(other),
        }
    }
    if out.len() <= 1 {
        return out.pop().unwrap_or(Query::All);
    }
    if and { Query::And(out) } else { Query::Or(out) }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use time::macros::date;

    fn ok(s: &str) -> Query {
        match parse(s) {
            Ok(q) => q,
            Err(e) => panic!("parse({s:?}) failed: {e}"),
        }
    }

    fn err(s: &str) -> QueryError {
        match parse(s) {
            Ok(q) => panic!("parse({s:?}) unexpectedly succeeded: {q:?}"),
            Err(e) => e,
        }
    }

    fn w(t: &str) -> Query {
        Query::Word {
            field: Field::Any,
            text: t.into(),
        }
    }

    fn fw(field: Field, t: &str) -> Query {
        Query::Word {
            field,
            text: t.into(),
        }
    }

    fn ph(field: Field, t: &str) -> Query {
        Query::Phrase {
            field,
            text: t.into(),
        }
    }

    fn not(q: Query) -> Query {
        Query::Not(Box::new(q))
    }

    // --- basics and normalisation -----------------------------------------

    #[test]
    fn empty_and_whitespace_is_all() {
        assert_eq!(ok(""), Query::All);
        assert_eq!(ok("   \t\n "), Query::All);
        assert_eq!(ok("\u{3000}"), Query::All);
    }

    #[test]
    fn single_term_is_not_wrapped() {
        assert_eq!(ok("hello"), w("hello"));
        assert_eq!(ok("  hello  "), w("hello"));
        assert_eq!(ok("(hello)"), w("hello"));
        assert_eq!(ok("((hello))"), w("hello"));
    }

    #[test]
    fn implicit_and_and_keyword_and() {
        let expected = Query::And(vec![w("a"), w("b"), w("c")]);
        assert_eq!(ok("a b c"), expected);
        assert_eq!(ok("a AND b AND c"), expected);
        assert_eq!(ok("a AND b c"), expected);
    }

    #[test]
    fn nested_and_or_are_flattened() {
        assert_eq!(ok("a (b c)"), Query::And(vec![w("a"), w("b"), w("c")]));
        assert_eq!(
            ok("(a b) (c d)"),
            Query::And(vec![w("a"), w("b"), w("c"), w("d")])
        );
        assert_eq!(ok("a OR (b OR c)"), Query::Or(vec![w("a"), w("b"), w("c")]));
        assert_eq!(
            ok("(a b) OR c"),
            Query::Or(vec![Query::And(vec![w("a"), w("b")]), w("c")])
        );
    }

    #[test]
    fn lowercase_keywords_are_words() {
        assert_eq!(ok("a and b"), Query::And(vec![w("a"), w("and"), w("b")]));
        assert_eq!(ok("a or b"), Query::And(vec![w("a"), w("or"), w("b")]));
        assert_eq!(ok("not a"), Query::And(vec![w("not"), w("a")]));
        assert_eq!(ok("Or"), w("Or"));
    }

    #[test]
    fn words_of_many_shapes() {
        assert_eq!(ok("e-mail"), w("e-mail"));
        assert_eq!(ok("o'neil"), w("o'neil"));
        assert_eq!(ok("10:30"), w("10:30"));
        assert_eq!(ok("alice@example.com"), w("alice@example.com"));
        assert_eq!(ok("müller"), w("müller"));
        assert_eq!(ok("日本語"), w("日本語"));
        assert_eq!(ok(":"), w(":"));
        assert_eq!(ok(":foo"), w(":foo"));
        assert_eq!(ok("Re:"), w("Re:"));
        assert_eq!(ok("é:x"), w("é:x"));
        assert_eq!(ok("a-"), w("a-"));
    }

    #[test]
    fn adjacent_tokens_without_space() {
        assert_eq!(ok("a(b)"), Query::And(vec![w("a"), w("b")]));
        assert_eq!(
            ok("\"x y\"z"),
            Query::And(vec![ph(Field::Any, "x y"), w("z")])
        );
        assert_eq!(ok("(a)(b)"), Query::And(vec![w("a"), w("b")]));
    }

    // --- OR and precedence --------------------------------------------------

    #[test]
    fn or_binds_tighter_than_and() {
        assert_eq!(
            ok("a b OR c"),
            Query::And(vec![w("a"), Query::Or(vec![w("b"), w("c")])])
        );
        assert_eq!(
            ok("a OR b c"),
            Query::And(vec![Query::Or(vec![w("a"), w("b")]), w("c")])
        );
        assert_eq!(
            ok("a AND b OR c"),
            Query::And(vec![w("a"), Query::Or(vec![w("b"), w("c")])])
        );
        assert_eq!(
            ok("from:a OR from:b subject:x"),
            Query::And(vec![
                Query::Or(vec![fw(Field::From, "a"), fw(Field::From, "b")]),
                fw(Field::Subject, "x"),
            ])
        );
        assert_eq!(ok("a OR b OR c"), Query::Or(vec![w("a"), w("b"), w("c")]));
        assert_eq!(
            ok("(a b) OR (c d)"),
            Query::Or(vec![
                Query::And(vec![w("a"), w("b")]),
                Query::And(vec![w("c"), w("d")]),
            ])
        );
    }

    // --- negation -----------------------------------------------------------

    #[test]
    fn negation_forms() {
        assert_eq!(ok("-a"), not(w("a")));
        assert_eq!(ok("NOT a"), not(w("a")));
        assert_eq!(ok("-\"x y\""), not(ph(Field::Any, "x y")));
        assert_eq!(ok("-from:bob"), not(fw(Field::From, "bob")));
        assert_eq!(ok("NOT from:bob"), not(fw(Field::From, "bob")));
        assert_eq!(ok("-has:attachment"), not(Query::HasAttachment));
        assert_eq!(ok("-(a OR b)"), not(Query::Or(vec![w("a"), w("b")])));
        assert_eq!(ok("NOT (a b)"), not(Query::And(vec![w("a"), w("b")])));
        assert_eq!(ok("--a"), not(not(w("a"))));
        assert_eq!(ok("NOT -a"), not(not(w("a"))));
        assert_eq!(ok("x -y"), Query::And(vec![w("x"), not(w("y"))]));
        assert_eq!(ok("(-a)"), not(w("a")));
    }

    #[test]
    fn negation_binds_tighter_than_or() {
        assert_eq!(ok("-a OR b"), Query::Or(vec![not(w("a")), w("b")]));
        assert_eq!(ok("a OR NOT b"), Query::Or(vec![w("a"), not(w("b"))]));
    }

    #[test]
    fn negation_errors() {
        let e = err("-");
        assert_eq!(e.position, 0);
        assert!(e.message.contains("'-'"), "{e}");
        assert_eq!(err("a - b").position, 2);
        assert_eq!(err("a -").position, 2);
        assert_eq!(err("(a -)").position, 3);
        let e = err("NOT");
        assert_eq!(e.position, 0);
        assert!(e.message.contains("'NOT'"), "{e}");
        assert_eq!(err("a NOT").position, 2);
        assert_eq!(err("(NOT)").position, 1);
        assert_eq!(err("-(").position, 1);
        assert!(err("-(").message.contains("unclosed"));
        // A binary operator cannot be negated.
        assert_eq!(err("-OR a").position, 1);
        assert_eq!(err("NOT AND a").position, 4);
    }

    // --- fields -------------------------------------------------------------

    #[test]
    fn text_fields() {
        assert_eq!(
            ok("from:alice@example.com"),
            fw(Field::From, "alice@example.com")
        );
        assert_eq!(ok("to:bob"), fw(Field::To, "bob"));
        assert_eq!(ok("cc:carol"), fw(Field::Cc, "carol"));
        assert_eq!(ok("subject:invoice"), fw(Field::Subject, "invoice"));
        assert_eq!(ok("filename:report.pdf"), fw(Field::Filename, "report.pdf"));
        assert_eq!(ok("FROM:Alice"), fw(Field::From, "Alice"));
        assert_eq!(ok("Subject:X"), fw(Field::Subject, "X"));
        assert_eq!(ok("from:a:b"), fw(Field::From, "a:b"));
        assert_eq!(ok("(from:alice)"), fw(Field::From, "alice"));
        assert_eq!(
            ok("from:\"Jeff Skilling\""),
            ph(Field::From, "Jeff Skilling")
        );
        assert_eq!(ok("subject:\"q3 report\""), ph(Field::Subject, "q3 report"));
    }

    #[test]
    fn message_id_brackets_stripped() {
        assert_eq!(
            ok("message-id:<abc@x.com>"),
            fw(Field::MessageId, "abc@x.com")
        );
        assert_eq!(
            ok("message-id:abc@x.com"),
            fw(Field::MessageId, "abc@x.com")
        );
        assert_eq!(ok("msgid:<abc@x.com>"), fw(Field::MessageId, "abc@x.com"));
        assert_eq!(ok("MSGID:abc"), fw(Field::MessageId, "abc"));
        assert_eq!(ok("Message-ID:<a>"), fw(Field::MessageId, "a"));
        // Only one pair, and only when both are present.
        assert_eq!(ok("message-id:<<a>>"), fw(Field::MessageId, "<a>"));
        assert_eq!(ok("message-id:<a"), fw(Field::MessageId, "<a"));
        assert_eq!(ok("message-id:a>"), fw(Field::MessageId, "a>"));
        assert_eq!(ok("message-id:\"<a b>\""), ph(Field::MessageId, "a b"));
        let e = err("message-id:<>");
        assert_eq!(e.position, 11);
        assert!(e.message.contains("missing value"), "{e}");
    }

    #[test]
    fn has_attachment() {
        assert_eq!(ok("has:attachment"), Query::HasAttachment);
        assert_eq!(ok("has:attachments"), Query::HasAttachment);
        assert_eq!(ok("HAS:Attachment"), Query::HasAttachment);
        let e = err("x has:pdf");
        assert_eq!(e.position, 6);
        assert!(e.message.contains("attachment"), "{e}");
    }

    #[test]
    fn dates() {
        assert_eq!(ok("after:2024-01-31"), Query::After(date!(2024 - 01 - 31)));
        assert_eq!(
            ok("before:2024-02-29"),
            Query::Before(date!(2024 - 02 - 29))
        );
        assert_eq!(ok("AFTER:2001-12-01"), Query::After(date!(2001 - 12 - 01)));
        for bad in [
            "after:2023-02-29",
            "after:2024-13-01",
            "after:2024-00-10",
            "after:2024-01-32",
            "after:2024-1-1",
            "after:20240101",
            "after:yesterday",
            "after:2024-01-01x",
            "after:２０２４-01-01",
        ] {
            let e = err(bad);
            assert_eq!(e.position, 6, "{bad}: {e}");
            assert!(e.message.contains("YYYY-MM-DD"), "{bad}: {e}");
        }
        assert_eq!(err("before:2024-02-30").position, 7);
    }

    #[test]
    fn sizes() {
        assert_eq!(ok("larger:5M"), Query::Larger(5 * 1024 * 1024));
        assert_eq!(ok("larger:5MB"), Query::Larger(5 * 1024 * 1024));
        assert_eq!(ok("larger:5mb"), Query::Larger(5 * 1024 * 1024));
        assert_eq!(ok("larger:100k"), Query::Larger(100 * 1024));
        assert_eq!(ok("larger:100KB"), Query::Larger(100 * 1024));
        assert_eq!(ok("smaller:1G"), Query::Smaller(1024 * 1024 * 1024));
        assert_eq!(ok("smaller:12"), Query::Smaller(12));
        assert_eq!(ok("smaller:12b"), Query::Smaller(12));
        assert_eq!(ok("smaller:3MB"), Query::Smaller(3 * 1024 * 1024));
        assert_eq!(ok("larger:1024"), Query::Larger(1024));
        assert_eq!(ok("larger:0"), Query::Larger(0));
        // The value ends at whitespace: the unit must be attached.
        assert_eq!(ok("larger:5 M"), Query::And(vec![Query::Larger(5), w("M")]));
        for bad in [
            "larger:M",
            "larger:5T",
            "larger:5MBB",
            "larger:-5",
            "larger:5.5M",
            "larger:five",
        ] {
            let e = err(bad);
            assert_eq!(e.position, 7, "{bad}: {e}");
        }
        // Overflow is an error, not a panic.
        let e = err("larger:99999999999999999999");
        assert_eq!(e.position, 7);
        assert!(e.message.contains("too large"), "{e}");
        let e = err("smaller:17179869184G");
        assert_eq!(e.position, 8);
        assert!(e.message.contains("too large"), "{e}");
        assert_eq!(
            ok("larger:17179869183G"),
            Query::Larger(17_179_869_183 << 30)
        );
    }

    #[test]
    fn unknown_fields() {
        let e = err("form:bob");
        assert_eq!(e.position, 0);
        assert_eq!(e.message, "unknown field 'form'");
        assert_eq!(e.to_string(), "unknown field 'form' at position 0");
        assert_eq!(err("a http://x").position, 2);
        assert_eq!(err("a e-mail:x").message, "unknown field 'e-mail'");
        assert_eq!(err("bcc:\"x\"").position, 0);
        assert_eq!(err("-form:bob").position, 1);
        // Quoting makes it literal.
        assert_eq!(ok("\"http://x\""), ph(Field::Any, "http://x"));
        assert_eq!(ok("\"form:bob\""), ph(Field::Any, "form:bob"));
    }

    #[test]
    fn missing_field_value() {
        let e = err("from:");
        assert_eq!(e.position, 5);
        assert!(e.message.contains("from:"), "{e}");
        assert_eq!(err("from: alice").position, 5);
        assert_eq!(err("(from:)").position, 6);
        assert_eq!(err("a has:").position, 6);
        assert_eq!(err("after:").position, 6);
        assert_eq!(err("larger:").position, 7);
        assert_eq!(err("from:\"\"").position, 5);
    }

    // --- phrases ------------------------------------------------------------

    #[test]
    fn phrases() {
        assert_eq!(
            ok("\"quarterly report\""),
            ph(Field::Any, "quarterly report")
        );
        assert_eq!(ok(r#""say \"hi\"""#), ph(Field::Any, "say \"hi\""));
        assert_eq!(ok(r#""a\\b""#), ph(Field::Any, "a\\b"));
        assert_eq!(ok(r#""C:\temp""#), ph(Field::Any, "C:\\temp"));
        assert_eq!(ok("\"(a OR b)\""), ph(Field::Any, "(a OR b)"));
        assert_eq!(ok("\"é\""), ph(Field::Any, "é"));
    }

    #[test]
    fn phrase_errors() {
        let e = err("a \"unterminated");
        assert_eq!(e.position, 2);
        assert!(e.message.contains("unterminated"), "{e}");
        assert_eq!(err("\"").position, 0);
        assert_eq!(err(r#""ends with escape\""#).position, 0);
        let e = err("x \"\"");
        assert_eq!(e.position, 2);
        assert!(e.message.contains("empty phrase"), "{e}");
        assert_eq!(err("\"  \"").position, 0);
    }

    // --- parentheses and operators ----------------------------------------

    #[test]
    fn paren_errors() {
        let e = err("(a b");
        assert_eq!(e.position, 0);
        assert!(e.message.contains("unclosed"), "{e}");
        assert_eq!(err("a (b (c)").position, 2);
        let e = err("a b)");
        assert_eq!(e.position, 3);
        assert!(e.message.contains("unmatched"), "{e}");
        assert_eq!(err(")").position, 0);
        assert_eq!(err("(a))").position, 3);
        let e = err("a ()");
        assert_eq!(e.position, 2);
        assert!(e.message.contains("empty group"), "{e}");
        assert_eq!(err("( )").position, 0);
    }

    #[test]
    fn dangling_operator_errors() {
        let e = err("OR a");
        assert_eq!(e.position, 0);
        assert!(e.message.contains("'OR'"), "{e}");
        assert_eq!(err("AND a").position, 0);
        assert_eq!(err("a OR").position, 2);
        assert_eq!(err("a AND").position, 2);
        assert_eq!(err("OR").position, 0);
        assert_eq!(err("OR OR").position, 0);
        assert_eq!(err("a OR OR b").position, 5);
        assert_eq!(err("a AND AND b").position, 6);
        assert_eq!(err("a OR AND b").position, 5);
        assert_eq!(err("a AND OR b").position, 6);
        assert_eq!(err("(OR a)").position, 1);
        assert_eq!(err("(a OR)").position, 3);
        assert_eq!(err("(a AND) b").position, 3);
    }

    #[test]
    fn positions_are_characters_not_bytes() {
        // 'é' is 2 bytes in UTF-8 but one character.
        assert_eq!(err("é from:").position, 7);
        assert_eq!(err("é form:x").position, 2);
        assert_eq!(err("é after:2024").position, 8);
        assert_eq!(err("éé larger:5X").position, 10);
        assert_eq!(err("é has:nothing").position, 6);
        assert_eq!(err("é \"open").position, 2);
        assert_eq!(err("日本 (x").position, 3);
        assert_eq!(err("日本 x)").position, 4);
        assert_eq!(err("é OR").position, 2);
        assert_eq!(err("é -").position, 2);
        assert_eq!(err("🦀🦀 ()").position, 3);
    }

    #[test]
    fn first_error_wins() {
        // The lexer is lazy, so the leftmost problem is reported.
        assert_eq!(err(") \"abc").position, 0);
        assert_eq!(err("form:x )").position, 0);
    }

    // --- limits and hostile input -----------------------------------------

    #[test]
    fn length_limit() {
        let max = "a".repeat(MAX_INPUT_CHARS);
        assert_eq!(ok(&max), w(&max));
        let e = err(&"a".repeat(MAX_INPUT_CHARS + 1));
        assert_eq!(e.position, MAX_INPUT_CHARS);
        // Counted in characters: 10,000 two-byte characters are fine.
        assert!(parse(&"é".repeat(MAX_INPUT_CHARS)).is_ok());
        assert_eq!(
            err(&"é".repeat(MAX_INPUT_CHARS + 1)).position,
            MAX_INPUT_CHARS
        );
    }

    #[test]
    fn nesting_limit() {
        let deep_ok = format!("{}a{}", "(".repeat(MAX_DEPTH), ")".repeat(MAX_DEPTH));
        assert_eq!(ok(&deep_ok), w("a"));
        let too_deep = format!(
            "{}a{}",
            "(".repeat(MAX_DEPTH + 1),
            ")".repeat(MAX_DEPTH + 1)
        );
        let e = err(&too_deep);
        assert_eq!(e.position, MAX_DEPTH);
        assert!(e.message.contains("nested too deeply"), "{e}");
        let e = err(&"(".repeat(10_000));
        assert_eq!(e.position, MAX_DEPTH);
        // Negations count towards the same limit, so the tree stays shallow.
        let e = err(&format!("{}a", "-".repeat(9_999)));
        assert_eq!(e.position, MAX_DEPTH);
        assert!(parse(&format!("{}a", "-".repeat(MAX_DEPTH))).is_ok());
        assert!(parse(&"NOT ".repeat(2_500)).is_err());
        assert!(parse(&"-(".repeat(5_000)).is_err());
    }

    #[test]
    fn wide_queries_are_fine() {
        let q = vec!["x"; 4_000].join(" ");
        match ok(&q) {
            Query::And(v) => assert_eq!(v.len(), 4_000),
            other => panic!("{other:?}"),
        }
        let q = vec!["x"; 2_000].join(" OR ");
        match ok(&q) {
            Query::Or(v) => assert_eq!(v.len(), 2_000),
            other => panic!("{other:?}"),
        }
    }

    fn check_no_panic(s: &str) {
        let chars = s.chars().count();
        if let Err(e) = parse(s) {
            assert!(
                e.position <= chars.min(MAX_INPUT_CHARS),
                "error position {} beyond input of {chars} chars for {s:?}",
                e.position
            );
            assert!(!e.message.is_empty());
        }
    }

    #[test]
    fn hostile_inputs_never_panic() {
        let fixed: Vec<String> = vec![
            "\"".into(),
            "\"\"\"".into(),
            "\\".into(),
            "\"\\".into(),
            "(".into(),
            ")".into(),
            ")(".into(),
            "(()".into(),
            "())".into(),
            ":".into(),
            "::".into(),
            ":::a".into(),
            "a:".into(),
            "from::".into(),
            "from:(".into(),
            "from:)".into(),
            "from:\"".into(),
            "-".into(),
            "--".into(),
            "-(".into(),
            "-)".into(),
            "-\"".into(),
            "- -".into(),
            "NOT".into(),
            "NOT NOT".into(),
            "AND".into(),
            "OR".into(),
            "OR OR".into(),
            "a OR".into(),
            "OR a".into(),
            "a AND".into(),
            "AND OR NOT".into(),
            "( OR )".into(),
            "(NOT)".into(),
            "has:".into(),
            "has::".into(),
            "after:9999-99-99".into(),
            "after:-001-01-01".into(),
            "after:0000-01-01".into(),
            "before:2024-02-3\u{0}".into(),
            "larger:".into(),
            "larger:K".into(),
            "larger:18446744073709551615".into(),
            "larger:18446744073709551616".into(),
            "larger:18446744073709551615G".into(),
            "smaller:ǅ".into(),
            "larger:5\u{212A}".into(), // KELVIN SIGN, lowercases to 'k'
            "message-id:<".into(),
            "message-id:>".into(),
            "message-id:<>".into(),
            "msgid:\"<>\"".into(),
            "\u{0}\u{1}\u{7f}\u{1b}[31m".into(),
            "\u{feff}".into(),
            "\u{200b}".into(),
            "\u{202e}evil".into(),
            "é\u{301}".into(),
            "🦀:🦀".into(),
            "ß:x".into(),
            "İ:x".into(),
            "a\r\nb".into(),
            "\t-a".into(),
            "\u{85}".into(),
            "(".repeat(10_000),
            ")".repeat(10_000),
            "\"".repeat(10_000),
            "-".repeat(10_000),
            "(-".repeat(5_000),
            "NOT ".repeat(2_500),
            "OR ".repeat(3_333),
            "a OR ".repeat(2_000),
            "é".repeat(10_001),
            "(".repeat(20_000),
            format!("{}{}", "(".repeat(64), ")".repeat(64)),
            format!("{}a{}", "(".repeat(64), ")".repeat(65)),
        ];
        for s in &fixed {
            check_no_panic(s);
        }

        // Deterministic pseudo-random strings over an alphabet of awkward pieces.
        let pieces: &[&str] = &[
            " ",
            "  ",
            "\t",
            "(",
            ")",
            "\"",
            "\\",
            "-",
            ":",
            "a",
            "é",
            "🦀",
            "OR",
            "AND",
            "NOT",
            "from:",
            "to:",
            "has:",
            "after:",
            "before:",
            "larger:",
            "smaller:",
            "message-id:",
            "<",
            ">",
            "2024-01-01",
            "5M",
            "attachment",
            "x:",
            "\u{0}",
            "10",
            "K",
            "b",
        ];
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..20_000 {
            let len = (next() % 12) as usize;
            let mut s = String::new();
            for _ in 0..len {
                s.push_str(pieces[(next() % pieces.len() as u64) as usize]);
            }
            check_no_panic(&s);
        }
    }
}
