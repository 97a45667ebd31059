//! XDR (RFC 4506) as spoken by rxgen-generated AFS stubs.
//!
//! Everything on the wire is a sequence of big-endian 32-bit words. Rxgen adds
//! a few quirks this module makes explicit:
//!
//! * 64-bit integers (`afs_int64`, `afs_uint64`) travel as a high word then a
//!   low word, which is exactly a big-endian `u64`.
//! * `char` and `short` members (for example inside `afsUUID` or
//!   `AFSFetchVolumeStatus`) each occupy a full word; see [`Encoder::put_char`].
//! * Variable-length opaques, strings and arrays carry a 32-bit count and are
//!   padded to a multiple of four bytes.
//!
//! The decoder never trusts a length it reads: every variable-length item is
//! checked against a caller-supplied maximum *and* against the bytes actually
//! left in the buffer before anything is allocated, so a hostile length word
//! cannot make us reserve gigabytes.

use thiserror::Error;

/// Why an XDR buffer could not be decoded (or a value could not be encoded).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum XdrError {
    /// The buffer ended before the value did.
    #[error("XDR data truncated: needed {needed} more bytes, {available} available")]
    Truncated {
        /// Bytes the next item required.
        needed: usize,
        /// Bytes that were left.
        available: usize,
    },
    /// A count or length exceeded the protocol's declared maximum.
    #[error("XDR {what} length {len} exceeds maximum {max}")]
    TooLong {
        /// What was being decoded/encoded.
        what: &'static str,
        /// The length found.
        len: usize,
        /// The protocol limit.
        max: usize,
    },
    /// A value is outside the set the protocol allows.
    #[error("invalid XDR {what}: {value}")]
    Invalid {
        /// What was being decoded/encoded.
        what: &'static str,
        /// The offending raw value.
        value: u32,
    },
    /// Bytes were left over after a complete message was decoded; this
    /// usually means the two sides disagree about the message layout.
    #[error("{0} unexpected trailing bytes after XDR message")]
    TrailingBytes(usize),
}

/// Types that can be written in XDR form.
pub trait XdrEncode {
    /// Append the XDR encoding of `self` to `enc`.
    fn encode(&self, enc: &mut Encoder);
}

/// Types that can be read from XDR form.
pub trait XdrDecode: Sized {
    /// Read one value from `dec`, advancing it.
    fn decode(dec: &mut Decoder<'_>) -> Result<Self, XdrError>;
}

/// Number of zero bytes needed after `len` bytes to reach a 4-byte boundary.
fn pad_len(len: usize) -> usize {
    (4 - (len % 4)) % 4
}

/// Growable XDR writer.
#[derive(Debug, Default, Clone)]
pub struct Encoder {
    buf: Vec<u8>,
}

impl Encoder {
    /// An empty encoder.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty encoder with room for `cap` bytes, for callers that know the
    /// message size up front.
    pub fn with_capacity(cap: usize) -> Self {
        Self {
            buf: Vec::with_capacity(cap),
        }
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// True when nothing has been written.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// View the bytes written so far.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf
    }

    /// Finish and take the encoded bytes.
    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }

    /// Write an unsigned 32-bit word.
    pub fn put_u32(&mut self, v: u32) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }

    /// Write a signed 32-bit word.
    pub fn put_i32(&mut self, v: i32) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }

    /// Write a 64-bit value as rxgen does: high word, then low word.
    pub fn put_u64(&mut self, v: u64) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }

    /// Signed variant of [`Encoder::put_u64`].
    pub fn put_i64(&mut self, v: i64) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }

    /// Write an XDR boolean (one word, 0 or 1).
    pub fn put_bool(&mut self, v: bool) -> &mut Self {
        self.put_u32(u32::from(v))
    }

    /// Write a C `char` member the way OpenAFS's `xdr_char` does: as a full
    /// word holding the *sign-extended* value. Matching this exactly keeps
    /// our encodings byte-identical to what OpenAFS peers produce.
    pub fn put_char(&mut self, v: u8) -> &mut Self {
        self.put_i32(i32::from(v as i8))
    }

    /// Write bytes with no length prefix, padded to a word boundary
    /// (XDR fixed-length opaque).
    pub fn put_fixed_opaque(&mut self, data: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(data);
        self.buf
            .extend(std::iter::repeat_n(0u8, pad_len(data.len())));
        self
    }

    /// Write a length-prefixed, padded byte string (XDR variable opaque or
    /// string). Callers validate the protocol maximum before calling; see
    /// [`Encoder::put_string_checked`].
    pub fn put_opaque(&mut self, data: &[u8]) -> &mut Self {
        let len = u32::try_from(data.len()).unwrap_or(u32::MAX);
        self.put_u32(len);
        self.put_fixed_opaque(data)
    }

    /// Write a string after checking it against the protocol maximum and
    /// rejecting embedded NULs (the C side would silently truncate at one).
    pub fn put_string_checked(
        &mut self,
        what: &'static str,
        s: &str,
        max: usize,
    ) -> Result<&mut Self, XdrError> {
        if s.len() > max {
            return Err(XdrError::TooLong {
                what,
                len: s.len(),
                max,
            });
        }
        if s.as_bytes().contains(&0) {
            return Err(XdrError::Invalid { what, value: 0 });
        }
        Ok(self.put_opaque(s.as_bytes()))
    }

    /// Write any encodable value.
    pub fn put<T: XdrEncode + ?Sized>(&mut self, v: &T) -> &mut Self {
        v.encode(self);
        self
    }

    /// Write a variable-length array: a count word followed by the items.
    pub fn put_array<T: XdrEncode>(&mut self, items: &[T]) -> &mut Self {
        let len = u32::try_from(items.len()).unwrap_or(u32::MAX);
        self.put_u32(len);
        self.put_fixed_array(items)
    }

    /// Write a fixed-length array: the items with no count word.
    pub fn put_fixed_array<T: XdrEncode>(&mut self, items: &[T]) -> &mut Self {
        for item in items {
            item.encode(self);
        }
        self
    }
}

/// Cursor over an XDR byte buffer.
#[derive(Debug, Clone)]
pub struct Decoder<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Decoder<'a> {
    /// Start decoding at the beginning of `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    /// Bytes not yet consumed.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Offset of the next byte to be read.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// The unread tail of the buffer (for streamed payloads that follow XDR).
    pub fn rest(&self) -> &'a [u8] {
        &self.buf[self.pos..]
    }

    /// Succeed only if everything was consumed: leftover bytes mean the two
    /// sides disagree about the layout, which we want to notice early.
    pub fn finish(&self) -> Result<(), XdrError> {
        match self.remaining() {
            0 => Ok(()),
            n => Err(XdrError::TrailingBytes(n)),
        }
    }

    /// Take exactly `n` raw bytes.
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], XdrError> {
        let available = self.remaining();
        if n > available {
            return Err(XdrError::Truncated {
                needed: n,
                available,
            });
        }
        let out = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    fn take_array<const N: usize>(&mut self) -> Result<[u8; N], XdrError> {
        let bytes = self.take(N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    /// Read an unsigned 32-bit word.
    pub fn get_u32(&mut self) -> Result<u32, XdrError> {
        self.take_array::<4>().map(u32::from_be_bytes)
    }

    /// Read a signed 32-bit word.
    pub fn get_i32(&mut self) -> Result<i32, XdrError> {
        self.take_array::<4>().map(i32::from_be_bytes)
    }

    /// Read a 64-bit value sent as high word then low word.
    pub fn get_u64(&mut self) -> Result<u64, XdrError> {
        self.take_array::<8>().map(u64::from_be_bytes)
    }

    /// Signed variant of [`Decoder::get_u64`].
    pub fn get_i64(&mut self) -> Result<i64, XdrError> {
        self.take_array::<8>().map(i64::from_be_bytes)
    }

    /// Read an XDR boolean; anything but 0 or 1 is rejected.
    pub fn get_bool(&mut self) -> Result<bool, XdrError> {
        match self.get_u32()? {
            0 => Ok(false),
            1 => Ok(true),
            value => Err(XdrError::Invalid {
                what: "bool",
                value,
            }),
        }
    }

    /// Read a `char` member encoded as a full word. Only the low byte is
    /// meaningful (OpenAFS sign-extends on encode and truncates on decode), so
    /// we do the same rather than rejecting values another implementation may
    /// have zero-extended.
    pub fn get_char(&mut self) -> Result<u8, XdrError> {
        Ok(self.get_u32()? as u8)
    }

    /// Read a `u_short` member encoded as a full word (truncated like
    /// OpenAFS's `xdr_u_short`).
    pub fn get_ushort(&mut self) -> Result<u16, XdrError> {
        Ok(self.get_u32()? as u16)
    }

    /// Read `n` bytes of fixed-length opaque plus the padding after them.
    pub fn get_fixed_opaque(&mut self, n: usize) -> Result<&'a [u8], XdrError> {
        let padded = n.checked_add(pad_len(n)).ok_or(XdrError::TooLong {
            what: "opaque",
            len: n,
            max: usize::MAX - 3,
        })?;
        let bytes = self.take(padded)?;
        Ok(&bytes[..n])
    }

    /// Read a length-prefixed opaque of at most `max` bytes. Padding bytes
    /// are skipped without being checked, as rxgen stubs do.
    pub fn get_opaque(&mut self, what: &'static str, max: usize) -> Result<&'a [u8], XdrError> {
        let len = self.get_u32()? as usize;
        if len > max {
            return Err(XdrError::TooLong { what, len, max });
        }
        self.get_fixed_opaque(len)
    }

    /// Read a length-prefixed string of at most `max` bytes. AFS strings are
    /// bytes in no declared charset; invalid UTF-8 is replaced rather than
    /// rejected so that a stray Latin-1 message of the day cannot fail a call.
    /// A C string ends at its first NUL, so anything after one is dropped.
    pub fn get_string(&mut self, what: &'static str, max: usize) -> Result<String, XdrError> {
        let raw = self.get_opaque(what, max)?;
        let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
        Ok(String::from_utf8_lossy(&raw[..end]).into_owned())
    }

    /// Read any decodable value.
    pub fn get<T: XdrDecode>(&mut self) -> Result<T, XdrError> {
        T::decode(self)
    }

    /// Read a variable-length array of at most `max` items.
    ///
    /// The count is checked against `max` and against the bytes left (every
    /// XDR item takes at least one word) before any allocation happens.
    pub fn get_array<T: XdrDecode>(
        &mut self,
        what: &'static str,
        max: usize,
    ) -> Result<Vec<T>, XdrError> {
        let count = self.get_u32()? as usize;
        if count > max {
            return Err(XdrError::TooLong {
                what,
                len: count,
                max,
            });
        }
        let min_bytes = count.saturating_mul(4);
        if min_bytes > self.remaining() {
            return Err(XdrError::Truncated {
                needed: min_bytes,
                available: self.remaining(),
            });
        }
        let mut out = Vec::with_capacity(count);
        for _ in 0..count {
            out.push(T::decode(self)?);
        }
        Ok(out)
    }

    /// Read a fixed-length array of `N` items.
    pub fn get_fixed_array<T: XdrDecode + Copy + Default, const N: usize>(
        &mut self,
    ) -> Result<[T; N], XdrError> {
        let mut out = [T::default(); N];
        for slot in out.iter_mut() {
            *slot = T::decode(self)?;
        }
        Ok(out)
    }
}

impl XdrEncode for u32 {
    fn encode(&self, enc: &mut Encoder) {
        enc.put_u32(*self);
    }
}

impl XdrDecode for u32 {
    fn decode(dec: &mut Decoder<'_>) -> Result<Self, XdrError> {
        dec.get_u32()
    }
}

impl XdrEncode for i32 {
    fn encode(&self, enc: &mut Encoder) {
        enc.put_i32(*self);
    }
}

impl XdrDecode for i32 {
    fn decode(dec: &mut Decoder<'_>) -> Result<Self, XdrError> {
        dec.get_i32()
    }
}

impl XdrEncode for u64 {
    fn encode(&self, enc: &mut Encoder) {
        enc.put_u64(*self);
    }
}

impl XdrDecode for u64 {
    fn decode(dec: &mut Decoder<'_>) -> Result<Self, XdrError> {
        dec.get_u64()
    }
}

impl XdrEncode for bool {
    fn encode(&self, enc: &mut Encoder) {
        enc.put_bool(*self);
    }
}

impl XdrDecode for bool {
    fn decode(dec: &mut Decoder<'_>) -> Result<Self, XdrError> {
        dec.get_bool()
    }
}

/// Decode a whole message of type `T`, rejecting trailing bytes.
pub fn decode_exact<T: XdrDecode>(buf: &[u8]) -> Result<T, XdrError> {
    let mut dec = Decoder::new(buf);
    let v = T::decode(&mut dec)?;
    dec.finish()?;
    Ok(v)
}

/// Encode a single value into a fresh buffer.
pub fn encode_to_vec<T: XdrEncode + ?Sized>(v: &T) -> Vec<u8> {
    let mut enc = Encoder::new();
    v.encode(&mut enc);
    enc.into_bytes()
}

#[cfg(test)]
pub(crate) mod test_util {
    //! Helpers shared by the codec tests of every module.

    /// Tiny deterministic PRNG so fuzz-style tests need no extra crates.
    pub struct XorShift(u64);

    impl XorShift {
        pub fn new(seed: u64) -> Self {
            Self(seed | 1)
        }

        pub fn next_u64(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.0 = x;
            x
        }

        pub fn below(&mut self, n: usize) -> usize {
            (self.next_u64() % n.max(1) as u64) as usize
        }

        /// Random buffer; biased toward small words so counts and lengths
        /// read from it are often plausible and decoders get past the
        /// first field.
        pub fn buffer(&mut self, max_len: usize) -> Vec<u8> {
            let len = self.below(max_len + 1);
            let mut out = Vec::with_capacity(len);
            while out.len() < len {
                let word: u32 = match self.below(4) {
                    0 => self.next_u64() as u32,
                    1 => self.below(4) as u32,
                    2 => self.below(64) as u32,
                    _ => 0,
                };
                out.extend_from_slice(&word.to_be_bytes());
            }
            out.truncate(len);
            out
        }
    }

    /// Feed `decode` every strict prefix of `valid` (each must fail, never
    /// panic), the full buffer (must succeed), and a few thousand random
    /// buffers (anything but a panic is fine).
    pub fn check_never_panics<T, E: std::fmt::Debug>(
        valid: &[u8],
        decode: impl Fn(&[u8]) -> Result<T, E>,
    ) {
        for cut in 0..valid.len() {
            assert!(
                decode(&valid[..cut]).is_err(),
                "prefix of {cut} bytes unexpectedly decoded"
            );
        }
        decode(valid).expect("full valid encoding must decode");
        let mut rng = XorShift::new(valid.len() as u64 ^ 0x9e37_79b9_7f4a_7c15);
        for _ in 0..3000 {
            let buf = rng.buffer(valid.len().max(64) + 64);
            let _ = decode(&buf);
        }
        // Mutate single words of the valid encoding: exercises deeper paths.
        for _ in 0..2000 {
            let mut buf = valid.to_vec();
            if buf.len() >= 4 {
                let at = rng.below(buf.len() / 4) * 4;
                let word = rng.next_u64() as u32;
                buf[at..at + 4].copy_from_slice(&word.to_be_bytes());
            }
            let _ = decode(&buf);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_are_big_endian_words() {
        let mut e = Encoder::new();
        e.put_u32(0x0102_0304)
            .put_i32(-2)
            .put_u64(0x1122_3344_5566_7788)
            .put_bool(true);
        assert_eq!(
            e.as_bytes(),
            &[
                1, 2, 3, 4, 0xff, 0xff, 0xff, 0xfe, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88,
                0, 0, 0, 1
            ]
        );
        let bytes = e.into_bytes();
        let mut d = Decoder::new(&bytes);
        assert_eq!(d.get_u32().unwrap(), 0x0102_0304);
        assert_eq!(d.get_i32().unwrap(), -2);
        assert_eq!(d.get_u64().unwrap(), 0x1122_3344_5566_7788);
        assert!(d.get_bool().unwrap());
        d.finish().unwrap();
    }

    #[test]
    fn chars_sign_extend_like_openafs() {
        let mut e = Encoder::new();
        e.put_char(0x80).put_char(0x7f);
        assert_eq!(e.as_bytes(), &[0xff, 0xff, 0xff, 0x80, 0, 0, 0, 0x7f]);
        let bytes = e.into_bytes();
        let mut d = Decoder::new(&bytes);
        assert_eq!(d.get_char().unwrap(), 0x80);
        assert_eq!(d.get_char().unwrap(), 0x7f);
    }

    #[test]
    fn opaque_is_padded() {
        let mut e = Encoder::new();
        e.put_opaque(b"abcde");
        assert_eq!(
            e.as_bytes(),
            &[0, 0, 0, 5, b'a', b'b', b'c', b'd', b'e', 0, 0, 0]
        );
        let bytes = e.into_bytes();
        let mut d = Decoder::new(&bytes);
        assert_eq!(d.get_opaque("t", 10).unwrap(), b"abcde");
        d.finish().unwrap();

        let mut d = Decoder::new(&bytes);
        assert!(matches!(
            d.get_opaque("t", 4),
            Err(XdrError::TooLong { len: 5, max: 4, .. })
        ));
    }

    #[test]
    fn empty_and_aligned_strings() {
        for s in ["", "abcd", "abcdefgh", "x"] {
            let mut e = Encoder::new();
            e.put_string_checked("s", s, 16).unwrap();
            assert_eq!(e.len() % 4, 0);
            let bytes = e.into_bytes();
            let mut d = Decoder::new(&bytes);
            assert_eq!(d.get_string("s", 16).unwrap(), s);
            d.finish().unwrap();
        }
    }

    #[test]
    fn string_checks() {
        let mut e = Encoder::new();
        assert!(e.put_string_checked("s", "a\0b", 16).is_err());
        assert!(e.put_string_checked("s", "abcdef", 5).is_err());
        assert!(e.is_empty());
    }

    #[test]
    fn hostile_lengths_do_not_allocate() {
        let buf = [0xff, 0xff, 0xff, 0xf0];
        assert!(Decoder::new(&buf).get_opaque("x", usize::MAX).is_err());
        assert!(Decoder::new(&buf)
            .get_array::<u32>("x", usize::MAX)
            .is_err());
        // Within the max but beyond the buffer.
        let buf = [0, 0, 0, 40, 0, 0, 0, 1];
        assert!(matches!(
            Decoder::new(&buf).get_array::<u32>("x", 50),
            Err(XdrError::Truncated { .. })
        ));
    }

    #[test]
    fn arrays_round_trip() {
        let v: Vec<u32> = vec![1, 2, 3];
        let mut e = Encoder::new();
        e.put_array(&v).put_fixed_array(&[9u32, 8]);
        let bytes = e.into_bytes();
        assert_eq!(bytes.len(), 4 + 12 + 8);
        let mut d = Decoder::new(&bytes);
        assert_eq!(d.get_array::<u32>("v", 3).unwrap(), v);
        assert_eq!(d.get_fixed_array::<u32, 2>().unwrap(), [9, 8]);
        d.finish().unwrap();
    }

    #[test]
    fn bool_rejects_garbage() {
        assert!(Decoder::new(&[0, 0, 0, 2]).get_bool().is_err());
    }

    #[test]
    fn trailing_bytes_are_reported() {
        assert_eq!(
            decode_exact::<u32>(&[0, 0, 0, 1, 0]),
            Err(XdrError::TrailingBytes(1))
        );
        assert_eq!(decode_exact::<u32>(&[0, 0, 0, 1]), Ok(1));
    }
}
