//! Property tests (proptest) for two layers where a hand-picked example
//! cannot cover the input space:
//!
//! - the query language: every tree the parser can return prints (its
//!   `Display`) as text that parses back to the same tree, and so does every
//!   query parsed from generated token soup;
//! - the crypto layer: seal/open round-trips for arbitrary keys, associated
//!   data and plaintexts; a single flipped bit anywhere in the sealed value
//!   (version, nonce, ciphertext, tag) or in the associated data, or a
//!   different key, is refused; the same holds for wrapped keys and blobs.
//!
//! Case counts are moderate (64–256) so the suite stays fast.

use ama_core::crypto::{self, SecretKey};
use ama_core::fuzz_hooks;
use ama_core::query::{Field, Query, parse};
use proptest::prelude::*;
use proptest::sample::select;
use time::{Date, Month};

// ----- query language --------------------------------------------------------

/// Characters a bare word may hold (a few non-ASCII ones included).
const WORD_CHARS: &[char] = &[
    'a', 'b', 'x', 'Z', '0', '7', '@', '.', '_', '+', '\'', '/', 'é', 'ß', 'ü', '日', '-', '!',
];

/// A bare word as the lexer produces one: no whitespace, parentheses or
/// quotes, not starting with `-`, no `:` (a field prefix), not a keyword.
fn word() -> impl Strategy<Value = String> {
    prop::collection::vec(select(WORD_CHARS), 1..8)
        .prop_map(|cs| cs.into_iter().collect::<String>())
        .prop_filter("not a keyword or a negation", |w| {
            !matches!(w.as_str(), "AND" | "OR" | "NOT") && !w.starts_with('-')
        })
}

/// A field value word: anything but whitespace, parentheses and quotes.
fn value_word() -> impl Strategy<Value = String> {
    let mut chars = WORD_CHARS.to_vec();
    chars.extend([':', '<', '>', '\\']);
    prop::collection::vec(select(chars), 1..8).prop_map(|cs| cs.into_iter().collect())
}

/// Phrase text: any characters, including quotes, backslashes, spaces and
/// parentheses, but not blank.
fn phrase_text() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            4 => select(WORD_CHARS),
            1 => select(vec![' ', '"', '\\', '(', ')', '\t', ':', '<', '>']),
            1 => any::<char>(),
        ],
        1..12,
    )
    .prop_map(|cs| cs.into_iter().collect::<String>())
    .prop_filter("not blank", |t| !t.trim().is_empty())
}

fn field() -> impl Strategy<Value = Field> {
    select(vec![
        Field::From,
        Field::To,
        Field::Cc,
        Field::Subject,
        Field::Filename,
        Field::MessageId,
    ])
}

fn date() -> impl Strategy<Value = Date> {
    (0i32..=9999, 1u8..=12, 1u8..=28).prop_map(|(y, m, d)| {
        Date::from_calendar_date(y, Month::try_from(m).unwrap_or(Month::January), d)
            .unwrap_or(Date::MIN)
    })
}

/// A term: any leaf the parser can return.
fn leaf() -> impl Strategy<Value = Query> {
    prop_oneof![
        word().prop_map(|text| Query::Word {
            field: Field::Any,
            text
        }),
        (field(), value_word()).prop_map(|(field, text)| Query::Word { field, text }),
        (prop_oneof![Just(Field::Any), field()], phrase_text())
            .prop_map(|(field, text)| Query::Phrase { field, text }),
        Just(Query::HasAttachment),
        date().prop_map(Query::After),
        date().prop_map(Query::Before),
        any::<u64>().prop_map(Query::Larger),
        any::<u64>().prop_map(Query::Smaller),
    ]
}

/// `And`/`Or` flattened the way the parser flattens them.
fn combine(children: Vec<Query>, and: bool) -> Query {
    let mut out = Vec::new();
    for c in children {
        match c {
            Query::And(cs) if and => out.extend(cs),
            Query::Or(cs) if !and => out.extend(cs),
            other => out.push(other),
        }
    }
    if and { Query::And(out) } else { Query::Or(out) }
}

/// A tree in the parser's image: nested at most a few levels.
fn query() -> impl Strategy<Value = Query> {
    leaf().prop_recursive(4, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 2..4).prop_map(|cs| combine(cs, true)),
            prop::collection::vec(inner.clone(), 2..4).prop_map(|cs| combine(cs, false)),
            inner.prop_map(|q| Query::Not(Box::new(q))),
        ]
    })
}

/// Token soup: keywords, operators, parentheses, fields and words glued
/// with or without spaces, for the "whatever parses, round-trips" property.
fn soup() -> impl Strategy<Value = String> {
    let tokens = vec![
        "a",
        "bob",
        "AND",
        "OR",
        "NOT",
        "and",
        "-",
        "(",
        ")",
        "\"",
        "\"x y\"",
        "\"q\\\"\"",
        "from:",
        "from:alice@x.test",
        "to:bob",
        "msgid:<a@b>",
        "message-id:\"<x y>\"",
        "subject:\"re: hi\"",
        "has:attachment",
        "after:2001-02-03",
        "before:1999-12-31",
        "larger:5K",
        "smaller:1g",
        "Re:",
        "1:2",
        "x-y",
        "日本",
        " ",
        " ",
        " ",
    ];
    prop::collection::vec(select(tokens), 0..12).prop_map(|ts| ts.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn printed_query_parses_back_to_the_same_tree(q in query()) {
        let printed = q.to_string();
        prop_assert_eq!(parse(&printed), Ok(q), "printed as {:?}", printed);
    }

    #[test]
    fn whatever_parses_round_trips_through_display(s in soup()) {
        if let Ok(q) = parse(&s) {
            let printed = q.to_string();
            prop_assert_eq!(parse(&printed), Ok(q), "{:?} printed as {:?}", s, printed);
        }
    }
}

#[test]
fn the_empty_query_prints_as_nothing() {
    assert_eq!(Query::All.to_string(), "");
    assert_eq!(parse(""), Ok(Query::All));
}

// ----- crypto ----------------------------------------------------------------

fn key() -> impl Strategy<Value = [u8; 32]> {
    any::<[u8; 32]>()
}

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..max)
}

fn flip(data: &mut [u8], bit: usize) {
    data[bit / 8 % data.len()] ^= 1 << (bit % 8);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn seal_open_round_trip(k in key(), aad in bytes(64), data in bytes(2048)) {
        let key = SecretKey::from_bytes(k);
        let sealed = crypto::seal(&key, &aad, &data).unwrap();
        prop_assert_eq!(sealed.len(), data.len() + crypto::SEAL_OVERHEAD);
        prop_assert_eq!(crypto::open(&key, &aad, &sealed, "p").unwrap(), data);
    }

    #[test]
    fn any_flipped_bit_of_the_sealed_value_is_refused(
        k in key(), aad in bytes(64), data in bytes(512), bit in any::<usize>()
    ) {
        let key = SecretKey::from_bytes(k);
        let mut sealed = crypto::seal(&key, &aad, &data).unwrap();
        flip(&mut sealed, bit);
        prop_assert!(crypto::open(&key, &aad, &sealed, "p").is_err());
    }

    #[test]
    fn any_flipped_bit_of_the_nonce_is_refused(
        k in key(), aad in bytes(64), data in bytes(256), bit in 0usize..96
    ) {
        let key = SecretKey::from_bytes(k);
        let mut sealed = crypto::seal(&key, &aad, &data).unwrap();
        // Byte 0 is the format version; the nonce is bytes 1..13.
        sealed[1 + bit / 8] ^= 1 << (bit % 8);
        prop_assert!(crypto::open(&key, &aad, &sealed, "p").is_err());
    }

    #[test]
    fn any_flipped_bit_of_the_aad_is_refused(
        k in key(), aad in bytes(64).prop_filter("non-empty", |a| !a.is_empty()),
        data in bytes(256), bit in any::<usize>()
    ) {
        let key = SecretKey::from_bytes(k);
        let sealed = crypto::seal(&key, &aad, &data).unwrap();
        let mut other = aad.clone();
        flip(&mut other, bit);
        prop_assert!(crypto::open(&key, &other, &sealed, "p").is_err());
    }

    #[test]
    fn a_different_aad_length_is_refused(k in key(), aad in bytes(64), extra in any::<u8>(), data in bytes(64)) {
        let key = SecretKey::from_bytes(k);
        let sealed = crypto::seal(&key, &aad, &data).unwrap();
        let mut longer = aad.clone();
        longer.push(extra);
        prop_assert!(crypto::open(&key, &longer, &sealed, "p").is_err());
        if !aad.is_empty() {
            prop_assert!(crypto::open(&key, &aad[..aad.len() - 1], &sealed, "p").is_err());
        }
    }

    #[test]
    fn a_wrong_key_is_refused(
        k in key(), other in key(), aad in bytes(64), data in bytes(256)
    ) {
        prop_assume!(k != other);
        let sealed = crypto::seal(&SecretKey::from_bytes(k), &aad, &data).unwrap();
        prop_assert!(crypto::open(&SecretKey::from_bytes(other), &aad, &sealed, "p").is_err());
    }

    #[test]
    fn truncated_or_extended_values_are_refused(
        k in key(), aad in bytes(16), data in bytes(256), cut in any::<usize>(), tail in bytes(8)
    ) {
        let key = SecretKey::from_bytes(k);
        let sealed = crypto::seal(&key, &aad, &data).unwrap();
        let short = &sealed[..cut % sealed.len()];
        prop_assert!(crypto::open(&key, &aad, short, "p").is_err());
        if !tail.is_empty() {
            let mut long = sealed.clone();
            long.extend_from_slice(&tail);
            prop_assert!(crypto::open(&key, &aad, &long, "p").is_err());
        }
    }

    #[test]
    fn wrapped_keys_round_trip_and_reject_flips(
        kek in key(), k in key(), aad in bytes(32), bit in any::<usize>()
    ) {
        let kek = SecretKey::from_bytes(kek);
        let wrapped = crypto::wrap_key(&kek, &aad, &SecretKey::from_bytes(k)).unwrap();
        let back = crypto::unwrap_key(&kek, &aad, &wrapped, "k").unwrap();
        prop_assert_eq!(back.expose_secret(), &k);
        let mut bad = wrapped.clone();
        flip(&mut bad, bit);
        prop_assert!(crypto::unwrap_key(&kek, &aad, &bad, "k").is_err());
    }

    #[test]
    fn blobs_round_trip_and_reject_flips_and_wrong_keys(
        k in key(), other in key(), aad in bytes(32), raw in bytes(4096), bit in any::<usize>()
    ) {
        let key = SecretKey::from_bytes(k);
        let mut blob = fuzz_hooks::seal_blob(&key, &aad, &raw).unwrap();
        let size = raw.len() as u64;
        prop_assert_eq!(fuzz_hooks::open_blob(&key, &aad, &blob, size).unwrap(), raw);
        if k != other {
            prop_assert!(fuzz_hooks::open_blob(&SecretKey::from_bytes(other), &aad, &blob, size).is_err());
        }
        flip(&mut blob, bit);
        prop_assert!(fuzz_hooks::open_blob(&key, &aad, &blob, size).is_err());
    }
}
