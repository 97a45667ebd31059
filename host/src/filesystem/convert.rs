//! Our `wasi:filesystem` types and wasmtime-wasi's: two bindings of one WIT, so every
//! enum and flag converts by name.

use wasmtime_wasi::p2::bindings::filesystem::types as w;

use super::bindings::wasi::filesystem::types as t;

/// `From` both ways for an enum of the same variants on both sides.
macro_rules! same_enum {
    ($ours:ty, $theirs:ty, [$($v:ident),* $(,)?]) => {
        impl From<$theirs> for Ours<$ours> {
            fn from(x: $theirs) -> Self {
                Ours(match x { $(<$theirs>::$v => <$ours>::$v,)* })
            }
        }
        impl From<$ours> for Theirs<$theirs> {
            fn from(x: $ours) -> Self {
                Theirs(match x { $(<$ours>::$v => <$theirs>::$v,)* })
            }
        }
    };
}

/// `From` both ways for flags of the same names on both sides.
macro_rules! same_flags {
    ($ours:ty, $theirs:ty, [$($f:ident),* $(,)?]) => {
        impl From<$theirs> for Ours<$ours> {
            fn from(x: $theirs) -> Self {
                let mut out = <$ours>::empty();
                $(if x.contains(<$theirs>::$f) { out |= <$ours>::$f; })*
                Ours(out)
            }
        }
        impl From<$ours> for Theirs<$theirs> {
            fn from(x: $ours) -> Self {
                let mut out = <$theirs>::empty();
                $(if x.contains(<$ours>::$f) { out |= <$theirs>::$f; })*
                Theirs(out)
            }
        }
    };
}

/// One of our types, converted from theirs (a local wrapper: both are foreign to the
/// orphan rule's eyes only through it).
pub(crate) struct Ours<T>(pub(crate) T);
/// One of wasmtime-wasi's types, converted from ours.
pub(crate) struct Theirs<T>(pub(crate) T);

/// Ours, from theirs.
pub(crate) fn ours<A, B>(x: A) -> B
where
    Ours<B>: From<A>,
{
    Ours::from(x).0
}

/// Theirs, from ours.
pub(crate) fn theirs<A, B>(x: A) -> B
where
    Theirs<B>: From<A>,
{
    Theirs::from(x).0
}

same_enum!(
    t::ErrorCode,
    w::ErrorCode,
    [
        Access,
        WouldBlock,
        Already,
        BadDescriptor,
        Busy,
        Deadlock,
        Quota,
        Exist,
        FileTooLarge,
        IllegalByteSequence,
        InProgress,
        Interrupted,
        Invalid,
        Io,
        IsDirectory,
        Loop,
        TooManyLinks,
        MessageSize,
        NameTooLong,
        NoDevice,
        NoEntry,
        NoLock,
        InsufficientMemory,
        InsufficientSpace,
        NotDirectory,
        NotEmpty,
        NotRecoverable,
        Unsupported,
        NoTty,
        NoSuchDevice,
        Overflow,
        NotPermitted,
        Pipe,
        ReadOnly,
        InvalidSeek,
        TextFileBusy,
        CrossDevice,
    ]
);
same_enum!(
    t::DescriptorType,
    w::DescriptorType,
    [
        Unknown,
        BlockDevice,
        CharacterDevice,
        Directory,
        Fifo,
        SymbolicLink,
        RegularFile,
        Socket,
    ]
);
same_enum!(
    t::Advice,
    w::Advice,
    [Normal, Sequential, Random, WillNeed, DontNeed, NoReuse]
);
same_flags!(
    t::DescriptorFlags,
    w::DescriptorFlags,
    [
        READ,
        WRITE,
        FILE_INTEGRITY_SYNC,
        DATA_INTEGRITY_SYNC,
        REQUESTED_WRITE_SYNC,
        MUTATE_DIRECTORY,
    ]
);
same_flags!(t::PathFlags, w::PathFlags, [SYMLINK_FOLLOW]);
same_flags!(
    t::OpenFlags,
    w::OpenFlags,
    [CREATE, DIRECTORY, EXCLUSIVE, TRUNCATE]
);

impl From<w::DescriptorStat> for Ours<t::DescriptorStat> {
    fn from(s: w::DescriptorStat) -> Self {
        Ours(t::DescriptorStat {
            type_: ours(s.type_),
            link_count: s.link_count,
            size: s.size,
            data_access_timestamp: s.data_access_timestamp,
            data_modification_timestamp: s.data_modification_timestamp,
            status_change_timestamp: s.status_change_timestamp,
        })
    }
}

impl From<w::DirectoryEntry> for Ours<t::DirectoryEntry> {
    fn from(e: w::DirectoryEntry) -> Self {
        Ours(t::DirectoryEntry {
            type_: ours(e.type_),
            name: e.name,
        })
    }
}

impl From<w::MetadataHashValue> for Ours<t::MetadataHashValue> {
    fn from(h: w::MetadataHashValue) -> Self {
        Ours(t::MetadataHashValue {
            lower: h.lower,
            upper: h.upper,
        })
    }
}

impl From<t::NewTimestamp> for Theirs<w::NewTimestamp> {
    fn from(n: t::NewTimestamp) -> Self {
        Theirs(match n {
            t::NewTimestamp::NoChange => w::NewTimestamp::NoChange,
            t::NewTimestamp::Now => w::NewTimestamp::Now,
            t::NewTimestamp::Timestamp(d) => w::NewTimestamp::Timestamp(d),
        })
    }
}
