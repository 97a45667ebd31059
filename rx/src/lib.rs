//! Rx: the RPC protocol of AFS, over UDP.
//!
//! The protocol logic is state machines with no I/O: one call ([`call::CallMachine`])
//! and the whole endpoint ([`proto::Endpoint`]: connections, channels, incoming
//! calls, timers, security). [`Endpoint`] drives them over one UDP socket, for the
//! calls we make and the calls peers make to us (an AFS fileserver calls its
//! clients back on the socket they use).

pub mod ack;
pub mod call;
mod conn;
pub mod debug;
mod endpoint;
pub mod error;
pub mod packet;
pub mod proto;
mod rtt;
pub mod rxkad;
pub mod security;
mod socket;
pub mod transport;

pub use endpoint::{
    Call, Endpoint, EndpointConfig, IncomingCall, Response, Service, Stats, MAX_WHOLE_REPLY,
};
pub use error::RxError;
pub use transport::Transport;
