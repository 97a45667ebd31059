//! The body of an Rx ACK packet.
//!
//! An ACK hard-acknowledges every packet below `first_packet` and soft-acknowledges
//! (or negatively acknowledges) the `acks.len()` packets from `first_packet` on.
//! A trailer added in AFS 3.3-3.5 advertises the receiver's MTUs, receive window and
//! how many packets it accepts in one jumbogram.

use bytes::{Buf, BufMut};

/// Size of the fixed part of an ACK body, before the per-packet ack bytes.
pub const ACK_FIXED_LEN: usize = 18;
/// At most this many packets are soft-acked in one ACK.
pub const MAX_ACKS: usize = 255;

/// Why an ACK was sent (`RX_ACK_*` in OpenAFS rx.h).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckReason {
    Requested,
    Duplicate,
    OutOfSequence,
    ExceedsWindow,
    NoSpace,
    Ping,
    PingResponse,
    Delay,
    Idle,
    /// A reason this implementation does not know; kept so it can be logged.
    Other(u8),
}

impl AckReason {
    pub fn from_u8(v: u8) -> Self {
        match v {
            1 => Self::Requested,
            2 => Self::Duplicate,
            3 => Self::OutOfSequence,
            4 => Self::ExceedsWindow,
            5 => Self::NoSpace,
            6 => Self::Ping,
            7 => Self::PingResponse,
            8 => Self::Delay,
            9 => Self::Idle,
            other => Self::Other(other),
        }
    }

    pub fn to_u8(self) -> u8 {
        match self {
            Self::Requested => 1,
            Self::Duplicate => 2,
            Self::OutOfSequence => 3,
            Self::ExceedsWindow => 4,
            Self::NoSpace => 5,
            Self::Ping => 6,
            Self::PingResponse => 7,
            Self::Delay => 8,
            Self::Idle => 9,
            Self::Other(v) => v,
        }
    }
}

/// The receiver's capabilities, appended after the soft acks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AckTrailer {
    /// Largest packet the receiver accepts.
    pub rx_mtu: u32,
    /// The receiver's interface MTU.
    pub max_mtu: u32,
    /// How many packets the receiver is willing to buffer for this call.
    pub rwind: u32,
    /// How many packets the receiver accepts in one jumbogram.
    pub jumbo_max: u32,
}

/// A decoded ACK body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    pub buffer_space: u16,
    pub max_skew: u16,
    pub first_packet: u32,
    pub previous_packet: u32,
    /// Serial of the packet that provoked this ACK (0 if none).
    pub serial: u32,
    pub reason: AckReason,
    /// One entry per packet from `first_packet` on: true = received.
    pub acks: Vec<bool>,
    pub trailer: Option<AckTrailer>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AckError {
    #[error("ACK body of {0} bytes is truncated")]
    Truncated(usize),
}

impl Ack {
    pub fn encode(&self, out: &mut impl BufMut) {
        let n = self.acks.len().min(MAX_ACKS);
        out.put_u16(self.buffer_space);
        out.put_u16(self.max_skew);
        out.put_u32(self.first_packet);
        out.put_u32(self.previous_packet);
        out.put_u32(self.serial);
        out.put_u8(self.reason.to_u8());
        out.put_u8(n as u8);
        for &a in &self.acks[..n] {
            out.put_u8(u8::from(a));
        }
        if let Some(t) = &self.trailer {
            out.put_bytes(0, 3);
            out.put_u32(t.rx_mtu);
            out.put_u32(t.max_mtu);
            out.put_u32(t.rwind);
            out.put_u32(t.jumbo_max);
        }
    }

    pub fn decode(body: &[u8]) -> Result<Self, AckError> {
        if body.len() < ACK_FIXED_LEN {
            return Err(AckError::Truncated(body.len()));
        }
        let mut buf = body;
        let buffer_space = buf.get_u16();
        let max_skew = buf.get_u16();
        let first_packet = buf.get_u32();
        let previous_packet = buf.get_u32();
        let serial = buf.get_u32();
        let reason = AckReason::from_u8(buf.get_u8());
        let n = buf.get_u8() as usize;
        if buf.len() < n {
            return Err(AckError::Truncated(body.len()));
        }
        let acks = buf[..n].iter().map(|&b| b == 1).collect();
        buf.advance(n);
        // Older peers omit the trailer; a partial trailer is ignored.
        let trailer = (buf.len() >= 3 + 16).then(|| {
            buf.advance(3);
            AckTrailer {
                rx_mtu: buf.get_u32(),
                max_mtu: buf.get_u32(),
                rwind: buf.get_u32(),
                jumbo_max: buf.get_u32(),
            }
        });
        Ok(Ack {
            buffer_space,
            max_skew,
            first_packet,
            previous_packet,
            serial,
            reason,
            acks,
            trailer,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_with_trailer() {
        let ack = Ack {
            buffer_space: 0,
            max_skew: 1,
            first_packet: 5,
            previous_packet: 9,
            serial: 1234,
            reason: AckReason::OutOfSequence,
            acks: vec![false, true, true, false, true],
            trailer: Some(AckTrailer {
                rx_mtu: 1444,
                max_mtu: 1444,
                rwind: 255,
                jumbo_max: 1,
            }),
        };
        let mut buf = Vec::new();
        ack.encode(&mut buf);
        assert_eq!(buf.len(), ACK_FIXED_LEN + 5 + 3 + 16);
        assert_eq!(Ack::decode(&buf).unwrap(), ack);
    }

    #[test]
    fn trailer_is_optional() {
        let ack = Ack {
            buffer_space: 0,
            max_skew: 0,
            first_packet: 1,
            previous_packet: 0,
            serial: 0,
            reason: AckReason::Ping,
            acks: vec![],
            trailer: None,
        };
        let mut buf = Vec::new();
        ack.encode(&mut buf);
        assert_eq!(Ack::decode(&buf).unwrap(), ack);
    }

    #[test]
    fn truncated_bodies_are_errors() {
        let ack = Ack {
            buffer_space: 0,
            max_skew: 0,
            first_packet: 1,
            previous_packet: 0,
            serial: 0,
            reason: AckReason::Requested,
            acks: vec![true; 10],
            trailer: None,
        };
        let mut buf = Vec::new();
        ack.encode(&mut buf);
        for n in 0..buf.len() {
            assert!(Ack::decode(&buf[..n]).is_err(), "prefix {n}");
        }
        assert_eq!(AckReason::from_u8(77), AckReason::Other(77));
    }
}
