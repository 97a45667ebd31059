//! rxkad: Rx's Kerberos security class (index 2), client side.
//!
//! A connection is authenticated lazily: the server answers the first DATA packet of an
//! unauthenticated connection with a CHALLENGE (a nonce and the least level it accepts), holds
//! the call, and runs it once our RESPONSE proves we hold the token's session key: the
//! response carries the ticket (which only the server can read, and which holds the session
//! key and our name) and, sealed with the session key, the connection's identity, its call
//! numbers and the nonce + 1. From then on every DATA packet carries a header checksum, and
//! its payload is protected as the chosen [`Level`] says, in both directions.
//!
//! The formats here follow what OpenAFS 1.8 servers check (src/rxkad/rxkad_server.c,
//! rxkad_common.c); shared/rxkad.md describes them byte by byte.

mod fcrypt;
mod kdf;

use std::fmt;
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};

pub use fcrypt::Fcrypt;
pub use kdf::{kdf, session_key, KeyError};

use crate::packet::Header;
use crate::security::{ConnSecurity, SecurityClass, SecurityError};

/// rxkad's security index.
pub const INDEX: u8 = 2;

/// The `kvno` a response carries for a whole Kerberos 5 `Ticket` (rxkad-k5, what aklog uses).
pub const KVNO_KERBEROS_V5: u32 = 256;

/// rxkad's error codes (OpenAFS rxkad_errs.et, table RXK).
pub mod codes {
    pub const RXKADINCONSISTENCY: i32 = 19_270_400;
    pub const RXKADPACKETSHORT: i32 = 19_270_401;
    pub const RXKADLEVELFAIL: i32 = 19_270_402;
    pub const RXKADTICKETLEN: i32 = 19_270_403;
    pub const RXKADOUTOFSEQUENCE: i32 = 19_270_404;
    pub const RXKADNOAUTH: i32 = 19_270_405;
    pub const RXKADBADKEY: i32 = 19_270_406;
    pub const RXKADBADTICKET: i32 = 19_270_407;
    pub const RXKADUNKNOWNKEY: i32 = 19_270_408;
    pub const RXKADEXPIRED: i32 = 19_270_409;
    pub const RXKADSEALEDINCON: i32 = 19_270_410;
    pub const RXKADDATALEN: i32 = 19_270_411;
    pub const RXKADILLEGALLEVEL: i32 = 19_270_412;
}

use codes::*;

/// How much of each DATA packet rxkad protects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// Authenticated connection, data in the clear: only the header checksum.
    Clear = 0,
    /// The first 8 bytes (length and sequence) sealed: packets cannot be spliced or cut.
    Auth = 1,
    /// Every byte encrypted: the only level with confidentiality.
    Crypt = 2,
}

impl Level {
    pub fn from_u32(v: u32) -> Option<Self> {
        match v {
            0 => Some(Level::Clear),
            1 => Some(Level::Auth),
            2 => Some(Level::Crypt),
            _ => None,
        }
    }

    /// Bytes before the user data in a sealed packet.
    fn header_len(self) -> usize {
        match self {
            Level::Clear => 0,
            Level::Auth => 4,
            Level::Crypt => 8,
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Level::Clear => "clear",
            Level::Auth => "auth",
            Level::Crypt => "crypt",
        })
    }
}

impl std::str::FromStr for Level {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "clear" => Ok(Level::Clear),
            "auth" => Ok(Level::Auth),
            "crypt" => Ok(Level::Crypt),
            _ => Err(format!("unknown rxkad level {s:?} (clear, auth or crypt)")),
        }
    }
}

/// What proves an identity to a server: a ticket for the AFS service and its session key.
#[derive(Clone)]
pub struct Credential {
    /// [`KVNO_KERBEROS_V5`] for a Kerberos 5 ticket.
    pub kvno: u32,
    /// Opaque to the client: the server decrypts it with its own key.
    pub ticket: Arc<[u8]>,
    /// The rxkad key (see [`session_key`]).
    pub key: [u8; 8],
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credential")
            .field("kvno", &self.kvno)
            .field("ticket_len", &self.ticket.len())
            .finish_non_exhaustive()
    }
}

/// The rxkad class for one identity at one level.
#[derive(Debug, Clone)]
pub struct Rxkad {
    level: Level,
    credential: Credential,
    cipher: Fcrypt,
}

impl Rxkad {
    pub fn new(credential: Credential, level: Level) -> Self {
        let cipher = Fcrypt::new(&credential.key);
        Self {
            level,
            credential,
            cipher,
        }
    }

    pub fn level(&self) -> Level {
        self.level
    }
}

impl SecurityClass for Rxkad {
    fn index(&self) -> u8 {
        INDEX
    }

    fn client_conn(&self, epoch: u32, cid: u32) -> Box<dyn ConnSecurity> {
        let cid = cid & !crate::packet::CHANNEL_MASK;
        // The connection's "preSeq": the second block of the PCBC-sealed endpoint, mixed into
        // every header checksum so that checksums of one connection are useless on another.
        let mut endpoint = [0u8; 16];
        endpoint[..4].copy_from_slice(&epoch.to_be_bytes());
        endpoint[4..8].copy_from_slice(&cid.to_be_bytes());
        endpoint[12..].copy_from_slice(&u32::from(INDEX).to_be_bytes());
        self.cipher.pcbc_encrypt(self.credential.key, &mut endpoint);
        Box::new(RxkadConn {
            class: self.clone(),
            epoch,
            cid,
            pre_seq: endpoint[8..].try_into().expect("16-byte endpoint"),
            checksums_seen: false,
        })
    }
}

/// rxkad's state for one client connection.
#[derive(Debug)]
struct RxkadConn {
    class: Rxkad,
    epoch: u32,
    cid: u32,
    pre_seq: [u8; 8],
    /// The server's checksums are checked from the first non-zero one on.
    checksums_seen: bool,
}

impl RxkadConn {
    /// The 16-bit header checksum of a DATA packet: it binds the call number, channel and
    /// sequence number (not the serial, so retransmissions keep it) to the connection.
    fn header_checksum(&self, h: &Header) -> u16 {
        let w0 = h.call_number;
        let w1 = ((h.cid & crate::packet::CHANNEL_MASK) << 30) | (h.seq & 0x3fff_ffff);
        let x = ((u64::from(w0) << 32) | u64::from(w1)) ^ u64::from_be_bytes(self.pre_seq);
        let out = self.class.cipher.encrypt_block(x.to_be_bytes());
        match u16::from_be_bytes([out[4], out[5]]) {
            0 => 1,
            c => c,
        }
    }

    /// The sealed word before the user data: sequence XOR call number, and the data length.
    fn length_word(h: &Header, len: usize) -> u32 {
        ((h.seq ^ h.call_number) & 0xffff) << 16 | (len as u32 & 0xffff)
    }

    fn key(&self) -> [u8; 8] {
        self.class.credential.key
    }
}

fn refused(code: i32, what: &'static str) -> SecurityError {
    SecurityError { code, what }
}

impl ConnSecurity for RxkadConn {
    fn index(&self) -> u8 {
        INDEX
    }

    fn overhead(&self) -> usize {
        match self.class.level {
            Level::Clear => 0,
            // Header and padding to at least 8 bytes.
            Level::Auth => 8,
            // Header and padding to a multiple of 8.
            Level::Crypt => 16,
        }
    }

    fn seal(&mut self, header: &mut Header, payload: Bytes) -> Bytes {
        header.spare = self.header_checksum(header);
        let level = self.class.level;
        if level == Level::Clear {
            return payload;
        }
        let len = payload.len();
        let mut buf = BytesMut::with_capacity(len + self.overhead());
        buf.put_u32(Self::length_word(header, len));
        if level == Level::Crypt {
            // A checksum slot no OpenAFS version has filled.
            buf.put_u32(0);
        }
        buf.extend_from_slice(&payload);
        let padded = match level {
            Level::Auth => buf.len().max(8),
            _ => buf.len().next_multiple_of(8),
        };
        buf.resize(padded, 0);
        let cipher = &self.class.cipher;
        if level == Level::Auth {
            let first: [u8; 8] = buf[..8].try_into().expect("at least 8 bytes");
            buf[..8].copy_from_slice(&cipher.encrypt_block(first));
        } else {
            cipher.pcbc_encrypt(self.key(), &mut buf);
        }
        buf.freeze()
    }

    fn open(&mut self, header: &Header, payload: Bytes) -> Result<Bytes, SecurityError> {
        if header.spare != 0 {
            self.checksums_seen = true;
        }
        if self.checksums_seen && header.spare != self.header_checksum(header) {
            return Err(refused(RXKADSEALEDINCON, "header checksum mismatch"));
        }
        let level = self.class.level;
        if level == Level::Clear {
            return Ok(payload);
        }
        let mut buf = BytesMut::from(payload);
        match level {
            Level::Auth if buf.len() >= 8 => {
                let first: [u8; 8] = buf[..8].try_into().expect("8 bytes");
                buf[..8].copy_from_slice(&self.class.cipher.decrypt_block(first));
            }
            Level::Crypt if buf.len() >= 8 && buf.len() % 8 == 0 => {
                self.class.cipher.pcbc_decrypt(self.key(), &mut buf);
            }
            _ => return Err(refused(RXKADPACKETSHORT, "sealed packet too short")),
        }
        let word = u32::from_be_bytes(buf[..4].try_into().expect("4 bytes"));
        if word >> 16 != (header.seq ^ header.call_number) & 0xffff {
            return Err(refused(RXKADSEALEDINCON, "sealed sequence mismatch"));
        }
        let start = level.header_len();
        let len = (word & 0xffff) as usize;
        if start + len > buf.len() {
            return Err(refused(RXKADDATALEN, "sealed length past the packet"));
        }
        Ok(buf.freeze().slice(start..start + len))
    }

    fn respond(&mut self, challenge: &[u8], calls: [u32; 4]) -> Result<Bytes, SecurityError> {
        let word = |i: usize| {
            challenge
                .get(i * 4..i * 4 + 4)
                .map(|b| u32::from_be_bytes(b.try_into().expect("4 bytes")))
        };
        let level = self.class.level;
        let cred = &self.class.credential;
        let mut out = BytesMut::with_capacity(56 + cred.ticket.len());
        if challenge.len() > 8 {
            // Version 2: version, nonce, least level, spare.
            let (Some(2..), Some(nonce), Some(min)) = (word(0), word(1), word(2)) else {
                return Err(refused(RXKADPACKETSHORT, "malformed challenge"));
            };
            if min > level as u32 {
                return Err(refused(RXKADLEVELFAIL, "server wants a higher level"));
            }
            out.put_u32(2);
            out.put_u32(0);
            out.put_u32(self.epoch);
            out.put_u32(self.cid);
            out.put_u32(0); // checksum, filled below
            out.put_u32(u32::from(INDEX));
            for n in calls {
                out.put_u32(n);
            }
            out.put_u32(nonce.wrapping_add(1));
            out.put_u32(level as u32);
            out.put_u32(cred.kvno);
            out.put_u32(cred.ticket.len() as u32);
            let sum = out.iter().fold(1_000_003u32, |c, &b| {
                c.wrapping_mul(0x1020_4081).wrapping_add(u32::from(b))
            });
            out[16..20].copy_from_slice(&sum.to_be_bytes());
            self.class.cipher.pcbc_encrypt(self.key(), &mut out[8..48]);
        } else {
            // The old format: nonce and least level; the answer is nonce + 1 and our level,
            // sealed as one block.
            let (Some(nonce), Some(min)) = (word(0), word(1)) else {
                return Err(refused(RXKADPACKETSHORT, "malformed challenge"));
            };
            if min > level as u32 {
                return Err(refused(RXKADLEVELFAIL, "server wants a higher level"));
            }
            let block = (u64::from(nonce.wrapping_add(1)) << 32) | level as u64;
            out.put_slice(&self.class.cipher.encrypt_block(block.to_be_bytes()));
            out.put_u32(cred.kvno);
            out.put_u32(cred.ticket.len() as u32);
        }
        out.put_slice(&cred.ticket);
        Ok(out.freeze())
    }
}

#[cfg(test)]
mod tests;
