//! The errors of `wasi:filesystem` calls: a code for the guest, or a trap.

use afs::error::ErrorKind;
use wasmtime::component::ResourceTableError;

use super::bindings::wasi::filesystem::types::ErrorCode;

/// What a filesystem call fails with: an `error-code` the guest gets, or a trap (a bad
/// resource handle, the host shutting down). A local type, so that it can come from
/// both our codes and table errors (the orphan rule forbids that on wasmtime-wasi's
/// `TrappableError<OurErrorCode>`).
#[derive(Debug)]
pub enum FsError {
    Code(ErrorCode),
    Trap(wasmtime::Error),
}

impl From<ErrorCode> for FsError {
    fn from(code: ErrorCode) -> Self {
        FsError::Code(code)
    }
}

impl From<ResourceTableError> for FsError {
    fn from(e: ResourceTableError) -> Self {
        FsError::Trap(e.into())
    }
}

impl From<wasmtime::Error> for FsError {
    fn from(e: wasmtime::Error) -> Self {
        FsError::Trap(e)
    }
}

pub(crate) type FsResult<T> = Result<T, FsError>;

/// The `error-code` for an AFS failure: the errno a Linux AFS client (and so a local
/// directory under wasmtime-wasi) would give for the same refusal.
pub(crate) fn code_of(kind: ErrorKind) -> ErrorCode {
    match kind {
        ErrorKind::NotFound | ErrorKind::NoSuchVolume => ErrorCode::NoEntry,
        ErrorKind::PermissionDenied => ErrorCode::Access,
        ErrorKind::Confined => ErrorCode::NotPermitted,
        ErrorKind::Exists => ErrorCode::Exist,
        ErrorKind::NotDirectory => ErrorCode::NotDirectory,
        ErrorKind::IsDirectory => ErrorCode::IsDirectory,
        ErrorKind::NotEmpty => ErrorCode::NotEmpty,
        ErrorKind::NoSpace => ErrorCode::InsufficientSpace,
        ErrorKind::QuotaExceeded => ErrorCode::Quota,
        ErrorKind::ReadOnly => ErrorCode::ReadOnly,
        ErrorKind::VolumeOffline | ErrorKind::VolumeBusy | ErrorKind::VolumeMoved => {
            ErrorCode::Busy
        }
        ErrorKind::CrossDevice => ErrorCode::CrossDevice,
        ErrorKind::InvalidArgument => ErrorCode::Invalid,
        ErrorKind::NameTooLong => ErrorCode::NameTooLong,
        ErrorKind::Loop => ErrorCode::Loop,
        ErrorKind::TooManyLinks => ErrorCode::TooManyLinks,
        ErrorKind::WrittenPastEnd => ErrorCode::FileTooLarge,
        ErrorKind::ServerUnreachable
        | ErrorKind::Protocol
        | ErrorKind::Conflict
        | ErrorKind::Other => ErrorCode::Io,
    }
}

/// The code for an AFS failure on `what`, logged with its message (a WASI error code
/// carries none).
pub(crate) fn afs_failure(what: &str, e: &afs::rpc::Error) -> FsError {
    let code = code_of(e.kind());
    tracing::debug!(path = %what, error = %e, ?code, "filesystem call failed");
    FsError::Code(code)
}
