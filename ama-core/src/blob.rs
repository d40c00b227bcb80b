//! The blob format: how one archived message lies in a blob store.
//!
//! A blob is the message's exact bytes, compressed with zstd and sealed
//! with AES-256-GCM under the message's own data key (wrapped in the
//! catalog). The associated data binds it to its tenant and message id, so
//! a blob copied under another message's key does not open.
//!
//! ```text
//! v1: "AMAB" | 0x01 | seal(data key, aad, zstd(raw))
//! v2: "AMAB" | 0x02 | dictionary id (u32, big-endian)
//!                   | seal(data key, aad || the 9 header bytes, zstd(raw, dictionary))
//! ```
//!
//! Version 2 names the tenant's zstd dictionary the message was compressed
//! with ([`crate::dictionary`]); id 0 means none. The header is part of the
//! associated data, so a changed dictionary id fails authentication instead
//! of decompressing into garbage. This build writes v2 and reads both.

use std::sync::Arc;

use zstd::dict::{DecoderDictionary, EncoderDictionary};

use crate::crypto::{self, SecretKey};
use crate::error::{CryptoError, Result, StoreError};
use crate::message::MessageId;

/// The first four bytes of every blob.
const MAGIC: &[u8; 4] = b"AMAB";
/// The version without dictionaries (still read).
const V1: u8 = 1;
/// The version this build writes.
const V2: u8 = 2;
/// zstd level of message blobs: the best ratio per CPU second for mail here
/// (docs/PERFORMANCE.md).
pub(crate) const LEVEL: i32 = 3;

/// A dictionary to compress with: its id and the prepared dictionary.
pub(crate) type Encoder = (u32, Arc<EncoderDictionary<'static>>);

/// Compresses and seals `raw` (format v2), with the dictionary if given.
pub(crate) fn seal(
    key: &SecretKey,
    aad: &[u8],
    raw: &[u8],
    dictionary: Option<&Encoder>,
) -> Result<Vec<u8>> {
    let (dict_id, compressed) = match dictionary {
        Some((id, dict)) => {
            let mut c = zstd::bulk::Compressor::with_prepared_dictionary(dict)
                .map_err(|e| CryptoError::Compression(e.to_string()))?;
            let out = c
                .compress(raw)
                .map_err(|e| CryptoError::Compression(e.to_string()))?;
            (*id, out)
        }
        None => (0, crypto::compress(raw)?),
    };
    let header = header(dict_id);
    let sealed = crypto::seal(key, &[aad, &header].concat(), &compressed)?;
    let mut out = Vec::with_capacity(header.len() + sealed.len());
    out.extend_from_slice(&header);
    out.extend_from_slice(&sealed);
    Ok(out)
}

fn header(dict_id: u32) -> [u8; 9] {
    let mut h = [0u8; 9];
    h[..4].copy_from_slice(MAGIC);
    h[4] = V2;
    h[5..].copy_from_slice(&dict_id.to_be_bytes());
    h
}

/// Opens a blob of either version: authenticates, then decompresses to at
/// most `size` bytes (the raw size recorded at ingest). `dictionary` finds a
/// tenant dictionary by id.
pub(crate) fn open(
    key: &SecretKey,
    aad: &[u8],
    blob: &[u8],
    size: u64,
    id: MessageId,
    dictionary: &dyn Fn(u32) -> Option<Arc<DecoderDictionary<'static>>>,
) -> Result<Vec<u8>> {
    let corrupt = |reason: String| StoreError::Corrupt {
        key: id.to_string(),
        reason,
    };
    if blob.len() < 5 || &blob[..4] != MAGIC {
        return Err(corrupt("not an ama blob (bad magic)".into()).into());
    }
    let limit = usize::try_from(size).unwrap_or(usize::MAX);
    let what = format!("blob of message {id}");
    match blob[4] {
        V1 => {
            let compressed = crypto::open(key, aad, &blob[5..], &what)?;
            Ok(crypto::decompress(&compressed, limit)?)
        }
        V2 => {
            let Some(h) = blob.get(..9) else {
                return Err(corrupt("blob header cut short".into()).into());
            };
            let dict_id = u32::from_be_bytes([h[5], h[6], h[7], h[8]]);
            let compressed = crypto::open(key, &[aad, h].concat(), &blob[9..], &what)?;
            if dict_id == 0 {
                return Ok(crypto::decompress(&compressed, limit)?);
            }
            let dict = dictionary(dict_id).ok_or_else(|| {
                corrupt(format!(
                    "compressed with dictionary {dict_id}, which the catalog does not hold"
                ))
            })?;
            let mut d = zstd::bulk::Decompressor::with_prepared_dictionary(&dict)
                .map_err(|e| CryptoError::Compression(e.to_string()))?;
            Ok(d.decompress(&compressed, limit)
                .map_err(|e| CryptoError::Compression(e.to_string()))?)
        }
        v => Err(corrupt(format!("unknown blob version {v}")).into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_dict(_: u32) -> Option<Arc<DecoderDictionary<'static>>> {
        None
    }

    fn id() -> MessageId {
        MessageId::from_u128(7)
    }

    #[test]
    fn v2_round_trips_and_binds_its_header() {
        let k = SecretKey::generate().unwrap();
        let raw = b"Subject: hi\r\n\r\nhello hello hello\r\n";
        let b = seal(&k, b"aad", raw, None).unwrap();
        assert_eq!(b[4], V2);
        assert_eq!(
            open(&k, b"aad", &b, raw.len() as u64, id(), &no_dict).unwrap(),
            raw
        );
        // A changed dictionary id fails authentication.
        let mut bad = b.clone();
        bad[8] ^= 1;
        assert!(open(&k, b"aad", &bad, raw.len() as u64, id(), &no_dict).is_err());
        // Cut short, wrong version, wrong aad.
        assert!(open(&k, b"aad", &b[..7], 100, id(), &no_dict).is_err());
        let mut v9 = b.clone();
        v9[4] = 9;
        assert!(open(&k, b"aad", &v9, 100, id(), &no_dict).is_err());
        assert!(open(&k, b"other", &b, 100, id(), &no_dict).is_err());
    }

    #[test]
    fn v1_blobs_are_still_read() {
        let k = SecretKey::generate().unwrap();
        let raw = b"Subject: old\r\n\r\nbody\r\n";
        let sealed = crypto::seal(&k, b"aad", &crypto::compress(raw).unwrap()).unwrap();
        let b = [&MAGIC[..], &[V1], &sealed].concat();
        assert_eq!(
            open(&k, b"aad", &b, raw.len() as u64, id(), &no_dict).unwrap(),
            raw
        );
    }

    #[test]
    fn a_dictionary_blob_needs_its_dictionary() {
        let samples: Vec<Vec<u8>> = (0..400)
            .map(|i| {
                format!(
                    "Received: from relay{} by mx.example.com\r\nFrom: user{}@example.com\r\n\
                     Subject: quarterly report {}\r\n\r\nPlease find the report attached. \
                     Regards, the finance team of Example Corp, {}\r\n",
                    i % 7,
                    i,
                    i * 31,
                    i % 13
                )
                .into_bytes()
            })
            .collect();
        let bytes = zstd::dict::from_samples(&samples, 4096).unwrap();
        let enc: Encoder = (5, Arc::new(EncoderDictionary::copy(&bytes, LEVEL)));
        let dec = Arc::new(DecoderDictionary::copy(&bytes));
        let k = SecretKey::generate().unwrap();
        let raw = &samples[3];
        let b = seal(&k, b"aad", raw, Some(&enc)).unwrap();
        let find = |i: u32| (i == 5).then(|| dec.clone());
        assert_eq!(
            open(&k, b"aad", &b, raw.len() as u64, id(), &find).unwrap(),
            *raw
        );
        let e = open(&k, b"aad", &b, raw.len() as u64, id(), &no_dict).unwrap_err();
        assert!(e.to_string().contains("dictionary 5"), "{e}");
    }
}
