//! Reading mail back: `search` (a page of hits, or with `--count` only the
//! number of matches) and `show`.

use std::io::Write;

use ama_core::SearchOptions;

use crate::Usage;
use crate::cli::{Global, SearchArgs, ShowArgs};
use crate::output::{self, clean, fit};
use crate::unlock;

/// `ama search`
pub fn search(g: &Global, args: &SearchArgs) -> anyhow::Result<()> {
    let query = args.query.join(" ");
    // Parse before unlocking: a typo in the query is reported at once, with
    // exit code 2, and needs no passphrase.
    if let Err(e) = ama_core::query::parse(&query) {
        return Err(Usage(bad_query(&query, &e)).into());
    }
    let archive = unlock::open(g)?;
    let who = unlock::operator(&args.tenant);
    // `--count` still asks the engine for a page (its smallest, one hit):
    // the engine has no count-only call, and the total comes with any page.
    let opts = if args.count {
        SearchOptions {
            limit: 1,
            offset: 0,
            sort: ama_core::Sort::Relevance,
        }
    } else {
        SearchOptions {
            limit: args.limit as usize,
            offset: args.offset as usize,
            sort: args.sort.into(),
        }
    };
    let found = match archive.search(&who, &query, &opts) {
        Err(ama_core::Error::Query(e)) => return Err(Usage(bad_query(&query, &e)).into()),
        r => r?,
    };
    let mut out = std::io::stdout().lock();
    if args.count {
        writeln!(out, "{}", found.total)?;
        out.flush()?;
        return Ok(());
    }
    for hit in &found.hits {
        if args.json {
            output::json_line(&mut out, &output::Hit::new(hit))?;
        } else {
            let m = &hit.meta;
            writeln!(
                out,
                "{}  {}  {}  {}",
                output::short_date(m.date),
                fit(&clean(&output::first_from(hit)), 30),
                fit(&clean(m.subject.as_deref().unwrap_or("(no subject)")), 50),
                hit.id
            )?;
        }
    }
    out.flush()?;
    let shown = found.hits.len();
    let mut footer = format!("{shown} of {} messages", found.total);
    if args.offset > 0 && shown > 0 {
        let first = args.offset as usize + 1;
        footer.push_str(&format!(" (hits {first}-{})", first + shown - 1));
    }
    writeln!(std::io::stderr().lock(), "{footer}")?;
    Ok(())
}

/// The engine's message, and the query with a caret under the position
/// when it fits on one line.
fn bad_query(query: &str, e: &ama_core::QueryError) -> String {
    let mut msg = format!("bad query: {e}");
    if !query.is_empty() && query.chars().count() <= 200 && !query.contains(['\n', '\r']) {
        let q = clean(query);
        msg.push_str(&format!("\n    {q}\n    {}^", " ".repeat(e.position)));
    }
    msg
}

/// `ama show`
pub fn show(g: &Global, args: &ShowArgs) -> anyhow::Result<()> {
    let archive = unlock::open(g)?;
    let who = unlock::operator(&args.tenant);
    let mut out = std::io::stdout().lock();
    if args.info {
        let info = archive.get(&who, args.id)?;
        serde_json::to_writer_pretty(&mut out, &output::Info::new(&info))?;
        out.write_all(b"\n")?;
    } else {
        let raw = archive.get_raw(&who, args.id)?;
        out.write_all(&raw)?;
    }
    out.flush()?;
    Ok(())
}
