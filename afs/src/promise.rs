//! The callback promises fileservers hold for us.
//!
//! A promise says "until `expires`, I will tell you before this file changes".
//! Breaks and server resets are applied here synchronously, inside the callback
//! handler and before its reply, so no one trusts a promise the server revoked.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::callback::CallbackEvent;
use crate::types::{CallBack, CallBackType, Fid};

/// A promise expiring sooner than this is treated as already gone (as kAFS does).
pub const EXPIRY_MARGIN: Duration = Duration::from_secs(10);

/// One promise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Promise {
    pub server: SocketAddr,
    pub expires: Instant,
}

/// Every promise we hold, by file.
#[derive(Debug, Default)]
pub struct PromiseTable {
    promises: Mutex<HashMap<Fid, Promise>>,
}

impl PromiseTable {
    pub fn new() -> Self {
        Self::default()
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<Fid, Promise>> {
        self.promises.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records the promise that came with a reply (a dropped or zero-length one
    /// removes any promise we had).
    pub fn record(&self, fid: Fid, server: SocketAddr, cb: &CallBack, now: Instant) {
        let mut map = self.map();
        if cb.cb_type == CallBackType::Dropped || cb.expiration_time == 0 {
            map.remove(&fid);
            return;
        }
        let expires = now + Duration::from_secs(u64::from(cb.expiration_time));
        map.insert(fid, Promise { server, expires });
    }

    pub fn get(&self, fid: Fid) -> Option<Promise> {
        self.map().get(&fid).copied()
    }

    /// True when a promise covers `fid` for at least the expiry margin.
    pub fn is_valid(&self, fid: Fid, now: Instant) -> bool {
        self.get(fid)
            .is_some_and(|p| p.expires > now + EXPIRY_MARGIN)
    }

    pub fn len(&self) -> usize {
        self.map().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Servers we hold at least one promise from.
    pub fn servers(&self) -> Vec<SocketAddr> {
        let mut v: Vec<SocketAddr> = self.map().values().map(|p| p.server).collect();
        v.sort();
        v.dedup();
        v
    }

    pub fn clear(&self) {
        self.map().clear();
    }

    /// Applies a break or reset; returns the files that lost their promise.
    pub fn apply(&self, event: &CallbackEvent) -> Vec<Fid> {
        let mut map = self.map();
        let before: Vec<Fid> = match event {
            CallbackEvent::Broken { fids, .. } => map
                .keys()
                .filter(|f| {
                    fids.iter().any(|b| {
                        *b == **f || (b.vnode == 0 && b.unique == 0 && b.volume == f.volume)
                    })
                })
                .copied()
                .collect(),
            CallbackEvent::ServerReset { server, .. } => map
                .iter()
                .filter(|(_, p)| p.server == *server)
                .map(|(f, _)| *f)
                .collect(),
        };
        for f in &before {
            map.remove(f);
        }
        before
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cb(secs: u32) -> CallBack {
        CallBack {
            version: 1,
            expiration_time: secs,
            cb_type: CallBackType::Shared,
        }
    }

    #[test]
    fn breaks_and_resets_remove_exactly_what_they_cover() {
        let t = PromiseTable::new();
        let now = Instant::now();
        let s1: SocketAddr = "10.0.0.1:7000".parse().unwrap();
        let s2: SocketAddr = "10.0.0.2:7000".parse().unwrap();
        let a = Fid::new(5, 2, 1);
        let b = Fid::new(5, 4, 1);
        let c = Fid::new(6, 2, 1);
        t.record(a, s1, &cb(3600), now);
        t.record(b, s1, &cb(3600), now);
        t.record(c, s2, &cb(3600), now);
        assert!(t.is_valid(a, now));
        let gone = t.apply(&CallbackEvent::Broken {
            server: s1,
            fids: vec![a],
            at: now,
        });
        assert_eq!(gone, vec![a]);
        assert!(!t.is_valid(a, now) && t.is_valid(b, now));
        // A volume-wide break.
        t.record(a, s1, &cb(3600), now);
        let mut gone = t.apply(&CallbackEvent::Broken {
            server: s1,
            fids: vec![Fid::new(5, 0, 0)],
            at: now,
        });
        gone.sort();
        assert_eq!(gone, vec![a, b]);
        assert!(t.is_valid(c, now));
        let gone = t.apply(&CallbackEvent::ServerReset {
            server: s2,
            at: now,
        });
        assert_eq!(gone, vec![c]);
        assert!(t.is_empty());
    }

    #[test]
    fn near_expiry_is_not_valid() {
        let t = PromiseTable::new();
        let now = Instant::now();
        let s: SocketAddr = "10.0.0.1:7000".parse().unwrap();
        let f = Fid::new(1, 1, 1);
        t.record(f, s, &cb(5), now);
        assert!(!t.is_valid(f, now), "5 s left is inside the margin");
        t.record(f, s, &cb(0), now);
        assert!(t.get(f).is_none());
    }
}
