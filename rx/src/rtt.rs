//! Round-trip time estimation and the retransmission timeout (RFC 6298 style).

use std::time::Duration;

#[derive(Debug, Clone)]
pub struct RttEstimator {
    srtt: Option<Duration>,
    rttvar: Duration,
    min_rto: Duration,
    max_rto: Duration,
    /// Multiplier applied after consecutive timeouts; reset by a fresh sample.
    backoff: u32,
    initial_rto: Duration,
}

impl RttEstimator {
    pub fn new(initial_rto: Duration, min_rto: Duration, max_rto: Duration) -> Self {
        Self {
            srtt: None,
            rttvar: Duration::ZERO,
            min_rto,
            max_rto,
            backoff: 1,
            initial_rto,
        }
    }

    /// Feeds one unambiguous sample (from a packet transmitted only once).
    pub fn sample(&mut self, rtt: Duration) {
        self.backoff = 1;
        match self.srtt {
            None => {
                self.srtt = Some(rtt);
                self.rttvar = rtt / 2;
            }
            Some(srtt) => {
                let delta = srtt.abs_diff(rtt);
                self.rttvar = (self.rttvar * 3 + delta) / 4;
                self.srtt = Some((srtt * 7 + rtt) / 8);
            }
        }
    }

    /// Doubles the timeout after a retransmission timer fired.
    pub fn on_timeout(&mut self) {
        self.backoff = (self.backoff * 2).min(1024);
    }

    pub fn srtt(&self) -> Option<Duration> {
        self.srtt
    }

    /// The current retransmission timeout.
    pub fn rto(&self) -> Duration {
        let base = match self.srtt {
            None => self.initial_rto,
            Some(srtt) => srtt + self.rttvar * 4,
        };
        (base.max(self.min_rto) * self.backoff).min(self.max_rto)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converges_and_backs_off() {
        let mut r = RttEstimator::new(
            Duration::from_millis(100),
            Duration::from_millis(20),
            Duration::from_secs(2),
        );
        assert_eq!(r.rto(), Duration::from_millis(100));
        for _ in 0..50 {
            r.sample(Duration::from_micros(100));
        }
        assert_eq!(r.rto(), Duration::from_millis(20), "clamped to min");
        r.on_timeout();
        r.on_timeout();
        assert_eq!(r.rto(), Duration::from_millis(80));
        for _ in 0..10 {
            r.on_timeout();
        }
        assert_eq!(r.rto(), Duration::from_secs(2), "clamped to max");
        r.sample(Duration::from_micros(100));
        assert_eq!(r.rto(), Duration::from_millis(20));
    }
}
