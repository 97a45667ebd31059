//! A simulated network whose every decision comes from one seed.
//!
//! Datagrams sent on a [`SimSocket`] are lost, duplicated, delayed and reordered
//! as [`Faults`] say, with one seeded random generator, and delivered in order of
//! arrival time by one task. Hosts can be cut off ([`Network::partition`]),
//! datagrams dropped by rule ([`Network::drop_when`]) and watched
//! ([`Network::observe`]); anyone can send from any address
//! ([`Network::inject`]), as an attacker on the path could. Time is tokio's: on a
//! paused clock a simulated minute passes as soon as every task waits.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rx::packet::Header;
use rx::transport::BoxFuture;
use rx::Transport;
use tokio::sync::{mpsc, Notify};
use tokio::time::Instant;

/// What the network does to each datagram.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// Probability that a datagram is lost.
    pub loss: f64,
    /// Probability that a datagram arrives twice.
    pub duplicate: f64,
    /// Probability that a datagram is held back by up to `reorder_by` more.
    pub reorder: f64,
    pub reorder_by: Duration,
    /// One-way delay, plus up to `jitter` more.
    pub delay: Duration,
    pub jitter: Duration,
}

impl Faults {
    /// A LAN: 0.2 ms each way, a little jitter, nothing lost.
    pub fn lan() -> Self {
        Self {
            delay: Duration::from_micros(200),
            jitter: Duration::from_micros(100),
            ..Self::default()
        }
    }

    /// A bad network: `loss` both ways, some duplication and reordering.
    pub fn lossy(loss: f64) -> Self {
        Self {
            loss,
            duplicate: 0.02,
            reorder: 0.1,
            reorder_by: Duration::from_millis(5),
            ..Self::lan()
        }
    }
}

/// One datagram on the wire.
#[derive(Debug, Clone)]
pub struct Datagram {
    pub from: SocketAddr,
    pub to: SocketAddr,
    pub bytes: Bytes,
}

impl Datagram {
    /// Its Rx header, if it has one.
    pub fn header(&self) -> Option<Header> {
        Header::decode(&self.bytes).ok()
    }
}

/// Counters of what the network did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct NetStats {
    pub sent: u64,
    pub lost: u64,
    pub duplicated: u64,
    pub delivered: u64,
}

type Rule = Box<dyn FnMut(&Datagram) -> bool + Send>;

struct InFlight {
    at: Instant,
    seq: u64,
    datagram: Datagram,
}

impl PartialEq for InFlight {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for InFlight {}
impl PartialOrd for InFlight {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for InFlight {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(o.at, o.seq))
    }
}

struct Net {
    rng: StdRng,
    faults: Faults,
    inboxes: HashMap<SocketAddr, mpsc::UnboundedSender<(Bytes, SocketAddr)>>,
    cut_off: HashSet<IpAddr>,
    drop_rules: Vec<Rule>,
    observers: Vec<Rule>,
    wire: BinaryHeap<Reverse<InFlight>>,
    seq: u64,
    stats: NetStats,
}

/// The network: cheap to clone, one per simulation.
#[derive(Clone)]
pub struct Network {
    net: Arc<Mutex<Net>>,
    wake: Arc<Notify>,
}

impl Network {
    /// A network seeded with `seed`. Must be called within a tokio runtime: it
    /// starts the task that delivers datagrams.
    pub fn new(seed: u64, faults: Faults) -> Self {
        let network = Self {
            net: Arc::new(Mutex::new(Net {
                rng: StdRng::seed_from_u64(seed),
                faults,
                inboxes: HashMap::new(),
                cut_off: HashSet::new(),
                drop_rules: Vec::new(),
                observers: Vec::new(),
                wire: BinaryHeap::new(),
                seq: 0,
                stats: NetStats::default(),
            })),
            wake: Arc::new(Notify::new()),
        };
        tokio::spawn(network.clone().deliver());
        network
    }

    fn lock(&self) -> MutexGuard<'_, Net> {
        self.net.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A socket at `addr` (its own address on this network).
    pub fn bind(&self, addr: SocketAddr) -> Arc<SimSocket> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.lock().inboxes.insert(addr, tx);
        Arc::new(SimSocket {
            addr,
            network: self.clone(),
            inbox: tokio::sync::Mutex::new(rx),
        })
    }

    pub fn set_faults(&self, faults: Faults) {
        self.lock().faults = faults;
    }

    /// Cuts `host` off (nothing in or out) or joins it again.
    pub fn partition(&self, host: IpAddr, cut: bool) {
        let mut n = self.lock();
        if cut {
            n.cut_off.insert(host);
        } else {
            n.cut_off.remove(&host);
        }
    }

    /// Drops every datagram for which `rule` says true (until the rule is
    /// cleared); the rule sees datagrams in the order they are sent.
    pub fn drop_when(&self, rule: impl FnMut(&Datagram) -> bool + Send + 'static) {
        self.lock().drop_rules.push(Box::new(rule));
    }

    pub fn clear_drop_rules(&self) {
        self.lock().drop_rules.clear();
    }

    /// Calls `watch` on every datagram sent (before faults apply); a watcher
    /// that returns false is removed.
    pub fn observe(&self, watch: impl FnMut(&Datagram) -> bool + Send + 'static) {
        self.lock().observers.push(Box::new(watch));
    }

    /// Puts a datagram on the wire from any address at all.
    pub fn inject(&self, from: SocketAddr, to: SocketAddr, bytes: Bytes) {
        self.send(from, &[(to, bytes)]);
    }

    pub fn stats(&self) -> NetStats {
        self.lock().stats
    }

    fn send(&self, from: SocketAddr, out: &[(SocketAddr, Bytes)]) {
        let now = Instant::now();
        let mut n = self.lock();
        let mut earliest_changed = false;
        for (to, bytes) in out {
            let d = Datagram {
                from,
                to: *to,
                bytes: bytes.clone(),
            };
            n.stats.sent += 1;
            n.observers.retain_mut(|w| w(&d));
            let cut = n.cut_off.contains(&from.ip()) || n.cut_off.contains(&to.ip());
            let ruled = n.drop_rules.iter_mut().any(|r| r(&d));
            let f = n.faults.clone();
            if cut || ruled || n.rng.random_bool(f.loss.clamp(0.0, 1.0)) {
                n.stats.lost += 1;
                continue;
            }
            let copies = if n.rng.random_bool(f.duplicate.clamp(0.0, 1.0)) {
                n.stats.duplicated += 1;
                2
            } else {
                1
            };
            for _ in 0..copies {
                let mut delay = f.delay + f.jitter.mul_f64(n.rng.random::<f64>());
                if n.rng.random_bool(f.reorder.clamp(0.0, 1.0)) {
                    delay += f.reorder_by.mul_f64(n.rng.random::<f64>());
                }
                n.seq += 1;
                let at = now + delay;
                earliest_changed |= n.wire.peek().is_none_or(|Reverse(e)| at < e.at);
                let seq = n.seq;
                n.wire.push(Reverse(InFlight {
                    at,
                    seq,
                    datagram: d.clone(),
                }));
            }
        }
        drop(n);
        if earliest_changed {
            self.wake.notify_one();
        }
    }

    /// Delivers datagrams when their time comes, in (time, send order).
    async fn deliver(self) {
        loop {
            let next = self.lock().wire.peek().map(|Reverse(e)| e.at);
            match next {
                Some(at) if at <= Instant::now() => {}
                Some(at) => {
                    tokio::select! {
                        _ = tokio::time::sleep_until(at) => {}
                        _ = self.wake.notified() => continue,
                    }
                }
                None => {
                    self.wake.notified().await;
                    continue;
                }
            }
            let now = Instant::now();
            let mut n = self.lock();
            while n.wire.peek().is_some_and(|Reverse(e)| e.at <= now) {
                let Reverse(e) = n.wire.pop().expect("peeked");
                let d = e.datagram;
                if n.cut_off.contains(&d.to.ip()) {
                    n.stats.lost += 1;
                    continue;
                }
                if let Some(inbox) = n.inboxes.get(&d.to) {
                    if inbox.send((d.bytes, d.from)).is_ok() {
                        n.stats.delivered += 1;
                    }
                }
            }
        }
    }
}

/// One endpoint's socket on the simulated network.
pub struct SimSocket {
    addr: SocketAddr,
    network: Network,
    inbox: tokio::sync::Mutex<mpsc::UnboundedReceiver<(Bytes, SocketAddr)>>,
}

impl Transport for SimSocket {
    fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    fn send(&self, out: &[(SocketAddr, Bytes)]) -> (u64, u64) {
        self.network.send(self.addr, out);
        (out.len() as u64, 0)
    }

    fn recv(&self) -> BoxFuture<'_, io::Result<Vec<(Bytes, SocketAddr)>>> {
        Box::pin(async move {
            let mut inbox = self.inbox.lock().await;
            let Some(first) = inbox.recv().await else {
                // Another socket took the address (a restarted server): this
                // one hears nothing more.
                return std::future::pending().await;
            };
            let mut batch = vec![first];
            while let Ok(more) = inbox.try_recv() {
                batch.push(more);
            }
            Ok(batch)
        })
    }
}
