//! Security classes: how packets of a connection are protected.
//!
//! Only rxnull (index 0) is implemented; rxkad (2) and rxgk (4) can implement this
//! trait later without touching the call machinery.

use bytes::{Bytes, BytesMut};

use crate::packet::Header;

/// A connection's security class.
pub trait SecurityClass: Send + Sync + std::fmt::Debug + 'static {
    /// The index carried in every packet header.
    fn index(&self) -> u8;
    /// Bytes of payload each DATA packet loses to the class's own header/trailer.
    fn overhead(&self) -> usize {
        0
    }
    /// Protects an outgoing DATA payload (sign or encrypt).
    fn seal(&self, _header: &Header, payload: Bytes) -> Bytes {
        payload
    }
    /// Checks and strips protection from an incoming DATA payload.
    fn open(&self, _header: &Header, payload: Bytes) -> Option<Bytes> {
        Some(payload)
    }
    /// Answers a CHALLENGE, if the class authenticates.
    fn respond(&self, _challenge: &[u8]) -> Option<BytesMut> {
        None
    }
}

/// No protection: security index 0.
#[derive(Debug, Default, Clone, Copy)]
pub struct Null;

impl SecurityClass for Null {
    fn index(&self) -> u8 {
        0
    }
}
