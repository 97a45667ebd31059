//! Every AFS decoder, on any bytes, returns an error or a value: never a panic.
//!
//! The codecs come from `afs_proto` (no I/O); only the path parsers are the
//! client's (`afs::path`, whose errors are the client's RPC errors).
#![no_main]

use afs_proto::proto::{cb, fs, vl};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = cb::CbRequest::decode(data);
    let _ = fs::decode_fetch_status_reply(data);
    let _ = fs::decode_fetch_data64_length(data);
    let _ = fs::decode_fetch_data_trailer(data);
    let _ = fs::decode_store_reply(data);
    let _ = fs::decode_create_file_reply(data);
    let _ = fs::decode_symlink_reply(data);
    let _ = fs::decode_rename_reply(data);
    let _ = fs::decode_inline_bulk_status_reply(data);
    let _ = fs::decode_get_volume_status_reply(data);
    let _ = fs::decode_get_capabilities_reply(data);
    let _ = vl::decode_uvldb_entry(data);
    let _ = vl::decode_nvldb_entry(data);
    let _ = vl::decode_vldb_entry(data);
    let _ = vl::decode_get_addrs_u_reply(data);
    if let Ok(dir) = afs_proto::dir::Directory::parse(data) {
        for e in dir.entries() {
            let _ = dir.lookup(&e.name);
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = afs_proto::cell::CellServDb::parse(text);
        let _ = afs::path::AfsPath::parse(text);
    }
    let _ = afs::path::MountPoint::parse(data);
});
