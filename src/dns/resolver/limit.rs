//! Fair shares: a count of things in flight (forwarded queries, TCP connections) bounded per
//! client and in all. A client at its own bound is refused a new one even when there is room
//! in all, so no client can take what the others need; nothing already granted is ever taken
//! back from anyone.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// A bound per client and a bound in all (the per-client one is the smaller).
#[derive(Debug)]
pub(crate) struct Limit {
    per_client: usize,
    total: usize,
    counts: Mutex<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    /// Only clients with something in flight.
    by_client: HashMap<String, usize>,
}

/// One granted thing, counted until dropped.
#[derive(Debug)]
pub(crate) struct Permit {
    limit: Arc<Limit>,
    client: String,
}

impl Limit {
    /// At most `per_client` per client and `total` in all.
    pub(crate) fn new(per_client: usize, total: usize) -> Arc<Self> {
        Arc::new(Limit {
            per_client,
            total,
            counts: Mutex::new(Counts::default()),
        })
    }

    /// One more for `client`, unless it is at its bound or everyone together is at theirs.
    pub(crate) fn try_acquire(self: &Arc<Self>, client: &str) -> Option<Permit> {
        let mut c = self.counts.lock().expect("resolver limit lock");
        if c.total >= self.total {
            return None;
        }
        let mine = c.by_client.get(client).copied().unwrap_or(0);
        if mine >= self.per_client {
            return None;
        }
        c.total += 1;
        c.by_client.insert(client.to_string(), mine + 1);
        Some(Permit {
            limit: self.clone(),
            client: client.to_string(),
        })
    }

    /// How many `client` holds, and how many are held in all.
    #[cfg(test)]
    fn held(&self, client: &str) -> (usize, usize) {
        let c = self.counts.lock().unwrap();
        (c.by_client.get(client).copied().unwrap_or(0), c.total)
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut c = self.limit.counts.lock().expect("resolver limit lock");
        c.total -= 1;
        if let Some(n) = c.by_client.get_mut(&self.client) {
            *n -= 1;
            if *n == 0 {
                c.by_client.remove(&self.client);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_at_its_bound_does_not_take_the_others_share() {
        let l = Limit::new(2, 3);
        let a: Vec<Permit> = (0..5).filter_map(|_| l.try_acquire("a")).collect();
        assert_eq!(a.len(), 2, "a gets its own share only");
        let b = l.try_acquire("b").expect("b still gets one");
        assert!(l.try_acquire("c").is_none(), "all three are taken");
        assert_eq!(l.held("a"), (2, 3));
        drop(b);
        assert!(l.try_acquire("a").is_none(), "a is still at its bound");
        let c = l.try_acquire("c").expect("b's one is free again");
        drop(a);
        assert_eq!(l.held("a"), (0, 1));
        assert!(
            l.counts.lock().unwrap().by_client.len() == 1,
            "no entry left for a"
        );
        drop(c);
        assert_eq!(l.held("c"), (0, 0));
    }
}
