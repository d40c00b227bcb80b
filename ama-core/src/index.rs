//! The full-text index: one tantivy index per tenant, derived from the
//! catalog and the blobs (it can always be rebuilt with `reindex`), stored
//! encrypted through [`EncryptedDirectory`] under the tenant's "index" key.
//!
//! The index stores no message content and no metadata beyond the opaque
//! message id: search hits are turned into results from the catalog, so the
//! index is only needed to *find* mail. Address fields are indexed twice:
//! tokenized (for names and words in addresses) and exact (lower-cased full
//! address plus `@domain` and `@parent.domain` entries, for `from:alice@x.com`
//! and `from:x.com`). A `party` field lists every address a message was
//! sent from or to (headers and envelope), for end-user scoping.
//!
//! This module also translates the parsed [`crate::query::Query`] into a
//! tantivy query, so the query language's semantics live in one place.

use std::collections::HashSet;
use std::ops::Bound;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tantivy::collector::{Count, DocSetCollector, TopDocs};
use tantivy::query::{
    AllQuery, BooleanQuery, EmptyQuery, Occur, PhraseQuery, Query as TQuery, RangeQuery, TermQuery,
};
use tantivy::schema::{
    Field, IndexRecordOption, NumericOptions, STORED, STRING, Schema, TextFieldIndexing,
    TextOptions, Value,
};
use tantivy::tokenizer::{
    AsciiFoldingFilter, LowerCaser, RemoveLongFilter, SimpleTokenizer, TextAnalyzer,
};
use tantivy::{Index, IndexReader, IndexWriter, Order, ReloadPolicy, TantivyDocument, Term};

use crate::crypt_dir::EncryptedDirectory;
use crate::crypto::SecretKey;
use crate::error::{IndexError, Result};
use crate::message::{MessageId, MessageInfo};
use crate::parse::MessageText;
use crate::query::{Field as QField, Query};

const TOKENIZER: &str = "ama";
const WRITER_MEMORY: usize = 48 * 1024 * 1024;
/// Memory of the throwaway in-memory index of [`TenantIndex::matching`]
/// (tantivy's minimum for one thread).
const MATCHING_MEMORY: usize = 15_000_000;

/// Index schema version; bump to force a rebuild when the schema changes.
pub const SCHEMA_VERSION: u32 = 1;

#[derive(Clone, Copy)]
struct Fields {
    id: Field,
    subject: Field,
    body: Field,
    attachments: Field,
    from: Field,
    to: Field,
    cc: Field,
    filename: Field,
    from_addr: Field,
    to_addr: Field,
    cc_addr: Field,
    party: Field,
    message_id: Field,
    has: Field,
    date: Field,
    size: Field,
}

fn schema() -> (Schema, Fields) {
    let mut b = Schema::builder();
    let text = TextOptions::default().set_indexing_options(
        TextFieldIndexing::default()
            .set_tokenizer(TOKENIZER)
            .set_index_option(IndexRecordOption::WithFreqsAndPositions),
    );
    let num = NumericOptions::default().set_indexed().set_fast();
    let f = Fields {
        id: b.add_text_field("id", STRING | STORED),
        subject: b.add_text_field("subject", text.clone()),
        body: b.add_text_field("body", text.clone()),
        attachments: b.add_text_field("attachments", text.clone()),
        from: b.add_text_field("from", text.clone()),
        to: b.add_text_field("to", text.clone()),
        cc: b.add_text_field("cc", text.clone()),
        filename: b.add_text_field("filename", text),
        from_addr: b.add_text_field("from_addr", STRING),
        to_addr: b.add_text_field("to_addr", STRING),
        cc_addr: b.add_text_field("cc_addr", STRING),
        party: b.add_text_field("party", STRING),
        message_id: b.add_text_field("message_id", STRING),
        has: b.add_text_field("has", STRING),
        date: b.add_i64_field("date", num.clone()),
        size: b.add_u64_field("size", num),
    };
    (b.build(), f)
}

fn analyzer() -> TextAnalyzer {
    TextAnalyzer::builder(SimpleTokenizer::default())
        .filter(RemoveLongFilter::limit(48))
        .filter(LowerCaser)
        .filter(AsciiFoldingFilter)
        .build()
}

fn terr(e: tantivy::TantivyError) -> crate::Error {
    IndexError::Tantivy(e.to_string()).into()
}

/// How to order results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Sort {
    /// Newest message date first (the default).
    #[default]
    Newest,
    /// Oldest first.
    Oldest,
    /// Best match first (BM25).
    Relevance,
}

/// Who a search is restricted to: everything in the tenant, or the mail of
/// a set of addresses.
pub(crate) enum Scope<'a> {
    All,
    Parties(&'a [String]),
}

/// A commit is made once this many documents wait...
const COMMIT_DOCS: usize = 2_000;
/// ...or once the oldest has waited this long (checked when documents are
/// added), and always before a search.
const COMMIT_AFTER: Duration = Duration::from_secs(2);

/// The writer and what it holds that is not committed yet.
#[derive(Default)]
struct WriterState {
    writer: Option<IndexWriter>,
    uncommitted: Vec<MessageId>,
    since: Option<Instant>,
}

/// One tenant's index.
///
/// Index commits are batched: documents are added to the writer and
/// committed when enough wait, when the oldest is old enough, or before a
/// search (so a search always sees every message ingested before it).
/// Durability does not depend on it: the catalog's pending-index marks,
/// cleared only for committed documents, make a restart index anything a
/// crash lost.
pub(crate) struct TenantIndex {
    index: Index,
    reader: IndexReader,
    writer: Mutex<WriterState>,
    f: Fields,
}

impl TenantIndex {
    /// Opens or creates the index in `dir`, encrypted under `key` (the
    /// tenant's "index" subkey) with a cache of `cache_bytes` decrypted bytes.
    ///
    /// An index that cannot be opened (written without encryption by an
    /// older build, damaged, or under another key) is derived data: it is
    /// moved aside and a new, empty one is created; the caller rebuilds it
    /// from the catalog. Returns the index and whether that happened.
    pub fn open(dir: &Path, key: &SecretKey, cache_bytes: usize) -> Result<(Self, bool)> {
        match Self::open_existing(dir, key, cache_bytes) {
            Ok(ix) => Ok((ix, false)),
            Err(_) => {
                let io = |e: std::io::Error| crate::Error::Io {
                    path: dir.display().to_string(),
                    source: e,
                };
                std::fs::remove_dir_all(dir).map_err(io)?;
                Ok((Self::open_existing(dir, key, cache_bytes)?, true))
            }
        }
    }

    fn open_existing(dir: &Path, key: &SecretKey, cache_bytes: usize) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| crate::Error::Io {
            path: dir.display().to_string(),
            source: e,
        })?;
        let (schema, f) = schema();
        let directory = EncryptedDirectory::open(dir, key.derive("directory"), cache_bytes)
            .map_err(|e| IndexError::Tantivy(e.to_string()))?;
        let index = Index::open_or_create(directory, schema).map_err(terr)?;
        index.tokenizers().register(TOKENIZER, analyzer());
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()
            .map_err(terr)?;
        Ok(TenantIndex {
            index,
            reader,
            writer: Mutex::new(WriterState::default()),
            f,
        })
    }

    fn writer_state(&self) -> Result<std::sync::MutexGuard<'_, WriterState>> {
        Ok(self
            .writer
            .lock()
            .map_err(|_| IndexError::Tantivy("index writer lock poisoned".into()))?)
    }

    fn with_writer<T>(&self, f: impl FnOnce(&mut WriterState) -> Result<T>) -> Result<T> {
        let mut guard = self.writer_state()?;
        if guard.writer.is_none() {
            guard.writer = Some(
                self.index
                    .writer_with_num_threads(1, WRITER_MEMORY)
                    .map_err(terr)?,
            );
        }
        f(&mut guard)
    }

    fn commit(&self, st: &mut WriterState) -> Result<Vec<MessageId>> {
        if let Some(w) = st.writer.as_mut() {
            w.commit().map_err(terr)?;
        }
        self.reader.reload().map_err(terr)?;
        st.since = None;
        Ok(std::mem::take(&mut st.uncommitted))
    }

    /// Adds (or replaces) the documents. Returns the ids a commit made
    /// durable in the index, if this call committed (see [`COMMIT_DOCS`]).
    pub fn add(&self, docs: &[(&MessageInfo, &MessageText)]) -> Result<Vec<MessageId>> {
        self.with_writer(|st| {
            if let Some(w) = st.writer.as_mut() {
                for (info, text) in docs {
                    let id = info.id.to_string();
                    w.delete_term(Term::from_field_text(self.f.id, &id));
                    w.add_document(self.document(&id, info, text))
                        .map_err(terr)?;
                }
            }
            st.uncommitted.extend(docs.iter().map(|(i, _)| i.id));
            let since = *st.since.get_or_insert_with(Instant::now);
            if st.uncommitted.len() >= COMMIT_DOCS || since.elapsed() >= COMMIT_AFTER {
                self.commit(st)
            } else {
                Ok(Vec::new())
            }
        })
    }

    /// Commits what waits, if anything; returns the ids it made durable.
    /// With nothing waiting it does not create the writer: every search
    /// flushes first, and a process that only reads (a fresh `ama search`)
    /// spent most of its time starting a tantivy writer it never used
    /// (threads, a 48 MB arena, the writer lock).
    pub fn flush(&self) -> Result<Vec<MessageId>> {
        let mut st = self.writer_state()?;
        if st.uncommitted.is_empty() {
            Ok(Vec::new())
        } else {
            self.commit(&mut st)
        }
    }

    /// Removes the documents of deleted messages and commits at once, so
    /// they stop counting in search totals.
    pub fn delete(&self, ids: &[MessageId]) -> Result<Vec<MessageId>> {
        self.with_writer(|st| {
            if let Some(w) = st.writer.as_mut() {
                for id in ids {
                    w.delete_term(Term::from_field_text(self.f.id, &id.to_string()));
                }
            }
            self.commit(st)
        })
    }

    /// Removes every document (before a rebuild).
    pub fn clear(&self) -> Result<()> {
        self.with_writer(|st| {
            if let Some(w) = st.writer.as_mut() {
                w.delete_all_documents().map_err(terr)?;
            }
            self.commit(st).map(|_| ())
        })
    }

    /// Number of documents in the committed index.
    pub fn num_docs(&self) -> u64 {
        self.reader.searcher().num_docs()
    }

    fn document(&self, id: &str, info: &MessageInfo, text: &MessageText) -> TantivyDocument {
        let f = &self.f;
        let m = &info.meta;
        let mut d = TantivyDocument::default();
        d.add_text(f.id, id);
        if let Some(s) = &m.subject {
            d.add_text(f.subject, s);
        }
        d.add_text(f.body, &text.body);
        if !text.attachments.is_empty() {
            d.add_text(f.attachments, &text.attachments);
        }
        let mut add_box = |text_field: Field, addr_field: Field, name: Option<&str>, addr: &str| {
            if let Some(n) = name {
                d.add_text(text_field, n);
            }
            if !addr.is_empty() {
                d.add_text(text_field, addr);
                for key in address_keys(addr) {
                    d.add_text(addr_field, &key);
                }
            }
        };
        for mb in m.from.iter().chain(&m.sender) {
            add_box(f.from, f.from_addr, mb.name.as_deref(), &mb.address);
        }
        for mb in m.to.iter().chain(&m.cc).chain(&m.bcc) {
            add_box(f.to, f.to_addr, mb.name.as_deref(), &mb.address);
        }
        for mb in &m.cc {
            add_box(f.cc, f.cc_addr, mb.name.as_deref(), &mb.address);
        }
        for dl in &info.deliveries {
            if let Some(mf) = &dl.mail_from {
                add_box(f.from, f.from_addr, None, mf);
            }
            for r in &dl.rcpt_to {
                add_box(f.to, f.to_addr, None, r);
            }
        }
        for p in parties(info) {
            d.add_text(f.party, &p);
        }
        for a in &m.attachments {
            if let Some(n) = &a.name {
                d.add_text(f.filename, n);
            }
        }
        if !m.attachments.is_empty() {
            d.add_text(f.has, "attachment");
        }
        if let Some(mid) = &m.message_id {
            d.add_text(f.message_id, mid.to_lowercase());
        }
        d.add_i64(f.date, m.date);
        d.add_u64(f.size, m.size);
        d
    }

    /// Every message `q` finds in `scope`, unordered. Holds, retention
    /// rules and deletion requests need the whole set, however large, not a
    /// page of it.
    pub fn all_ids(&self, q: &Query, scope: Scope<'_>) -> Result<HashSet<MessageId>> {
        let query = self.scoped(q, scope);
        let searcher = self.reader.searcher();
        let addrs = searcher.search(&query, &DocSetCollector).map_err(terr)?;
        let mut out = HashSet::with_capacity(addrs.len());
        for a in addrs {
            let doc: TantivyDocument = searcher.doc(a).map_err(terr)?;
            if let Some(Ok(id)) = doc
                .get_first(self.f.id)
                .and_then(|v| v.as_str())
                .map(str::parse)
            {
                out.insert(id);
            }
        }
        Ok(out)
    }

    /// Which of `docs` each query matches (`result[q][d]`), without the
    /// index on disk: the documents go into a throwaway index in memory,
    /// built exactly like the real one and never written anywhere. Used to
    /// apply retention rules by query at ingest, before the documents are
    /// committed to the tenant's index.
    pub fn matching(
        &self,
        queries: &[&Query],
        docs: &[(&MessageInfo, &MessageText)],
    ) -> Result<Vec<Vec<bool>>> {
        if queries.is_empty() {
            return Ok(Vec::new());
        }
        let (schema, _) = schema();
        let index = Index::create_in_ram(schema);
        index.tokenizers().register(TOKENIZER, analyzer());
        let mut w: IndexWriter = index
            .writer_with_num_threads(1, MATCHING_MEMORY)
            .map_err(terr)?;
        for (i, (info, text)) in docs.iter().enumerate() {
            w.add_document(self.document(&i.to_string(), info, text))
                .map_err(terr)?;
        }
        w.commit().map_err(terr)?;
        let searcher = index.reader().map_err(terr)?.searcher();
        let mut out = Vec::with_capacity(queries.len());
        for q in queries {
            let mut hit = vec![false; docs.len()];
            for a in searcher
                .search(&self.translate(q), &DocSetCollector)
                .map_err(terr)?
            {
                let doc: TantivyDocument = searcher.doc(a).map_err(terr)?;
                if let Some(slot) = doc
                    .get_first(self.f.id)
                    .and_then(|v| v.as_str())
                    .and_then(|s| s.parse::<usize>().ok())
                    .and_then(|i| hit.get_mut(i))
                {
                    *slot = true;
                }
            }
            out.push(hit);
        }
        Ok(out)
    }

    /// `q` restricted to `scope`.
    fn scoped(&self, q: &Query, scope: Scope<'_>) -> Box<dyn TQuery> {
        let mut query = self.translate(q);
        if let Scope::Parties(addrs) = scope {
            let should: Vec<(Occur, Box<dyn TQuery>)> = addrs
                .iter()
                .map(|a| {
                    let t = Term::from_field_text(self.f.party, &a.to_lowercase());
                    (Occur::Should, term(t))
                })
                .collect();
            let filter: Box<dyn TQuery> = if should.is_empty() {
                Box::new(EmptyQuery)
            } else {
                Box::new(BooleanQuery::new(should))
            };
            query = Box::new(BooleanQuery::new(vec![
                (Occur::Must, query),
                (Occur::Must, filter),
            ]));
        }
        query
    }

    /// Runs a query. Returns the total number of matches and one page of ids.
    pub fn search(
        &self,
        q: &Query,
        scope: Scope<'_>,
        sort: Sort,
        offset: usize,
        limit: usize,
    ) -> Result<(usize, Vec<MessageId>)> {
        let query = self.scoped(q, scope);
        let searcher = self.reader.searcher();
        let limit = limit.max(1);
        let top = TopDocs::with_limit(limit).and_offset(offset);
        let (total, addrs): (usize, Vec<tantivy::DocAddress>) = match sort {
            Sort::Relevance => {
                let (n, hits) = searcher
                    .search(&query, &(Count, top.order_by_score()))
                    .map_err(terr)?;
                (n, hits.into_iter().map(|(_, a)| a).collect())
            }
            Sort::Newest | Sort::Oldest => {
                let order = if sort == Sort::Newest {
                    Order::Desc
                } else {
                    Order::Asc
                };
                let (n, hits) = searcher
                    .search(
                        &query,
                        &(Count, top.order_by_fast_field::<i64>("date", order)),
                    )
                    .map_err(terr)?;
                (n, hits.into_iter().map(|(_, a)| a).collect())
            }
        };
        self.ids(&searcher, total, addrs)
    }

    fn ids(
        &self,
        searcher: &tantivy::Searcher,
        total: usize,
        addrs: Vec<tantivy::DocAddress>,
    ) -> Result<(usize, Vec<MessageId>)> {
        let mut out = Vec::with_capacity(addrs.len());
        for a in addrs {
            let doc: TantivyDocument = searcher.doc(a).map_err(terr)?;
            if let Some(Ok(id)) = doc
                .get_first(self.f.id)
                .and_then(|v| v.as_str())
                .map(str::parse)
            {
                out.push(id);
            }
        }
        Ok((total, out))
    }

    fn tokens(&self, text: &str) -> Vec<String> {
        let mut a = analyzer();
        let mut ts = a.token_stream(text);
        let mut out = Vec::new();
        while ts.advance() {
            out.push(ts.token().text.clone());
        }
        out
    }

    /// A word or phrase on one tokenized field: a term, a phrase, or nothing.
    fn text_query(&self, field: Field, text: &str) -> Option<Box<dyn TQuery>> {
        let toks = self.tokens(text);
        match toks.len() {
            0 => None,
            1 => Some(Box::new(TermQuery::new(
                Term::from_field_text(field, &toks[0]),
                IndexRecordOption::WithFreqs,
            ))),
            _ => Some(Box::new(PhraseQuery::new(
                toks.iter()
                    .map(|t| Term::from_field_text(field, t))
                    .collect(),
            ))),
        }
    }

    fn any_of(&self, fields: &[Field], text: &str) -> Box<dyn TQuery> {
        let subs: Vec<(Occur, Box<dyn TQuery>)> = fields
            .iter()
            .filter_map(|f| self.text_query(*f, text).map(|q| (Occur::Should, q)))
            .collect();
        if subs.is_empty() {
            // Nothing indexable in the word (e.g. only punctuation): matches nothing.
            Box::new(EmptyQuery)
        } else {
            Box::new(BooleanQuery::new(subs))
        }
    }

    fn address_query(&self, text_field: Field, addr_field: Field, value: &str) -> Box<dyn TQuery> {
        let v = value.trim().to_lowercase();
        let v = v.trim_start_matches('<').trim_end_matches('>');
        if let Some((local, domain)) = v.rsplit_once('@') {
            let key = if local.is_empty() {
                format!("@{domain}")
            } else {
                v.to_string()
            };
            term(Term::from_field_text(addr_field, &key))
        } else if looks_like_domain(v) {
            Box::new(BooleanQuery::new(vec![
                (
                    Occur::Should,
                    term(Term::from_field_text(addr_field, &format!("@{v}"))),
                ),
                (Occur::Should, self.any_of(&[text_field], v)),
            ]))
        } else {
            self.any_of(&[text_field], v)
        }
    }

    fn translate(&self, q: &Query) -> Box<dyn TQuery> {
        let f = &self.f;
        let any = [f.subject, f.body, f.attachments, f.from, f.to, f.filename];
        match q {
            Query::All => Box::new(AllQuery),
            Query::Word { field, text } | Query::Phrase { field, text } => {
                let phrase = matches!(q, Query::Phrase { .. });
                match field {
                    QField::Any => self.any_of(&any, text),
                    QField::Subject => self.any_of(&[f.subject], text),
                    QField::Filename => self.any_of(&[f.filename], text),
                    QField::MessageId => term(Term::from_field_text(
                        f.message_id,
                        &text.trim().to_lowercase(),
                    )),
                    QField::From if !phrase => self.address_query(f.from, f.from_addr, text),
                    QField::To if !phrase => self.address_query(f.to, f.to_addr, text),
                    QField::Cc if !phrase => self.address_query(f.cc, f.cc_addr, text),
                    QField::From => self.any_of(&[f.from], text),
                    QField::To => self.any_of(&[f.to], text),
                    QField::Cc => self.any_of(&[f.cc], text),
                }
            }
            Query::HasAttachment => term(Term::from_field_text(f.has, "attachment")),
            Query::After(d) => Box::new(RangeQuery::new(
                Bound::Included(Term::from_field_i64(f.date, day_start(*d))),
                Bound::Unbounded,
            )),
            Query::Before(d) => Box::new(RangeQuery::new(
                Bound::Unbounded,
                Bound::Excluded(Term::from_field_i64(f.date, day_start(*d))),
            )),
            Query::Larger(n) => Box::new(RangeQuery::new(
                Bound::Excluded(Term::from_field_u64(f.size, *n)),
                Bound::Unbounded,
            )),
            Query::Smaller(n) => Box::new(RangeQuery::new(
                Bound::Unbounded,
                Bound::Excluded(Term::from_field_u64(f.size, *n)),
            )),
            Query::Not(inner) => Box::new(BooleanQuery::new(vec![
                (Occur::Must, Box::new(AllQuery)),
                (Occur::MustNot, self.translate(inner)),
            ])),
            Query::And(children) => {
                let mut subs: Vec<(Occur, Box<dyn TQuery>)> = children
                    .iter()
                    .map(|c| match c {
                        Query::Not(inner) => (Occur::MustNot, self.translate(inner)),
                        other => (Occur::Must, self.translate(other)),
                    })
                    .collect();
                if subs.iter().all(|(o, _)| *o == Occur::MustNot) {
                    subs.push((Occur::Must, Box::new(AllQuery)));
                }
                Box::new(BooleanQuery::new(subs))
            }
            Query::Or(children) => Box::new(BooleanQuery::new(
                children
                    .iter()
                    .map(|c| (Occur::Should, self.translate(c)))
                    .collect(),
            )),
        }
    }
}

fn term(t: Term) -> Box<dyn TQuery> {
    Box::new(TermQuery::new(t, IndexRecordOption::Basic))
}

fn day_start(d: time::Date) -> i64 {
    d.midnight().assume_utc().unix_timestamp()
}

fn looks_like_domain(v: &str) -> bool {
    v.contains('.')
        && v.split('.')
            .all(|l| !l.is_empty() && l.chars().all(|c| c.is_alphanumeric() || c == '-'))
}

/// Exact-match keys of an address: the address, `@domain` and every
/// `@parent.domain` with at least two labels.
fn address_keys(addr: &str) -> Vec<String> {
    let a = addr.trim().to_lowercase();
    let mut keys = vec![a.clone()];
    if let Some((_, domain)) = a.rsplit_once('@') {
        let mut d = domain;
        loop {
            if d.is_empty() {
                break;
            }
            keys.push(format!("@{d}"));
            match d.split_once('.') {
                Some((_, rest)) if rest.contains('.') => d = rest,
                _ => break,
            }
        }
    }
    keys
}

/// Every address a message was from or to (headers and envelope), lower-case:
/// who may see it as an end user.
pub(crate) fn parties(info: &MessageInfo) -> Vec<String> {
    let m = &info.meta;
    let mut v: Vec<String> = Vec::new();
    let mut push = |a: &str| {
        let a = a
            .trim()
            .trim_start_matches('<')
            .trim_end_matches('>')
            .to_lowercase();
        if !a.is_empty() && !v.contains(&a) {
            v.push(a);
        }
    };
    for mb in m
        .from
        .iter()
        .chain(&m.sender)
        .chain(&m.to)
        .chain(&m.cc)
        .chain(&m.bcc)
    {
        push(&mb.address);
    }
    for d in &info.deliveries {
        if let Some(mf) = &d.mail_from {
            push(mf);
        }
        for r in &d.rcpt_to {
            push(r);
        }
    }
    v
}

/// A narrow entry point for the criterion benchmarks in `benches/`:
/// `TenantIndex` is private to the engine, yet adding documents to it is a
/// step worth timing on its own. Hidden from the documentation and not part
/// of the API: no stability promise, no other caller.
#[doc(hidden)]
pub mod bench_hook {
    use std::path::Path;

    use super::TenantIndex;
    use crate::crypto::SecretKey;
    use crate::error::Result;
    use crate::message::MessageInfo;
    use crate::parse::MessageText;

    /// A tenant index as the archive opens it (64 MiB decrypted cache).
    pub struct BenchIndex(TenantIndex);

    impl BenchIndex {
        /// Opens or creates the index in `dir`, encrypted under `key`.
        pub fn open(dir: &Path, key: &SecretKey) -> Result<BenchIndex> {
            TenantIndex::open(dir, key, 64 << 20).map(|(ix, _)| BenchIndex(ix))
        }

        /// Adds the documents and commits them (what one ingest batch does).
        pub fn add_and_commit(&self, docs: &[(&MessageInfo, &MessageText)]) -> Result<()> {
            self.0.add(docs)?;
            self.0.flush()?;
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_keys_cover_parent_domains() {
        assert_eq!(
            address_keys("Alice@Mail.Example.COM"),
            vec![
                "alice@mail.example.com",
                "@mail.example.com",
                "@example.com"
            ]
        );
        assert_eq!(
            address_keys("x@localhost"),
            vec!["x@localhost", "@localhost"]
        );
        assert_eq!(address_keys("undisclosed"), vec!["undisclosed"]);
    }
}
