//! The errors of `wasi:filesystem` calls: a code for the guest, or a trap.

use afs::error::ErrorKind;
use wasmtime::component::{Resource, ResourceTableError};
use wasmtime_wasi::filesystem::WasiFilesystemCtxView;

use super::bindings::wasi::filesystem::types::{self as t, ErrorCode};
use super::convert::ours;
use super::descriptor::borrow;
use crate::runtime::GuestState;

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
        // WASI has no "key expired/rejected": the guest is refused, the host logs why.
        ErrorKind::PermissionDenied | ErrorKind::TokenExpired | ErrorKind::AuthenticationFailed => {
            ErrorCode::Access
        }
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

/// `filesystem-error-code`: the code of a stream's error, ours (an AFS error or a
/// code) or wasmtime-wasi's (an I/O error of a local file).
impl t::Host for GuestState {
    fn convert_error_code(&mut self, err: FsError) -> wasmtime::Result<ErrorCode> {
        match err {
            FsError::Code(code) => Ok(code),
            FsError::Trap(e) => Err(e),
        }
    }

    async fn filesystem_error_code(
        &mut self,
        err: Resource<wasmtime::Error>,
    ) -> wasmtime::Result<Option<ErrorCode>> {
        let e = self.table.get(&err)?;
        if let Some(code) = e.downcast_ref::<ErrorCode>() {
            return Ok(Some(*code));
        }
        if let Some(afs) = e.downcast_ref::<afs::rpc::Error>() {
            return Ok(Some(super::errors::code_of(afs.kind())));
        }
        Ok(self
            .local()
            .filesystem_error_code_of(borrow(&err))
            .map(ours))
    }
}

/// wasmtime-wasi's `filesystem-error-code` for an error in the table.
trait LocalErrorCode {
    fn filesystem_error_code_of(
        &mut self,
        err: Resource<wasmtime::Error>,
    ) -> Option<wasmtime_wasi::p2::bindings::filesystem::types::ErrorCode>;
}

impl LocalErrorCode for WasiFilesystemCtxView<'_> {
    fn filesystem_error_code_of(
        &mut self,
        err: Resource<wasmtime::Error>,
    ) -> Option<wasmtime_wasi::p2::bindings::filesystem::types::ErrorCode> {
        let e = self.table.get(&err).ok()?;
        e.downcast_ref::<std::io::Error>().map(Into::into)
    }
}
