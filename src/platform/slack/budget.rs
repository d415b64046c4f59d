//! Slack's rate limits as engram keeps them: one evenly spaced budget per method tier per
//! workspace (Tier 2 ≈ 20, Tier 3 ≈ 50, Tier 4 ≈ 100 calls a minute; engram stays a tenth
//! under), shared by every answer in the workspace, and `chat.postMessage`'s one message a
//! second per channel. A 429's `Retry-After` pushes the budget it hit back, so the next call
//! waits it out instead of causing another.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Evenly spaced calls per key (a workspace, or a channel).
#[derive(Debug)]
pub struct Spacing {
    spacing: Duration,
    next: Mutex<HashMap<String, Instant>>,
}

impl Spacing {
    pub fn per_minute(calls: u32) -> Self {
        Self::new(Duration::from_secs(60) / calls.max(1))
    }

    pub fn new(spacing: Duration) -> Self {
        Self {
            spacing,
            next: Mutex::new(HashMap::new()),
        }
    }

    /// Reserves the key's next slot and waits for it.
    pub async fn acquire(&self, key: &str) {
        let slot = self.reserve(key, None).expect("an unbounded reservation");
        tokio::time::sleep_until(slot).await;
    }

    /// Reserves the key's next slot if it comes within `within`, and waits for it; `false`
    /// (and nothing reserved) when it is further away.
    pub async fn acquire_within(&self, key: &str, within: Duration) -> bool {
        match self.reserve(key, Some(within)) {
            Some(slot) => {
                tokio::time::sleep_until(slot).await;
                true
            }
            None => false,
        }
    }

    fn reserve(&self, key: &str, within: Option<Duration>) -> Option<Instant> {
        let mut next = self.next.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let slot = next.get(key).map_or(now, |&at| at.max(now));
        if within.is_some_and(|within| slot > now + within) {
            return None;
        }
        next.insert(key.to_string(), slot + self.spacing);
        Some(slot)
    }

    /// Slack answered 429 for this key: nothing goes for `retry_after`.
    pub fn push_back(&self, key: &str, retry_after: Duration) {
        let mut next = self.next.lock().unwrap_or_else(|p| p.into_inner());
        let until = Instant::now() + retry_after;
        let at = next.entry(key.to_string()).or_insert(until);
        *at = (*at).max(until);
    }
}

/// The tiers of the Web API methods engram calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    /// `chat.startStream`, `chat.stopStream`.
    Two,
    /// `chat.update`, `chat.delete`, `reactions.add`, `reactions.remove`.
    Three,
    /// `chat.appendStream`, `chat.postEphemeral`, `users.info`.
    Four,
    /// `chat.postMessage`: about one a second per channel.
    PostMessage,
    /// A Tier 3 method with a budget of its own (`conversations.history`,
    /// `conversations.replies`): Slack limits each method separately, and reading a channel's
    /// past must not take from what answers' edits need.
    Method(&'static str),
}

/// Every budget of one Slack connection.
#[derive(Debug)]
pub struct Budgets {
    tier2: Spacing,
    tier3: Spacing,
    tier4: Spacing,
    post: Spacing,
    /// Tier 3 methods with budgets of their own, keyed by method and workspace.
    methods: Spacing,
}

/// A tenth under each tier's published minimum, so network jitter between two calls cannot
/// push one workspace over Slack's limit.
impl Default for Budgets {
    fn default() -> Self {
        Self {
            tier2: Spacing::per_minute(18),
            tier3: Spacing::per_minute(45),
            tier4: Spacing::per_minute(90),
            post: Spacing::new(Duration::from_millis(1100)),
            methods: Spacing::per_minute(45),
        }
    }
}

impl Budgets {
    /// The budget a call of `tier` takes from, and its key: the workspace, or for
    /// `chat.postMessage` the channel.
    pub fn of<'a>(&self, tier: Tier, team: &'a str, channel: &'a str) -> (&Spacing, String) {
        match tier {
            Tier::Two => (&self.tier2, team.to_string()),
            Tier::Three => (&self.tier3, team.to_string()),
            Tier::Four => (&self.tier4, team.to_string()),
            Tier::PostMessage => (&self.post, format!("{team}:{channel}")),
            Tier::Method(method) => (&self.methods, format!("{method}:{team}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn calls_are_spaced_per_workspace_and_pushed_back_by_429s() {
        let tier2 = Spacing::per_minute(20);
        let start = Instant::now();
        tier2.acquire("T1").await;
        tier2.acquire("T1").await;
        assert_eq!(start.elapsed(), Duration::from_secs(3));
        let other = Instant::now();
        tier2.acquire("T2").await;
        assert_eq!(other.elapsed(), Duration::ZERO, "another workspace");
        tier2.push_back("T1", Duration::from_secs(30));
        let later = Instant::now();
        tier2.acquire("T1").await;
        assert_eq!(later.elapsed(), Duration::from_secs(30));
    }

    #[tokio::test(start_paused = true)]
    async fn a_slot_too_far_away_is_not_taken() {
        let tier2 = Spacing::per_minute(20);
        assert!(tier2.acquire_within("T1", Duration::from_secs(1)).await);
        assert!(!tier2.acquire_within("T1", Duration::from_secs(1)).await);
        let start = Instant::now();
        tier2.acquire("T1").await;
        assert_eq!(
            start.elapsed(),
            Duration::from_secs(3),
            "nothing was reserved"
        );
    }
}
