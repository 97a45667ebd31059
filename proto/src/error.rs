//! Meaning of the abort codes AFS servers send.
//!
//! An Rx call that fails ends with a 32-bit abort code, and the same number
//! space is shared by several unrelated sources:
//!
//! * Rx itself (small negative numbers) and rxgen stubs (-450..-457);
//! * fileserver volume errors (101..120, plus -100 "restarting");
//! * com_err tables, each at a base computed from the table name: the VL
//!   table (`vl_errors.et`, base 363520) and the "unified AFS errors" (UAE)
//!   table (`unified_afs.et`, base 49733376) that an OpenAFS fileserver uses
//!   *instead of* raw errno values once the client has advertised
//!   `CLIENT_CAPABILITY_ERRORTRANS`;
//! * otherwise, plain errno values of the *server's* platform.
//!
//! [`AbortCode`] turns any of these into a message and an [`ErrorKind`] the
//! CLI can match on.

use std::fmt;

// Rx and rxgen codes (OpenAFS rx.h and rxgen). The `rx` crate defines the same
// numbers in `rx::error::codes` for the transport; they are repeated here so this
// crate does not depend on Rx, and a test in `afs` checks that the two agree.

/// Rx: the peer stopped responding.
pub const RX_CALL_DEAD: i32 = -1;
/// Rx: operation not valid in the call's state.
pub const RX_INVALID_OPERATION: i32 = -2;
/// Rx: the call exceeded its hard time limit.
pub const RX_CALL_TIMEOUT: i32 = -3;
/// Rx: unexpected end of data.
pub const RX_EOF: i32 = -4;
/// Rx: malformed packets.
pub const RX_PROTOCOL_ERROR: i32 = -5;
/// Rx: the application aborted the call without a specific code.
pub const RX_USER_ABORT: i32 = -6;
/// Rx: address in use.
pub const RX_ADDRINUSE: i32 = -7;
/// Rx: message too large.
pub const RX_MSGSIZE: i32 = -8;
/// Rx / fileserver (`VRESTARTING`): server is shutting down or restarting.
pub const RX_RESTARTING: i32 = -100;
/// Client stub failed to marshal arguments.
pub const RXGEN_CC_MARSHAL: i32 = -450;
/// Client stub failed to unmarshal results.
pub const RXGEN_CC_UNMARSHAL: i32 = -451;
/// Server stub failed to marshal results.
pub const RXGEN_SS_MARSHAL: i32 = -452;
/// Server stub failed to unmarshal arguments.
pub const RXGEN_SS_UNMARSHAL: i32 = -453;
/// Decode error.
pub const RXGEN_DECODE: i32 = -454;
/// The server does not implement this opcode.
pub const RXGEN_OPCODE: i32 = -455;
/// Server stub failed to free results.
pub const RXGEN_SS_XDRFREE: i32 = -456;
/// Client stub failed to free results.
pub const RXGEN_CC_XDRFREE: i32 = -457;

/// Volume needs salvaging.
pub const VSALVAGE: i32 = 101;
/// Vnode does not exist (stale FID).
pub const VNOVNODE: i32 = 102;
/// Volume not attached / does not exist on this server.
pub const VNOVOL: i32 = 103;
/// Volume already exists.
pub const VVOLEXISTS: i32 = 104;
/// Volume not in service (older servers also used it to kill idle calls).
pub const VNOSERVICE: i32 = 105;
/// Volume is offline.
pub const VOFFLINE: i32 = 106;
/// Volume is already online.
pub const VONLINE: i32 = 107;
/// Partition is full.
pub const VDISKFULL: i32 = 108;
/// Volume quota exceeded.
pub const VOVERQUOTA: i32 = 109;
/// Volume temporarily unavailable; retry shortly.
pub const VBUSY: i32 = 110;
/// Volume moved to another server; re-query the VLDB.
pub const VMOVED: i32 = 111;
/// Vnode temporarily inaccessible.
pub const VIO: i32 = 112;
/// Volume is being salvaged (demand-attach fileserver).
pub const VSALVAGING: i32 = 113;
/// Volume is restricted from some residencies.
pub const VRESTRICTED: i32 = 120;
/// Fileserver: connection is bad.
pub const VICECONNBAD: i32 = 1234;
/// Fileserver: token expired.
pub const VICETOKENDEAD: i32 = 1235;

/// Base of the VL error table (`error_table VL`).
pub const VL_ERROR_BASE: i32 = 363520;
/// VLDB: no such entry (unknown volume name or id).
pub const VL_NOENT: i32 = VL_ERROR_BASE + 4;
/// VLDB: caller lacks permission.
pub const VL_PERM: i32 = VL_ERROR_BASE + 26;

/// Base of the unified AFS error table (`error_table uae`); `UAEPERM`.
pub const UAE_ERROR_BASE: i32 = 49733376;

/// Base of the rxkad error table (`error_table RXK`); `RXKADINCONSISTENCY`.
pub const RXKAD_ERROR_BASE: i32 = 19270400;
/// rxkad: the token's ticket has expired.
pub const RXKADEXPIRED: i32 = RXKAD_ERROR_BASE + 9;
/// rxkad: the response was sealed with another key than the ticket's.
pub const RXKADSEALEDINCON: i32 = RXKAD_ERROR_BASE + 10;

/// Coarse classification of a failure, for callers that must react
/// (retry, report, map to an errno) rather than just print.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The named file or directory does not exist.
    NotFound,
    /// The ACL or token does not allow the operation.
    PermissionDenied,
    /// The name already exists.
    Exists,
    /// A path component is not a directory.
    NotDirectory,
    /// A directory was used where a file is required.
    IsDirectory,
    /// Directory not empty.
    NotEmpty,
    /// The partition (or directory) is full.
    NoSpace,
    /// The volume quota is exhausted.
    QuotaExceeded,
    /// Write to a read-only volume.
    ReadOnly,
    /// The volume is offline or needs salvage.
    VolumeOffline,
    /// The volume is busy; retrying later should work.
    VolumeBusy,
    /// The volume moved; refresh its location and retry.
    VolumeMoved,
    /// No such volume (on this server, or in the VLDB).
    NoSuchVolume,
    /// The server did not respond or is restarting.
    ServerUnreachable,
    /// The two sides disagree about the protocol.
    Protocol,
    /// A path resolution took a step its caller's confinement refused: a symlink or
    /// mount point leading outside what the caller may reach (the place it leads to
    /// was not contacted).
    Confined,
    /// Anything else.
    Other,
    /// The file changed on the server under our unstored writes, which were not stored.
    Conflict,
    /// Bytes written through a mapping past the end of the file, not stored.
    WrittenPastEnd,
    /// A rename or hard link across volumes (or, for links, across directories).
    CrossDevice,
    /// An argument the server or client refuses as such (EINVAL).
    InvalidArgument,
    /// A name longer than AFS allows (255 bytes).
    NameTooLong,
    /// Too many levels of symbolic links.
    Loop,
    /// Too many hard links to one file.
    TooManyLinks,
    /// The token has expired: get a new one (`afs-wasm login`).
    TokenExpired,
    /// The server refused our credentials (bad ticket, wrong key, unknown key version).
    AuthenticationFailed,
}

impl ErrorKind {
    /// The closest Linux errno, for hosts that must report one.
    pub fn linux_errno(self) -> i32 {
        match self {
            Self::NotFound => 2,
            Self::PermissionDenied => 13,
            Self::Exists => 17,
            Self::NotDirectory => 20,
            Self::IsDirectory => 21,
            Self::NotEmpty => 39,
            Self::NoSpace => 28,
            Self::QuotaExceeded => 122,
            Self::ReadOnly => 30,
            Self::VolumeOffline | Self::NoSuchVolume => 123, // ENOMEDIUM
            Self::VolumeBusy => 16,
            Self::VolumeMoved => 6, // ENXIO
            Self::ServerUnreachable => 110,
            Self::Protocol => 71, // EPROTO
            Self::Confined => 18, // EXDEV, as openat2's RESOLVE_BENEATH answers
            Self::Other => 5,
            Self::Conflict => 16,       // EBUSY
            Self::WrittenPastEnd => 27, // EFBIG
            Self::CrossDevice => 18,
            Self::InvalidArgument => 22,
            Self::NameTooLong => 36,
            Self::Loop => 40,
            Self::TooManyLinks => 31,
            Self::TokenExpired => 127, // EKEYEXPIRED, as kAFS reports it
            Self::AuthenticationFailed => 129, // EKEYREJECTED
        }
    }

    /// True if repeating the operation (possibly after refreshing the volume
    /// location) may succeed.
    pub fn is_transient(self) -> bool {
        matches!(
            self,
            Self::VolumeBusy | Self::VolumeMoved | Self::ServerUnreachable
        )
    }
}

/// An Rx abort code received from (or sent to) a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AbortCode(pub i32);

/// What we know about one code: symbolic name, human message, class.
struct Meaning {
    name: &'static str,
    message: &'static str,
    kind: ErrorKind,
}

const fn m(name: &'static str, message: &'static str, kind: ErrorKind) -> Meaning {
    Meaning {
        name,
        message,
        kind,
    }
}

impl AbortCode {
    /// The raw code.
    pub fn code(self) -> i32 {
        self.0
    }

    /// Symbolic name such as `"VNOVOL"` or `"UAEACCES"`, when known.
    pub fn name(self) -> Option<&'static str> {
        lookup(self.0).map(|m| m.name)
    }

    /// Classification of the failure.
    pub fn kind(self) -> ErrorKind {
        lookup(self.0).map_or(ErrorKind::Other, |m| m.kind)
    }

    /// Human-readable message, e.g. "permission denied".
    pub fn message(self) -> &'static str {
        lookup(self.0).map_or("unknown error", |m| m.message)
    }

    /// True if retrying may succeed; see [`ErrorKind::is_transient`].
    pub fn is_transient(self) -> bool {
        self.kind().is_transient()
    }
}

/// Shorthand for `AbortCode(code).to_string()`.
pub fn describe_abort(code: i32) -> String {
    AbortCode(code).to_string()
}

impl fmt::Display for AbortCode {
    /// Prints the message; the alternate form (`{:#}`) adds the symbolic name
    /// and number, which is what you want in logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match lookup(self.0) {
            Some(m) if f.alternate() => write!(f, "{} ({}, code {})", m.message, m.name, self.0),
            Some(m) => f.write_str(m.message),
            None => write!(f, "unknown error code {}", self.0),
        }
    }
}

impl std::error::Error for AbortCode {}

impl From<i32> for AbortCode {
    fn from(code: i32) -> Self {
        Self(code)
    }
}

fn lookup(code: i32) -> Option<&'static Meaning> {
    if let Some(m) = rx_meaning(code) {
        return Some(m);
    }
    if let Some(m) = volume_meaning(code) {
        return Some(m);
    }
    if let Some(i) = table_index(code, VL_ERROR_BASE, VL_TABLE.len()) {
        return Some(&VL_TABLE[i]);
    }
    if let Some(i) = table_index(code, UAE_ERROR_BASE, UAE_TABLE.len()) {
        return Some(&UAE_TABLE[i]);
    }
    if let Some(i) = table_index(code, RXKAD_ERROR_BASE, RXKAD_TABLE.len()) {
        return Some(&RXKAD_TABLE[i]);
    }
    errno_meaning(code)
}

/// OpenAFS src/rxkad/rxkad_errs.et, in order from its base.
static RXKAD_TABLE: [Meaning; 13] = {
    use ErrorKind::*;
    [
        m(
            "RXKADINCONSISTENCY",
            "security module structure inconsistent",
            Protocol,
        ),
        m(
            "RXKADPACKETSHORT",
            "packet too short for security challenge",
            Protocol,
        ),
        m(
            "RXKADLEVELFAIL",
            "security level negotiation failed",
            AuthenticationFailed,
        ),
        m(
            "RXKADTICKETLEN",
            "ticket length too short or too long",
            AuthenticationFailed,
        ),
        m(
            "RXKADOUTOFSEQUENCE",
            "packet had bad sequence number",
            Protocol,
        ),
        m("RXKADNOAUTH", "caller not authorized", AuthenticationFailed),
        m(
            "RXKADBADKEY",
            "illegal key: bad parity or weak",
            AuthenticationFailed,
        ),
        m(
            "RXKADBADTICKET",
            "security object was passed a bad ticket",
            AuthenticationFailed,
        ),
        m(
            "RXKADUNKNOWNKEY",
            "ticket contained unknown key version number",
            AuthenticationFailed,
        ),
        m("RXKADEXPIRED", "token expired", TokenExpired),
        m("RXKADSEALEDINCON", "wrong key", AuthenticationFailed),
        m("RXKADDATALEN", "user data too long", Protocol),
        m(
            "RXKADILLEGALLEVEL",
            "caller not authorized to use encrypted connections",
            AuthenticationFailed,
        ),
    ]
};

fn table_index(code: i32, base: i32, len: usize) -> Option<usize> {
    let off = code.checked_sub(base)?;
    let off = usize::try_from(off).ok()?;
    (off < len).then_some(off)
}

fn rx_meaning(code: i32) -> Option<&'static Meaning> {
    use ErrorKind::*;
    static RX: [Meaning; 8] = [
        m("RX_CALL_DEAD", "server not responding", ServerUnreachable),
        m("RX_INVALID_OPERATION", "invalid Rx operation", Protocol),
        m("RX_CALL_TIMEOUT", "call timed out", ServerUnreachable),
        m("RX_EOF", "unexpected end of data", Protocol),
        m("RX_PROTOCOL_ERROR", "Rx protocol error", Protocol),
        m("RX_USER_ABORT", "call aborted", Other),
        m("RX_ADDRINUSE", "address already in use", Other),
        m("RX_MSGSIZE", "message too large", Protocol),
    ];
    static RESTARTING: Meaning = m("RX_RESTARTING", "server restarting", ServerUnreachable);
    static RXGEN: [Meaning; 8] = [
        m(
            "RXGEN_CC_MARSHAL",
            "client could not encode request",
            Protocol,
        ),
        m(
            "RXGEN_CC_UNMARSHAL",
            "client could not decode reply",
            Protocol,
        ),
        m(
            "RXGEN_SS_MARSHAL",
            "server could not encode reply",
            Protocol,
        ),
        m(
            "RXGEN_SS_UNMARSHAL",
            "server could not decode request",
            Protocol,
        ),
        m("RXGEN_DECODE", "RPC decode error", Protocol),
        m(
            "RXGEN_OPCODE",
            "operation not supported by server",
            Protocol,
        ),
        m("RXGEN_SS_XDRFREE", "server XDR free error", Protocol),
        m("RXGEN_CC_XDRFREE", "client XDR free error", Protocol),
    ];
    match code {
        -8..=-1 => Some(&RX[(-code - 1) as usize]),
        RX_RESTARTING => Some(&RESTARTING),
        -457..=-450 => Some(&RXGEN[(-code - 450) as usize]),
        _ => None,
    }
}

fn volume_meaning(code: i32) -> Option<&'static Meaning> {
    use ErrorKind::*;
    static VOL: [Meaning; 13] = [
        m("VSALVAGE", "volume needs salvage", VolumeOffline),
        m("VNOVNODE", "no such file (stale file handle)", NotFound),
        m("VNOVOL", "no such volume", NoSuchVolume),
        m("VVOLEXISTS", "volume already exists", Exists),
        m("VNOSERVICE", "volume not in service", VolumeBusy),
        m("VOFFLINE", "volume offline", VolumeOffline),
        m("VONLINE", "volume already online", Other),
        m("VDISKFULL", "partition full", NoSpace),
        m("VOVERQUOTA", "volume quota exceeded", QuotaExceeded),
        m("VBUSY", "volume busy", VolumeBusy),
        m("VMOVED", "volume moved", VolumeMoved),
        m("VIO", "file temporarily inaccessible", VolumeBusy),
        m("VSALVAGING", "volume being salvaged", VolumeOffline),
    ];
    static RESTRICTED: Meaning = m("VRESTRICTED", "volume restricted", VolumeOffline);
    static CONNBAD: Meaning = m("VICECONNBAD", "bad fileserver connection", Protocol);
    static TOKENDEAD: Meaning = m("VICETOKENDEAD", "token expired", TokenExpired);
    match code {
        101..=113 => Some(&VOL[(code - 101) as usize]),
        VRESTRICTED => Some(&RESTRICTED),
        VICECONNBAD => Some(&CONNBAD),
        VICETOKENDEAD => Some(&TOKENDEAD),
        _ => None,
    }
}

/// Raw errno values an untranslating server may send. Only values whose
/// meaning is the same on the common server platforms are listed, plus the
/// BSD spelling of ENOTEMPTY (66), which is unambiguous in practice.
fn errno_meaning(code: i32) -> Option<&'static Meaning> {
    use ErrorKind::*;
    static E: [(i32, Meaning); 17] = [
        (1, m("EPERM", "operation not permitted", PermissionDenied)),
        (2, m("ENOENT", "no such file or directory", NotFound)),
        (5, m("EIO", "I/O error", Other)),
        (13, m("EACCES", "permission denied", PermissionDenied)),
        (16, m("EBUSY", "device or resource busy", VolumeBusy)),
        (17, m("EEXIST", "file exists", Exists)),
        (18, m("EXDEV", "cross-volume link or rename", CrossDevice)),
        (20, m("ENOTDIR", "not a directory", NotDirectory)),
        (21, m("EISDIR", "is a directory", IsDirectory)),
        (22, m("EINVAL", "invalid argument", InvalidArgument)),
        (27, m("EFBIG", "file too large", NoSpace)),
        (28, m("ENOSPC", "no space left on device", NoSpace)),
        (30, m("EROFS", "read-only volume", ReadOnly)),
        (31, m("EMLINK", "too many links", TooManyLinks)),
        (36, m("ENAMETOOLONG", "file name too long", NameTooLong)),
        (39, m("ENOTEMPTY", "directory not empty", NotEmpty)),
        (66, m("ENOTEMPTY", "directory not empty", NotEmpty)),
    ];
    E.iter().find(|(c, _)| *c == code).map(|(_, m)| m)
}

/// `vl_errors.et`, in table order (code = [`VL_ERROR_BASE`] + index).
static VL_TABLE: [Meaning; 33] = {
    use ErrorKind::*;
    [
        m("VL_IDEXIST", "volume id already exists in VLDB", Exists),
        m("VL_IO", "VLDB I/O error", Other),
        m("VL_NAMEEXIST", "volume name already exists in VLDB", Exists),
        m("VL_CREATEFAIL", "VLDB entry creation failed", Other),
        m("VL_NOENT", "no such volume", NoSuchVolume),
        m("VL_EMPTY", "VLDB is empty", NoSuchVolume),
        m("VL_ENTDELETED", "VLDB entry deleted", NoSuchVolume),
        m("VL_BADNAME", "illegal volume name", Other),
        m("VL_BADINDEX", "VLDB index out of range", Other),
        m("VL_BADVOLTYPE", "bad volume type", Other),
        m("VL_BADSERVER", "illegal server number", Other),
        m("VL_BADPARTITION", "bad partition number", Other),
        m("VL_REPSFULL", "no room for more replication sites", Other),
        m("VL_NOREPSERVER", "no such replication site", Other),
        m("VL_DUPREPSERVER", "replication site already exists", Exists),
        m(
            "VL_RWNOTFOUND",
            "parent read/write entry not found",
            NoSuchVolume,
        ),
        m("VL_BADREFCOUNT", "illegal reference count", Other),
        m("VL_SIZEEXCEEDED", "VLDB attribute size exceeded", Other),
        m("VL_BADENTRY", "bad VLDB entry", Protocol),
        m("VL_BADVOLIDBUMP", "illegal volume id increment", Other),
        m("VL_IDALREADYHASHED", "RO/backup id already hashed", Other),
        m("VL_ENTRYLOCKED", "VLDB entry is locked", VolumeBusy),
        m("VL_BADVOLOPER", "bad volume operation code", Other),
        m("VL_BADRELLOCKTYPE", "bad release lock type", Other),
        m("VL_RERELEASE", "last release was aborted", Other),
        m("VL_BADSERVERFLAG", "invalid replication site flag", Other),
        m("VL_PERM", "permission denied (VLDB)", PermissionDenied),
        m("VL_NOMEM", "VLDB server out of memory", Other),
        m("VL_BADVERSION", "wrong VLDB version", Protocol),
        m("VL_INDEXERANGE", "VLDB index out of range", Other),
        m("VL_MULTIPADDR", "servers share an address", Other),
        m("VL_BADMASK", "illegal attribute mask", Protocol),
        m("VL_DBBAD", "VLDB is inconsistent", Other),
    ]
};

/// `unified_afs.et`, in table order (code = [`UAE_ERROR_BASE`] + index).
///
/// The first 34 entries line up with Linux errno 1..=34 (so for those
/// `code = 49733375 + errno`), but the table then follows its own order
/// (UAEDEADLK is index 34 while Linux EDEADLK is 35), so the general
/// mapping must go through the table.
static UAE_TABLE: [Meaning; 123] = {
    use ErrorKind::*;
    [
        m("UAEPERM", "operation not permitted", PermissionDenied),
        m("UAENOENT", "no such file or directory", NotFound),
        m("UAESRCH", "no such process", Other),
        m("UAEINTR", "interrupted system call", Other),
        m("UAEIO", "I/O error", Other),
        m("UAENXIO", "no such device or address", Other),
        m("UAE2BIG", "argument list too long", Other),
        m("UAENOEXEC", "exec format error", Other),
        m("UAEBADF", "bad file descriptor", Other),
        m("UAECHILD", "no child processes", Other),
        m("UAEAGAIN", "resource temporarily unavailable", VolumeBusy),
        m("UAENOMEM", "out of memory", Other),
        m("UAEACCES", "permission denied", PermissionDenied),
        m("UAEFAULT", "bad address", Other),
        m("UAENOTBLK", "block device required", Other),
        m("UAEBUSY", "device or resource busy", VolumeBusy),
        m("UAEEXIST", "file exists", Exists),
        m("UAEXDEV", "cross-volume link or rename", CrossDevice),
        m("UAENODEV", "no such device", Other),
        m("UAENOTDIR", "not a directory", NotDirectory),
        m("UAEISDIR", "is a directory", IsDirectory),
        m("UAEINVAL", "invalid argument", InvalidArgument),
        m("UAENFILE", "file table overflow", Other),
        m("UAEMFILE", "too many open files", Other),
        m("UAENOTTY", "inappropriate ioctl", Other),
        m("UAETXTBSY", "text file busy", Other),
        m("UAEFBIG", "file too large", NoSpace),
        m("UAENOSPC", "no space left on device", NoSpace),
        m("UAESPIPE", "illegal seek", Other),
        m("UAEROFS", "read-only volume", ReadOnly),
        m("UAEMLINK", "too many links", TooManyLinks),
        m("UAEPIPE", "broken pipe", Other),
        m("UAEDOM", "argument out of domain", Other),
        m("UAERANGE", "result out of range", Other),
        m("UAEDEADLK", "resource deadlock avoided", Other),
        m("UAENAMETOOLONG", "file name too long", NameTooLong),
        m("UAENOLCK", "no locks available", Other),
        m("UAENOSYS", "function not implemented", Other),
        m("UAENOTEMPTY", "directory not empty", NotEmpty),
        m("UAELOOP", "too many levels of symbolic links", Loop),
        m("UAEWOULDBLOCK", "operation would block", VolumeBusy),
        m("UAENOMSG", "no message of desired type", Other),
        m("UAEIDRM", "identifier removed", Other),
        m("UAECHRNG", "channel number out of range", Other),
        m("UAEL2NSYNC", "level 2 not synchronized", Other),
        m("UAEL3HLT", "level 3 halted", Other),
        m("UAEL3RST", "level 3 reset", Other),
        m("UAELNRNG", "link number out of range", Other),
        m("UAEUNATCH", "protocol driver not attached", Other),
        m("UAENOCSI", "no CSI structure available", Other),
        m("UAEL2HLT", "level 2 halted", Other),
        m("UAEBADE", "invalid exchange", Other),
        m("UAEBADR", "invalid request descriptor", Other),
        m("UAEXFULL", "exchange full", Other),
        m("UAENOANO", "no anode", Other),
        m("UAEBADRQC", "invalid request code", Other),
        m("UAEBADSLT", "invalid slot", Other),
        m("UAEBFONT", "bad font file format", Other),
        m("UAENOSTR", "device not a stream", Other),
        m("UAENODATA", "no data available", Other),
        m("UAETIME", "timer expired", Other),
        m("UAENOSR", "out of streams resources", Other),
        m(
            "UAENONET",
            "machine is not on the network",
            ServerUnreachable,
        ),
        m("UAENOPKG", "package not installed", Other),
        m("UAEREMOTE", "object is remote", Other),
        m("UAENOLINK", "link has been severed", Other),
        m("UAEADV", "advertise error", Other),
        m("UAESRMNT", "srmount error", Other),
        m("UAECOMM", "communication error on send", ServerUnreachable),
        m("UAEPROTO", "protocol error", Protocol),
        m("UAEMULTIHOP", "multihop attempted", Other),
        m("UAEDOTDOT", "RFS specific error", Other),
        m("UAEBADMSG", "bad message", Protocol),
        m("UAEOVERFLOW", "value too large for data type", Other),
        m("UAENOTUNIQ", "name not unique on network", Other),
        m("UAEBADFD", "file descriptor in bad state", Other),
        m("UAEREMCHG", "remote address changed", Other),
        m("UAELIBACC", "cannot access a needed shared library", Other),
        m("UAELIBBAD", "accessing a corrupted shared library", Other),
        m("UAELIBSCN", ".lib section in a.out corrupted", Other),
        m("UAELIBMAX", "too many shared libraries", Other),
        m("UAELIBEXEC", "cannot exec a shared library directly", Other),
        m("UAEILSEQ", "illegal byte sequence", Other),
        m("UAERESTART", "interrupted call should be restarted", Other),
        m("UAESTRPIPE", "streams pipe error", Other),
        m("UAEUSERS", "too many users", Other),
        m("UAENOTSOCK", "socket operation on non-socket", Other),
        m("UAEDESTADDRREQ", "destination address required", Other),
        m("UAEMSGSIZE", "message too long", Other),
        m("UAEPROTOTYPE", "protocol wrong type for socket", Other),
        m("UAENOPROTOOPT", "protocol not available", Other),
        m("UAEPROTONOSUPPORT", "protocol not supported", Other),
        m("UAESOCKTNOSUPPORT", "socket type not supported", Other),
        m("UAEOPNOTSUPP", "operation not supported", Other),
        m("UAEPFNOSUPPORT", "protocol family not supported", Other),
        m("UAEAFNOSUPPORT", "address family not supported", Other),
        m("UAEADDRINUSE", "address already in use", Other),
        m("UAEADDRNOTAVAIL", "cannot assign requested address", Other),
        m("UAENETDOWN", "network is down", ServerUnreachable),
        m("UAENETUNREACH", "network is unreachable", ServerUnreachable),
        m(
            "UAENETRESET",
            "network dropped connection",
            ServerUnreachable,
        ),
        m("UAECONNABORTED", "connection aborted", ServerUnreachable),
        m(
            "UAECONNRESET",
            "connection reset by peer",
            ServerUnreachable,
        ),
        m("UAENOBUFS", "no buffer space available", Other),
        m("UAEISCONN", "already connected", Other),
        m("UAENOTCONN", "not connected", Other),
        m("UAESHUTDOWN", "endpoint shut down", Other),
        m("UAETOOMANYREFS", "too many references", Other),
        m("UAETIMEDOUT", "connection timed out", ServerUnreachable),
        m("UAECONNREFUSED", "connection refused", ServerUnreachable),
        m("UAEHOSTDOWN", "host is down", ServerUnreachable),
        m("UAEHOSTUNREACH", "no route to host", ServerUnreachable),
        m("UAEALREADY", "operation already in progress", Other),
        m("UAEINPROGRESS", "operation now in progress", Other),
        m("UAESTALE", "stale file handle", NotFound),
        m("UAEUCLEAN", "structure needs cleaning", Other),
        m("UAENOTNAM", "not a XENIX named type file", Other),
        m("UAENAVAIL", "no XENIX semaphores available", Other),
        m("UAEISNAM", "is a named type file", Other),
        m("UAEREMOTEIO", "remote I/O error", Other),
        m("UAEDQUOT", "quota exceeded", QuotaExceeded),
        m("UAENOMEDIUM", "no medium found", Other),
        m("UAEMEDIUMTYPE", "wrong medium type", Other),
    ]
};

#[cfg(test)]
mod tests {
    use super::*;

    /// com_err derives a table's base from its (up to 4 character) name:
    /// each character's 1-based index in this alphabet, 6 bits apiece,
    /// shifted left by 8. Recomputing it guards the constants above.
    fn com_err_base(name: &str) -> i32 {
        const CHARS: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_";
        let mut n: i32 = 0;
        for c in name.chars() {
            n = (n << 6) + CHARS.find(c).unwrap() as i32 + 1;
        }
        n << 8
    }

    #[test]
    fn table_bases_match_com_err() {
        assert_eq!(com_err_base("uae"), UAE_ERROR_BASE);
        assert_eq!(com_err_base("VL"), VL_ERROR_BASE);
        assert_eq!(VL_PERM, 363546); // hard-coded in OpenAFS audit.h
    }

    #[test]
    fn uae_codes() {
        let eacces = AbortCode(UAE_ERROR_BASE + 12);
        assert_eq!(eacces.name(), Some("UAEACCES"));
        assert_eq!(eacces.kind(), ErrorKind::PermissionDenied);
        assert_eq!(eacces.to_string(), "permission denied");
        // errno 1..=34 line up: code = 49733375 + errno.
        assert_eq!(AbortCode(49733375 + 2).kind(), ErrorKind::NotFound);
        assert_eq!(AbortCode(49733375 + 30).kind(), ErrorKind::ReadOnly);
        assert_eq!(AbortCode(UAE_ERROR_BASE + 38).name(), Some("UAENOTEMPTY"));
        assert_eq!(
            AbortCode(UAE_ERROR_BASE + 120).kind(),
            ErrorKind::QuotaExceeded
        );
        assert_eq!(AbortCode(UAE_ERROR_BASE + 123).name(), None);
    }

    #[test]
    fn raw_errno_and_volume_codes() {
        assert_eq!(AbortCode(2).to_string(), "no such file or directory");
        assert_eq!(AbortCode(39).kind(), ErrorKind::NotEmpty);
        assert_eq!(AbortCode(66).kind(), ErrorKind::NotEmpty);
        assert_eq!(AbortCode(VOFFLINE).to_string(), "volume offline");
        assert_eq!(AbortCode(VMOVED).kind(), ErrorKind::VolumeMoved);
        assert_eq!(AbortCode(VNOVOL).kind(), ErrorKind::NoSuchVolume);
        assert_eq!(AbortCode(VL_NOENT).kind(), ErrorKind::NoSuchVolume);
        assert!(AbortCode(VBUSY).is_transient());
    }

    #[test]
    fn rx_codes() {
        assert_eq!(AbortCode(RX_CALL_DEAD).kind(), ErrorKind::ServerUnreachable);
        assert_eq!(AbortCode(RXGEN_OPCODE).name(), Some("RXGEN_OPCODE"));
        assert_eq!(AbortCode(RXGEN_CC_XDRFREE).name(), Some("RXGEN_CC_XDRFREE"));
        assert_eq!(
            AbortCode(RX_RESTARTING).kind(),
            ErrorKind::ServerUnreachable
        );
        assert_eq!(
            format!("{:#}", AbortCode(RX_EOF)),
            "unexpected end of data (RX_EOF, code -4)"
        );
    }

    #[test]
    fn unknown_codes_and_extremes_do_not_panic() {
        for code in [
            i32::MIN,
            i32::MAX,
            0,
            -9,
            -449,
            -458,
            100,
            114,
            VL_ERROR_BASE - 1,
            VL_ERROR_BASE + 33,
        ] {
            let a = AbortCode(code);
            let _ = (a.to_string(), a.kind(), a.name());
        }
        assert_eq!(describe_abort(12345), "unknown error code 12345");
    }
}
