//! The IMAP side of `ama restore`: the target URL, the connection (TLS, or
//! plain TCP to loopback only), login, the folder, and APPEND.
//!
//! The client is [`async_imap`] on a current-thread tokio runtime owned by
//! [`ImapTarget`]; the engine's export drives it synchronously, one APPEND
//! per message ([`ImapTarget::append`] blocks on the runtime). Nothing of the
//! IMAP client reaches ama-core, which stays free of tokio.
//!
//! Security rules:
//!
//! * `imaps://` (TLS from the first byte) to any host, verified against the
//!   system's trust store and, with `--imap-ca`, an extra CA; `imap://`
//!   (no TLS) only to a loopback address, so a password never crosses a
//!   network in the clear.
//! * The password comes from the environment variable `AMA_IMAP_PASSWORD`,
//!   never from the command line or the URL (a URL with a password is
//!   refused), so it is not in `ps` output or shell history. The URL shown
//!   in output and recorded in the audit log has no password.

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use zeroize::Zeroizing;

use crate::Usage;

/// The environment variable holding the IMAP password.
pub const PASSWORD_ENV: &str = "AMA_IMAP_PASSWORD";

/// A parsed `imaps://user@host:port/Folder` (or loopback `imap://`) URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImapUrl {
    /// TLS from the first byte (`imaps`).
    pub tls: bool,
    /// Host name or address, as written (IPv6 without brackets).
    pub host: String,
    /// Port (default 993 for imaps, 143 for imap).
    pub port: u16,
    /// Login name, percent-decoded.
    pub user: String,
    /// Folder, percent-decoded (`INBOX` when the path is empty).
    pub folder: String,
}

impl std::fmt::Display for ImapUrl {
    /// The URL without any secret, for output and the audit log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        write!(
            f,
            "{}://{}@{host}:{}/{}",
            if self.tls { "imaps" } else { "imap" },
            self.user,
            self.port,
            self.folder
        )
    }
}

/// Whether `host` is a loopback address (or `localhost`).
fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback() || ip.to_canonical().is_loopback())
}

fn decode(part: &str, what: &str) -> anyhow::Result<String> {
    percent_encoding::percent_decode_str(part)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| {
            Usage(format!(
                "the IMAP URL's {what} is not UTF-8 after percent-decoding"
            ))
            .into()
        })
}

impl std::str::FromStr for ImapUrl {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> anyhow::Result<Self> {
        let bad = |why: &str| -> anyhow::Error {
            Usage(format!(
                "invalid IMAP URL: {why} (expected imaps://USER@HOST[:PORT]/FOLDER)"
            ))
            .into()
        };
        let url = url::Url::parse(s).map_err(|e| bad(&e.to_string()))?;
        let tls = match url.scheme() {
            "imaps" => true,
            "imap" => false,
            other => return Err(bad(&format!("scheme {other:?} is not imaps or imap"))),
        };
        if url.password().is_some() {
            return Err(Usage(format!(
                "do not put the password in the IMAP URL (it would show in `ps` and the shell history); set {PASSWORD_ENV}"
            ))
            .into());
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(bad("a query or fragment is not supported"));
        }
        let host = match url.host() {
            Some(url::Host::Domain(d)) => d.to_string(),
            Some(url::Host::Ipv4(ip)) => ip.to_string(),
            Some(url::Host::Ipv6(ip)) => ip.to_string(),
            None => return Err(bad("no host")),
        };
        if url.username().is_empty() {
            return Err(bad("no user name"));
        }
        let user = decode(url.username(), "user name")?;
        let folder = decode(url.path().trim_start_matches('/'), "folder")?;
        let folder = if folder.is_empty() {
            "INBOX".to_string()
        } else {
            folder
        };
        if folder.contains(['\r', '\n', '\0']) {
            return Err(bad("the folder name contains a line break or NUL"));
        }
        if !tls && !is_loopback(&host) {
            return Err(Usage(format!(
                "imap:// (without TLS) is only allowed to a loopback address, not {host}: use imaps://"
            ))
            .into());
        }
        let port = url.port().unwrap_or(if tls { 993 } else { 143 });
        Ok(ImapUrl {
            tls,
            host,
            port,
            user,
            folder,
        })
    }
}

/// A folder name in IMAP's modified UTF-7 (RFC 3501 section 5.1.3): ASCII
/// stays (`&` becomes `&-`), other characters are UTF-16 in a modified
/// base64 between `&` and `-`.
pub fn mutf7(name: &str) -> String {
    const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";
    fn flush(out: &mut String, units: &mut Vec<u16>) {
        if units.is_empty() {
            return;
        }
        let bytes: Vec<u8> = units.iter().flat_map(|u| u.to_be_bytes()).collect();
        out.push('&');
        for chunk in bytes.chunks(3) {
            let b = [
                chunk[0],
                chunk.get(1).copied().unwrap_or(0),
                chunk.get(2).copied().unwrap_or(0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            let chars = chunk.len() + 1;
            for i in 0..chars {
                out.push(B64[((n >> (18 - 6 * i)) & 63) as usize] as char);
            }
        }
        out.push('-');
        units.clear();
    }
    let mut out = String::with_capacity(name.len());
    let mut units = Vec::new();
    for c in name.chars() {
        if (' '..='~').contains(&c) {
            flush(&mut out, &mut units);
            if c == '&' {
                out.push_str("&-");
            } else {
                out.push(c);
            }
        } else {
            let mut buf = [0u16; 2];
            units.extend_from_slice(c.encode_utf16(&mut buf));
        }
    }
    flush(&mut out, &mut units);
    out
}

/// The password from [`PASSWORD_ENV`], wiped from memory when dropped.
pub fn password() -> anyhow::Result<Zeroizing<String>> {
    match std::env::var(PASSWORD_ENV) {
        Ok(p) if !p.is_empty() => Ok(Zeroizing::new(p)),
        Err(std::env::VarError::NotUnicode(_)) => bail!("{PASSWORD_ENV} is not valid UTF-8"),
        _ => Err(Usage(format!(
            "no IMAP password: set the environment variable {PASSWORD_ENV}"
        ))
        .into()),
    }
}

/// A TCP (loopback only) or TLS connection to the server.
type Conn = tokio_util::either::Either<TcpStream, Box<tokio_rustls::client::TlsStream<TcpStream>>>;

/// The TLS client settings: the system's trust store plus `extra_ca`.
fn tls_config(extra_ca: Option<&Path>) -> anyhow::Result<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for cert in native.certs {
        // A malformed system certificate is skipped, as browsers do.
        let _ = roots.add(cert);
    }
    if let Some(path) = extra_ca {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
            .with_context(|| format!("cannot read CA file {}", path.display()))?
            .collect::<Result<_, _>>()
            .with_context(|| format!("CA file {} is not PEM", path.display()))?;
        if certs.is_empty() {
            bail!("CA file {} holds no certificate", path.display());
        }
        for cert in certs {
            roots
                .add(cert)
                .with_context(|| format!("CA file {}: unusable certificate", path.display()))?;
        }
    }
    if roots.is_empty() {
        bail!("no trusted CA certificates: the system store is empty; pass --imap-ca FILE");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// An open, logged-in IMAP session whose folder exists.
pub struct ImapTarget {
    rt: tokio::runtime::Runtime,
    session: async_imap::Session<Conn>,
    folder: String,
    /// Whether the folder was created by this run.
    pub created: bool,
}

impl std::fmt::Debug for ImapTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImapTarget")
            .field("folder", &self.folder)
            .finish_non_exhaustive()
    }
}

impl ImapTarget {
    /// Connects, logs in and makes sure the folder exists (creating it if
    /// it does not).
    pub fn connect(url: &ImapUrl, password: &str, extra_ca: Option<&Path>) -> anyhow::Result<Self> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the IMAP client runtime")?;
        let tls = if url.tls {
            Some(tokio_rustls::TlsConnector::from(Arc::new(tls_config(
                extra_ca,
            )?)))
        } else {
            None
        };
        let server_name = ServerName::try_from(url.host.clone())
            .map_err(|_| Usage(format!("invalid IMAP host name {:?}", url.host)))?;
        let folder = mutf7(&url.folder);
        let (session, created) = rt.block_on(async {
            let tcp = tokio::time::timeout(
                std::time::Duration::from_secs(30),
                TcpStream::connect((url.host.as_str(), url.port)),
            )
            .await
            .map_err(|_| anyhow::anyhow!("timed out"))
            .and_then(|r| r.map_err(anyhow::Error::from))
            .with_context(|| format!("cannot connect to {}:{}", url.host, url.port))?;
            let conn = match tls {
                Some(tls) => {
                    Conn::Right(Box::new(tls.connect(server_name, tcp).await.with_context(
                        || format!("TLS handshake with {} failed", url.host),
                    )?))
                }
                None => Conn::Left(tcp),
            };
            let mut client = async_imap::Client::new(conn);
            match client.read_response().await {
                Ok(Some(_greeting)) => {}
                Ok(None) => bail!("the IMAP server closed the connection before its greeting"),
                Err(e) => return Err(e).context("cannot read the IMAP greeting"),
            }
            let mut session = client
                .login(&url.user, password)
                .await
                .map_err(|(e, _)| e)
                .with_context(|| format!("IMAP login as {:?} failed", url.user))?;
            let created = match session.status(&folder, "(MESSAGES)").await {
                Ok(_) => false,
                Err(async_imap::error::Error::No(_)) => {
                    session
                        .create(&folder)
                        .await
                        .with_context(|| format!("cannot create IMAP folder {:?}", url.folder))?;
                    true
                }
                Err(e) => {
                    return Err(e).with_context(|| format!("IMAP folder {:?}", url.folder));
                }
            };
            Ok::<_, anyhow::Error>((session, created))
        })?;
        Ok(ImapTarget {
            rt,
            session,
            folder,
            created,
        })
    }

    /// Appends one message: its exact bytes as a literal, with `date` (Unix
    /// seconds, UTC) as its INTERNALDATE when it is a plausible date.
    pub fn append(
        &mut self,
        raw: &[u8],
        date: Option<i64>,
    ) -> Result<(), async_imap::error::Error> {
        let internal = date.and_then(internaldate);
        let folder = &self.folder;
        let session = &mut self.session;
        self.rt
            .block_on(session.append(folder, None, internal.as_deref(), raw))
    }

    /// Logs out (best effort: the messages are appended already).
    pub fn logout(mut self) {
        let session = &mut self.session;
        let _ = self.rt.block_on(session.logout());
    }
}

/// An IMAP date-time (`"03-Oct-2024 10:30:00 +0000"`), for years 1970-9999.
pub fn internaldate(unix: i64) -> Option<String> {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let t = time::OffsetDateTime::from_unix_timestamp(unix).ok()?;
    if !(1970..=9999).contains(&t.year()) {
        return None;
    }
    Some(format!(
        "\"{:02}-{}-{} {:02}:{:02}:{:02} +0000\"",
        t.day(),
        MONTHS[usize::from(u8::from(t.month())) - 1],
        t.year(),
        t.hour(),
        t.minute(),
        t.second()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> anyhow::Result<ImapUrl> {
        s.parse()
    }

    #[test]
    fn urls_parse_with_defaults_and_decoding() {
        let u = parse("imaps://alice%40acme.test@mail.acme.test/Restored%20mail").unwrap();
        assert_eq!(
            u,
            ImapUrl {
                tls: true,
                host: "mail.acme.test".into(),
                port: 993,
                user: "alice@acme.test".into(),
                folder: "Restored mail".into(),
            }
        );
        assert_eq!(
            u.to_string(),
            "imaps://alice@acme.test@mail.acme.test:993/Restored mail"
        );
        let u = parse("imap://bob@127.0.0.1:1143").unwrap();
        assert_eq!((u.port, u.folder.as_str(), u.tls), (1143, "INBOX", false));
        let u = parse("imap://bob@[::1]:1143/X").unwrap();
        assert_eq!(u.host, "::1");
        assert_eq!(u.to_string(), "imap://bob@[::1]:1143/X");
        assert!(parse("imap://bob@localhost/INBOX").is_ok());
    }

    #[test]
    fn plain_imap_only_to_loopback_and_no_password_in_the_url() {
        for bad in [
            "imap://bob@mail.example.com/INBOX",
            "imap://bob@10.0.0.1/INBOX",
            "imaps://bob:secret@mail.example.com/INBOX",
            "imaps://mail.example.com/INBOX",
            "https://bob@mail.example.com/",
            "imaps://bob@mail.example.com/INBOX?x=1",
            "imaps://bob@mail.example.com/a%0Db",
            "not a url",
        ] {
            let e = parse(bad).unwrap_err();
            assert!(e.is::<Usage>(), "{bad}: {e}");
        }
        let e = parse("imaps://bob:secret@mail.example.com/INBOX").unwrap_err();
        assert!(!e.to_string().contains("secret"));
        assert!(e.to_string().contains(PASSWORD_ENV));
    }

    #[test]
    fn folder_names_in_modified_utf7() {
        // Examples from RFC 3501 section 5.1.3 and common folders.
        assert_eq!(mutf7("INBOX"), "INBOX");
        assert_eq!(mutf7("A & B"), "A &- B");
        assert_eq!(mutf7("Entwürfe"), "Entw&APw-rfe");
        assert_eq!(
            mutf7("~peter/mail/台北/日本語"),
            "~peter/mail/&U,BTFw-/&ZeVnLIqe-"
        );
        assert_eq!(mutf7("Gelöschte Elemente"), "Gel&APY-schte Elemente");
    }

    #[test]
    fn internaldates() {
        assert_eq!(
            internaldate(1_727_951_400).unwrap(),
            "\"03-Oct-2024 10:30:00 +0000\""
        );
        assert!(internaldate(-1).is_none());
        assert!(internaldate(i64::MAX).is_none());
    }
}
