//! The command line, as clap derive definitions. Ids, regions, retention
//! periods and message ids are parsed here with the engine's own `FromStr`
//! implementations, so a malformed one is a usage error (exit code 2) that
//! names the argument, before any archive is opened.

use std::path::PathBuf;

use ama_core::{MessageId, Region, Retention, TenantId};
use clap::{Args, Parser, Subcommand, ValueEnum};

/// Largest `--limit` (the engine's `ama_core::archive::MAX_PAGE`).
const MAX_PAGE: i64 = ama_core::archive::MAX_PAGE as i64;
/// Deepest `--offset` (the engine's `ama_core::archive::MAX_OFFSET`).
const MAX_OFFSET: i64 = ama_core::archive::MAX_OFFSET as i64;

/// ama: an embeddable, multi-tenant e-mail archive.
///
/// The master secret is read from the environment variable AMA_PASSPHRASE,
/// from --passphrase-file or from --key-file; it is never taken as an
/// argument, so that it does not end up in `ps` output or shell history.
#[derive(Debug, Parser)]
#[command(name = "ama", version, propagate_version = true)]
pub struct Cli {
    /// Options that apply to every command.
    #[command(flatten)]
    pub global: Global,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Where the archive is and how to unlock it.
#[derive(Debug, Args)]
#[command(next_help_heading = "Global options")]
pub struct Global {
    /// Data directory of the archive.
    #[arg(
        long,
        global = true,
        env = "AMA_DATA",
        default_value = "./ama-data",
        value_name = "DIR"
    )]
    pub data: PathBuf,

    /// Read the passphrase from the first line of FILE (instead of AMA_PASSPHRASE).
    #[arg(long, global = true, value_name = "FILE", conflicts_with = "key_file")]
    pub passphrase_file: Option<PathBuf>,

    /// Unlock with a master key file of exactly 32 random bytes instead of a passphrase.
    #[arg(long, global = true, value_name = "FILE")]
    pub key_file: Option<PathBuf>,

    /// INSECURE: with `init`, derive the master key with trivially cheap
    /// argon2 parameters. For tests and demos only; an archive created this
    /// way can be brute-forced. Also set by AMA_INSECURE_FAST_KDF=1.
    #[arg(
        long,
        global = true,
        hide = true,
        env = "AMA_INSECURE_FAST_KDF",
        hide_env = true,
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub kdf_fast: bool,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a new, empty archive in the data directory.
    Init,
    /// Create and list tenants.
    Tenant {
        /// Tenant command.
        #[command(subcommand)]
        command: TenantCommand,
    },
    /// Import .eml files, Maildirs and mbox files into a tenant.
    Import(ImportArgs),
    /// Search a tenant's mail (query language: docs/SEARCH.md).
    Search(SearchArgs),
    /// Print a message exactly as it was archived (or its metadata).
    Show(ShowArgs),
    /// Counters per tenant: messages, sizes, duplicates, index.
    Stats(StatsArgs),
    /// Rebuild a tenant's full-text index from the stored messages.
    Reindex(TenantArg),
    /// Run the archive node: accept mail over SMTP (TLS only) until SIGTERM or Ctrl-C.
    Serve(ServeArgs),
}

/// `ama serve`
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Listen for SMTP with STARTTLS on ADDR (e.g. 0.0.0.0:25 or 127.0.0.1:2525).
    #[arg(long, value_name = "ADDR")]
    pub smtp: Option<std::net::SocketAddr>,
    /// Listen for SMTP over implicit TLS on ADDR (like port 465).
    #[arg(long, value_name = "ADDR")]
    pub smtps: Option<std::net::SocketAddr>,
    /// PEM certificate chain; without --cert/--key a self-signed certificate for localhost is made.
    #[arg(long, value_name = "FILE", requires = "key")]
    pub cert: Option<PathBuf>,
    /// PEM private key of --cert.
    #[arg(long, value_name = "FILE", requires = "cert")]
    pub key: Option<PathBuf>,
    /// Host name in the SMTP greeting.
    #[arg(long, value_name = "NAME", default_value = "localhost")]
    pub hostname: String,
    /// Unpack Microsoft Exchange / Microsoft 365 journal reports sent to this tenant (repeatable).
    #[arg(long = "journal-tenant", value_name = "ID")]
    pub journal_tenants: Vec<TenantId>,
}

/// `ama tenant …`
#[derive(Debug, Subcommand)]
pub enum TenantCommand {
    /// Create a tenant with a fresh key.
    Add(TenantAddArgs),
    /// List the tenants.
    List(JsonArg),
}

/// `ama tenant add`
#[derive(Debug, Args)]
pub struct TenantAddArgs {
    /// Tenant id: 1-63 characters a-z, 0-9 and '-'.
    #[arg(value_name = "ID")]
    pub id: TenantId,
    /// Human-readable name (defaults to the id).
    #[arg(long, value_name = "N")]
    pub name: Option<String>,
    /// Region the tenant's data is pinned to: eu, us, or a custom name.
    #[arg(long, value_name = "R", default_value = "eu")]
    pub region: Region,
    /// A mail domain the tenant receives mail for (repeatable).
    #[arg(long = "domain", value_name = "D")]
    pub domains: Vec<String>,
    /// Default retention, e.g. 10y, 6m or 90d.
    #[arg(long, value_name = "PERIOD", default_value = "10y")]
    pub retention: Retention,
}

/// Just `--json`.
#[derive(Debug, Args)]
pub struct JsonArg {
    /// Print one JSON object per line instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Just `--tenant`.
#[derive(Debug, Args)]
pub struct TenantArg {
    /// The tenant.
    #[arg(long, value_name = "ID")]
    pub tenant: TenantId,
}

/// `ama import`
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The tenant to import into.
    #[arg(long, value_name = "ID")]
    pub tenant: TenantId,
    /// Print one JSON object (counts, every message and every refusal) on stdout.
    #[arg(long)]
    pub json: bool,
    /// Messages per durable commit.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 500,
        value_parser = clap::value_parser!(u32).range(1..=100_000)
    )]
    pub batch: u32,
    /// Files and directories: .eml files, Maildirs, mbox files, or trees of them.
    #[arg(value_name = "PATH", required = true)]
    pub paths: Vec<PathBuf>,
}

/// Result order of `ama search`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum SortArg {
    /// Newest message date first.
    Newest,
    /// Oldest first.
    Oldest,
    /// Best match first.
    Relevance,
}

impl From<SortArg> for ama_core::Sort {
    fn from(s: SortArg) -> Self {
        match s {
            SortArg::Newest => ama_core::Sort::Newest,
            SortArg::Oldest => ama_core::Sort::Oldest,
            SortArg::Relevance => ama_core::Sort::Relevance,
        }
    }
}

/// `ama search`
#[derive(Debug, Args)]
pub struct SearchArgs {
    /// The tenant to search.
    #[arg(long, value_name = "ID")]
    pub tenant: TenantId,
    /// Print one JSON object per hit and line.
    #[arg(long)]
    pub json: bool,
    /// Hits per page.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 20,
        value_parser = clap::value_parser!(u32).range(1..=MAX_PAGE)
    )]
    pub limit: u32,
    /// Hits to skip (paging; at most 1000000, deeper paging needs a narrower query).
    #[arg(
        long,
        value_name = "N",
        default_value_t = 0,
        value_parser = clap::value_parser!(u32).range(0..=MAX_OFFSET)
    )]
    pub offset: u32,
    /// Result order.
    #[arg(long, value_enum, default_value_t = SortArg::Newest)]
    pub sort: SortArg,
    /// The query; words are joined with spaces. Empty finds every message.
    /// A query with a negation such as `-newsletter` goes after `--`
    /// (`ama search --tenant t -- invoice -newsletter`), as everything
    /// after `--` is query.
    #[arg(value_name = "QUERY")]
    pub query: Vec<String>,
}

/// `ama show`
#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The tenant the message belongs to.
    #[arg(long, value_name = "ID")]
    pub tenant: TenantId,
    /// Print the metadata as JSON instead of the raw message.
    #[arg(long)]
    pub info: bool,
    /// The archive id (26 characters, as printed by import and search).
    #[arg(value_name = "ARCHIVE_ID")]
    pub id: MessageId,
}

/// `ama stats`
#[derive(Debug, Args)]
pub struct StatsArgs {
    /// Only this tenant (default: all).
    #[arg(long, value_name = "ID")]
    pub tenant: Option<TenantId>,
    /// Print one JSON object per tenant and line.
    #[arg(long)]
    pub json: bool,
}
