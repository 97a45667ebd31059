//! The cache manager's callback service: how fileservers tell us a promise broke.
//!
//! Served on the same socket our calls use (the fileserver calls back the address
//! it saw us at). Each break or reset is answered first and then published as a
//! [`CallbackEvent`] to every subscriber, so nothing a subscriber does (such as a
//! FetchStatus to the same server) can delay the reply the server is waiting for.
//!
//! Anyone can send a datagram to our port. Calls that change or reveal our state
//! (breaks, resets, who we are) are answered only for fileservers we know
//! ([`SenderCheck`]); anyone else gets an abort and leaves nothing behind.
//!
//! cmdebug's calls are answered for anyone: see `debug` ([`DebugInfo`]).

mod debug;
#[cfg(test)]
mod tests;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use rx::{IncomingCall, Response};
use tokio::sync::broadcast;
use tracing::{debug, trace};

use crate::proto::cb::{self as p, CbRequest, CbResponse, CmDebugState, CmIdentity, NothingCached};
use crate::types::{Capabilities, Fid, InterfaceAddr, Uuid, CLIENT_CAPABILITY_ERRORTRANS};
use debug::CacheView;

pub use debug::{DebugInfo, LISTING_REFRESH};

/// The callback service id on the client's socket.
pub const SERVICE: u16 = 1;

/// A change in the promises a fileserver holds for us.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallbackEvent {
    /// The server broke its promises on these files. A FID with vnode 0 and
    /// unique 0 stands for every file of that volume.
    Broken {
        server: SocketAddr,
        fids: Vec<Fid>,
        at: Instant,
    },
    /// The server forgot every promise it gave us (it restarted, lost its record
    /// of us, or takes us for another client) and asked us to start afresh. `uuid`
    /// is the server's own, when it said (InitCallBackState3).
    ServerReset {
        server: SocketAddr,
        uuid: Option<Uuid>,
        at: Instant,
    },
}

/// Counters of the callback service.
#[derive(Debug, Default)]
pub struct CallbackStats {
    pub breaks: AtomicU64,
    pub fids_broken: AtomicU64,
    pub resets: AtomicU64,
    pub probes: AtomicU64,
    /// Calls refused because they did not come from a fileserver we know.
    pub refused: AtomicU64,
    /// Debugging calls answered (cmdebug's).
    pub debug_calls: AtomicU64,
}

/// Whether a peer is a fileserver whose callbacks we believe.
pub type SenderCheck = Arc<dyn Fn(SocketAddr) -> bool + Send + Sync>;

/// The abort for a callback call from a stranger.
pub const NOT_A_FILESERVER: i32 = rx::error::codes::RX_INVALID_OPERATION;

/// Work to run once the reply to the server is on the wire.
pub type AfterReply = Box<dyn FnOnce() + Send>;

/// Runs on each break or reset *before* the reply goes out, to forget revoked
/// promises; must be quick and must not call the server. What it returns runs
/// after the reply (telling others what was lost).
pub type RevokeHook = Arc<dyn Fn(&CallbackEvent) -> Option<AfterReply> + Send + Sync>;

/// Answers RXAFSCB calls and publishes what they mean.
pub struct CallbackService {
    identity: CmIdentity,
    senders: SenderCheck,
    revoke: RevokeHook,
    events: broadcast::Sender<CallbackEvent>,
    stats: Arc<CallbackStats>,
    /// What the debugging calls are shown; without it, an empty cache.
    debug: Option<CacheView>,
}

impl CallbackService {
    /// A service for a client with `uuid`. We report no interfaces, so a server
    /// never tries addresses other than the one it saw us at.
    pub fn new(uuid: Uuid, senders: SenderCheck, revoke: RevokeHook) -> Self {
        let (events, _) = broadcast::channel(4096);
        Self {
            revoke,
            senders,
            identity: CmIdentity {
                interfaces: InterfaceAddr {
                    uuid,
                    interfaces: Vec::new(),
                },
                capabilities: Capabilities(vec![CLIENT_CAPABILITY_ERRORTRANS]),
            },
            events,
            stats: Arc::default(),
            debug: None,
        }
    }

    /// Shows `info` to the debugging calls (cmdebug) instead of an empty cache.
    pub fn with_debug_info(mut self, info: DebugInfo) -> Self {
        self.debug = Some(CacheView::new(info));
        self
    }

    pub fn subscribe(&self) -> broadcast::Receiver<CallbackEvent> {
        self.events.subscribe()
    }

    pub fn stats(&self) -> Arc<CallbackStats> {
        self.stats.clone()
    }

    /// What a request means for our promises, if anything.
    fn event_for(&self, req: &CbRequest, server: SocketAddr, at: Instant) -> Option<CallbackEvent> {
        match req {
            CbRequest::CallBack { fids, .. } => {
                self.stats.breaks.fetch_add(1, Ordering::Relaxed);
                self.stats
                    .fids_broken
                    .fetch_add(fids.len() as u64, Ordering::Relaxed);
                Some(CallbackEvent::Broken {
                    server,
                    fids: fids.clone(),
                    at,
                })
            }
            CbRequest::InitCallBackState | CbRequest::InitCallBackState3 { .. } => {
                self.stats.resets.fetch_add(1, Ordering::Relaxed);
                let uuid = match req {
                    CbRequest::InitCallBackState3 { server_uuid } => Some(*server_uuid),
                    _ => None,
                };
                Some(CallbackEvent::ServerReset { server, uuid, at })
            }
            // The server takes us for another client: it will not honour what it
            // promised "us", so neither may we.
            CbRequest::ProbeUuid { client_uuid }
                if *client_uuid != self.identity.interfaces.uuid =>
            {
                self.stats.resets.fetch_add(1, Ordering::Relaxed);
                Some(CallbackEvent::ServerReset {
                    server,
                    uuid: None,
                    at,
                })
            }
            CbRequest::Probe | CbRequest::ProbeUuid { .. } => {
                self.stats.probes.fetch_add(1, Ordering::Relaxed);
                None
            }
            _ => None,
        }
    }

    fn handle(&self, call: &IncomingCall) -> Response {
        let at = Instant::now();
        let req = match CbRequest::decode(&call.request) {
            Ok(r) => r,
            Err(e) => {
                debug!(peer = %call.peer, error = %e, "undecodable callback request");
                return Response::abort(rx::error::codes::RXGEN_SS_UNMARSHAL);
            }
        };
        trace!(peer = %call.peer, ?req, "callback request");
        // These change nothing and tell nothing a debugger may not see.
        let stateless =
            matches!(req, CbRequest::Probe | CbRequest::Unknown(_)) || req.is_debugging();
        if req.is_debugging() {
            self.stats.debug_calls.fetch_add(1, Ordering::Relaxed);
        }
        if !stateless && !(self.senders)(call.peer) {
            self.stats.refused.fetch_add(1, Ordering::Relaxed);
            debug!(peer = %call.peer, op = req.opcode(), "callback call from a stranger refused");
            return Response::abort(NOT_A_FILESERVER);
        }
        let event = self.event_for(&req, call.peer, at);
        // Forget revoked promises before answering; tell subscribers after.
        let then = event.as_ref().and_then(|e| (self.revoke)(e));
        let state: &dyn CmDebugState = match &self.debug {
            Some(view) => view,
            None => &NothingCached,
        };
        let mut response = match p::respond_with(&req, &self.identity, state) {
            CbResponse::Reply(data) => Response::reply(data),
            CbResponse::Abort(code) => Response::abort(code),
        };
        if let Some(event) = event {
            let events = self.events.clone();
            response.after_reply = Some(Box::new(move || {
                if let Some(then) = then {
                    then();
                }
                // No subscriber is fine: nobody holds anything to invalidate.
                let _ = events.send(event);
            }));
        }
        response
    }
}

impl rx::Service for CallbackService {
    fn serve(&self, call: IncomingCall) -> Pin<Box<dyn Future<Output = Response> + Send>> {
        let response = self.handle(&call);
        Box::pin(async move { response })
    }
}
