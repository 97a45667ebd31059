//! Cache-manager callback interface (`RXAFSCB_*`), served *by the client*.
//!
//! Fileservers call back into the client (Rx service 1 on the client's own
//! socket) to break callbacks and to check it is alive and who it is. An
//! OpenAFS fileserver will not serve a client that fails these calls, so
//! the answers matter even for a read-only client.
//!
//! Layouts follow OpenAFS `src/fsint/afscbint.xg`. Note that the OpenAFS
//! callback interface has **no** `GetCapabilities` call: capabilities are
//! reported through TellMeAboutYourself (65538). Opcodes we do not
//! implement should be answered with an abort of
//! [`RXGEN_OPCODE`](crate::error::RXGEN_OPCODE); see [`respond`].

use super::{decode_whole, request};
use crate::error::RXGEN_OPCODE;
use crate::types::{CallBack, Capabilities, Fid, InterfaceAddr, Uuid, AFS_CB_MAX};
use crate::xdr::{Encoder, XdrError};

/// Break callbacks on up to 50 FIDs.
pub const CALLBACK: u32 = 204;
/// Forget all callbacks from this server (server restarted).
pub const INIT_CALLBACK_STATE: u32 = 205;
/// Are you alive?
pub const PROBE: u32 = 206;
/// Who are you (addresses and UUID)?
pub const WHO_ARE_YOU: u32 = 212;
/// Forget all callbacks from the server with this UUID.
pub const INIT_CALLBACK_STATE3: u32 = 213;
/// Are you still the client with this UUID?
pub const PROBE_UUID: u32 = 214;
/// Who are you, and what can you do?
pub const TELL_ME_ABOUT_YOURSELF: u32 = 65538;

/// Abort code for a ProbeUuid whose UUID is not ours: the fileserver then
/// treats us as a new client (OpenAFS cache managers return 1).
pub const PROBE_UUID_MISMATCH: i32 = 1;

/// A decoded incoming callback-service request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CbRequest {
    /// Break these callbacks. `callbacks` is either empty or parallel to
    /// `fids`; a FID with vnode 0 means "the whole volume".
    CallBack {
        /// FIDs whose callbacks are broken.
        fids: Vec<Fid>,
        /// The promises being broken (informational).
        callbacks: Vec<CallBack>,
    },
    /// Drop every callback from the calling server.
    InitCallBackState,
    /// Liveness check.
    Probe,
    /// Report our interfaces.
    WhoAreYou,
    /// Drop every callback from the server with this UUID.
    InitCallBackState3 {
        /// The server's UUID.
        server_uuid: Uuid,
    },
    /// Check that we are still the client with this UUID.
    ProbeUuid {
        /// The UUID the server remembers for us.
        client_uuid: Uuid,
    },
    /// Report our interfaces and capabilities.
    TellMeAboutYourself,
    /// An opcode we do not implement; answer with abort `RXGEN_OPCODE`.
    Unknown(u32),
}

impl CbRequest {
    /// Decode a whole request body (opcode word first).
    ///
    /// Unknown opcodes decode successfully as [`CbRequest::Unknown`] without
    /// looking at the rest of the body; for known opcodes the body must be
    /// exactly right.
    pub fn decode(buf: &[u8]) -> Result<Self, XdrError> {
        decode_whole(buf, |d| {
            let opcode = d.get_u32()?;
            Ok(match opcode {
                CALLBACK => {
                    let fids = d.get_array("AFSCBFids", AFS_CB_MAX)?;
                    let callbacks: Vec<CallBack> = d.get_array("AFSCBs", AFS_CB_MAX)?;
                    CbRequest::CallBack { fids, callbacks }
                }
                INIT_CALLBACK_STATE => CbRequest::InitCallBackState,
                PROBE => CbRequest::Probe,
                WHO_ARE_YOU => CbRequest::WhoAreYou,
                INIT_CALLBACK_STATE3 => CbRequest::InitCallBackState3 {
                    server_uuid: d.get()?,
                },
                PROBE_UUID => CbRequest::ProbeUuid {
                    client_uuid: d.get()?,
                },
                TELL_ME_ABOUT_YOURSELF => CbRequest::TellMeAboutYourself,
                other => {
                    // Skip whatever arguments it had.
                    let _ = d.take(d.remaining())?;
                    CbRequest::Unknown(other)
                }
            })
        })
    }

    /// The request's opcode.
    pub fn opcode(&self) -> u32 {
        match self {
            Self::CallBack { .. } => CALLBACK,
            Self::InitCallBackState => INIT_CALLBACK_STATE,
            Self::Probe => PROBE,
            Self::WhoAreYou => WHO_ARE_YOU,
            Self::InitCallBackState3 { .. } => INIT_CALLBACK_STATE3,
            Self::ProbeUuid { .. } => PROBE_UUID,
            Self::TellMeAboutYourself => TELL_ME_ABOUT_YOURSELF,
            Self::Unknown(op) => *op,
        }
    }

    /// Encode as a request body (what a fileserver would send). Used by
    /// tests and mock servers; arrays longer than 50 are truncated.
    pub fn encode(&self) -> Vec<u8> {
        let mut e = request(self.opcode());
        match self {
            Self::CallBack { fids, callbacks } => {
                e.put_array(&fids[..fids.len().min(AFS_CB_MAX)])
                    .put_array(&callbacks[..callbacks.len().min(AFS_CB_MAX)]);
            }
            Self::InitCallBackState3 { server_uuid: u } | Self::ProbeUuid { client_uuid: u } => {
                e.put(u);
            }
            _ => {}
        }
        e.into_bytes()
    }
}

/// What a cache manager says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CmIdentity {
    /// Our UUID and interfaces.
    pub interfaces: InterfaceAddr,
    /// Our capabilities (normally `[CLIENT_CAPABILITY_ERRORTRANS]`).
    pub capabilities: Capabilities,
}

/// How to finish an incoming call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CbResponse {
    /// Send this reply body.
    Reply(Vec<u8>),
    /// Abort the call with this code.
    Abort(i32),
}

/// Compute the answer to `req`. This is pure: acting on callback breaks
/// (invalidating cached status/data) is the caller's job, and for
/// [`CbRequest::CallBack`] it should happen *before* the reply is sent, so
/// that no later FetchStatus can be answered from stale cache.
pub fn respond(req: &CbRequest, me: &CmIdentity) -> CbResponse {
    match req {
        CbRequest::CallBack { .. }
        | CbRequest::InitCallBackState
        | CbRequest::Probe
        | CbRequest::InitCallBackState3 { .. } => CbResponse::Reply(empty_reply()),
        CbRequest::ProbeUuid { client_uuid } => {
            if *client_uuid == me.interfaces.uuid {
                CbResponse::Reply(empty_reply())
            } else {
                CbResponse::Abort(PROBE_UUID_MISMATCH)
            }
        }
        CbRequest::WhoAreYou => CbResponse::Reply(who_are_you_reply(&me.interfaces)),
        CbRequest::TellMeAboutYourself => CbResponse::Reply(tell_me_about_yourself_reply(
            &me.interfaces,
            &me.capabilities,
        )),
        CbRequest::Unknown(_) => CbResponse::Abort(RXGEN_OPCODE),
    }
}

/// Reply body of CallBack, InitCallBackState(3), Probe and ProbeUuid.
pub fn empty_reply() -> Vec<u8> {
    Vec::new()
}

/// Reply body of WhoAreYou: an `interfaceAddr`.
pub fn who_are_you_reply(addr: &InterfaceAddr) -> Vec<u8> {
    let mut e = Encoder::with_capacity(InterfaceAddr::WIRE_SIZE);
    e.put(addr);
    e.into_bytes()
}

/// Reply body of TellMeAboutYourself: `interfaceAddr` then `Capabilities`.
pub fn tell_me_about_yourself_reply(addr: &InterfaceAddr, caps: &Capabilities) -> Vec<u8> {
    let mut e = Encoder::with_capacity(InterfaceAddr::WIRE_SIZE + 8);
    e.put(addr).put(caps);
    e.into_bytes()
}

/// Decode a WhoAreYou reply (for tests and probes of other clients).
pub fn decode_who_are_you_reply(buf: &[u8]) -> Result<InterfaceAddr, XdrError> {
    decode_whole(buf, |d| d.get())
}

/// Decode a TellMeAboutYourself reply.
pub fn decode_tell_me_about_yourself_reply(
    buf: &[u8],
) -> Result<(InterfaceAddr, Capabilities), XdrError> {
    decode_whole(buf, |d| Ok((d.get()?, d.get()?)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{CallBackType, Interface, CLIENT_CAPABILITY_ERRORTRANS};
    use crate::xdr::test_util::check_never_panics;
    use std::net::Ipv4Addr;

    fn me() -> CmIdentity {
        CmIdentity {
            interfaces: InterfaceAddr {
                uuid: Uuid::from_bytes([0x42; 16]),
                interfaces: vec![Interface {
                    addr: Ipv4Addr::new(127, 0, 0, 1),
                    netmask: Ipv4Addr::new(255, 0, 0, 0),
                    mtu: 1500,
                }],
            },
            capabilities: Capabilities(vec![CLIENT_CAPABILITY_ERRORTRANS]),
        }
    }

    #[test]
    fn callback_request_layout() {
        let req = CbRequest::CallBack {
            fids: vec![Fid::new(1, 2, 3), Fid::new(1, 0, 0)],
            callbacks: vec![
                CallBack {
                    version: 1,
                    expiration_time: 0,
                    cb_type: CallBackType::Dropped,
                };
                2
            ],
        };
        let b = req.encode();
        assert_eq!(&b[..8], &[0, 0, 0, 204, 0, 0, 0, 2]);
        assert_eq!(b.len(), 4 + 4 + 24 + 4 + 24);
        assert_eq!(CbRequest::decode(&b).unwrap(), req);
        check_never_panics(&b, CbRequest::decode);
    }

    #[test]
    fn callback_with_no_callbacks_array() {
        let req = CbRequest::CallBack {
            fids: vec![Fid::new(1, 2, 3)],
            callbacks: vec![],
        };
        assert_eq!(CbRequest::decode(&req.encode()).unwrap(), req);
    }

    #[test]
    fn too_many_fids_rejected() {
        let mut e = Encoder::new();
        e.put_u32(CALLBACK).put_u32(51);
        for _ in 0..51 {
            e.put(&Fid::new(1, 1, 1));
        }
        e.put_u32(0);
        assert!(matches!(
            CbRequest::decode(e.as_bytes()),
            Err(XdrError::TooLong { len: 51, .. })
        ));
    }

    #[test]
    fn simple_requests() {
        for (req, op) in [
            (CbRequest::InitCallBackState, 205u32),
            (CbRequest::Probe, 206),
            (CbRequest::WhoAreYou, 212),
            (CbRequest::TellMeAboutYourself, 65538),
        ] {
            let b = req.encode();
            assert_eq!(b, op.to_be_bytes());
            assert_eq!(CbRequest::decode(&b).unwrap(), req);
            // Extra bytes after an argument-less request are an error.
            let mut longer = b.clone();
            longer.extend_from_slice(&[0; 4]);
            assert!(CbRequest::decode(&longer).is_err());
        }
        assert!(CbRequest::decode(&[]).is_err());
        assert_eq!(
            CbRequest::decode(&[0, 0, 0, 207, 0, 0, 0, 1]).unwrap(),
            CbRequest::Unknown(207)
        );
    }

    #[test]
    fn uuid_requests() {
        let u = Uuid::from_bytes([9; 16]);
        for req in [
            CbRequest::InitCallBackState3 { server_uuid: u },
            CbRequest::ProbeUuid { client_uuid: u },
        ] {
            let b = req.encode();
            assert_eq!(b.len(), 48);
            assert_eq!(CbRequest::decode(&b).unwrap(), req);
            check_never_panics(&b, CbRequest::decode);
        }
    }

    #[test]
    fn responses() {
        let me = me();
        assert_eq!(
            respond(&CbRequest::Probe, &me),
            CbResponse::Reply(Vec::new())
        );
        assert_eq!(
            respond(
                &CbRequest::ProbeUuid {
                    client_uuid: me.interfaces.uuid
                },
                &me
            ),
            CbResponse::Reply(Vec::new())
        );
        assert_eq!(
            respond(
                &CbRequest::ProbeUuid {
                    client_uuid: Uuid::default()
                },
                &me
            ),
            CbResponse::Abort(PROBE_UUID_MISMATCH)
        );
        assert_eq!(
            respond(&CbRequest::Unknown(65539), &me),
            CbResponse::Abort(-455)
        );
        let CbResponse::Reply(w) = respond(&CbRequest::WhoAreYou, &me) else {
            panic!("WhoAreYou must reply");
        };
        assert_eq!(w.len(), InterfaceAddr::WIRE_SIZE);
        assert_eq!(decode_who_are_you_reply(&w).unwrap(), me.interfaces);
        check_never_panics(&w, decode_who_are_you_reply);

        let CbResponse::Reply(t) = respond(&CbRequest::TellMeAboutYourself, &me) else {
            panic!("TellMeAboutYourself must reply");
        };
        assert_eq!(t.len(), InterfaceAddr::WIRE_SIZE + 8);
        assert_eq!(&t[t.len() - 8..], &[0, 0, 0, 1, 0, 0, 0, 1]);
        let (ia, caps) = decode_tell_me_about_yourself_reply(&t).unwrap();
        assert_eq!(ia, me.interfaces);
        assert!(caps.has(CLIENT_CAPABILITY_ERRORTRANS));
        check_never_panics(&t, decode_tell_me_about_yourself_reply);
    }
}
