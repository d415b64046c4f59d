//! The seeded randomized-input harness of the unit tests: a small deterministic generator,
//! input mutators, and a runner that checks one property over many generated cases under a
//! hang watchdog. Test-only (`#[cfg(test)]` in `lib.rs`; the extractor's tests include this
//! same file).
//!
//! Every run uses the same base seed, so CI is reproducible. Locally:
//! - `ENGRAM_FUZZ_SCALE=20` runs twenty times the default number of cases,
//! - `ENGRAM_FUZZ_SEED=<n>` picks another base seed (new cases),
//! - `ENGRAM_FUZZ_CASE=<seed>` replays only the case a failure reported.

use std::sync::mpsc;
use std::time::Duration;

/// The base seed of every CI run.
const DEFAULT_SEED: u64 = 0x0e6a_3a11_5eed_2024;

/// How long one case may run before the runner calls it a hang. Cases take microseconds to a
/// few tens of milliseconds in a debug build; this bound is four orders of magnitude above
/// that, so a machine shared by several builds never trips it, while a hang or a quadratic
/// blow-up on the large cases (hundreds of kilobytes) does.
const CASE_DEADLINE: Duration = Duration::from_secs(120);

/// A splitmix64 generator: tiny, fast and good enough to drive test inputs.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n` > 0).
    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// A number in `low..=high`.
    pub(crate) fn range(&mut self, low: usize, high: usize) -> usize {
        low + self.below(high - low + 1)
    }

    /// True with probability `percent` / 100.
    pub(crate) fn percent(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    pub(crate) fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    /// [`Rng::pick`] for values that copy (words, numbers).
    pub(crate) fn choose<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }

    /// A length skewed towards small values but sometimes up to `max`: most inputs are short
    /// (many cases, many shapes) and a few are long (limits, blow-ups).
    pub(crate) fn length(&mut self, max: usize) -> usize {
        match self.below(10) {
            0..=5 => self.range(0, max.min(16)),
            6..=8 => self.range(0, max.min(512)),
            _ => self.range(0, max),
        }
    }

    pub(crate) fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next_u64() as u8).collect()
    }

    /// A character from a mix chosen to hit edge cases: ASCII, whitespace of every kind,
    /// control characters, Latin letters with diacritics, combining marks, CJK, emoji (four
    /// bytes in UTF-8), right-to-left text, zero-width characters, and case-mapping oddities.
    pub(crate) fn char(&mut self) -> char {
        const SPECIAL: &[char] = &[
            ' ',
            ' ',
            '\t',
            '\n',
            '\n',
            '\r',
            '\u{0}',
            '\u{7}',
            '\u{1b}',
            '\u{7f}',
            '\u{85}',
            '\u{a0}',
            '\u{ad}',
            '\u{200b}',
            '\u{200d}',
            '\u{2028}',
            '\u{3000}',
            '\u{feff}',
            '\u{fffd}',
            'é',
            'ß',
            'İ',
            'ſ',
            'Σ',
            'ς',
            'ǅ',
            '\u{301}',
            '\u{308}',
            '日',
            '本',
            '。',
            '！',
            '？',
            'ア',
            '한',
            'ж',
            'א',
            'ا',
            '🦀',
            '👍',
            '\u{1f3fb}',
            '@',
            '<',
            '>',
            '!',
            '#',
            '`',
            '~',
            '|',
            '-',
            '*',
            '[',
            ']',
            '(',
            ')',
            '&',
            ';',
            '.',
            '?',
            ':',
            '/',
            '\\',
            '"',
            '\'',
        ];
        match self.below(10) {
            0..=4 => (b' ' + self.below(95) as u8) as char,
            5..=8 => self.choose(SPECIAL),
            _ => loop {
                if let Some(c) = char::from_u32(self.below(0x11_0000) as u32) {
                    break c;
                }
            },
        }
    }

    /// `len` characters from [`Rng::char`].
    pub(crate) fn string(&mut self, len: usize) -> String {
        (0..len).map(|_| self.char()).collect()
    }

    /// Text made of `pieces` chosen from `vocabulary`, with random characters between some.
    pub(crate) fn text_from(&mut self, vocabulary: &[&str], pieces: usize) -> String {
        let mut text = String::new();
        for _ in 0..pieces {
            if self.percent(10) {
                let len = self.range(1, 3);
                text.push_str(&self.string(len));
            } else {
                text.push_str(self.choose(vocabulary));
            }
        }
        text
    }
}

/// Mutates `input` in one to four steps: truncation, bit flips, byte overwrites, insertions
/// of random bytes or of `tokens` (magic numbers, markup), deletions, duplicated or moved
/// ranges (splicing the input into itself), and splices from `donor`. The result is at most
/// about twice `input` plus `donor`.
pub(crate) fn mutate_bytes(rng: &mut Rng, input: &[u8], donor: &[u8], tokens: &[&[u8]]) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..rng.range(1, 4) {
        let len = out.len();
        let at = if len == 0 { 0 } else { rng.below(len + 1) };
        match rng.below(9) {
            0 => out.truncate(at),
            1 if len > 0 => {
                let i = rng.below(len);
                out[i] ^= 1 << rng.below(8);
            }
            2 if len > 0 => {
                for _ in 0..rng.range(1, 8) {
                    let i = rng.below(len);
                    out[i] = rng.next_u64() as u8;
                }
            }
            3 => {
                let n = rng.range(1, 16);
                let bytes = rng.bytes(n);
                out.splice(at..at, bytes);
            }
            4 if !tokens.is_empty() => {
                let token = rng.pick(tokens).to_vec();
                out.splice(at..at, token);
            }
            5 if len > 0 => {
                let end = (at + rng.range(1, 64)).min(len);
                out.drain(at.min(end)..end);
            }
            6 if len > 0 && len < 1 << 20 => {
                // Repeat a range in place: duplicated records, nested elements.
                let start = rng.below(len);
                let end = (start + rng.range(1, 256)).min(len);
                let piece = out[start..end].to_vec();
                for _ in 0..rng.range(1, 4) {
                    out.splice(start..start, piece.iter().copied());
                }
            }
            7 if len > 1 => {
                // Move a range elsewhere.
                let start = rng.below(len);
                let end = (start + rng.range(1, 128)).min(len);
                let piece: Vec<u8> = out.drain(start..end).collect();
                let to = rng.below(out.len() + 1);
                out.splice(to..to, piece);
            }
            8 if !donor.is_empty() => {
                let start = rng.below(donor.len());
                let end = (start + rng.range(1, 512)).min(donor.len());
                out.splice(at..at, donor[start..end].iter().copied());
            }
            _ => out.truncate(at),
        }
    }
    out
}

/// [`mutate_bytes`] for text parsers: the mutated bytes read back as UTF-8 (invalid sequences
/// become U+FFFD, as a decoder would leave them).
pub(crate) fn mutate_text(rng: &mut Rng, input: &str, donor: &str, tokens: &[&str]) -> String {
    let tokens: Vec<&[u8]> = tokens.iter().map(|t| t.as_bytes()).collect();
    let bytes = mutate_bytes(rng, input.as_bytes(), donor.as_bytes(), &tokens);
    String::from_utf8_lossy(&bytes).into_owned()
}

/// A JSON value of a random type: the shapes a field of a platform payload might take
/// when it is wrong (another type, an edge-case number, an odd or long string, nesting).
pub(crate) fn json_value(rng: &mut Rng, depth: usize) -> serde_json::Value {
    use serde_json::{json, Value};
    match rng.below(if depth > 3 { 8 } else { 10 }) {
        0 => Value::Null,
        1 => json!(rng.percent(50)),
        2 => json!(rng.choose(&[0i64, -1, 1, i64::MIN, i64::MAX, 42])),
        3 => json!(rng.choose(&[u64::MAX, 1 << 53, 18_446_744_073_709_551_615u64])),
        4 => json!(rng.choose(&[0.5f64, -0.0, 1e308, -1e-308, 3.0])),
        5 => {
            let len = rng.length(40);
            json!(rng.string(len))
        }
        6 => json!(rng.choose(&[
            "",
            "0",
            "-1",
            "1210000000000000399",
            "18446744073709551616",
            "99999999999999999999999",
            "1.5",
            "T0 1",
            "<@U0BOT>",
            "https://example.com/f",
            "not a url",
            "2024-13-45T99:99:99Z",
        ])),
        7 => json!("x".repeat(rng.range(1000, 70_000))),
        8 => Value::Array(
            (0..rng.range(0, 3))
                .map(|_| json_value(rng, depth + 1))
                .collect(),
        ),
        _ => {
            let mut object = serde_json::Map::new();
            for _ in 0..rng.range(0, 3) {
                let key = rng.pick(&["id", "type", "name", "text", "user", "value"]);
                object.insert((*key).to_string(), json_value(rng, depth + 1));
            }
            Value::Object(object)
        }
    }
}

/// Mutates one to four nodes of a JSON document: a value replaced by one of another type, a
/// key removed or added, an array element dropped or repeated, a value nested deeply.
pub(crate) fn mutate_json(rng: &mut Rng, value: &serde_json::Value) -> serde_json::Value {
    fn count(value: &serde_json::Value) -> usize {
        1 + match value {
            serde_json::Value::Array(items) => items.iter().map(count).sum(),
            serde_json::Value::Object(map) => map.values().map(count).sum(),
            _ => 0,
        }
    }
    /// Mutates the `target`-th node in preorder; `seen` counts nodes visited so far.
    fn visit(rng: &mut Rng, value: &mut serde_json::Value, target: usize, seen: &mut usize) {
        use serde_json::Value;
        if *seen == target {
            *seen += 1;
            match (rng.below(5), &mut *value) {
                (0, Value::Object(map)) if !map.is_empty() => {
                    let keys: Vec<String> = map.keys().cloned().collect();
                    map.remove(rng.pick(&keys));
                }
                (1, Value::Object(map)) => {
                    let key = rng.pick(&["id", "type", "extra", "text", "files", "options"]);
                    map.insert((*key).to_string(), json_value(rng, 0));
                }
                (2, Value::Array(items)) if !items.is_empty() => {
                    let i = rng.below(items.len());
                    if rng.percent(50) {
                        items.remove(i);
                    } else {
                        let item = items[i].clone();
                        items.extend(std::iter::repeat_n(item, rng.range(1, 100)));
                    }
                }
                (3, _) => {
                    let mut nested = value.take();
                    // Past serde_json's recursion limit (128), short of a stack's worth.
                    for _ in 0..rng.length(400) {
                        nested = Value::Array(vec![nested]);
                    }
                    *value = nested;
                }
                (4, _) => *value = json_value(rng, 0),
                // Most often a value of the same type: what a parser accepts and the code
                // after it must handle.
                _ => *value = same_type(rng, value),
            }
            return;
        }
        *seen += 1;
        match value {
            serde_json::Value::Array(items) => {
                for item in items {
                    visit(rng, item, target, seen);
                }
            }
            serde_json::Value::Object(map) => {
                for item in map.values_mut() {
                    visit(rng, item, target, seen);
                }
            }
            _ => {}
        }
    }
    fn same_type(rng: &mut Rng, value: &serde_json::Value) -> serde_json::Value {
        use serde_json::{json, Value};
        match value {
            Value::Bool(b) => json!(!b),
            Value::Number(_) => json!(rng.choose(&[0u64, 1, 2, 19, 1 << 32, u64::MAX])),
            Value::String(_) => {
                let len = rng.length(300);
                match rng.below(3) {
                    0 => json!(rng.string(len)),
                    1 => json!(rng.choose(&["", "0", "18446744073709551615", "<@1>", " "])),
                    _ => json!(format!("{}", rng.next_u64())),
                }
            }
            other => other.clone(),
        }
    }
    let mut out = value.clone();
    for _ in 0..rng.range(1, 4) {
        let target = rng.below(count(&out));
        visit(rng, &mut out, target, &mut 0);
    }
    out
}

/// How many times the default case counts to run (`ENGRAM_FUZZ_SCALE`, default 1).
#[allow(
    clippy::disallowed_methods,
    reason = "randomized tests take their scale and seeds from the environment"
)]
fn scale() -> f64 {
    std::env::var("ENGRAM_FUZZ_SCALE")
        .ok()
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|s| *s > 0.0)
        .unwrap_or(1.0)
}

#[allow(
    clippy::disallowed_methods,
    reason = "randomized tests take their scale and seeds from the environment"
)]
fn env_seed(name: &str) -> Option<u64> {
    let value = std::env::var(name).ok()?;
    let value = value.trim();
    match value.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => value.parse().ok(),
    }
}

/// The seed of case `index` of property `name`: independent across properties and cases.
fn case_seed(base: u64, name: &str, index: usize) -> u64 {
    let mut hash = 0xcbf2_9ce4_8422_2325u64;
    for byte in name.bytes() {
        hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
    }
    Rng::new(base ^ hash ^ (index as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)).next_u64()
}

/// Checks `property` on `cases` generated cases (times `ENGRAM_FUZZ_SCALE`), each from its own
/// seeded [`Rng`]. The cases run on a worker thread watched by this one: a case that panics
/// (a crash or a failed assertion) or runs past [`CASE_DEADLINE`] fails the test with the seed
/// that replays it (`ENGRAM_FUZZ_CASE`).
pub(crate) fn check<F>(name: &str, cases: usize, property: F)
where
    F: Fn(&mut Rng) + Send + 'static,
{
    let seeds: Vec<u64> = match env_seed("ENGRAM_FUZZ_CASE") {
        Some(seed) => vec![seed],
        None => {
            let base = env_seed("ENGRAM_FUZZ_SEED").unwrap_or(DEFAULT_SEED);
            let count = ((cases as f64) * scale()).ceil().max(1.0) as usize;
            (0..count).map(|i| case_seed(base, name, i)).collect()
        }
    };
    let total = seeds.len();
    let (started, cases_started) = mpsc::channel::<(usize, u64)>();
    let worker = std::thread::Builder::new()
        .name(format!("randomized {name}"))
        .spawn(move || {
            for (index, &seed) in seeds.iter().enumerate() {
                if started.send((index, seed)).is_err() {
                    return;
                }
                property(&mut Rng::new(seed));
            }
        })
        .expect("a thread for the cases");
    let mut current: Option<(usize, u64)> = None;
    loop {
        match cases_started.recv_timeout(CASE_DEADLINE) {
            Ok(case) => current = Some(case),
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let (index, seed) = current.unwrap_or_default();
                panic!(
                    "{name}: case {index} of {total} still runs after {CASE_DEADLINE:?} \
                     (a hang or a blow-up); replay with ENGRAM_FUZZ_CASE={seed:#x}"
                );
            }
        }
    }
    if worker.join().is_err() {
        let (index, seed) = current.unwrap_or_default();
        panic!("{name}: case {index} of {total} failed; replay with ENGRAM_FUZZ_CASE={seed:#x}");
    }
}

/// The workspace's folder (the one with `Cargo.lock`), found from the package's folder as
/// cargo gives it when the tests run (not when they are built, so a build shared between
/// checkouts never reads another checkout's files).
#[allow(
    clippy::disallowed_methods,
    reason = "randomized tests take their scale and seeds from the environment"
)]
fn workspace_root() -> std::path::PathBuf {
    let package = std::path::PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").expect("run under cargo: no CARGO_MANIFEST_DIR"),
    );
    package
        .ancestors()
        .find(|dir| dir.join("Cargo.lock").is_file())
        .map_or_else(|| package.clone(), std::path::Path::to_path_buf)
}

/// Reads a file of the repository (a demo file, a test fixture) as a mutation seed.
pub(crate) fn repo_file(path: &str) -> Vec<u8> {
    let path = workspace_root().join(path);
    std::fs::read(&path).unwrap_or_else(|e| panic!("seed file {}: {e}", path.display()))
}

/// Reads a file of the shared corpus (`../shared/corpus/files`, beside the repository, as the
/// corpus tests expect it) as a mutation seed.
pub(crate) fn corpus_file(name: &str) -> Vec<u8> {
    let path = workspace_root().join("../shared/corpus/files").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("corpus seed {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_replay_and_differ() {
        let a = case_seed(DEFAULT_SEED, "x", 0);
        assert_eq!(a, case_seed(DEFAULT_SEED, "x", 0));
        assert_ne!(a, case_seed(DEFAULT_SEED, "x", 1));
        assert_ne!(a, case_seed(DEFAULT_SEED, "y", 0));
        let mut rng = Rng::new(a);
        let first: Vec<u64> = (0..4).map(|_| rng.next_u64()).collect();
        let mut again = Rng::new(a);
        assert_eq!(first, (0..4).map(|_| again.next_u64()).collect::<Vec<_>>());
    }

    #[test]
    fn a_failing_case_fails_the_check() {
        let failed = std::panic::catch_unwind(|| {
            check("always fails", 3, |rng| assert!(rng.below(10) > 100))
        });
        let message = failed.expect_err("the check fails");
        let message = message
            .downcast_ref::<String>()
            .cloned()
            .unwrap_or_default();
        assert!(message.contains("ENGRAM_FUZZ_CASE=0x"), "{message}");
    }

    #[test]
    fn mutations_stay_bounded() {
        let mut rng = Rng::new(7);
        let input = vec![b'a'; 1000];
        for _ in 0..500 {
            let out = mutate_bytes(&mut rng, &input, b"donor", &[b"<p>"]);
            assert!(out.len() <= 2 * input.len() + 4 * 1024, "{}", out.len());
        }
    }
}
