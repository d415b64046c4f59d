//! In-process caches of the embedded index: each brain's binary vector codes (scanned by
//! Hamming distance in Rust instead of sqlite-vec's KNN) and keyword document frequencies.
//!
//! SQLite stays the source of truth: a brain's codes are loaded from `chunks_vec`, patched by
//! this process's own writes when they commit, and reloaded after `VECTOR_TTL` so that other
//! processes' writes to the same file show up within that time. A stale entry can only miss new
//! chunks or name deleted ones; search results are always re-read from `chunks` filtered by
//! brain, so a stale cache can never return another brain's chunks or a deleted chunk.

use std::collections::{BinaryHeap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a brain's cached codes are trusted before they are reloaded from SQLite.
pub(crate) const VECTOR_TTL: Duration = Duration::from_secs(60);

/// How many vectors all cached brains may hold together (about 56 bytes each at 384 bits):
/// past this the least recently used brains are dropped.
const VECTOR_BUDGET: usize = 1_000_000;

/// How long a cached document frequency is used. Frequencies only choose which common terms a
/// keyword query leaves out, so a stale one costs a little speed or recall, never correctness.
pub(crate) const TERM_TTL: Duration = Duration::from_secs(300);

/// How many terms the frequency cache holds before it is emptied.
const TERM_CAPACITY: usize = 200_000;

/// One brain's binary codes: `words` u64 words per vector, in the order of `ids`.
#[derive(Debug)]
pub(crate) struct BrainCodes {
    pub(crate) ids: Vec<i64>,
    pub(crate) codes: Vec<u64>,
    pub(crate) words: usize,
    loaded: Instant,
}

impl BrainCodes {
    /// Codes from `(chunk id, sqlite-vec bit vector bytes)` rows.
    pub(crate) fn new(rows: Vec<(i64, Vec<u8>)>, words: usize) -> Self {
        let mut ids = Vec::with_capacity(rows.len());
        let mut codes = Vec::with_capacity(rows.len() * words);
        for (id, bytes) in rows {
            ids.push(id);
            codes.extend(pack(&bytes, words));
        }
        Self {
            ids,
            codes,
            words,
            loaded: Instant::now(),
        }
    }

    fn len(&self) -> usize {
        self.ids.len()
    }

    /// The `k` ids nearest to `query` by Hamming distance, nearest first, ties by id.
    pub(crate) fn nearest(&self, query: &[u64], k: usize) -> Vec<i64> {
        if k == 0 {
            return Vec::new();
        }
        let mut heap: BinaryHeap<(u32, i64)> = BinaryHeap::with_capacity(k + 1);
        for (i, code) in self.codes.chunks_exact(self.words).enumerate() {
            let distance: u32 = code
                .iter()
                .zip(query)
                .map(|(a, b)| (a ^ b).count_ones())
                .sum();
            let entry = (distance, self.ids[i]);
            if heap.len() < k {
                heap.push(entry);
            } else if heap.peek().is_some_and(|worst| entry < *worst) {
                heap.pop();
                heap.push(entry);
            }
        }
        let mut best = heap.into_vec();
        best.sort_unstable();
        best.into_iter().map(|(_, id)| id).collect()
    }
}

/// Packs sqlite-vec bit-vector bytes (least significant bit first) into `words` u64 words.
pub(crate) fn pack(bytes: &[u8], words: usize) -> Vec<u64> {
    let mut out = vec![0u64; words];
    for (i, byte) in bytes.iter().enumerate().take(words * 8) {
        out[i / 8] |= u64::from(*byte) << ((i % 8) * 8);
    }
    out
}

/// Brains' codes, least recently used dropped first.
#[derive(Debug, Default)]
pub(crate) struct VectorCache {
    brains: Mutex<HashMap<i64, (Arc<BrainCodes>, Instant)>>,
    /// Per brain, bumped by every `patch`, so that a load that raced with one of this
    /// process's writes to the brain is not cached (it may have read the database before that
    /// write committed).
    writes: Mutex<HashMap<i64, u64>>,
}

impl VectorCache {
    /// The brain's codes when cached and fresh.
    pub(crate) fn get(&self, brain: i64) -> Option<Arc<BrainCodes>> {
        let mut brains = self.brains.lock().unwrap_or_else(|e| e.into_inner());
        let fresh = match brains.get_mut(&brain) {
            Some((codes, used)) if codes.loaded.elapsed() < VECTOR_TTL => {
                *used = Instant::now();
                Some(Arc::clone(codes))
            }
            _ => None,
        };
        if fresh.is_none() {
            brains.remove(&brain);
        }
        fresh
    }

    /// The brain's write generation; read it before loading the brain and hand it to `insert`.
    pub(crate) fn generation(&self, brain: i64) -> u64 {
        let writes = self.writes.lock().unwrap_or_else(|e| e.into_inner());
        writes.get(&brain).copied().unwrap_or(0)
    }

    /// Caches a brain's codes loaded at write generation `seen`, dropping least recently used
    /// brains past the budget. Codes loaded before a later write are not cached.
    pub(crate) fn insert(&self, brain: i64, codes: Arc<BrainCodes>, seen: u64) {
        let mut brains = self.brains.lock().unwrap_or_else(|e| e.into_inner());
        if self.generation(brain) != seen {
            return;
        }
        brains.insert(brain, (codes, Instant::now()));
        loop {
            let total: usize = brains.values().map(|(c, _)| c.len()).sum();
            if total <= VECTOR_BUDGET || brains.len() <= 1 {
                break;
            }
            let oldest = brains
                .iter()
                .filter(|(id, _)| **id != brain)
                .min_by_key(|(_, (_, used))| *used)
                .map(|(id, _)| *id);
            match oldest {
                Some(id) => brains.remove(&id),
                None => break,
            };
        }
    }

    /// Applies a committed write of this process to a cached brain: `removed` chunk ids are
    /// gone, `added` (id, code) pairs are new (idempotent: added ids already cached are
    /// replaced, not doubled).
    pub(crate) fn patch(&self, brain: i64, removed: &[i64], added: &[(i64, Vec<u64>)]) {
        let mut brains = self.brains.lock().unwrap_or_else(|e| e.into_inner());
        *self
            .writes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(brain)
            .or_insert(0) += 1;
        let Some((codes, _)) = brains.get_mut(&brain) else {
            return;
        };
        let gone: std::collections::HashSet<i64> = removed
            .iter()
            .copied()
            .chain(added.iter().map(|(id, _)| *id))
            .collect();
        let words = codes.words;
        let mut ids = Vec::with_capacity(codes.ids.len() + added.len());
        let mut packed = Vec::with_capacity(codes.codes.len() + added.len() * words);
        for (i, id) in codes.ids.iter().enumerate() {
            if !gone.contains(id) {
                ids.push(*id);
                packed.extend_from_slice(&codes.codes[i * words..(i + 1) * words]);
            }
        }
        for (id, code) in added {
            ids.push(*id);
            packed.extend_from_slice(code);
        }
        *codes = Arc::new(BrainCodes {
            ids,
            codes: packed,
            words,
            loaded: codes.loaded,
        });
    }
}

/// Global document frequencies of keyword terms (all brains: the postings a query walks).
#[derive(Debug, Default)]
pub(crate) struct TermCache {
    terms: Mutex<HashMap<String, (i64, Instant)>>,
}

impl TermCache {
    /// The cached frequencies of `terms`; those missing or expired are left out.
    pub(crate) fn get(&self, terms: &[String]) -> HashMap<String, i64> {
        let cache = self.terms.lock().unwrap_or_else(|e| e.into_inner());
        terms
            .iter()
            .filter_map(|term| {
                cache
                    .get(term)
                    .filter(|(_, at)| at.elapsed() < TERM_TTL)
                    .map(|(n, _)| (term.clone(), *n))
            })
            .collect()
    }

    pub(crate) fn insert(&self, counts: &HashMap<String, i64>) {
        let mut cache = self.terms.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() + counts.len() > TERM_CAPACITY {
            cache.clear();
        }
        let now = Instant::now();
        for (term, n) in counts {
            cache.insert(term.clone(), (*n, now));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_orders_by_hamming_then_id() {
        let rows = vec![
            (10, vec![0b1111, 0, 0, 0, 0, 0, 0, 0]),
            (11, vec![0b0001, 0, 0, 0, 0, 0, 0, 0]),
            (12, vec![0b0000, 0, 0, 0, 0, 0, 0, 0]),
            (9, vec![0b0001, 0, 0, 0, 0, 0, 0, 0]),
        ];
        let codes = BrainCodes::new(rows, 1);
        assert_eq!(codes.nearest(&pack(&[0b0001], 1), 3), vec![9, 11, 12]);
        assert_eq!(codes.nearest(&pack(&[0b0001], 1), 10), vec![9, 11, 12, 10]);
    }

    #[test]
    fn patch_replaces_a_documents_codes() {
        let cache = VectorCache::default();
        let codes = BrainCodes::new(vec![(1, vec![1]), (2, vec![2])], 1);
        cache.insert(5, Arc::new(codes), cache.generation(5));
        cache.patch(5, &[1], &[(3, vec![3])]);
        cache.patch(5, &[1], &[(3, vec![3])]);
        let codes = cache.get(5).expect("cached");
        assert_eq!(codes.ids, vec![2, 3]);
        assert_eq!(codes.codes, vec![2, 3]);
        cache.patch(6, &[], &[(4, vec![4])]);
        assert!(cache.get(6).is_none());
    }

    #[test]
    fn a_load_older_than_a_write_is_not_cached() {
        let cache = VectorCache::default();
        let seen = cache.generation(5);
        cache.patch(6, &[], &[(2, vec![2])]);
        assert_eq!(cache.generation(5), seen);
        cache.patch(5, &[], &[(1, vec![1])]);
        cache.insert(5, Arc::new(BrainCodes::new(Vec::new(), 1)), seen);
        assert!(cache.get(5).is_none());
    }
}
