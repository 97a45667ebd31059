//! Connections and channels.
//!
//! A connection is (peer, epoch, connection id) and carries up to four calls at once,
//! one per channel; each channel numbers its calls 1, 2, 3... A call on a channel
//! implicitly acknowledges the previous one. Connections we start are *client*
//! connections; the peer's (the fileserver calling us back) are *server* ones.

use std::net::SocketAddr;
use std::time::Instant;

use bytes::{Bytes, BytesMut};

use crate::ack::{Ack, AckReason, AckTrailer};
use crate::call::{Role, MAX_PACKET_DATA};
use crate::packet::{flags, Header, Packet, PacketType, HEADER_LEN};
use crate::security::ConnSecurity;

/// Calls a connection carries at once.
pub const CHANNELS: usize = 4;

/// Identifies a call across the endpoint's lifetime (never reused).
pub type CallId = u64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct ConnKey {
    pub peer: SocketAddr,
    pub epoch: u32,
    pub cid: u32,
    pub role: Role,
}

#[derive(Debug, Default)]
pub(crate) struct Channel {
    pub call_number: u32,
    pub call: Option<CallId>,
    /// A client channel whose last call ended abnormally is never reused: the
    /// server may still be working on it and would answer BUSY.
    pub retired: bool,
    /// The last completed call and the first packet its final ACK did not cover.
    pub completed: Option<(u32, u32)>,
}

impl Channel {
    pub fn is_free(&self) -> bool {
        self.call.is_none() && !self.retired
    }
}

#[derive(Debug)]
pub(crate) struct Conn {
    /// Protects every DATA payload of the connection, both ways.
    pub security: Box<dyn ConnSecurity>,
    /// The service of a client connection (a RESPONSE names it).
    pub service_id: u16,
    pub serial: u32,
    pub channels: [Channel; CHANNELS],
    pub last_used: Instant,
}

impl Conn {
    pub fn new(security: Box<dyn ConnSecurity>, service_id: u16, now: Instant) -> Self {
        Self {
            security,
            service_id,
            serial: 0,
            channels: Default::default(),
            last_used: now,
        }
    }

    pub fn idle(&self) -> bool {
        self.channels.iter().all(|c| c.call.is_none())
    }

    /// Per channel, the call number a RESPONSE reports: the current call's, the next one
    /// after a call ended, 0 on a channel never used. The server adopts them, so a later
    /// call with a lower number would be refused.
    pub fn call_numbers(&self) -> [u32; CHANNELS] {
        std::array::from_fn(|i| {
            let ch = &self.channels[i];
            match (ch.call, ch.call_number) {
                (_, 0) => 0,
                (Some(_), n) => n,
                (None, n) => n.wrapping_add(1),
            }
        })
    }

    pub fn next_serial(&mut self) -> u32 {
        self.serial = self.serial.wrapping_add(1).max(1);
        self.serial
    }
}

pub(crate) fn is_ping(packet: &Packet) -> bool {
    packet.header.packet_type == PacketType::Ack
        && Ack::decode(&packet.payload).is_ok_and(|a| a.reason == AckReason::Ping)
}

/// An ACK sent outside any call's state (ping responses, repeated final acks).
pub(crate) fn standalone_ack(
    role: Role,
    h: &Header,
    serial: u32,
    reason: AckReason,
    first: u32,
) -> Bytes {
    let ack = Ack {
        buffer_space: 0,
        max_skew: 0,
        first_packet: first,
        previous_packet: first.saturating_sub(1),
        serial: h.serial,
        reason,
        acks: vec![],
        trailer: Some(AckTrailer {
            rx_mtu: (HEADER_LEN + MAX_PACKET_DATA) as u32,
            max_mtu: (HEADER_LEN + MAX_PACKET_DATA) as u32,
            rwind: 32,
            jumbo_max: 1,
        }),
    };
    let mut body = BytesMut::new();
    ack.encode(&mut body);
    let header = Header {
        seq: 0,
        serial,
        packet_type: PacketType::Ack,
        flags: if role == Role::Client {
            flags::CLIENT_INITIATED
        } else {
            0
        },
        ..*h
    };
    Packet {
        header,
        payload: body.freeze(),
    }
    .to_datagram()
}
