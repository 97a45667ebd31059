//! Making AFS calls over Rx: the client's error type and the call-and-decode step.

use std::net::SocketAddr;

use std::sync::Arc;

use rx::security::Security;
use rx::{Endpoint, RxError};

use crate::cache::validity::ANONYMOUS;
use crate::error::{AbortCode, ErrorKind};
use crate::xdr::XdrError;

/// What went wrong in an AFS operation, with the meaning a user needs.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server refused: permission denied, no such file, volume offline... `who` names
    /// the identity a refusal of access or credentials was for.
    #[error("{}", refusal(code, who.as_deref()))]
    Aborted {
        server: SocketAddr,
        code: AbortCode,
        who: Option<Arc<str>>,
    },
    /// The server could not be reached, or the call died.
    #[error("{0}")]
    Rx(RxError),
    /// The server's reply did not decode.
    #[error("malformed reply from {server}: {source}")]
    BadReply {
        server: SocketAddr,
        source: XdrError,
    },
    /// Our own arguments could not be encoded (a name too long, for instance).
    #[error("invalid argument: {0}")]
    BadArgument(XdrError),
    /// A condition found without asking a server.
    #[error("{message}")]
    Local { kind: ErrorKind, message: String },
    /// An operation on a path failed. (Not a `source`: the message already says it.)
    #[error("{}", at_path(path, inner))]
    At { path: String, inner: Box<Error> },
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl Error {
    /// The class of failure, for programs that react to it.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Aborted { code, .. } => code.kind(),
            Error::Rx(e) if e.is_unreachable() => ErrorKind::ServerUnreachable,
            // A challenge our token could not answer (level, expiry): its rxkad code says why.
            Error::Rx(RxError::LocallyAborted { code }) if AbortCode(*code).name().is_some() => {
                AbortCode(*code).kind()
            }
            Error::Rx(_) | Error::BadReply { .. } => ErrorKind::Protocol,
            Error::BadArgument(_) => ErrorKind::Other,
            Error::Local { kind, .. } => *kind,
            Error::At { inner, .. } => inner.kind(),
            Error::Io(_) => ErrorKind::Other,
        }
    }

    pub fn local(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error::Local {
            kind,
            message: message.into(),
        }
    }

    /// Attaches the path the operation was about.
    pub fn at(self, path: impl Into<String>) -> Self {
        match self {
            e @ Error::At { .. } => e,
            e => Error::At {
                path: path.into(),
                inner: Box::new(e),
            },
        }
    }

    /// The abort code, when the server refused.
    pub fn abort_code(&self) -> Option<i32> {
        match self {
            Error::Aborted { code, .. } => Some(code.code()),
            Error::At { inner, .. } => inner.abort_code(),
            _ => None,
        }
    }
}

impl From<RxError> for Error {
    fn from(e: RxError) -> Self {
        match e {
            RxError::Aborted { peer, code } => Error::Aborted {
                server: peer,
                code: AbortCode(code),
                who: None,
            },
            e => Error::Rx(e),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// "permission denied for alice@REALM", "wrong key (RXKADSEALEDINCON) for alice@REALM".
fn refusal(code: &AbortCode, who: Option<&str>) -> String {
    match (who, code.kind()) {
        (Some(who), ErrorKind::TokenExpired | ErrorKind::AuthenticationFailed) => {
            match code.name() {
                Some(name) if name.starts_with("RXKAD") => {
                    format!("{} ({name}) for {who}", code.message())
                }
                _ => format!("{code} for {who}"),
            }
        }
        (Some(who), _) => format!("{code} for {who}"),
        (None, _) => code.to_string(),
    }
}

/// "PATH: no such file", but "permission denied for alice@REALM on PATH", and for a caller
/// without a token "permission denied for anonymous on PATH (no token for cell C)": the
/// likely fix is a login.
fn at_path(path: &str, inner: &Error) -> String {
    match inner {
        Error::Aborted { who: Some(who), .. } if &**who == ANONYMOUS => {
            match crate::path::AfsPath::parse(path) {
                Ok(p) => format!("{inner} on {path} (no token for cell {})", p.cell),
                Err(_) => format!("{inner} on {path}"),
            }
        }
        Error::Aborted { who: Some(_), .. } => format!("{inner} on {path}"),
        _ => format!("{path}: {inner}"),
    }
}

impl Error {
    /// The refusal `server` would give `who` (UAEACCES), decided here from the rights it
    /// told `who` before: cached bytes are not served around an ACL.
    pub fn denied(server: SocketAddr, who: &str) -> Self {
        Error::Aborted {
            server,
            code: AbortCode(crate::error::UAE_ERROR_BASE + 12),
            who: Some(Arc::from(who)),
        }
    }

    /// Names `who` in a refusal of access or of credentials.
    pub fn refused_to(self, who: &Arc<str>) -> Self {
        match self {
            Error::Aborted { server, code, .. }
                if matches!(
                    code.kind(),
                    ErrorKind::PermissionDenied
                        | ErrorKind::TokenExpired
                        | ErrorKind::AuthenticationFailed
                ) =>
            {
                Error::Aborted {
                    server,
                    code,
                    who: Some(who.clone()),
                }
            }
            e => e,
        }
    }
}

/// Sends a whole request and decodes the whole reply.
pub async fn call<T>(
    endpoint: &Endpoint,
    server: SocketAddr,
    service: u16,
    request: &[u8],
    decode: impl FnOnce(&[u8]) -> Result<T, XdrError>,
) -> Result<T> {
    call_as(
        endpoint,
        server,
        service,
        &Security::null(),
        request,
        decode,
    )
    .await
}

/// [`call`] on a connection of `security`.
pub async fn call_as<T>(
    endpoint: &Endpoint,
    server: SocketAddr,
    service: u16,
    security: &Security,
    request: &[u8],
    decode: impl FnOnce(&[u8]) -> Result<T, XdrError>,
) -> Result<T> {
    call_on(endpoint.call_as(server, service, security), request, decode).await
}

/// [`call`] on a call already started (with its own dead time, say).
pub async fn call_on<T>(
    mut call: rx::Call,
    request: &[u8],
    decode: impl FnOnce(&[u8]) -> Result<T, XdrError>,
) -> Result<T> {
    let server = call.peer();
    call.write(request).await?;
    call.finish_sending().await?;
    let reply = call.read_to_end(rx::MAX_WHOLE_REPLY).await?;
    decode(&reply).map_err(|source| Error::BadReply { server, source })
}

/// Maps an argument-encoding failure.
pub fn args(r: Result<Vec<u8>, XdrError>) -> Result<Vec<u8>> {
    r.map_err(Error::BadArgument)
}
