//! Per-channel write budget shared by every answer in a channel: evenly spaced slots (e.g. 5
//! writes per 5 s → one per second), pushed back by what the platform says — its rate-limit
//! headers and 429 responses — so engram never causes a 429 it could have avoided.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use super::ChannelKey;

#[derive(Debug, Default, Clone, Copy)]
struct Channel {
    /// The earliest time the next write may go.
    next_slot: Option<Instant>,
}

/// Spaces writes per channel. Cheap to share: one per platform connection.
#[derive(Debug)]
pub struct RateBudget {
    spacing: Duration,
    channels: Mutex<HashMap<ChannelKey, Channel>>,
}

impl RateBudget {
    /// `writes` per `window` per channel (Discord: about 5 message edits per 5 s).
    pub fn new(writes: u32, window: Duration) -> Self {
        Self {
            spacing: window / writes.max(1),
            channels: Mutex::new(HashMap::new()),
        }
    }

    /// Reserves the channel's next slot and waits for it.
    pub async fn acquire(&self, channel: &ChannelKey) {
        let slot = {
            let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
            let state = channels.entry(channel.clone()).or_default();
            let now = Instant::now();
            let slot = state.next_slot.map_or(now, |next| next.max(now));
            state.next_slot = Some(slot + self.spacing);
            slot
        };
        tokio::time::sleep_until(slot).await;
    }

    /// The platform said the channel has `remaining` writes until `reset_after` from now
    /// (Discord's `X-RateLimit-Remaining` / `-Reset-After`): with none left, nothing goes
    /// before the reset.
    pub fn observe(&self, channel: &ChannelKey, remaining: u32, reset_after: Duration) {
        if remaining == 0 {
            self.push_back(channel, reset_after);
        }
    }

    /// The platform answered 429: nothing goes to the channel for `retry_after`.
    pub fn rate_limited(&self, channel: &ChannelKey, retry_after: Duration) {
        self.push_back(channel, retry_after);
    }

    fn push_back(&self, channel: &ChannelKey, wait: Duration) {
        let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        let state = channels.entry(channel.clone()).or_default();
        let until = Instant::now() + wait;
        state.next_slot = Some(state.next_slot.map_or(until, |next| next.max(until)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn writes_are_spaced_per_channel() {
        let budget = RateBudget::new(5, Duration::from_secs(5));
        let a = ChannelKey("a".into());
        let b = ChannelKey("b".into());
        let start = Instant::now();
        for _ in 0..3 {
            budget.acquire(&a).await;
        }
        assert_eq!(start.elapsed(), Duration::from_secs(2));
        let other = Instant::now();
        budget.acquire(&b).await;
        assert_eq!(
            other.elapsed(),
            Duration::ZERO,
            "another channel has its own budget"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_platform_pushes_the_next_write_back() {
        let budget = RateBudget::new(5, Duration::from_secs(5));
        let a = ChannelKey("a".into());
        budget.acquire(&a).await;
        budget.rate_limited(&a, Duration::from_secs(3));
        let start = Instant::now();
        budget.acquire(&a).await;
        assert_eq!(start.elapsed(), Duration::from_secs(3));
        budget.observe(&a, 0, Duration::from_secs(4));
        let start = Instant::now();
        budget.acquire(&a).await;
        assert_eq!(start.elapsed(), Duration::from_secs(4));
        budget.observe(&a, 3, Duration::from_secs(4));
        let start = Instant::now();
        budget.acquire(&a).await;
        assert_eq!(
            start.elapsed(),
            Duration::from_secs(1),
            "remaining writes: normal spacing"
        );
    }
}
