//! Admission to the answer pool: at most N answers in flight; waiting questions are served
//! round-robin across tenants (one busy server cannot starve another), each can be told its
//! position; and a per-user rate limit.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::brain::TenantId;

/// The answer pool's gate.
#[derive(Debug)]
pub struct AnswerPool {
    max_in_flight: usize,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    in_flight: usize,
    next_ticket: u64,
    /// Waiting tickets per tenant, oldest first.
    queues: HashMap<TenantId, VecDeque<(u64, oneshot::Sender<()>)>>,
    /// Tenants with waiting tickets, in serving order.
    rotation: VecDeque<TenantId>,
}

/// A slot in the pool; dropping it frees the slot for the next waiting question.
#[derive(Debug)]
pub struct Permit {
    pool: Arc<AnswerPool>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.pool.release();
    }
}

/// A question waiting for a slot.
#[derive(Debug)]
pub struct Waiting {
    pool: Arc<AnswerPool>,
    tenant: TenantId,
    ticket: u64,
    granted: oneshot::Receiver<()>,
}

impl Waiting {
    /// How many questions will be served before this one (0: it is next), if nothing else
    /// arrives.
    pub fn position(&self) -> usize {
        self.pool.position(self.tenant, self.ticket)
    }

    /// Waits for the slot.
    pub async fn ready(mut self) -> Permit {
        let granted = (&mut self.granted).await;
        debug_assert!(granted.is_ok(), "the pool never drops a waiting sender");
        Permit {
            pool: self.pool.clone(),
        }
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        // A question given up on (its channel closed, the process stopping) leaves the queue;
        // if its slot was granted meanwhile, pass the slot on.
        if self.granted.try_recv().is_ok() {
            self.pool.release();
        } else {
            self.pool.forget(self.tenant, self.ticket);
        }
    }
}

/// Admission: a slot now, or a place in the queue.
#[derive(Debug)]
pub enum Admission {
    Now(Permit),
    Queued(Waiting),
}

impl AnswerPool {
    pub fn new(max_in_flight: usize) -> Arc<Self> {
        Arc::new(Self {
            max_in_flight: max_in_flight.max(1),
            state: Mutex::new(State::default()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// Asks for a slot for a question of `tenant`.
    pub fn admit(self: &Arc<Self>, tenant: TenantId) -> Admission {
        let mut state = self.lock();
        if state.in_flight < self.max_in_flight && state.rotation.is_empty() {
            state.in_flight += 1;
            return Admission::Now(Permit { pool: self.clone() });
        }
        let ticket = state.next_ticket;
        state.next_ticket += 1;
        let (sender, granted) = oneshot::channel();
        let queue = state.queues.entry(tenant).or_default();
        queue.push_back((ticket, sender));
        if queue.len() == 1 {
            state.rotation.push_back(tenant);
        }
        Admission::Queued(Waiting {
            pool: self.clone(),
            tenant,
            ticket,
            granted,
        })
    }

    /// Answers in flight now.
    pub fn in_flight(&self) -> usize {
        self.lock().in_flight
    }

    fn release(&self) {
        let mut state = self.lock();
        state.in_flight -= 1;
        while state.in_flight < self.max_in_flight {
            let Some(tenant) = state.rotation.pop_front() else {
                return;
            };
            let queue = state
                .queues
                .get_mut(&tenant)
                .expect("rotation names a queue");
            let (_, sender) = queue.pop_front().expect("rotation names a non-empty queue");
            if queue.is_empty() {
                state.queues.remove(&tenant);
            } else {
                state.rotation.push_back(tenant);
            }
            if sender.send(()).is_ok() {
                state.in_flight += 1;
            }
        }
    }

    fn forget(&self, tenant: TenantId, ticket: u64) {
        let mut state = self.lock();
        let Some(queue) = state.queues.get_mut(&tenant) else {
            return;
        };
        queue.retain(|(waiting, _)| *waiting != ticket);
        if queue.is_empty() {
            state.queues.remove(&tenant);
            state.rotation.retain(|t| *t != tenant);
        }
    }

    /// Round-robin position: the tenant's own earlier tickets, plus, from every other tenant,
    /// as many tickets as get a turn before this one.
    fn position(&self, tenant: TenantId, ticket: u64) -> usize {
        let state = self.lock();
        let Some(queue) = state.queues.get(&tenant) else {
            return 0;
        };
        let Some(index) = queue.iter().position(|(waiting, _)| *waiting == ticket) else {
            return 0;
        };
        let turn = state
            .rotation
            .iter()
            .position(|t| *t == tenant)
            .unwrap_or(0);
        let others: usize = state
            .rotation
            .iter()
            .enumerate()
            .filter(|(_, other)| **other != tenant)
            .map(|(at, other)| {
                let rounds = index + usize::from(at < turn);
                state.queues.get(other).map_or(0, |q| q.len().min(rounds))
            })
            .sum();
        index + others
    }
}

/// At most `per_window` questions per user per `window`.
#[derive(Debug)]
pub struct UserRateLimit {
    per_window: usize,
    window: Duration,
    recent: Mutex<HashMap<String, VecDeque<Instant>>>,
}

impl UserRateLimit {
    pub fn new(per_window: u32, window: Duration) -> Self {
        Self {
            per_window: per_window as usize,
            window,
            recent: Mutex::new(HashMap::new()),
        }
    }

    /// Counts a question; `Err(wait)` says how long until the user may ask again.
    pub fn check(&self, user: &str) -> Result<(), Duration> {
        let now = Instant::now();
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        let times = recent.entry(user.to_string()).or_default();
        while times.front().is_some_and(|&at| now - at >= self.window) {
            times.pop_front();
        }
        if times.len() >= self.per_window {
            let oldest = *times.front().expect("the window is full");
            return Err(self.window - (now - oldest));
        }
        times.push_back(now);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    async fn slot(pool: &Arc<AnswerPool>, tenant: TenantId) -> Permit {
        match pool.admit(tenant) {
            Admission::Now(permit) => permit,
            Admission::Queued(waiting) => waiting.ready().await,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn never_more_than_the_bound_in_flight() {
        let pool = AnswerPool::new(4);
        let peak = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for n in 0..100 {
            let (pool, peak) = (pool.clone(), peak.clone());
            tasks.push(tokio::spawn(async move {
                let _permit = slot(&pool, TenantId(n % 7)).await;
                peak.fetch_max(pool.in_flight(), Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(100 + n as u64)).await;
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(peak.load(Ordering::SeqCst), 4);
        assert_eq!(pool.in_flight(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_busy_tenant_does_not_starve_another() {
        let pool = AnswerPool::new(2);
        let busy = TenantId(1);
        let quiet = TenantId(2);
        let held: Vec<Permit> = vec![slot(&pool, busy).await, slot(&pool, busy).await];
        let mut queued = Vec::new();
        for _ in 0..20 {
            let Admission::Queued(waiting) = pool.admit(busy) else {
                panic!("the pool is full")
            };
            queued.push((busy, waiting));
        }
        let Admission::Queued(quiet_question) = pool.admit(quiet) else {
            panic!("the pool is full")
        };
        assert_eq!(
            quiet_question.position(),
            1,
            "one busy question, then the quiet one"
        );
        assert_eq!(queued[5].1.position(), 6);

        drop(held);
        // Two slots freed: the busy tenant's oldest and then the quiet tenant's question.
        let served = quiet_question.ready().await;
        assert_eq!(pool.in_flight(), 2);
        drop(served);
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiter_that_gives_up_leaves_no_hole() {
        let pool = AnswerPool::new(1);
        let first = slot(&pool, TenantId(1)).await;
        let Admission::Queued(gone) = pool.admit(TenantId(2)) else {
            panic!("full")
        };
        let Admission::Queued(next) = pool.admit(TenantId(3)) else {
            panic!("full")
        };
        assert_eq!(next.position(), 1);
        drop(gone);
        assert_eq!(next.position(), 0);
        drop(first);
        let _permit = next.ready().await;
        assert_eq!(pool.in_flight(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn users_are_rate_limited_politely() {
        let limit = UserRateLimit::new(3, Duration::from_secs(60));
        for _ in 0..3 {
            assert!(limit.check("ann").is_ok());
        }
        tokio::time::advance(Duration::from_secs(20)).await;
        assert_eq!(limit.check("ann"), Err(Duration::from_secs(40)));
        assert!(
            limit.check("bob").is_ok(),
            "another user has their own budget"
        );
        tokio::time::advance(Duration::from_secs(40)).await;
        assert!(limit.check("ann").is_ok());
    }
}
