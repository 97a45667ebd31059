//! Bindings of `wasi:filesystem` 0.2.12 (host/wit-wasi), with wasmtime-wasi's own
//! `wasi:io` and `wasi:clocks` types, so our streams and datetimes are theirs.

wasmtime::component::bindgen!({
    path: "wit-wasi",
    world: "afs-wasm:wasi-fs/filesystem",
    imports: { default: async | trappable },
    trappable_error_type: { "wasi:filesystem/types.error-code" => super::FsError },
    with: {
        "wasi:io": wasmtime_wasi_io::bindings::wasi::io,
        "wasi:clocks": wasmtime_wasi::p2::bindings::clocks,
        "wasi:filesystem/types.descriptor": super::Descriptor,
        "wasi:filesystem/types.directory-entry-stream": super::DirectoryStream,
    },
});
