//! In-process caches of the embedded index: each searched brain's binary vector codes (scanned
//! by Hamming distance in Rust instead of sqlite-vec's KNN), each searched brain's keyword index
//! (an inverted index scored by BM25 in Rust, see `keyword`) and, for brains searched through
//! FTS5, keyword document frequencies.
//!
//! SQLite stays the source of truth: a brain's codes and keyword index are loaded from it,
//! patched by this process's own writes when they commit, and reloaded after `VECTOR_TTL` (the
//! codes) or, when the brain's documents changed, `KEYWORD_TTL` (the keyword index), so that
//! other processes' writes to the same file show up within that time. A stale entry can only
//! miss new chunks or name deleted ones; search results are always re-read from `chunks`
//! filtered by brain, so a stale cache can never return another brain's chunks or a deleted
//! chunk.

use std::collections::{BinaryHeap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};

use super::keyword::BrainTerms;

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

/// How long a brain's keyword index is used before it is checked against SQLite: when the
/// brain's documents changed since the load (see `Fingerprint`), it is reloaded, in the
/// background, while searches keep using the old index.
pub(crate) const KEYWORD_TTL: Duration = Duration::from_secs(60);

/// How long a brain found too large for `KEYWORD_BUDGET` is searched through FTS5 before
/// loading it is tried again.
const TOO_LARGE_TTL: Duration = Duration::from_secs(600);

/// Bytes all cached keyword indexes may hold together (about 4 bytes per distinct term of a
/// chunk, so 100,000 chunks of 100 distinct words take about 42 MB): past this the least
/// recently used brains are dropped, and a brain larger than this alone is searched through
/// FTS5.
pub(crate) const KEYWORD_BUDGET: usize = 128 << 20;

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

    /// The `k` ids nearest to `query` by Hamming distance, nearest first, ties by id; ids in
    /// `skip` are never taken.
    pub(crate) fn nearest(
        &self,
        query: &[u64],
        k: usize,
        skip: &std::collections::HashSet<i64>,
    ) -> Vec<i64> {
        if k == 0 {
            return Vec::new();
        }
        let mut heap: BinaryHeap<(u32, i64)> = BinaryHeap::with_capacity(k + 1);
        for (i, code) in self.codes.chunks_exact(self.words).enumerate() {
            if !skip.is_empty() && skip.contains(&self.ids[i]) {
                continue;
            }
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

    /// Counts a write to `brain`, so codes loaded before it are not cached (`insert`).
    fn count_write(&self, brain: i64) {
        *self
            .writes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(brain)
            .or_insert(0) += 1;
    }

    /// Drops a brain's codes (a write whose outcome the cache cannot follow): the next search
    /// loads them again.
    pub(crate) fn drop_brain(&self, brain: i64) {
        let mut brains = self.brains.lock().unwrap_or_else(|e| e.into_inner());
        self.count_write(brain);
        brains.remove(&brain);
    }

    /// Applies a write of this process to a cached brain: `removed` chunk ids are gone,
    /// `added` (id, code) pairs are new (idempotent: added ids already cached are replaced, not
    /// doubled). New chunks may come just before their commit (searches drop ids they cannot
    /// read yet), deleted ones just after it.
    pub(crate) fn patch(&self, brain: i64, removed: &[i64], added: &[(i64, Vec<u64>)]) {
        let mut brains = self.brains.lock().unwrap_or_else(|e| e.into_inner());
        self.count_write(brain);
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

/// A brain's keyword index, shared by searches (read) and this process's writes (patched).
pub(crate) type SharedTerms = Arc<RwLock<BrainTerms>>;

/// A chunk written by this process: `(id, heading, text)`.
pub(crate) type NewChunk<'a> = (i64, Option<&'a str>, &'a str);

/// What a brain's chunks were loaded from: its documents' count and the sum of their
/// `updated_at` (modulo 2^31). Every write of chunks adds or deletes a document or sets its
/// `updated_at` to the time of the write, so an equal fingerprint means a reload would read the
/// same chunks.
pub(crate) type Fingerprint = (i64, i64);

/// Brains' keyword indexes, least recently used dropped first. One load runs at a time (so at
/// most one brain's index is held twice, while it is reloaded); searches never wait for one.
#[derive(Debug)]
pub(crate) struct KeywordCache {
    state: Mutex<KeywordState>,
    /// One permit: the right to read chunks into an index.
    loads: Arc<Semaphore>,
}

impl Default for KeywordCache {
    fn default() -> Self {
        Self {
            state: Mutex::default(),
            loads: Arc::new(Semaphore::new(1)),
        }
    }
}

#[derive(Debug, Default)]
struct KeywordState {
    brains: HashMap<i64, KeywordEntry>,
    loading: HashMap<i64, Loading>,
}

#[derive(Debug)]
struct KeywordEntry {
    /// `None` when the brain is too large for `KEYWORD_BUDGET`: it is searched through FTS5.
    terms: Option<SharedTerms>,
    bytes: usize,
    fingerprint: Fingerprint,
    /// Reload after this, or at once when `stale`.
    expires: Instant,
    stale: bool,
    used: Instant,
}

impl KeywordEntry {
    fn fresh(&self) -> bool {
        !self.stale && Instant::now() < self.expires
    }
}

/// A load in progress.
#[derive(Debug)]
struct Loading {
    /// This process's writes to the brain committed since the load began (the load may or may
    /// not see them), replayed onto the loaded index before it is cached.
    writes: Vec<Write>,
    /// Dropped when the load ends, which wakes every `Claim::Wait` receiver.
    done: watch::Sender<()>,
}

#[derive(Debug)]
struct Write {
    gone: HashSet<i64>,
    added: Vec<(i64, Option<String>, String)>,
}

/// What `KeywordCache::claim` found.
#[derive(Debug)]
pub(crate) enum Claim {
    /// The brain is cached and fresh (or known to be too large).
    Ready,
    /// Another task is loading the brain; the receiver's `changed()` returns when it ends.
    Wait(watch::Receiver<()>),
    /// The brain is to be loaded, by the caller.
    Load(KeywordLoad),
}

impl KeywordCache {
    /// The brain's keyword index for a search, when cached (fresh or not), and a load for the
    /// caller to start when the brain is not cached or is due for a reload and no load is
    /// running.
    pub(crate) fn lookup(
        self: &Arc<Self>,
        brain: i64,
    ) -> (Option<SharedTerms>, Option<KeywordLoad>) {
        let mut state = lock(&self.state);
        let (terms, fresh) = match state.brains.get_mut(&brain) {
            Some(entry) => {
                entry.used = Instant::now();
                (entry.terms.clone(), entry.fresh())
            }
            None => (None, false),
        };
        let load = if fresh {
            None
        } else {
            self.start(&mut state, brain)
        };
        (terms, load)
    }

    /// For a caller that wants the brain loaded now: whether it is, or who loads it.
    pub(crate) fn claim(self: &Arc<Self>, brain: i64) -> Claim {
        let mut state = lock(&self.state);
        if state.brains.get(&brain).is_some_and(KeywordEntry::fresh) {
            return Claim::Ready;
        }
        if let Some(loading) = state.loading.get(&brain) {
            return Claim::Wait(loading.done.subscribe());
        }
        match self.start(&mut state, brain) {
            Some(load) => Claim::Load(load),
            None => Claim::Ready,
        }
    }

    /// Registers a load of `brain` unless one is running.
    fn start(self: &Arc<Self>, state: &mut KeywordState, brain: i64) -> Option<KeywordLoad> {
        if state.loading.contains_key(&brain) {
            return None;
        }
        let (done, _) = watch::channel(());
        state.loading.insert(
            brain,
            Loading {
                writes: Vec::new(),
                done,
            },
        );
        let previous = state
            .brains
            .get(&brain)
            .filter(|entry| !entry.stale)
            .map(|entry| entry.fingerprint);
        Some(KeywordLoad {
            cache: Arc::clone(self),
            brain,
            previous,
            finished: false,
        })
    }

    /// Applies a write of this process (new chunks may come just before their commit, deleted
    /// ones just after it): `removed` chunk ids are gone, `added` chunks are new (idempotent: an added id already cached is replaced, not doubled). A brain that
    /// is not cached is left alone; a load in progress gets the write replayed when it ends.
    pub(crate) fn patch(&self, brain: i64, removed: &[i64], added: &[NewChunk<'_>]) {
        let gone: HashSet<i64> = removed
            .iter()
            .copied()
            .chain(added.iter().map(|chunk| chunk.0))
            .collect();
        let mut state = lock(&self.state);
        if let Some(loading) = state.loading.get_mut(&brain) {
            loading.writes.push(Write {
                gone: gone.clone(),
                added: added
                    .iter()
                    .map(|(id, heading, text)| (*id, heading.map(str::to_string), text.to_string()))
                    .collect(),
            });
        }
        let Some(shared) = state
            .brains
            .get(&brain)
            .and_then(|entry| entry.terms.clone())
        else {
            return;
        };
        drop(state);
        let (bytes, complete) = {
            let mut terms = shared.write().unwrap_or_else(|e| e.into_inner());
            let complete = apply(&mut terms, &gone, added.iter().copied());
            (terms.bytes(), complete && !terms.wants_reload())
        };
        let mut state = lock(&self.state);
        if let Some(entry) = state.brains.get_mut(&brain) {
            if entry
                .terms
                .as_ref()
                .is_some_and(|t| Arc::ptr_eq(t, &shared))
            {
                entry.bytes = bytes;
                entry.stale |= !complete;
            }
        }
        evict(&mut state, brain);
    }

    /// Makes the brain's next search reload its keyword index (it found a chunk that is gone).
    pub(crate) fn mark_stale(&self, brain: i64) {
        if let Some(entry) = lock(&self.state).brains.get_mut(&brain) {
            entry.stale = true;
        }
    }
}

/// Applies a write to an index; false when an added chunk did not fit (the brain must be
/// reloaded to make room).
fn apply<'a>(
    terms: &mut BrainTerms,
    gone: &HashSet<i64>,
    added: impl Iterator<Item = NewChunk<'a>>,
) -> bool {
    terms.remove(gone);
    let mut complete = true;
    for (id, heading, text) in added {
        complete &= terms.add(id, heading, text);
    }
    complete
}

/// After `keep` was loaded or grew: marks it too large when it is over the budget on its own,
/// else drops least recently used other brains while the cache is over its budget.
fn evict(state: &mut KeywordState, keep: i64) {
    if let Some(entry) = state.brains.get_mut(&keep) {
        if entry.bytes > KEYWORD_BUDGET {
            *entry = too_large(entry.fingerprint, entry.used);
        }
    }
    loop {
        let total: usize = state.brains.values().map(|entry| entry.bytes).sum();
        if total <= KEYWORD_BUDGET {
            return;
        }
        let oldest = state
            .brains
            .iter()
            .filter(|(id, entry)| **id != keep && entry.bytes > 0)
            .min_by_key(|(_, entry)| entry.used)
            .map(|(id, _)| *id);
        match oldest {
            Some(id) => state.brains.remove(&id),
            None => return,
        };
    }
}

fn too_large(fingerprint: Fingerprint, used: Instant) -> KeywordEntry {
    KeywordEntry {
        terms: None,
        bytes: 0,
        fingerprint,
        expires: Instant::now() + TOO_LARGE_TTL,
        stale: false,
        used,
    }
}

/// The right to load one brain's keyword index; dropping it unfinished (an error, a cancelled
/// task) lets the next search start another load.
#[derive(Debug)]
pub(crate) struct KeywordLoad {
    cache: Arc<KeywordCache>,
    brain: i64,
    /// The cached entry's fingerprint, unless it is marked stale.
    previous: Option<Fingerprint>,
    finished: bool,
}

impl KeywordLoad {
    pub(crate) fn brain(&self) -> i64 {
        self.brain
    }

    /// Waits for the other brains' loads to end; hold the permit while loading.
    pub(crate) async fn turn(&self) -> OwnedSemaphorePermit {
        Arc::clone(&self.cache.loads)
            .acquire_owned()
            .await
            .expect("the load semaphore is never closed")
    }

    /// Whether the brain's chunks are still those of its cached entry: then `renew` it instead
    /// of loading.
    pub(crate) fn unchanged(&self, fingerprint: Fingerprint) -> bool {
        self.previous == Some(fingerprint)
    }

    /// Keeps the cached entry (and the writes this process patched into it) for another
    /// `KEYWORD_TTL` (`TOO_LARGE_TTL` for a brain too large to cache).
    pub(crate) fn renew(mut self) {
        self.finished = true;
        let mut state = lock(&self.cache.state);
        let loading = state.loading.remove(&self.brain);
        if let Some(entry) = state.brains.get_mut(&self.brain) {
            let ttl = if entry.terms.is_some() {
                KEYWORD_TTL
            } else {
                TOO_LARGE_TTL
            };
            entry.expires = Instant::now() + ttl;
        }
        drop(state);
        drop(loading);
    }

    /// Caches the index loaded at `fingerprint`, after replaying this process's writes made
    /// since the load began; `None` records that the brain is too large for `KEYWORD_BUDGET`.
    pub(crate) fn finish(mut self, terms: Option<BrainTerms>, fingerprint: Fingerprint) {
        self.finished = true;
        let mut state = lock(&self.cache.state);
        let loading = state.loading.remove(&self.brain);
        let used = state
            .brains
            .get(&self.brain)
            .map_or_else(Instant::now, |entry| entry.used);
        let entry = match terms {
            Some(mut terms) => {
                let mut complete = true;
                for write in loading.iter().flat_map(|loading| &loading.writes) {
                    let added = write
                        .added
                        .iter()
                        .map(|(id, heading, text)| (*id, heading.as_deref(), text.as_str()));
                    complete &= apply(&mut terms, &write.gone, added);
                }
                KeywordEntry {
                    bytes: terms.bytes(),
                    fingerprint,
                    stale: !complete || terms.wants_reload(),
                    terms: Some(Arc::new(RwLock::new(terms))),
                    expires: Instant::now() + KEYWORD_TTL,
                    used,
                }
            }
            None => too_large(fingerprint, used),
        };
        state.brains.insert(self.brain, entry);
        evict(&mut state, self.brain);
        // `loading` (and its sender) is dropped after the entry is in place, so a waiter that
        // wakes finds it.
        drop(state);
        drop(loading);
    }
}

impl Drop for KeywordLoad {
    fn drop(&mut self) {
        if !self.finished {
            lock(&self.cache.state).loading.remove(&self.brain);
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
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
        let none = std::collections::HashSet::new();
        assert_eq!(
            codes.nearest(&pack(&[0b0001], 1), 3, &none),
            vec![9, 11, 12]
        );
        assert_eq!(
            codes.nearest(&pack(&[0b0001], 1), 10, &none),
            vec![9, 11, 12, 10]
        );
        let skip = std::collections::HashSet::from([9]);
        assert_eq!(
            codes.nearest(&pack(&[0b0001], 1), 3, &skip),
            vec![11, 12, 10]
        );
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

    fn loaded(chunks: &[NewChunk<'_>]) -> BrainTerms {
        let mut terms = BrainTerms::default();
        for (id, heading, text) in chunks {
            assert!(terms.add(*id, *heading, text));
        }
        terms
    }

    fn found(terms: &SharedTerms, text: &str) -> Vec<i64> {
        let terms = terms.read().unwrap();
        terms
            .search(
                &crate::text::query_terms(text),
                10,
                &std::collections::HashSet::new(),
            )
            .into_iter()
            .map(|(id, _)| id)
            .collect()
    }

    #[test]
    fn one_load_per_brain_and_searches_never_wait() {
        let cache = Arc::new(KeywordCache::default());
        let (terms, load) = cache.lookup(1);
        assert!(terms.is_none());
        let load = load.expect("the first search starts a load");
        assert!(matches!(cache.lookup(1), (None, None)), "no second load");
        assert!(matches!(cache.claim(1), Claim::Wait(_)));
        assert!(
            cache.lookup(2).1.is_some(),
            "other brains load on their own"
        );

        load.finish(Some(loaded(&[(10, None, "zeppelin pilots")])), (1, 5));
        let (terms, load) = cache.lookup(1);
        assert!(load.is_none());
        assert_eq!(found(&terms.expect("cached"), "zeppelin"), vec![10]);
        assert!(matches!(cache.claim(1), Claim::Ready));

        // A load dropped unfinished (an error) lets the next search try again.
        cache.mark_stale(1);
        let (terms, load) = cache.lookup(1);
        assert!(terms.is_some(), "the stale index still answers");
        let load = load.expect("a reload");
        assert!(!load.unchanged((1, 5)), "a stale entry is reloaded");
        drop(load);
        assert!(cache.lookup(1).1.is_some());
    }

    #[test]
    fn an_unchanged_brain_is_renewed_not_reloaded() {
        let cache = Arc::new(KeywordCache::default());
        let load = cache.lookup(1).1.expect("load");
        assert!(!load.unchanged((0, 0)), "nothing cached yet");
        load.finish(Some(loaded(&[(10, None, "zeppelin")])), (1, 5));
        let entry = |cache: &KeywordCache| {
            let state = lock(&cache.state);
            let entry = &state.brains[&1];
            (entry.expires, entry.fresh())
        };
        // As if KEYWORD_TTL had passed.
        lock(&cache.state).brains.get_mut(&1).unwrap().expires = Instant::now();
        let (expires, fresh) = entry(&cache);
        assert!(!fresh);
        let (terms, load) = cache.lookup(1);
        let load = load.expect("due for a check");
        assert!(!load.unchanged((2, 9)));
        assert!(load.unchanged((1, 5)));
        load.renew();
        let (renewed, fresh) = entry(&cache);
        assert!(fresh && renewed > expires);
        assert!(Arc::ptr_eq(&terms.unwrap(), &cache.lookup(1).0.unwrap()));
    }

    #[test]
    fn writes_during_a_load_are_replayed_onto_it() {
        let cache = Arc::new(KeywordCache::default());
        let load = cache.lookup(1).1.expect("load");
        // Committed while the load reads: chunk 11 replaced by 12, chunk 13 forgotten.
        cache.patch(1, &[11], &[(12, Some("Zeppelin"), "zeppelin hangar")]);
        cache.patch(1, &[13], &[]);
        // Whether or not the load saw those writes, the cached index ends the same.
        load.finish(
            Some(loaded(&[
                (10, None, "zeppelin pilots"),
                (11, None, "zeppelin crash"),
                (13, None, "zeppelin museum"),
            ])),
            (3, 3),
        );
        let terms = cache.lookup(1).0.expect("cached");
        assert_eq!(found(&terms, "zeppelin"), vec![12, 10]);
        assert!(found(&terms, "crash museum").is_empty());

        // Writes after the load patch the cached index.
        cache.patch(1, &[10], &[(14, None, "pilots wanted")]);
        assert_eq!(found(&terms, "pilots"), vec![14]);
        // The same write again changes nothing.
        cache.patch(1, &[10], &[(14, None, "pilots wanted")]);
        assert_eq!(found(&terms, "pilots"), vec![14]);
        // Other brains and uncached brains are untouched.
        cache.patch(2, &[], &[(15, None, "pilots")]);
        assert_eq!(found(&terms, "pilots"), vec![14]);
        assert!(cache.lookup(2).0.is_none());
    }

    #[tokio::test]
    async fn a_waiter_wakes_when_the_load_ends() {
        let cache = Arc::new(KeywordCache::default());
        let Claim::Load(load) = cache.claim(1) else {
            panic!("expected to load");
        };
        let Claim::Wait(mut done) = cache.claim(1) else {
            panic!("expected to wait");
        };
        let waiter = tokio::spawn(async move { while done.changed().await.is_ok() {} });
        load.finish(Some(BrainTerms::default()), (0, 0));
        waiter.await.unwrap();
        assert!(matches!(cache.claim(1), Claim::Ready));
    }

    #[test]
    fn a_brain_too_large_is_left_to_fts5() {
        let cache = Arc::new(KeywordCache::default());
        cache.lookup(1).1.expect("load").finish(None, (9, 9));
        assert!(matches!(cache.lookup(1), (None, None)));
        assert!(matches!(cache.claim(1), Claim::Ready));
    }

    #[test]
    fn least_recently_used_brains_leave_first() {
        let entry = |bytes: usize, used: Instant| KeywordEntry {
            terms: Some(Arc::default()),
            bytes,
            fingerprint: (0, 0),
            expires: Instant::now() + KEYWORD_TTL,
            stale: false,
            used,
        };
        let start = Instant::now();
        let third = KEYWORD_BUDGET / 3;
        let mut state = KeywordState::default();
        state.brains.insert(1, entry(third, start));
        state
            .brains
            .insert(2, entry(third, start + Duration::from_secs(2)));
        state
            .brains
            .insert(3, entry(third, start + Duration::from_secs(1)));
        state.brains.insert(4, entry(third, start));
        evict(&mut state, 4);
        let mut kept: Vec<i64> = state.brains.keys().copied().collect();
        kept.sort_unstable();
        assert_eq!(kept, vec![2, 3, 4]);

        // A brain over the budget on its own is marked too large, the others kept.
        state.brains.insert(5, entry(KEYWORD_BUDGET + 1, start));
        evict(&mut state, 5);
        assert!(state.brains[&5].terms.is_none());
        assert_eq!(state.brains.len(), 4);
    }
}
