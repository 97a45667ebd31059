//! When each call next needs attention, in deadline order.
//!
//! Every call has at most one deadline (its [`CallMachine::next_deadline`]),
//! kept here and in an ordered set: the endpoint sleeps until the earliest and
//! then runs only the calls that are due, instead of walking every call on a
//! fixed tick.
//!
//! [`CallMachine::next_deadline`]: crate::call::CallMachine::next_deadline

use std::collections::{BTreeSet, HashMap};
use std::time::Instant;

use super::CallId;

#[derive(Debug, Default)]
pub(super) struct Timers {
    by_call: HashMap<CallId, Instant>,
    order: BTreeSet<(Instant, CallId)>,
}

impl Timers {
    /// Sets (or with None, clears) `call`'s deadline.
    pub fn set(&mut self, call: CallId, at: Option<Instant>) {
        let old = match at {
            Some(t) => self.by_call.insert(call, t),
            None => self.by_call.remove(&call),
        };
        if old == at {
            return;
        }
        if let Some(t) = old {
            self.order.remove(&(t, call));
        }
        if let Some(t) = at {
            self.order.insert((t, call));
        }
    }

    /// The earliest deadline.
    pub fn next(&self) -> Option<Instant> {
        self.order.first().map(|(t, _)| *t)
    }

    /// Removes and returns the calls whose deadline is at or before `now`.
    pub fn expired(&mut self, now: Instant) -> Vec<CallId> {
        let mut due = Vec::new();
        while let Some(&(t, id)) = self.order.first() {
            if t > now {
                break;
            }
            self.order.pop_first();
            self.by_call.remove(&id);
            due.push(id);
        }
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn deadlines_come_due_in_order_and_move() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut t = Timers::default();
        t.set(1, Some(ms(30)));
        t.set(2, Some(ms(10)));
        t.set(3, Some(ms(20)));
        assert_eq!(t.next(), Some(ms(10)));
        t.set(2, Some(ms(40)));
        t.set(3, None);
        assert_eq!(t.next(), Some(ms(30)));
        assert_eq!(t.expired(ms(35)), vec![1]);
        assert_eq!(t.expired(ms(35)), Vec::<CallId>::new());
        assert_eq!(t.expired(ms(40)), vec![2]);
        assert_eq!(t.next(), None);
    }
}
