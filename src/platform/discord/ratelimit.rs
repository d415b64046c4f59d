//! Discord's REST rate limits as engram keeps them: every request waits for its route's bucket,
//! learnt from the `X-RateLimit-*` headers of earlier answers (which routes share a bucket,
//! how many requests it has left, when it resets), and for the global limit (50 requests a
//! second per bot, and a global 429 pauses everything). Requests in one bucket go one at a
//! time, in the order they came, so a burst in one channel queues instead of colliding. The
//! caller ([`super::rest`]) sends, [`Limiter::settle`]s the answer's headers, and on a 429 goes
//! round again.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::OwnedMutexGuard;
use tokio::time::Instant;

/// Discord's global limit: requests per second per bot token.
pub const GLOBAL_PER_SECOND: usize = 50;
/// The span engram counts `GLOBAL_PER_SECOND` requests in: a second and a margin, since
/// Discord counts them as they arrive, a few milliseconds after engram sent them, and unevenly.
const GLOBAL_SPAN: Duration = Duration::from_millis(1_100);

/// Where a request goes, as Discord's limits see it: the route's shape (ids replaced by
/// placeholders) and its major parameter (the channel, guild or webhook), which separates
/// buckets of the same shape.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Route {
    /// `POST /channels/{id}/messages`.
    pub shape: String,
    /// `channels/123`, or empty.
    pub major: String,
}

impl Route {
    /// The route of `method path` (a path under `/api/v10`, e.g. `/channels/1/messages/2`).
    pub fn of(method: &str, path: &str) -> Self {
        let path = path.split('?').next().unwrap_or_default();
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let mut shape = format!("{method} ");
        let mut major = String::new();
        for (i, segment) in segments.iter().enumerate() {
            let previous = i.checked_sub(1).map(|p| segments[p]);
            let before_previous = i.checked_sub(2).map(|p| segments[p]);
            let part = match (before_previous, previous) {
                (_, Some(kind @ ("channels" | "guilds" | "webhooks"))) if major.is_empty() => {
                    major = format!("{kind}/{segment}");
                    "{major}"
                }
                // A webhook's or an interaction's token is part of what it is limited by.
                (Some("webhooks" | "interactions"), _) if i == 2 => {
                    major.push('/');
                    major.push_str(segment);
                    "{token}"
                }
                (_, Some("interactions")) if major.is_empty() => {
                    major = format!("interactions/{segment}");
                    "{major}"
                }
                (_, Some("reactions")) => "{emoji}",
                _ if segment.bytes().all(|b| b.is_ascii_digit()) => "{id}",
                _ => segment,
            };
            shape.push('/');
            shape.push_str(part);
        }
        Self { shape, major }
    }

    /// The resource the route acts on: its shape without the method and a last `{id}`, so
    /// creating, editing and deleting a channel's messages are one resource
    /// (`/channels/{major}/messages`) and its reactions or typing indicator others. Discord
    /// puts routes of different resources in different buckets; a route whose bucket is not
    /// known yet is held back only by the buckets of its own resource (were Discord ever to
    /// share one across resources, the first request would meet a 429, wait it out and go
    /// again).
    pub fn resource(&self) -> String {
        let path = self
            .shape
            .split_once(' ')
            .map_or(self.shape.as_str(), |(_, path)| path);
        path.strip_suffix("/{id}").unwrap_or(path).to_string()
    }
}

/// The bucket of routes no answer has named a bucket for yet (followed by their resource).
const UNKNOWN_BUCKET: &str = "?";

/// What a bucket is known to allow.
#[derive(Debug, Default)]
struct Window {
    /// Requests left before `reset_at` (`None`: not known yet).
    remaining: Option<u32>,
    reset_at: Option<Instant>,
}

impl Window {
    /// When the next request may go: now, or when the bucket resets.
    fn ready_at(&self, now: Instant) -> Instant {
        match (self.remaining, self.reset_at) {
            (Some(0), Some(reset_at)) if reset_at > now => reset_at,
            _ => now,
        }
    }
}

/// A request's place in its bucket: held while it is in flight, so the next one in the bucket
/// waits for this one's answer (and its headers).
#[derive(Debug)]
pub struct Ticket {
    route: Route,
    window: OwnedMutexGuard<Window>,
}

/// What Discord's answer said about the limits.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Answered {
    /// `X-RateLimit-Bucket`.
    pub bucket: Option<String>,
    /// `X-RateLimit-Remaining`.
    pub remaining: Option<u32>,
    /// `X-RateLimit-Reset-After`.
    pub reset_after: Option<Duration>,
    /// A 429's `retry_after` (body, else `Retry-After`).
    pub retry_after: Option<Duration>,
    /// A 429 for every route (`X-RateLimit-Global`, or `"global": true`).
    pub global: bool,
}

#[derive(Debug, Default)]
struct Global {
    /// When each of the last `GLOBAL_PER_SECOND` requests went.
    sent: VecDeque<Instant>,
    /// A global 429 stops every request until then.
    paused_until: Option<Instant>,
}

/// The rate limits of one bot token, shared by every request the process makes with it.
#[derive(Debug, Default)]
pub struct Limiter {
    /// Route shape → Discord's bucket id, once an answer has named it.
    buckets_of_routes: Mutex<HashMap<String, String>>,
    /// (bucket id, or the route's shape until known; major) → its window.
    windows: Mutex<HashMap<(String, String), SharedWindow>>,
    /// Per major parameter and resource ([`Route::resource`]): until when some bucket of them
    /// was last said to be empty. A route whose bucket is not known yet waits for that, since
    /// it may be that bucket.
    emptied_until: Mutex<HashMap<(String, String), Instant>>,
    global: Mutex<Global>,
}

impl Limiter {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// The window of `route`'s bucket. A route whose bucket no answer has named yet shares
    /// one window with every other such route of its major parameter and resource: whichever
    /// bucket it turns out to be in, it cannot find that bucket emptier than the last answer
    /// said.
    fn window(&self, route: &Route) -> SharedWindow {
        let bucket = lock(&self.buckets_of_routes)
            .get(&route.shape)
            .cloned()
            .unwrap_or_else(|| format!("{UNKNOWN_BUCKET}{}", route.resource()));
        lock(&self.windows)
            .entry((bucket, route.major.clone()))
            .or_default()
            .clone()
    }

    /// When `route` may go, by what its window says — and, while its bucket is not known,
    /// not before any bucket of its major parameter and resource that was said to be empty has
    /// reset.
    fn ready_at(&self, route: &Route, window: &Window) -> Instant {
        let now = Instant::now();
        let ready = window.ready_at(now);
        if lock(&self.buckets_of_routes).contains_key(&route.shape) {
            return ready;
        }
        lock(&self.emptied_until)
            .get(&(route.major.clone(), route.resource()))
            .map_or(ready, |until| ready.max(*until))
    }

    /// Waits for `route`'s turn: behind the requests before it in its bucket, for the bucket
    /// to reset when it has nothing left, and for the global limit.
    pub async fn acquire(&self, route: &Route) -> Ticket {
        let window = loop {
            let shared = self.window(route);
            let window = shared.clone().lock_owned().await;
            tokio::time::sleep_until(self.ready_at(route, &window)).await;
            // An answer may have named the route's bucket while this request waited in the
            // window of routes not known yet: then it queues in its bucket's window instead.
            if Arc::ptr_eq(&shared, &self.window(route)) {
                break window;
            }
        };
        self.global_slot(true).await;
        Ticket {
            route: route.clone(),
            window,
        }
    }

    /// `route`'s turn now, or `None` (nothing reserved) when it would have to wait: another
    /// request is in flight in its bucket, the bucket has nothing left, or the global limit is
    /// reached. For what is not worth sending late (the typing indicator).
    pub async fn try_acquire(&self, route: &Route) -> Option<Ticket> {
        let window = self.window(route).try_lock_owned().ok()?;
        if self.ready_at(route, &window) > Instant::now() {
            return None;
        }
        self.global_slot(false).await.then_some(Ticket {
            route: route.clone(),
            window,
        })
    }

    /// Takes a place within the global limit, waiting for one when `wait`; `false` when it
    /// would have had to wait and `wait` is not set.
    async fn global_slot(&self, wait: bool) -> bool {
        loop {
            let at = {
                let mut global = lock(&self.global);
                let now = Instant::now();
                let paused = global.paused_until.filter(|until| *until > now);
                while global
                    .sent
                    .front()
                    .is_some_and(|sent| now.duration_since(*sent) >= GLOBAL_SPAN)
                {
                    global.sent.pop_front();
                }
                let full =
                    (global.sent.len() >= GLOBAL_PER_SECOND).then(|| global.sent[0] + GLOBAL_SPAN);
                match paused.into_iter().chain(full).max() {
                    None => {
                        global.sent.push_back(now);
                        return true;
                    }
                    Some(at) => at,
                }
            };
            if !wait {
                return false;
            }
            tokio::time::sleep_until(at).await;
        }
    }

    /// Records what Discord answered to the request holding `ticket`, and lets the next
    /// request in its bucket go.
    pub fn settle(&self, mut ticket: Ticket, answered: &Answered) {
        let now = Instant::now();
        if let Some(bucket) = &answered.bucket {
            let mut routes = lock(&self.buckets_of_routes);
            if routes.get(&ticket.route.shape) != Some(bucket) {
                routes.insert(ticket.route.shape.clone(), bucket.clone());
                // The route's window moves under the bucket's id (shared with the other
                // routes in it); what this answer says goes there.
                drop(routes);
                let shared = self.window(&ticket.route);
                if let Ok(mut window) = shared.try_lock() {
                    window.remaining = answered.remaining;
                    window.reset_at = answered.reset_after.map(|after| now + after);
                };
            }
        }
        if let Some(remaining) = answered.remaining {
            ticket.window.remaining = Some(remaining);
        }
        if let Some(after) = answered.reset_after {
            ticket.window.reset_at = Some(now + after);
        }
        if let Some(retry_after) = answered.retry_after {
            if answered.global {
                let until = now + retry_after;
                let mut global = lock(&self.global);
                global.paused_until = Some(global.paused_until.map_or(until, |u| u.max(until)));
            } else {
                ticket.window.remaining = Some(0);
                let until = now + retry_after;
                ticket.window.reset_at =
                    Some(ticket.window.reset_at.map_or(until, |at| at.max(until)));
            }
        }
        if let (Some(0), Some(reset_at)) = (ticket.window.remaining, ticket.window.reset_at) {
            let mut emptied = lock(&self.emptied_until);
            let until = emptied
                .entry((ticket.route.major.clone(), ticket.route.resource()))
                .or_insert(reset_at);
            *until = (*until).max(reset_at);
        }
    }
}

/// A bucket's window; its lock is a request's turn.
type SharedWindow = Arc<tokio::sync::Mutex<Window>>;

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_keep_their_major_parameter_and_hide_the_rest() {
        let create = Route::of("POST", "/channels/12/messages");
        assert_eq!(create.shape, "POST /channels/{major}/messages");
        assert_eq!(create.major, "channels/12");
        let edit = Route::of("PATCH", "/channels/12/messages/99");
        assert_eq!(edit.shape, "PATCH /channels/{major}/messages/{id}");
        assert_eq!(edit.major, "channels/12");
        let react = Route::of("PUT", "/channels/12/messages/99/reactions/%E2%9C%85/@me");
        assert_eq!(
            react.shape,
            "PUT /channels/{major}/messages/{id}/reactions/{emoji}/@me"
        );
        let hook = Route::of("PATCH", "/webhooks/5/tok-en/messages/@original");
        assert_eq!(
            hook.shape,
            "PATCH /webhooks/{major}/{token}/messages/@original"
        );
        assert_eq!(hook.major, "webhooks/5/tok-en");
        let callback = Route::of("POST", "/interactions/7/tok/callback");
        assert_eq!(
            callback.shape,
            "POST /interactions/{major}/{token}/callback"
        );
        assert_eq!(callback.major, "interactions/7/tok");
        assert_eq!(
            Route::of("PUT", "/applications/3/commands").shape,
            "PUT /applications/{id}/commands"
        );
    }

    fn answered(bucket: &str, remaining: u32, reset_after_ms: u64) -> Answered {
        Answered {
            bucket: Some(bucket.into()),
            remaining: Some(remaining),
            reset_after: Some(Duration::from_millis(reset_after_ms)),
            ..Answered::default()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_empty_bucket_waits_for_its_reset() {
        let limiter = Limiter::new();
        let route = Route::of("POST", "/channels/1/messages");
        let start = Instant::now();
        let ticket = limiter.acquire(&route).await;
        limiter.settle(ticket, &answered("b", 0, 5_000));
        let ticket = limiter.acquire(&route).await;
        assert_eq!(start.elapsed(), Duration::from_secs(5));
        limiter.settle(ticket, &answered("b", 4, 5_000));
        let ticket = limiter.acquire(&route).await;
        assert_eq!(start.elapsed(), Duration::from_secs(5), "4 left: no wait");
        drop(ticket);
        let other = Route::of("POST", "/channels/2/messages");
        let ticket = limiter.acquire(&other).await;
        assert_eq!(
            start.elapsed(),
            Duration::from_secs(5),
            "another channel is another bucket"
        );
        drop(ticket);
    }

    #[tokio::test(start_paused = true)]
    async fn routes_in_one_bucket_share_its_window() {
        let limiter = Limiter::new();
        let create = Route::of("POST", "/channels/1/messages");
        let edit = Route::of("PATCH", "/channels/1/messages/9");
        let ticket = limiter.acquire(&edit).await;
        limiter.settle(ticket, &answered("messages", 3, 5_000));
        let ticket = limiter.acquire(&create).await;
        limiter.settle(ticket, &answered("messages", 0, 4_000));
        let start = Instant::now();
        let ticket = limiter.acquire(&edit).await;
        assert_eq!(
            start.elapsed(),
            Duration::from_secs(4),
            "the edit waits for the bucket the create emptied"
        );
        drop(ticket);
    }

    #[tokio::test(start_paused = true)]
    async fn a_route_not_seen_yet_waits_for_what_its_channel_last_said() {
        let limiter = Limiter::new();
        let create = Route::of("POST", "/channels/1/messages");
        let edit = Route::of("PATCH", "/channels/1/messages/9");
        let start = Instant::now();
        let ticket = limiter.acquire(&create).await;
        limiter.settle(ticket, &answered("messages", 0, 3_000));
        let ticket = limiter.acquire(&edit).await;
        assert_eq!(
            start.elapsed(),
            Duration::from_secs(3),
            "the first edit waits as the first create's answer said"
        );
        limiter.settle(ticket, &answered("messages", 4, 2_000));
        let other_channel = Route::of("PATCH", "/channels/2/messages/9");
        let start = Instant::now();
        drop(limiter.acquire(&other_channel).await);
        assert_eq!(start.elapsed(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn a_route_not_seen_yet_waits_for_any_bucket_its_channel_emptied() {
        let limiter = Limiter::new();
        let create = Route::of("POST", "/channels/1/messages");
        let edit = Route::of("PATCH", "/channels/1/messages/9");
        // The first create names the bucket with room left; later ones empty it.
        let ticket = limiter.acquire(&create).await;
        limiter.settle(ticket, &answered("messages", 4, 5_000));
        let ticket = limiter.acquire(&create).await;
        limiter.settle(ticket, &answered("messages", 0, 4_000));
        let start = Instant::now();
        let ticket = limiter.acquire(&edit).await;
        assert_eq!(
            start.elapsed(),
            Duration::from_secs(4),
            "an edit, whose bucket is not known, may be in the emptied one"
        );
        limiter.settle(ticket, &answered("edits", 4, 5_000));
        let ticket = limiter.acquire(&create).await;
        limiter.settle(ticket, &answered("messages", 0, 3_000));
        let start = Instant::now();
        drop(limiter.acquire(&edit).await);
        assert_eq!(
            start.elapsed(),
            Duration::ZERO,
            "once known to be another bucket, the edit does not wait for this one"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_route_not_seen_yet_is_not_held_by_another_resource_emptied() {
        let limiter = Limiter::new();
        let react = Route::of("PUT", "/channels/1/messages/9/reactions/%E2%9C%85/@me");
        let ticket = limiter.acquire(&react).await;
        limiter.settle(ticket, &answered("reactions", 0, 250));
        let start = Instant::now();
        drop(
            limiter
                .acquire(&Route::of("PATCH", "/channels/1/messages/9"))
                .await,
        );
        drop(
            limiter
                .acquire(&Route::of("POST", "/channels/1/typing"))
                .await,
        );
        assert_eq!(
            start.elapsed(),
            Duration::ZERO,
            "an emptied reactions bucket does not hold a first edit or typing"
        );
        drop(
            limiter
                .acquire(&Route::of(
                    "DELETE",
                    "/channels/1/messages/9/reactions/x/@me",
                ))
                .await,
        );
        assert_eq!(
            start.elapsed(),
            Duration::from_millis(250),
            "but does hold another reaction route not seen yet"
        );
    }

    #[test]
    fn a_resource_is_the_route_without_its_method_and_last_id() {
        let resource = |method, path| Route::of(method, path).resource();
        assert_eq!(
            resource("POST", "/channels/1/messages"),
            resource("PATCH", "/channels/1/messages/2")
        );
        assert_eq!(
            resource("DELETE", "/channels/1/messages/2"),
            "/channels/{major}/messages"
        );
        assert_ne!(
            resource("PUT", "/channels/1/messages/2/reactions/x/@me"),
            resource("POST", "/channels/1/messages")
        );
    }

    #[tokio::test(start_paused = true)]
    async fn requests_queued_before_their_bucket_was_named_move_to_it() {
        let limiter = Limiter::new();
        let create = Route::of("POST", "/channels/1/messages");
        let edit = Route::of("PATCH", "/channels/1/messages/9");
        // The bucket's window (named by a create) is held by a request in flight.
        let ticket = limiter.acquire(&create).await;
        limiter.settle(ticket, &answered("messages", 3, 5_000));
        let in_flight = limiter.acquire(&create).await;
        // Two edits queue while their bucket is not known.
        let first_edit = limiter.acquire(&edit).await;
        let waiting = {
            let limiter = limiter.clone();
            let edit = edit.clone();
            tokio::spawn(async move { limiter.acquire(&edit).await })
        };
        tokio::task::yield_now().await;
        // The first edit's answer names its bucket: the one the create is in flight in.
        limiter.settle(first_edit, &answered("messages", 1, 5_000));
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(
            !waiting.is_finished(),
            "the second edit waits behind the create in flight in its bucket"
        );
        limiter.settle(in_flight, &answered("messages", 0, 4_000));
        let start = Instant::now();
        drop(waiting.await.unwrap());
        assert_eq!(start.elapsed(), Duration::from_secs(4), "and for its reset");
    }

    #[tokio::test(start_paused = true)]
    async fn a_429_holds_the_bucket_and_a_global_one_holds_everything() {
        let limiter = Limiter::new();
        let route = Route::of("PUT", "/channels/1/messages/2/reactions/x/@me");
        let ticket = limiter.acquire(&route).await;
        limiter.settle(
            ticket,
            &Answered {
                retry_after: Some(Duration::from_millis(250)),
                ..Answered::default()
            },
        );
        let start = Instant::now();
        drop(limiter.acquire(&route).await);
        assert_eq!(start.elapsed(), Duration::from_millis(250));
        let ticket = limiter.acquire(&route).await;
        limiter.settle(
            ticket,
            &Answered {
                retry_after: Some(Duration::from_secs(2)),
                global: true,
                ..Answered::default()
            },
        );
        let start = Instant::now();
        drop(
            limiter
                .acquire(&Route::of("POST", "/channels/8/messages"))
                .await,
        );
        assert_eq!(start.elapsed(), Duration::from_secs(2));
    }

    #[tokio::test(start_paused = true)]
    async fn cosmetic_requests_are_skipped_rather_than_delayed() {
        let limiter = Limiter::new();
        let typing = Route::of("POST", "/channels/1/typing");
        let held = limiter.try_acquire(&typing).await.expect("a free bucket");
        assert!(
            limiter.try_acquire(&typing).await.is_none(),
            "one in flight: skipped"
        );
        limiter.settle(held, &answered("typing", 0, 3_000));
        assert!(
            limiter.try_acquire(&typing).await.is_none(),
            "empty: skipped"
        );
        tokio::time::advance(Duration::from_secs(3)).await;
        assert!(limiter.try_acquire(&typing).await.is_some(), "reset: sent");
    }

    #[tokio::test(start_paused = true)]
    async fn the_global_limit_spreads_a_burst_over_seconds() {
        let limiter = Limiter::new();
        let start = Instant::now();
        for channel in 0..(GLOBAL_PER_SECOND as u64 + 1) {
            drop(
                limiter
                    .acquire(&Route::of("POST", &format!("/channels/{channel}/messages")))
                    .await,
            );
        }
        assert_eq!(start.elapsed(), GLOBAL_SPAN);
    }
}
