//! The command line, as clap derive definitions. Ids, regions, retention
//! periods and message ids are parsed here with the engine's own `FromStr`
//! implementations, so a malformed one is a usage error (exit code 2) that
//! names the argument, before any archive is opened.

use std::path::PathBuf;

use ama_core::{AuditAction, MessageId, Region, Retention, Role, TenantId};
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
#[derive(Debug, Clone, Args)]
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

    /// The local key store file (default DATA/keys/keystore.json). Keep it
    /// outside the data directory, so that a copy of the data directory
    /// alone holds no tenant key: after `ama tenant destroy` such a copy
    /// (a backup) cannot be read.
    #[arg(long, global = true, env = "AMA_KEYSTORE", value_name = "FILE")]
    pub keystore: Option<PathBuf>,

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

    /// Blob store configuration (JSON: local directories and S3 buckets,
    /// regions, write quorum; no secrets). With `init` it is checked and
    /// copied to DATA/stores.json; other commands use DATA/stores.json
    /// unless this is given. Without either, blobs live in DATA/blobs.
    #[arg(long, global = true, env = "AMA_STORES", value_name = "FILE")]
    pub stores: Option<PathBuf>,

    /// Unlock tenant keys through the key service at ADDR (host:port, see
    /// docs/KEY-SERVICE.md) instead of a local key store: the data
    /// directory then holds no master key. Needs --key-service-ca,
    /// --client-cert and --client-key. With `init` the four are recorded
    /// in DATA/key-service.json; later commands use that file unless given.
    #[arg(long, global = true, env = "AMA_KEY_SERVICE", value_name = "ADDR")]
    pub key_service: Option<String>,

    /// CA certificate (PEM) that signed the key service's certificate.
    #[arg(long, global = true, env = "AMA_KEY_SERVICE_CA", value_name = "FILE")]
    pub key_service_ca: Option<PathBuf>,

    /// Name on the key service's certificate, if not the host of --key-service.
    #[arg(long, global = true, value_name = "NAME")]
    pub key_service_name: Option<String>,

    /// Region the key service keeps its keys in (eu, us, …): tenants pinned
    /// to another region are refused. Recorded by `init` like the others.
    #[arg(long, global = true, value_name = "REGION")]
    pub key_service_region: Option<ama_core::Region>,

    /// This node's client certificate (PEM) for the key service.
    #[arg(long, global = true, env = "AMA_CLIENT_CERT", value_name = "FILE")]
    pub client_cert: Option<PathBuf>,

    /// The private key (PEM) of --client-cert.
    #[arg(long, global = true, env = "AMA_CLIENT_KEY", value_name = "FILE")]
    pub client_key: Option<PathBuf>,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a new, empty archive in the data directory.
    Init,
    /// Run the separate key service (its own directory and passphrase) that
    /// archive nodes reach with --key-service: init, serve.
    KeyService {
        /// Key service command.
        #[command(subcommand)]
        command: KeyServiceCommand,
    },
    /// Rotate the master key or a tenant key; show what the key store holds.
    Keys {
        /// Keys command.
        #[command(subcommand)]
        command: crate::keys::KeysCommand,
    },
    /// Create, list and destroy tenants.
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
    /// Back the archive up to a target that only receives ciphertext: init, run, status.
    Backup {
        /// Backup command.
        #[command(subcommand)]
        command: crate::backup::BackupCommand,
    },
    /// Rebuild an archive in a new directory from a backup snapshot, with
    /// the keys of --keystore or --key-service (never in the backup).
    RestoreFromBackup(crate::backup::RestoreFromBackupArgs),
    /// Heal the blob copies: replay missed deletions, rewrite missing or
    /// damaged copies from an authentic one (exit code 1 while work is left).
    Repair(RepairArgs),
    /// Run the archive node: SMTP (TLS only) and the HTTPS API with its search page, until
    /// SIGTERM or Ctrl-C. `ama serve --demo` sets up a demo archive and prints a login.
    Serve(ServeArgs),
    /// Manage a tenant's users: add, list, set-password, disable, grant/revoke roles, addresses.
    User {
        /// User command.
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Manage a tenant's ingest-only API keys.
    ApiKey {
        /// API key command.
        #[command(subcommand)]
        command: ApiKeyCommand,
    },
    /// Read and verify a tenant's audit log.
    Audit {
        /// Audit command.
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Show or set a tenant's retention policy; delete what has expired.
    Retention {
        /// Retention command.
        #[command(subcommand)]
        command: RetentionCommand,
    },
    /// Place, release and list legal holds.
    Hold {
        /// Hold command.
        #[command(subcommand)]
        command: HoldCommand,
    },
    /// Request, list and approve deletions of mail still under retention (auditors).
    Deletion {
        /// Deletion command.
        #[command(subcommand)]
        command: DeletionCommand,
    },
    /// Decrypt every message, check its digest and the ingest log; report tombstones and gaps.
    Verify(VerifyArgs),
    /// Print an inclusion proof of a message (JSON) that `ama proof-check` or docs/PROOFS.md checks.
    Proof {
        /// The tenant.
        #[arg(long, value_name = "ID")]
        tenant: TenantId,
        /// The message.
        #[arg(value_name = "MESSAGE_ID")]
        id: MessageId,
    },
    /// Check an inclusion proof against a message file, without the archive.
    ProofCheck {
        /// The proof (JSON from `ama proof`).
        #[arg(long, value_name = "FILE")]
        proof: PathBuf,
        /// The message's raw bytes (.eml).
        #[arg(long, value_name = "FILE")]
        message: PathBuf,
    },
    /// Export a tenant, a query result or listed messages as an mbox or a zip of .eml files.
    Export(crate::export::ExportArgs),
    /// Append a tenant's messages (all, a query result or listed ones) to an IMAP folder.
    Restore(crate::export::RestoreArgs),
}

/// `ama user …`
#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Add a user (password from --password-stdin or AMA_USER_PASSWORD, if given).
    Add(UserAddArgs),
    /// List the tenant's users.
    List {
        /// The tenant.
        #[arg(long, value_name = "ID")]
        tenant: TenantId,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Set a user's local password (from --password-stdin or AMA_USER_PASSWORD).
    SetPassword(UserPasswordArgs),
    /// Disable a user: no more logins, live sessions stop working.
    Disable(UserIdArgs),
    /// Enable a disabled user (and lift a lockout).
    Enable(UserIdArgs),
    /// Grant a role (end-user, auditor, admin).
    Grant {
        /// The user.
        #[command(flatten)]
        user: UserIdArgs,
        /// The role.
        #[arg(value_name = "ROLE")]
        role: Role,
    },
    /// Revoke a role.
    Revoke {
        /// The user.
        #[command(flatten)]
        user: UserIdArgs,
        /// The role.
        #[arg(value_name = "ROLE")]
        role: Role,
    },
    /// Add one of the user's own mail addresses (what an end user may read).
    AddAddress {
        /// The user.
        #[command(flatten)]
        user: UserIdArgs,
        /// The address.
        #[arg(value_name = "ADDRESS")]
        address: String,
    },
    /// Remove one of the user's addresses.
    RemoveAddress {
        /// The user.
        #[command(flatten)]
        user: UserIdArgs,
        /// The address.
        #[arg(value_name = "ADDRESS")]
        address: String,
    },
}

/// A tenant and a user id.
#[derive(Debug, Args)]
pub struct UserIdArgs {
    /// The tenant.
    #[arg(long, value_name = "ID")]
    pub tenant: TenantId,
    /// The user id.
    #[arg(value_name = "USER")]
    pub id: String,
}

/// `ama user add`
#[derive(Debug, Args)]
pub struct UserAddArgs {
    /// The tenant.
    #[arg(long, value_name = "ID")]
    pub tenant: TenantId,
    /// The user id (login name).
    #[arg(value_name = "USER")]
    pub id: String,
    /// Display name.
    #[arg(long)]
    pub name: Option<String>,
    /// The user's own address (repeatable).
    #[arg(long, value_name = "ADDRESS")]
    pub address: Vec<String>,
    /// A role: end-user, auditor or admin (repeatable; at least one).
    #[arg(long, value_name = "ROLE", required = true)]
    pub role: Vec<Role>,
    /// Read the password from the first line of standard input.
    #[arg(long)]
    pub password_stdin: bool,
}

/// `ama user set-password`
#[derive(Debug, Args)]
pub struct UserPasswordArgs {
    /// The user.
    #[command(flatten)]
    pub user: UserIdArgs,
    /// Read the password from the first line of standard input.
    #[arg(long)]
    pub password_stdin: bool,
}

/// `ama api-key …`
#[derive(Debug, Subcommand)]
pub enum ApiKeyCommand {
    /// Create an ingest-only key; prints the token once.
    Create {
        /// The tenant it may ingest into.
        #[arg(long, value_name = "ID")]
        tenant: TenantId,
        /// What it is for.
        #[arg(value_name = "NAME")]
        name: String,
    },
    /// List the tenant's keys (without tokens).
    List {
        /// The tenant.
        #[arg(long, value_name = "ID")]
        tenant: TenantId,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a key by its id.
    Revoke {
        /// The tenant.
        #[arg(long, value_name = "ID")]
        tenant: TenantId,
        /// The key's id (from `ama api-key list`).
        #[arg(value_name = "KEY_ID")]
        id: String,
    },
}

/// `ama audit …`
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// List entries of a tenant's audit log (oldest first).
    List(AuditListArgs),
    /// Recompute the hash chain; exit code 1 and the first broken link if it is broken.
    Verify {
        /// The tenant.
        #[arg(long, value_name = "ID")]
        tenant: TenantId,
        /// A JSON report.
        #[arg(long)]
        json: bool,
    },
}

/// `ama audit list`
#[derive(Debug, Args)]
pub struct AuditListArgs {
    /// The tenant.
    #[arg(long, value_name = "ID")]
    pub tenant: TenantId,
    /// Only entries at or after this time (RFC 3339, e.g. 2026-01-31T00:00:00Z, or a date 2026-01-31).
    #[arg(long, value_name = "TIME", value_parser = parse_since)]
    pub since: Option<time::OffsetDateTime>,
    /// Only entries of this action (search, view, download, login, user-change, …).
    #[arg(long, value_name = "ACTION")]
    pub action: Option<AuditAction>,
    /// At most this many entries.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(i64).range(1..=10_000))]
    pub limit: i64,
    /// One JSON object per line.
    #[arg(long)]
    pub json: bool,
}

pub(crate) fn parse_since(s: &str) -> Result<time::OffsetDateTime, String> {
    use time::format_description::well_known::Rfc3339;
    if let Ok(t) = time::OffsetDateTime::parse(s, &Rfc3339) {
        return Ok(t);
    }
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    time::Date::parse(s, &fmt)
        .map(|d| d.midnight().assume_utc())
        .map_err(|_| format!("{s:?} is neither an RFC 3339 time nor a YYYY-MM-DD date"))
}

/// `ama serve`
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Serve the HTTPS JSON API and the search page on ADDR (e.g. 0.0.0.0:443 or 127.0.0.1:8443).
    #[arg(long, value_name = "ADDR")]
    pub http: Option<std::net::SocketAddr>,
    /// Serve plain HTTP instead of HTTPS on --http (refused unless ADDR is a loopback address).
    #[arg(long, requires = "http")]
    pub insecure_http: bool,
    /// Demo: create an archive with a tenant `demo`, the sample mail and a user `demo` on the
    /// first start; print the URL and a fresh password at every start. Without any listener it
    /// serves HTTPS on 127.0.0.1:8443.
    #[arg(long)]
    pub demo: bool,
    /// With --demo: the sample mail imported on the first start.
    #[arg(
        long,
        value_name = "DIR",
        default_value = "examples/mail",
        requires = "demo"
    )]
    pub demo_mail: PathBuf,
    /// Listen for SMTP with STARTTLS on ADDR (e.g. 0.0.0.0:25 or 127.0.0.1:2525).
    #[arg(long, value_name = "ADDR")]
    pub smtp: Option<std::net::SocketAddr>,
    /// Listen for SMTP over implicit TLS on ADDR (like port 465).
    #[arg(long, value_name = "ADDR")]
    pub smtps: Option<std::net::SocketAddr>,
    /// PEM certificate chain for SMTP and HTTPS; without --cert/--key a self-signed
    /// certificate for localhost is made.
    #[arg(long, alias = "tls-cert", value_name = "FILE", requires = "key")]
    pub cert: Option<PathBuf>,
    /// PEM private key of --cert.
    #[arg(long, alias = "tls-key", value_name = "FILE", requires = "cert")]
    pub key: Option<PathBuf>,
    /// Host name in the SMTP greeting.
    #[arg(long, value_name = "NAME", default_value = "localhost")]
    pub hostname: String,
    /// Unpack Microsoft Exchange / Microsoft 365 journal reports sent to this tenant (repeatable).
    #[arg(long = "journal-tenant", value_name = "ID")]
    pub journal_tenants: Vec<TenantId>,
    /// Run the retention sweep (delete mail past its retain-until that no
    /// legal hold covers) for every tenant this often: e.g. 24h, 30m, or off.
    #[arg(long, value_name = "INTERVAL", default_value = crate::sweeper::DEFAULT_EVERY,
          value_parser = crate::sweeper::parse_every)]
    pub sweep_every: crate::sweeper::Every,
}

/// `ama key-service …`
#[derive(Debug, Subcommand)]
pub enum KeyServiceCommand {
    /// Create the key service's key store in DIR (passphrase from
    /// AMA_PASSPHRASE, --passphrase-file or --key-file, as for `ama init`).
    Init {
        /// The key service's own directory (never an archive's data directory).
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
    },
    /// Serve wrap/unwrap/destroy to archive nodes over mutually
    /// authenticated TLS until killed; logs every request to stderr.
    Serve(KeyServiceServeArgs),
    /// Replace the service's master secret (stop the service first). The
    /// current one as usual; the new one from --new-passphrase-file,
    /// --new-key-file or AMA_NEW_PASSPHRASE. Tenant keys are not touched.
    RotateMaster {
        /// The key service's directory.
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        /// Read the new passphrase from the first line of FILE.
        #[arg(long, value_name = "FILE", conflicts_with = "new_key_file")]
        new_passphrase_file: Option<PathBuf>,
        /// Use a new 32-byte master key file instead of a passphrase.
        #[arg(long, value_name = "FILE")]
        new_key_file: Option<PathBuf>,
    },
}

/// `ama key-service serve`
#[derive(Debug, Args)]
pub struct KeyServiceServeArgs {
    /// The key service's directory (see `ama key-service init`).
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,
    /// Address to listen on, e.g. 10.0.0.5:7443 or 127.0.0.1:7443.
    #[arg(long, value_name = "ADDR")]
    pub listen: String,
    /// The service's PEM certificate chain.
    #[arg(long, value_name = "FILE")]
    pub cert: PathBuf,
    /// The PEM private key of --cert.
    #[arg(long, value_name = "FILE")]
    pub key: PathBuf,
    /// PEM CA certificate(s): only clients with a certificate they signed are served.
    #[arg(long, value_name = "FILE")]
    pub client_ca: PathBuf,
    /// Connections served at the same time.
    #[arg(long, value_name = "N", default_value_t = 64, value_parser = clap::value_parser!(u16).range(1..))]
    pub max_connections: u16,
}

/// `ama tenant …`
#[derive(Debug, Subcommand)]
pub enum TenantCommand {
    /// Create a tenant with a fresh key.
    Add(TenantAddArgs),
    /// List the tenants (and those destroyed).
    List(JsonArg),
    /// Destroy a tenant for good (crypto-shredding): its key first, then all
    /// of its data. Backups of its data become unreadable. Cannot be undone.
    Destroy(TenantDestroyArgs),
    /// Log users in through the tenant's LDAP directory: set, show, clear, test.
    Directory {
        /// Directory command.
        #[command(subcommand)]
        command: crate::directory::DirectoryCommand,
    },
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

/// `ama tenant destroy`
#[derive(Debug, Args)]
pub struct TenantDestroyArgs {
    /// The tenant to destroy.
    #[arg(value_name = "ID")]
    pub id: TenantId,
    /// Do not ask for confirmation (required when stdin is not a terminal).
    #[arg(long)]
    pub yes: bool,
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
    #[arg(long, conflicts_with = "count")]
    pub json: bool,
    /// Print only the number of matching messages (one line), no hits.
    /// For scripts and benchmarks (the engine still reads one hit: it returns
    /// the total with a page, and a page has at least one).
    #[arg(long, conflicts_with_all = ["limit", "offset", "sort"])]
    pub count: bool,
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

/// `ama repair`
#[derive(Debug, Args)]
pub struct RepairArgs {
    /// Also compare every store with the catalog (finds copies lost without notice).
    #[arg(long)]
    pub scan: bool,
    /// Also read and authenticate every copy (finds damaged copies; implies --scan).
    #[arg(long)]
    pub deep: bool,
    /// Print the report as one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// `ama retention …`
#[derive(Debug, Subcommand)]
pub enum RetentionCommand {
    /// Print the tenant's policy as JSON.
    Show {
        /// The tenant.
        #[arg(long, value_name = "ID")]
        tenant: TenantId,
    },
    /// Replace the tenant's policy; every message's retain-until is recomputed.
    Set(RetentionSetArgs),
    /// Delete every message past its retain-until that no legal hold covers.
    Sweep {
        /// The tenant.
        #[arg(long, value_name = "ID")]
        tenant: TenantId,
        /// Sweep as of this time instead of now (RFC 3339 or YYYY-MM-DD).
        #[arg(long, value_name = "TIME", value_parser = parse_since)]
        at: Option<time::OffsetDateTime>,
    },
}

/// `ama retention set`
#[derive(Debug, Args)]
pub struct RetentionSetArgs {
    /// The tenant.
    #[arg(long, value_name = "ID")]
    pub tenant: TenantId,
    /// Period of messages no rule matches, e.g. 10y.
    #[arg(long, value_name = "PERIOD")]
    pub default: Retention,
    /// Count periods from the end of the message's calendar year (GoBD).
    #[arg(long)]
    pub year_end: bool,
    /// A rule, first match wins: address:A=PERIOD, domain:D=PERIOD, direction:inbound|outbound|internal=PERIOD or query:QUERY=PERIOD (repeatable).
    #[arg(long, value_name = "RULE")]
    pub rule: Vec<String>,
    /// No message is kept less than this (can only be raised later).
    #[arg(long, value_name = "PERIOD")]
    pub minimum: Option<Retention>,
    /// Lock the policy: nobody can shorten retention or lift the lock afterwards.
    #[arg(long)]
    pub lock: bool,
    /// Deletion requests need a second auditor's approval.
    #[arg(long)]
    pub four_eyes: bool,
}

/// `ama hold …`
#[derive(Debug, Subcommand)]
pub enum HoldCommand {
    /// Place a named hold by query, custodian address or message ids.
    Place {
        /// The tenant.
        #[arg(long, value_name = "ID")]
        tenant: TenantId,
        /// The hold's name.
        #[arg(value_name = "NAME")]
        name: String,
        /// Why (case, matter).
        #[arg(long)]
        reason: String,
        /// Hold what this query finds.
        #[arg(long)]
        query: Option<String>,
        /// Hold every message from or to this address.
        #[arg(long, value_name = "ADDRESS")]
        custodian: Option<String>,
        /// Hold these messages (repeatable).
        #[arg(long, value_name = "MESSAGE_ID")]
        id: Vec<MessageId>,
    },
    /// Release an active hold.
    Release {
        /// The tenant.
        #[arg(long, value_name = "ID")]
        tenant: TenantId,
        /// The hold's name.
        #[arg(value_name = "NAME")]
        name: String,
        /// Why.
        #[arg(long)]
        reason: String,
    },
    /// List holds (JSON lines).
    List {
        /// The tenant.
        #[arg(long, value_name = "ID")]
        tenant: TenantId,
    },
}

/// Who acts: a named user of the tenant, or the operator.
#[derive(Debug, Args)]
pub struct AsUser {
    /// Act as this user of the tenant (an auditor), logging in with the
    /// password from --password-stdin or AMA_USER_PASSWORD. Without it the
    /// operator acts, who cannot take part in four-eyes approvals.
    #[arg(long = "as", value_name = "USER")]
    pub user: Option<String>,
    /// Read the user's password from the first line of standard input.
    #[arg(long, requires = "user")]
    pub password_stdin: bool,
}

/// `ama deletion …`
#[derive(Debug, Subcommand)]
pub enum DeletionCommand {
    /// Delete messages before their retention ends (e.g. a GDPR erasure):
    /// carried out at once, or with four-eyes on recorded until a second
    /// auditor approves. Held or still protected messages are kept back.
    Request {
        /// The tenant.
        #[arg(long, value_name = "ID")]
        tenant: TenantId,
        /// Why (kept in the tombstones and the audit log).
        #[arg(long)]
        reason: String,
        /// Delete what this query finds (resolved now).
        #[arg(
            long,
            value_name = "QUERY",
            allow_hyphen_values = true,
            conflicts_with = "ids"
        )]
        query: Option<String>,
        /// Delete exactly these messages.
        #[arg(long, value_name = "ARCHIVE_ID", num_args = 1..)]
        ids: Vec<MessageId>,
        /// Who asks.
        #[command(flatten)]
        who: AsUser,
    },
    /// List pending requests (JSON lines).
    List {
        /// The tenant.
        #[arg(long, value_name = "ID")]
        tenant: TenantId,
        /// Who asks.
        #[command(flatten)]
        who: AsUser,
    },
    /// Approve a pending request: a second auditor, not the one who asked.
    Approve {
        /// The tenant.
        #[arg(long, value_name = "ID")]
        tenant: TenantId,
        /// The request's id, as printed by `deletion request` and `deletion list`.
        #[arg(value_name = "REQUEST")]
        request: String,
        /// Who approves.
        #[command(flatten)]
        who: AsUser,
    },
}

/// `ama verify`
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Only this tenant (default: all).
    #[arg(long, value_name = "ID")]
    pub tenant: Option<TenantId>,
}
