//! The Rx wire header and packet framing.
//!
//! Every Rx datagram starts with a 28-byte big-endian header. DATA packets may be
//! *jumbograms*: several fixed-size subpackets in one datagram, each but the last
//! followed by a 4-byte jumbo header carrying the next subpacket's flags.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Size of the fixed Rx header on the wire.
pub const HEADER_LEN: usize = 28;
/// Data bytes in every jumbogram subpacket except the last.
pub const JUMBO_DATA_LEN: usize = 1412;
/// Size of the header that separates jumbogram subpackets.
pub const JUMBO_HEADER_LEN: usize = 4;
/// Largest UDP payload we accept.
pub const MAX_DATAGRAM: usize = 65535;

/// The packet types of Rx (OpenAFS rx.h, `RX_PACKET_TYPE_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketType {
    Data,
    Ack,
    Busy,
    Abort,
    AckAll,
    Challenge,
    Response,
    Debug,
    Params,
    Version,
}

impl PacketType {
    pub fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            1 => Self::Data,
            2 => Self::Ack,
            3 => Self::Busy,
            4 => Self::Abort,
            5 => Self::AckAll,
            6 => Self::Challenge,
            7 => Self::Response,
            8 => Self::Debug,
            9 => Self::Params,
            13 => Self::Version,
            _ => return None,
        })
    }

    pub fn to_u8(self) -> u8 {
        match self {
            Self::Data => 1,
            Self::Ack => 2,
            Self::Busy => 3,
            Self::Abort => 4,
            Self::AckAll => 5,
            Self::Challenge => 6,
            Self::Response => 7,
            Self::Debug => 8,
            Self::Params => 9,
            Self::Version => 13,
        }
    }
}

/// Header flag bits.
pub mod flags {
    /// Set on every packet sent by the side that started the call.
    pub const CLIENT_INITIATED: u8 = 0x01;
    /// The receiver should acknowledge this packet at once.
    pub const REQUEST_ACK: u8 = 0x02;
    /// The last DATA packet of one direction of a call.
    pub const LAST_PACKET: u8 = 0x04;
    /// More packets follow (informational).
    pub const MORE_PACKETS: u8 = 0x08;
    /// On DATA: this datagram is a jumbogram. On ACK: the sender may slow-start.
    pub const JUMBO_PACKET: u8 = 0x20;
}

/// The 28-byte Rx header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub epoch: u32,
    pub cid: u32,
    pub call_number: u32,
    pub seq: u32,
    pub serial: u32,
    pub packet_type: PacketType,
    pub flags: u8,
    pub user_status: u8,
    pub security_index: u8,
    pub spare: u16,
    pub service_id: u16,
}

/// Why a datagram was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    #[error("datagram of {0} bytes is shorter than the Rx header")]
    Truncated(usize),
    #[error("unknown packet type {0}")]
    UnknownType(u8),
    #[error("malformed jumbogram")]
    BadJumbogram,
}

/// Mask selecting the channel (call slot) bits of a connection id.
pub const CHANNEL_MASK: u32 = 3;

impl Header {
    /// The connection id without the channel bits.
    pub fn conn_id(&self) -> u32 {
        self.cid & !CHANNEL_MASK
    }

    /// The channel (0..4) this call occupies.
    pub fn channel(&self) -> usize {
        (self.cid & CHANNEL_MASK) as usize
    }

    pub fn is_client_initiated(&self) -> bool {
        self.flags & flags::CLIENT_INITIATED != 0
    }

    pub fn encode(&self, out: &mut impl BufMut) {
        out.put_u32(self.epoch);
        out.put_u32(self.cid);
        out.put_u32(self.call_number);
        out.put_u32(self.seq);
        out.put_u32(self.serial);
        out.put_u8(self.packet_type.to_u8());
        out.put_u8(self.flags);
        out.put_u8(self.user_status);
        out.put_u8(self.security_index);
        out.put_u16(self.spare);
        out.put_u16(self.service_id);
    }

    pub fn decode(mut buf: &[u8]) -> Result<Self, PacketError> {
        if buf.len() < HEADER_LEN {
            return Err(PacketError::Truncated(buf.len()));
        }
        let epoch = buf.get_u32();
        let cid = buf.get_u32();
        let call_number = buf.get_u32();
        let seq = buf.get_u32();
        let serial = buf.get_u32();
        let ty = buf.get_u8();
        let packet_type = PacketType::from_u8(ty).ok_or(PacketError::UnknownType(ty))?;
        Ok(Header {
            epoch,
            cid,
            call_number,
            seq,
            serial,
            packet_type,
            flags: buf.get_u8(),
            user_status: buf.get_u8(),
            security_index: buf.get_u8(),
            spare: buf.get_u16(),
            service_id: buf.get_u16(),
        })
    }
}

/// One logical packet: a header and its payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    pub header: Header,
    pub payload: Bytes,
}

impl Packet {
    /// Serializes header and payload into one datagram.
    pub fn to_datagram(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(HEADER_LEN + self.payload.len());
        self.header.encode(&mut out);
        out.extend_from_slice(&self.payload);
        out.freeze()
    }

    /// Parses one datagram into its logical packets.
    ///
    /// A jumbogram yields one packet per subpacket, with sequence and serial
    /// numbers counted up from the outer header as OpenAFS does.
    pub fn parse_datagram(datagram: Bytes) -> Result<Vec<Packet>, PacketError> {
        let header = Header::decode(&datagram)?;
        let mut body = datagram.slice(HEADER_LEN..);
        if header.packet_type != PacketType::Data || header.flags & flags::JUMBO_PACKET == 0 {
            return Ok(vec![Packet {
                header,
                payload: body,
            }]);
        }
        let mut packets = Vec::new();
        let mut current = header;
        // Each non-final subpacket is exactly JUMBO_DATA_LEN bytes plus a jumbo header.
        while current.flags & flags::JUMBO_PACKET != 0 {
            if body.len() < JUMBO_DATA_LEN + JUMBO_HEADER_LEN || packets.len() >= 64 {
                return Err(PacketError::BadJumbogram);
            }
            let payload = body.slice(..JUMBO_DATA_LEN);
            let jumbo = body.slice(JUMBO_DATA_LEN..JUMBO_DATA_LEN + JUMBO_HEADER_LEN);
            body = body.slice(JUMBO_DATA_LEN + JUMBO_HEADER_LEN..);
            let mut this = current;
            this.flags &= !flags::JUMBO_PACKET;
            packets.push(Packet {
                header: this,
                payload,
            });
            current.seq = current.seq.wrapping_add(1);
            current.serial = current.serial.wrapping_add(1);
            current.flags = jumbo[0];
            current.spare = u16::from_be_bytes([jumbo[2], jumbo[3]]);
        }
        packets.push(Packet {
            header: current,
            payload: body,
        });
        Ok(packets)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(ty: PacketType) -> Header {
        Header {
            epoch: 0x8123_4567,
            cid: 0x0000_1235,
            call_number: 7,
            seq: 3,
            serial: 99,
            packet_type: ty,
            flags: flags::CLIENT_INITIATED | flags::LAST_PACKET,
            user_status: 0,
            security_index: 0,
            spare: 0,
            service_id: 52,
        }
    }

    #[test]
    fn header_round_trips() {
        let h = sample(PacketType::Data);
        let mut buf = Vec::new();
        h.encode(&mut buf);
        assert_eq!(buf.len(), HEADER_LEN);
        assert_eq!(Header::decode(&buf).unwrap(), h);
        assert_eq!(h.channel(), 1);
        assert_eq!(h.conn_id(), 0x1234);
    }

    #[test]
    fn truncated_and_unknown_are_errors() {
        for n in 0..HEADER_LEN {
            assert_eq!(
                Header::decode(&[0u8; HEADER_LEN][..n]),
                Err(PacketError::Truncated(n))
            );
        }
        let mut buf = Vec::new();
        sample(PacketType::Data).encode(&mut buf);
        buf[20] = 42;
        assert_eq!(Header::decode(&buf), Err(PacketError::UnknownType(42)));
    }

    #[test]
    fn jumbogram_splits_into_subpackets() {
        let mut h = sample(PacketType::Data);
        h.flags = flags::JUMBO_PACKET | flags::REQUEST_ACK;
        let mut buf = Vec::new();
        h.encode(&mut buf);
        buf.extend(std::iter::repeat_n(1u8, JUMBO_DATA_LEN));
        buf.extend_from_slice(&[flags::JUMBO_PACKET, 0, 0, 0]);
        buf.extend(std::iter::repeat_n(2u8, JUMBO_DATA_LEN));
        buf.extend_from_slice(&[flags::LAST_PACKET, 0, 0, 0]);
        buf.extend_from_slice(&[3u8; 10]);
        let pkts = Packet::parse_datagram(Bytes::from(buf)).unwrap();
        assert_eq!(pkts.len(), 3);
        assert_eq!(pkts[0].header.seq, 3);
        assert_eq!(pkts[1].header.seq, 4);
        assert_eq!(pkts[2].header.seq, 5);
        assert_eq!(pkts[2].header.serial, 101);
        assert_eq!(pkts[0].payload.len(), JUMBO_DATA_LEN);
        assert!(pkts[1].payload.iter().all(|&b| b == 2));
        assert_eq!(pkts[2].header.flags, flags::LAST_PACKET);
        assert_eq!(&pkts[2].payload[..], &[3u8; 10]);
    }

    #[test]
    fn truncated_jumbogram_is_an_error() {
        let mut h = sample(PacketType::Data);
        h.flags = flags::JUMBO_PACKET;
        let mut buf = Vec::new();
        h.encode(&mut buf);
        buf.extend(std::iter::repeat_n(1u8, 100));
        assert_eq!(
            Packet::parse_datagram(Bytes::from(buf)),
            Err(PacketError::BadJumbogram)
        );
    }

    #[test]
    fn garbage_never_panics() {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for len in 0..2000usize {
            let mut buf = Vec::with_capacity(len);
            for _ in 0..len {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                buf.push(x as u8);
            }
            if len > 21 && len % 2 == 0 {
                buf[20] = 1; // DATA
                buf[21] |= flags::JUMBO_PACKET;
            }
            let _ = Packet::parse_datagram(Bytes::from(buf));
        }
    }
}
