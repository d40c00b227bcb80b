#![forbid(unsafe_code)]
//! `ama`: the operator's command line for an ama archive.
//!
//! The binary is a thin shell over [`ama_core::Archive`]: it turns command
//! lines into engine calls and engine answers into text for a person or JSON
//! for a script. It holds no archive logic of its own, so that what an
//! operator does here behaves exactly like what the SMTP node, the HTTP API
//! or the Python package do. It acts as the tenant's *auditor*
//! ([`ama_core::Principal::auditor`]): it may read every message of the
//! tenant it is pointed at, and nothing of any other tenant.
//!
//! Why the shape it has:
//!
//! * **One unlock story.** The master secret comes from `AMA_PASSPHRASE`,
//!   `--passphrase-file` or `--key-file` (see [`unlock`]), never from a
//!   command-line argument, which would show up in `ps` and shell history.
//! * **Scripts get JSON, people get tables.** Every listing command takes
//!   `--json`; human output goes to stdout, progress and footers to stderr,
//!   so `ama search --json … | jq` never sees anything but JSON.
//! * **Exit codes mean something.** 0 on success (an import that refused
//!   some messages still succeeded: the refusals are reported), 2 for a usage
//!   error or a search query the engine cannot parse, 1 for everything else.
//!   Errors are printed once, as `ama: <message>`, with their causes.
//! * **Never panic on input.** Tenant and message ids are validated by the
//!   engine's own parsers before anything is opened; every write to stdout is
//!   checked, and a closed pipe (`ama search … | head`) ends the program
//!   quietly instead of aborting it.

mod backup;
mod cli;
mod demo;
mod directory;
mod export;
mod imap;
mod import;
mod keys;
mod keyservice;
mod output;
mod read;
mod retention;
mod serve;
mod stores;
mod sweeper;
mod tenants;
mod unlock;
mod users;

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command, TenantCommand};

/// An error that is the user's to fix in the command line itself (exit code 2).
#[derive(Debug)]
pub struct Usage(pub String);

impl std::fmt::Display for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Usage {}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return clap_exit(&e),
    };
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            let _ = writeln!(std::io::stderr().lock(), "ama: {}", render_error(&e));
            ExitCode::from(exit_code(&e))
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let g = &cli.global;
    match &cli.command {
        Command::Init => tenants::init(g),
        Command::KeyService { command } => keyservice::run(g, command),
        Command::Keys { command } => keys::run(g, command),
        Command::Tenant { command } => match command {
            TenantCommand::Add(args) => tenants::add(g, args),
            TenantCommand::List(args) => tenants::list(g, args),
            TenantCommand::Destroy(args) => keys::destroy(g, args),
            TenantCommand::Directory { command } => directory::run(g, command),
        },
        Command::Import(args) => import::run(g, args),
        Command::Search(args) => read::search(g, args),
        Command::Show(args) => read::show(g, args),
        Command::Stats(args) => tenants::stats(g, args),
        Command::Reindex(args) => tenants::reindex(g, args),
        Command::Backup { command } => backup::run(g, command),
        Command::RestoreFromBackup(args) => backup::restore(g, args),
        Command::Repair(args) => stores::repair(g, args),
        Command::Serve(args) => serve::run(g, args),
        Command::User { command } => users::user(g, command),
        Command::ApiKey { command } => users::api_key(g, command),
        Command::Audit { command } => users::audit(g, command),
        Command::Retention { command } => retention::retention(g, command),
        Command::Hold { command } => retention::hold(g, command),
        Command::Deletion { command } => retention::deletion(g, command),
        Command::Verify(args) => retention::verify(g, args),
        Command::Proof { tenant, id } => retention::proof(g, tenant, *id),
        Command::ProofCheck { proof, message } => retention::proof_check(proof, message),
        Command::Export(args) => export::export(g, args),
        Command::Restore(args) => export::restore(g, args),
    }
}

/// Prints a clap error (or `--help`/`--version`) and picks its exit code.
/// Real errors get the same `ama: ` prefix as every other error.
fn clap_exit(e: &clap::Error) -> ExitCode {
    if !e.use_stderr() {
        // --help, --version: not errors.
        let _ = e.print();
        return ExitCode::SUCCESS;
    }
    if e.kind() == clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
        // Plain `ama` or `ama tenant`: the help, as a usage error.
        let _ = e.print();
        return ExitCode::from(2);
    }
    let text = e.render().to_string();
    let text = text.strip_prefix("error: ").unwrap_or(&text);
    let _ = write!(std::io::stderr().lock(), "ama: {text}");
    ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2))
}

/// 2 for usage errors, unparsable queries and out-of-range arguments, 1 for
/// everything else.
fn exit_code(e: &anyhow::Error) -> u8 {
    let usage = e.chain().any(|c| {
        c.is::<Usage>()
            || c.is::<ama_core::QueryError>()
            || matches!(
                c.downcast_ref::<ama_core::Error>(),
                Some(ama_core::Error::Query(_) | ama_core::Error::InvalidArgument(_))
            )
    });
    if usage { 2 } else { 1 }
}

/// The error and its causes, `: `-separated. Engine errors often repeat
/// their source in their own message (`cannot read X: <io error>` with the
/// io error as source); a cause whose text is already shown is skipped.
fn render_error(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if text.is_empty() || out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
