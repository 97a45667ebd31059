//! Errors as guests see them (the WIT `error` record) and traps as users see them.

use afs::error::ErrorKind;

use super::bindings::afs::client::files::{Error, ErrorCode};
use crate::afs_runtime::RuntimeGone;
use crate::memory;
use crate::pager::{Pager, PagerError};

/// An error for the guest; `message` should name the path.
pub(crate) fn wit_error(code: ErrorCode, message: impl Into<String>) -> Error {
    Error {
        code,
        message: message.into(),
    }
}

/// Where an error happened: opening a path, or working on a file already open (then a
/// file the server no longer knows is `stale`, not `not-found`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stage {
    Open,
    OpenFile,
}

/// The WIT code for an AFS error kind.
pub(crate) fn code_of(kind: ErrorKind, stage: Stage) -> ErrorCode {
    match kind {
        ErrorKind::NotFound | ErrorKind::NoSuchVolume if stage == Stage::OpenFile => {
            ErrorCode::Stale
        }
        ErrorKind::NotFound | ErrorKind::NotDirectory | ErrorKind::NoSuchVolume => {
            ErrorCode::NotFound
        }
        ErrorKind::PermissionDenied
        | ErrorKind::Confined
        | ErrorKind::TokenExpired
        | ErrorKind::AuthenticationFailed => ErrorCode::AccessDenied,
        ErrorKind::Conflict => ErrorCode::Conflict,
        ErrorKind::WrittenPastEnd => ErrorCode::InvalidArgument,
        ErrorKind::ReadOnly => ErrorCode::ReadOnly,
        ErrorKind::IsDirectory => ErrorCode::IsDirectory,
        ErrorKind::NoSpace | ErrorKind::QuotaExceeded => ErrorCode::NoSpace,
        ErrorKind::VolumeOffline | ErrorKind::VolumeBusy | ErrorKind::VolumeMoved => {
            ErrorCode::Busy
        }
        ErrorKind::ServerUnreachable => ErrorCode::ServerUnreachable,
        ErrorKind::InvalidArgument | ErrorKind::NameTooLong => ErrorCode::InvalidArgument,
        ErrorKind::Exists
        | ErrorKind::NotEmpty
        | ErrorKind::Protocol
        | ErrorKind::Other
        | ErrorKind::CrossDevice
        | ErrorKind::Loop
        | ErrorKind::TooManyLinks => ErrorCode::Other,
    }
}

/// `message`, prefixed with `path` unless it already names it.
fn naming(path: &str, message: String) -> String {
    if message.contains(path) {
        message
    } else {
        format!("{path}: {message}")
    }
}

/// A failure of the client or cache manager on `path`.
pub(crate) fn afs_error(path: &str, e: &afs::rpc::Error, stage: Stage) -> Error {
    wit_error(code_of(e.kind(), stage), naming(path, e.to_string()))
}

/// A failure of the pager on `path`.
pub(crate) fn pager_error(path: &str, e: &PagerError) -> Error {
    let code = match e {
        PagerError::InvalidArgument(_) => ErrorCode::InvalidArgument,
        e => code_of(e.kind(), Stage::OpenFile),
    };
    wit_error(code, naming(path, e.to_string()))
}

pub(crate) fn gone(path: &str, _: RuntimeGone) -> Error {
    wit_error(
        ErrorCode::Other,
        format!("{path}: the host is shutting down"),
    )
}

/// A memory fault of wasm code, as wasmtime reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Fault {
    pub(crate) wasm_address: u64,
    pub(crate) memory_size: usize,
}

/// Finds the memory fault in a trap's error chain. wasmtime 48 attaches a `WasmFault`
/// context to the trap but does not export the type, so this reads its message:
/// "memory fault at wasm address 0x.. in linear memory of size 0x..".
pub(crate) fn wasm_fault(err: &wasmtime::Error) -> Option<Fault> {
    err.chain().find_map(|e| parse_fault(&e.to_string()))
}

fn parse_fault(msg: &str) -> Option<Fault> {
    let rest = msg.strip_prefix("memory fault at wasm address 0x")?;
    let (addr, rest) = rest.split_once(' ')?;
    let size = rest.strip_prefix("in linear memory of size 0x")?;
    Some(Fault {
        wasm_address: u64::from_str_radix(addr, 16).ok()?,
        memory_size: usize::from_str_radix(size.trim_end(), 16).ok()?,
    })
}

/// A trap as the user should see it: if it is a memory fault of wasm code on a page the
/// pager manages, the pager's explanation ("write to a read-only mapping of /afs/...",
/// "AFS server unreachable: /afs/...") goes in front, the trap itself stays as its
/// cause. `bases` are the guest memories the guest's mappings went into.
pub(crate) fn explain_trap(err: wasmtime::Error, pager: &Pager, bases: &[usize]) -> anyhow::Error {
    let explanation = wasm_fault(&err).and_then(|fault| {
        bases.iter().find_map(|&base| {
            let live = memory::memory_containing(base)?;
            if live.base != base || live.size != fault.memory_size {
                return None;
            }
            pager.explain_fault(memory::fault_address(base, fault.wasm_address)?)
        })
    });
    let err = anyhow::Error::from(err);
    match explanation {
        Some(msg) => err.context(msg),
        None => err,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_files_that_vanish_are_stale() {
        assert_eq!(
            code_of(ErrorKind::NotFound, Stage::Open),
            ErrorCode::NotFound
        );
        assert_eq!(
            code_of(ErrorKind::NotFound, Stage::OpenFile),
            ErrorCode::Stale
        );
        assert_eq!(
            code_of(ErrorKind::ServerUnreachable, Stage::OpenFile),
            ErrorCode::ServerUnreachable
        );
    }

    #[test]
    fn faults_are_found_in_the_chain() {
        let msg = "memory fault at wasm address 0x11000 in linear memory of size 0x120000";
        let fault = Fault {
            wasm_address: 0x11000,
            memory_size: 0x120000,
        };
        assert_eq!(parse_fault(msg), Some(fault));
        let err = wasmtime::Error::msg("out of bounds memory access")
            .context(msg)
            .context("wasm backtrace: ...");
        assert_eq!(wasm_fault(&err), Some(fault));
        assert_eq!(parse_fault("memory fault at wasm address 0xzz in"), None);
    }

    #[test]
    fn messages_name_the_path() {
        let e = afs::rpc::Error::local(ErrorKind::PermissionDenied, "no");
        let w = afs_error("/afs/c/x", &e, Stage::Open);
        assert_eq!(w.code, ErrorCode::AccessDenied);
        assert_eq!(w.message, "/afs/c/x: no");
        let w = afs_error("/afs/c/x", &e.at("/afs/c/x"), Stage::Open);
        assert_eq!(w.message, "/afs/c/x: no");
    }
}
