//! Security classes: how the packets of a connection are protected.
//!
//! A class ([`SecurityClass`]) is what a caller picks per identity: rxnull (index 0) or
//! rxkad with a token (index 2). Each connection made with it gets its own protection state
//! ([`ConnSecurity`]), because rxkad's checksums and keys depend on the connection's epoch
//! and id and on what the server has said on it. Connections are pooled per class
//! ([`Security`]), so two identities never share one: a server attributes every call on a
//! connection to the identity that answered its challenge.

use std::fmt::Debug;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use bytes::Bytes;

use crate::packet::Header;

/// A connection's security class.
pub trait SecurityClass: Send + Sync + Debug + 'static {
    /// The index carried in every packet header.
    fn index(&self) -> u8;
    /// The protection of a new client connection `(epoch, cid)`.
    fn client_conn(&self, epoch: u32, cid: u32) -> Box<dyn ConnSecurity>;
}

/// The protection state of one connection.
pub trait ConnSecurity: Send + Debug {
    /// The index carried in every packet header.
    fn index(&self) -> u8;
    /// Bytes a DATA packet's payload may grow by when sealed: the call sends that much less
    /// user data per packet, so sealed packets are no larger than rxnull's.
    fn overhead(&self) -> usize {
        0
    }
    /// Protects an outgoing DATA packet (its header checksum and payload).
    fn seal(&mut self, _header: &mut Header, payload: Bytes) -> Bytes {
        payload
    }
    /// Checks and strips the protection of an incoming DATA payload.
    fn open(&mut self, _header: &Header, payload: Bytes) -> Result<Bytes, SecurityError> {
        Ok(payload)
    }
    /// Answers a CHALLENGE with the payload of a RESPONSE. `calls` holds, per channel, the
    /// number of the call the connection carries there (see [`crate::conn`]).
    fn respond(&mut self, _challenge: &[u8], _calls: [u32; 4]) -> Result<Bytes, SecurityError> {
        Err(SecurityError {
            code: crate::error::codes::RX_PROTOCOL_ERROR,
            what: "this security class does not authenticate",
        })
    }
}

/// Why a packet or a challenge was refused; `code` is the abort code that goes with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} (code {code})")]
pub struct SecurityError {
    pub code: i32,
    pub what: &'static str,
}

/// No protection: security index 0.
#[derive(Debug, Default, Clone, Copy)]
pub struct Null;

impl SecurityClass for Null {
    fn index(&self) -> u8 {
        0
    }
    fn client_conn(&self, _epoch: u32, _cid: u32) -> Box<dyn ConnSecurity> {
        Box::new(Null)
    }
}

impl ConnSecurity for Null {
    fn index(&self) -> u8 {
        0
    }
}

/// A security class as the endpoint pools connections by: equal only to clones of itself.
#[derive(Debug, Clone)]
pub struct Security(Arc<dyn SecurityClass>);

impl Security {
    pub fn new(class: impl SecurityClass) -> Self {
        Self(Arc::new(class))
    }

    /// rxnull: anonymous.
    pub fn null() -> Self {
        static NULL: std::sync::LazyLock<Security> =
            std::sync::LazyLock::new(|| Security::new(Null));
        NULL.clone()
    }

    pub fn class(&self) -> &dyn SecurityClass {
        &*self.0
    }

    fn addr(&self) -> *const () {
        Arc::as_ptr(&self.0) as *const ()
    }
}

impl PartialEq for Security {
    fn eq(&self, other: &Self) -> bool {
        self.addr() == other.addr()
    }
}

impl Eq for Security {}

impl Hash for Security {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.addr().hash(state)
    }
}
