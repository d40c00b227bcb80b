//! [`ReplicatedStore`]: one [`BlobStore`] over N stores with a write quorum.
//!
//! Hosted archives keep every message in several copies (three, on two
//! sites); a machine that is down must neither stop ingest nor lose a copy
//! for good. So:
//!
//! - **Writes** go to every store at once and succeed only when at least
//!   `write_quorum` of them made the blobs durable. Below the quorum the
//!   write fails with [`StoreError::Quorum`] naming every store that failed,
//!   and the engine acknowledges nothing (its catalog commit never happens).
//! - **Copies that failed** (store down, full, unwritable) are recorded, by
//!   store and key, in a durable repair queue *before* the write returns, and
//!   [`BlobStore::repair`] later copies an authentic blob to them.
//! - **Reads** try the copies in turn: a missing copy, a store that fails,
//!   and — with [`BlobStore::get_verified`] — a copy that fails the engine's
//!   authentication check are skipped, and queued for repair.
//! - **Deletes** remove every copy; a store that is down gets the deletion
//!   in a durable pending-deletion list that repair replays, so retention and
//!   erasure reach every copy.
//! - A store that failed is not tried again for `retry_after` (its writes go
//!   straight to the queue), so one dead store does not slow every batch by
//!   its timeouts.
//!
//! The queue lives in `replication.redb` in a directory the caller chooses
//! (`DATA/replication/` for the CLI). It holds store names and opaque blob
//! keys only — no content, no tenant names.
//!
//! Stores are named (`a-z 0-9 -`), and the names, not positions, are what
//! the queue records: reordering the configuration is harmless.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redb::{
    Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition, TableHandle,
};

use super::{BlobKey, BlobStore, BlobVerifier, RepairReport, RepairScan};
use crate::error::StoreError;
use crate::tenant::Region;

const FORMAT_VERSION: u32 = 1;
const META: TableDefinition<&str, u32> = TableDefinition::new("meta");
/// (store name, blob key) → why the copy is wanted (a `Why` value).
const MISSING: TableDefinition<(&str, &str), u8> = TableDefinition::new("missing");
/// (store name, blob key) → (): deletions still to carry out.
const DELETES: TableDefinition<(&str, &str), ()> = TableDefinition::new("deletes");

/// Why a copy is queued (stored as a byte).
#[derive(Clone, Copy)]
enum Why {
    WriteFailed = 1,
    FoundMissing = 2,
    FoundDamaged = 3,
    /// A write-once store did not take a blob's lock; repair writes the
    /// copy again and locks it.
    LockFailed = 4,
}

/// Blobs fetched and written per step of a repair.
const REPAIR_CHUNK: usize = 256;
/// Threads that fetch and check source copies during a repair.
const REPAIR_THREADS: usize = 4;

/// One of the stores of a [`ReplicatedStore`].
#[derive(Clone)]
pub struct Replica {
    name: String,
    store: Arc<dyn BlobStore>,
}

impl Replica {
    /// A store under a stable name (`a-z`, `0-9`, `-`; at most 32
    /// characters), the name the repair queue records.
    pub fn new(name: impl Into<String>, store: Arc<dyn BlobStore>) -> Result<Self, StoreError> {
        let name = name.into();
        let ok = !name.is_empty()
            && name.len() <= 32
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !ok {
            return Err(StoreError::Config(format!(
                "store name {name:?}: use 1-32 characters a-z, 0-9 and '-'"
            )));
        }
        Ok(Replica { name, store })
    }

    /// The name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn BlobStore> {
        &self.store
    }
}

/// Settings of a [`ReplicatedStore`].
#[derive(Debug, Clone)]
pub struct ReplicationOptions {
    /// Copies that must be durable before a write succeeds (1..=N).
    pub write_quorum: usize,
    /// After a failure, a store is left alone this long: its writes go
    /// straight to the repair queue (default 30 s).
    pub retry_after: Duration,
}

impl ReplicationOptions {
    /// A majority quorum for `n` stores (2 of 3), `retry_after` 30 s.
    pub fn majority(n: usize) -> Self {
        ReplicationOptions {
            write_quorum: n / 2 + 1,
            retry_after: Duration::from_secs(30),
        }
    }
}

/// A [`BlobStore`] that keeps a copy of every blob in each of N stores.
pub struct ReplicatedStore {
    replicas: Vec<Replica>,
    options: ReplicationOptions,
    region: Option<Region>,
    state: Database,
    state_path: PathBuf,
    /// Until when each store is left alone after a failure.
    down: Mutex<Vec<Option<Instant>>>,
    /// Entries in DELETES (kept in memory so the common path needs no lookup).
    deletes_pending: AtomicU64,
}

impl std::fmt::Debug for ReplicatedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

type Failures = Vec<(usize, StoreError)>;

impl ReplicatedStore {
    /// Replicates over `replicas` with its repair queue in `state_dir`
    /// (created if missing). Refuses duplicate names, a quorum outside
    /// 1..=N, and stores of different regions (regions never exchange data).
    pub fn open(
        replicas: Vec<Replica>,
        options: ReplicationOptions,
        state_dir: impl AsRef<Path>,
    ) -> Result<Self, StoreError> {
        let n = replicas.len();
        if n == 0 {
            return Err(StoreError::Config("a replicated store needs stores".into()));
        }
        if options.write_quorum == 0 || options.write_quorum > n {
            return Err(StoreError::Config(format!(
                "write quorum {} is not between 1 and the number of stores ({n})",
                options.write_quorum
            )));
        }
        let mut names = BTreeSet::new();
        for r in &replicas {
            if !names.insert(r.name.as_str()) {
                return Err(StoreError::Config(format!(
                    "store name {:?} is used twice",
                    r.name
                )));
            }
        }
        let region = replicas[0].store.region();
        for r in &replicas[1..] {
            let other = r.store.region();
            if other != region {
                let show = |x: &Option<Region>| x.as_ref().map_or("none".into(), |r| r.to_string());
                return Err(StoreError::Config(format!(
                    "stores of one replicated set must share a region: {} is in {}, {} in {}",
                    replicas[0].name,
                    show(&region),
                    r.name,
                    show(&other)
                )));
            }
        }
        let dir = state_dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|source| StoreError::Io {
            key: dir.display().to_string(),
            source,
        })?;
        let state_path = dir.join("replication.redb");
        let qerr = |e: &dyn std::fmt::Display| queue_err(&state_path, "open", e);
        let state = Database::create(&state_path).map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => StoreError::Config(format!(
                "{} is in use by another open store (one process, one open archive at a time)",
                state_path.display()
            )),
            e => qerr(&e),
        })?;
        let deletes_pending;
        {
            let txn = state.begin_write().map_err(|e| qerr(&e))?;
            {
                let mut meta = txn.open_table(META).map_err(|e| qerr(&e))?;
                let found = meta
                    .get("format_version")
                    .map_err(|e| qerr(&e))?
                    .map(|v| v.value());
                match found {
                    None => {
                        meta.insert("format_version", FORMAT_VERSION)
                            .map_err(|e| qerr(&e))?;
                    }
                    Some(v) if v > FORMAT_VERSION => {
                        return Err(StoreError::Config(format!(
                            "{}: format version {v} is newer than this build reads ({FORMAT_VERSION})",
                            state_path.display()
                        )));
                    }
                    Some(_) => {}
                }
                txn.open_table(MISSING).map_err(|e| qerr(&e))?;
                deletes_pending = txn
                    .open_table(DELETES)
                    .map_err(|e| qerr(&e))?
                    .len()
                    .map_err(|e| qerr(&e))?;
            }
            txn.commit().map_err(|e| qerr(&e))?;
        }
        Ok(ReplicatedStore {
            down: Mutex::new(vec![None; n]),
            replicas,
            options,
            region,
            state,
            state_path,
            deletes_pending: AtomicU64::new(deletes_pending),
        })
    }

    /// The stores, in configured order.
    pub fn replicas(&self) -> &[Replica] {
        &self.replicas
    }

    /// The write quorum.
    pub fn write_quorum(&self) -> usize {
        self.options.write_quorum
    }

    /// Copies waiting in the repair queue, and deletions waiting to be
    /// replayed.
    pub fn backlog(&self) -> Result<(u64, u64), StoreError> {
        let qerr = |e: &dyn std::fmt::Display| queue_err(&self.state_path, "read", e);
        let txn = self.state.begin_read().map_err(|e| qerr(&e))?;
        let m = txn
            .open_table(MISSING)
            .map_err(|e| qerr(&e))?
            .len()
            .map_err(|e| qerr(&e))?;
        let d = txn
            .open_table(DELETES)
            .map_err(|e| qerr(&e))?
            .len()
            .map_err(|e| qerr(&e))?;
        Ok((m, d))
    }

    fn is_down(&self, i: usize) -> bool {
        self.down
            .lock()
            .map(|d| d[i].is_some_and(|until| Instant::now() < until))
            .unwrap_or(false)
    }

    fn set_down(&self, i: usize, down: bool) {
        if let Ok(mut d) = self.down.lock() {
            d[i] = down.then(|| Instant::now() + self.options.retry_after);
        }
    }

    fn skipped(&self, i: usize) -> StoreError {
        StoreError::Backend {
            store: self.replicas[i].store.describe(),
            key: "(skipped)".into(),
            reason: format!(
                "failed recently; not tried again for {} s (its copies are queued for repair)",
                self.options.retry_after.as_secs()
            ),
        }
    }

    fn failure_list(&self, failures: &Failures) -> Vec<String> {
        failures
            .iter()
            .map(|(i, e)| format!("{}: {e}", self.replicas[*i].name))
            .collect()
    }

    /// Runs `f` on every store (not left alone after a failure) in parallel.
    fn on_all<T: Send>(
        &self,
        f: impl Fn(&dyn BlobStore) -> Result<T, StoreError> + Sync,
    ) -> Vec<Result<T, StoreError>> {
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..self.replicas.len())
                .map(|i| {
                    let f = &f;
                    let skip = self.is_down(i);
                    s.spawn(move || {
                        if skip {
                            Err(self.skipped(i))
                        } else {
                            f(&*self.replicas[i].store)
                        }
                    })
                })
                .collect();
            handles
                .into_iter()
                .enumerate()
                .map(|(i, h)| {
                    h.join().unwrap_or_else(|_| {
                        Err(StoreError::Backend {
                            store: self.replicas[i].store.describe(),
                            key: "(thread)".into(),
                            reason: "the store panicked".into(),
                        })
                    })
                })
                .collect()
        })
    }

    /// Durably queues copies and forgets deletions, in one transaction.
    fn queue(
        &self,
        missing: &[(usize, &str, Why)],
        clear_deletes: &[(usize, &str)],
        add_deletes: &[(usize, &str)],
        clear_missing_keys: &[&str],
    ) -> Result<(), StoreError> {
        if missing.is_empty()
            && clear_deletes.is_empty()
            && add_deletes.is_empty()
            && clear_missing_keys.is_empty()
        {
            return Ok(());
        }
        let qerr = |e: &dyn std::fmt::Display| queue_err(&self.state_path, "write", e);
        let txn = self.state.begin_write().map_err(|e| qerr(&e))?;
        let deletes_now;
        {
            let mut m = txn.open_table(MISSING).map_err(|e| qerr(&e))?;
            let mut d = txn.open_table(DELETES).map_err(|e| qerr(&e))?;
            for key in clear_missing_keys {
                for r in &self.replicas {
                    m.remove((r.name.as_str(), *key)).map_err(|e| qerr(&e))?;
                }
            }
            for (i, key, why) in missing {
                m.insert((self.replicas[*i].name.as_str(), *key), *why as u8)
                    .map_err(|e| qerr(&e))?;
            }
            for (i, key) in clear_deletes {
                d.remove((self.replicas[*i].name.as_str(), *key))
                    .map_err(|e| qerr(&e))?;
            }
            for (i, key) in add_deletes {
                d.insert((self.replicas[*i].name.as_str(), *key), ())
                    .map_err(|e| qerr(&e))?;
            }
            deletes_now = d.len().map_err(|e| qerr(&e))?;
        }
        txn.commit().map_err(|e| qerr(&e))?;
        self.deletes_pending.store(deletes_now, Ordering::Relaxed);
        Ok(())
    }

    /// Whether a deletion of `key` is still pending on store `i` (its copy
    /// there is stale and must not be served or listed).
    fn delete_pending(&self, i: usize, key: &str) -> bool {
        if self.deletes_pending.load(Ordering::Relaxed) == 0 {
            return false;
        }
        let Ok(txn) = self.state.begin_read() else {
            return false;
        };
        let Ok(d) = txn.open_table(DELETES) else {
            return false;
        };
        matches!(d.get((self.replicas[i].name.as_str(), key)), Ok(Some(_)))
    }

    /// Stores in read order: those not failing first, in configured order.
    fn read_order(&self) -> Vec<usize> {
        let (up, down): (Vec<usize>, Vec<usize>) =
            (0..self.replicas.len()).partition(|i| !self.is_down(*i));
        up.into_iter().chain(down).collect()
    }

    /// The read path of `get` and `get_verified`: the first copy `accept`
    /// takes; missing and rejected copies are queued for repair.
    fn read(&self, key: &BlobKey, accept: &dyn Fn(&[u8]) -> bool) -> Result<Vec<u8>, StoreError> {
        let mut failures: Failures = Vec::new();
        let mut to_queue: Vec<(usize, Why)> = Vec::new();
        let mut rejected = 0;
        let mut found = None;
        for i in self.read_order() {
            if self.delete_pending(i, key.as_str()) {
                failures.push((
                    i,
                    StoreError::NotFound {
                        key: key.to_string(),
                    },
                ));
                continue;
            }
            match self.replicas[i].store.get(key) {
                Ok(data) if accept(&data) => {
                    found = Some(data);
                    self.set_down(i, false);
                    break;
                }
                Ok(_) => {
                    rejected += 1;
                    to_queue.push((i, Why::FoundDamaged));
                }
                Err(e @ StoreError::NotFound { .. }) => {
                    to_queue.push((i, Why::FoundMissing));
                    failures.push((i, e));
                }
                Err(e) => {
                    self.set_down(i, true);
                    failures.push((i, e));
                }
            }
        }
        if (found.is_some() || rejected > 0) && !to_queue.is_empty() {
            // The blob exists: queue the copies seen missing or damaged
            // (best effort: a scan finds them too). With no authentic copy
            // left, repair reports the key as unrecoverable.
            let entries: Vec<(usize, &str, Why)> = to_queue
                .iter()
                .map(|(i, why)| (*i, key.as_str(), *why))
                .collect();
            let _ = self.queue(&entries, &[], &[], &[]);
        }
        if let Some(data) = found {
            return Ok(data);
        }
        if rejected > 0 {
            return Err(StoreError::Corrupt {
                key: key.to_string(),
                reason: format!(
                    "{rejected} cop{} failed the authentication check and no other copy could be read",
                    if rejected == 1 { "y" } else { "ies" }
                ),
            });
        }
        // Every acknowledged blob is on at least `quorum` stores, so if
        // N − quorum + 1 stores lack it, it was never acknowledged (or is deleted).
        let absent = failures
            .iter()
            .filter(|(_, e)| matches!(e, StoreError::NotFound { .. }))
            .count();
        if absent > self.replicas.len() - self.options.write_quorum {
            return Err(StoreError::NotFound {
                key: key.to_string(),
            });
        }
        Err(StoreError::Unavailable {
            key: key.to_string(),
            failed: self.failure_list(&failures),
        })
    }

    fn record_failed_writes(
        &self,
        items: &[(BlobKey, Vec<u8>)],
        results: Vec<Result<(), StoreError>>,
    ) -> Result<(), StoreError> {
        let mut ok = 0;
        let mut failures: Failures = Vec::new();
        for (i, r) in results.into_iter().enumerate() {
            match r {
                Ok(()) => {
                    ok += 1;
                    self.set_down(i, false);
                }
                Err(e) => failures.push((i, e)),
            }
        }
        for (i, _) in &failures {
            self.set_down(*i, true);
        }
        if ok < self.options.write_quorum {
            return Err(StoreError::Quorum {
                needed: self.options.write_quorum,
                acknowledged: ok,
                failed: self.failure_list(&failures),
            });
        }
        let missing: Vec<(usize, &str, Why)> = failures
            .iter()
            .flat_map(|(i, _)| {
                items
                    .iter()
                    .map(move |(k, _)| (*i, k.as_str(), Why::WriteFailed))
            })
            .collect();
        // A key written again supersedes a deletion still pending for it.
        let mut clear = Vec::new();
        if self.deletes_pending.load(Ordering::Relaxed) > 0 {
            for (k, _) in items {
                for i in 0..self.replicas.len() {
                    if self.delete_pending(i, k.as_str()) {
                        clear.push((i, k.as_str()));
                    }
                }
            }
        }
        self.queue(&missing, &clear, &[], &[])
    }
}

fn queue_err(path: &Path, op: &str, e: &dyn std::fmt::Display) -> StoreError {
    StoreError::Backend {
        store: format!("repair queue {}", path.display()),
        key: op.to_string(),
        reason: e.to_string(),
    }
}

impl BlobStore for ReplicatedStore {
    fn put(&self, key: &BlobKey, data: &[u8]) -> Result<(), StoreError> {
        let items = [(key.clone(), data.to_vec())];
        let results = self.on_all(|s| s.put(key, data));
        self.record_failed_writes(&items, results)
    }

    fn put_many(&self, items: &[(BlobKey, Vec<u8>)]) -> Result<(), StoreError> {
        if items.is_empty() {
            return Ok(());
        }
        let results = self.on_all(|s| s.put_many(items));
        self.record_failed_writes(items, results)
    }

    fn get(&self, key: &BlobKey) -> Result<Vec<u8>, StoreError> {
        self.read(key, &|_| true)
    }

    fn get_verified(
        &self,
        key: &BlobKey,
        verify: &dyn Fn(&[u8]) -> bool,
    ) -> Result<Vec<u8>, StoreError> {
        self.read(key, verify)
    }

    /// Deletes every copy. Copies on stores that fail are recorded in the
    /// durable pending-deletion list (repair replays it); the deletion is
    /// durable once that record is.
    ///
    /// A write-once store that refuses because the blob is still locked is
    /// not "down": its copy stays, nothing is queued for it, and the
    /// [`StoreError::Locked`] is returned (after the other copies are
    /// deleted), so the caller keeps the deletion pending and tries again.
    fn delete(&self, key: &BlobKey) -> Result<(), StoreError> {
        let results = self.on_all(|s| s.delete(key));
        let mut pending = Vec::new();
        let mut locked = None;
        for (i, r) in results.into_iter().enumerate() {
            match r {
                Ok(()) => {
                    if !self.is_down(i) {
                        self.set_down(i, false);
                    }
                }
                Err(e @ StoreError::Locked { .. }) => {
                    locked.get_or_insert(e);
                }
                Err(_) => {
                    self.set_down(i, true);
                    pending.push((i, key.as_str()));
                }
            }
        }
        // Forget queued copies of the key (repair must not bring it back).
        self.queue(&[], &[], &pending, &[key.as_str()])?;
        locked.map_or(Ok(()), Err)
    }

    /// Recovers every store that answers; one that is down is left as it
    /// is (its queued copies are repaired when it returns).
    fn recover(&self) -> Result<(), StoreError> {
        for r in &self.replicas {
            let _ = r.store.recover();
        }
        Ok(())
    }

    /// Write-once when any of the stores is.
    fn object_lock(&self) -> bool {
        self.replicas.iter().any(|r| r.store.object_lock())
    }

    fn set_retention(&self, key: &BlobKey, until: i64) -> Result<(), StoreError> {
        self.set_retention_many(&[(key.clone(), until)])
    }

    /// Locks the copies on every write-once store. A store that fails gets
    /// the copies queued for repair, which writes them again and locks them
    /// with the date the engine's [`BlobVerifier::lock_until`] gives; the
    /// call succeeds once that is durable. Stores without locks are skipped.
    fn set_retention_many(&self, items: &[(BlobKey, i64)]) -> Result<(), StoreError> {
        if !self.object_lock() {
            return Err(StoreError::Unsupported {
                store: self.describe(),
                what: "write-once retention (object lock)".into(),
            });
        }
        if items.is_empty() {
            return Ok(());
        }
        let results = self.on_all(|s| {
            if s.object_lock() {
                s.set_retention_many(items)
            } else {
                Ok(())
            }
        });
        let mut missing = Vec::new();
        for (i, r) in results.into_iter().enumerate() {
            match r {
                // Stores without locks (also when skipped as down) have nothing to lock.
                Err(_) if self.replicas[i].store.object_lock() => {
                    self.set_down(i, true);
                    missing.extend(items.iter().map(|(k, _)| (i, k.as_str(), Why::LockFailed)));
                }
                _ => {}
            }
        }
        self.queue(&missing, &[], &[], &[])
    }

    /// The latest lock any write-once store holds on its copy.
    fn retention(&self, key: &BlobKey) -> Result<Option<i64>, StoreError> {
        let results = self.on_all(|s| {
            if s.object_lock() {
                s.retention(key)
            } else {
                Ok(None)
            }
        });
        let mut latest = None;
        let mut first_err = None;
        let mut answered = false;
        for (i, r) in results.into_iter().enumerate() {
            if !self.replicas[i].store.object_lock() {
                continue;
            }
            match r {
                Ok(u) => {
                    answered = true;
                    latest = latest.max(u);
                }
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        match (answered, first_err) {
            (false, Some(e)) => Err(e),
            _ => Ok(latest),
        }
    }

    /// The union of the stores' keys. Needs answers from enough stores that
    /// every acknowledged blob is covered (N − quorum + 1).
    fn list(&self, prefix: &str) -> Result<Vec<BlobKey>, StoreError> {
        let results = self.on_all(|s| s.list(prefix));
        let mut all = BTreeSet::new();
        let mut answered = 0;
        let mut failures: Failures = Vec::new();
        for (i, r) in results.into_iter().enumerate() {
            match r {
                Ok(keys) => {
                    answered += 1;
                    all.extend(
                        keys.into_iter()
                            .filter(|k| !self.delete_pending(i, k.as_str())),
                    );
                }
                Err(e) => failures.push((i, e)),
            }
        }
        let needed = self.replicas.len() - self.options.write_quorum + 1;
        if answered < needed {
            return Err(StoreError::Unavailable {
                key: format!("(list {prefix})"),
                failed: self.failure_list(&failures),
            });
        }
        Ok(all.into_iter().collect())
    }

    fn describe(&self) -> String {
        let parts: Vec<String> = self
            .replicas
            .iter()
            .map(|r| format!("{}={}", r.name, r.store.describe()))
            .collect();
        format!(
            "replicated({} of {}: {})",
            self.options.write_quorum,
            self.replicas.len(),
            parts.join(", ")
        )
    }

    fn region(&self) -> Option<Region> {
        self.region.clone()
    }

    fn repair(
        &self,
        verifier: &dyn BlobVerifier,
        scan: Option<&RepairScan>,
    ) -> Result<RepairReport, StoreError> {
        Repair::new(self, verifier).run(scan)
    }
}

/// A key to repair: the key, the stores that need it, and the authentic
/// copy once fetched (`None`: nothing to fetch).
type Job<'k> = Option<(&'k str, &'k Vec<usize>, Option<Vec<u8>>)>;

/// One run of [`ReplicatedStore::repair`].
struct Repair<'a> {
    rs: &'a ReplicatedStore,
    verifier: &'a dyn BlobVerifier,
    report: RepairReport,
    /// Stores that failed in this run (not tried again in it).
    failed: BTreeSet<usize>,
}

impl<'a> Repair<'a> {
    fn new(rs: &'a ReplicatedStore, verifier: &'a dyn BlobVerifier) -> Self {
        Repair {
            rs,
            verifier,
            report: RepairReport::default(),
            failed: BTreeSet::new(),
        }
    }

    fn index(&self, name: &str) -> Option<usize> {
        self.rs.replicas.iter().position(|r| r.name == name)
    }

    fn fail(&mut self, i: usize, e: &StoreError) {
        if self.failed.insert(i) {
            self.rs.set_down(i, true);
            self.report
                .failed_stores
                .push(format!("{}: {e}", self.rs.replicas[i].name));
        }
    }

    fn entries(
        &self,
        table: TableDefinition<(&str, &str), impl redb::Value + 'static>,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let qerr = |e: &dyn std::fmt::Display| queue_err(&self.rs.state_path, "read", e);
        let txn = self.rs.state.begin_read().map_err(|e| qerr(&e))?;
        let t = txn.open_table(table).map_err(|e| qerr(&e))?;
        let mut out = Vec::new();
        for e in t.iter().map_err(|e| qerr(&e))? {
            let (k, _) = e.map_err(|e| qerr(&e))?;
            let (store, key) = k.value();
            out.push((store.to_string(), key.to_string()));
        }
        Ok(out)
    }

    fn remove(
        &self,
        table: TableDefinition<(&str, &str), impl redb::Value + 'static>,
        done: &[(String, String)],
    ) -> Result<(), StoreError> {
        if done.is_empty() {
            return Ok(());
        }
        let qerr = |e: &dyn std::fmt::Display| queue_err(&self.rs.state_path, "write", e);
        let txn = self.rs.state.begin_write().map_err(|e| qerr(&e))?;
        let left;
        {
            let mut t = txn.open_table(table).map_err(|e| qerr(&e))?;
            for (s, k) in done {
                t.remove((s.as_str(), k.as_str())).map_err(|e| qerr(&e))?;
            }
            left = t.len().map_err(|e| qerr(&e))?;
        }
        txn.commit().map_err(|e| qerr(&e))?;
        if table.name() == DELETES.name() {
            self.rs.deletes_pending.store(left, Ordering::Relaxed);
        }
        Ok(())
    }

    fn run(mut self, scan: Option<&RepairScan>) -> Result<RepairReport, StoreError> {
        self.replay_deletes()?;
        if let Some(scan) = scan {
            self.scan(scan)?;
        }
        self.drain()?;
        let (m, d) = self.rs.backlog()?;
        self.report.still_queued = m;
        self.report.deletions_pending = d;
        Ok(self.report)
    }

    fn replay_deletes(&mut self) -> Result<(), StoreError> {
        let mut done = Vec::new();
        for (store, key) in self.entries(DELETES)? {
            let Some(i) = self.index(&store) else {
                // A store no longer configured: nothing to delete it from.
                done.push((store, key));
                continue;
            };
            if self.failed.contains(&i) {
                continue;
            }
            let k = match BlobKey::parse(&key) {
                Ok(k) => k,
                Err(_) => {
                    done.push((store, key));
                    continue;
                }
            };
            match self.rs.replicas[i].store.delete(&k) {
                Ok(()) => {
                    self.report.deletions_replayed += 1;
                    done.push((store, key));
                }
                Err(e) => self.fail(i, &e),
            }
        }
        self.remove(DELETES, &done)
    }

    fn scan(&mut self, scan: &RepairScan) -> Result<(), StoreError> {
        let mut queue: Vec<(usize, String, Why)> = Vec::new();
        let mut unreferenced = BTreeSet::new();
        for (prefix, expected) in &scan.expected {
            let expected: BTreeSet<&BlobKey> = expected.iter().collect();
            for i in 0..self.rs.replicas.len() {
                if self.failed.contains(&i) {
                    continue;
                }
                let store = &self.rs.replicas[i].store;
                let present: BTreeSet<BlobKey> = match store.list(prefix) {
                    Ok(keys) => keys.into_iter().collect(),
                    Err(e) => {
                        self.fail(i, &e);
                        continue;
                    }
                };
                for k in &expected {
                    if !present.contains(*k) {
                        self.report.missing_found += 1;
                        queue.push((i, k.to_string(), Why::FoundMissing));
                    } else if scan.deep {
                        match store.get(k) {
                            Ok(data) if self.verifier.authentic(k, &data) => {}
                            Ok(_) => {
                                self.report.corrupt_found += 1;
                                queue.push((i, k.to_string(), Why::FoundDamaged));
                            }
                            Err(StoreError::NotFound { .. }) => {
                                self.report.missing_found += 1;
                                queue.push((i, k.to_string(), Why::FoundMissing));
                            }
                            Err(e) => {
                                self.fail(i, &e);
                                break;
                            }
                        }
                    }
                }
                for k in present {
                    if !expected.contains(&k) && !self.verifier.wanted(&k) {
                        unreferenced.insert(k);
                    }
                }
            }
        }
        self.report.unreferenced_blobs = unreferenced.len() as u64;
        let entries: Vec<(usize, &str, Why)> = queue
            .iter()
            .map(|(i, k, why)| (*i, k.as_str(), *why))
            .collect();
        for chunk in entries.chunks(4096) {
            self.rs.queue(chunk, &[], &[], &[])?;
        }
        Ok(())
    }

    /// Copies every queued blob from an authentic copy to the stores that
    /// lack it.
    fn drain(&mut self) -> Result<(), StoreError> {
        // key → stores that need it
        let mut by_key: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        let mut drop_entries = Vec::new();
        for (store, key) in self.entries(MISSING)? {
            match (self.index(&store), BlobKey::parse(&key)) {
                (Some(i), Ok(_)) => by_key.entry(key).or_default().push(i),
                _ => drop_entries.push((store, key)),
            }
        }
        self.remove(MISSING, &drop_entries)?;
        let keys: Vec<(String, Vec<usize>)> = by_key.into_iter().collect();
        for chunk in keys.chunks(REPAIR_CHUNK) {
            self.repair_chunk(chunk)?;
        }
        Ok(())
    }

    fn repair_chunk(&mut self, chunk: &[(String, Vec<usize>)]) -> Result<(), StoreError> {
        let mut done = Vec::new();
        let mut sources: Vec<Job<'_>> = Vec::new();
        for (key, targets) in chunk {
            let k = BlobKey::parse(key).map_err(|_| StoreError::InvalidKey(key.clone()))?;
            let live: Vec<usize> = targets
                .iter()
                .copied()
                .filter(|i| !self.failed.contains(i))
                .collect();
            if live.is_empty() {
                sources.push(None);
                continue;
            }
            if !self.verifier.wanted(&k) {
                self.report.dropped_unreferenced += targets.len() as u64;
                for i in targets {
                    done.push((self.rs.replicas[*i].name.clone(), key.clone()));
                }
                sources.push(None);
                continue;
            }
            sources.push(Some((key.as_str(), targets, None)));
        }
        // Fetch an authentic copy of each key, on a few threads.
        let failed = self.failed.clone();
        let rs = self.rs;
        let verifier = self.verifier;
        let per = sources.len().div_ceil(REPAIR_THREADS).max(1);
        std::thread::scope(|s| {
            for part in sources.chunks_mut(per) {
                let failed = &failed;
                s.spawn(move || {
                    for (key, targets, data) in part.iter_mut().flatten() {
                        let Ok(k) = BlobKey::parse(key) else { continue };
                        for (i, r) in rs.replicas.iter().enumerate() {
                            if failed.contains(&i) || rs.delete_pending(i, key) {
                                continue;
                            }
                            // A store queued for this key may still hold a
                            // good copy (a write that failed late): try it last.
                            if targets.contains(&i) {
                                continue;
                            }
                            if let Ok(d) = r.store.get(&k)
                                && verifier.authentic(&k, &d)
                            {
                                *data = Some(d);
                                break;
                            }
                        }
                        if data.is_none() {
                            for i in targets.iter() {
                                if let Ok(d) = rs.replicas[*i].store.get(&k)
                                    && verifier.authentic(&k, &d)
                                {
                                    *data = Some(d);
                                    break;
                                }
                            }
                        }
                    }
                });
            }
        });
        // Write them, grouped by target store.
        let mut per_store: BTreeMap<usize, Vec<(BlobKey, Vec<u8>)>> = BTreeMap::new();
        for (key, targets, data) in sources.into_iter().flatten() {
            let Some(data) = data else {
                self.report.unrecoverable.push(key.to_string());
                continue;
            };
            let Ok(k) = BlobKey::parse(key) else { continue };
            for i in targets {
                if !self.failed.contains(i) {
                    per_store
                        .entry(*i)
                        .or_default()
                        .push((k.clone(), data.clone()));
                }
            }
        }
        for (i, items) in per_store {
            let store = &self.rs.replicas[i].store;
            let written = store.put_many(&items).and_then(|()| {
                if !store.object_lock() {
                    return Ok(());
                }
                // A copy on write-once storage is locked like the original.
                let locks: Vec<(BlobKey, i64)> = items
                    .iter()
                    .filter_map(|(k, _)| Some((k.clone(), self.verifier.lock_until(k)?)))
                    .collect();
                store.set_retention_many(&locks)
            });
            match written {
                Ok(()) => {
                    self.rs.set_down(i, false);
                    self.report.copies_restored += items.len() as u64;
                    for (k, _) in items {
                        done.push((self.rs.replicas[i].name.clone(), k.to_string()));
                    }
                }
                Err(e) => self.fail(i, &e),
            }
        }
        self.remove(MISSING, &done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    fn three(dir: &Path, quorum: usize) -> (ReplicatedStore, Vec<Arc<MemoryStore>>) {
        let mems: Vec<Arc<MemoryStore>> = (0..3).map(|_| Arc::new(MemoryStore::new())).collect();
        let replicas = mems
            .iter()
            .enumerate()
            .map(|(i, m)| Replica::new(format!("m{i}"), m.clone() as Arc<dyn BlobStore>).unwrap())
            .collect();
        let opts = ReplicationOptions {
            write_quorum: quorum,
            retry_after: Duration::from_secs(30),
        };
        (ReplicatedStore::open(replicas, opts, dir).unwrap(), mems)
    }

    #[test]
    fn configuration_is_checked() {
        let d = tempfile::tempdir().unwrap();
        let m = || Arc::new(MemoryStore::new()) as Arc<dyn BlobStore>;
        assert!(Replica::new("Bad Name", m()).is_err());
        let r = |n: &str| Replica::new(n, m()).unwrap();
        let q = |n| ReplicationOptions {
            write_quorum: n,
            retry_after: Duration::from_secs(1),
        };
        assert!(ReplicatedStore::open(vec![], q(1), d.path()).is_err());
        assert!(ReplicatedStore::open(vec![r("a"), r("b")], q(3), d.path()).is_err());
        assert!(ReplicatedStore::open(vec![r("a"), r("b")], q(0), d.path()).is_err());
        assert!(ReplicatedStore::open(vec![r("a"), r("a")], q(1), d.path()).is_err());
        let s = ReplicatedStore::open(vec![r("a"), r("b"), r("c")], q(2), d.path()).unwrap();
        assert_eq!(
            s.describe(),
            "replicated(2 of 3: a=memory, b=memory, c=memory)"
        );
        assert_eq!(ReplicationOptions::majority(3).write_quorum, 2);
        assert_eq!(ReplicationOptions::majority(5).write_quorum, 3);
    }

    #[test]
    fn reads_fall_back_and_queue_what_they_miss() {
        let d = tempfile::tempdir().unwrap();
        let (s, mems) = three(d.path(), 2);
        let k = BlobKey::parse("t/a/b").unwrap();
        s.put(&k, b"data").unwrap();
        mems[0].delete(&k).unwrap();
        mems[1].put(&k, b"dat4").unwrap(); // damaged copy
        assert_eq!(s.get_verified(&k, &|b| b == b"data").unwrap(), b"data");
        assert_eq!(s.backlog().unwrap(), (2, 0));
        struct V;
        impl BlobVerifier for V {
            fn wanted(&self, _: &BlobKey) -> bool {
                true
            }
            fn authentic(&self, _: &BlobKey, d: &[u8]) -> bool {
                d == b"data"
            }
        }
        let r = s.repair(&V, None).unwrap();
        assert_eq!(r.copies_restored, 2);
        assert!(r.is_clean(), "{r:?}");
        for m in &mems {
            assert_eq!(m.get(&k).unwrap(), b"data");
        }
    }
}
