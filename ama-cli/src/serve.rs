//! `ama serve`: the archive node. SMTP (`ama-smtp`) and the HTTPS API with
//! its search page (`ama-http`) run in one process over one data directory
//! (one process opens an archive at a time, so the API is also how to
//! search while the node runs). This module only turns options into their
//! configurations, picks the certificate, and runs both until SIGTERM or
//! Ctrl-C: a graceful shutdown, in which requests and SMTP sessions in
//! flight finish and the spool is drained into the archive.
//!
//! Without `--cert`/`--key` a self-signed certificate for localhost is made
//! (neither mail nor the API is ever served in plaintext to the network),
//! and the operator is told so; it is written to `DATA/smtp-selfsigned.pem`
//! for local clients to trust, and both listeners use it. The key stays in
//! memory. Plain HTTP needs `--insecure-http` and a loopback address.

use std::sync::Arc;

use ama_http::{ExtraMetrics, HttpConfig, Transport};
use ama_smtp::tls::{self, CertKey, ClientCerts};
use ama_smtp::{Config, Listeners};
use anyhow::Context;
use tokio::sync::watch;

use crate::Usage;
use crate::cli::{Global, ServeArgs};
use crate::{demo, unlock};

/// Where the demo serves HTTPS when no listener is given.
const DEMO_HTTP: &str = "127.0.0.1:8443";

/// Runs the node until SIGTERM or Ctrl-C.
pub fn run(g: &Global, args: &ServeArgs) -> anyhow::Result<()> {
    let mut http = args.http;
    if args.demo && http.is_none() && args.smtp.is_none() && args.smtps.is_none() {
        http = DEMO_HTTP.parse().ok();
    }
    if http.is_none() && args.smtp.is_none() && args.smtps.is_none() {
        return Err(Usage("give --http ADDR, --smtp ADDR and/or --smtps ADDR".into()).into());
    }
    if args.insecure_http {
        match http {
            Some(a) if a.ip().is_loopback() => {}
            Some(a) => {
                return Err(Usage(format!(
                    "--insecure-http serves plain HTTP, which is only allowed on a loopback \
                     address (127.0.0.1, ::1), not on {a}; drop it to serve HTTPS"
                ))
                .into());
            }
            None => return Err(Usage("--insecure-http needs --http ADDR".into()).into()),
        }
    }
    let (archive, login) = if args.demo {
        let (a, l) = demo::prepare(g, &args.demo_mail)?;
        (Arc::new(a), Some(l))
    } else {
        (Arc::new(unlock::open(g)?), None)
    };
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
    let http_cert = CertKey {
        chain: cert.chain.clone(),
        key: cert.key.clone_key(),
    };
    let smtp_tls = tls::server_config(cert, &ClientCerts::None)?;
    let http_transport = if args.insecure_http {
        Transport::InsecureLoopback
    } else {
        Transport::Tls(tls::server_config(http_cert, &ClientCerts::None)?)
    };
    let mut config = Config::new(&g.data, smtp_tls);
    let spool_dir = config.spool_dir.clone();
    config.hostname.clone_from(&args.hostname);
    config.journal.tenants = args.journal_tenants.iter().cloned().collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(async {
        let mut listeners = Listeners::default();
        if let Some(a) = args.smtp {
            let l = bind(a).await?;
            eprintln!("ama: SMTP (STARTTLS required) on {}", l.local_addr()?);
            listeners.starttls = Some(l);
        }
        if let Some(a) = args.smtps {
            let l = bind(a).await?;
            eprintln!("ama: SMTP over TLS on {}", l.local_addr()?);
            listeners.implicit_tls = Some(l);
        }
        let http_listener = match http {
            Some(a) => {
                let l = bind(a).await?;
                ama_http::check_transport(l.local_addr()?, &http_transport)?;
                let local = l.local_addr()?;
                let scheme = if args.insecure_http { "http" } else { "https" };
                let host = if local.ip().is_loopback() {
                    format!("localhost:{}", local.port())
                } else {
                    local.to_string()
                };
                if args.insecure_http {
                    eprintln!(
                        "ama: HTTP API and search page on {local} (plain HTTP, loopback only)"
                    );
                } else {
                    eprintln!("ama: HTTPS API and search page on {local}");
                }
                if let Some(login) = &login {
                    print_login(&format!("{scheme}://{host}/"), login, g, args);
                }
                Some(l)
            }
            None => None,
        };
        let (stop_tx, stop_rx) = watch::channel(false);
        tokio::spawn(async move {
            shutdown_signal().await;
            let _ = stop_tx.send(true);
        });
        let stopped = |mut rx: watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        if let Some(every) = args.sweep_every.0 {
            tokio::spawn(crate::sweeper::run(archive.clone(), every, stop_rx.clone()));
        }
        // Tenants idle past their key lifetime (archives on a key service)
        // are closed, so their keys leave memory.
        {
            let archive = archive.clone();
            let mut stop = stop_rx.clone();
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        () = tokio::time::sleep(std::time::Duration::from_secs(30)) => {}
                        _ = stop.wait_for(|s| *s) => return,
                    }
                    let a = archive.clone();
                    let _ = tokio::task::spawn_blocking(move || a.expire_keys()).await;
                }
            });
        }
        let smtp = async {
            if listeners.starttls.is_some() || listeners.implicit_tls.is_some() {
                ama_smtp::serve(listeners, archive.clone(), config, stopped(stop_rx.clone()))
                    .await?;
            }
            anyhow::Ok(())
        };
        let web = async {
            if let Some(l) = http_listener {
                let spool = spool_dir.clone();
                let config = HttpConfig {
                    extra_metrics: Some(ExtraMetrics(Arc::new(move || spool_metrics(&spool)))),
                    ..HttpConfig::default()
                };
                ama_http::serve(
                    l,
                    http_transport,
                    archive.clone(),
                    config,
                    stopped(stop_rx.clone()),
                )
                .await?;
            }
            anyhow::Ok(())
        };
        tokio::try_join!(smtp, web)?;
        eprintln!("ama: stopped");
        anyhow::Ok(())
    })
}

async fn bind(a: std::net::SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(a)
        .await
        .with_context(|| format!("cannot listen on {a}"))
}

fn print_login(url: &str, login: &demo::Login, g: &Global, args: &ServeArgs) {
    let cert_note = if args.insecure_http || args.cert.is_some() {
        String::new()
    } else {
        format!(
            "\n  (the certificate is self-signed: your browser will warn once; API clients can \
             trust {})",
            g.data.join("smtp-selfsigned.pem").display()
        )
    };
    eprintln!(
        "\nama demo: open {url} and log in with\n  tenant:   {}\n  user:     {}\n  password: {}   \
         (a new one at every start of the demo){cert_note}\n",
        login.tenant, login.user, login.password
    );
}

/// The SMTP spool's depth for `/metrics`: messages accepted (`250`) but not
/// yet in the archive, and messages the archive refused (`spool/failed`).
/// Counts only; the entries' names are random queue ids.
fn spool_metrics(dir: &std::path::Path) -> String {
    let count = |d: &std::path::Path| {
        std::fs::read_dir(d).map_or(0, |it| {
            it.filter_map(Result::ok)
                .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
                .count()
        })
    };
    format!(
        "# HELP ama_smtp_spool_messages Messages accepted over SMTP and not yet archived.\n\
         # TYPE ama_smtp_spool_messages gauge\n\
         ama_smtp_spool_messages {}\n\
         # HELP ama_smtp_spool_failed_messages Spooled messages the archive refused.\n\
         # TYPE ama_smtp_spool_failed_messages gauge\n\
         ama_smtp_spool_failed_messages {}\n",
        count(dir),
        count(&dir.join("failed"))
    )
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
    eprintln!("ama: shutting down: finishing requests and sessions in flight, draining the spool");
}
