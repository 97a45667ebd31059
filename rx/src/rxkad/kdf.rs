//! The 8-byte rxkad session key, from a Kerberos 5 session key of any enctype.
//!
//! rxkad can only use an 8-byte (DES-sized) key. For DES enctypes the session key is that key;
//! for every modern enctype (AES, RC4, Camellia) it is derived with rxkad-kdf
//! (draft-kaduk-afs3-rxkad-k5-kdf): NIST SP 800-108 counter mode with HMAC-MD5 as the PRF,
//! label "rxkad", 64 bits of output, made a valid DES key (odd parity, not weak). OpenAFS
//! 1.8 servers derive the key this way, so a client that used the raw first bytes instead
//! would be answered RXKADSEALEDINCON.

use hmac::{Hmac, KeyInit, Mac};
use md5::Md5;

/// Why a Kerberos session key cannot become an rxkad key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("Kerberos enctype {0} cannot be used with rxkad")]
    UnsupportedEnctype(i32),
    #[error("session key of {len} bytes is too short for enctype {enctype}")]
    ShortKey { enctype: i32, len: usize },
    #[error("rxkad-kdf found no usable key in 255 rounds")]
    NoKey,
}

/// The 16 weak and semi-weak DES keys (FIPS 74), which rxkad-kdf skips.
const WEAK_KEYS: [u64; 16] = [
    0x0101_0101_0101_0101,
    0xfefe_fefe_fefe_fefe,
    0x1f1f_1f1f_0e0e_0e0e,
    0xe0e0_e0e0_f1f1_f1f1,
    0x01fe_01fe_01fe_01fe,
    0xfe01_fe01_fe01_fe01,
    0x1fe0_1fe0_0ef1_0ef1,
    0xe01f_e01f_f10e_f10e,
    0x01e0_01e0_01f1_01f1,
    0xe001_e001_f101_f101,
    0x1ffe_1ffe_0efe_0efe,
    0xfe1f_fe1f_fe0e_fe0e,
    0x011f_011f_010e_010e,
    0x1f01_1f01_0e01_0e01,
    0xe0fe_e0fe_f1fe_f1fe,
    0xfee0_fee0_fef1_fef1,
];

/// The rxkad key for a Kerberos session key of `enctype` (RFC 3961 numbers).
pub fn session_key(enctype: i32, key: &[u8]) -> Result<[u8; 8], KeyError> {
    match enctype {
        // des-cbc-crc, des-cbc-md4, des-cbc-md5: the key itself.
        1..=3 => key
            .get(..8)
            .map(|k| k.try_into().expect("8 bytes"))
            .ok_or(KeyError::ShortKey {
                enctype,
                len: key.len(),
            }),
        // The DES3 enctypes need their parity bits removed before the KDF; MIT krb5 no longer
        // issues them for new principals and no test cell here can produce one, so they are
        // refused rather than derived untested. The rest are not key-bearing enctypes.
        ..=0 | 4..=16 => Err(KeyError::UnsupportedEnctype(enctype)),
        _ => kdf(key),
    }
}

/// rxkad-kdf over the raw bytes of a session key.
pub fn kdf(key: &[u8]) -> Result<[u8; 8], KeyError> {
    for counter in 1..=255u8 {
        let mut mac = <Hmac<Md5> as KeyInit>::new_from_slice(key).expect("HMAC takes any key");
        mac.update(&[counter]);
        mac.update(b"rxkad\0");
        mac.update(&64u32.to_be_bytes());
        let out = mac.finalize().into_bytes();
        let mut k: [u8; 8] = out[..8].try_into().expect("16-byte MAC");
        for b in &mut k {
            *b = odd_parity(*b);
        }
        if !WEAK_KEYS.contains(&u64::from_be_bytes(k)) {
            return Ok(k);
        }
    }
    Err(KeyError::NoKey)
}

/// Sets the low bit of `b` so that the byte has an odd number of ones.
fn odd_parity(b: u8) -> u8 {
    let high = b & 0xfe;
    high | u8::from(high.count_ones().is_multiple_of(2))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values of an independent implementation whose keys a live OpenAFS 1.8.9 fileserver
    /// accepted (see shared/rxkad.md).
    #[test]
    fn kdf_known_answers() {
        assert_eq!(
            kdf(&[0; 32]).unwrap(),
            0x9da4_198f_510d_cd8c_u64.to_be_bytes()
        );
        assert_eq!(
            kdf(&[1; 16]).unwrap(),
            0x0eef_49a4_5429_2098_u64.to_be_bytes()
        );
    }

    #[test]
    fn enctypes() {
        let des = [0x13, 0x34, 0x57, 0x79, 0x9b, 0xbc, 0xdf, 0xf1];
        assert_eq!(session_key(3, &des).unwrap(), des);
        assert_eq!(session_key(18, &[0; 32]).unwrap(), kdf(&[0; 32]).unwrap());
        assert_eq!(
            session_key(16, &[0; 24]),
            Err(KeyError::UnsupportedEnctype(16))
        );
        assert!(matches!(
            session_key(1, &[0; 4]),
            Err(KeyError::ShortKey { .. })
        ));
        for b in 0..=255u8 {
            assert_eq!(odd_parity(b).count_ones() % 2, 1);
        }
    }
}
