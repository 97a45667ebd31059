//! Fileserver interface (`RXAFS_*`, Rx service 1 on port 7000).
//!
//! Layouts follow OpenAFS `src/fsint/afsint.xg`. Two calls are "split":
//! their bulk data is streamed inside the Rx call between the XDR parts.
//!
//! * FetchData64: request = [`fetch_data64_args`]; reply = 8-byte length
//!   ([`decode_fetch_data64_length`]), that many bytes of file data, then the
//!   trailer ([`decode_fetch_data_trailer`]).
//! * StoreData64: request = [`store_data64_args`] followed directly by
//!   `len` bytes of data; reply = [`decode_store_reply`].
//!
//! Note on `Lookup` (161): the OpenAFS fileserver (1.8.x and master) does
//! not implement it; `SRXAFS_Lookup` returns `EINVAL` (22) immediately, so a
//! client must fetch and parse directories itself (see [`crate::dir`]). The
//! encoder and decoder are provided for completeness and for other servers.

use super::{decode_whole, request};
use crate::types::{
    CallBack, Capabilities, FetchStatus, FetchVolumeStatus, Fid, StoreStatus, VolSync, AFS_CB_MAX,
    AFS_NAME_MAX, AFS_OPAQUE_MAX, AFS_PATH_MAX,
};
use crate::xdr::{Decoder, XdrError};

/// Fetch file data, 32-bit offsets (split call).
pub const FETCH_DATA: u32 = 130;
/// Fetch an ACL.
pub const FETCH_ACL: u32 = 131;
/// Fetch a vnode's status and a callback.
pub const FETCH_STATUS: u32 = 132;
/// Store file data, 32-bit offsets (split call).
pub const STORE_DATA: u32 = 133;
/// Change a vnode's status (mode, owner, mtime...).
pub const STORE_STATUS: u32 = 135;
/// Replace an ACL.
pub const STORE_ACL: u32 = 164;
/// Remove a file or symlink from a directory.
pub const REMOVE_FILE: u32 = 136;
/// Create an empty file.
pub const CREATE_FILE: u32 = 137;
/// Rename within a volume.
pub const RENAME: u32 = 138;
/// Create a symlink.
pub const SYMLINK: u32 = 139;
/// Create a hard link.
pub const LINK: u32 = 140;
/// Create a directory.
pub const MAKE_DIR: u32 = 141;
/// Remove an empty directory.
pub const REMOVE_DIR: u32 = 142;
/// Get volume status, quota and messages.
pub const GET_VOLUME_STATUS: u32 = 149;
/// Server-side name lookup (not implemented by OpenAFS; returns EINVAL).
pub const LOOKUP: u32 = 161;
/// Status of up to 50 FIDs, with per-entry errors.
pub const INLINE_BULK_STATUS: u32 = 65536;
/// Fetch file data, 64-bit offsets (split call).
pub const FETCH_DATA64: u32 = 65537;
/// Store file data, 64-bit offsets (split call).
pub const STORE_DATA64: u32 = 65538;
/// Drop every callback this client holds on the server.
pub const GIVE_UP_ALL_CALLBACKS: u32 = 65539;
/// Ask for the server's capability bits.
pub const GET_CAPABILITIES: u32 = 65540;

/// Reply of FetchStatus, and trailer of FetchData/FetchData64.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchStatusReply {
    /// The vnode's status.
    pub status: FetchStatus,
    /// The callback promise granted.
    pub callback: CallBack,
    /// Volume sync info.
    pub volsync: VolSync,
}

/// Reply of calls that return one status and volume sync info: StoreData,
/// StoreData64, StoreStatus, RemoveFile (the directory's status) and
/// RemoveDir (the parent's status).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusReply {
    /// Status after the operation.
    pub status: FetchStatus,
    /// Volume sync info.
    pub volsync: VolSync,
}

/// Reply of CreateFile, MakeDir and Lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CreateReply {
    /// FID of the new (or looked-up) vnode.
    pub fid: Fid,
    /// Its status.
    pub status: FetchStatus,
    /// The directory's status after the operation.
    pub dir_status: FetchStatus,
    /// Callback promise on the new vnode.
    pub callback: CallBack,
    /// Volume sync info.
    pub volsync: VolSync,
}

/// Reply of Symlink (like [`CreateReply`] but without a callback).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SymlinkReply {
    /// FID of the new symlink.
    pub fid: Fid,
    /// Its status.
    pub status: FetchStatus,
    /// The directory's status after the operation.
    pub dir_status: FetchStatus,
    /// Volume sync info.
    pub volsync: VolSync,
}

/// Reply of Link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkReply {
    /// The linked file's status (its link count grew).
    pub status: FetchStatus,
    /// The directory's status after the operation.
    pub dir_status: FetchStatus,
    /// Volume sync info.
    pub volsync: VolSync,
}

/// Reply of Rename.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RenameReply {
    /// Source directory's status.
    pub old_dir_status: FetchStatus,
    /// Destination directory's status (same as the source for in-dir renames).
    pub new_dir_status: FetchStatus,
    /// Volume sync info.
    pub volsync: VolSync,
}

/// One result of InlineBulkStatus.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BulkStatusEntry {
    /// Status; check [`BulkStatusEntry::error`] first.
    pub status: FetchStatus,
    /// Callback granted (zeroed on error).
    pub callback: CallBack,
}

impl BulkStatusEntry {
    /// The per-FID abort code, if this entry failed. InlineBulkStatus reports
    /// failures per entry in `errorCode` rather than aborting the whole call.
    pub fn error(&self) -> Option<i32> {
        match self.status.error_code {
            0 => None,
            e => Some(e as i32),
        }
    }
}

/// Reply of InlineBulkStatus: one entry per requested FID, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BulkStatusReply {
    /// Per-FID results.
    pub entries: Vec<BulkStatusEntry>,
    /// Volume sync info.
    pub volsync: VolSync,
}

fn check_name(what: &'static str, name: &str, max: usize) -> Result<(), XdrError> {
    if name.is_empty() {
        return Err(XdrError::Invalid { what, value: 0 });
    }
    if name.len() > max {
        return Err(XdrError::TooLong {
            what,
            len: name.len(),
            max,
        });
    }
    Ok(())
}

/// Encode a directory-entry name (non-empty, at most `AFSNAMEMAX` bytes).
fn put_name(enc: &mut crate::xdr::Encoder, name: &str) -> Result<(), XdrError> {
    check_name("file name", name, AFS_NAME_MAX)?;
    enc.put_string_checked("file name", name, AFS_NAME_MAX)?;
    Ok(())
}

// ----- requests -------------------------------------------------------------

/// FetchStatus(fid).
pub fn fetch_status_args(fid: Fid) -> Vec<u8> {
    let mut e = request(FETCH_STATUS);
    e.put(&fid);
    e.into_bytes()
}

/// FetchData(fid, pos, len) with 32-bit offsets; prefer FetchData64.
pub fn fetch_data_args(fid: Fid, pos: u32, len: u32) -> Vec<u8> {
    let mut e = request(FETCH_DATA);
    e.put(&fid).put_u32(pos).put_u32(len);
    e.into_bytes()
}

/// FetchData64(fid, pos, len). The server clamps `len` to the file size and
/// says how much it will send in the length prefix of the reply.
pub fn fetch_data64_args(fid: Fid, pos: u64, len: u64) -> Vec<u8> {
    let mut e = request(FETCH_DATA64);
    e.put(&fid).put_u64(pos).put_u64(len);
    e.into_bytes()
}

/// StoreData(fid, status, pos, len, file_length), 32-bit offsets. The `len`
/// data bytes follow this body in the same call.
pub fn store_data_args(
    fid: Fid,
    status: &StoreStatus,
    pos: u32,
    len: u32,
    file_length: u32,
) -> Vec<u8> {
    let mut e = request(STORE_DATA);
    e.put(&fid)
        .put(status)
        .put_u32(pos)
        .put_u32(len)
        .put_u32(file_length);
    e.into_bytes()
}

/// StoreData64(fid, status, pos, len, file_length). The `len` data bytes
/// follow this body in the same call; `file_length` is the file's length
/// after the store (it truncates or extends).
pub fn store_data64_args(
    fid: Fid,
    status: &StoreStatus,
    pos: u64,
    len: u64,
    file_length: u64,
) -> Vec<u8> {
    let mut e = request(STORE_DATA64);
    e.put(&fid)
        .put(status)
        .put_u64(pos)
        .put_u64(len)
        .put_u64(file_length);
    e.into_bytes()
}

/// StoreStatus(fid, status): chmod/chown/utime without data.
pub fn store_status_args(fid: Fid, status: &StoreStatus) -> Vec<u8> {
    let mut e = request(STORE_STATUS);
    e.put(&fid).put(status);
    e.into_bytes()
}

/// RemoveFile(dir, name).
pub fn remove_file_args(dir: Fid, name: &str) -> Result<Vec<u8>, XdrError> {
    let mut e = request(REMOVE_FILE);
    e.put(&dir);
    put_name(&mut e, name)?;
    Ok(e.into_bytes())
}

/// CreateFile(dir, name, status).
pub fn create_file_args(dir: Fid, name: &str, status: &StoreStatus) -> Result<Vec<u8>, XdrError> {
    let mut e = request(CREATE_FILE);
    e.put(&dir);
    put_name(&mut e, name)?;
    e.put(status);
    Ok(e.into_bytes())
}

/// Rename(old_dir, old_name, new_dir, new_name). Both directories must be
/// in the same volume.
pub fn rename_args(
    old_dir: Fid,
    old_name: &str,
    new_dir: Fid,
    new_name: &str,
) -> Result<Vec<u8>, XdrError> {
    let mut e = request(RENAME);
    e.put(&old_dir);
    put_name(&mut e, old_name)?;
    e.put(&new_dir);
    put_name(&mut e, new_name)?;
    Ok(e.into_bytes())
}

/// Symlink(dir, name, target, status). Mount points are symlinks whose
/// target starts with `#` or `%` and ends with `.`, created with mode 0644.
pub fn symlink_args(
    dir: Fid,
    name: &str,
    target: &str,
    status: &StoreStatus,
) -> Result<Vec<u8>, XdrError> {
    let mut e = request(SYMLINK);
    e.put(&dir);
    put_name(&mut e, name)?;
    check_name("symlink target", target, AFS_PATH_MAX)?;
    e.put_string_checked("symlink target", target, AFS_PATH_MAX)?;
    e.put(status);
    Ok(e.into_bytes())
}

/// Link(dir, name, existing): a hard link to `existing`, which OpenAFS allows only
/// within one directory (EXDEV otherwise).
pub fn link_args(dir: Fid, name: &str, existing: Fid) -> Result<Vec<u8>, XdrError> {
    let mut e = request(LINK);
    e.put(&dir);
    put_name(&mut e, name)?;
    e.put(&existing);
    Ok(e.into_bytes())
}

/// MakeDir(dir, name, status).
pub fn make_dir_args(dir: Fid, name: &str, status: &StoreStatus) -> Result<Vec<u8>, XdrError> {
    let mut e = request(MAKE_DIR);
    e.put(&dir);
    put_name(&mut e, name)?;
    e.put(status);
    Ok(e.into_bytes())
}

/// RemoveDir(dir, name).
pub fn remove_dir_args(dir: Fid, name: &str) -> Result<Vec<u8>, XdrError> {
    let mut e = request(REMOVE_DIR);
    e.put(&dir);
    put_name(&mut e, name)?;
    Ok(e.into_bytes())
}

/// GetVolumeStatus(volume_id).
pub fn get_volume_status_args(volume_id: u32) -> Vec<u8> {
    let mut e = request(GET_VOLUME_STATUS);
    e.put_u32(volume_id);
    e.into_bytes()
}

/// Lookup(dir, name). OpenAFS fileservers answer this with abort 22
/// (EINVAL); see the module documentation.
pub fn lookup_args(dir: Fid, name: &str) -> Result<Vec<u8>, XdrError> {
    let mut e = request(LOOKUP);
    e.put(&dir);
    put_name(&mut e, name)?;
    Ok(e.into_bytes())
}

/// InlineBulkStatus(fids), at most [`AFS_CB_MAX`] FIDs.
pub fn inline_bulk_status_args(fids: &[Fid]) -> Result<Vec<u8>, XdrError> {
    if fids.len() > AFS_CB_MAX {
        return Err(XdrError::TooLong {
            what: "AFSCBFids",
            len: fids.len(),
            max: AFS_CB_MAX,
        });
    }
    let mut e = request(INLINE_BULK_STATUS);
    e.put_array(fids);
    Ok(e.into_bytes())
}

/// GiveUpAllCallBacks(): polite goodbye so the server can forget us.
pub fn give_up_all_callbacks_args() -> Vec<u8> {
    request(GIVE_UP_ALL_CALLBACKS).into_bytes()
}

/// FetchACL(fid) -> [`decode_fetch_acl_reply`].
pub fn fetch_acl_args(fid: Fid) -> Vec<u8> {
    let mut e = request(FETCH_ACL);
    e.put(&fid);
    e.into_bytes()
}

/// StoreACL(fid, acl) -> [`decode_store_reply`]. `acl` is the textual ACL
/// format (positive count, negative count, then `name rights` lines).
pub fn store_acl_args(fid: Fid, acl: &[u8]) -> Result<Vec<u8>, XdrError> {
    if acl.len() > AFS_OPAQUE_MAX {
        return Err(XdrError::TooLong {
            what: "AFSOpaque",
            len: acl.len(),
            max: AFS_OPAQUE_MAX,
        });
    }
    let mut e = request(STORE_ACL);
    e.put(&fid).put_opaque(acl);
    Ok(e.into_bytes())
}

/// GetCapabilities().
pub fn get_capabilities_args() -> Vec<u8> {
    request(GET_CAPABILITIES).into_bytes()
}

// ----- replies --------------------------------------------------------------

fn get_fetch_status_reply(d: &mut Decoder<'_>) -> Result<FetchStatusReply, XdrError> {
    Ok(FetchStatusReply {
        status: d.get()?,
        callback: d.get()?,
        volsync: d.get()?,
    })
}

/// FetchStatus reply.
pub fn decode_fetch_status_reply(buf: &[u8]) -> Result<FetchStatusReply, XdrError> {
    decode_whole(buf, get_fetch_status_reply)
}

/// The 4-byte length that precedes FetchData (32-bit) data.
pub fn decode_fetch_data_length(buf: &[u8]) -> Result<u32, XdrError> {
    decode_whole(buf, |d| d.get_u32())
}

/// The 8-byte length (high word, low word) that precedes FetchData64 data:
/// how many data bytes follow. Negative values are rejected.
pub fn decode_fetch_data64_length(buf: &[u8]) -> Result<u64, XdrError> {
    decode_whole(buf, |d| {
        let len = d.get_i64()?;
        u64::try_from(len).map_err(|_| XdrError::Invalid {
            what: "FetchData64 length",
            value: (len >> 32) as u32,
        })
    })
}

/// What follows the data of FetchData/FetchData64.
pub fn decode_fetch_data_trailer(buf: &[u8]) -> Result<FetchStatusReply, XdrError> {
    decode_whole(buf, get_fetch_status_reply)
}

/// Size of the FetchData trailer: status (84) + callback (12) + volsync (24).
pub const FETCH_DATA_TRAILER_LEN: usize = 84 + 12 + 24;

fn get_status_reply(d: &mut Decoder<'_>) -> Result<StatusReply, XdrError> {
    Ok(StatusReply {
        status: d.get()?,
        volsync: d.get()?,
    })
}

/// Reply of StoreData, StoreData64, StoreStatus, RemoveFile and RemoveDir.
pub fn decode_store_reply(buf: &[u8]) -> Result<StatusReply, XdrError> {
    decode_whole(buf, get_status_reply)
}

/// Reply of RemoveFile (the directory's new status).
pub fn decode_remove_file_reply(buf: &[u8]) -> Result<StatusReply, XdrError> {
    decode_store_reply(buf)
}

/// Reply of RemoveDir (the parent directory's new status).
pub fn decode_remove_dir_reply(buf: &[u8]) -> Result<StatusReply, XdrError> {
    decode_store_reply(buf)
}

fn get_create_reply(d: &mut Decoder<'_>) -> Result<CreateReply, XdrError> {
    Ok(CreateReply {
        fid: d.get()?,
        status: d.get()?,
        dir_status: d.get()?,
        callback: d.get()?,
        volsync: d.get()?,
    })
}

/// Reply of CreateFile.
pub fn decode_create_file_reply(buf: &[u8]) -> Result<CreateReply, XdrError> {
    decode_whole(buf, get_create_reply)
}

/// Reply of MakeDir (same layout as CreateFile).
pub fn decode_make_dir_reply(buf: &[u8]) -> Result<CreateReply, XdrError> {
    decode_whole(buf, get_create_reply)
}

/// Reply of Lookup (same layout as CreateFile).
pub fn decode_lookup_reply(buf: &[u8]) -> Result<CreateReply, XdrError> {
    decode_whole(buf, get_create_reply)
}

/// Reply of Symlink.
pub fn decode_symlink_reply(buf: &[u8]) -> Result<SymlinkReply, XdrError> {
    decode_whole(buf, |d| {
        Ok(SymlinkReply {
            fid: d.get()?,
            status: d.get()?,
            dir_status: d.get()?,
            volsync: d.get()?,
        })
    })
}

/// Reply of Link: the linked file's status and the directory's.
pub fn decode_link_reply(buf: &[u8]) -> Result<LinkReply, XdrError> {
    decode_whole(buf, |d| {
        Ok(LinkReply {
            status: d.get()?,
            dir_status: d.get()?,
            volsync: d.get()?,
        })
    })
}

/// Reply of Rename.
pub fn decode_rename_reply(buf: &[u8]) -> Result<RenameReply, XdrError> {
    decode_whole(buf, |d| {
        Ok(RenameReply {
            old_dir_status: d.get()?,
            new_dir_status: d.get()?,
            volsync: d.get()?,
        })
    })
}

/// Reply of GetVolumeStatus.
pub fn decode_get_volume_status_reply(buf: &[u8]) -> Result<FetchVolumeStatus, XdrError> {
    decode_whole(buf, |d| d.get())
}

/// Reply of InlineBulkStatus. The status and callback arrays must have the
/// same length, since entries are matched up by position.
pub fn decode_inline_bulk_status_reply(buf: &[u8]) -> Result<BulkStatusReply, XdrError> {
    decode_whole(buf, |d| {
        let stats: Vec<FetchStatus> = d.get_array("AFSBulkStats", AFS_CB_MAX)?;
        let cbs: Vec<CallBack> = d.get_array("AFSCBs", AFS_CB_MAX)?;
        if cbs.len() != stats.len() {
            return Err(XdrError::Invalid {
                what: "InlineBulkStatus callback count",
                value: cbs.len() as u32,
            });
        }
        let volsync = d.get()?;
        let entries = stats
            .into_iter()
            .zip(cbs)
            .map(|(status, callback)| BulkStatusEntry { status, callback })
            .collect();
        Ok(BulkStatusReply { entries, volsync })
    })
}

/// Reply of FetchACL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AclReply {
    /// The ACL in its textual wire form (may end with a NUL).
    pub acl: Vec<u8>,
    /// The vnode's status.
    pub status: FetchStatus,
    /// Volume sync info.
    pub volsync: VolSync,
}

/// Reply of FetchACL.
pub fn decode_fetch_acl_reply(buf: &[u8]) -> Result<AclReply, XdrError> {
    decode_whole(buf, |d| {
        Ok(AclReply {
            acl: d.get_opaque("AFSOpaque", AFS_OPAQUE_MAX)?.to_vec(),
            status: d.get()?,
            volsync: d.get()?,
        })
    })
}

/// Reply of GetCapabilities.
pub fn decode_get_capabilities_reply(buf: &[u8]) -> Result<Capabilities, XdrError> {
    decode_whole(buf, |d| d.get())
}

/// Reply of GiveUpAllCallBacks (empty).
pub fn decode_empty_reply(buf: &[u8]) -> Result<(), XdrError> {
    decode_whole(buf, |_| Ok(()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::tests::sample_status;
    use crate::types::{CallBackType, FileType};
    use crate::xdr::test_util::check_never_panics;
    use crate::xdr::Encoder;

    fn fid() -> Fid {
        Fid::new(536870919, 2, 3)
    }

    fn cb() -> CallBack {
        CallBack {
            version: 1,
            expiration_time: 3600,
            cb_type: CallBackType::Shared,
        }
    }

    fn vs() -> VolSync {
        VolSync {
            creation_date: 1_600_000_000,
            spares: [0; 5],
        }
    }

    fn words(b: &[u8]) -> Vec<u32> {
        b.chunks(4)
            .map(|c| u32::from_be_bytes(c.try_into().unwrap()))
            .collect()
    }

    #[test]
    fn fetch_status_request_layout() {
        assert_eq!(words(&fetch_status_args(fid())), [132, 536870919, 2, 3]);
    }

    #[test]
    fn fetch_data64_request_layout() {
        let b = fetch_data64_args(fid(), 0x1_0000_0002, 65536);
        assert_eq!(words(&b), [65537, 536870919, 2, 3, 1, 2, 0, 65536]);
        assert_eq!(
            words(&fetch_data_args(fid(), 5, 6)),
            [130, 536870919, 2, 3, 5, 6]
        );
    }

    #[test]
    fn store_data64_request_layout() {
        let st = StoreStatus::new().with_mod_time(77);
        let b = store_data64_args(fid(), &st, 10, 20, 30);
        assert_eq!(
            words(&b),
            [65538, 536870919, 2, 3, 1, 77, 0, 0, 0, 0, 0, 10, 0, 20, 0, 30]
        );
        let b = store_data_args(fid(), &st, 10, 20, 30);
        assert_eq!(
            words(&b),
            [133, 536870919, 2, 3, 1, 77, 0, 0, 0, 0, 10, 20, 30]
        );
    }

    #[test]
    fn name_requests() {
        let b = create_file_args(fid(), "hello", &StoreStatus::new().with_mode(0o644)).unwrap();
        // opcode, fid(3), len 5, "hello" + 3 pad, storestatus(6)
        assert_eq!(b.len(), 4 + 12 + 4 + 8 + 24);
        assert_eq!(
            &b[16..28],
            &[0, 0, 0, 5, b'h', b'e', b'l', b'l', b'o', 0, 0, 0]
        );
        assert_eq!(&b[28..32], &[0, 0, 0, 8]); // mask SET_MODE
        assert!(remove_file_args(fid(), "").is_err());
        assert!(remove_file_args(fid(), &"x".repeat(257)).is_err());
        assert!(remove_file_args(fid(), &"x".repeat(256)).is_ok());
        assert!(make_dir_args(fid(), "a\0b", &StoreStatus::new()).is_err());
        let r = rename_args(fid(), "a", Fid::new(1, 1, 1), "bcd").unwrap();
        assert_eq!(
            words(&r),
            [
                138,
                536870919,
                2,
                3,
                1,
                0x6100_0000,
                1,
                1,
                1,
                3,
                0x6263_6400
            ]
        );
        let s = symlink_args(fid(), "l", "#root.cell.", &StoreStatus::new()).unwrap();
        assert_eq!(s.len(), 4 + 12 + 8 + 4 + 12 + 24);
        assert_eq!(words(&lookup_args(fid(), "x").unwrap())[0], 161);
        assert_eq!(words(&remove_dir_args(fid(), "x").unwrap())[0], 142);
        assert_eq!(words(&get_volume_status_args(7)), [149, 7]);
        assert_eq!(words(&give_up_all_callbacks_args()), [65539]);
        assert_eq!(words(&get_capabilities_args()), [65540]);
        assert_eq!(
            words(&store_status_args(fid(), &StoreStatus::new()))[0],
            135
        );
    }

    #[test]
    fn acl_calls() {
        assert_eq!(words(&fetch_acl_args(fid())), [131, 536870919, 2, 3]);
        let b = store_acl_args(fid(), b"1\n0\nsystem:anyuser 9\n").unwrap();
        assert_eq!(words(&b)[..5], [164, 536870919, 2, 3, 21]);
        assert!(store_acl_args(fid(), &[b'x'; 1025]).is_err());
        let mut e = Encoder::new();
        e.put_opaque(b"1\n0\nadmin 127\n\0")
            .put(&sample_status())
            .put(&vs());
        let b = e.into_bytes();
        let r = decode_fetch_acl_reply(&b).unwrap();
        assert_eq!(r.acl, b"1\n0\nadmin 127\n\0");
        check_never_panics(&b, decode_fetch_acl_reply);
    }

    #[test]
    fn bulk_status_request() {
        let fids = [fid(), Fid::new(1, 3, 4)];
        let b = inline_bulk_status_args(&fids).unwrap();
        assert_eq!(words(&b), [65536, 2, 536870919, 2, 3, 1, 3, 4]);
        assert!(inline_bulk_status_args(&[fid(); 51]).is_err());
    }

    #[test]
    fn fetch_status_reply_round_trip() {
        let mut e = Encoder::new();
        e.put(&sample_status()).put(&cb()).put(&vs());
        let b = e.into_bytes();
        assert_eq!(b.len(), FETCH_DATA_TRAILER_LEN);
        let r = decode_fetch_status_reply(&b).unwrap();
        assert_eq!(r.status, sample_status());
        assert_eq!(r.callback, cb());
        assert_eq!(r.volsync, vs());
        assert_eq!(decode_fetch_data_trailer(&b).unwrap(), r);
        check_never_panics(&b, decode_fetch_status_reply);
        let mut longer = b.clone();
        longer.push(0);
        assert!(matches!(
            decode_fetch_status_reply(&longer),
            Err(XdrError::TrailingBytes(1))
        ));
    }

    #[test]
    fn fetch_data_lengths() {
        assert_eq!(
            decode_fetch_data64_length(&[0, 0, 0, 1, 0, 0, 0, 2]).unwrap(),
            0x1_0000_0002
        );
        assert!(decode_fetch_data64_length(&[0xff; 8]).is_err());
        assert!(decode_fetch_data64_length(&[0; 7]).is_err());
        assert_eq!(decode_fetch_data_length(&[0, 0, 1, 0]).unwrap(), 256);
    }

    #[test]
    fn store_reply_round_trip() {
        let mut e = Encoder::new();
        e.put(&sample_status()).put(&vs());
        let b = e.into_bytes();
        let r = decode_store_reply(&b).unwrap();
        assert_eq!(r.status, sample_status());
        assert_eq!(decode_remove_file_reply(&b).unwrap(), r);
        assert_eq!(decode_remove_dir_reply(&b).unwrap(), r);
        check_never_panics(&b, decode_store_reply);
    }

    #[test]
    fn create_and_symlink_replies() {
        let mut dir = sample_status();
        dir.file_type = FileType::Directory;
        let mut e = Encoder::new();
        e.put(&fid())
            .put(&sample_status())
            .put(&dir)
            .put(&cb())
            .put(&vs());
        let b = e.into_bytes();
        let r = decode_create_file_reply(&b).unwrap();
        assert_eq!(r.fid, fid());
        assert!(r.dir_status.is_dir());
        assert_eq!(decode_make_dir_reply(&b).unwrap(), r);
        assert_eq!(decode_lookup_reply(&b).unwrap(), r);
        check_never_panics(&b, decode_create_file_reply);

        let mut e = Encoder::new();
        e.put(&fid()).put(&sample_status()).put(&dir).put(&vs());
        let b = e.into_bytes();
        let s = decode_symlink_reply(&b).unwrap();
        assert_eq!(s.fid, fid());
        check_never_panics(&b, decode_symlink_reply);

        let mut e = Encoder::new();
        e.put(&dir).put(&dir).put(&vs());
        let b = e.into_bytes();
        assert_eq!(decode_rename_reply(&b).unwrap().new_dir_status, dir);
        check_never_panics(&b, decode_rename_reply);
    }

    #[test]
    fn bulk_status_reply() {
        let bad = FetchStatus {
            error_code: 102,
            ..Default::default()
        };
        let mut e = Encoder::new();
        e.put_array(&[sample_status(), bad])
            .put_array(&[cb(), CallBack::default()])
            .put(&vs());
        let b = e.into_bytes();
        let r = decode_inline_bulk_status_reply(&b).unwrap();
        assert_eq!(r.entries.len(), 2);
        assert_eq!(r.entries[0].error(), None);
        assert_eq!(r.entries[1].error(), Some(102));
        check_never_panics(&b, decode_inline_bulk_status_reply);

        // Mismatched counts are rejected.
        let mut e = Encoder::new();
        e.put_array(&[sample_status()])
            .put_array::<CallBack>(&[])
            .put(&vs());
        assert!(decode_inline_bulk_status_reply(e.as_bytes()).is_err());
    }

    #[test]
    fn volume_status_and_capabilities_replies() {
        let v = FetchVolumeStatus {
            vid: 5,
            name: "user.x".into(),
            offline_msg: "gone".into(),
            ..Default::default()
        };
        let b = crate::xdr::encode_to_vec(&v);
        assert_eq!(decode_get_volume_status_reply(&b).unwrap(), v);
        check_never_panics(&b, decode_get_volume_status_reply);

        let c = decode_get_capabilities_reply(&[0, 0, 0, 1, 0, 0, 0, 5]).unwrap();
        assert_eq!(c, Capabilities(vec![5]));
        assert!(decode_empty_reply(&[]).is_ok());
        assert!(decode_empty_reply(&[0]).is_err());
    }
}
