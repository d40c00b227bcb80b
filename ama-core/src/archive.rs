//! [`Archive`]: the engine's one entry point. It ties the catalog, the key
//! service, the blob store and the per-tenant indexes together and owns the
//! ingest path and the read path.
//!
//! Ingest, for a batch of messages of one tenant:
//!
//! 1. check and parse each message (refusals are per message);
//! 2. SHA-256 for proofs, HMAC(tenant dedup key) for dedup;
//! 3. for each new message: fresh data key, zstd, AES-256-GCM (AAD binds
//!    tenant and message id), all blobs written durably in one `put_many`;
//! 4. one catalog transaction: new records, dedup entries, merged envelopes
//!    of duplicates, counters, "pending index" marks; on write-once storage
//!    ([`crate::store::BlobStore::object_lock`]) each
//!    blob is locked until its retain-until just before the commit;
//!    committed with fsync — from here on the messages exist;
//! 5. the tenant index adds them and commits; then the pending marks are
//!    cleared. A crash between 4 and 5 is repaired when the tenant is next
//!    opened (pending entries are indexed again).
//!
//! Blobs written in step 3 for a batch whose commit fails are unreferenced
//! and harmless (ciphertext under a key that was never stored).
//!
//! Every call that reads mail content or changes state writes exactly one
//! entry to the tenant's audit log ([`crate::audit`]): changes in the same
//! catalog transaction, reads right after the read.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::access::Principal;
use crate::audit::{AuditAction, AuditActor, Frontend, Outcome};
use crate::catalog::{self, Catalog, MessageRecord, TenantRecord, TenantStats};
use crate::crypto::{self, SecretKey};
use crate::error::{CryptoError, Error, IngestError, Result, TenantError};
use crate::identity::{IdentityOptions, IdentityRuntime};
use crate::index::{Sort, TenantIndex};
use crate::keys::{KdfParams, KeyService, LocalKeyStore, Unlock};
use crate::message::{Delivery, Envelope, MessageId, MessageInfo, MessageMeta, Receipt};
use crate::parse::{self, MessageText};
use crate::store::{BlobKey, BlobStore, LocalStore};
use crate::tenant::{Tenant, TenantId, TenantSpec, normalize_domain};

mod stores;
pub use stores::RepairOptions;

/// Largest page a search returns.
pub const MAX_PAGE: usize = 10_000;
/// Deepest page offset a search accepts (deeper paging means a narrower query).
pub const MAX_OFFSET: usize = 1_000_000;
/// Threads that parse and encrypt one batch.
const PREP_THREADS: usize = 4;
/// Pending index entries are processed in chunks of this many messages.
const REINDEX_CHUNK: usize = 500;

/// Settings of an open archive.
#[derive(Debug, Clone)]
pub struct ArchiveOptions {
    /// Largest message accepted, in bytes (default 64 MiB).
    pub max_message_size: u64,
    /// argon2id cost for a new passphrase key store.
    pub kdf: KdfParams,
    /// Decrypted index blocks cached per open tenant, in bytes (default 32 MiB).
    pub index_cache_bytes: usize,
    /// Login, lockout and session rules.
    pub identity: IdentityOptions,
    /// Whether the audit entry of a read (search, view, download) is on
    /// disk (fsync) before the read's result is returned (default). Turning
    /// it off makes reads cheaper; entries of the last moments before a
    /// crash may then be lost (never entries of changes, which commit with
    /// the change).
    pub durable_read_audit: bool,
    /// Where the local key store file is (default `keys/keystore.json` in
    /// the data directory). Keep it outside the data directory (another
    /// disk, a secrets mount) so that a copy of the data directory alone
    /// holds no tenant KEK: after `tenant destroy` such a copy is unreadable.
    pub keystore: Option<PathBuf>,
    /// How long a tenant's keys stay in memory after they were unwrapped
    /// (with a remote key service: fetched). `None` (the default) keeps them
    /// while the archive is open. With a limit, a tenant whose keys are
    /// older is closed at its next use, or by [`Archive::expire_keys`], once
    /// no call is using it, and the next use asks the key service again;
    /// its derived keys are zeroized on drop.
    pub key_ttl: Option<Duration>,
    /// Train a tenant's zstd dictionary once it holds this many messages
    /// (default 1,000; `None`: never). Later blobs of the tenant are
    /// compressed with it: about a quarter smaller on typical mail
    /// ([`crate::dictionary`]).
    pub dictionary_after: Option<u64>,
}

impl Default for ArchiveOptions {
    fn default() -> Self {
        ArchiveOptions {
            max_message_size: 64 * 1024 * 1024,
            kdf: KdfParams::default(),
            index_cache_bytes: 32 * 1024 * 1024,
            identity: IdentityOptions::default(),
            durable_read_audit: true,
            keystore: None,
            key_ttl: None,
            dictionary_after: Some(1_000),
        }
    }
}

impl ArchiveOptions {
    /// The key store file for the archive in `dir`.
    pub fn keystore_path(&self, dir: &Path) -> PathBuf {
        self.keystore
            .clone()
            .unwrap_or_else(|| LocalKeyStore::path_in(dir))
    }
}

/// Options of a search.
#[derive(Debug, Clone)]
pub struct SearchOptions {
    /// Page size (at least 1; default 50).
    pub limit: usize,
    /// Hits to skip (paging).
    pub offset: usize,
    /// Order.
    pub sort: Sort,
}

impl Default for SearchOptions {
    fn default() -> Self {
        SearchOptions {
            limit: 50,
            offset: 0,
            sort: Sort::Newest,
        }
    }
}

/// One page of search results.
#[derive(Debug, Clone)]
pub struct SearchResults {
    /// How many messages match in total (for this principal).
    pub total: usize,
    /// This page, in the requested order.
    pub hits: Vec<MessageInfo>,
}

/// What is sealed in a catalog message record.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct SealedMessage {
    sha256: [u8; 32],
    meta: MessageMeta,
    deliveries: Vec<Delivery>,
}

/// A tenant's keys, derived from its tenant key when the tenant is opened.
pub(crate) struct TenantKeys {
    pub(crate) catalog: SecretKey,
    pub(crate) dedup: SecretKey,
    pub(crate) message_keys: SecretKey,
    pub(crate) spool: SecretKey,
    pub(crate) audit: SecretKey,
    pub(crate) identity: SecretKey,
}

impl TenantKeys {
    pub(crate) fn derive(tk: &SecretKey) -> Self {
        TenantKeys {
            catalog: tk.derive("catalog"),
            dedup: tk.derive("dedup"),
            message_keys: tk.derive("message-keys"),
            spool: tk.derive("spool"),
            audit: tk.derive("audit"),
            identity: tk.derive("identity"),
        }
    }
}

/// An open tenant: its record, keys and index.
pub(crate) struct TenantState {
    /// When its key was unwrapped (see [`ArchiveOptions::key_ttl`]).
    pub(crate) opened: Instant,
    pub(crate) record: TenantRecord,
    pub(crate) keys: TenantKeys,
    pub(crate) index: TenantIndex,
    /// Its zstd dictionaries.
    pub(crate) dictionaries: crate::dictionary::Dictionaries,
}

/// An open archive: a data directory, its key service and blob store.
/// `Send + Sync`: share it behind an `Arc` between threads.
pub struct Archive {
    dir: PathBuf,
    catalog: Catalog,
    keys: Arc<dyn KeyService>,
    /// The local key store, when the archive was opened with one (for
    /// `rotate-master`); `None` with another key service.
    local_keys: Option<Arc<LocalKeyStore>>,
    store: Arc<dyn BlobStore>,
    options: ArchiveOptions,
    tenants: RwLock<HashMap<TenantId, Arc<TenantState>>>,
    /// Serialises opening a tenant (unwrapping its key, opening its index).
    opening: Mutex<()>,
    /// Every tenant's settings, for domain routing; cleared when they change.
    tenant_cache: RwLock<Option<Arc<Vec<Tenant>>>>,
    /// Login state kept in memory (per-source failures, directory connector).
    identity: IdentityRuntime,
}

impl std::fmt::Debug for Archive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Archive")
            .field("dir", &self.dir)
            .field("store", &self.store.describe())
            .finish_non_exhaustive()
    }
}

fn aad(kind: &str, tenant: &TenantId, id: MessageId) -> Vec<u8> {
    format!("ama/{kind}/v1|{tenant}|{id}").into_bytes()
}

fn spool_aad(tenant: &TenantId, entry: &str) -> Vec<u8> {
    format!("ama/spool/v1|{tenant}|{entry}").into_bytes()
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.display().to_string(),
        source,
    }
}

impl Archive {
    /// Creates a new archive in `dir` (created if missing; must not already
    /// hold an archive) with a local key store unlocked by `unlock`.
    pub fn create(dir: impl AsRef<Path>, unlock: &Unlock, options: ArchiveOptions) -> Result<Self> {
        let dir = dir.as_ref();
        let ks_path = options.keystore_path(dir);
        if ks_path.exists() || dir.join("catalog.redb").exists() {
            return Err(Error::DataDir {
                path: dir.display().to_string(),
                reason: format!(
                    "already holds an archive (or key store {} exists)",
                    ks_path.display()
                ),
            });
        }
        if let Unlock::Passphrase(p) = unlock {
            // Checked before anything is created, so a refused passphrase leaves no trace.
            if p.chars().count() < crate::keys::MIN_PASSPHRASE_CHARS {
                return Err(crate::KeyError::WeakPassphrase {
                    min: crate::keys::MIN_PASSPHRASE_CHARS,
                }
                .into());
            }
        }
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let ks = Arc::new(LocalKeyStore::create(&ks_path, unlock, options.kdf)?);
        let store = LocalStore::open(dir.join("blobs"))?;
        let mut archive = Self::open_with(dir, ks.clone(), Arc::new(store), options)?;
        archive.local_keys = Some(ks);
        Ok(archive)
    }

    /// Opens the archive in `dir` with its local key store.
    pub fn open(dir: impl AsRef<Path>, unlock: &Unlock, options: ArchiveOptions) -> Result<Self> {
        let dir = dir.as_ref();
        let ks_path = options.keystore_path(dir);
        if !ks_path.exists() {
            return Err(Error::DataDir {
                path: dir.display().to_string(),
                reason: format!(
                    "not an ama archive, or its key store is elsewhere (no {}; run `ama init` first)",
                    ks_path.display()
                ),
            });
        }
        if dir.join("stores.json").exists() {
            // Writing to DATA/blobs would split the archive across stores.
            return Err(Error::DataDir {
                path: dir.display().to_string(),
                reason: "its blobs live in the stores of stores.json; open it with them \
                         (Archive::open_with_store, ama_store_s3::config)"
                    .into(),
            });
        }
        let ks = Arc::new(LocalKeyStore::open(&ks_path, unlock)?);
        let store = LocalStore::open(dir.join("blobs"))?;
        let mut archive = Self::open_with(dir, ks.clone(), Arc::new(store), options)?;
        archive.local_keys = Some(ks);
        Ok(archive)
    }

    /// Creates a new archive in `dir` whose tenant keys are wrapped by
    /// `keys` (a remote key service, say): no key store is written, so the
    /// data directory never holds anything that derives a master key.
    /// Refuses a directory that already holds an archive.
    pub fn create_with(
        dir: impl AsRef<Path>,
        keys: Arc<dyn KeyService>,
        store: Arc<dyn BlobStore>,
        options: ArchiveOptions,
    ) -> Result<Self> {
        let dir = dir.as_ref();
        if LocalKeyStore::path_in(dir).exists() || dir.join("catalog.redb").exists() {
            return Err(Error::DataDir {
                path: dir.display().to_string(),
                reason: "already holds an archive".into(),
            });
        }
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        Self::open_with(dir, keys, store, options)
    }

    /// Opens (or initialises) the catalog and indexes in `dir` with any key
    /// service and blob store: the embedding entry point.
    pub fn open_with(
        dir: impl AsRef<Path>,
        keys: Arc<dyn KeyService>,
        store: Arc<dyn BlobStore>,
        options: ArchiveOptions,
    ) -> Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        std::fs::create_dir_all(dir.join("index")).map_err(io_err(&dir))?;
        // The catalog's lock makes this process the archive's one writer;
        // only then may the store clear what interrupted writes left.
        let catalog = Catalog::open(&dir.join("catalog.redb"))?;
        store.recover()?;
        let archive = Archive {
            dir,
            catalog,
            keys,
            local_keys: None,
            store,
            options,
            tenants: RwLock::new(HashMap::new()),
            opening: Mutex::new(()),
            tenant_cache: RwLock::new(None),
            identity: IdentityRuntime::default(),
        };
        // Bring every index up to date with what the catalog committed.
        if archive.catalog.read()?.pending_index_len()? > 0 {
            for t in archive.catalog.read()?.tenants()? {
                match archive.state(&t.tenant.id) {
                    // Leftovers of an interrupted `destroy_tenant`.
                    Err(Error::Key(crate::KeyError::TenantDestroyed(_))) => {}
                    r => {
                        r?;
                    }
                }
            }
        }
        Ok(archive)
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.dir
    }

    /// The options in force.
    pub fn options(&self) -> &ArchiveOptions {
        &self.options
    }

    /// The key service wrapping the tenant keys.
    pub fn key_service(&self) -> &Arc<dyn KeyService> {
        &self.keys
    }

    /// The local key store, when the archive was opened with one
    /// ([`Archive::open`], [`Archive::create`], [`Archive::open_with_store`]).
    pub fn local_key_store(&self) -> Option<&Arc<LocalKeyStore>> {
        self.local_keys.as_ref()
    }

    /// Digest of the catalog's contents ([`Catalog::content_digest`]), for
    /// tests that compare a restored archive with the state it came from.
    #[doc(hidden)]
    pub fn catalog_digest(&self) -> Result<[u8; 32]> {
        self.catalog.content_digest()
    }

    pub(crate) fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    pub(crate) fn store(&self) -> &dyn BlobStore {
        self.store.as_ref()
    }

    /// The metadata of a message record, unsealed.
    pub(crate) fn info_of(
        &self,
        state: &TenantState,
        id: MessageId,
        rec: &MessageRecord,
    ) -> Result<MessageInfo> {
        Ok(info(id, self.unseal(state, id, rec)?))
    }

    /// The raw bytes of a message record, authenticated.
    pub(crate) fn read_blob_of(
        &self,
        state: &TenantState,
        id: MessageId,
        rec: &MessageRecord,
        info: &MessageInfo,
    ) -> Result<Vec<u8>> {
        self.read_blob(state, id, rec, &info.sha256, info.meta.size)
    }

    pub(crate) fn identity_runtime(&self) -> &IdentityRuntime {
        &self.identity
    }

    // ----- tenants -------------------------------------------------------

    /// Creates a tenant with a fresh random key.
    pub fn create_tenant(&self, spec: TenantSpec) -> Result<Tenant> {
        let domains = spec
            .domains
            .iter()
            .map(|d| normalize_domain(d))
            .collect::<Result<Vec<_>, _>>()?;
        let name = spec
            .name
            .filter(|n| !n.trim().is_empty())
            .unwrap_or_else(|| spec.id.to_string());
        if name.chars().count() > 200 {
            return Err(
                TenantError::InvalidSetting("name longer than 200 characters".into()).into(),
            );
        }
        let tenant = Tenant {
            id: spec.id.clone(),
            name,
            region: spec.region,
            domains,
            retention: spec.retention,
            created_at: OffsetDateTime::now_utc().unix_timestamp(),
        };
        crate::store::check_region(&*self.store, &spec.id, &tenant.region)?;
        crate::keys::check_region(&*self.keys, &spec.id, &tenant.region)?;
        let key = SecretKey::generate()?;
        let wrapped_key = self.keys.wrap_tenant_key(&spec.id, &key)?;
        let mut sid = [0u8; 16];
        crypto::random_fill(&mut sid)?;
        let record = TenantRecord {
            tenant: tenant.clone(),
            storage_id: crypto::hex(&sid),
            wrapped_key,
        };
        let keys = TenantKeys::derive(&key);
        drop(key);
        let mut txn = self.catalog.write()?;
        if txn.tenant(spec.id.as_str())?.is_some() {
            return Err(TenantError::Exists(spec.id.to_string()).into());
        }
        if txn.shred(spec.id.as_str())?.is_some() {
            return Err(crate::KeyError::TenantDestroyed(spec.id.to_string()).into());
        }
        txn.put_tenant(&record)?;
        crate::audit::append_entry(
            &mut txn,
            &tenant.id,
            &keys.audit,
            AuditActor::system(Frontend::Library),
            AuditAction::TenantCreate,
            format!("tenant {} created in region {}", tenant.id, tenant.region),
            &[],
            Outcome::Success,
        )?;
        txn.commit()?;
        if let Ok(mut cache) = self.tenant_cache.write() {
            *cache = None;
        }
        Ok(tenant)
    }

    /// Every tenant, by id (not those being destroyed: see
    /// [`Archive::destroyed_tenants`]).
    pub fn tenants(&self) -> Result<Vec<Tenant>> {
        let rtxn = self.catalog.read()?;
        let shredding: std::collections::HashSet<String> =
            rtxn.shreds()?.into_iter().map(|r| r.tenant).collect();
        Ok(rtxn
            .tenants()?
            .into_iter()
            .map(|r| r.tenant)
            .filter(|t| !shredding.contains(t.id.as_str()))
            .collect())
    }

    /// One tenant.
    pub fn tenant(&self, id: &TenantId) -> Result<Tenant> {
        self.catalog
            .read()?
            .tenant(id.as_str())?
            .map(|r| r.tenant)
            .ok_or_else(|| TenantError::Unknown(id.to_string()).into())
    }

    /// The tenant whose mail domains include `domain` (or a parent of it).
    ///
    /// The most specific domain wins (`eu.acme.example` before `acme.example`).
    /// Answered from memory: the SMTP node asks once per recipient, and every
    /// tenant change goes through this (single) process.
    pub fn tenant_for_domain(&self, domain: &str) -> Result<Option<Tenant>> {
        let d = domain.trim().trim_end_matches('.').to_ascii_lowercase();
        let tenants = self.cached_tenants()?;
        let best = tenants
            .iter()
            .flat_map(|t| t.domains.iter().map(move |td| (td, t)))
            .filter(|(td, _)| d == **td || d.ends_with(&format!(".{td}")))
            .max_by_key(|(td, _)| td.len());
        Ok(best.map(|(_, t)| t.clone()))
    }

    fn cached_tenants(&self) -> Result<Arc<Vec<Tenant>>> {
        let poisoned = || Error::AccessDenied("tenant cache lock poisoned".into());
        if let Some(t) = self.tenant_cache.read().map_err(|_| poisoned())?.as_ref() {
            return Ok(t.clone());
        }
        let fresh = Arc::new(self.tenants()?);
        *self.tenant_cache.write().map_err(|_| poisoned())? = Some(fresh.clone());
        Ok(fresh)
    }

    /// Counters of a tenant (messages, raw and stored bytes, duplicates).
    pub fn stats(&self, id: &TenantId) -> Result<TenantStats> {
        self.tenant(id)?;
        self.catalog.read()?.stats(id.as_str())
    }

    pub(crate) fn state(&self, id: &TenantId) -> Result<Arc<TenantState>> {
        let cached = self.read_tenants()?.get(id).cloned();
        if let Some(s) = cached {
            if !self.expired(&s) {
                return Ok(s);
            }
            drop(s);
            self.expire_keys();
            if let Some(s) = self.read_tenants()?.get(id) {
                return Ok(s.clone()); // still in use elsewhere: needed
            }
        }
        let _guard = self
            .opening
            .lock()
            .map_err(|_| Error::AccessDenied("tenant table lock poisoned".into()))?;
        if let Some(s) = self.read_tenants()?.get(id) {
            return Ok(s.clone());
        }
        let record = {
            let rtxn = self.catalog.read()?;
            if rtxn.shred(id.as_str())?.is_some() {
                return Err(crate::KeyError::TenantDestroyed(id.to_string()).into());
            }
            rtxn.tenant(id.as_str())?
                .ok_or_else(|| TenantError::Unknown(id.to_string()))?
        };
        // A key rotation interrupted after its catalog commit: drop the
        // index under the old key before opening (it is rebuilt below).
        self.finish_rotation(id)?;
        crate::keys::check_region(&*self.keys, id, &record.tenant.region)?;
        let tk = self.keys.unwrap_tenant_key(id, &record.wrapped_key)?;
        let keys = TenantKeys::derive(&tk);
        let (index, _replaced) = TenantIndex::open(
            &self.dir.join("index").join(&record.storage_id),
            &tk.derive("index"),
            self.options.index_cache_bytes,
        )?;
        drop(tk);
        {
            // The index is derived data: if it was lost or damaged (its count
            // disagrees with the catalog while nothing is pending), rebuild it.
            let rtxn = self.catalog.read()?;
            let expected = rtxn.stats(id.as_str())?.messages;
            if rtxn.pending_index(id.as_str())?.is_empty() && index.num_docs() != expected {
                drop(rtxn);
                index.clear()?;
                let mut txn = self.catalog.write()?;
                txn.mark_all_pending(id.as_str())?;
                txn.commit()?;
            }
        }
        let dictionaries = crate::dictionary::Dictionaries::load(&self.catalog, id, &keys.catalog)?;
        let state = Arc::new(TenantState {
            opened: Instant::now(),
            record,
            keys,
            index,
            dictionaries,
        });
        self.index_pending(&state)?;
        self.backfill_ingest_log(&state)?;
        self.tenants
            .write()
            .map_err(|_| Error::AccessDenied("tenant table lock poisoned".into()))?
            .insert(id.clone(), state.clone());
        Ok(state)
    }

    fn expired(&self, s: &TenantState) -> bool {
        self.options
            .key_ttl
            .is_some_and(|ttl| s.opened.elapsed() >= ttl)
    }

    /// Closes every open tenant whose keys are older than
    /// [`ArchiveOptions::key_ttl`] and that no call is using: its index
    /// documents are committed, then its keys and index are dropped (keys
    /// zeroized). A node calls this periodically so that idle tenants do not
    /// keep keys in memory. Returns how many were closed.
    pub fn expire_keys(&self) -> usize {
        if self.options.key_ttl.is_none() {
            return 0;
        }
        let due: Vec<Arc<TenantState>> = match self.tenants.read() {
            Ok(t) => t.values().filter(|s| self.expired(s)).cloned().collect(),
            Err(_) => return 0,
        };
        for s in &due {
            // Best effort: what is not committed is re-indexed at the next
            // open from the catalog's pending marks.
            let _ = self.flush_index(s);
        }
        let ids: Vec<TenantId> = due.iter().map(|s| s.record.tenant.id.clone()).collect();
        drop(due);
        let _guard = self.opening.lock().unwrap_or_else(|p| p.into_inner());
        let mut tenants = self.tenants.write().unwrap_or_else(|p| p.into_inner());
        let mut closed = Vec::new();
        for id in ids {
            // Only the cache holds it: no call can be using it, and none can
            // take it while the write lock is held.
            if tenants
                .get(&id)
                .is_some_and(|s| self.expired(s) && Arc::strong_count(s) == 1)
            {
                closed.extend(tenants.remove(&id));
            }
        }
        drop(tenants);
        let n = closed.len();
        drop(closed); // keys zeroized, index writer and its lock released
        n
    }

    /// Drops a tenant's open state (keys, index) from memory; the next use
    /// opens it again from the catalog.
    pub(crate) fn forget_tenant(&self, id: &TenantId) {
        let _guard = self.opening.lock().unwrap_or_else(|p| p.into_inner());
        self.tenants
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
        if let Ok(mut cache) = self.tenant_cache.write() {
            *cache = None;
        }
    }

    fn read_tenants(
        &self,
    ) -> Result<std::sync::RwLockReadGuard<'_, HashMap<TenantId, Arc<TenantState>>>> {
        self.tenants
            .read()
            .map_err(|_| Error::AccessDenied("tenant table lock poisoned".into()))
    }

    // ----- ingest --------------------------------------------------------

    /// Archives one message. Returns once it is durable and searchable.
    pub fn ingest(&self, tenant: &TenantId, raw: &[u8], envelope: &Envelope) -> Result<Receipt> {
        let mut r = self.ingest_batch(tenant, &[(raw, envelope.clone())])?;
        match r.pop() {
            Some(Ok(receipt)) => Ok(receipt),
            Some(Err(e)) => Err(e.into()),
            None => Err(Error::Index(crate::IndexError::Tantivy(
                "empty batch result".into(),
            ))),
        }
    }

    /// Archives a batch of messages of one tenant with one durable catalog
    /// commit. The outer error means nothing of the batch was committed; the
    /// inner results say, per message in order, whether it was refused.
    ///
    /// This is the trusted path of a process that owns the data directory
    /// (the SMTP node, `ama import`): the audit entry names the frontend of
    /// the first envelope's source and no user. Requests on behalf of a
    /// principal use [`Archive::ingest_as`].
    pub fn ingest_batch<B: AsRef<[u8]> + Sync>(
        &self,
        tenant: &TenantId,
        items: &[(B, Envelope)],
    ) -> Result<Vec<Result<Receipt, IngestError>>> {
        let frontend = match items.first().map(|(_, e)| e.source) {
            Some(crate::message::Source::Smtp) => Frontend::Smtp,
            Some(crate::message::Source::Http) => Frontend::Http,
            Some(crate::message::Source::Python) => Frontend::Python,
            _ => Frontend::Library,
        };
        self.ingest_batch_by(AuditActor::system(frontend), tenant, items)
    }

    /// [`Archive::ingest_batch`] recorded as done by `actor`.
    pub(crate) fn ingest_batch_by<B: AsRef<[u8]> + Sync>(
        &self,
        actor: AuditActor,
        tenant: &TenantId,
        items: &[(B, Envelope)],
    ) -> Result<Vec<Result<Receipt, IngestError>>> {
        let state = self.state(tenant)?;
        crate::store::check_region(&*self.store, tenant, &state.record.tenant.region)?;
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let t = tenant.as_str();
        let limit = self.options.max_message_size;

        // 1-2: check, parse, hash.
        struct Prepared {
            sha256: [u8; 32],
            dedup: [u8; 32],
            parsed: parse::Parsed,
            delivery: Delivery,
            size: u64,
        }
        let prepared: Vec<Result<Prepared, IngestError>> = par_map(items, |(raw, env)| {
            let raw = raw.as_ref();
            parse::check(raw, limit).map(|()| {
                let received_at = env.received_at.unix_timestamp();
                Prepared {
                    sha256: crypto::sha256(raw),
                    dedup: crypto::keyed_hash(&state.keys.dedup, raw),
                    parsed: parse::parse(raw, received_at),
                    delivery: Delivery {
                        mail_from: env.mail_from.clone().filter(|s| !s.is_empty()),
                        rcpt_to: env.rcpt_to.clone(),
                        received_at,
                        source: env.source,
                    },
                    size: raw.len() as u64,
                }
            })
        });

        // 3: blobs for messages that look new (dedup re-checked under the write lock).
        let mut new_ids: HashMap<[u8; 32], MessageId> = HashMap::new();
        let mut fresh: Vec<(usize, MessageId)> = Vec::new();
        {
            let rtxn = self.catalog.read()?;
            for (i, p) in prepared.iter().enumerate() {
                let Ok(p) = p else { continue };
                if new_ids.contains_key(&p.dedup) || rtxn.dedup(t, &p.dedup)?.is_some() {
                    continue;
                }
                let id = MessageId::generate()?;
                new_ids.insert(p.dedup, id);
                fresh.push((i, id));
            }
        }
        let dictionary = state.dictionaries.encoder();
        let sealed_blobs = par_map(&fresh, |(i, id)| -> Result<(BlobKey, Vec<u8>, Vec<u8>)> {
            let data_key = SecretKey::generate()?;
            let blob = crate::blob::seal(
                &data_key,
                &aad("blob", tenant, *id),
                items[*i].0.as_ref(),
                dictionary.as_ref(),
            )?;
            let wrapped = crypto::wrap_key(
                &state.keys.message_keys,
                &aad("data-key", tenant, *id),
                &data_key,
            )?;
            Ok((
                BlobKey::message(&state.record.storage_id, *id),
                blob,
                wrapped,
            ))
        });
        let mut wrapped_keys: HashMap<MessageId, (Vec<u8>, u64)> = HashMap::new();
        let mut blobs: Vec<(BlobKey, Vec<u8>)> = Vec::with_capacity(fresh.len());
        for ((_, id), sealed) in fresh.iter().zip(sealed_blobs) {
            let (key, blob, wrapped) = sealed?;
            wrapped_keys.insert(*id, (wrapped, blob.len() as u64));
            blobs.push((key, blob));
        }
        self.store.put_many(&blobs)?;
        drop(blobs);

        // 4: the catalog commit.
        let policy = self.policy_of(&state)?;
        let domains = state.record.tenant.domains.clone();
        // Retention rules by query: found in a throwaway in-memory index of
        // the batch (the tenant's index only gets the documents after the
        // commit).
        let rule_hits = if policy.has_query_rules() {
            let infos: Vec<(usize, MessageInfo)> = prepared
                .iter()
                .enumerate()
                .filter_map(|(i, p)| {
                    let p = p.as_ref().ok()?;
                    let sealed = SealedMessage {
                        sha256: p.sha256,
                        meta: p.parsed.meta.clone(),
                        deliveries: vec![p.delivery.clone()],
                    };
                    Some((i, info(MessageId::from_u128(0), sealed)))
                })
                .collect();
            let docs: Vec<(usize, &MessageInfo, &MessageText)> = infos
                .iter()
                .filter_map(|(i, inf)| {
                    let p = prepared[*i].as_ref().ok()?;
                    Some((*i, inf, &p.parsed.text))
                })
                .collect();
            self.rule_hits(&state, &policy, &docs)?
        } else {
            crate::retention::RuleHits::default()
        };
        let in_rule = |rule: usize, item: usize| rule_hits.hit(rule, item);
        let mut logged: Vec<(MessageId, [u8; 32])> = Vec::new();
        // Write-once storage: each blob's lock follows its retain-until.
        let write_once = self.store.object_lock();
        let mut locks: Vec<(BlobKey, i64)> = Vec::new();
        let mut txn = self.catalog.write()?;
        let mut receipts = Vec::with_capacity(items.len());
        let mut to_index: HashMap<MessageId, (MessageInfo, usize)> = HashMap::new();
        let mut orphans = Vec::new();
        let mut delta = TenantStats::default();
        for (i, p) in prepared.iter().enumerate() {
            let p = match p {
                Ok(p) => p,
                Err(e) => {
                    receipts.push(Err(e.clone()));
                    continue;
                }
            };
            let existing = txn.dedup(t, &p.dedup)?;
            let receipt = match existing {
                Some(id) => {
                    // Stored before (or earlier in this batch): merge the envelope.
                    let rec = txn
                        .message(t, id)?
                        .ok_or_else(|| crate::CatalogError::Corrupt {
                            what: format!("dedup entry of {tenant}"),
                            reason: format!("points at missing message {id}"),
                        })?;
                    let mut sealed = self.unseal(&state, id, &rec)?;
                    sealed.deliveries.push(p.delivery.clone());
                    let rec = MessageRecord {
                        sealed: self.seal(&state, id, &sealed)?,
                        ..rec
                    };
                    txn.put_message(t, id, &rec)?;
                    let merged = info(id, sealed);
                    let until = policy.retain_until(&merged, &domains, |n| in_rule(n, i));
                    if txn.retention(t, id)?.is_none_or(|cur| until > cur) {
                        txn.put_retention(t, id, until)?;
                        if write_once {
                            locks.push((BlobKey::message(&state.record.storage_id, id), until));
                        }
                    }
                    delta.duplicates += 1;
                    if let Some(orphan) = new_ids.get(&p.dedup).filter(|n| **n != id) {
                        orphans.push(*orphan); // lost a race with another ingest
                    }
                    to_index.insert(id, (merged, i));
                    Receipt {
                        id,
                        sha256: p.sha256,
                        duplicate: true,
                    }
                }
                None => {
                    let id = match new_ids.get(&p.dedup) {
                        Some(id) => *id,
                        None => {
                            // Stored and deleted since the read above: nothing to point at.
                            return Err(crate::CatalogError::Corrupt {
                                what: format!("ingest batch of {tenant}"),
                                reason: "dedup state changed during the batch; retry".into(),
                            }
                            .into());
                        }
                    };
                    let (wrapped_key, stored_size) =
                        wrapped_keys
                            .remove(&id)
                            .ok_or_else(|| crate::CatalogError::Corrupt {
                                what: format!("ingest batch of {tenant}"),
                                reason: "data key missing".into(),
                            })?;
                    let sealed = SealedMessage {
                        sha256: p.sha256,
                        meta: p.parsed.meta.clone(),
                        deliveries: vec![p.delivery.clone()],
                    };
                    let rec = MessageRecord {
                        wrapped_key,
                        stored_size,
                        sealed: self.seal(&state, id, &sealed)?,
                    };
                    txn.put_message(t, id, &rec)?;
                    txn.put_dedup(t, &p.dedup, id)?;
                    let fresh = info(id, sealed);
                    let until = policy.retain_until(&fresh, &domains, |n| in_rule(n, i));
                    txn.put_retention(t, id, until)?;
                    if write_once {
                        locks.push((BlobKey::message(&state.record.storage_id, id), until));
                    }
                    logged.push((id, p.sha256));
                    delta.messages += 1;
                    delta.raw_bytes += p.size;
                    delta.stored_bytes += stored_size;
                    to_index.insert(id, (fresh, i));
                    Receipt {
                        id,
                        sha256: p.sha256,
                        duplicate: false,
                    }
                }
            };
            receipts.push(Ok(receipt));
        }
        txn.add_stats(t, delta)?;
        crate::retention::log_ingest(&mut txn, &state, &logged)?;
        let ids: Vec<MessageId> = receipts
            .iter()
            .filter_map(|r| r.as_ref().ok().map(|r| r.id))
            .collect();
        let refused = receipts.len() - ids.len();
        self.append_audit(
            &mut txn,
            &state,
            actor,
            AuditAction::Ingest,
            format!(
                "{} accepted ({} duplicates), {refused} refused",
                ids.len(),
                delta.duplicates
            ),
            &ids,
            if ids.is_empty() && refused > 0 {
                Outcome::Failed(format!("all {refused} refused"))
            } else {
                Outcome::Success
            },
        )?;
        // Locked before the message exists (and is acknowledged): a lock
        // that fails aborts the batch like a failed write.
        if !locks.is_empty() {
            self.store.set_retention_many(&locks)?;
        }
        txn.commit()?;

        for id in orphans {
            let _ = self
                .store
                .delete(&BlobKey::message(&state.record.storage_id, id));
        }

        // 5: index, then clear the pending marks.
        let docs: Vec<(&MessageInfo, &MessageText)> = to_index
            .values()
            .filter_map(|(info, i)| match &prepared[*i] {
                Ok(p) => Some((info, &p.parsed.text)),
                Err(_) => None,
            })
            .collect();
        let committed = state.index.add(&docs)?;
        self.clear_pending(t, &committed)?;
        // 6: the tenant's dictionary, once it has enough mail (best effort).
        if delta.messages > 0 {
            self.train_dictionary_if_due(&state);
        }
        Ok(receipts)
    }

    fn clear_pending(&self, tenant: &str, ids: &[MessageId]) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        // Not fsync'ed on its own: losing it in a crash only means indexing again.
        let mut txn = self.catalog.write()?;
        txn.clear_pending(tenant, ids)?;
        txn.commit_lazy()
    }

    fn seal(&self, state: &TenantState, id: MessageId, m: &SealedMessage) -> Result<Vec<u8>> {
        Ok(crypto::seal(
            &state.keys.catalog,
            &aad("message", &state.record.tenant.id, id),
            &catalog::encode_value(m)?,
        )?)
    }

    fn unseal(
        &self,
        state: &TenantState,
        id: MessageId,
        rec: &MessageRecord,
    ) -> Result<SealedMessage> {
        let plain = crypto::open(
            &state.keys.catalog,
            &aad("message", &state.record.tenant.id, id),
            &rec.sealed,
            &format!("catalog record of message {id}"),
        )?;
        catalog::decode_value(&plain, &format!("message {id}"))
    }

    // ----- reading -------------------------------------------------------

    /// Searches the principal's tenant with the query language of
    /// `docs/SEARCH.md`; end users only find their own mail.
    pub fn search(
        &self,
        who: &Principal,
        query: &str,
        opts: &SearchOptions,
    ) -> Result<SearchResults> {
        self.audited_read(
            who,
            AuditAction::Search,
            format!("query {query:?}, offset {}", opts.offset),
            |state| self.search_in(state, who, query, opts),
            |r| r.hits.iter().map(|h| h.id).collect(),
        )
    }

    /// [`Archive::search`] without its audit entry, for engine calls that
    /// record one entry for a whole operation (export).
    pub(crate) fn search_in(
        &self,
        state: &TenantState,
        who: &Principal,
        query: &str,
        opts: &SearchOptions,
    ) -> Result<SearchResults> {
        let q = crate::query::parse(query)?;
        let scope = who.mail_scope()?;
        self.flush_index(state)?;
        let limit = opts.limit.clamp(1, MAX_PAGE);
        if opts.offset > MAX_OFFSET {
            return Err(Error::InvalidArgument(format!(
                "page offset {} is beyond the deepest page ({MAX_OFFSET}); narrow the query",
                opts.offset
            )));
        }
        let (total, ids) = state
            .index
            .search(&q, scope, opts.sort, opts.offset, limit)?;
        let rtxn = self.catalog.read()?;
        let mut hits = Vec::with_capacity(ids.len());
        for id in ids {
            let Some(rec) = rtxn.message(who.tenant().as_str(), id)? else {
                continue; // deleted since the index saw it
            };
            let sealed = self.unseal(state, id, &rec)?;
            hits.push(who.admit(info(id, sealed))?);
        }
        Ok(SearchResults { total, hits })
    }

    fn load(&self, state: &TenantState, id: MessageId) -> Result<(MessageRecord, SealedMessage)> {
        let rec = self
            .catalog
            .read()?
            .message(state.record.tenant.id.as_str(), id)?
            .ok_or(Error::NotFound(id))?;
        let sealed = self.unseal(state, id, &rec)?;
        Ok((rec, sealed))
    }

    /// Metadata and deliveries of a message the principal may see.
    pub fn get(&self, who: &Principal, id: MessageId) -> Result<MessageInfo> {
        self.audited_read(
            who,
            AuditAction::View,
            String::new(),
            |state| self.get_in(state, who, id),
            |_| vec![id],
        )
    }

    /// [`Archive::get`] without its audit entry (see [`Archive::search_in`]).
    pub(crate) fn get_in(
        &self,
        state: &TenantState,
        who: &Principal,
        id: MessageId,
    ) -> Result<MessageInfo> {
        who.mail_scope()?;
        let (_, sealed) = self.load(state, id)?;
        who.admit(info(id, sealed))
    }

    /// The exact bytes that were ingested, after checking the principal may
    /// see the message and that the blob is authentic (AES-GCM tag and the
    /// SHA-256 recorded at ingest).
    pub fn get_raw(&self, who: &Principal, id: MessageId) -> Result<Vec<u8>> {
        self.audited_read(
            who,
            AuditAction::Download,
            "raw message".into(),
            |state| self.get_raw_in(state, who, id),
            |_| vec![id],
        )
    }

    /// [`Archive::get_raw`] without its audit entry, for engine calls that
    /// record one entry for many messages (export).
    pub(crate) fn get_raw_in(
        &self,
        state: &TenantState,
        who: &Principal,
        id: MessageId,
    ) -> Result<Vec<u8>> {
        who.mail_scope()?;
        let (rec, sealed) = self.load(state, id)?;
        let admitted = who.admit(info(id, sealed))?;
        self.read_blob(state, id, &rec, &admitted.sha256, admitted.meta.size)
    }

    fn read_blob(
        &self,
        state: &TenantState,
        id: MessageId,
        rec: &MessageRecord,
        sha256: &[u8; 32],
        size: u64,
    ) -> Result<Vec<u8>> {
        let tenant = &state.record.tenant.id;
        let data_key = crypto::unwrap_key(
            &state.keys.message_keys,
            &aad("data-key", tenant, id),
            &rec.wrapped_key,
            &format!("data key of message {id}"),
        )?;
        // A store with several copies skips one that fails this check.
        let key = BlobKey::message(&state.record.storage_id, id);
        crate::store::get_authentic(&*self.store, &key, |blob| -> Result<Vec<u8>> {
            let raw =
                crate::blob::open(&data_key, &aad("blob", tenant, id), blob, size, id, &|d| {
                    state.dictionaries.decoder(d)
                })?;
            if crypto::sha256(&raw) != *sha256 {
                return Err(CryptoError::Authentication {
                    what: format!(
                        "blob of message {id} (SHA-256 differs from the one recorded at ingest)"
                    ),
                }
                .into());
            }
            Ok(raw)
        })
    }

    // ----- spool -------------------------------------------------------------

    /// Seals `plaintext` with the tenant's spool key, bound to `entry` (the
    /// spool entry's name): for frontends that must hold mail durably before
    /// it is ingested (the SMTP spool), so nothing waits on disk in plaintext.
    pub fn spool_seal(&self, tenant: &TenantId, entry: &str, plaintext: &[u8]) -> Result<Vec<u8>> {
        let state = self.state(tenant)?;
        Ok(crypto::seal(
            &state.keys.spool,
            &spool_aad(tenant, entry),
            plaintext,
        )?)
    }

    /// Opens what [`Archive::spool_seal`] sealed for the same tenant and entry.
    pub fn spool_open(&self, tenant: &TenantId, entry: &str, sealed: &[u8]) -> Result<Vec<u8>> {
        let state = self.state(tenant)?;
        Ok(crypto::open(
            &state.keys.spool,
            &spool_aad(tenant, entry),
            sealed,
            &format!("spool entry {entry}"),
        )?)
    }

    // ----- index maintenance ---------------------------------------------

    /// Rebuilds a tenant's index from the catalog and the blobs. Returns the
    /// number of messages indexed.
    pub fn reindex(&self, tenant: &TenantId) -> Result<u64> {
        let state = self.state(tenant)?;
        let mut txn = self.catalog.write()?;
        let n = txn.mark_all_pending(tenant.as_str())?;
        self.append_audit(
            &mut txn,
            &state,
            AuditActor::system(Frontend::Library),
            AuditAction::Reindex,
            format!("{n} messages"),
            &[],
            Outcome::Success,
        )?;
        txn.commit()?;
        state.index.clear()?;
        self.index_pending(&state)?;
        Ok(n)
    }

    /// Indexes every message of the tenant marked pending in the catalog.
    fn index_pending(&self, state: &TenantState) -> Result<()> {
        let t = state.record.tenant.id.as_str();
        let pending = self.catalog.read()?.pending_index(t)?;
        for chunk in pending.chunks(REINDEX_CHUNK) {
            let mut prepared = Vec::with_capacity(chunk.len());
            for id in chunk {
                let (rec, sealed) = match self.load(state, *id) {
                    Ok(v) => v,
                    Err(Error::NotFound(_)) => continue,
                    Err(e) => return Err(e),
                };
                let text = match self.read_blob(state, *id, &rec, &sealed.sha256, sealed.meta.size)
                {
                    Ok(raw) => parse::parse(&raw, sealed.meta.date).text,
                    // The content is gone for good (a lost blob; a restore to a
                    // moment whose blob never reached the backup): index what the
                    // catalog knows, so one missing blob neither stops the tenant
                    // from opening nor hides the message. `verify` names it.
                    Err(Error::Store(crate::error::StoreError::NotFound { .. })) => {
                        MessageText::default()
                    }
                    Err(e) => return Err(e),
                };
                prepared.push((info(*id, sealed), text));
            }
            let docs: Vec<(&MessageInfo, &MessageText)> =
                prepared.iter().map(|(i, t)| (i, t)).collect();
            let committed = state.index.add(&docs)?;
            self.clear_pending(t, &committed)?;
        }
        self.flush_index(state)
    }

    /// Commits a tenant's waiting index documents (before a search, so it
    /// sees everything ingested before it) and clears their pending marks.
    pub(crate) fn flush_index(&self, state: &TenantState) -> Result<()> {
        let committed = state.index.flush()?;
        self.clear_pending(state.record.tenant.id.as_str(), &committed)
    }

    /// Number of documents in a tenant's index (for checks and `stats`).
    pub fn indexed_count(&self, tenant: &TenantId) -> Result<u64> {
        let state = self.state(tenant)?;
        self.flush_index(&state)?;
        Ok(state.index.num_docs())
    }
}

impl Drop for Archive {
    /// Commits waiting index documents, so a clean close leaves nothing to
    /// re-index (a crash is repaired on the next open anyway).
    fn drop(&mut self) {
        let states: Vec<Arc<TenantState>> = match self.tenants.read() {
            Ok(t) => t.values().cloned().collect(),
            Err(_) => return,
        };
        for state in states {
            let _ = self.flush_index(&state);
        }
    }
}

/// Maps `f` over `items` on up to [`PREP_THREADS`] threads, keeping order:
/// parsing, hashing and encryption are CPU work that the cores share.
fn par_map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(PREP_THREADS);
    if threads <= 1 || items.len() < 8 {
        return items.iter().map(&f).collect();
    }
    let chunk = items.len().div_ceil(threads);
    std::thread::scope(|s| {
        let handles: Vec<_> = items
            .chunks(chunk)
            .map(|part| s.spawn(|| part.iter().map(&f).collect::<Vec<R>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| match h.join() {
                Ok(v) => v,
                // Parsing is already guarded; anything else is a bug: re-raise it.
                Err(e) => std::panic::resume_unwind(e),
            })
            .collect()
    })
}

fn info(id: MessageId, s: SealedMessage) -> MessageInfo {
    MessageInfo {
        id,
        sha256: s.sha256,
        meta: s.meta,
        deliveries: s.deliveries,
    }
}
