//! A real directory for tests: OpenLDAP `slapd` on a free loopback port,
//! with a throwaway configuration and database in a temporary directory,
//! seeded with [`slapadd`](https://www.openldap.org/software/man.cgi?query=slapadd),
//! and killed when dropped. Feature `testing`.
//!
//! `scripts/test` installs Debian's `slapd` and `ldap-utils`. [`Slapd::start`]
//! returns `None` when `/usr/sbin/slapd` (or `$AMA_SLAPD`) is absent, so a
//! test can print `SKIPPED: …` and return.
//!
//! The directory (suffix [`SUFFIX`]):
//!
//! | entry | password | groups (`ou=groups`) | addresses |
//! | --- | --- | --- | --- |
//! | `uid=alice,ou=people` | [`ALICE_PASSWORD`] | auditors, staff | `mail` alice@example.test; `proxyAddresses` SMTP:/smtp:/X500: |
//! | `uid=bob,ou=people` | [`BOB_PASSWORD`] | staff; admins (`groupOfUniqueNames`) | `mail` bob@example.test |
//! | `uid=carol,ou=people` | [`CAROL_PASSWORD`] | none | `mail` carol@example.test |
//! | `uid=twin,ou=people` and `uid=twin,ou=contractors` | [`TWIN_PASSWORD`] | none | — |
//! | `uid=smith\, jr,ou=people` | [`SMITH_PASSWORD`] | staff | `mail` smith@example.test |
//! | [`SERVICE_DN`] | [`SERVICE_PASSWORD`] | — | — |
//!
//! `auditors` and `staff` are `groupOfNames` and the `memberof` overlay keeps
//! the members' `memberOf` up to date on every change made over LDAP;
//! `admins` is a `groupOfUniqueNames`, found only by a group search. Only
//! bound users may read anything; passwords are for binding only.

use std::collections::HashSet;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ldap3::{LdapConn, Mod};

/// Base DN of the test directory.
pub const SUFFIX: &str = "dc=example,dc=test";
/// The directory's root DN (may change everything; its password is
/// [`Slapd::admin_password`], different for each server, so a test never
/// mistakes another test's server for its own).
pub const ADMIN_DN: &str = "cn=admin,dc=example,dc=test";
/// A service account for search-then-bind.
pub const SERVICE_DN: &str = "uid=ama-service,ou=services,dc=example,dc=test";
/// Its password.
pub const SERVICE_PASSWORD: &str = "service-secret-42";
/// alice's password.
pub const ALICE_PASSWORD: &str = "alice-directory-pw";
/// bob's password.
pub const BOB_PASSWORD: &str = "bob-directory-pw";
/// carol's password.
pub const CAROL_PASSWORD: &str = "carol-directory-pw";
/// The password of both `twin` entries.
pub const TWIN_PASSWORD: &str = "twin-directory-pw";
/// The password of `smith, jr`.
pub const SMITH_PASSWORD: &str = "smith-directory-pw";
/// People's DN template for [`ama_core::DirectoryBind::Template`].
pub const PEOPLE_TEMPLATE: &str = "uid={user},ou=people,dc=example,dc=test";
/// Where the groups are.
pub const GROUP_BASE: &str = "ou=groups,dc=example,dc=test";

/// The DN of a group under [`GROUP_BASE`].
pub fn group_dn(cn: &str) -> String {
    format!("cn={cn},{GROUP_BASE}")
}

/// The DN of a person under `ou=people`.
pub fn person_dn(uid: &str) -> String {
    format!("uid={},ou=people,{SUFFIX}", ldap3::dn_escape(uid))
}

/// The `slapd` binary: `$AMA_SLAPD` or `/usr/sbin/slapd`.
pub fn slapd_binary() -> Option<PathBuf> {
    let p = std::env::var_os("AMA_SLAPD")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/sbin/slapd"));
    p.is_file().then_some(p)
}

/// `slapadd` next to `slapd` (Debian links both to the same program).
fn slapadd_binary(slapd: &Path) -> PathBuf {
    let beside = slapd.with_file_name("slapadd");
    if beside.is_file() {
        beside
    } else {
        PathBuf::from("slapadd")
    }
}

/// Where Debian puts the schemas and modules.
const SCHEMA_DIR: &str = "/etc/ldap/schema";
const MODULE_DIR: &str = "/usr/lib/ldap";

/// A small schema of our own for Active Directory's `proxyAddresses`.
const AMA_SCHEMA: &str = "\
attributetype ( 1.3.6.1.4.1.55555.1.1 NAME 'proxyAddresses'
  EQUALITY caseIgnoreMatch SUBSTR caseIgnoreSubstringsMatch
  SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 )
objectclass ( 1.3.6.1.4.1.55555.2.1 NAME 'amaMailUser' SUP top AUXILIARY
  MAY proxyAddresses )
";

/// TLS material of a directory started with [`Slapd::start_tls`].
struct Tls {
    port: u16,
    ca_pem: String,
}

/// A running slapd.
pub struct Slapd {
    child: Option<Child>,
    dir: tempfile::TempDir,
    port: u16,
    tls: Option<Tls>,
    admin_password: String,
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("a free loopback port");
    l.local_addr().expect("local address").port()
}

fn seed_ldif() -> String {
    let person = |uid_rdn: &str, ou: &str, uid: &str, cn: &str, extra: &str, pw: &str| {
        format!(
            "dn: uid={uid_rdn},ou={ou},{SUFFIX}\nobjectClass: inetOrgPerson\nobjectClass: amaMailUser\n\
             uid: {uid}\ncn: {cn}\nsn: {cn}\n{extra}userPassword: {pw}\n\n"
        )
    };
    let mut s = String::new();
    s.push_str(&format!(
        "dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\ndc: example\no: Example\n\n"
    ));
    for ou in ["people", "contractors", "services", "groups"] {
        s.push_str(&format!(
            "dn: ou={ou},{SUFFIX}\nobjectClass: organizationalUnit\nou: {ou}\n\n"
        ));
    }
    let auditors = group_dn("auditors");
    let staff = group_dn("staff");
    s.push_str(&person(
        "alice",
        "people",
        "alice",
        "Alice Example",
        &format!(
            "displayName: Alice Example\nmail: alice@example.test\n\
             proxyAddresses: SMTP:Alice.Example@example.test\n\
             proxyAddresses: smtp:alice@old.example.test\n\
             proxyAddresses: X500:/o=Example/ou=people/cn=alice\n\
             memberOf: {auditors}\nmemberOf: {staff}\n"
        ),
        ALICE_PASSWORD,
    ));
    s.push_str(&person(
        "bob",
        "people",
        "bob",
        "Bob Builder",
        &format!("mail: bob@example.test\nmemberOf: {staff}\n"),
        BOB_PASSWORD,
    ));
    s.push_str(&person(
        "carol",
        "people",
        "carol",
        "Carol Nogroup",
        "mail: carol@example.test\n",
        CAROL_PASSWORD,
    ));
    s.push_str(&person(
        "twin",
        "people",
        "twin",
        "Twin One",
        "",
        TWIN_PASSWORD,
    ));
    s.push_str(&person(
        "twin",
        "contractors",
        "twin",
        "Twin Two",
        "",
        TWIN_PASSWORD,
    ));
    s.push_str(&person(
        "smith\\, jr",
        "people",
        "smith, jr",
        "Smith Junior",
        &format!("mail: smith@example.test\nmemberOf: {staff}\n"),
        SMITH_PASSWORD,
    ));
    s.push_str(&format!(
        "dn: {SERVICE_DN}\nobjectClass: inetOrgPerson\nuid: ama-service\ncn: ama service\n\
         sn: service\nuserPassword: {SERVICE_PASSWORD}\n\n"
    ));
    let alice = person_dn("alice");
    let bob = person_dn("bob");
    let smith = person_dn("smith, jr");
    s.push_str(&format!(
        "dn: {auditors}\nobjectClass: groupOfNames\ncn: auditors\nmember: {alice}\n\n\
         dn: {staff}\nobjectClass: groupOfNames\ncn: staff\nmember: {alice}\nmember: {bob}\n\
         member: {smith}\n\n\
         dn: {}\nobjectClass: groupOfUniqueNames\ncn: admins\nuniqueMember: {bob}\n\n",
        group_dn("admins")
    ));
    s
}

impl Slapd {
    /// Starts a directory on `ldap://127.0.0.1:PORT` (no TLS); `None` if
    /// slapd is not installed. Panics if it does not come up.
    pub fn start() -> Option<Slapd> {
        Self::start_with(false)
    }

    /// Starts a directory that also speaks TLS: `ldaps://127.0.0.1:PORT2`
    /// and StartTLS on the plain port, with a certificate for `127.0.0.1`
    /// and `localhost` signed by a fresh CA ([`Slapd::ca_pem`]).
    pub fn start_tls() -> Option<Slapd> {
        Self::start_with(true)
    }

    fn start_with(tls: bool) -> Option<Slapd> {
        let slapd = slapd_binary()?;
        let dir = tempfile::Builder::new()
            .prefix("ama-slapd-")
            .tempdir()
            .expect("temp dir for slapd");
        let d = dir.path();
        std::fs::create_dir(d.join("db")).expect("slapd db dir");
        std::fs::write(d.join("ama.schema"), AMA_SCHEMA).expect("schema");
        let admin_password = format!(
            "admin-{}",
            d.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        );
        let mut tls_conf = String::new();
        let tls = tls.then(|| {
            let (ca_pem, cert_pem, key_pem) = certificates();
            std::fs::write(d.join("ca.pem"), &ca_pem).expect("ca.pem");
            std::fs::write(d.join("server.pem"), &cert_pem).expect("server.pem");
            std::fs::write(d.join("server.key"), &key_pem).expect("server.key");
            tls_conf = format!(
                "TLSCACertificateFile {0}/ca.pem\nTLSCertificateFile {0}/server.pem\n\
                 TLSCertificateKeyFile {0}/server.key\n",
                d.display()
            );
            Tls {
                port: free_port(),
                ca_pem,
            }
        });
        let conf = format!(
            "include {SCHEMA_DIR}/core.schema\ninclude {SCHEMA_DIR}/cosine.schema\n\
             include {SCHEMA_DIR}/inetorgperson.schema\ninclude {dir}/ama.schema\n\
             modulepath {MODULE_DIR}\nmoduleload back_mdb\nmoduleload memberof\n\
             pidfile {dir}/slapd.pid\nargsfile {dir}/slapd.args\n{tls_conf}\
             database mdb\nsuffix \"{SUFFIX}\"\nrootdn \"{ADMIN_DN}\"\nrootpw {admin_password}\n\
             directory {dir}/db\nmaxsize 16777216\noverlay memberof\n\
             access to attrs=userPassword by self write by anonymous auth by * none\n\
             access to * by users read by * none\n",
            dir = d.display()
        );
        std::fs::write(d.join("slapd.conf"), conf).expect("slapd.conf");
        std::fs::write(d.join("seed.ldif"), seed_ldif()).expect("seed.ldif");
        let out = Command::new(slapadd_binary(&slapd))
            .arg("-f")
            .arg(d.join("slapd.conf"))
            .arg("-l")
            .arg(d.join("seed.ldif"))
            .stdin(Stdio::null())
            .output()
            .expect("run slapadd");
        assert!(
            out.status.success(),
            "slapadd failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut s = Slapd {
            child: None,
            dir,
            port: free_port(),
            tls,
            admin_password,
        };
        // A port picked as free may be taken before slapd binds it: then
        // slapd exits, and we try again on other ports.
        for attempt in 1.. {
            match s.spawn(&slapd) {
                Ok(()) => break,
                Err(e) if attempt >= 3 => panic!("{e}"),
                Err(_) => {
                    s.port = free_port();
                    if let Some(t) = &mut s.tls {
                        t.port = free_port();
                    }
                }
            }
        }
        Some(s)
    }

    fn spawn(&mut self, slapd: &Path) -> Result<(), String> {
        let d = self.dir.path();
        let mut listen = format!("ldap://127.0.0.1:{}/", self.port);
        if let Some(t) = &self.tls {
            listen.push_str(&format!(" ldaps://127.0.0.1:{}/", t.port));
        }
        let log = std::fs::File::create(d.join("slapd.log")).expect("slapd log");
        // `-d 0`: stay in the foreground (no fork), so the child is slapd
        // itself and dropping kills it.
        let child = Command::new(slapd)
            .arg("-f")
            .arg(d.join("slapd.conf"))
            .arg("-h")
            .arg(&listen)
            .args(["-d", "0"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("slapd log"))
            .stderr(log)
            .spawn()
            .expect("start slapd");
        self.child = Some(child);
        self.wait_ready()
    }

    /// Ok once the admin can bind; Err if slapd exited.
    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let up = LdapConn::new(&self.url())
                .and_then(|mut c| c.simple_bind(ADMIN_DN, &self.admin_password))
                .is_ok_and(|r| r.rc == 0);
            if up {
                return Ok(());
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                return Err(format!("slapd exited ({status}):\n{}", self.log_tail()));
            }
            if Instant::now() > deadline {
                panic!("slapd did not come up in 20 s:\n{}", self.log_tail());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("slapd.log")).unwrap_or_default();
        let mut lines: Vec<&str> = log.lines().rev().take(30).collect();
        lines.reverse();
        lines.join("\n")
    }

    /// The password of [`ADMIN_DN`] on this server.
    pub fn admin_password(&self) -> &str {
        &self.admin_password
    }

    /// `ldap://127.0.0.1:PORT` (plain; StartTLS too with [`Slapd::start_tls`]).
    pub fn url(&self) -> String {
        format!("ldap://127.0.0.1:{}", self.port)
    }

    /// `ldaps://127.0.0.1:PORT2` of a directory started with [`Slapd::start_tls`].
    pub fn ldaps_url(&self) -> Option<String> {
        self.tls
            .as_ref()
            .map(|t| format!("ldaps://127.0.0.1:{}", t.port))
    }

    /// The PEM of the CA that signed the server certificate ([`Slapd::start_tls`]).
    pub fn ca_pem(&self) -> Option<&str> {
        self.tls.as_ref().map(|t| t.ca_pem.as_str())
    }

    fn admin(&self) -> LdapConn {
        let mut c = LdapConn::new(&self.url()).expect("connect to slapd");
        let r = c
            .simple_bind(ADMIN_DN, &self.admin_password)
            .expect("admin bind");
        assert_eq!(r.rc, 0, "admin bind: {r}");
        c
    }

    /// Adds `member_dn` to the `groupOfNames` `cn=group` (as the admin, over
    /// LDAP, so `memberOf` follows).
    pub fn add_member(&self, group: &str, member_dn: &str) {
        let r = self
            .admin()
            .modify(
                &group_dn(group),
                vec![Mod::Add("member", HashSet::from([member_dn]))],
            )
            .expect("modify group");
        assert_eq!(r.rc, 0, "add member: {r}");
    }

    /// Removes `member_dn` from the `groupOfNames` `cn=group`.
    pub fn remove_member(&self, group: &str, member_dn: &str) {
        let r = self
            .admin()
            .modify(
                &group_dn(group),
                vec![Mod::Delete("member", HashSet::from([member_dn]))],
            )
            .expect("modify group");
        assert_eq!(r.rc, 0, "remove member: {r}");
    }

    /// Replaces the password of the entry `dn`.
    pub fn set_password(&self, dn: &str, password: &str) {
        let r = self
            .admin()
            .modify(
                dn,
                vec![Mod::Replace("userPassword", HashSet::from([password]))],
            )
            .expect("modify password");
        assert_eq!(r.rc, 0, "set password: {r}");
    }

    /// Kills the server (SIGKILL): a directory that is suddenly down.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A CA and a server certificate for `127.0.0.1` and `localhost` signed
/// by it: (CA PEM, server certificate PEM, server key PEM).
fn certificates() -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
    let mut p = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name
        .push(DnType::CommonName, "ama test directory CA");
    let ca = CertifiedIssuer::self_signed(p, KeyPair::generate().expect("CA key")).expect("CA");
    let mut p = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
        .expect("server params");
    p.distinguished_name.push(DnType::CommonName, "127.0.0.1");
    let key = KeyPair::generate().expect("server key");
    let cert = p.signed_by(&key, &ca).expect("server certificate");
    (ca.pem(), cert.pem(), key.serialize_pem())
}
