//! Which of a volume's sites to ask: how each fileserver has been answering.
//!
//! A read-only volume lives on several fileservers, each holding the same released
//! snapshot, so any of them may answer. The one that answers fastest is asked first, as
//! kAFS ranks the servers of a volume by their probe round-trip times and OpenAFS by
//! `fs setserverprefs` ranks. One that stopped answering goes to the back until it answers
//! a probe again, so the calls after a failover do not wait for it once more.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a call to one site of a volume that has others waits without a word from
/// that site before it gives up and the next site is asked: the bound on a failover
/// (OpenAFS clients wait out a 50 s dead time; a read-only volume need not).
pub const FAILOVER_DEAD_TIME: Duration = Duration::from_secs(3);

/// How a fileserver has been answering.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Health {
    /// It answers; `rtt` is its smoothed probe round-trip time.
    Answering { rtt: Duration },
    /// A call or probe got no answer at `since`; `rtt` is what it was before.
    Down {
        since: Instant,
        rtt: Option<Duration>,
    },
}

/// The fileservers' health, as calls and probes find it: the one owner of the order in
/// which a volume's sites are tried.
#[derive(Debug, Default)]
pub struct SiteRanks {
    health: Mutex<HashMap<SocketAddr, Health>>,
}

impl SiteRanks {
    fn health(&self) -> std::sync::MutexGuard<'_, HashMap<SocketAddr, Health>> {
        self.health.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `sites` in the order to try them: answering servers fastest first, then those
    /// never heard from, then those that stopped answering, the one that failed longest
    /// ago first (it is the likeliest to be back).
    pub fn order(&self, sites: &[SocketAddr]) -> Vec<SocketAddr> {
        #[derive(PartialEq, Eq, PartialOrd, Ord)]
        enum Rank {
            Answering(Duration),
            Unknown,
            Down(Instant),
        }
        let health = self.health();
        let mut ranked: Vec<(Rank, SocketAddr)> = sites
            .iter()
            .map(|&s| match health.get(&s) {
                Some(Health::Answering { rtt }) => (Rank::Answering(*rtt), s),
                None => (Rank::Unknown, s),
                Some(Health::Down { since, .. }) => (Rank::Down(*since), s),
            })
            .collect();
        // Stable: equal ranks keep the VLDB's order.
        ranked.sort_by(|a, b| a.0.cmp(&b.0));
        ranked.into_iter().map(|(_, s)| s).collect()
    }

    /// `server` answered a call that took `took`: a server that was down is up again
    /// (ranked by its old round-trip time, or by `took` if it never had one).
    pub fn reached(&self, server: SocketAddr, took: Duration) {
        let mut health = self.health();
        let rtt = match health.get(&server) {
            Some(Health::Answering { .. }) => return,
            Some(Health::Down { rtt, .. }) => rtt.unwrap_or(took),
            None => took,
        };
        health.insert(server, Health::Answering { rtt });
    }

    /// `server` answered a probe in `rtt`.
    pub fn answered(&self, server: SocketAddr, rtt: Duration) {
        let mut health = self.health();
        let smoothed = match health.get(&server) {
            // As TCP smooths its RTT: one eighth of each new sample.
            Some(Health::Answering { rtt: old }) => (*old * 7 + rtt) / 8,
            _ => rtt,
        };
        health.insert(server, Health::Answering { rtt: smoothed });
    }

    /// `server` did not answer a call or a probe.
    pub fn unreachable(&self, server: SocketAddr) {
        let mut health = self.health();
        let rtt = match health.get(&server) {
            Some(Health::Answering { rtt }) => Some(*rtt),
            Some(Health::Down { rtt, .. }) => *rtt,
            None => None,
        };
        health.insert(
            server,
            Health::Down {
                since: Instant::now(),
                rtt,
            },
        );
    }

    /// The servers that stopped answering: probed until they answer again.
    pub fn down(&self) -> Vec<SocketAddr> {
        self.health()
            .iter()
            .filter(|(_, h)| matches!(h, Health::Down { .. }))
            .map(|(s, _)| *s)
            .collect()
    }

    /// A server's smoothed round-trip time, if it is answering.
    pub fn rtt(&self, server: SocketAddr) -> Option<Duration> {
        match self.health().get(&server) {
            Some(Health::Answering { rtt }) => Some(*rtt),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(n: u8) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, n], 7000))
    }

    #[test]
    fn the_fastest_answering_site_comes_first_and_silent_ones_last() {
        let ranks = SiteRanks::default();
        let sites = [a(1), a(2), a(3), a(4)];
        assert_eq!(
            ranks.order(&sites),
            sites,
            "nothing known: the VLDB's order"
        );
        ranks.answered(a(3), Duration::from_millis(5));
        ranks.answered(a(2), Duration::from_millis(1));
        ranks.unreachable(a(1));
        assert_eq!(ranks.order(&sites), [a(2), a(3), a(4), a(1)]);
        assert_eq!(ranks.down(), [a(1)]);
    }

    #[test]
    fn a_site_that_stops_answering_goes_back_and_returns_when_it_answers() {
        let ranks = SiteRanks::default();
        ranks.answered(a(1), Duration::from_millis(1));
        ranks.answered(a(2), Duration::from_millis(9));
        assert_eq!(ranks.order(&[a(1), a(2)]), [a(1), a(2)]);
        ranks.unreachable(a(1));
        assert_eq!(ranks.order(&[a(1), a(2)]), [a(2), a(1)]);
        ranks.answered(a(1), Duration::from_millis(2));
        assert_eq!(ranks.order(&[a(1), a(2)]), [a(1), a(2)]);
        assert!(ranks.down().is_empty());
    }

    #[test]
    fn a_site_that_answers_a_call_is_up_again_and_the_longest_down_is_tried_first() {
        let ranks = SiteRanks::default();
        ranks.answered(a(1), Duration::from_millis(1));
        ranks.answered(a(2), Duration::from_millis(2));
        ranks.unreachable(a(1));
        std::thread::sleep(Duration::from_millis(2));
        ranks.unreachable(a(2));
        assert_eq!(ranks.order(&[a(2), a(1)]), [a(1), a(2)]);
        ranks.reached(a(2), Duration::from_millis(50));
        assert_eq!(ranks.order(&[a(1), a(2)]), [a(2), a(1)]);
        assert_eq!(
            ranks.rtt(a(2)),
            Some(Duration::from_millis(2)),
            "its old time"
        );
        ranks.reached(a(3), Duration::from_millis(50));
        assert_eq!(ranks.rtt(a(3)), Some(Duration::from_millis(50)));
    }

    #[test]
    fn round_trip_times_are_smoothed() {
        let ranks = SiteRanks::default();
        ranks.answered(a(1), Duration::from_millis(8));
        ranks.answered(a(1), Duration::from_millis(16));
        assert_eq!(ranks.rtt(a(1)), Some(Duration::from_millis(9)));
        ranks.unreachable(a(1));
        assert_eq!(ranks.rtt(a(1)), None);
    }
}
