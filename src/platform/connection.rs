//! Whether each configured chat platform is reachable from this process — for `/readyz` (503
//! with the reason while one is not) and the `engram_adapter_connected` metric — and the
//! capped, jittered backoff an adapter reconnects with for as long as the process runs.

use std::collections::BTreeMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::Mutex;
use std::time::Duration;

/// The connection states of this process's adapters, by platform (`discord`, `slack`).
#[derive(Debug, Default)]
pub struct Connections {
    states: Mutex<BTreeMap<&'static str, State>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Connected,
    /// Not (yet, or any more) connected, and why.
    Down(String),
}

impl Connections {
    /// A configured platform, not connected yet.
    pub fn expect(&self, platform: &'static str) {
        self.lock()
            .entry(platform)
            .or_insert_with(|| State::Down("connecting".into()));
    }

    pub fn connected(&self, platform: &'static str) {
        let previous = self.lock().insert(platform, State::Connected);
        if previous != Some(State::Connected) {
            tracing::info!(platform, "connected");
        }
    }

    /// `reason` is shown in `/readyz`: say what failed, never a secret.
    pub fn down(&self, platform: &'static str, reason: impl Into<String>) {
        let reason = reason.into();
        let previous = self.lock().insert(platform, State::Down(reason.clone()));
        if previous == Some(State::Connected) {
            tracing::warn!(platform, %reason, "disconnected");
        }
    }

    /// The configured platforms that are not connected, with why.
    pub fn unavailable(&self) -> Vec<(&'static str, String)> {
        self.lock()
            .iter()
            .filter_map(|(platform, state)| match state {
                State::Connected => None,
                State::Down(reason) => Some((*platform, reason.clone())),
            })
            .collect()
    }

    /// `engram_adapter_connected{platform}`: 1 connected, 0 not, for each configured platform.
    pub fn render(&self) -> String {
        let states = self.lock();
        if states.is_empty() {
            return String::new();
        }
        let mut out = String::from(
            "# HELP engram_adapter_connected Whether a configured chat platform is connected.\n\
             # TYPE engram_adapter_connected gauge\n",
        );
        for (platform, state) in states.iter() {
            let up = u8::from(*state == State::Connected);
            out.push_str(&format!(
                "engram_adapter_connected{{platform=\"{platform}\"}} {up}\n"
            ));
        }
        out
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<&'static str, State>> {
        self.states
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Exponential backoff with full jitter: each wait is random in `[base·2ⁿ/2, base·2ⁿ]`, never
/// above `cap`, so many processes that lost the same platform do not come back in step.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    attempt: u32,
}

impl Backoff {
    pub fn new(base: Duration, cap: Duration) -> Self {
        Self {
            base,
            cap,
            attempt: 0,
        }
    }

    /// The wait before the next try.
    pub fn next_wait(&mut self) -> Duration {
        let ceiling = self
            .base
            .saturating_mul(1u32 << self.attempt.min(20))
            .min(self.cap);
        self.attempt = self.attempt.saturating_add(1);
        let half = ceiling / 2;
        half + half.mul_f64(random_fraction())
    }

    /// A connection held: the next loss starts from `base` again.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

/// A number in `[0, 1)`, different on every call (seeded by the process's random hasher keys).
fn random_fraction() -> f64 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_follow_the_adapters() {
        let connections = Connections::default();
        assert!(connections.unavailable().is_empty());
        assert_eq!(connections.render(), "");
        connections.expect("discord");
        assert_eq!(
            connections.unavailable(),
            [("discord", "connecting".to_string())]
        );
        connections.connected("discord");
        connections.expect("discord");
        assert!(
            connections.unavailable().is_empty(),
            "expect does not undo a connection"
        );
        assert!(connections
            .render()
            .contains("engram_adapter_connected{platform=\"discord\"} 1\n"));
        connections.down("discord", "Discord is unreachable: dns error");
        assert_eq!(
            connections.unavailable()[0].1,
            "Discord is unreachable: dns error"
        );
        assert!(connections
            .render()
            .contains("engram_adapter_connected{platform=\"discord\"} 0\n"));
    }

    #[test]
    fn backoff_grows_to_its_cap_with_jitter_and_resets() {
        let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
        let waits: Vec<Duration> = (0..12).map(|_| backoff.next_wait()).collect();
        for (n, wait) in waits.iter().enumerate() {
            let ceiling = Duration::from_secs(1 << n.min(6)).min(Duration::from_secs(60));
            assert!(
                *wait >= ceiling / 2 && *wait <= ceiling,
                "try {n}: {wait:?} not within [{:?}, {ceiling:?}]",
                ceiling / 2
            );
        }
        assert!(waits[11] <= Duration::from_secs(60));
        let distinct: std::collections::HashSet<_> = waits[6..].iter().collect();
        assert!(distinct.len() > 1, "jittered: {waits:?}");
        backoff.reset();
        assert!(backoff.next_wait() <= Duration::from_secs(1));
    }
}
