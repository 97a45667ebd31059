//! Request and reply layouts of the AFS RPC interfaces.
//!
//! Every `*_args` function returns a complete request body, *starting with
//! the opcode word*, ready to be sent as the data of an Rx call. Every
//! `decode_*` function takes the complete reply body and rejects truncated
//! data and trailing garbage.

pub mod cb;
pub mod fs;
pub mod vl;

use crate::xdr::{Decoder, Encoder, XdrError};

/// Start a request body with its opcode.
pub(crate) fn request(opcode: u32) -> Encoder {
    let mut enc = Encoder::with_capacity(128);
    enc.put_u32(opcode);
    enc
}

/// Run `f` over the whole of `buf`, insisting it consumes every byte.
pub(crate) fn decode_whole<T>(
    buf: &[u8],
    f: impl FnOnce(&mut Decoder<'_>) -> Result<T, XdrError>,
) -> Result<T, XdrError> {
    let mut dec = Decoder::new(buf);
    let v = f(&mut dec)?;
    dec.finish()?;
    Ok(v)
}
