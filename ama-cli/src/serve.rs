//! `ama serve`: the archive node. The SMTP listener lives in `ama-smtp`;
//! this only turns options into its configuration, picks the certificate
//! and runs it until SIGTERM or Ctrl-C (a graceful shutdown: sessions in
//! flight finish, the spool is drained into the archive).
//!
//! Without `--cert`/`--key` a self-signed certificate for localhost is made
//! (mail is never accepted in plaintext), and the operator is told so; its
//! certificate is written to `DATA/smtp-selfsigned.pem` for local clients to
//! trust. The key stays in memory.

use std::sync::Arc;

use ama_smtp::tls::{self, CertKey, ClientCerts};
use ama_smtp::{Config, Listeners};
use anyhow::Context;

use crate::Usage;
use crate::cli::{Global, ServeArgs};
use crate::unlock;

/// Runs the node until SIGTERM or Ctrl-C.
pub fn run(g: &Global, args: &ServeArgs) -> anyhow::Result<()> {
    if args.smtp.is_none() && args.smtps.is_none() {
        return Err(Usage("give --smtp ADDR and/or --smtps ADDR".into()).into());
    }
    let archive = Arc::new(unlock::open(g)?);
    let cert = match (&args.cert, &args.key) {
        (Some(c), Some(k)) => CertKey::from_pem_files(c, k)?,
        _ => {
            let (ck, pem, _) = CertKey::self_signed_localhost()?;
            let path = g.data.join("smtp-selfsigned.pem");
            std::fs::write(&path, pem)
                .with_context(|| format!("cannot write {}", path.display()))?;
            eprintln!(
                "ama: no --cert/--key given: using a self-signed certificate for localhost \
                 (written to {}); clients that verify certificates will refuse it",
                path.display()
            );
            ck
        }
    };
    let mut config = Config::new(&g.data, tls::server_config(cert, &ClientCerts::None)?);
    config.hostname.clone_from(&args.hostname);
    config.journal.tenants = args.journal_tenants.iter().cloned().collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(async {
        let mut listeners = Listeners::default();
        if let Some(a) = args.smtp {
            let l = tokio::net::TcpListener::bind(a)
                .await
                .with_context(|| format!("cannot listen on {a}"))?;
            eprintln!("ama: SMTP (STARTTLS required) on {}", l.local_addr()?);
            listeners.starttls = Some(l);
        }
        if let Some(a) = args.smtps {
            let l = tokio::net::TcpListener::bind(a)
                .await
                .with_context(|| format!("cannot listen on {a}"))?;
            eprintln!("ama: SMTP over TLS on {}", l.local_addr()?);
            listeners.implicit_tls = Some(l);
        }
        ama_smtp::serve(listeners, archive, config, shutdown_signal()).await?;
        eprintln!("ama: stopped");
        anyhow::Ok(())
    })
}

/// Completes on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
    eprintln!("ama: shutting down: finishing sessions in flight, draining the spool");
}
