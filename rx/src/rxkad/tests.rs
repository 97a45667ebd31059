use super::*;
use crate::packet::PacketType;

fn class(level: Level) -> Rxkad {
    Rxkad::new(
        Credential {
            kvno: KVNO_KERBEROS_V5,
            ticket: Arc::from(vec![0xab; 434]),
            key: kdf(&[7; 32]).unwrap(),
        },
        level,
    )
}

fn header(call_number: u32, seq: u32) -> Header {
    Header {
        epoch: 0x8000_1234,
        cid: 0x0000_4442,
        call_number,
        seq,
        serial: 9,
        packet_type: PacketType::Data,
        flags: 0,
        user_status: 0,
        security_index: INDEX,
        spare: 0,
        service_id: 1,
    }
}

/// Both ends of a connection compute the same checksums and keys, so one side's `seal` is
/// the other's `open`.
#[test]
fn seal_and_open_round_trip_at_every_level() {
    for level in [Level::Clear, Level::Auth, Level::Crypt] {
        let c = class(level);
        let mut tx = c.client_conn(0x8000_1234, 0x4442);
        let mut rx = c.client_conn(0x8000_1234, 0x4442);
        for len in [0usize, 1, 3, 4, 7, 8, 100, 1412 - tx.overhead()] {
            let data: Bytes = (0..len).map(|i| i as u8).collect::<Vec<_>>().into();
            let mut h = header(5, 3);
            let sealed = tx.seal(&mut h, data.clone());
            assert_ne!(h.spare, 0, "every level sets the header checksum");
            assert!(sealed.len() <= len + tx.overhead());
            if level == Level::Crypt && len >= 8 {
                assert!(
                    !sealed.windows(8).any(|w| w == &data[..8]),
                    "crypt leaves no plaintext"
                );
            }
            assert_eq!(rx.open(&h, sealed).unwrap(), data, "{level} {len}");
        }
    }
}

#[test]
fn tampering_is_refused() {
    let c = class(Level::Crypt);
    let mut tx = c.client_conn(1, 4);
    let mut rx = c.client_conn(1, 4);
    let mut h = header(2, 1);
    let sealed = tx.seal(&mut h, Bytes::from_static(b"sixteen bytes!!!"));
    // Another sequence number: the checksum no longer matches.
    let mut moved = h;
    moved.seq = 2;
    assert_eq!(
        rx.open(&moved, sealed.clone()).unwrap_err().code,
        RXKADSEALEDINCON
    );
    // A changed first block: the sealed length word no longer matches.
    let mut bad = sealed.to_vec();
    bad[0] ^= 1;
    assert!(rx.open(&h, bad.into()).is_err());
    // A cut packet.
    assert_eq!(
        rx.open(&h, sealed.slice(..4)).unwrap_err().code,
        RXKADPACKETSHORT
    );
    // Another key cannot open it.
    let other = Rxkad::new(
        Credential {
            key: kdf(&[8; 32]).unwrap(),
            ..c.credential.clone()
        },
        Level::Crypt,
    );
    assert!(other.client_conn(1, 4).open(&h, sealed).is_err());
}

#[test]
fn v2_response_carries_the_sealed_endpoint_and_nonce() {
    let c = class(Level::Auth);
    let mut conn = c.client_conn(0x8000_1234, 0x4442);
    let mut challenge = Vec::new();
    for w in [2u32, 0xffff_ffff, 1, 0] {
        challenge.extend_from_slice(&w.to_be_bytes());
    }
    let resp = conn.respond(&challenge, [1, 0, 0, 0]).unwrap();
    assert_eq!(resp.len(), 56 + 434);
    let mut plain = resp[..56].to_vec();
    c.cipher.pcbc_decrypt(c.credential.key, &mut plain[8..48]);
    let word = |i: usize| u32::from_be_bytes(plain[i * 4..i * 4 + 4].try_into().unwrap());
    assert_eq!(word(0), 2);
    assert_eq!(word(2), 0x8000_1234);
    assert_eq!(word(3), 0x4440, "the cid without channel bits");
    assert_eq!(word(5), 2);
    assert_eq!([word(6), word(7), word(8), word(9)], [1, 0, 0, 0]);
    assert_eq!(word(10), 0, "nonce + 1 wraps");
    assert_eq!(word(11), Level::Auth as u32);
    assert_eq!(word(12), KVNO_KERBEROS_V5);
    assert_eq!(word(13), 434);
    let sum = word(4);
    plain[16..20].fill(0);
    let want = plain.iter().fold(1_000_003u32, |c, &b| {
        c.wrapping_mul(0x1020_4081).wrapping_add(u32::from(b))
    });
    assert_eq!(sum, want);
    assert!(resp[56..].iter().all(|&b| b == 0xab));
}

#[test]
fn challenges_we_cannot_meet_are_refused() {
    let mut conn = class(Level::Clear).client_conn(1, 4);
    let mut v2 = Vec::new();
    for w in [2u32, 7, 2, 0] {
        v2.extend_from_slice(&w.to_be_bytes());
    }
    assert_eq!(
        conn.respond(&v2, [1, 0, 0, 0]).unwrap_err().code,
        RXKADLEVELFAIL
    );
    assert_eq!(
        conn.respond(&[0; 5], [1, 0, 0, 0]).unwrap_err().code,
        RXKADPACKETSHORT
    );
    let old = [0, 0, 0, 7, 0, 0, 0, 0];
    assert_eq!(conn.respond(&old, [1, 0, 0, 0]).unwrap().len(), 16 + 434);
}
