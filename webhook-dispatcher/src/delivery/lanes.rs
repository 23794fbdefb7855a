//! Per-endpoint lanes: at most `per_endpoint` deliveries in flight to one
//! endpoint, the rest waiting in memory in the order they came, bounded per
//! endpoint and overall.
//!
//! This is only the bookkeeping; the caller starts a worker for each item
//! [`Lanes::submit`] hands back and asks [`Lanes::next`] what that worker
//! does after it. A slow endpoint fills its own queue and then has no room,
//! which is what keeps it from delaying anyone else: the consumer stops
//! handing it deliveries and the claim loop stops claiming them, so they
//! wait in PostgreSQL instead.

use std::{
    collections::{HashMap, VecDeque},
    sync::Mutex,
};

#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    /// Items in flight to one endpoint at once.
    pub per_endpoint: usize,
    /// Items waiting for one endpoint.
    pub waiting_per_endpoint: usize,
    /// Items waiting for all endpoints together.
    pub waiting_total: usize,
}

pub struct Lanes<T> {
    bounds: Bounds,
    inner: Mutex<Inner<T>>,
}

struct Inner<T> {
    lanes: HashMap<String, Lane<T>>,
    waiting: usize,
}

struct Lane<T> {
    running: usize,
    waiting: VecDeque<T>,
}

/// What a worker does after finishing an item.
pub enum Next<T> {
    /// Take this one, from the same endpoint's queue; `refill` when the
    /// queue just fell to half its bound, so there is room to claim more.
    Take { item: T, refill: bool },
    /// Stop: the queue is empty and the worker's slot is freed.
    Stop,
}

impl<T> Lanes<T> {
    pub fn new(bounds: Bounds) -> Self {
        Self {
            bounds,
            inner: Mutex::new(Inner {
                lanes: HashMap::new(),
                waiting: 0,
            }),
        }
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner<T>> {
        // The bookkeeping stays consistent under a panic elsewhere: every
        // change below is a few field updates with no await in between.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether one more item for `endpoint` would start or wait without
    /// passing a bound.
    pub fn has_room(&self, endpoint: &str) -> bool {
        let inner = self.inner();
        match inner.lanes.get(endpoint) {
            None => true,
            Some(lane) if lane.running < self.bounds.per_endpoint => true,
            Some(lane) => {
                lane.waiting.len() < self.bounds.waiting_per_endpoint && inner.waiting < self.bounds.waiting_total
            }
        }
    }

    /// How many more items may wait overall.
    pub fn room(&self) -> usize {
        self.bounds.waiting_total.saturating_sub(self.inner().waiting)
    }

    /// Endpoints with no room for another item.
    pub fn full(&self) -> Vec<String> {
        let inner = self.inner();
        inner
            .lanes
            .iter()
            .filter(|(_, lane)| {
                lane.running >= self.bounds.per_endpoint && lane.waiting.len() >= self.bounds.waiting_per_endpoint
            })
            .map(|(endpoint, _)| endpoint.clone())
            .collect()
    }

    /// Queues `item` for `endpoint`, or hands it back when a slot is free:
    /// the caller then starts a worker with it. Bounds are checked by
    /// [`Lanes::has_room`] beforehand; an item submitted anyway still waits.
    pub fn submit(&self, endpoint: &str, item: T) -> Option<T> {
        let mut inner = self.inner();
        let per_endpoint = self.bounds.per_endpoint;
        let lane = inner.lanes.entry(endpoint.to_owned()).or_insert_with(|| Lane {
            running: 0,
            waiting: VecDeque::new(),
        });
        if lane.running < per_endpoint {
            lane.running += 1;
            return Some(item);
        }
        lane.waiting.push_back(item);
        inner.waiting += 1;
        None
    }

    /// The next item for a worker of `endpoint` that just finished one.
    pub fn next(&self, endpoint: &str) -> Next<T> {
        let mut inner = self.inner();
        let Some(lane) = inner.lanes.get_mut(endpoint) else {
            return Next::Stop;
        };
        if let Some(item) = lane.waiting.pop_front() {
            let refill = lane.waiting.len() == self.bounds.waiting_per_endpoint / 2;
            inner.waiting -= 1;
            return Next::Take { item, refill };
        }
        lane.running = lane.running.saturating_sub(1);
        if lane.running == 0 {
            // Idle lanes are forgotten, so endpoints that come and go do
            // not grow the map.
            inner.lanes.remove(endpoint);
        }
        Next::Stop
    }

    /// Takes every waiting item out (at shutdown, to give their leases
    /// back); running workers finish what they hold.
    pub fn take_waiting(&self) -> Vec<T> {
        let mut inner = self.inner();
        inner.waiting = 0;
        inner
            .lanes
            .values_mut()
            .flat_map(|lane| lane.waiting.drain(..))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lanes() -> Lanes<u32> {
        Lanes::new(Bounds {
            per_endpoint: 2,
            waiting_per_endpoint: 3,
            waiting_total: 4,
        })
    }

    #[test]
    fn items_start_until_the_endpoint_is_busy_then_wait_in_order() {
        let lanes = lanes();
        assert_eq!(lanes.submit("a", 1), Some(1));
        assert_eq!(lanes.submit("a", 2), Some(2));
        assert_eq!(lanes.submit("a", 3), None);
        assert_eq!(lanes.submit("a", 4), None);
        assert!(matches!(lanes.next("a"), Next::Take { item: 3, .. }));
        assert!(matches!(lanes.next("a"), Next::Take { item: 4, .. }));
        assert!(matches!(lanes.next("a"), Next::Stop));
        // One worker is still running, so the next item starts at once.
        assert_eq!(lanes.submit("a", 5), Some(5));
        assert_eq!(lanes.submit("a", 6), None);
    }

    #[test]
    fn a_busy_endpoint_does_not_hold_up_another() {
        let lanes = lanes();
        for n in 0..5 {
            lanes.submit("slow", n);
        }
        assert_eq!(lanes.submit("fast", 9), Some(9));
    }

    #[test]
    fn room_runs_out_per_endpoint_and_overall() {
        let lanes = lanes();
        for n in 0..5 {
            lanes.submit("a", n);
        }
        assert!(!lanes.has_room("a"), "two running and three waiting");
        assert_eq!(lanes.full(), vec!["a".to_owned()]);
        assert!(lanes.has_room("b"), "b can start without waiting");
        lanes.submit("b", 1);
        lanes.submit("b", 2);
        assert!(lanes.has_room("b"));
        lanes.submit("b", 3);
        assert_eq!(lanes.room(), 0);
        assert!(!lanes.has_room("b"), "four wait overall");
    }

    #[test]
    fn idle_lanes_are_forgotten() {
        let lanes = lanes();
        lanes.submit("a", 1);
        assert!(matches!(lanes.next("a"), Next::Stop));
        assert!(lanes.inner().lanes.is_empty());
    }

    #[test]
    fn waiting_items_are_taken_out_at_shutdown() {
        let lanes = lanes();
        for n in 0..4 {
            lanes.submit("a", n);
        }
        let mut taken = lanes.take_waiting();
        taken.sort();
        assert_eq!(taken, vec![2, 3]);
        assert_eq!(lanes.room(), 4);
        assert!(matches!(lanes.next("a"), Next::Stop));
    }
}
