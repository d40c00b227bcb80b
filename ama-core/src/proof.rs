//! Inclusion proofs: evidence an outside auditor can check without the
//! archive that a message (its exact bytes) was ingested, and where.
//!
//! The tenant's ingest log (see [`crate::retention`]) is also the leaf list
//! of a Merkle tree in the shape of RFC 6962 (Certificate Transparency):
//! leaf *i* is `SHA-256(0x00 || "ama-ingest-v1" || id (16 bytes, big
//! endian) || SHA-256(raw))`, an inner node `SHA-256(0x01 || left ||
//! right)`, and a tree of *n* leaves splits at the largest power of two
//! below *n*. A proof names the leaf's position, the tree size, the audit
//! path and the root; [`check`] (or the Python snippet in
//! `docs/PROOFS.md`) recomputes the root from the message's bytes and the
//! path. Publishing or countersigning the root at times (a checkpoint) is
//! what binds the archive to it; two roots of the same tree size must be
//! equal.

use serde::{Deserialize, Serialize};

use crate::access::Principal;
use crate::archive::Archive;
use crate::audit::AuditAction;
use crate::crypto;
use crate::error::{Error, Result};
use crate::message::MessageId;

/// What `ama proof` prints: everything needed to check one message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InclusionProof {
    /// Format of this document.
    pub format: String,
    /// The tenant.
    pub tenant: String,
    /// The message id.
    pub id: String,
    /// SHA-256 of the message's raw bytes (hex).
    pub sha256: String,
    /// The leaf's position in the ingest log.
    pub leaf_index: u64,
    /// Leaves in the tree the proof is for.
    pub tree_size: u64,
    /// Sibling hashes from the leaf up (hex).
    pub path: Vec<String>,
    /// The tree's root (hex).
    pub root: String,
}

const PROOF_FORMAT: &str = "ama-inclusion-proof/1";

fn leaf(id: u128, sha256: &[u8; 32]) -> [u8; 32] {
    let mut b = vec![0u8];
    b.extend_from_slice(b"ama-ingest-v1");
    b.extend_from_slice(&id.to_be_bytes());
    b.extend_from_slice(sha256);
    crypto::sha256(&b)
}

fn node(l: &[u8; 32], r: &[u8; 32]) -> [u8; 32] {
    let mut b = Vec::with_capacity(65);
    b.push(1u8);
    b.extend_from_slice(l);
    b.extend_from_slice(r);
    crypto::sha256(&b)
}

fn split(n: usize) -> usize {
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    k
}

fn root(leaves: &[[u8; 32]]) -> [u8; 32] {
    match leaves.len() {
        0 => crypto::sha256(b""),
        1 => leaves[0],
        n => {
            let k = split(n);
            node(&root(&leaves[..k]), &root(&leaves[k..]))
        }
    }
}

fn path(m: usize, leaves: &[[u8; 32]]) -> Vec<[u8; 32]> {
    let n = leaves.len();
    if n <= 1 {
        return Vec::new();
    }
    let k = split(n);
    if m < k {
        let mut p = path(m, &leaves[..k]);
        p.push(root(&leaves[k..]));
        p
    } else {
        let mut p = path(m - k, &leaves[k..]);
        p.push(root(&leaves[..k]));
        p
    }
}

fn root_from(m: u64, n: u64, leaf: [u8; 32], path: &[[u8; 32]]) -> Option<[u8; 32]> {
    if n == 1 {
        return path.is_empty().then_some(leaf);
    }
    if m >= n {
        return None;
    }
    let (last, rest) = path.split_last()?;
    let k = split(n as usize) as u64;
    if m < k {
        Some(node(&root_from(m, k, leaf, rest)?, last))
    } else {
        Some(node(last, &root_from(m - k, n - k, leaf, rest)?))
    }
}

fn unhex(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// Checks a proof against a message's raw bytes: the bytes hash to the
/// proof's SHA-256 and the path leads from the leaf to the root. Does not
/// need the archive. Returns why it fails.
pub fn check(proof: &InclusionProof, raw: &[u8]) -> std::result::Result<(), String> {
    if proof.format != PROOF_FORMAT {
        return Err(format!("unknown proof format {:?}", proof.format));
    }
    let sha = crypto::sha256(raw);
    if crypto::hex(&sha) != proof.sha256.to_ascii_lowercase() {
        return Err("the message's SHA-256 differs from the proof's".into());
    }
    let id: MessageId = proof
        .id
        .parse()
        .map_err(|_| format!("bad message id {:?}", proof.id))?;
    let path = proof
        .path
        .iter()
        .map(|h| unhex(h).ok_or_else(|| format!("bad hash {h:?} in the path")))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let want = unhex(&proof.root).ok_or("bad root hash")?;
    match root_from(
        proof.leaf_index,
        proof.tree_size,
        leaf(id.as_u128(), &sha),
        &path,
    ) {
        Some(r) if r == want => Ok(()),
        Some(_) => Err("the path does not lead to the root".into()),
        None => Err("the path does not fit the leaf index and tree size".into()),
    }
}

impl Archive {
    /// An inclusion proof of message `id` in the tenant's ingest log
    /// (auditors; one audited `view` entry).
    pub fn proof(&self, who: &Principal, id: MessageId) -> Result<InclusionProof> {
        self.audited_read(
            who,
            AuditAction::View,
            "inclusion proof".into(),
            |state| {
                who.require_auditor("produce inclusion proofs")?;
                let entries = self.ingest_log_entries(state)?;
                let leaves: Vec<[u8; 32]> =
                    entries.iter().map(|(i, s)| leaf(i.as_u128(), s)).collect();
                let m = entries
                    .iter()
                    .position(|(i, _)| *i == id)
                    .ok_or(Error::NotFound(id))?;
                Ok(InclusionProof {
                    format: PROOF_FORMAT.into(),
                    tenant: who.tenant().to_string(),
                    id: id.to_string(),
                    sha256: crypto::hex(&entries[m].1),
                    leaf_index: m as u64,
                    tree_size: leaves.len() as u64,
                    path: path(m, &leaves).iter().map(|h| crypto::hex(h)).collect(),
                    root: crypto::hex(&root(&leaves)),
                })
            },
            |_| vec![id],
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_leaf_of_every_tree_size_proves() {
        for n in 1..=33usize {
            let leaves: Vec<[u8; 32]> = (0..n).map(|i| leaf(i as u128, &[i as u8; 32])).collect();
            let r = root(&leaves);
            for m in 0..n {
                let p = path(m, &leaves);
                assert_eq!(
                    root_from(m as u64, n as u64, leaves[m], &p),
                    Some(r),
                    "{m}/{n}"
                );
                // Another leaf or position does not.
                let other = leaf(999, &[0; 32]);
                assert_ne!(root_from(m as u64, n as u64, other, &p), Some(r));
                if n > 1 {
                    assert_ne!(
                        root_from(((m + 1) % n) as u64, n as u64, leaves[m], &p),
                        Some(r),
                        "{m}/{n}"
                    );
                }
            }
        }
    }
}
