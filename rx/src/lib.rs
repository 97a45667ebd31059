//! Rx: the RPC protocol of AFS, over UDP.
//!
//! The protocol logic ([`call::Call`]) is a state machine with no I/O, driven by
//! [`Endpoint`], which owns one UDP socket for calls we make and calls the peer
//! makes to us (an AFS fileserver calls its clients back on the socket they use).

pub mod ack;
pub mod call;
mod conn;
mod endpoint;
pub mod error;
pub mod packet;
mod rtt;
pub mod security;
mod socket;

pub use endpoint::{Call, Endpoint, EndpointConfig, IncomingCall, Response, Service, Stats};
pub use error::RxError;
